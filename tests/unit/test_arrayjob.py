"""One array job's step (core.arrayjob): spawning, cancel/terminate cascading to the children,
a child whose SEQUENTIAL dependency failed, which child exits are kept, and the parent's end.
AWS rules: User Guide "Array jobs" ("Array job parents are updated to PENDING when any child
job is updated to RUNNABLE"; "If you cancel or terminate a parent array job, all the child jobs
are cancelled or terminated with it"; "if a child array job fails ... the parent job transitions
to FAILED when all child jobs complete")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from batchyard.api.batchjob import BatchJob, BatchJobStatus
from batchyard.core import deps, lifecycle, views
from batchyard.core.arrayjob import ArraySteps, ChildPod
from batchyard.core.arrays import ArrayChildren
from batchyard.core.capacity import Resources
from batchyard.core.failures import FailureCategory
from batchyard.core.jobref import JobRef
from batchyard.core.jobstate import JobState, Reason
from batchyard.core.retention import PodRetention
from batchyard.core.scheduler import JobView, Scheduler

NOW = 1_800_000_000.0
PARENT = JobRef("ns", "arr")

# --- builders ---------------------------------------------------------------------------------


@dataclass
class Record:
    """What core.arrayjob reads and updates of a parent (adapters.state.JobEntry in the loop)."""

    job: BatchJob
    status: BatchJobStatus
    children: ArrayChildren | None = None
    dirty_children: set[int] = field(default_factory=set)
    timed_children: set[int] = field(default_factory=set)
    wake_at: float | None = None
    pods_seen: set[str] = field(default_factory=set)


def a_parent(size: int, **spec: Any) -> Record:
    job = BatchJob.from_body(
        {
            "metadata": {"name": "arr", "namespace": "ns", "uid": "u-arr", "resourceVersion": "1"},
            "spec": {"jobQueue": "q", "jobDefinition": "d", "arrayProperties": {"size": size}, **spec},
        }
    )
    return Record(job, BatchJobStatus())


@dataclass
class Book:
    scheduler: Scheduler = field(default_factory=Scheduler)
    held: set[JobRef] = field(default_factory=set)
    restored_parents: set[JobRef] = field(default_factory=set)
    pending_child_pod_creates: list[JobRef] = field(default_factory=list)
    ended: list[JobRef] = field(default_factory=list)  # wake_dependents / wake_child_dependents

    def release(self, ref: JobRef, now: float, *, keep: bool = False) -> None:
        if not keep:
            self.scheduler.remove(ref, now)
            self.held.discard(ref)

    def wake_dependents(self, ref: JobRef) -> None:
        self.ended.append(ref)

    def wake_child_dependents(self, child: JobRef) -> None:
        self.ended.append(child)


@dataclass
class Host:
    record: Record
    pods: dict[str, lifecycle.PodObs] = field(default_factory=dict)
    pod_retention: PodRetention = PodRetention.NONE

    def context(
        self,
        *,
        pod: lifecycle.PodObs | None = None,
        pod_seen: bool | None = None,
        dependencies: deps.Resolution | None = None,
    ) -> lifecycle.Context:
        return lifecycle.Context(
            queue_exists=True,
            queue_problem=None,
            definition=lifecycle.Resolved(revision=1, rules=(), attempts=1, attempt_duration_seconds=None),
            definition_problem=None,
            dependencies=dependencies or deps.READY,
            pod=pod,
            pod_seen=bool(pod_seen),
            pod_retention=self.pod_retention,
        )

    def child_view(self, child: JobRef, *, retried: bool) -> JobView:
        return JobView(child, "q", 0.0, Resources.of(1, 512), retried=retried)

    def child_pod(self, pod_name: str) -> ChildPod | None:
        obs = self.pods.get(pod_name)
        return ChildPod(obs, "ce") if obs is not None else None

    def facts(self) -> deps.JobFacts:
        return views.facts(self.record.job, self.record.status, self.record.children)

    def lookup(self) -> deps.Lookup:
        return lambda ref: None


def pod_name(job_name: str, attempt: int, array_index: int | None, node_index: int | None = None) -> str:
    return f"{job_name}-{array_index}-a{attempt}"


def step(record: Record, book: Book, host: Host | None = None) -> lifecycle.Step:
    s = ArraySteps(book, pod_name).step(PARENT, record, host or Host(record), NOW)
    record.status = s.status
    return s


def spawned(size: int, states: dict[int, JobState], **spec: Any) -> tuple[Record, Book]:
    """A parent already PENDING whose children are in ``states`` (others RUNNABLE)."""
    record = a_parent(size, **spec)
    record.status = BatchJobStatus(status="PENDING", createdAt=lifecycle.iso(NOW - 60))
    record.children = ArrayChildren.new(size, JobState.RUNNABLE)
    for index, state in states.items():
        record.children.set_state(index, state)
    book = Book(restored_parents={PARENT})
    return record, book


# --- spawning ---------------------------------------------------------------------------------


def test_admission_spawns_the_children_and_the_parent_goes_pending() -> None:
    record, book = a_parent(3), Book()
    s = step(record, book)
    assert s.status.status == "PENDING" and s.events[-1].message == "array of 3 child jobs spawned"
    assert record.children is not None
    assert [record.children.state_of(i) for i in range(3)] == [JobState.RUNNABLE] * 3
    assert book.held == {PARENT.child(0), PARENT.child(1), PARENT.child(2)}  # each its own scheduler job
    assert PARENT in book.restored_parents
    assert s.status.arrayProperties is not None and s.status.arrayProperties.size == 3


def test_sequential_children_wait_for_the_one_before_and_fail_when_it_failed() -> None:
    record, book = a_parent(3, dependsOn=[{"type": "SEQUENTIAL"}]), Book()
    step(record, book)
    assert record.children is not None
    assert [record.children.state_of(i) for i in range(3)] == [
        JobState.RUNNABLE,
        JobState.PENDING,
        JobState.PENDING,
    ]
    record.children.set_state(0, JobState.FAILED)
    record.dirty_children = {1, 2}
    step(record, book)
    assert record.children.state_of(1) is JobState.FAILED  # AWS: its dependency failed
    assert record.children.state_of(2) is JobState.FAILED  # and so, in turn, did child 1
    assert dict(record.children.exits)[1].reason == Reason.DEPENDENT_JOB_FAILED


# --- cancel and terminate ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "running_child_after", "pod_deleted", "parent_after"),
    [
        pytest.param(
            "cancel", JobState.RUNNING, False, "PENDING", id="cancel leaves a running child running"
        ),
        pytest.param("terminate", JobState.FAILED, True, "FAILED", id="terminate stops a running child too"),
    ],
)
def test_a_parent_request_cascades_to_its_children(
    request_: str, running_child_after: JobState, pod_deleted: bool, parent_after: str
) -> None:
    record, book = spawned(3, {0: JobState.RUNNING}, **{request_: {"reason": "not needed"}})
    s = step(record, book)
    assert record.children is not None
    assert record.children.state_of(0) is running_child_after
    assert [record.children.state_of(i) for i in (1, 2)] == [JobState.FAILED, JobState.FAILED]
    assert ("arr-0-a1" in s.delete_pods) is pod_deleted
    assert s.status.status == parent_after and s.status.statusReason == "not needed"
    if parent_after == "FAILED":
        assert s.status.isTerminated and s.failure is FailureCategory.TERMINATED
        assert PARENT in book.ended  # dependents of the parent are woken


def test_a_child_request_stops_only_that_child() -> None:
    record, book = spawned(3, {}, childRequests=[{"index": 1, "action": "CANCEL", "reason": "skip it"}])
    step(record, book)
    assert record.children is not None
    assert [record.children.state_of(i) for i in range(3)] == [
        JobState.RUNNABLE,
        JobState.FAILED,
        JobState.RUNNABLE,
    ]
    assert book.ended == [PARENT.child(1)]


# --- children's attempts and the parent's end --------------------------------------------------


def test_only_failed_child_exits_are_kept_and_the_parent_fails_when_all_are_done() -> None:
    record, book = spawned(2, {0: JobState.RUNNING, 1: JobState.RUNNING})
    host = Host(
        record,
        pods={
            "arr-0-a1": lifecycle.PodObs("arr-0-a1", "Succeeded", exit_code=0),
            "arr-1-a1": lifecycle.PodObs("arr-1-a1", "Failed", exit_code=3, reason="Error"),
        },
    )
    record.dirty_children = {0, 1}
    s = step(record, book, host)
    assert record.children is not None
    assert record.children.state_of(0) is JobState.SUCCEEDED
    assert record.children.state_of(1) is JobState.FAILED
    assert set(dict(record.children.exits)) == {1}  # a success says nothing a state range doesn't
    assert s.status.status == "FAILED" and s.status.statusReason == "1 of 2 child jobs failed"
    assert s.failure is FailureCategory.OTHER
    assert sorted(s.delete_pods) == ["arr-0-a1", "arr-1-a1"]


def test_a_child_without_its_pod_when_starting_gets_it_recreated() -> None:
    record, book = spawned(2, {0: JobState.STARTING})
    record.dirty_children = {0}
    step(record, book)
    assert book.pending_child_pod_creates == [PARENT.child(0)]
