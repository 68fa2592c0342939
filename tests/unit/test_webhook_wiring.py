"""The admission webhook's wiring: settings, the server kopf is given, the registered handlers.

The rule itself is tested in test_limits; the API server's side in
tests/cluster/test_security.py (test_the_api_server_refuses_oversized_objects...).
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest

import batchyard.handlers  # noqa: F401 - registers the handlers
from batchyard.core.limits import MAX_SUBMISSION_BYTES
from batchyard.handlers.operator import WEBHOOK_IDS, Options


def test_the_webhook_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHYARD_WEBHOOK_PORT", "9443")
    monkeypatch.setenv("BATCHYARD_WEBHOOK_CERT", "/c/tls.crt")
    monkeypatch.setenv("BATCHYARD_WEBHOOK_KEY", "/c/tls.key")
    options = Options.from_env()
    assert (options.webhook_port, options.webhook_address) == (9443, "0.0.0.0")
    server = options.webhook_server()
    assert isinstance(server, kopf.WebhookServer)
    assert (server.port, server.addr, server.certfile, server.pkeyfile) == (
        9443,
        "0.0.0.0",
        "/c/tls.crt",
        "/c/tls.key",
    )
    # never a generated certificate, never plain HTTP
    assert not server.insecure and server.context is None


def test_a_webhook_port_without_a_certificate_is_refused_naming_the_settings() -> None:
    with pytest.raises(ValueError, match="BATCHYARD_WEBHOOK_CERT and BATCHYARD_WEBHOOK_KEY"):
        Options(webhook_port=9443, webhook_cert="/c/tls.crt").webhook_server()


def test_without_a_port_the_server_never_listens() -> None:
    server = Options().webhook_server()
    assert not isinstance(server, kopf.WebhookServer)

    async def first_config() -> bool:
        task = asyncio.ensure_future(anext(server(None)))
        for _ in range(5):
            await asyncio.sleep(0)
        pending = not task.done()
        task.cancel()
        return pending

    assert asyncio.run(first_config())


def _handler(plural: str) -> Any:
    (handler,) = [
        h for h in kopf.get_default_registry()._webhooks.get_all_handlers() if h.id == WEBHOOK_IDS[plural]
    ]
    return handler


@pytest.mark.parametrize("plural", ["batchjobs", "jobdefinitions"])
def test_one_validating_handler_per_kind_for_create_and_update(plural: str) -> None:
    handler = _handler(plural)
    assert (handler.selector.any_name, handler.selector.group) == (plural, "batchyard.io")
    assert set(handler.operations) == {"CREATE", "UPDATE"}
    assert handler.subresource is None  # the main resource: status writes never reach it


def test_the_handler_refuses_with_422_and_the_rules_message() -> None:
    spec = {"jobQueue": "q", "jobDefinition": "d", "parameters": {f"p{i}": "x" * 1000 for i in range(31)}}
    body = kopf.Body({"metadata": {"name": "big", "namespace": "ns"}, "spec": spec})
    with pytest.raises(kopf.AdmissionError) as refused:
        asyncio.run(_handler("batchjobs").fn(body=body, old=None))
    assert refused.value.code == 422
    assert str(refused.value).startswith("BatchJob ns/big: job payload of ")
    assert f"({MAX_SUBMISSION_BYTES:,} bytes" in str(refused.value)
    # the same object, only relabelled: an UPDATE that leaves the counted spec alone passes
    assert asyncio.run(_handler("batchjobs").fn(body=body, old=body)) is None
