"""adapters.http1 against a raw asyncio server that answers byte for byte as scripted: the
framings the API server uses (Content-Length, chunked), keep-alive, a kept connection the
server closed (repeated for a GET, never for a POST), Connection: close, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from batchyard.adapters.http1 import Http1Pool, ProtocolError, StatusError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes, bytes], Awaitable[bool]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """(request head, body) or None at EOF."""
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


def serve(handler: Handler) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (request := await read_request(reader)) is not None:
                if not await handler(reader, writer, *request):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return connection


def run(handler: Handler, test: Callable[[Http1Pool], Awaitable[None]]) -> None:
    async def main() -> None:
        server = await asyncio.start_server(serve(handler), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = Http1Pool(f"http://127.0.0.1:{port}", False, {"Authorization": "Bearer t"})
        try:
            await test(pool)
        finally:
            await pool.close()
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def answer(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def test_requests_share_one_kept_connection_and_carry_the_headers_and_body() -> None:
    seen: list[bytes] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, head: bytes, body: bytes) -> bool:
        seen.append(head + body)
        w.write(answer(b'{"n":%d}' % len(seen)))
        return True

    async def test(pool: Http1Pool) -> None:
        first = await pool.request(
            "POST", "/api/v1/namespaces/ns/pods", b'{"a":1}', {"Content-Type": "application/json"}
        )
        second = await pool.request("GET", "/api/v1/pods?limit=5")
        assert (first.status, first.body, second.body) == (200, b'{"n":1}', b'{"n":2}')
        assert pool.opened == 1

    run(handler, test)
    post, get = seen
    assert post.startswith(b"POST /api/v1/namespaces/ns/pods HTTP/1.1\r\n")
    assert b"\r\nAuthorization: Bearer t\r\n" in post and b"\r\nContent-Length: 7\r\n" in post
    assert post.endswith(b'\r\n\r\n{"a":1}')
    assert get.startswith(b"GET /api/v1/pods?limit=5 HTTP/1.1\r\n") and b"Host: 127.0.0.1:" in get


def test_a_chunked_body_and_an_error_status() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, head: bytes, body: bytes) -> bool:
        w.write(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n")
        w.write(b'5;ext=1\r\n{"a":\r\n3\r\n404\r\n1\r\n}\r\n0\r\n\r\n')
        return True

    async def test(pool: Http1Pool) -> None:
        resp = await pool.request("GET", "/x")
        assert (resp.status, resp.body) == (404, b'{"a":404}')
        assert (await pool.request("GET", "/y")).body == b'{"a":404}'
        assert pool.opened == 1  # the chunked answer left the connection usable

    run(handler, test)


def test_connection_close_and_a_body_that_ends_with_the_connection() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, head: bytes, body: bytes) -> bool:
        if head.startswith(b"GET /close"):
            w.write(answer(b"{}", extra="Connection: close\r\n"))
        else:
            w.write(b"HTTP/1.1 200 OK\r\n\r\n[1,2,3]")
        await w.drain()
        return False  # the server closes after either

    async def test(pool: Http1Pool) -> None:
        assert (await pool.request("GET", "/close")).body == b"{}"
        assert (await pool.request("GET", "/eof")).body == b"[1,2,3]"
        assert pool.opened == 2

    run(handler, test)


def test_a_kept_connection_the_server_closed_is_repeated_for_a_get_never_for_a_post(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served = 0

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, head: bytes, body: bytes) -> bool:
        nonlocal served
        served += 1
        w.write(answer(b"{}"))  # keep-alive promised, then the server closes (an idle timeout)
        await w.drain()
        return False

    # The race the pool must survive: the server's close not yet seen when the connection is
    # taken from the pool.
    monkeypatch.setattr("batchyard.adapters.http1._Conn.usable", lambda self, now: True)

    async def test(pool: Http1Pool) -> None:
        await pool.request("GET", "/a")
        await asyncio.sleep(0.05)
        assert (await pool.request("GET", "/b")).status == 200  # sent again on a new connection
        assert pool.opened == 2
        await asyncio.sleep(0.05)
        with pytest.raises(aiohttp.ClientConnectionError):
            await pool.request("POST", "/jobs", b"{}")  # might have been received: not sent twice
        assert pool.opened == 2

    run(handler, test)
    assert served == 2


def test_a_closed_idle_connection_is_not_reused() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, head: bytes, body: bytes) -> bool:
        w.write(answer(b"{}"))
        await w.drain()
        return False  # closes without saying so

    async def test(pool: Http1Pool) -> None:
        await pool.request("GET", "/a")
        await asyncio.sleep(0.05)  # the server's FIN arrives
        await pool.request("POST", "/b", b"{}")  # a new connection, not the dead one
        assert pool.opened == 2

    run(handler, test)


def test_a_timeout_closes_the_connection_instead_of_keeping_it() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, head: bytes, body: bytes) -> bool:
        if head.startswith(b"GET /slow"):
            await asyncio.sleep(5)
        w.write(answer(b"{}"))
        return True

    async def test(pool: Http1Pool) -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await pool.request("GET", "/slow")
        assert pool._idle == []
        assert (await pool.request("GET", "/fast")).body == b"{}"
        assert pool.opened == 2

    run(handler, test)


def test_garbage_is_a_protocol_error() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, head: bytes, body: bytes) -> bool:
        w.write(b"SPDY/3 200\r\n\r\n")
        return True

    async def test(pool: Http1Pool) -> None:
        with pytest.raises(ProtocolError):
            await pool.request("GET", "/x")
        assert pool._idle == []

    run(handler, test)


def test_nothing_listening_is_a_connection_error() -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        pool = Http1Pool(f"http://127.0.0.1:{port}", False, {})
        with pytest.raises(aiohttp.ClientConnectionError):
            await pool.request("GET", "/x")

    asyncio.run(main())


def test_a_stream_hands_over_each_chunk_as_it_arrives_on_a_connection_of_its_own() -> None:
    sent = asyncio.Event()
    got: list[bytes] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, head: bytes, body: bytes) -> bool:
        if head.startswith(b"GET /watch?x=1 "):
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            w.write(b'7\r\n{"a":1}\r\n')
            await w.drain()
            await sent.wait()  # the second chunk only after the client has the first
            w.write(b'8\r\n\n{"b":2}\r\n0\r\n\r\n')
            return False
        w.write(answer(b"{}"))
        return True

    async def test(pool: Http1Pool) -> None:
        await pool.request("GET", "/warm")
        async for data in pool.stream("/watch?x=1", read_timeout=5):
            got.append(data)
            if data == b'{"a":1}':
                sent.set()
        assert pool.opened == 2 and len(pool._idle) == 1  # the stream's connection was not pooled

    run(handler, test)
    assert got == [b"", b'{"a":1}', b'\n{"b":2}']


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcde", [b"", b"abcde"]),
        (b"HTTP/1.1 200 OK\r\n\r\nuntil close", [b"", b"until close"]),
    ],
)
def test_a_stream_by_length_or_until_the_server_closes(reply: bytes, expected: list[bytes]) -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, head: bytes, body: bytes) -> bool:
        w.write(reply)
        return False

    async def test(pool: Http1Pool) -> None:
        assert [d async for d in pool.stream("/s", read_timeout=5)] == expected

    run(handler, test)


def test_a_stream_answered_with_an_error_status_raises_it_with_the_body() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, head: bytes, body: bytes) -> bool:
        w.write(answer(b'{"code":410}', status="410 Gone"))
        return True

    async def test(pool: Http1Pool) -> None:
        with pytest.raises(StatusError) as err:
            async for _ in pool.stream("/s", read_timeout=5):
                pass
        assert (err.value.status, err.value.body) == (410, b'{"code":410}')

    run(handler, test)


def test_a_silent_stream_times_out_and_a_cut_one_is_a_disconnect() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, head: bytes, body: bytes) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        if head.startswith(b"GET /cut"):
            w.write(b"5\r\nab")  # half a chunk, then the connection ends
            return False
        await asyncio.sleep(5)
        return False

    async def test(pool: Http1Pool) -> None:
        got: list[bytes] = []
        with pytest.raises(TimeoutError):
            async for data in pool.stream("/silent", read_timeout=0.3):
                got.append(data)
        assert got == [b"", b"abc"]
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async for _ in pool.stream("/cut", read_timeout=5):
                pass

    run(handler, test)


def test_a_stream_joins_the_chunks_that_came_together_and_reassembles_a_large_one() -> None:
    big = b"x" * 200_000

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, head: bytes, body: bytes) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n2\r\ncd\r\n")
        await w.drain()
        await asyncio.sleep(0.05)
        framed = b"%x\r\n" % len(big) + big + b"\r\n0\r\n\r\n"
        for i in range(0, len(framed), 7000):  # the large chunk in many pieces
            w.write(framed[i : i + 7000])
            await w.drain()
        return False

    async def test(pool: Http1Pool) -> None:
        got = [d async for d in pool.stream("/s", read_timeout=5)]
        assert got[:2] == [b"", b"abcd"] and b"".join(got[2:]) == big and len(got) == 3

    run(handler, test)


def test_a_slow_consumer_is_not_a_silent_stream() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, head: bytes, body: bytes) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n1\r\nb\r\n0\r\n\r\n")
        return False

    async def test(pool: Http1Pool) -> None:
        got = []
        async for data in pool.stream("/s", read_timeout=0.2):
            got.append(data)
            await asyncio.sleep(0.5)  # longer than the read timeout, between reads
        assert b"".join(got) == b"ab"
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]

    run(handler, test)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Le", aiohttp.ServerDisconnectedError),  # cut in the head
        (b"HTTP/1.1 200 OK\r\n" + b"A: b\r\n" * 101 + b"\r\n", ProtocolError),
        (b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", ProtocolError),
    ],
)
def test_a_bad_or_cut_head_is_an_error_and_the_connection_is_dropped(
    reply: bytes, error: type[Exception]
) -> None:
    served = 0

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, head: bytes, body: bytes) -> bool:
        nonlocal served
        served += 1
        w.write(reply)
        return False

    async def test(pool: Http1Pool) -> None:
        with pytest.raises(error):
            await pool.request("GET", "/x")
        assert pool._idle == []

    run(handler, test)
    assert served == 1


def test_the_chunk_decoder_byte_by_byte_with_trailers_and_its_refusals() -> None:
    from batchyard.adapters.http1 import _ChunkDecoder

    body = b"3;ext=x\r\nabc\r\n0\r\nTrailer: t\r\n\r\n"
    decoder, got = _ChunkDecoder(), []
    for i in range(len(body)):  # fed one byte at a time: every state split anywhere
        got += decoder.feed(body[i : i + 1])
        assert decoder.done == (i == len(body) - 1)
    assert got == [b"abc"] and not decoder.buffer
    for bad in (b"3\r\nabcXY", b"zz\r\n", b"1" * 2000):
        with pytest.raises(ProtocolError):
            _ChunkDecoder().feed(bad)
