"""One async Kubernetes client for the operator and the gateway: raw JSON, counted per verb.

Credentials come from kubernetes_asyncio's loaders (in-cluster service account, or a kubeconfig
with tokens, client certificates or exec plugins). Requests go through our HTTP/1.1 keep-alive
client (``adapters.http1``), watches on connections of their own, because the operator only
ever needs plain JSON dicts and every call is counted for the API-writes benchmark and the
metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from batchyard.adapters.http1 import Http1Pool, StatusError
from batchyard.adapters.metrics import count_api_call
from batchyard.apierrors import (
    ApiError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    RequestTimeout,
    ServerError,
    TooManyRequests,
    Unauthorized,
    api_error,
)

# Re-exported: callers import the typed errors from the client module.
__all__ = [
    "ApiError",
    "Conflict",
    "Credentials",
    "Forbidden",
    "Gone",
    "Invalid",
    "Kube",
    "NotFound",
    "RequestTimeout",
    "ServerError",
    "TooManyRequests",
    "Unauthorized",
    "load_credentials",
    "sleep_backoff",
]

MERGE_PATCH = "application/merge-patch+json"
# Characters a request path keeps as they are (as aiohttp's URL quoting keeps them); a name with
# anything else is percent-encoded.
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"

# Every request but a watch ends within this many seconds (aiohttp's own default is 300 s, so one
# hung call would stall a whole scheduling cycle). Watches keep their long server-side timeout.
DEFAULT_REQUEST_TIMEOUT = 30.0

log = logging.getLogger("batchyard.kube")


@dataclass
class Credentials:
    server: str
    headers: dict[str, str]
    ssl: ssl.SSLContext | bool


async def load_credentials() -> Credentials:
    """In-cluster when running in a pod, else KUBECONFIG / ~/.kube/config."""
    from kubernetes_asyncio import client, config

    cfg = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        # The library reads $KUBECONFIG at import time; read it now instead.
        await config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=cfg)
    headers: dict[str, str] = {}
    token = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
    if token:
        prefix = cfg.api_key_prefix.get("authorization", "")
        headers["Authorization"] = token if token.startswith("Bearer") else f"{prefix or 'Bearer'} {token}"
    ctx: ssl.SSLContext | bool
    if cfg.verify_ssl:
        ctx = (
            ssl.create_default_context(cafile=cfg.ssl_ca_cert)
            if cfg.ssl_ca_cert
            else ssl.create_default_context()
        )
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    return Credentials(server=str(cfg.host).rstrip("/"), headers=headers, ssl=ctx)


@dataclass
class Kube:
    """The operator's API client. `calls` counts requests by verb (get, list, watch, create, ...).

    Every request has a timeout (`request_timeout`; watches keep their own, longer one). A 401
    reloads the credentials once through `reload` (a rotated service-account token, a kubeconfig
    exec plugin's fresh token) and retries the request once. Non-2xx answers raise the typed
    errors of `batchyard.apierrors` (NotFound, Conflict, Invalid, ...), all subclasses of ApiError.
    """

    creds: Credentials
    pool: Http1Pool | None = None  # every request, watches on connections of their own
    calls: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    reload: Callable[[], Awaitable[Credentials]] | None = None
    reloads: int = 0  # credentials reloaded after a 401 (for tests and logs)

    @classmethod
    async def connect(cls, request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> Kube:
        return cls(await load_credentials(), request_timeout=request_timeout, reload=load_credentials)

    def _pool(self) -> Http1Pool:
        """Every request goes through our HTTP/1.1 client (adapters.http1)."""
        if self.pool is None:
            self.pool = Http1Pool(self.creds.server, self.creds.ssl, self.creds.headers)
        return self.pool

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def _reauthenticate(self) -> bool:
        """After a 401: load the credentials again and start a new session. False if we can't."""
        if self.reload is None:
            return False
        try:
            creds = await self.reload()
        except Exception as err:  # a broken kubeconfig or exec plugin: keep the 401
            log.warning("reloading credentials after 401 failed: %r", err)
            return False
        old_pool, self.pool = self.pool, None
        self.creds = creds
        self.reloads += 1
        if old_pool is not None:
            await old_pool.close()
        log.info("credentials reloaded after 401 Unauthorized")
        return True

    async def request(
        self,
        verb: str,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        try:
            return await self._request_once(verb, method, path, body, params, content_type)
        except Unauthorized:
            if not await self._reauthenticate():
                raise
        return await self._request_once(verb, method, path, body, params, content_type)

    async def _request_once(
        self,
        verb: str,
        method: str,
        path: str,
        body: Any,
        params: Mapping[str, str] | None,
        content_type: str,
    ) -> Any:
        pool = self._pool()
        self.calls[verb] += 1
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": content_type} if data is not None else None
        target = (
            f"{quote(path, safe=_PATH_SAFE)}?{urlencode(params)}" if params else quote(path, safe=_PATH_SAFE)
        )
        try:
            async with asyncio.timeout(self.request_timeout):
                resp = await pool.request(method, target, data, headers)
            text = resp.body
            status = resp.status
        except TimeoutError as err:
            count_api_call(verb, error=True)
            self.errors[verb] += 1
            raise RequestTimeout(0, f"no answer within {self.request_timeout:g} s", method, path) from err
        except aiohttp.ClientError:
            count_api_call(verb, error=True)  # transport errors count too (metrics doc)
            raise
        count_api_call(verb, error=status >= 300)
        if status >= 300:
            self.errors[verb] += 1
            try:
                payload: Any = json.loads(text)
            except ValueError:
                payload = text.decode("utf-8", "replace")
            raise api_error(status, payload, method, path)
        return json.loads(text) if text else None

    async def get(self, path: str) -> Any:
        return await self.request("get", "GET", path)

    async def list(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return await self.request("list", "GET", path, params=params)

    async def create(self, path: str, body: Mapping[str, Any]) -> Any:
        return await self.request("create", "POST", path, body)

    async def merge_patch(self, path: str, body: Mapping[str, Any], verb: str = "patch") -> Any:
        return await self.request(verb, "PATCH", path, body, content_type=MERGE_PATCH)

    async def delete(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return await self.request("delete", "DELETE", path, body)

    async def watch(
        self, path: str, params: Mapping[str, str], resource_version: str, timeout_seconds: int = 300
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield watch events (dicts with type and object) until the server ends the stream.

        A 401 when opening the stream reloads the credentials and opens it once more."""
        for attempt in (0, 1):
            try:
                async for event in self._watch_once(path, params, resource_version, timeout_seconds):
                    yield event
                return
            except Unauthorized:
                if attempt or not await self._reauthenticate():
                    raise

    async def _watch_once(
        self, path: str, params: Mapping[str, str], resource_version: str, timeout_seconds: int
    ) -> AsyncIterator[dict[str, Any]]:
        self.calls["watch"] += 1
        query = {
            **params,
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        target = f"{quote(path, safe=_PATH_SAFE)}?{urlencode(query)}"
        buffer = b""
        counted = False
        try:
            # The stream's own long read timeout, not the per-request one.
            async for chunk in self._pool().stream(target, read_timeout=timeout_seconds + 30):
                if not counted:  # b"": the stream is open
                    count_api_call("watch", error=False)
                    counted = True
                    continue
                buffer += chunk
                if b"\n" not in chunk:
                    continue
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        except StatusError as err:
            count_api_call("watch", error=True)
            self.errors["watch"] += 1
            try:
                payload: Any = json.loads(err.body)
            except ValueError:
                payload = err.body.decode("utf-8", "replace")
            raise api_error(err.status, payload, "WATCH", path) from None


def backoff_seconds(
    attempt: int, base: float = 0.2, cap: float = 5.0, rng: random.Random | None = None
) -> float:
    """Exponential backoff with "equal jitter": uniform in [d/2, d], d = min(base * 2**attempt, cap).

    The jitter keeps replicas (and watches) that failed together from retrying in lockstep."""
    ceiling = min(base * float(2 ** min(attempt, 30)), cap)
    return ceiling * (0.5 + 0.5 * (rng or random).random())


async def sleep_backoff(attempt: int) -> None:
    await asyncio.sleep(backoff_seconds(attempt))
