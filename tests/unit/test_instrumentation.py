"""The loop's hooks move the metrics an operator reads: one story per job, told as transitions.

Each story is the sequence of (old state, new state, status) the loop reports after its writes
reached the API server; the counters must move by exactly what happened to the job, including
the cases a naive state diff gets wrong (a retry re-dispatched within one cycle, a new leader's
first sight of a job already running).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from batchyard.adapters import metrics
from batchyard.adapters.instrumentation import Instrumentation
from batchyard.adapters.state import ClusterState, JobEntry
from batchyard.api.batchjob import AttemptDetail, BatchJob, BatchJobStatus
from batchyard.core.capacity import Resources
from batchyard.core.consumables import ConsumableUsage
from batchyard.core.failures import FailureCategory, classify
from batchyard.core.jobref import JobRef
from batchyard.core.jobstate import JobState, Reason
from batchyard.core.lifecycle import Step as Step_
from batchyard.core.lifecycle import fail, transition
from batchyard.core.scheduler import CEUsage, CycleResult

_queues = itertools.count()


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def an_entry(queue: str, name: str = "j1") -> JobEntry:
    job = BatchJob.from_body(
        {
            "apiVersion": "batchyard.io/v1alpha1",
            "kind": "BatchJob",
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
            "spec": {"jobQueue": queue, "jobDefinition": "jd"},
        }
    )
    return JobEntry(job=job, status=BatchJobStatus(), written={})


def attempt(
    n: int, started: bool = True, stopped: bool = False, exit_code: int | None = None
) -> AttemptDetail:
    return AttemptDetail(
        attempt=n,
        podName=f"j1-{n}",
        computeEnvironment="ce",
        startedAt="2026-01-01T00:00:00Z" if started else None,
        stoppedAt="2026-01-01T00:00:07Z" if stopped else None,
        exitCode=exit_code,
    )


# One step: (old, new, attempts after it, statusReason)
Step = tuple[str | None, str, list[AttemptDetail], str | None]

SUCCESS: list[Step] = [
    (None, "RUNNABLE", [], None),
    ("RUNNABLE", "STARTING", [attempt(1, started=False)], None),
    ("STARTING", "RUNNING", [attempt(1)], None),
    ("RUNNING", "SUCCEEDED", [attempt(1, stopped=True, exit_code=0)], None),
]
RETRY_IN_ONE_CYCLE: list[Step] = [
    (None, "STARTING", [attempt(1, started=False)], None),  # submitted and dispatched at once
    ("STARTING", "RUNNING", [attempt(1)], None),
    ("RUNNING", "STARTING", [attempt(1, stopped=True, exit_code=1), attempt(2, started=False)], None),
    ("STARTING", "RUNNING", [attempt(1, stopped=True, exit_code=1), attempt(2)], None),
    (
        "RUNNING",
        "FAILED",
        [attempt(1, stopped=True, exit_code=1), attempt(2, stopped=True, exit_code=1)],
        Reason.ESSENTIAL_CONTAINER_EXITED,
    ),
]
RETRY_VIA_RUNNABLE: list[Step] = [
    (None, "RUNNABLE", [], None),
    ("RUNNABLE", "STARTING", [attempt(1, started=False)], None),
    ("STARTING", "RUNNING", [attempt(1)], None),
    ("RUNNING", "RUNNABLE", [attempt(1, stopped=True, exit_code=137)], None),
    ("RUNNABLE", "STARTING", [attempt(1, stopped=True, exit_code=137), attempt(2, started=False)], None),
    (
        "STARTING",
        "SUCCEEDED",
        [attempt(1, stopped=True, exit_code=137), attempt(2, stopped=True, exit_code=0)],
        None,
    ),
]
NEW_LEADER_SEES_A_RUNNING_JOB_END: list[Step] = [
    ("RUNNING", "SUCCEEDED", [attempt(1, stopped=True, exit_code=0)], None),
]
NEW_LEADER_DISPATCHES_A_RETRY: list[Step] = [
    ("RUNNABLE", "STARTING", [attempt(1, stopped=True, exit_code=1), attempt(2, started=False)], None),
]
DEPENDENCY_FAILED: list[Step] = [
    (None, "PENDING", [], None),
    ("PENDING", "FAILED", [], Reason.DEPENDENT_JOB_FAILED),
]


@pytest.mark.parametrize(
    ("story", "expected"),
    [
        pytest.param(
            SUCCESS, dict(sub=1, disp=1, retry=0, fail={}, waited=1, ran=1), id="succeeds first time"
        ),
        pytest.param(
            RETRY_IN_ONE_CYCLE,
            dict(sub=1, disp=2, retry=1, fail={"NonZeroExit": 1}, waited=2, ran=2),
            id="retried and re-dispatched in one cycle (RUNNING -> STARTING), then fails",
        ),
        pytest.param(
            RETRY_VIA_RUNNABLE,
            dict(sub=1, disp=2, retry=1, fail={}, waited=2, ran=2),
            id="retried through RUNNABLE, second attempt succeeds",
        ),
        pytest.param(
            NEW_LEADER_SEES_A_RUNNING_JOB_END,
            dict(sub=0, disp=0, retry=0, fail={}, waited=0, ran=1),
            id="a new leader's first sight: nothing counted twice",
        ),
        pytest.param(
            NEW_LEADER_DISPATCHES_A_RETRY,
            dict(sub=0, disp=1, retry=0, fail={}, waited=1, ran=0),
            id="a new leader dispatches a retry it did not see fail",
        ),
        pytest.param(
            DEPENDENCY_FAILED,
            dict(sub=1, disp=0, retry=0, fail={"DependencyFailed": 1}, waited=0, ran=0),
            id="a dependency fails: never dispatched",
        ),
    ],
)
def test_transitions_move_the_counters_by_what_happened(story: list[Step], expected: dict[str, Any]) -> None:
    queue = f"q-story-{next(_queues)}"
    inst = Instrumentation(state=ClusterState())
    entry = an_entry(queue)
    for old, new, attempts, reason in story:
        entry.status = BatchJobStatus(
            status=new,  # type: ignore[arg-type]
            statusReason=reason,
            attempts=attempts or None,
            computeEnvironment="ce" if attempts else None,
            createdAt="2026-01-01T00:00:00Z",
        )
        inst.on_transition(entry, old, new)
    got = dict(
        sub=sample("batchyard_job_submissions_total", queue=queue),
        disp=sample("batchyard_job_dispatches_total", queue=queue, compute_environment="ce"),
        retry=sample("batchyard_job_retries_total", queue=queue),
        fail={
            r: sample("batchyard_job_failures_total", queue=queue, reason=r)
            for r in ("NonZeroExit", "DependencyFailed", "Timeout", "Other")
            if sample("batchyard_job_failures_total", queue=queue, reason=r)
        },
        waited=sample("batchyard_job_runnable_seconds_count", queue=queue),
        ran=sample("batchyard_job_running_seconds_count", queue=queue),
    )
    assert got == expected
    if expected["ran"]:
        assert sample("batchyard_job_running_seconds_sum", queue=queue) == 7 * expected["ran"]
    if story[-1][1] in ("SUCCEEDED", "FAILED"):
        assert not inst.attempts_seen and not inst.runnable_since  # nothing kept for finished jobs


@pytest.mark.parametrize(
    ("status", "category"),
    [
        pytest.param(BatchJobStatus(statusReason=Reason.TIMEOUT), "Timeout", id="attempt timeout"),
        pytest.param(BatchJobStatus(isCancelled=True, statusReason="because"), "Cancelled", id="cancelled"),
        pytest.param(BatchJobStatus(isTerminated=True, statusReason="stop"), "Terminated", id="terminated"),
        pytest.param(
            BatchJobStatus(statusReason=Reason.invalid_job_definition("no image")),
            "InvalidJobDefinition",
            id="invalid definition",
        ),
        pytest.param(
            BatchJobStatus(statusReason="Pod j1-1 was deleted before the attempt finished"),
            "PodLost",
            id="pod lost",
        ),
        pytest.param(
            BatchJobStatus(
                statusReason="custom EXIT reason", attempts=[attempt(1, stopped=True, exit_code=2)]
            ),
            "NonZeroExit",
            id="evaluateOnExit EXIT with free text: still bounded",
        ),
        pytest.param(
            BatchJobStatus(statusReason="anything else"), "Other", id="free text never becomes a label"
        ),
    ],
)
def test_failure_reasons_become_a_few_categories(status: BatchJobStatus, category: str) -> None:
    assert classify(status) == category


def test_each_cycle_sets_jobs_by_queue_and_state_ce_vcpus_and_consumables_and_forgets_the_gone() -> None:
    queue = f"q-cycle-{next(_queues)}"
    state = ClusterState()
    state.upsert_cluster_object(
        "jobqueues",
        {
            "apiVersion": "batchyard.io/v1alpha1",
            "kind": "JobQueue",
            "metadata": {"name": queue},
            "spec": {"priority": 1, "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce-m"}]},
        },
    )
    state.upsert_cluster_object(
        "computeenvironments",
        {
            "apiVersion": "batchyard.io/v1alpha1",
            "kind": "ComputeEnvironment",
            "metadata": {"name": "ce-m"},
            "spec": {"type": "UNMANAGED", "unmanagedvCpus": 8},
            "status": {"desiredvCpus": 6},
        },
    )
    for name, st in (("a", "RUNNING"), ("b", "RUNNABLE"), ("c", "RUNNABLE"), ("d", None)):
        body: dict[str, object] = {
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "1"},
            "spec": {"jobQueue": queue, "jobDefinition": "jd"},
        }
        if st is not None:
            body["status"] = {"status": st}
        state.upsert_job(body)
    # A status decided but not yet written counts as what the API server shows (RUNNABLE).
    state.jobs[JobRef("ns", "b")].status = BatchJobStatus(status="STARTING")  # type: ignore[arg-type]
    inst = Instrumentation(state)
    result = CycleResult(
        decisions=[],
        queues={},
        compute_environments={"ce-m": CEUsage("ce-m", Resources(milli_cpu=2500), 1)},
        consumables={"lic": ConsumableUsage("lic", 5, 2, 3, 0)},
        truncated=False,
    )
    asyncio.run(inst.write(result))
    assert {
        s: sample("batchyard_jobs", queue=queue, state=s) for s in ("SUBMITTED", "RUNNABLE", "RUNNING")
    } == {
        "SUBMITTED": 1,
        "RUNNABLE": 2,
        "RUNNING": 1,
    }
    assert sample("batchyard_compute_environment_in_use_vcpus", compute_environment="ce-m") == 2.5
    assert sample("batchyard_compute_environment_desired_vcpus", compute_environment="ce-m") == 6
    assert sample("batchyard_consumable_resource_in_use", consumable_resource="lic") == 2
    assert sample("batchyard_consumable_resource_available", consumable_resource="lic") == 3

    state.queues.clear()
    for name in "abcd":
        state.forget_job(JobRef("ns", name))
    state.compute_environments.clear()
    asyncio.run(inst.write(CycleResult([], {}, {}, {}, False)))
    assert metrics.REGISTRY.get_sample_value("batchyard_jobs", {"queue": queue, "state": "RUNNING"}) is None
    labels = {"compute_environment": "ce-m"}
    assert metrics.REGISTRY.get_sample_value("batchyard_compute_environment_in_use_vcpus", labels) is None
    assert (
        metrics.REGISTRY.get_sample_value(
            "batchyard_consumable_resource_in_use", {"consumable_resource": "lic"}
        )
        is None
    )


def test_the_failure_category_decided_by_the_lifecycle_is_the_one_counted() -> None:
    # The lifecycle stores the category on its Step when the job FAILS (core.failures); the
    # loop hands it to the hook, so the metric never depends on parsing the statusReason.
    queue = f"q-story-{next(_queues)}"
    inst = Instrumentation(state=ClusterState())
    entry = an_entry(queue)
    entry.status = BatchJobStatus(status="FAILED", statusReason="a user's own words")
    inst.on_transition(entry, "RUNNING", "FAILED", FailureCategory.TIMEOUT)
    assert sample("batchyard_job_failures_total", queue=queue, reason="Timeout") == 1
    assert sample("batchyard_job_failures_total", queue=queue, reason="Other") == 0


def test_moving_to_failed_records_the_category_on_the_step() -> None:
    step = Step_(status=BatchJobStatus(status="RUNNABLE"), now=0.0)
    fail(step, 0.0, "Canceled by JobStateTimeLimit action", cancelled=True)
    assert step.failure is FailureCategory.CANCELLED
    ok = Step_(status=BatchJobStatus(status="RUNNING"), now=0.0)
    transition(ok, JobState.SUCCEEDED, None)
    assert ok.failure is None
