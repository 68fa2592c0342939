"""One async Kubernetes client for the operator: raw JSON over aiohttp, counted per verb.

Credentials come from kubernetes_asyncio's loaders (in-cluster service account, or a kubeconfig
with tokens, client certificates or exec plugins); requests go straight through one aiohttp
session, because the operator only ever needs plain JSON dicts and every call is counted for the
API-writes benchmark and the metrics.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from batchyard.adapters.metrics import count_api_call

MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer from the API server, with its status code and Status body."""

    def __init__(self, status: int, body: Mapping[str, Any] | str, method: str, path: str) -> None:
        self.status = status
        self.body = body
        message = body.get("message", "") if isinstance(body, Mapping) else str(body)[:500]
        super().__init__(f"{method} {path}: {status} {message}")

    @property
    def reason(self) -> str:
        return str(self.body.get("reason", "")) if isinstance(self.body, Mapping) else ""


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
    """The operator's API client. `calls` counts requests by verb (get, list, watch, create, ...)."""

    creds: Credentials
    session: aiohttp.ClientSession | None = None
    calls: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @classmethod
    async def connect(cls) -> Kube:
        return cls(await load_credentials())

    async def _session(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            connector = aiohttp.TCPConnector(ssl=self.creds.ssl, limit=32)
            self.session = aiohttp.ClientSession(
                self.creds.server, headers=self.creds.headers, connector=connector
            )
        return self.session

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def request(
        self,
        verb: str,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        session = await self._session()
        self.calls[verb] += 1
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        try:
            async with session.request(method, path, data=data, params=params, headers=headers) as resp:
                text = await resp.text()
                status = resp.status
        except aiohttp.ClientError:
            count_api_call(verb, error=True)  # transport errors count too (metrics doc)
            raise
        count_api_call(verb, error=status >= 300)
        if status >= 300:
            self.errors[verb] += 1
            try:
                payload: Any = json.loads(text)
            except ValueError:
                payload = text
            raise ApiError(status, payload, method, path)
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
        """Yield watch events (dicts with type and object) until the server ends the stream."""
        session = await self._session()
        self.calls["watch"] += 1
        query = {
            **params,
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30)
        async with session.get(path, params=query, timeout=timeout) as resp:
            count_api_call("watch", error=resp.status >= 300)
            if resp.status >= 300:
                self.errors["watch"] += 1
                raise ApiError(resp.status, await resp.text(), "WATCH", path)
            # iter_any, not line iteration: aiohttp caps a line at 64 KiB, objects can be larger.
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)


async def sleep_backoff(attempt: int) -> None:
    await asyncio.sleep(min(0.2 * (2**attempt), 5.0))
