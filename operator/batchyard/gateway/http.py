"""The gateway's HTTP/1.1 server: one asyncio protocol, keep-alive, bodies by Content-Length.

Why this exists: every AWS SDK speaks the Batch API as short JSON requests with a
Content-Length, on kept-alive connections. aiohttp's server (request objects, multidicts,
routing, response objects, payload writers) was a sixth of the gateway's CPU per SubmitJob
(py-spy, bench/RESULTS.md), more than the work the request asks for. Here a request is parsed
from the bytes as they arrive and answered with one write.

What it refuses, in AWS's error shape, before any handler runs: a head over 64 KiB or 100
header lines (431), a malformed request line or header (400), a Transfer-Encoding (411: every
AWS SDK sends a Content-Length; refusing it also rules out request smuggling between a proxy
and us), several different Content-Lengths (400), a body over the handler's limit (413). Each
of these closes the connection, as the rest of its bytes cannot be trusted.

Timeouts: a request's head and body must arrive within ``read_timeout`` seconds of its first
byte (a slow client cannot hold a connection open by trickling bytes), and a kept-alive
connection idle for ``keepalive_timeout`` seconds is closed. Requests on one connection are
answered in order, one at a time (pipelined requests wait; beyond one request's worth of bytes
reading pauses until the answer is written); a handler runs to
its end even if the client goes away, so a SubmitJob is never half-done because of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import cast

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADER_LINES = 100
READ_TIMEOUT = 60.0
KEEPALIVE_TIMEOUT = 75.0


class Headers(Mapping[str, str]):
    """Request headers by lower-case name (HTTP names are case-insensitive); a repeated header's
    values joined with ", " as RFC 9110 allows."""

    __slots__ = ("_d",)

    def __init__(self, items: dict[str, str]) -> None:
        self._d = items

    def __getitem__(self, name: str) -> str:
        return self._d[name.lower()]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._d.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._d

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)


@dataclass
class Request:
    method: str
    target: str  # the request target exactly as received: path and query, still percent-encoded
    headers: Headers
    body: bytes = b""
    scheme: str = "http"

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query_string(self) -> str:
        return self.target.partition("?")[2]

    @property
    def host(self) -> str:
        return self.headers.get("Host") or ""


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


Handler = Callable[[Request], Awaitable[Answer]]
# The answer to a request refused before its handler runs: (status, message) -> Answer.
Refusal = Callable[[int, str], Answer]


def plain_refusal(status: int, message: str) -> Answer:
    return Answer(status, json.dumps({"message": message}).encode())


_REASONS = {s.value: s.phrase for s in HTTPStatus}
_date_cache: tuple[int, bytes] = (0, b"")


def _date() -> bytes:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode("ascii"))
    return _date_cache[1]


def encode(answer: Answer, keep_alive: bool, head_only: bool = False) -> bytes:
    """The answer's bytes; ``head_only`` for a HEAD request (its length, never its body)."""
    head = [
        b"HTTP/1.1 %d %s\r\n" % (answer.status, _REASONS.get(answer.status, "Unknown").encode("ascii")),
        b"Content-Type: %s\r\nContent-Length: %d\r\nDate: %s\r\n"
        % (answer.content_type.encode("latin-1"), len(answer.body), _date()),
    ]
    for k, v in answer.headers.items():
        head.append(f"{k}: {v}\r\n".encode("latin-1"))
    if not keep_alive:
        head.append(b"Connection: close\r\n")
    head.append(b"\r\n")
    return b"".join(head) + (b"" if head_only else answer.body)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_head(head: bytes) -> tuple[str, str, bool, dict[str, str]]:
    """(method, target, HTTP/1.1, headers by lower-case name) of a request head without its
    final blank line; _BadRequest when it is not HTTP/1.x as RFC 9112 writes it."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if (
        len(parts) != 3
        or not parts[0].isalpha()
        or not parts[1]
        or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0")
    ):
        raise _BadRequest(400, "Malformed HTTP request line")
    if len(lines) - 1 > MAX_HEADER_LINES:
        raise _BadRequest(431, f"More than {MAX_HEADER_LINES} header lines")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or b" " in name or b"\t" in name:
            # No colon, an empty name, or whitespace in or around it (which also refuses the
            # obsolete line folding: a line that starts with whitespace).
            raise _BadRequest(400, "Malformed HTTP header line")
        key = name.decode("latin-1").lower()
        text = value.strip(b" \t").decode("latin-1")
        if key in headers:
            if key in ("content-length", "host"):
                if headers[key] != text:
                    raise _BadRequest(400, f"Conflicting {name.decode('latin-1')} headers")
                continue
            text = headers[key] + ", " + text
        headers[key] = text
    try:
        target = parts[1].decode("ascii")
    except UnicodeDecodeError:
        raise _BadRequest(400, "Malformed HTTP request target") from None
    return parts[0].decode("ascii"), target, parts[2] == b"HTTP/1.1", headers


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False  # a request is being handled
        self.closed = False
        self.deadline: float | None = None  # loop time after which an idle or unfinished connection closes
        self.paused = False
        self.draining = 0  # bytes of a refused body still to read and drop before closing

    # --- transport events -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server.connections.add(self)
        self._arm(self.server.keepalive_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.deadline = None
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.draining:
            self.draining -= min(len(data), self.draining)
            if not self.draining and self.transport is not None:
                self.transport.close()
            return
        if not self.buffer and not self.busy:
            self._arm(self.server.read_timeout)  # a new request begins: its bytes have a deadline
        self.buffer += data
        if not self.busy:
            self._next()
        elif len(self.buffer) > MAX_HEAD_BYTES + self.server.max_body and self.transport is not None:
            # Requests pipelined behind the one in flight: read no more until it is answered.
            self.transport.pause_reading()
            self.paused = True

    def eof_received(self) -> bool:
        return False  # the client closed its side: close ours (after any answer in flight is written)

    # --- requests -----------------------------------------------------------------------------------

    def _next(self) -> None:
        """Start the next complete request in the buffer, if there is one."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                self._refuse(431, f"The request head is over {MAX_HEAD_BYTES // 1024} KiB")
            return
        if end > MAX_HEAD_BYTES:
            self._refuse(431, f"The request head is over {MAX_HEAD_BYTES // 1024} KiB")
            return
        try:
            method, target, http11, fields = parse_head(bytes(self.buffer[:end]))
            if "transfer-encoding" in fields:
                raise _BadRequest(411, "Transfer-Encoding is not supported: send a Content-Length")
            length_text = fields.get("content-length", "0")
            if not length_text.isdigit():
                raise _BadRequest(400, "Malformed Content-Length header")
            length = int(length_text)
        except _BadRequest as exc:
            self._refuse(exc.status, str(exc))
            return
        if length > self.server.max_body:
            # Read the body (and drop it) before closing: a client still sending it would
            # otherwise see a reset instead of the answer. The read timeout still bounds it.
            self._refuse(
                413,
                f"The request body of {length:,} bytes is over the limit of {self.server.max_body:,} bytes",
                drain=length - (len(self.buffer) - end - 4),
            )
            return
        start = end + 4
        if len(self.buffer) < start + length:
            if fields.get("expect", "").lower() == "100-continue" and len(self.buffer) == start:
                assert self.transport is not None
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return  # the body is still on its way
        body = bytes(self.buffer[start : start + length])
        del self.buffer[: start + length]
        connection = fields.get("connection", "").lower()
        keep = "close" not in connection if http11 else "keep-alive" in connection
        self.busy = True
        self.deadline = None
        task = asyncio.get_running_loop().create_task(
            self._run(Request(method, target, Headers(fields), body), keep)
        )
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)

    async def _run(self, request: Request, keep: bool) -> None:
        try:
            answer = await self.server.handler(request)
        except Exception as exc:  # the handler answers its own errors; this is the last resort
            answer = self.server.refusal(500, f"Internal error: {type(exc).__name__}")
        keep = keep and not self.server.closing
        if self.closed or self.transport is None:
            return
        self.transport.write(encode(answer, keep, head_only=request.method == "HEAD"))
        self.busy = False
        if not keep:
            self.transport.close()
            return
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        if self.buffer:
            self._arm(self.server.read_timeout)
            self._next()
        else:
            self._arm(self.server.keepalive_timeout)

    def _refuse(self, status: int, message: str, drain: int = 0) -> None:
        """Answer a request that cannot be read, and close: its remaining bytes mean nothing."""
        assert self.transport is not None
        self.busy = True
        self.buffer.clear()
        self.transport.write(encode(self.server.refusal(status, message), keep_alive=False))
        if drain > 0:
            self.draining = drain
        else:
            self.transport.close()

    # --- timeouts -----------------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        # A deadline, not a timer per request: the server's sweep closes what is past it.
        self.deadline = self.server.loop_time() + seconds

    def expire(self, now: float) -> None:
        if self.deadline is not None and now > self.deadline and (not self.busy or self.draining):
            self.deadline = None
            if self.transport is not None:
                self.transport.close()  # idle too long, or a request that never finished arriving


class HttpServer:
    """Serves ``handler`` on host:port. ``await start()``, then ``await cleanup()`` to stop."""

    def __init__(
        self,
        handler: Handler,
        max_body: int,
        refusal: Refusal = plain_refusal,
        read_timeout: float = READ_TIMEOUT,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    ) -> None:
        self.handler = handler
        self.max_body = max_body
        self.refusal = refusal
        self.read_timeout = read_timeout
        self.keepalive_timeout = keepalive_timeout
        self.connections: set[_Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.loop_time = time.monotonic

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.loop_time = loop.time
        self._server = await loop.create_server(lambda: _Connection(self), host, port)
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Close connections past their deadline, a few times per shortest timeout."""
        period = min(1.0, max(0.05, min(self.read_timeout, self.keepalive_timeout) / 4))
        while True:
            await asyncio.sleep(period)
            now = self.loop_time()
            for conn in list(self.connections):
                conn.expire(now)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def cleanup(self, grace: float = 30.0) -> None:
        """Stop accepting, let requests in flight finish (up to ``grace`` s), close every connection."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if not conn.busy and conn.transport is not None:
                conn.transport.close()
        if self.tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), grace)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        if self._server is not None:
            await self._server.wait_closed()
