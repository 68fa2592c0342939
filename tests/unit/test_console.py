"""The console's pages from canned API objects (no cluster): what a viewer sees, and that it
reads with the viewer's token, never without one."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from batchyard.cli.common import CommandError
from batchyard.cli.console import Reader, app, viewer

QUEUE = {
    "metadata": {"name": "gpu"},
    "spec": {
        "priority": 10,
        "state": "ENABLED",
        "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce1"}],
    },
    "status": {
        "jobCounts": {"RUNNABLE": 2, "RUNNING": 1},
        "conditions": [
            {"type": "Blocked", "status": "True", "message": "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - x"}
        ],
    },
}
CE = {"metadata": {"name": "ce1"}, "spec": {"unmanagedvCpus": 8}, "status": {"vcpusInUse": 1, "nodes": 1}}
JOB = {
    "metadata": {"name": "train", "namespace": "ml", "creationTimestamp": "2026-01-01T00:00:00Z"},
    "spec": {"jobQueue": "gpu", "jobDefinition": "d", "dependsOn": [{"jobId": "prep"}]},
    "status": {
        "status": "FAILED",
        "statusReason": "Essential container in task exited",
        "attempts": [
            {
                "attempt": 1,
                "podName": "train-a1",
                "exitCode": 3,
                "reason": "Error",
                "logStreamName": "pod/train-a1",
                "logRetained": True,
                "terminationMessage": "Traceback ...\nValueError: bad input",
            }
        ],
    },
}
WAITING = {
    "metadata": {"name": "next", "namespace": "ml", "creationTimestamp": "2026-01-01T00:00:00Z"},
    "spec": {"jobQueue": "gpu", "jobDefinition": "d"},
    "status": {
        "status": "RUNNABLE",
        "queuePosition": 3,
        "estimatedStartAt": "2999-01-01T00:00:00.000Z",
        "estimatedStartBasis": "recent run times",
    },
}


def canned(request: web.Request) -> Reader:
    async def get(
        plural: str, name: str | None = None, namespace: str | None = None, selector: str = ""
    ) -> Any:
        if plural == "jobqueues":
            return QUEUE if name else {"items": [QUEUE]}
        if plural == "computeenvironments":
            return {"items": [CE]}
        if plural == "batchjobs" and name is None:
            return {"items": [JOB]}
        if name == "train" and namespace == "ml":
            return JOB
        if name == "next" and namespace == "ml":
            return WAITING
        raise CommandError(f'batchjobs.batchyard.io "{name}" is forbidden: User "bob" cannot get')

    return get


async def fetch(read_for: Any, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with TestClient(TestServer(app(read_for))) as client:
        response = await client.get(path, headers=headers or {})
        return response.status, await response.text()


def test_the_queue_page_shows_counts_capacity_and_why_it_is_blocked() -> None:
    status, text = asyncio.run(fetch(canned, "/"))
    assert status == 200
    assert "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - x" in text
    assert "1 / 8" in text and '<a href="/queues/gpu">gpu</a>' in text


def test_the_job_page_shows_its_attempts_and_dependencies() -> None:
    status, text = asyncio.run(fetch(canned, "/jobs/ml/train"))
    assert status == 200
    assert "train-a1" in text and "Essential container in task exited" in text and "prep" in text


def test_the_job_page_shows_where_each_log_is_and_the_termination_message() -> None:
    _, text = asyncio.run(fetch(canned, "/jobs/ml/train"))
    assert "pod/train-a1 (kept until the job expires)" in text
    assert "<pre>Traceback ...\nValueError: bad input</pre>" in text


def test_a_waiting_job_shows_its_estimated_start_marked_as_an_estimate() -> None:
    _, text = asyncio.run(fetch(canned, "/jobs/ml/next"))
    assert "Estimated start" in text
    assert "2999-01-01T00:00:00.000Z; an estimate from recent run times" in text and "~in " in text


def test_estimated_start_reads_like_kubectl() -> None:
    from datetime import UTC, datetime

    from batchyard.cli.common import estimated_start

    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert [
        estimated_start(s, now)
        for s in (
            {},
            {"estimatedStartAt": "2025-12-31T23:59:00Z"},
            {"estimatedStartAt": "2026-01-01T00:00:45Z"},
            {"estimatedStartAt": "2026-01-01T00:12:00Z"},
        )
    ] == ["", "~now", "~in 45s", "~in 12m"]


def test_a_refused_read_shows_the_api_servers_words() -> None:
    _, text = asyncio.run(fetch(canned, "/jobs/ml/secret"))
    assert "User &quot;bob&quot; cannot get" in text


def test_a_live_update_fetches_only_the_main_part() -> None:
    _, text = asyncio.run(fetch(canned, "/jobs", {"X-Partial": "1"}))
    assert text.startswith("<h1>Jobs</h1>") and "<html>" not in text


def test_with_a_server_every_request_needs_the_viewers_token() -> None:
    status, text = asyncio.run(fetch(viewer("kubectl", "https://127.0.0.1:6443", None), "/"))
    assert status == 401
    assert "acts with your own token" in text


def test_with_a_token_the_console_reads_the_api_server_as_the_viewer() -> None:
    seen: list[tuple[str, str, str]] = []

    async def apiserver(request: web.Request) -> web.Response:
        seen.append((request.path, request.query.get("fieldSelector", ""), request.headers["Authorization"]))
        if request.headers["Authorization"] != "Bearer alice":
            return web.json_response({"message": "Unauthorized"}, status=401)
        if request.path.endswith("/jobqueues/gpu"):
            return web.json_response(QUEUE)
        if request.path.endswith("/computeenvironments"):
            return web.json_response({"items": [CE]})
        return web.json_response({"items": [JOB]})

    async def run() -> tuple[int, str, int, str]:
        fake = web.Application()
        fake.router.add_get("/{tail:.*}", apiserver)
        async with TestServer(fake) as api:
            read_for = viewer("kubectl", str(api.make_url("")), None)
            ok_status, ok = await fetch(read_for, "/queues/gpu", {"Authorization": "Bearer alice"})
            bad_status, bad = await fetch(read_for, "/queues/gpu", {"Authorization": "Bearer mallory"})
            return ok_status, ok, bad_status, bad

    ok_status, ok, _, bad = asyncio.run(run())
    assert ok_status == 200 and "Job queue gpu" in ok and ">train</a>" in ok
    assert (
        "/apis/batchyard.io/v1alpha1/batchjobs",
        "spec.jobQueue=gpu,status.status=RUNNABLE",
        "Bearer alice",
    ) in seen
    assert "401: Unauthorized" in bad  # the API server's refusal, shown to the viewer
