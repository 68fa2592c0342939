"""A small HTTP/1.1 keep-alive client for the operator's and the gateway's unary API requests.

Why this exists: every request the operator and the gateway make to the API server is a short
JSON exchange on one host, and aiohttp's general client (URL objects, header multidicts, payload
registries, tracing hooks, response objects) was a fifth of the gateway's CPU per SubmitJob and
about as much of the operator's per API call (bench/RESULTS.md). Here a request is one write of
bytes and a response is a status, a few headers and a body read by Content-Length or chunks.
Watches use ``stream``: a connection of their own (never pooled, never counted against the
limit), the body's chunks handed over as they arrive.

What it does not do, because the API server never needs it: redirects, proxies, compression
(no Accept-Encoding is sent), 1xx answers other than 100, HTTP/2.

A pooled connection the server has closed is noticed before it is reused; a request that finds
it closed anyway is sent again on a new connection only when it is safe to repeat (not a POST)
and no byte of an answer came back. Any failure or cancellation closes the connection rather
than return it to the pool in an unknown state.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

IDLE_SECONDS = 30.0  # a pooled connection idle longer than this is closed, not reused
MAX_HEADER_LINES = 100
MAX_BODY_BYTES = 256 * 1024 * 1024  # a LIST of a large cluster; never more
REPEATABLE = frozenset({"GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"})


class ProtocolError(aiohttp.ClientError):
    """The server's answer is not HTTP/1.1 as this client reads it."""


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def usable(self, now: float) -> bool:
        return (
            not self.reader.at_eof() and not self.writer.is_closing() and now - self.idle_since < IDLE_SECONDS
        )

    def close(self) -> None:
        self.writer.close()


@dataclass
class _Progress:
    answered: bool = False  # a byte of the answer came back


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


class StatusError(aiohttp.ClientError):
    """A stream's request was answered with a status >= 300 (its body read whole)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


class Http1Pool:
    """Keep-alive connections to one server (``base``: scheme://host[:port][/prefix])."""

    def __init__(
        self,
        base: str,
        ssl: ssl_module.SSLContext | bool,
        headers: Mapping[str, str],
        limit: int = 32,
    ) -> None:
        url = urlsplit(base)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) server address: {base!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/")
        if url.scheme == "https":
            self.ssl: ssl_module.SSLContext | None = (
                ssl if isinstance(ssl, ssl_module.SSLContext) else ssl_module.create_default_context()
            )
            if ssl is False:
                self.ssl.check_hostname = False
                self.ssl.verify_mode = ssl_module.CERT_NONE
        else:
            self.ssl = None
        host = self.host if ":" not in self.host else f"[{self.host}]"
        default_port = 443 if url.scheme == "https" else 80
        authority = host if self.port == default_port else f"{host}:{self.port}"
        lines = [f"Host: {authority}"] + [f"{k}: {v}" for k, v in headers.items() if k.lower() != "host"]
        self._head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(limit)
        self.opened = 0  # connections opened (tests, and keep-alive checks)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    async def _connect(self) -> _Conn:
        try:
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.ssl else None
            )
        except (OSError, ssl_module.SSLError) as err:
            raise aiohttp.ClientConnectionError(f"cannot connect to {self.host}:{self.port}: {err}") from err
        self.opened += 1
        return _Conn(reader, writer)

    def _take_idle(self) -> _Conn | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.usable(now):
                return conn
            conn.close()
        return None

    async def request(
        self, method: str, target: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Response:
        """``target``: the path and query, e.g. ``/api/v1/pods?limit=5``."""
        head = [f"{method} {self.prefix}{target} HTTP/1.1\r\n".encode("latin-1"), self._head]
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}\r\n".encode("latin-1"))
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head.append(b"Content-Length: %d\r\n" % len(body or b""))
        head.append(b"\r\n")
        message = b"".join(head) + (body or b"")
        async with self._slots:
            for attempt in (0, 1):
                conn = self._take_idle()
                reused = conn is not None
                if conn is None:
                    conn = await self._connect()
                progress = _Progress()
                try:
                    conn.writer.write(message)
                    status, keep, data = await _read_response(conn.reader, method, progress)
                except (OSError, EOFError, asyncio.IncompleteReadError, ssl_module.SSLError) as err:
                    conn.close()
                    if reused and not progress.answered and attempt == 0 and method in REPEATABLE:
                        continue  # the server had closed the kept connection: once more, anew
                    raise aiohttp.ServerDisconnectedError(f"{method} {target}: {err!r}") from err
                except BaseException:  # a timeout, a cancellation, a ProtocolError
                    conn.close()
                    raise
                if keep:
                    conn.idle_since = time.monotonic()
                    self._idle.append(conn)
                else:
                    conn.close()
                return Response(status, data)
        raise AssertionError("unreachable")  # pragma: no cover

    async def stream(self, target: str, read_timeout: float) -> AsyncIterator[bytes]:
        """GET ``target`` on a connection of its own and yield the body's data as it arrives
        (chunked or by length), until the server ends it; then the connection is closed.
        The first item is b"" once the answer's head says 2xx (the stream is open). An answer
        >= 300 raises StatusError with its body; no data for ``read_timeout`` seconds (or no
        connection within it) raises TimeoutError."""
        async with asyncio.timeout(read_timeout):
            conn = await self._connect()
        try:
            conn.writer.write(
                f"GET {self.prefix}{target} HTTP/1.1\r\n".encode("latin-1") + self._head + b"\r\n"
            )
            async with asyncio.timeout(read_timeout):
                status, length, chunked, _ = await _read_head(conn.reader, _Progress())
            if status >= 300:
                async with asyncio.timeout(read_timeout):
                    body = await _read_body(conn.reader, "GET", status, length, chunked)
                raise StatusError(status, body)
            yield b""
            async for data in _body_stream(conn.reader, length, chunked, read_timeout):
                yield data
        except TimeoutError:
            raise  # an OSError too, since 3.11: not a disconnect
        except (OSError, EOFError, asyncio.IncompleteReadError, ssl_module.SSLError) as err:
            raise aiohttp.ServerDisconnectedError(f"watch {target}: {err!r}") from err
        finally:
            conn.close()


