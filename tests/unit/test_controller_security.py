"""The loop keeps jobs within what their namespace allows: the operator's identity is out of reach
(core.tenancy) and eksProperties pods don't ask for the host network unless configured.

Against the typed fake API (fake_kube); one compute environment ``ce`` and queue ``q``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fake_kube import FakeKube, one_job_state

from batchyard.adapters.controller import Controller, Settings
from batchyard.core.jobref import JobRef
from batchyard.core.tenancy import OperatorIdentity

IDENTITY = OperatorIdentity(namespace="batchyard-system", service_account="batchyard")


def eks(service_account: str | None = None) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "containers": [{"image": "busybox", "resources": {"requests": {"cpu": "1", "memory": "512Mi"}}}]
    }
    if service_account:
        pod["serviceAccountName"] = service_account
    return {"type": "container", "eksProperties": {"podProperties": pod}}


def a_world(namespace: str, definition: dict[str, Any], settings: Settings) -> tuple[Controller, FakeKube]:
    kube = FakeKube()
    return Controller(kube, one_job_state(namespace, definition), settings), kube  # type: ignore[arg-type]


def cycles(controller: Controller, n: int = 2) -> None:
    async def run() -> None:
        for _ in range(n):
            await controller.reconcile_once()
            await controller.executor.events_posted()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("namespace", "listed", "service_account", "refusal"),
    [
        pytest.param("kube-system", (), None, "Namespace kube-system is not served", id="kube-system"),
        pytest.param(
            "batchyard-system",
            (),
            None,
            "Namespace batchyard-system is not served",
            id="the operator's namespace",
        ),
        pytest.param(
            "batchyard-system",
            ("batchyard-system",),
            "batchyard",
            "eksProperties.podProperties.serviceAccountName: batchyard is the operator's own ServiceAccount",
            id="the operator's ServiceAccount, in its namespace listed explicitly",
        ),
        pytest.param(
            "batchyard-system", ("batchyard-system",), "jobs", None, id="listed: another account runs"
        ),
        pytest.param("team-a", (), "batchyard", None, id="a namesake account elsewhere runs"),
    ],
)
def test_a_job_cant_reach_the_operators_identity(
    namespace: str, listed: tuple[str, ...], service_account: str | None, refusal: str | None
) -> None:
    identity = OperatorIdentity(IDENTITY.namespace, IDENTITY.service_account, listed)
    controller, kube = a_world(namespace, eks(service_account), Settings(identity=identity))
    cycles(controller)
    status = controller.state.jobs[JobRef(namespace, "j")].status
    if refusal is None:
        assert status.status == "STARTING"
    else:
        assert status.status == "FAILED"
        assert refusal in (status.statusReason or "")
        assert kube.count("create", "/pods") == 0  # no pod was ever asked for


@pytest.mark.parametrize(
    ("settings", "host_network"),
    [
        pytest.param(Settings(), None, id="default: pod networking (Pod Security baseline allows it)"),
        pytest.param(
            Settings(eks_host_network=True), True, id="BATCHYARD_EKS_HOST_NETWORK=true: AWS's default"
        ),
    ],
)
def test_the_eks_host_network_default(settings: Settings, host_network: bool | None) -> None:
    controller, kube = a_world("team-a", eks(), settings)
    cycles(controller, 1)
    pod = kube.objects["/api/v1/namespaces/team-a/pods/j-a1"]
    assert pod["spec"].get("hostNetwork") is host_network


def an_array_world(size: int) -> tuple[Controller, FakeKube]:
    controller, kube = a_world("team-a", eks(), Settings())
    body = {
        "metadata": {"name": "arr", "namespace": "team-a", "uid": "u2", "generation": 1},
        "spec": {"jobQueue": "q", "jobDefinition": "d", "arrayProperties": {"size": size}},
    }
    controller.state.forget_job(JobRef("team-a", "j"))
    controller.state.upsert_job(body)
    return controller, kube


@pytest.mark.parametrize(
    ("message", "parent", "reason"),
    [
        pytest.param(
            'pods "arr-0-a1" is forbidden: violates PodSecurity "baseline:latest": privileged',
            "FAILED",
            None,
            id="Pod Security: each child fails at its one create, and so does the parent",
        ),
        pytest.param(
            'pods "arr-0-a1" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=0, limited: pods=0',
            "PENDING",  # the parent of RUNNABLE children
            "WAITING:RESOURCE_QUOTA",
            id="a full quota: the children wait, backing off, and the parent says why",
        ),
    ],
)
def test_array_children_follow_the_same_rule_per_child(message: str, parent: str, reason: str | None) -> None:
    controller, kube = an_array_world(2)
    kube.fail("create", "/pods", 403, times=1000, message=message)
    cycles(controller, 4)
    status = controller.state.jobs[JobRef("team-a", "arr")].status
    assert status.status == parent
    assert kube.count("create", "/pods") == 2  # one create per child: final, or backing off
    assert status.arrayProperties is not None and status.arrayProperties.statusSummary is not None
    summary = status.arrayProperties.statusSummary
    assert ((2, 0) if reason is None else (0, 2)) == (summary.FAILED, summary.RUNNABLE)
    if reason is not None:
        assert (status.statusReason or "").startswith(reason)
