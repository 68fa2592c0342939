"""What users see of the scheduler, against a fake API: queue positions (throttled, only on
change), the JobQueue Blocked event (once per block), ConsumableResource status (only on change).

No cluster: jobs are put in the cluster state as already RUNNABLE and fed to the scheduler as the
loop would have. The cluster side is tests/cluster/test_scheduling.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from batchyard.adapters.controller import Controller, Settings
from batchyard.adapters.objectstatus import ConsumableStatusWriter, QueueStatusWriter
from batchyard.adapters.state import ClusterState
from batchyard.api.batchjob import JobStateCounts
from batchyard.core.capacity import Resources
from batchyard.core.jobref import JobRef
from batchyard.core.queueing import queue_health
from batchyard.core.scheduler import CE_MAX_RESOURCE, JobView

NOW = 1_800_000_000.0


class FakeKube:
    def __init__(self) -> None:
        self.created: list[tuple[str, Mapping[str, Any]]] = []
        self.patched: list[tuple[str, Mapping[str, Any]]] = []

    async def create(self, path: str, body: Mapping[str, Any]) -> Any:
        self.created.append((path, body))
        return body

    async def merge_patch(self, path: str, body: Mapping[str, Any], verb: str = "patch") -> Any:
        self.patched.append((path, body))
        return body


def a_loop(
    jobs: int, vcpus: int = 1, positions: int = 2, interval: float = 5.0
) -> tuple[Controller, FakeKube]:
    """Queue q on an UNMANAGED CE of 4 vCPUs that is DISABLED (nothing dispatches), ``jobs``
    RUNNABLE jobs j0.. in submission order."""
    kube = FakeKube()
    state = ClusterState()
    state.upsert_cluster_object(
        "computeenvironments",
        {"metadata": {"name": "ce"}, "spec": {"type": "UNMANAGED", "state": "DISABLED", "unmanagedvCpus": 4}},
    )
    state.upsert_cluster_object(
        "jobqueues",
        {
            "metadata": {"name": "q", "uid": "q-uid", "generation": 1},
            "spec": {"priority": 1, "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}]},
        },
    )
    settings = Settings(queue_positions=positions, queue_position_interval_seconds=interval)
    controller = Controller(kube, state, settings)  # type: ignore[arg-type]
    for i in range(jobs):
        state.upsert_job(
            {
                "metadata": {"name": f"j{i}", "namespace": "ns", "uid": f"u{i}"},
                "spec": {"jobQueue": "q", "jobDefinition": "d"},
                "status": {"status": "RUNNABLE"},
            }
        )
        key = JobRef("ns", f"j{i}")
        controller.scheduler.add_runnable(JobView(key, "q", float(i), Resources.of(vcpus, 512)), NOW)
        controller.book.held.add(key)
    state.dirty_jobs.clear()  # as if the loop had stepped them already
    return controller, kube


def positions(controller: Controller) -> dict[str, int | None]:
    return {k.name: e.status.queuePosition for k, e in controller.state.jobs.items()}


def test_the_first_n_runnable_jobs_get_their_position_zero_based_the_rest_none() -> None:
    controller, _ = a_loop(jobs=3, positions=2)
    plan = controller.decide(NOW)
    assert positions(controller) == {"j0": 0, "j1": 1, "j2": None}
    assert set(plan.steps) == {JobRef("ns", "j0"), JobRef("ns", "j1")}  # only changed jobs are written


def test_positions_are_refreshed_at_most_once_per_interval_and_only_when_they_change() -> None:
    controller, _ = a_loop(jobs=3, positions=2, interval=5)
    controller.decide(NOW)
    # The head leaves RUNNABLE (it was dispatched): everyone moves up, but not before 5 s.
    controller.scheduler.remove(JobRef("ns", "j0"), NOW)
    controller.state.jobs[JobRef("ns", "j0")].status.status = "STARTING"
    controller.decide(NOW + 1)  # j1 becomes the waiting head (its statusReason), same position
    assert positions(controller) == {"j0": 0, "j1": 1, "j2": None}
    plan = controller.decide(NOW + 5)
    assert positions(controller) == {"j0": None, "j1": 0, "j2": 1}
    assert set(plan.steps) == {JobRef("ns", "j0"), JobRef("ns", "j1"), JobRef("ns", "j2")}
    assert not controller.decide(NOW + 10).steps  # nothing changed: nothing written


def test_after_a_restart_a_stale_position_beyond_the_first_n_is_cleared() -> None:
    controller, _ = a_loop(jobs=3, positions=1)
    controller.state.jobs[JobRef("ns", "j2")].status.queuePosition = 7  # written by the previous operator
    controller.decide(NOW)
    assert positions(controller) == {"j0": 0, "j1": None, "j2": None}


def test_a_blocked_queue_gets_one_event_per_block_and_a_blocked_condition() -> None:
    controller, kube = a_loop(jobs=1, vcpus=8)
    controller.state.upsert_cluster_object(
        "computeenvironments",
        {"metadata": {"name": "ce"}, "spec": {"type": "UNMANAGED", "unmanagedvCpus": 4}},
    )
    writer = QueueStatusWriter(controller.state, controller.kube)
    for t in (0, 1, 2):
        asyncio.run(writer(controller.decide(NOW + t).result))  # type: ignore[arg-type]
    events = [body for path, body in kube.created if path.endswith("/events")]
    assert len(events) == 1
    [event] = events
    assert event["metadata"]["namespace"] == "default" and event["reason"] == "Blocked"
    assert event["involvedObject"] == {
        "apiVersion": "batchyard.io/v1alpha1",
        "kind": "JobQueue",
        "name": "q",
        "uid": "q-uid",
    }
    assert event["message"].startswith(CE_MAX_RESOURCE) and "(head job ns/j0;" in event["message"]
    [patch] = [b["status"] for p, b in kube.patched if p.endswith("/jobqueues/q/status")]
    assert patch["conditions"][0]["status"] == "True"
    assert patch["conditions"][0]["reason"] == CE_MAX_RESOURCE.replace(":", "_")


def test_consumable_status_shows_in_use_and_available_and_is_written_only_on_change() -> None:
    controller, kube = a_loop(jobs=0)
    controller.state.upsert_cluster_object(
        "consumableresources", {"metadata": {"name": "lic", "generation": 3}, "spec": {"totalQuantity": 2}}
    )
    writer = ConsumableStatusWriter(controller.state, controller.kube)
    controller.scheduler.add_running(
        JobView(JobRef("ns", "r"), "q", 0.0, Resources.of(1, 1), consumables={"lic": 1}), "ce", None, NOW
    )
    for t in (0, 1):
        asyncio.run(writer(controller.decide(NOW + t).result))  # type: ignore[arg-type]
    writes = [b["status"] for p, b in kube.patched if p.endswith("/consumableresources/lic/status")]
    assert writes == [
        {"totalQuantity": 2, "inUseQuantity": 1, "availableQuantity": 1, "observedGeneration": 3}
    ]


def test_non_replenishable_units_used_up_are_read_back_from_status_after_a_restart() -> None:
    controller, _ = a_loop(jobs=0)
    body = {
        "metadata": {"name": "tok", "generation": 1},
        "spec": {"resourceType": "NON_REPLENISHABLE", "totalQuantity": 10},
        "status": {"totalQuantity": 7, "observedGeneration": 1},
    }
    controller.state.upsert_cluster_object("consumableresources", body)
    usage = controller.decide(NOW).result.consumables["tok"]  # type: ignore[union-attr]
    assert (usage.total_quantity, usage.available_quantity) == (7, 7)
    # The spec changed since the status was written: the old count no longer applies.
    body["metadata"]["generation"] = 2  # type: ignore[index]
    controller.state.upsert_cluster_object("consumableresources", body)
    assert controller.decide(NOW).result.consumables["tok"].total_quantity == 10  # type: ignore[union-attr]


def test_queue_status_is_valid_with_aws_reason_and_counts_keyed_as_the_crd_schema() -> None:
    controller, kube = a_loop(jobs=2)
    asyncio.run(QueueStatusWriter(controller.state, controller.kube)(controller.decide(NOW).result))
    [patch] = [b["status"] for p, b in kube.patched if p.endswith("/jobqueues/q/status")]
    assert (patch["status"], patch["statusReason"]) == ("VALID", "JobQueue Healthy")
    # Keys the CRD schema does not list are pruned by the API server (the `kubectl get jq`
    # Runnable/Running columns read .status.jobCounts.RUNNABLE / .RUNNING).
    assert set(patch["jobCounts"]) <= set(JobStateCounts.model_fields)
    assert patch["jobCounts"]["RUNNABLE"] == 2


def test_a_queue_naming_missing_objects_is_invalid_naming_them() -> None:
    controller, kube = a_loop(jobs=0)
    controller.state.upsert_cluster_object(
        "jobqueues",
        {
            "metadata": {"name": "q", "uid": "q-uid", "generation": 2},
            "spec": {
                "priority": 1,
                "schedulingPolicy": "nope",
                "computeEnvironmentOrder": [
                    {"order": 1, "computeEnvironment": "ce"},
                    {"order": 2, "computeEnvironment": "gone"},
                ],
            },
        },
    )
    asyncio.run(QueueStatusWriter(controller.state, controller.kube)(controller.decide(NOW).result))
    [patch] = [b["status"] for p, b in kube.patched if p.endswith("/jobqueues/q/status")]
    assert patch["status"] == "INVALID"
    assert (
        patch["statusReason"]
        == "ComputeEnvironment gone does not exist; SchedulingPolicy nope does not exist"
    )


@pytest.mark.parametrize(
    ("ces", "policy", "expected"),
    [
        pytest.param(["a"], None, ("VALID", "JobQueue Healthy"), id="everything exists: AWS's healthy text"),
        pytest.param(["a", "x"], None, ("INVALID", "ComputeEnvironment x does not exist"), id="missing CE"),
        pytest.param(["a"], "p", ("VALID", "JobQueue Healthy"), id="existing policy"),
        pytest.param(["a"], "q", ("INVALID", "SchedulingPolicy q does not exist"), id="missing policy"),
    ],
)
def test_queue_health(ces: list[str], policy: str | None, expected: tuple[str, str]) -> None:
    assert queue_health(ces, {"a"}, policy, {"p"}) == expected


def test_share_decay_seconds_zero_means_only_current_usage() -> None:
    """AWS User Guide "Fair-share scheduling policies": "A value of zero indicates that only
    current usage is measured" (it used to become a 600 s half-life)."""
    controller, _ = a_loop(jobs=0)
    controller.state.upsert_cluster_object(
        "schedulingpolicies",
        {"metadata": {"name": "fs"}, "spec": {"fairsharePolicy": {"shareDecaySeconds": 0}}},
    )
    controller.state.upsert_cluster_object(
        "jobqueues",
        {
            "metadata": {"name": "q", "uid": "q-uid", "generation": 1},
            "spec": {
                "priority": 1,
                "schedulingPolicy": "fs",
                "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}],
            },
        },
    )
    policy = controller.reader.world().queues["q"].policy
    assert policy is not None and policy.share_decay_seconds == 0