class _IdleWatch:
    """Cancels the reading task when a read has waited ``seconds`` with no data.

    One timer per period, re-armed lazily, instead of a timeout per read (asyncio.timeout
    armed per chunk was a tenth of a watch's cost). Only a read in progress is cancelled;
    the time the consumer spends between reads never counts."""

    def __init__(self, seconds: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.seconds = seconds
        self.since = self.loop.time()  # the current read began, or data last came
        self.reading = False
        self.expired = False
        self.handle = self.loop.call_later(seconds, self._check)

    def _check(self) -> None:
        waited = self.loop.time() - self.since
        if self.reading and waited >= self.seconds and self.task is not None:
            self.expired = True
            self.task.cancel()
        else:
            self.handle = self.loop.call_later(
                max(self.seconds - waited, 0.01) if self.reading else self.seconds, self._check
            )

    async def read(self, reader: asyncio.StreamReader) -> bytes:
        self.since = self.loop.time()
        self.reading = True
        try:
            return await reader.read(65536)
        except asyncio.CancelledError:
            if self.expired and self.task is not None and self.task.uncancel() == 0:
                raise TimeoutError(f"no data for {self.seconds:g} s") from None
            raise
        finally:
            self.reading = False

    def close(self) -> None:
        self.handle.cancel()


async def _body_stream(
    reader: asyncio.StreamReader, length: int | None, chunked: bool, read_timeout: float
) -> AsyncIterator[bytes]:
    """A body's data as it arrives: the payload of every whole chunk received so far in one
    piece, or the bytes by length, or until the server closes."""
    watch = _IdleWatch(read_timeout)
    decoder = _ChunkDecoder()
    try:
        while True:
            data = await watch.read(reader)
            if not chunked:
                if not data:
                    if length:
                        raise asyncio.IncompleteReadError(b"", length)
                    return  # the body ends when the server closes
                if length is not None:
                    data = data[:length]
                    length -= len(data)
                yield data
                if length == 0:
                    return
                continue
            if not data:
                raise asyncio.IncompleteReadError(b"", None)
            out = decoder.feed(data)
            if out:
                yield b"".join(out)
            if decoder.done:
                return
    finally:
        watch.close()


async def _read_response(
    reader: asyncio.StreamReader, method: str, progress: _Progress
) -> tuple[int, bool, bytes]:
    """(status, keep the connection, body)."""
    status, length, chunked, keep = await _read_head(reader, progress)
    if length is None and not chunked and not (method == "HEAD" or status in (204, 304)):
        keep = False  # no length given: the body ends when the server closes
    return status, keep, await _read_body(reader, method, status, length, chunked)


async def _read_head(reader: asyncio.StreamReader, progress: _Progress) -> tuple[int, int | None, bool, bool]:
    """(status, Content-Length or None, chunked, keep the connection) of the final answer."""
    while True:
        # The whole head in one read (the API server's answers carry 6-8 header lines).
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as err:
            if not err.partial:
                raise EOFError("the server closed the connection before answering") from None
            progress.answered = True
            raise
        except asyncio.LimitOverrunError:
            progress.answered = True
            raise ProtocolError("an answer head over the reader's limit") from None
        progress.answered = True
        line, *headers = head[:-4].split(b"\r\n")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP/1.1 status line: {line[:80]!r}")
        if len(headers) > MAX_HEADER_LINES:
            raise ProtocolError("too many header lines")
        status = int(parts[1])
        keep = parts[0] == b"HTTP/1.1"
        length: int | None = None
        chunked = False
        for header in headers:
            name, sep, value = header.partition(b":")
            if not sep:
                raise ProtocolError(f"malformed header line: {header[:80]!r}")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value.strip())
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif key == b"connection":
                token = value.strip().lower()
                keep = token != b"close" if keep else token == b"keep-alive"
        if 100 <= status < 200:
            continue  # 100 Continue: the real answer follows
        return status, length, chunked, keep


