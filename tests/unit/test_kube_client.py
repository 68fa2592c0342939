"""The client boundary (adapters.kube) against a real local HTTP server: typed errors, the
per-request timeout, re-authentication after a 401, and jittered backoff."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from batchyard.adapters.kube import (
    ApiError,
    Conflict,
    Credentials,
    Forbidden,
    Gone,
    Invalid,
    Kube,
    NotFound,
    RequestTimeout,
    ServerError,
    TooManyRequests,
    Unauthorized,
    backoff_seconds,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def creds(url: str, token: str = "old") -> Credentials:
    return Credentials(server=url, headers={"Authorization": f"Bearer {token}"}, ssl=False)


def status_body(code: int, reason: str) -> dict[str, Any]:
    return {"kind": "Status", "code": code, "reason": reason, "message": f"it is {reason}"}


@pytest.mark.parametrize(
    ("code", "reason", "cls"),
    [
        pytest.param(404, "NotFound", NotFound, id="404 is NotFound"),
        pytest.param(409, "AlreadyExists", Conflict, id="409 AlreadyExists is Conflict"),
        pytest.param(400, "BadRequest", Invalid, id="400 is Invalid"),
        pytest.param(422, "Invalid", Invalid, id="422 is Invalid"),
        pytest.param(403, "Forbidden", Forbidden, id="403 is Forbidden"),
        pytest.param(410, "Expired", Gone, id="410 is Gone"),
        pytest.param(429, "TooManyRequests", TooManyRequests, id="429 is TooManyRequests"),
        pytest.param(500, "InternalError", ServerError, id="500 is ServerError"),
        pytest.param(503, "ServiceUnavailable", ServerError, id="503 is ServerError"),
        pytest.param(418, "Teapot", ApiError, id="an unclassified status stays a plain ApiError"),
    ],
)
def test_each_error_status_raises_its_typed_error_which_keeps_status_and_reason(
    code: int, reason: str, cls: type[ApiError]
) -> None:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.json_response(status_body(code, reason), status=code)

    async def main() -> None:
        async with server(handler) as url:
            kube = Kube(creds(url))
            try:
                with pytest.raises(cls) as caught:
                    await kube.get("/api/v1/namespaces/ns/pods/p")
            finally:
                await kube.close()
        assert type(caught.value) is cls
        assert isinstance(caught.value, ApiError)  # old `except ApiError` callers still work
        assert caught.value.status == code and caught.value.reason == reason
        assert kube.errors["get"] == 1

    asyncio.run(main())


def test_a_request_that_hangs_fails_with_a_timeout_instead_of_stalling_the_cycle() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def handler(_: web.Request) -> web.StreamResponse:
            await release.wait()  # the API server never answers (until the test ends)
            return web.json_response({})

        async with server(handler) as url:
            kube = Kube(creds(url), request_timeout=0.2)
            try:
                with pytest.raises(RequestTimeout) as caught:
                    await asyncio.wait_for(kube.create("/api/v1/namespaces/ns/pods", {}), timeout=10)
            finally:
                release.set()
                await kube.close()
        assert isinstance(caught.value, ApiError)
        assert "0.2 s" in str(caught.value)

    asyncio.run(main())


def test_a_401_reloads_the_credentials_and_retries_once() -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        seen.append(auth)
        if auth != "Bearer rotated":
            return web.json_response(status_body(401, "Unauthorized"), status=401)
        return web.json_response({"kind": "Pod", "metadata": {"name": "p"}})

    async def main() -> None:
        async with server(handler) as url:

            async def reload() -> Credentials:
                return creds(url, "rotated")  # the projected token was rotated on disk

            kube = Kube(creds(url), reload=reload)
            try:
                got = await kube.get("/api/v1/namespaces/ns/pods/p")
            finally:
                await kube.close()
        assert got["metadata"]["name"] == "p"
        assert seen == ["Bearer old", "Bearer rotated"]
        assert kube.reloads == 1

    asyncio.run(main())


def test_a_401_that_survives_the_reload_is_raised_after_exactly_one_retry() -> None:
    calls: list[int] = []

    async def handler(_: web.Request) -> web.StreamResponse:
        calls.append(1)
        return web.json_response(status_body(401, "Unauthorized"), status=401)

    async def main() -> None:
        async with server(handler) as url:

            async def reload() -> Credentials:
                return creds(url, "still-bad")

            kube = Kube(creds(url), reload=reload)
            try:
                with pytest.raises(Unauthorized):
                    await kube.get("/api/v1/nodes")
            finally:
                await kube.close()
        assert len(calls) == 2

    asyncio.run(main())


def test_a_watch_opened_with_an_expired_token_reauthenticates() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != "Bearer rotated":
            return web.json_response(status_body(401, "Unauthorized"), status=401)
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b'{"type": "ADDED", "object": {"metadata": {"name": "p"}}}\n')
        await resp.write_eof()
        return resp

    async def main() -> list[dict[str, Any]]:
        async with server(handler) as url:

            async def reload() -> Credentials:
                return creds(url, "rotated")

            kube = Kube(creds(url), reload=reload)
            try:
                return [e async for e in kube.watch("/api/v1/pods", {}, "1")]
            finally:
                await kube.close()

    events = asyncio.run(main())
    assert [e["object"]["metadata"]["name"] for e in events] == ["p"]


@pytest.mark.parametrize("attempt", [0, 1, 3, 10, 100])
def test_backoff_has_jitter_within_half_to_full_of_the_capped_delay(attempt: int) -> None:
    ceiling = min(0.2 * 2**attempt, 5.0)
    rng = random.Random(attempt)
    delays = {backoff_seconds(attempt, rng=rng) for _ in range(50)}
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(delays) > 1  # not a fixed delay: replicas don't retry in lockstep
