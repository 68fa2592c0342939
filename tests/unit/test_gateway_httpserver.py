"""gateway.http against raw sockets, byte for byte: keep-alive, pipelining, bodies split across
reads, 100-continue, every refusal (and that the refused connection is closed), the timeouts,
a handler's failure, and a shutdown that lets a request in flight finish."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from batchyard.gateway.http import MAX_HEADER_LINES, Answer, Headers, HttpServer, Request, parse_head

Seen = list[Request]


async def echo(seen: Seen, request: Request) -> Answer:
    seen.append(request)
    return Answer(200, json.dumps({"method": request.method, "target": request.target,
                                   "body": request.body.decode()}).encode(), {"X-Seen": str(len(seen))})  # fmt: skip


async def started(handler: Callable[[Request], Awaitable[Answer]], **kw: float) -> AsyncIterator[HttpServer]:
    server = HttpServer(handler, max_body=1024, **kw)
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.cleanup(grace=5)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    return status, headers, body


async def closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), 5) == b""


def run(test: Callable[[HttpServer, Seen], Awaitable[None]], **kw: float) -> Seen:
    seen: Seen = []

    async def main() -> None:
        async for server in started(lambda r: echo(seen, r), **kw):
            await test(server, seen)

    asyncio.run(main())
    return seen


def post(target: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def test_keep_alive_answers_two_requests_on_one_connection() -> None:
    async def test(server: HttpServer, seen: Seen) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for n in (1, 2):
            writer.write(post("/v1/submitjob?a=%2F", b'{"n":%d}' % n))
            status, headers, body = await read_answer(reader)
            assert (status, headers["x-seen"], headers["content-type"]) == (200, str(n), "application/json")
            assert json.loads(body)["body"] == f'{{"n":{n}}}'
            assert "connection" not in headers and "date" in headers
        writer.close()

    seen = run(test)
    assert [r.target for r in seen] == ["/v1/submitjob?a=%2F"] * 2
    assert seen[0].path == "/v1/submitjob" and seen[0].query_string == "a=%2F" and seen[0].host == "x"


def test_pipelined_requests_are_answered_in_order_and_a_body_may_arrive_in_pieces() -> None:
    async def test(server: HttpServer, seen: Seen) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        both = post("/a", b"first") + post("/b", b"second")
        for i in range(0, len(both), 7):  # in small pieces, the second request mid-way
            writer.write(both[i : i + 7])
            await writer.drain()
            await asyncio.sleep(0)
        assert json.loads((await read_answer(reader))[2])["target"] == "/a"
        assert json.loads((await read_answer(reader))[2])["body"] == "second"
        writer.close()

    assert [r.body for r in run(test)] == [b"first", b"second"]


def test_expect_100_continue_gets_its_interim_answer() -> None:
    async def test(server: HttpServer, seen: Seen) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"ok")
        assert (await read_answer(reader))[0] == 200
        writer.close()

    assert [r.body for r in run(test)] == [b"ok"]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 411),
        (b"POST /x HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", 400),
        (b"POST /x HTTP/1.1\r\nContent-Length: -2\r\n\r\nok", 400),
        (b"POST /x HTTP/1.1\r\nContent-Length: 0x2\r\n\r\nok", 400),
        (b"GET /x HTTP/2.0\r\n\r\n", 400),
        (b"GET  /x HTTP/1.1\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nNo-Colon\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400),
        (b"GET /\xff HTTP/1.1\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\n" + b"A: b\r\n" * (MAX_HEADER_LINES + 1) + b"\r\n", 431),
        (b"GET /x HTTP/1.1\r\nA: " + b"b" * (70 * 1024) + b"\r\n\r\n", 431),
        (b"GET /x HTTP/1.1\r\nA: " + b"b" * (70 * 1024), 431),  # no end of head in sight
    ],
)
def test_a_request_that_cannot_be_read_is_refused_and_its_connection_closed(
    request_bytes: bytes, status: int
) -> None:
    async def test(server: HttpServer, seen: Seen) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request_bytes + post("/after", b"smuggled"))
        got, headers, body = await read_answer(reader)
        assert (got, headers["connection"]) == (status, "close")
        assert json.loads(body)["message"]
        assert await closed(reader)
        writer.close()

    assert run(test) == []  # no handler ran: neither the refused request nor what followed it


def test_an_oversized_body_is_read_and_dropped_so_the_client_gets_the_answer() -> None:
    async def test(server: HttpServer, seen: Seen) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(post("/x", b"y" * 4096))
        await writer.drain()
        status, headers, body = await read_answer(reader)
        assert (status, headers["connection"]) == (413, "close")
        assert (
            json.loads(body)["message"] == "The request body of 4,096 bytes is over the limit of 1,024 bytes"
        )
        assert await closed(reader)
        writer.close()

    assert run(test) == []


def test_connection_close_and_http_1_0_close_after_the_answer() -> None:
    async def test(server: HttpServer, seen: Seen) -> None:
        for request in (
            post("/x", b"", "Connection: close\r\n"),
            b"GET /x HTTP/1.0\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(request)
            status, headers, _ = await read_answer(reader)
            assert (status, headers["connection"]) == (200, "close")
            assert await closed(reader)
            writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert "connection" not in (await read_answer(reader))[1]  # HTTP/1.0 may ask to keep it
        writer.close()

    assert len(run(test)) == 3


def test_an_idle_connection_and_a_trickling_request_are_closed_by_their_timeouts() -> None:
    async def test(server: HttpServer, seen: Seen) -> None:
        idle_reader, idle = await asyncio.open_connection("127.0.0.1", server.port)
        slow_reader, slow = await asyncio.open_connection("127.0.0.1", server.port)
        slow.write(b"POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")  # never finished
        assert await closed(idle_reader) and await closed(slow_reader)
        idle.close()
        slow.close()

    assert run(test, read_timeout=0.3, keepalive_timeout=0.3) == []


def test_a_failing_handler_is_a_500_and_the_connection_lives_on() -> None:
    calls: list[str] = []

    async def handler(request: Request) -> Answer:
        calls.append(request.target)
        if request.target == "/boom":
            raise RuntimeError("bug")
        return Answer(200, b"{}")

    async def main() -> None:
        async for server in started(handler):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /boom HTTP/1.1\r\n\r\n")
            status, _, body = await read_answer(reader)
            assert status == 500 and "RuntimeError" in json.loads(body)["message"]
            writer.write(b"GET /fine HTTP/1.1\r\n\r\n")
            assert (await read_answer(reader))[0] == 200
            writer.close()

    asyncio.run(main())
    assert calls == ["/boom", "/fine"]


def test_shutdown_lets_the_request_in_flight_finish_and_answers_it() -> None:
    release = asyncio.Event()
    entered = asyncio.Event()
    finished: list[str] = []

    async def handler(request: Request) -> Answer:
        entered.set()
        await release.wait()
        finished.append(request.target)
        return Answer(200, b"{}")

    async def main() -> None:
        server = HttpServer(handler, max_body=1024)
        await server.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /submit HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        await asyncio.wait_for(entered.wait(), 5)
        stopping = asyncio.ensure_future(server.cleanup(grace=5))
        await asyncio.sleep(0.05)
        assert not stopping.done()
        release.set()
        status, headers, _ = await read_answer(reader)
        assert (status, headers["connection"]) == (200, "close")  # answered, then closed
        await asyncio.wait_for(stopping, 5)
        writer.close()

    asyncio.run(main())
    assert finished == ["/submit"]


def test_headers_are_case_insensitive_and_repeats_are_joined() -> None:
    method, target, http11, fields = parse_head(
        b"GET /v1/tags/arn%3Aaws HTTP/1.1\r\nX-Amz-Date: 1\r\nAccept: a\r\naccept: b\r\nHost: h\r\nHOST: h"
    )
    headers = Headers(fields)
    assert (method, target, http11) == ("GET", "/v1/tags/arn%3Aaws", True)
    assert headers["x-amz-date"] == headers.get("X-AMZ-DATE") == "1"
    assert headers["Accept"] == "a, b" and headers["host"] == "h" and "HOST" in headers
    assert headers.get("missing") is None and len(headers) == 3


def test_pipelined_bytes_beyond_one_request_pause_reading_until_the_answer() -> None:
    release = asyncio.Event()
    targets: list[str] = []

    async def handler(request: Request) -> Answer:
        targets.append(request.target)
        await release.wait()
        return Answer(200, b"{}")

    async def main() -> None:
        async for server in started(handler):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            count = 3000  # about 90 KiB behind the first request: over 64 KiB of head + 1 KiB of body
            writer.write(b"".join(post(f"/{n}", b"x") for n in range(count)))
            (conn,) = server.connections
            async with asyncio.timeout(5):
                while not conn.paused:
                    await asyncio.sleep(0.01)
            assert targets == ["/0"]
            release.set()
            for _ in range(count):
                assert (await read_answer(reader))[0] == 200
            assert not conn.paused
            writer.close()

    asyncio.run(main())
    assert targets == [f"/{n}" for n in range(3000)]


def test_a_head_request_gets_the_length_but_no_body() -> None:
    async def test(server: HttpServer, seen: Seen) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"HEAD /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: " in head
        status, _, body = await read_answer(reader)  # the next answer follows the head at once
        assert status == 200 and json.loads(body)["target"] == "/y"
        writer.close()

    assert [r.method for r in run(test)] == ["HEAD", "GET"]
