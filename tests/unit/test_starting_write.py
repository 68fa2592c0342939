"""A just-dispatched job's STARTING write waits for its pod to run (issue 14: one status patch
per job fewer): core.lifecycle.starting_write_hold, executed by adapters.apply.Executor; and a
restarted operator adopts the pod of a job it dispatched but had not written yet
(adapters.controller.Controller._adopt_dispatched), so no attempt runs twice."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from fake_kube import FakeKube, one_job_state

from batchyard.adapters.controller import Controller, Settings
from batchyard.adapters.state import JobEntry
from batchyard.core.jobref import JobRef
from batchyard.core.lifecycle import detail_write_hold, runnable_write_hold, starting_write_hold
from batchyard.render.names import LABEL_JOB_UID

KEY = JobRef("ns", "j")
JOB_STATUS = "/namespaces/ns/batchjobs/j/status"
PODS = "/api/v1/namespaces/ns/pods"
T = 1_800_000_000.0


@pytest.mark.parametrize(
    ("written", "state", "dispatched_at", "now", "delay", "expected"),
    [
        (None, "STARTING", T, T + 0.5, 2.0, T + 2.0),  # never written: held
        ("SUBMITTED", "STARTING", T, T, 2.0, T + 2.0),
        ("PENDING", "STARTING", T, T + 1.9, 2.0, T + 2.0),
        ("RUNNABLE", "STARTING", T, T + 1.0, 2.0, T + 2.0),  # a retry dispatched again
        ("RUNNABLE", "STARTING", T, T + 2.0, 2.0, None),  # the hold is over: STARTING now
        ("RUNNABLE", "STARTING", T, T + 1.0, 0.0, None),  # no hold configured
        ("RUNNABLE", "STARTING", None, T, 2.0, None),  # not dispatched by this operator
        ("RUNNABLE", "RUNNING", T, T + 0.5, 2.0, None),  # the pod runs: write RUNNING
        ("RUNNABLE", "SUCCEEDED", T, T + 0.5, 2.0, None),
        ("RUNNABLE", "FAILED", T, T + 0.5, 2.0, None),
        ("STARTING", "STARTING", T, T + 0.5, 2.0, None),  # shown already (e.g. a new attempt's diff)
        ("RUNNING", "STARTING", T, T + 0.5, 2.0, None),  # a retry in one cycle: never held
    ],
)
def test_starting_write_hold(
    written: str | None,
    state: str,
    dispatched_at: float | None,
    now: float,
    delay: float,
    expected: float | None,
) -> None:
    assert starting_write_hold(written, state, dispatched_at, now, delay) == expected


def cycle(controller: Controller) -> None:
    async def run() -> None:
        await controller.reconcile_once()
        await controller.executor.events_posted()

    asyncio.run(run())


def running_pod(uid: str = "u1", name: str = "j-a1", phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": {LABEL_JOB_UID: uid,
                     "batchyard.io/compute-environment": "ce"}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "main"}]},
        "status": {"phase": phase, "containerStatuses": [
            {"name": "main", "state": {"running": {"startedAt": "2026-12-01T00:00:01Z"}}}]},
    }  # fmt: skip


def job(controller: Controller) -> JobEntry:
    return controller.state.jobs[KEY]


def past_the_hold(controller: Controller, seconds: float = 61) -> JobEntry:
    """Move the job's dispatch `seconds` into the past (every hold of 60 s is over) and step it."""
    entry = job(controller)
    assert entry.dispatched_at is not None
    entry.dispatched_at -= seconds
    controller.state.dirty_jobs.add(KEY)
    cycle(controller)
    return entry


def test_a_pod_that_runs_within_the_hold_is_written_once_as_running() -> None:
    kube = FakeKube()
    controller = Controller(kube, one_job_state(), Settings(starting_write_delay_seconds=60))  # type: ignore[arg-type]
    cycle(controller)
    assert kube.count("create", PODS) == 1
    assert kube.count("patch_status", JOB_STATUS) == 0  # STARTING held
    assert job(controller).status.status == "STARTING"
    assert job(controller).wake_at is not None  # stepped again when the hold ends
    controller.state.upsert_pod(running_pod())
    cycle(controller)
    assert kube.count("patch_status", JOB_STATUS) == 1
    written = job(controller).written
    assert written["status"] == "RUNNING"
    assert [(a["attempt"], a["podName"]) for a in written["attempts"]] == [(1, "j-a1")]
    assert kube.count("create", PODS) == 1


def test_a_pod_still_pending_when_the_hold_ends_shows_starting() -> None:
    kube = FakeKube()
    controller = Controller(kube, one_job_state(), Settings(starting_write_delay_seconds=60))  # type: ignore[arg-type]
    cycle(controller)
    controller.state.upsert_pod(running_pod(phase="Pending") | {"status": {"phase": "Pending"}})
    cycle(controller)
    assert kube.count("patch_status", JOB_STATUS) == 0  # still within the hold
    entry = past_the_hold(controller)
    assert kube.count("patch_status", JOB_STATUS) == 1
    assert entry.written["status"] == "STARTING"
    assert entry.written["attempts"][0]["podName"] == "j-a1"


