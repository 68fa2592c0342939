"""Array children kept compactly in the parent's status (core.arrayjob.array_detail and
adapters.arrayjobs.children_of): core.arrays.ArrayChildren -> BatchJob status -> API JSON -> ArrayChildren again,
as after an operator restart."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from batchyard.adapters.arrayjobs import children_of
from batchyard.adapters.state import JobEntry
from batchyard.api.batchjob import BatchJob, BatchJobStatus
from batchyard.core.arrayjob import array_detail
from batchyard.core.arrays import ArrayChildren
from batchyard.core.jobstate import JobState

S = JobState


def a_parent(size: int) -> BatchJob:
    return BatchJob.from_body(
        {
            "metadata": {"name": "arr", "namespace": "ns", "uid": "uid-arr"},
            "spec": {"jobQueue": "q", "jobDefinition": "d", "arrayProperties": {"size": size}},
        }
    )


def restored(children: ArrayChildren) -> ArrayChildren | None:
    """Write the children into a status, through JSON as the API server stores it, and read back."""
    status = BatchJobStatus(status="PENDING", arrayProperties=array_detail(children))
    body = {**a_parent(children.size).to_body(), "status": status.model_dump(mode="json", exclude_none=True)}
    job = BatchJob.from_body(body)
    assert job.status is not None
    return children_of(JobEntry(job=job, status=job.status, written={}))


def fresh(size: int) -> ArrayChildren:
    return ArrayChildren.new(size)


def mixed() -> ArrayChildren:
    c = ArrayChildren.new(50)
    c.set_range_state(0, 6, S.SUCCEEDED)
    c.set_state(7, S.FAILED)
    c.set_range_state(8, 9, S.RUNNING)
    c.set_state(10, S.STARTING)
    c.set_range_state(11, 30, S.RUNNABLE)
    c.set_attempt(7, 3)
    c.set_attempt(8, 2)
    c.set_attempt(9, 2)
    c.record_exit(7, 137, "OOMKilled")
    c.record_exit(8, 1, "Error")
    c.record_exit(9, None, "Pod arr-9-a1 was deleted before the attempt finished")
    c.record_exit(0, 0, None)
    c.record_exit(1, None, None)
    return c


def exits_full() -> ArrayChildren:
    c = ArrayChildren.new(600)
    c.set_range_state(0, 599, S.FAILED)
    for i in range(600):
        c.record_exit(i, 1, "Error")
    return c


def all_done() -> ArrayChildren:
    c = ArrayChildren.new(10_000)
    c.set_range_state(0, 9_999, S.SUCCEEDED)
    return c


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: fresh(2), id="a new array of 2: all PENDING"),
        pytest.param(mixed, id="every state, retried children, last exits with and without code/reason"),
        pytest.param(exits_full, id="more exits than kept: the omitted count survives"),
        pytest.param(all_done, id="10,000 children all SUCCEEDED: one range"),
    ],
)
def test_children_round_trip_through_the_status(make: Callable[[], ArrayChildren]) -> None:
    children = make()

    assert restored(children) == children


def test_the_detail_carries_the_status_summary_and_size() -> None:
    detail = array_detail(mixed())

    assert detail.size == 50
    assert detail.statusSummary is not None
    assert detail.statusSummary.model_dump() == {
        "SUBMITTED": 0,
        "PENDING": 19,
        "RUNNABLE": 20,
        "STARTING": 1,
        "RUNNING": 2,
        "SUCCEEDED": 7,
        "FAILED": 1,
    }
    assert detail.children is not None
    assert detail.children.states == {
        "PENDING": "31-49",
        "RUNNABLE": "11-30",
        "STARTING": "10",
        "RUNNING": "8-9",
        "SUCCEEDED": "0-6",
        "FAILED": "7",
    }
    assert detail.children.attempts == {"2": "8-9", "3": "7"}


def test_a_fresh_array_writes_no_empty_optional_fields() -> None:
    detail = array_detail(fresh(3))

    assert detail.children is not None
    assert (detail.children.attempts, detail.children.lastExits, detail.children.lastExitsOmitted) == (
        None,
        None,
        None,
    )


def test_children_of_keeps_the_restored_children() -> None:
    job = a_parent(4)
    status = BatchJobStatus(status="PENDING", arrayProperties=array_detail(fresh(4)))
    entry = JobEntry(job=job, status=status, written={})

    first = children_of(entry)

    assert first is not None and children_of(entry) is first


def test_a_parent_not_yet_admitted_has_no_children() -> None:
    job = a_parent(4)

    assert children_of(JobEntry(job=job, status=BatchJobStatus(), written={})) is None


def test_the_detail_carries_the_progress_line_for_the_printer_column() -> None:
    detail = array_detail(mixed())

    assert detail.progress == "SUCCEEDED 7/50, FAILED 1, RUNNING 2, STARTING 1, RUNNABLE 20, PENDING 19"


def test_a_child_keeps_its_times_and_last_status_reason_through_the_api_and_describe() -> None:
    from batchyard.cli.describe import child_detail
    from batchyard.core.lifecycle import iso

    children = fresh(3)
    children.set_state(1, S.FAILED)
    children.record_times(1, 1_764_560_000.123, 1_764_560_004.5)
    children.record_exit(1, 3, "Error", "Essential container in task exited")
    again = restored(children)
    assert again is not None and again.times == children.times and again.exits == children.exits

    status = BatchJobStatus(
        status="PENDING", createdAt=iso(1_764_559_999.0), arrayProperties=array_detail(children)
    )
    job = BatchJob.from_body(
        {**a_parent(3).to_body(), "status": status.model_dump(mode="json", exclude_none=True)}
    )
    detail = child_detail(job, 1, None)

    assert (detail["createdAt"], detail["startedAt"], detail["stoppedAt"]) == (
        iso(1_764_559_999.0),
        iso(1_764_560_000.123),
        iso(1_764_560_004.5),
    )
    assert detail["statusReason"] == "Essential container in task exited"
