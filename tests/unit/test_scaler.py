"""The node-pool reconciler against a fake API: what it launches, what the scheduler sees, CE status.

No cluster: a fake Kube records the calls; the scheduler holds RUNNABLE jobs as the loop would
have fed them. The cluster side (real nodes, real pods) is tests/cluster/test_scaling.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from batchyard.adapters.observe import CapacityBoard
from batchyard.adapters.scaler import HEALTHY, NOT_RECONCILED, NodePoolReconciler
from batchyard.adapters.state import ClusterState, observe_pod, pod_requests
from batchyard.api.batchjob import BatchJob
from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.api.jobdefinition import JobDefinition
from batchyard.core.capacity import CEView, Resources
from batchyard.core.instances import BUILTIN_CATALOGUE
from batchyard.core.jobref import JobRef
from batchyard.core.nodepool import CE_LABEL, GPU_TAINT_KEY
from batchyard.core.scheduler import (
    CAPACITY_INSUFFICIENT,
    WAITING_CAPACITY,
    Block,
    JobView,
    QueueView,
    Scheduler,
    World,
)
from batchyard.core.views import CECapacity
from batchyard.nodepools.kwok import kwok_node
from batchyard.render.pod import render_pod

NOW = 1_800_000_000.0


class FakeKube:
    """Records writes; nodes it is asked to create are not listed back (the test feeds the cache)."""

    def __init__(self) -> None:
        self.created: list[tuple[str, Mapping[str, Any]]] = []
        self.patched: list[tuple[str, Mapping[str, Any]]] = []

    async def get(self, path: str) -> Any:
        return {}

    async def list(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return {"items": [], "metadata": {"resourceVersion": "1"}}

    async def create(self, path: str, body: Mapping[str, Any]) -> Any:
        self.created.append((path, body))
        return body

    async def merge_patch(self, path: str, body: Mapping[str, Any], verb: str = "patch") -> Any:
        self.patched.append((path, body))
        return body

    async def delete(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return {}


def a_ce(name: str, types: list[str], max_vcpus: int = 8, state: str = "ENABLED") -> ComputeEnvironment:
    return ComputeEnvironment.model_validate(
        {
            "metadata": {"name": name, "generation": 1},
            "spec": {
                "state": state,
                "computeResources": {"minvCpus": 0, "maxvCpus": max_vcpus, "instanceTypes": types},
                "provider": {"type": "kwok"},
            },
        }
    )


def a_world(*ces: ComputeEnvironment, jobs: int = 0, gpus: int = 0) -> tuple[NodePoolReconciler, FakeKube]:
    kube = FakeKube()
    state = ClusterState()
    state.synced = True
    for ce in ces:
        state.compute_environments[ce.metadata.name or ""] = ce
    state.upsert_cluster_object(
        "jobqueues",
        {
            "metadata": {"name": "q"},
            "spec": {
                "priority": 1,
                "computeEnvironmentOrder": [
                    {"order": i + 1, "computeEnvironment": ce.metadata.name} for i, ce in enumerate(ces)
                ],
            },
        },
    )
    scheduler = Scheduler()
    for i in range(jobs):
        scheduler.add_runnable(
            JobView(key=JobRef("ns", f"j{i}"), queue="q", submitted_at=i, demand=Resources.of(1, 512, gpus)),
            NOW,
        )
    board = CapacityBoard(unseen=NOT_RECONCILED)
    return NodePoolReconciler(kube, state, scheduler, board), kube  # type: ignore[arg-type]


def ce_status_patches(kube: FakeKube, ce: str) -> list[dict[str, Any]]:
    return [
        dict(body["status"])
        for path, body in kube.patched
        if path.endswith(f"/computeenvironments/{ce}/status")
    ]


def run(r: NodePoolReconciler, now: float = NOW) -> None:
    asyncio.run(r.reconcile_once(now))


def test_an_unreconciled_compute_environment_is_creating_so_the_scheduler_waits() -> None:
    r, _ = a_world(a_ce("ce1", ["m5.xlarge"]))
    cap = r.capacity.of("ce1")  # what the scheduler sees
    assert cap.status == "CREATING"
    assert cap.nodes == ()


def test_demand_on_an_empty_pool_launches_nodes_up_to_max_vcpus_and_reports_it() -> None:
    r, kube = a_world(a_ce("ce1", ["m5.xlarge"], max_vcpus=8), jobs=20)
    run(r)
    nodes = [body for path, body in kube.created if path == "/api/v1/nodes"]
    # m5.xlarge holds three 1-vCPU jobs; maxvCpus 8 allows two 4-vCPU nodes
    assert [n["metadata"]["name"] for n in nodes] == ["ce1-0", "ce1-1"]
    # no nodes yet, and the scheduler knows they are coming (jobs wait, the queue is not blocked)
    report = r.capacity.reports["ce1"]
    assert report == CECapacity(
        nodes=(), max_node=report.max_node, scaling=True, node_types=report.node_types
    )
    assert [milli for milli, _ in report.node_types] == [4000]  # m5.xlarge: what a gang counts
    [status] = ce_status_patches(kube, "ce1")
    assert status["status"] == "VALID" and status["statusReason"] == HEALTHY
    assert status["desiredvCpus"] == 8 and status["nodes"] == 2 and status["vcpusInUse"] == 0
    assert status["conditions"][0]["type"] == "Ready"

    run(r)  # nothing changed: no second status write
    assert len(ce_status_patches(kube, "ce1")) == 1


def test_nodes_from_the_watch_become_the_schedulers_nodes_cpu_first() -> None:
    ce = a_ce("ce1", ["m5.xlarge", "g4dn.xlarge"], max_vcpus=16)
    r, _ = a_world(ce)
    for name, t in (("ce1-a", "g4dn.xlarge"), ("ce1-b", "m5.xlarge")):
        body = kwok_node(ce, name, BUILTIN_CATALOGUE[t])
        body["metadata"]["creationTimestamp"] = "2027-01-15T08:00:00Z"
        body["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
        r.cache.handle("ADDED", body)
    run(r)
    nodes = r.capacity.reports["ce1"].nodes
    assert nodes is not None
    assert [n.name for n in nodes] == ["ce1-b", "ce1-a"]  # the CPU node first
    assert nodes[1].allocatable.gpus == 1


def test_an_unknown_instance_type_makes_the_compute_environment_invalid() -> None:
    r, kube = a_world(a_ce("bad", ["q9.mega"]), jobs=1)
    run(r)
    cap = r.capacity.reports["bad"]
    assert cap.status == "INVALID" and "unknown instance type q9.mega" in cap.status_reason
    assert kube.created == []
    [status] = ce_status_patches(kube, "bad")
    assert status["status"] == "INVALID" and status["statusReason"].startswith("CLIENT_ERROR - ")
    assert status["conditions"][0]["status"] == "False"


def test_a_disabled_compute_environment_does_not_scale_out() -> None:
    r, kube = a_world(a_ce("off", ["m5.xlarge"], state="DISABLED"), jobs=3)
    run(r)
    assert kube.created == []
    assert ce_status_patches(kube, "off")[0]["desiredvCpus"] == 0


def test_demand_goes_to_the_next_compute_environment_when_the_first_is_full() -> None:
    r, kube = a_world(
        a_ce("small", ["m5.xlarge"], max_vcpus=4), a_ce("big", ["m5.xlarge"], max_vcpus=8), jobs=6
    )
    run(r)
    names = sorted(body["metadata"]["name"] for path, body in kube.created if path == "/api/v1/nodes")
    assert names == ["big-0", "small-0"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({"containers": [{"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]},
                     Resources(1000, 1024), id="one container"),
        pytest.param({"containers": [{"resources": {"requests": {"cpu": "500m"}}}, {"resources": {}}]},
                     Resources(500, 0), id="a container without requests adds nothing"),
        pytest.param(
            {
                "containers": [{"resources": {"requests": {"cpu": "1", "nvidia.com/gpu": "1"}}}],
                "initContainers": [{"resources": {"requests": {"cpu": "2", "memory": "64Mi"}}}],
            },
            Resources(2000, 64, 1),
            id="init containers: the largest counts, per resource",
        ),
    ],
)  # fmt: skip
def test_pod_requests(spec: dict[str, Any], expected: Resources) -> None:
    assert pod_requests(spec) == expected


def test_observed_pods_carry_requests_and_compute_environment() -> None:
    pod = observe_pod(
        {
            "metadata": {
                "name": "p",
                "namespace": "ns",
                "labels": {"batchyard.io/job-uid": "u", CE_LABEL: "ce1"},
            },
            "spec": {"nodeName": "n", "containers": [{"resources": {"requests": {"cpu": "2"}}}]},
        }
    )
    assert pod is not None
    assert pod.requests == Resources(2000, 0) and pod.compute_environment == "ce1"


@pytest.mark.parametrize(
    ("types", "gpu_job", "tolerates_gpu"),
    [
        pytest.param(["m5.xlarge"], False, False, id="CPU job, CPU pool"),
        pytest.param(
            ["m5.xlarge", "g4dn.xlarge"], False, False, id="CPU job, mixed pool: stays off GPU nodes"
        ),
        pytest.param(["g4dn.xlarge"], False, True, id="CPU job, GPU-only pool: tolerates the GPU taint"),
        pytest.param(["m5.xlarge", "g4dn.xlarge"], True, True, id="GPU job"),
    ],
)
def test_job_pods_tolerate_the_gpu_taint_when_they_may_use_gpu_nodes(
    types: list[str], gpu_job: bool, tolerates_gpu: bool
) -> None:
    requirements = [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}]
    if gpu_job:
        requirements.append({"type": "GPU", "value": "1"})
    definition = JobDefinition.model_validate(
        {
            "metadata": {"name": "d", "namespace": "ns"},
            "spec": {
                "type": "container",
                "containerProperties": {"image": "busybox", "resourceRequirements": requirements},
            },
        }
    )
    job = BatchJob.model_validate(
        {
            "metadata": {"name": "j", "namespace": "ns", "uid": "u"},
            "spec": {"jobQueue": "q", "jobDefinition": "d"},
        }
    )
    pod = render_pod(
        job, definition.spec, revision=1, attempt=1, array_index=None, array_size=None, queue="q",
        compute_environment=a_ce("ce1", types, max_vcpus=16),
    )  # fmt: skip
    keys = {t["key"] for t in pod["spec"]["tolerations"]}
    assert (GPU_TAINT_KEY in keys) == tolerates_gpu
    assert pod["spec"]["nodeSelector"][CE_LABEL] == "ce1"


@pytest.mark.parametrize(
    ("scaling", "code"),
    [
        pytest.param(
            True, WAITING_CAPACITY, id="the pool is scaling: the job waits, the queue is not blocked"
        ),
        pytest.param(False, CAPACITY_INSUFFICIENT, id="the provider does not deliver: insufficient capacity"),
    ],
)
def test_a_full_pool_that_is_scaling_is_a_wait_not_insufficient_capacity(scaling: bool, code: str) -> None:
    sched = Scheduler()
    sched.add_runnable(JobView(key="j", queue="q", submitted_at=0, demand=Resources.of(1, 512)), NOW)
    world = World.of([CEView("ce1", 8, nodes=(), scaling=scaling)], [QueueView("q", 1, ("ce1",))])
    [block] = sched.cycle(world, NOW).decisions
    assert isinstance(block, Block) and block.reason_code == code
    assert block.queue_blocked == (not scaling)
