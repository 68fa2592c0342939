"""ClusterState's indexes that replace per-cycle scans of every job (issue 14): the wake-time heap
(``WakeQueue``: the loop's soonest wake and its due set) and the JobQueue counts kept as jobs
come, are written and go."""

from __future__ import annotations

from typing import Any

import pytest

from batchyard.adapters.state import ClusterState
from batchyard.core.jobref import JobRef


def a_job(name: str, queue: str = "q", status: str | None = None, uid: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "ns", "uid": uid or f"uid-{name}", "generation": 1},
        "spec": {"jobQueue": queue, "jobDefinition": "d"},
    }
    if status is not None:
        body["status"] = {"status": status}
    return body


def state_with(*names: str) -> ClusterState:
    st = ClusterState()
    for name in names:
        st.upsert_job(a_job(name))
    return st


def scan_due(st: ClusterState, now: float) -> set[JobRef]:
    """What the loop computed before: every job scanned."""
    return {k for k, e in st.jobs.items() if e.wake_at is not None and e.wake_at <= now}


def scan_soonest(st: ClusterState) -> float | None:
    return min((e.wake_at for e in st.jobs.values() if e.wake_at is not None), default=None)


@pytest.mark.parametrize(
    ("wakes", "now", "due", "soonest"),
    [
        pytest.param({"a": 5.0, "b": 20.0}, 10.0, {"a"}, 5.0, id="only the job whose time came is due"),
        pytest.param({"a": None, "b": None}, 10.0, set(), None, id="nothing to wake: no soonest"),
        pytest.param({"a": 10.0}, 10.0, {"a"}, 10.0, id="a wake exactly now is due"),
        pytest.param({"a": 30.0, "b": 15.0, "c": 40.0}, 10.0, set(), 15.0, id="the soonest of several"),
    ],
)
def test_the_heap_answers_as_the_old_scan_did(
    wakes: dict[str, float | None], now: float, due: set[str], soonest: float | None
) -> None:
    st = state_with(*wakes)
    for name, at in wakes.items():
        st.jobs[JobRef("ns", name)].wake_at = at
    assert st.wakes.soonest() == scan_soonest(st) == soonest
    assert st.wakes.pop_due(now) == scan_due(st, now) == {JobRef("ns", n) for n in due}


def test_a_wake_moved_later_is_not_due_at_its_old_time() -> None:
    st = state_with("a")
    entry = st.jobs[JobRef("ns", "a")]
    entry.wake_at = 5.0
    entry.wake_at = 50.0  # the loop stepped it and set a later time
    assert st.wakes.soonest() == 50.0
    assert st.wakes.pop_due(10.0) == set()
    assert st.wakes.pop_due(50.0) == {JobRef("ns", "a")}


def test_a_cleared_wake_is_never_due() -> None:
    st = state_with("a")
    st.jobs[JobRef("ns", "a")].wake_at = 5.0
    st.jobs[JobRef("ns", "a")].wake_at = None
    assert st.wakes.soonest() is None
    assert st.wakes.pop_due(100.0) == set()


def test_a_forgotten_job_never_wakes() -> None:
    st = state_with("a", "b")
    st.jobs[JobRef("ns", "a")].wake_at = 5.0
    st.jobs[JobRef("ns", "b")].wake_at = 8.0
    st.forget_job(JobRef("ns", "a"))
    assert st.wakes.soonest() == 8.0
    assert st.wakes.pop_due(100.0) == {JobRef("ns", "b")}


def test_stale_items_do_not_pile_up_when_one_job_is_woken_again_and_again() -> None:
    st = state_with("a")
    entry = st.jobs[JobRef("ns", "a")]
    for i in range(10_000):
        entry.wake_at = 1_000_000.0 + i  # each later than the last: the old items stay stale
    assert len(st.wakes) <= 2 * len(st.jobs) + 1025
    assert st.wakes.soonest() == 1_000_000.0 + 9_999


@pytest.mark.parametrize(
    ("jobs", "written", "forgotten", "expected"),
    [
        pytest.param(
            [a_job("a"), a_job("b")], {}, [], {"q": {"": 2}}, id="new jobs count as not written yet"
        ),
        pytest.param(
            [a_job("a"), a_job("b")],
            {"a": "RUNNABLE", "b": "RUNNING"},
            [],
            {"q": {"RUNNABLE": 1, "RUNNING": 1}},
            id="a write moves a job between states",
        ),
        pytest.param(
            [a_job("a", status="RUNNING"), a_job("b", queue="other", status="RUNNABLE")],
            {},
            [],
            {"q": {"RUNNING": 1}, "other": {"RUNNABLE": 1}},
            id="jobs loaded after a restart count by their status, per queue",
        ),
        pytest.param(
            [a_job("a", status="RUNNING"), a_job("b", status="RUNNING")],
            {},
            ["a", "b"],
            {},
            id="deleted jobs leave the counts, and an emptied queue goes",
        ),
    ],
)
def test_queue_counts_follow_what_was_written(
    jobs: list[dict[str, Any]],
    written: dict[str, str],
    forgotten: list[str],
    expected: dict[str, dict[str, int]],
) -> None:
    st = ClusterState()
    for body in jobs:
        st.upsert_job(body)
    for name, status in written.items():
        entry = st.jobs[JobRef("ns", name)]
        st.record_written(entry, {**entry.written, "status": status})
    for name in forgotten:
        st.forget_job(JobRef("ns", name))
    assert {q: dict(c) for q, c in st.queue_counts.items()} == expected


def test_a_job_recreated_under_the_same_name_is_counted_once() -> None:
    st = ClusterState()
    st.upsert_job(a_job("a", status="RUNNING", uid="u1"))
    st.upsert_job(a_job("a", uid="u2"))  # deleted and created again: the old one is forgotten
    assert {q: dict(c) for q, c in st.queue_counts.items()} == {"q": {"": 1}}