def restarted_world(pod: dict[str, Any] | None) -> tuple[Controller, FakeKube]:
    """What a new operator lists: job j RUNNABLE (its dispatch never written), maybe its pod."""
    st = one_job_state(
        status={"status": "RUNNABLE", "jobDefinitionRevision": 1, "createdAt": "2026-12-01T00:00:00Z"}
    )
    if pod is not None:
        st.upsert_pod(pod)
    kube = FakeKube()
    if pod is not None:
        kube.objects[f"{PODS}/{pod['metadata']['name']}"] = pod
    return Controller(kube, st, Settings(starting_write_delay_seconds=60)), kube  # type: ignore[arg-type]


def test_a_restarted_operator_adopts_the_pod_of_an_unwritten_dispatch() -> None:
    controller, kube = restarted_world(running_pod())
    cycle(controller)
    assert kube.count("create", PODS) == 0  # never a second pod or attempt
    entry = job(controller)
    assert entry.written["status"] == "RUNNING"
    assert [a["podName"] for a in entry.written["attempts"]] == ["j-a1"]
    assert controller.scheduler.state_of(KEY) == "RUNNING"


@pytest.mark.parametrize(
    "pod", [None, running_pod(uid="older-job")], ids=["no pod", "an older job's pod of that name"]
)
def test_no_adoption_without_this_jobs_pod(pod: dict[str, Any] | None) -> None:
    controller, kube = restarted_world(pod)
    cycle(controller)
    # Dispatched as usual (the older job's pod: 409 and not adopted, so it waits).
    assert kube.count("create", PODS) == 1
    entry = job(controller)
    assert entry.status.status == ("STARTING" if pod is None else "RUNNABLE")


def test_a_pod_the_watch_has_not_delivered_yet_is_not_created_again() -> None:
    """The pod was created by this process a moment ago; a step before its watch event arrives
    must not try to create it again (a 409 and a GET per job, for nothing)."""
    kube = FakeKube()
    controller = Controller(kube, one_job_state(), Settings(starting_write_delay_seconds=60))  # type: ignore[arg-type]
    cycle(controller)
    controller.state.dirty_jobs.add(KEY)
    cycle(controller)
    assert (kube.count("create", PODS), kube.count("get", PODS)) == (1, 0)
    assert job(controller).status.status == "STARTING"


# --- a burst larger than the dispatch budget: its tail is not written RUNNABLE first ------------


@pytest.mark.parametrize(
    ("written", "state", "created", "now", "budget_ran_out", "expected"),
    [
        (None, "RUNNABLE", "2027-01-15T08:00:00Z", T, True, T + 2.0),  # T is 08:00:00 UTC
        ("SUBMITTED", "RUNNABLE", "2027-01-15T08:00:00Z", T + 1.5, True, T + 2.0),
        ("PENDING", "RUNNABLE", "2027-01-15T08:00:00Z", T + 1.5, True, T + 2.0),
        (None, "RUNNABLE", "2027-01-15T08:00:00Z", T + 2.0, True, None),  # bound: shown now
        (None, "RUNNABLE", "2027-01-15T08:00:00Z", T, False, None),  # waits for capacity: shown
        ("RUNNABLE", "RUNNABLE", "2027-01-15T08:00:00Z", T, True, None),  # shown already
        ("RUNNING", "RUNNABLE", "2027-01-15T08:00:00Z", T, True, None),  # a retry: shown
        (None, "PENDING", "2027-01-15T08:00:00Z", T, True, None),  # only RUNNABLE is held
        (None, "RUNNABLE", None, T, True, None),
    ],
)
def test_runnable_write_hold(
    written: str | None,
    state: str,
    created: str | None,
    now: float,
    budget_ran_out: bool,
    expected: float | None,
) -> None:
    assert runnable_write_hold(written, state, created, now, 2.0, budget_ran_out) == expected


def job_writes(kube: FakeKube) -> int:
    return sum(kube.count("patch_status", f"/namespaces/ns/batchjobs/{n}/status") for n in ("j", "k"))