async def _read_body(
    reader: asyncio.StreamReader, method: str, status: int, length: int | None, chunked: bool
) -> bytes:
    if method == "HEAD" or status in (204, 304):
        return b""
    if chunked:
        return await _read_chunks(reader)
    if length is not None:
        if length > MAX_BODY_BYTES:
            raise ProtocolError(f"a body of {length} bytes is too large")
        return await reader.readexactly(length)
    data = await reader.read()  # no length given: the body ends when the server closes
    if len(data) > MAX_BODY_BYTES:
        raise ProtocolError(f"a body over {MAX_BODY_BYTES} bytes")
    return data


async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
    """A whole chunked body, read up to and including its last line, so that the kept
    connection is left at the start of the next answer."""
    decoder = _ChunkDecoder()
    parts: list[bytes] = []
    total = 0
    while not decoder.done:
        data = await reader.read(65536)
        if not data:
            raise asyncio.IncompleteReadError(b"", None)
        for part in decoder.feed(data):
            total += len(part)
            if total > MAX_BODY_BYTES:
                raise ProtocolError(f"a chunked body over {MAX_BODY_BYTES} bytes")
            parts.append(part)
    if decoder.buffer:
        raise ProtocolError("bytes after the end of a chunked body")  # the pool closes it
    return b"".join(parts)


class _ChunkDecoder:
    """Chunked transfer coding (RFC 9112, 7.1), fed bytes as they arrive: ``feed`` returns the
    data of every chunk completed so far; ``done`` once the last chunk and its trailer section
    (skipped) are read. One decoder for whole bodies and for watch streams."""

    MAX_LINE = 1024

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.pending = -1  # bytes of the current chunk's data (-1: a size line is next)
        self.trailers = False  # the last chunk came: trailer lines until an empty one
        self.done = False

    def _line(self) -> bytes | None:
        end = self.buffer.find(b"\r\n")
        if end < 0:
            if len(self.buffer) > self.MAX_LINE:
                raise ProtocolError("a chunk size or trailer line over 1 KiB")
            return None
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        out: list[bytes] = []
        while not self.done:
            if self.trailers:
                line = self._line()
                if line is None:
                    break
                self.done = not line
            elif self.pending < 0:
                line = self._line()
                if line is None:
                    break
                try:
                    self.pending = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ProtocolError(f"malformed chunk size: {line[:40]!r}") from None
                if self.pending == 0:
                    self.trailers = True
            else:
                if len(self.buffer) < self.pending + 2:
                    break
                if self.buffer[self.pending : self.pending + 2] != b"\r\n":
                    raise ProtocolError("a chunk's data does not end with CRLF")
                out.append(bytes(self.buffer[: self.pending]))
                del self.buffer[: self.pending + 2]
                self.pending = -1
        return out
