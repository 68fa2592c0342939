"""The gateway's HTTP layer with the real boto3, before any Kubernetes call: routes, 403s, 400s.

The gateway here has no API server behind it, so these rows cover exactly what is decided
before one is needed: botocore's routes (including a percent-encoded ARN in the path),
signature checks, input validation and operations with no meaning here.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from batchyard.adapters.kube import Credentials
from batchyard.gateway.auth import AccessKey
from batchyard.gateway.server import Gateway, Settings


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    ready = threading.Event()
    state: dict[str, Any] = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        state["loop"] = loop

        async def start() -> None:
            gw = Gateway(Credentials("http://127.0.0.1:9", {}, False), Settings())
            gw.keys["AKIDUNIT"] = AccessKey("AKIDUNIT", "secret", "team-a", "user")
            server = gw.http_server()
            await server.start("127.0.0.1", 0)
            state["port"] = server.port
            state["runner"] = server
            ready.set()

        loop.run_until_complete(start())
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    ready.wait(10)
    yield f"http://127.0.0.1:{state['port']}"
    loop = state["loop"]
    # A busy machine may take a while to close kept-alive connections: never fail a test on it.
    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)


def batch(endpoint: str, secret: str = "secret", validate: bool = True) -> Any:
    return boto3.client(
        "batch", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKIDUNIT",
        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}, parameter_validation=validate),
    )  # fmt: skip


def error(call: Any) -> tuple[int, str, str, str]:
    with pytest.raises(ClientError) as err:
        call()
    r = err.value.response
    return (
        r["ResponseMetadata"]["HTTPStatusCode"],
        r["Error"]["Code"],
        r["Error"]["Message"],
        r["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-requestid", ""),
    )


def test_a_wrong_secret_is_403_in_aws_shape(endpoint: str) -> None:
    status, code, _, request_id = error(lambda: batch(endpoint, secret="nope").describe_jobs(jobs=["x"]))
    assert (status, code) == (403, "InvalidSignatureException") and request_id


@pytest.mark.parametrize(
    ("call", "words"),
    [
        pytest.param(
            lambda b: b.submit_job(jobName="j", jobQueue="q", jobDefinition="d", arrayProperties={"size": 1}),
            ["arrayProperties.size"],
            id="array size 1 names the field",
        ),
        pytest.param(
            lambda b: b.submit_job(
                jobName="j", jobQueue="q", jobDefinition="d", schedulingPriorityOverride="high"
            ),
            ["schedulingPriorityOverride"],
            id="a string for an integer names the field",
        ),
        pytest.param(lambda b: b.list_jobs(), ["jobQueue"], id="ListJobs without a scope"),
        pytest.param(lambda b: b.list_service_jobs(), ["no meaning"], id="service jobs have no meaning here"),
        pytest.param(
            lambda b: b.create_quota_share(), ["no meaning"], id="quota shares have no meaning here"
        ),
        pytest.param(
            lambda b: b.describe_jobs(jobs=[str(i) for i in range(101)]), ["up to 100"], id="101 job ids"
        ),
    ],
)
def test_client_mistakes_are_400_client_exceptions(endpoint: str, call: Any, words: list[str]) -> None:
    status, code, message, request_id = error(lambda: call(batch(endpoint, validate=False)))
    assert (status, code) == (400, "ClientException")
    assert all(w in message for w in words), message
    assert request_id


def test_tag_routes_carry_an_encoded_arn(endpoint: str) -> None:
    # Routed (not a 404): the bad ARN kind is reported as a ClientException naming resourceArn.
    status, code, message, _ = error(
        lambda: batch(endpoint).list_tags_for_resource(resourceArn="arn:aws:batch:us-east-1:a:unknown/x")
    )
    assert (status, code) == (400, "ClientException") and "resourceArn" in message


def test_requests_are_counted_by_operation_and_code(endpoint: str) -> None:
    from batchyard.gateway.metrics import REGISTRY

    def count() -> float:
        return (
            REGISTRY.get_sample_value(
                "batchyard_gateway_requests_total", {"operation": "ListJobs", "code": "400"}
            )
            or 0.0
        )

    before = count()
    error(lambda: batch(endpoint, validate=False).list_jobs())
    assert count() == before + 1
    assert REGISTRY.get_sample_value("batchyard_gateway_request_seconds_count", {"operation": "ListJobs"})


def test_an_oversized_body_is_a_client_exception_not_a_5xx(endpoint: str) -> None:
    import urllib.error
    import urllib.request

    body = b'{"jobs": ["' + b"x" * (5 * 1024 * 1024) + b'"]}'
    req = urllib.request.Request(endpoint + "/v1/describejobs", data=body, method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 400
    assert err.value.headers["X-Amzn-ErrorType"] == "ClientException"