def test_a_burst_beyond_the_budget_is_written_once_each_when_its_pods_run() -> None:
    st = one_job_state()
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    st.jobs[KEY].job.metadata.creationTimestamp = created
    st.upsert_job(
        {
            "metadata": {
                "name": "k",
                "namespace": "ns",
                "uid": "u2",
                "generation": 1,
                "creationTimestamp": created,
            },
            "spec": {"jobQueue": "q", "jobDefinition": "d"},
        }
    )
    kube = FakeKube()
    settings = Settings(starting_write_delay_seconds=60, max_dispatches_per_cycle=1)
    controller = Controller(kube, st, settings)  # type: ignore[arg-type]
    cycle(controller)  # one dispatched (STARTING held), the other RUNNABLE for want of budget
    assert kube.count("create", PODS) == 1
    assert job_writes(kube) == 0
    cycle(controller)  # the next cycle dispatches the other
    assert kube.count("create", PODS) == 2
    assert job_writes(kube) == 0
    controller.state.upsert_pod(running_pod())
    controller.state.upsert_pod(running_pod(uid="u2", name="k-a1"))
    cycle(controller)
    assert job_writes(kube) == 2
    assert {e.written["status"] for e in controller.state.jobs.values()} == {"RUNNING"}


# --- a pod bound to a node while its job shows STARTING: the nodeName waits for RUNNING ---------

A1 = {"attempt": 1, "podName": "j-a1", "computeEnvironment": "ce"}
SHOWN = {"status": "STARTING", "jobId": "u1", "observedGeneration": 1, "attempts": [A1]}
BOUND = {**SHOWN, "attempts": [{**A1, "nodeName": "node-a"}]}


@pytest.mark.parametrize(
    ("written", "new", "dispatched_at", "now", "delay", "expected"),
    [
        (SHOWN, BOUND, T, T + 5, 10.0, T + 10),  # only the node: held
        (SHOWN, BOUND, T, T + 10, 10.0, None),  # the hold is over: written
        (SHOWN, BOUND, T, T + 5, 0.0, None),  # no hold configured
        (SHOWN, BOUND, None, T + 5, 10.0, None),  # not dispatched by this operator
        (BOUND, {**BOUND, "attempts": [{**A1, "nodeName": "node-b"}]}, T, T + 5, 10.0, T + 10),
        (SHOWN, {**BOUND, "status": "RUNNING"}, T, T + 5, 10.0, None),  # a state change
        (SHOWN, {**BOUND, "statusReason": "x"}, T, T + 5, 10.0, None),  # a reason to show
        (SHOWN, {**BOUND, "observedGeneration": 2}, T, T + 5, 10.0, None),  # a spec change seen
        (SHOWN, {**BOUND, "attempts": [{**A1, "nodeName": "node-a", "exitCode": 1}]}, T, T + 5, 10.0, None),
        (SHOWN, {**BOUND, "attempts": [A1, {**A1, "attempt": 2}]}, T, T + 5, 10.0, None),  # a new attempt
        ({**SHOWN, "attempts": []}, {**SHOWN, "attempts": []}, T, T + 5, 10.0, None),  # nothing differs
        (SHOWN, SHOWN, T, T + 5, 10.0, None),
        ({}, BOUND, T, T + 5, 10.0, None),  # never written: not a detail (the whole status)
    ],
)
def test_detail_write_hold(
    written: dict[str, Any],
    new: dict[str, Any],
    dispatched_at: float | None,
    now: float,
    delay: float,
    expected: float | None,
) -> None:
    assert detail_write_hold(written, new, dispatched_at, now, delay) == expected


def test_a_pods_node_rides_with_the_running_write() -> None:
    kube = FakeKube()
    settings = Settings(starting_write_delay_seconds=0, detail_write_delay_seconds=60)
    controller = Controller(kube, one_job_state(), settings)  # type: ignore[arg-type]
    cycle(controller)
    assert kube.count("patch_status", JOB_STATUS) == 1  # STARTING, no hold configured for it
    assert "nodeName" not in job(controller).written["attempts"][0]
    bound = running_pod(phase="Pending") | {"status": {"phase": "Pending"}}
    controller.state.upsert_pod(bound)
    cycle(controller)
    assert kube.count("patch_status", JOB_STATUS) == 1  # only the node: held
    assert job(controller).status.attempts[0].nodeName == "node-a"
    assert job(controller).wake_at is not None
    controller.state.upsert_pod(running_pod())
    cycle(controller)
    assert kube.count("patch_status", JOB_STATUS) == 2
    written = job(controller).written
    assert (written["status"], written["attempts"][0]["nodeName"]) == ("RUNNING", "node-a")


def test_a_pods_node_is_written_when_the_detail_hold_ends() -> None:
    kube = FakeKube()
    settings = Settings(starting_write_delay_seconds=0, detail_write_delay_seconds=60)
    controller = Controller(kube, one_job_state(), settings)  # type: ignore[arg-type]
    cycle(controller)
    controller.state.upsert_pod(running_pod(phase="Pending") | {"status": {"phase": "Pending"}})
    cycle(controller)
    assert kube.count("patch_status", JOB_STATUS) == 1
    entry = past_the_hold(controller)
    assert kube.count("patch_status", JOB_STATUS) == 2
    assert (entry.written["status"], entry.written["attempts"][0]["nodeName"]) == ("STARTING", "node-a")
