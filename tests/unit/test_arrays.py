"""Array children bookkeeping: range sets, child states, parent rules, compact status."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from batchyard.core.arrays import (
    MAX_EXIT_DETAILS,
    MAX_REASON_LENGTH,
    MAX_TIME_DETAILS,
    ArrayChildren,
    ChildExit,
    ChildTimes,
    RangeSet,
    progress_text,
)
from batchyard.core.jobstate import JobState, StopKind

S = JobState
API_OBJECT_LIMIT = int(1.5 * 1024 * 1024)  # the API server's request limit (etcd default)


def ranges(text: str) -> RangeSet:
    return RangeSet.parse(text)


def an_array(size: int = 10, **states: str) -> ArrayChildren:
    """an_array(10, RUNNING="0-2", SUCCEEDED="3") — the rest stay PENDING."""
    children = ArrayChildren.new(size)
    for name, text in states.items():
        for s, e in ranges(text).ranges():
            children.set_range_state(s, e, S(name))
    return children


# --- RangeSet -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("adds", "expected"),
    [
        pytest.param([], "", id="empty"),
        pytest.param([5], "5", id="single"),
        pytest.param([5, 6], "5-6", id="adjacent merge upward"),
        pytest.param([6, 5], "5-6", id="adjacent merge downward"),
        pytest.param([1, 3, 2], "1-3", id="gap filled joins both sides"),
        pytest.param([1, 3], "1,3", id="gap kept"),
        pytest.param([3, 3], "3", id="idempotent add"),
        pytest.param([9, 0, 4], "0,4,9", id="kept sorted"),
    ],
)
def test_rangeset_add(adds: list[int], expected: str) -> None:
    rs = RangeSet()
    for x in adds:
        rs.add(x)
    assert rs.to_str() == expected
    assert len(rs) == len(set(adds))


@pytest.mark.parametrize(
    ("start", "remove", "expected"),
    [
        pytest.param("0-9", (0, 0), "1-9", id="trim left end"),
        pytest.param("0-9", (9, 9), "0-8", id="trim right end"),
        pytest.param("0-9", (4, 5), "0-3,6-9", id="split in the middle"),
        pytest.param("0-2,5-7,9", (1, 8), "0,9", id="across several ranges"),
        pytest.param("0-2,5-7", (3, 4), "0-2,5-7", id="remove in a gap is a no-op"),
        pytest.param("0-2", (0, 2), "", id="remove everything"),
        pytest.param("", (0, 5), "", id="remove from empty"),
    ],
)
def test_rangeset_remove_range(start: str, remove: tuple[int, int], expected: str) -> None:
    rs = ranges(start)
    rs.remove_range(*remove)
    assert rs.to_str() == expected
    assert len(rs) == len(set(ranges(expected)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("0-6,8-49", "0-6,8-49", id="kubernetes completedIndexes form"),
        pytest.param("3,1,2", "1-3", id="parse normalises order and merges"),
        pytest.param("0-4,2-8", "0-8", id="overlaps merge"),
        pytest.param("", "", id="empty string"),
    ],
)
def test_rangeset_parse(text: str, expected: str) -> None:
    assert ranges(text).to_str() == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a", id="not a number"),
        pytest.param("5-3", id="backwards range"),
        pytest.param("-1", id="negative"),
        pytest.param("1,,2", id="empty element"),
    ],
)
def test_rangeset_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        ranges(text)


def test_rangeset_membership_and_iteration() -> None:
    rs = ranges("0-2,7")
    assert [x for x in range(10) if x in rs] == [0, 1, 2, 7]
    assert list(rs) == [0, 1, 2, 7]
    assert "1" not in rs
    assert rs.first() == 0
    assert RangeSet().first() is None


def test_rangeset_matches_a_plain_set_under_random_edits() -> None:
    rng = random.Random(20240601)
    rs, model = RangeSet(), set[int]()
    for _ in range(3000):
        a = rng.randrange(200)
        b = min(199, a + rng.randrange(6))
        if rng.random() < 0.55:
            rs.add_range(a, b)
            model.update(range(a, b + 1))
        else:
            rs.remove_range(a, b)
            model.difference_update(range(a, b + 1))
        assert len(rs) == len(model)
    assert list(rs) == sorted(model)
    spans = rs.ranges()
    assert all(e1 + 1 < s2 for (_, e1), (s2, _) in itertools.pairwise(spans))  # merged, disjoint
    assert RangeSet.parse(rs.to_str()) == rs


# --- child states ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [pytest.param(1, id="size 1 is not an array"), pytest.param(10_001, id="over the AWS maximum")],
)
def test_array_size_limits(size: int) -> None:
    with pytest.raises(ValueError, match="between 2 and 10000"):
        ArrayChildren.new(size)


def test_new_array_children_start_pending() -> None:
    children = ArrayChildren.new(5)
    assert all(children.state_of(i) is S.PENDING for i in range(5))
    assert children.status_summary() == {s.value: (5 if s is S.PENDING else 0) for s in JobState}


def test_set_state_moves_one_child_and_returns_the_previous_state() -> None:
    children = ArrayChildren.new(10)
    assert children.set_state(3, S.RUNNABLE) is S.PENDING
    assert children.set_state(3, S.RUNNABLE) is S.RUNNABLE  # idempotent
    assert children.state_of(3) is S.RUNNABLE
    assert children.in_state(S.PENDING).to_str() == "0-2,4-9"
    assert children.status_summary()["RUNNABLE"] == 1


def test_states_always_partition_the_children() -> None:
    rng = random.Random(7)
    children = ArrayChildren.new(300)
    model = [S.PENDING] * 300
    for _ in range(2000):
        i, state = rng.randrange(300), rng.choice(list(JobState))
        if rng.random() < 0.2:
            j = min(299, i + rng.randrange(20))
            children.set_range_state(i, j, state)
            model[i : j + 1] = [state] * (j - i + 1)
        else:
            children.set_state(i, state)
            model[i] = state
    assert [children.state_of(i) for i in range(300)] == model
    assert sum(children.status_summary().values()) == 300
    assert all(children.states.values()), "empty state buckets are dropped"


@pytest.mark.parametrize(
    "index", [pytest.param(-1, id="negative index"), pytest.param(10, id="index equal to size")]
)
def test_child_index_bounds(index: int) -> None:
    with pytest.raises(IndexError):
        ArrayChildren.new(10).state_of(index)


# --- parent state ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("children", "current", "expected"),
    [
        pytest.param(
            an_array(3), S.SUBMITTED, S.SUBMITTED, id="all children pending: parent still SUBMITTED"
        ),
        pytest.param(
            an_array(3, RUNNABLE="0"), S.SUBMITTED, S.PENDING, id="a child RUNNABLE: parent PENDING"
        ),
        pytest.param(an_array(3, RUNNING="0-1"), S.PENDING, S.PENDING, id="children running: parent PENDING"),
        pytest.param(an_array(3), S.PENDING, S.PENDING, id="parent PENDING on dependencies stays PENDING"),
        pytest.param(
            an_array(3, SUCCEEDED="0-1", RUNNING="2"), S.PENDING, S.PENDING, id="one child still running"
        ),
        pytest.param(an_array(3, SUCCEEDED="0-2"), S.PENDING, S.SUCCEEDED, id="all succeeded: SUCCEEDED"),
        pytest.param(
            an_array(3, SUCCEEDED="0,2", FAILED="1"), S.PENDING, S.FAILED, id="one failed, all done: FAILED"
        ),
        pytest.param(
            an_array(3, FAILED="1", RUNNING="0,2"),
            S.PENDING,
            S.PENDING,
            id="a failed child waits for the others (AWS: FAILED when all complete)",
        ),
        pytest.param(an_array(3, FAILED="0-2"), S.SUBMITTED, S.FAILED, id="all failed before dispatch"),
        pytest.param(an_array(3, RUNNING="0"), S.FAILED, S.FAILED, id="terminal parent is final"),
    ],
)
def test_parent_state(children: ArrayChildren, current: JobState, expected: JobState) -> None:
    assert children.parent_state(current) is expected


@pytest.mark.parametrize(
    ("kind", "fail_now", "stop_pods"),
    [
        pytest.param(StopKind.CANCEL, "0-1,5-9", "", id="cancel leaves STARTING/RUNNING children alone"),
        pytest.param(StopKind.TERMINATE, "0-1,3-9", "3-4", id="terminate stops running children too"),
    ],
)
def test_children_to_stop(kind: StopKind, fail_now: str, stop_pods: str) -> None:
    children = an_array(10, SUBMITTED="0", RUNNABLE="1", SUCCEEDED="2", STARTING="3", RUNNING="4")
    stop = children.children_to_stop(kind)
    assert stop.fail_now.to_str() == fail_now
    assert stop.stop_pods.to_str() == stop_pods


# --- attempts and exits ---------------------------------------------------------------------


def test_attempt_numbers_are_exact_and_compact() -> None:
    children = ArrayChildren.new(100)
    assert children.attempt_of(5) == 1
    children.set_attempt(5, 2)
    children.set_attempt(6, 2)
    children.set_attempt(5, 3)
    assert (children.attempt_of(5), children.attempt_of(6), children.attempt_of(7)) == (3, 2, 1)
    assert {n: rs.to_str() for n, rs in children.attempts.items()} == {2: "6", 3: "5"}
    children.set_attempt(6, 1)
    assert 2 not in children.attempts
    with pytest.raises(ValueError):
        children.set_attempt(1, 0)


def test_exit_details_are_bounded() -> None:
    children = ArrayChildren.new(10_000)
    for i in range(MAX_EXIT_DETAILS + 10):
        children.record_exit(i, 1, "Error")
    assert len(children.exits) == MAX_EXIT_DETAILS
    assert children.exits_omitted == 10
    assert children.record_exit(0, 137, "x" * 1000) is True, "existing entries are always updated"
    assert children.exits[0] == ChildExit(137, "x" * MAX_REASON_LENGTH)
    assert children.record_exit(9_999, 2, None) is False


# --- serialization --------------------------------------------------------------------------


def test_status_round_trip() -> None:
    children = an_array(50, RUNNING="7", SUCCEEDED="0-6,8-49")
    children.set_attempt(7, 2)
    children.record_exit(7, 137, "OOMKilled", "Essential container in task exited")
    children.record_times(7, 1_700_000_000.123)
    children.record_times(3, 1_700_000_000.0, 1_700_000_004.5)
    status = children.to_status()
    assert status == {
        "size": 50,
        "states": {"RUNNING": "7", "SUCCEEDED": "0-6,8-49"},
        "attempts": {"2": "7"},
        "lastExits": {"7": [137, "OOMKilled", "Essential container in task exited"]},
        "times": {"3": "1700000000000-1700000004500", "7": "1700000000123-"},
    }
    again = ArrayChildren.from_status(json.loads(json.dumps(status)))
    assert again.to_status() == status
    assert again.state_of(7) is S.RUNNING
    assert again.attempt_of(7) == 2


@pytest.mark.parametrize(
    ("status", "message"),
    [
        pytest.param({"size": 5, "states": {"PENDING": "0-3"}}, "cover 4 of 5", id="a child without a state"),
        pytest.param(
            {"size": 5, "states": {"PENDING": "0-4", "RUNNING": "2"}}, "overlap", id="a child in two states"
        ),
        pytest.param({"size": 5, "states": {"PENDING": "0-5"}}, "exceed", id="index beyond size"),
        pytest.param({"size": "5", "states": {}}, "int", id="size not an int"),
        pytest.param({"size": 2, "states": {"PENDING": 1}}, "strings", id="ranges not strings"),
    ],
)
def test_from_status_rejects_inconsistent_data(status: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ArrayChildren.from_status(status)


def fully_fragmented(size: int) -> ArrayChildren:
    """Worst case: neighbouring children always in different states, every child retried."""
    states = list(JobState)
    children = ArrayChildren.new(size)
    for i in range(size):
        children.set_state(i, states[i % len(states)])
        children.set_attempt(i, 2 + i % 9)
        long = "Pod was evicted because node ran out of memory " * 3
        children.record_exit(i, 137, long, long)
        children.record_times(i, 1_764_560_000.123 + i, 1_764_560_100.456 + i)
    return children


def test_a_10000_child_parent_stays_far_below_the_object_limit() -> None:
    children = fully_fragmented(10_000)
    encoded = json.dumps(
        {"arrayProperties": {"statusSummary": children.status_summary(), **children.to_status()}}
    )
    # Every child is a singleton range in both tables, plus 500 bounded exit details and 500
    # bounded start/stop times.
    assert len(encoded) < 256 * 1024
    assert len(encoded) < API_OBJECT_LIMIT / 6
    assert (
        ArrayChildren.from_status(json.loads(encoded)["arrayProperties"]).to_status() == children.to_status()
    )


def test_a_typical_10000_child_parent_is_tiny() -> None:
    children = an_array(10_000, SUCCEEDED="0-6999", RUNNING="7000-7099", RUNNABLE="7100-9999")
    assert len(json.dumps(children.to_status())) < 200


# --- progress text (the BatchJob Progress column) -------------------------------------------


@pytest.mark.parametrize(
    ("children", "expected"),
    [
        pytest.param(an_array(4), "SUCCEEDED 0/4, PENDING 4", id="just spawned: all pending"),
        pytest.param(
            an_array(10_000, SUCCEEDED="0-90", FAILED="91-528", RUNNING="529-540", RUNNABLE="541-9999"),
            "SUCCEEDED 91/10000, FAILED 438, RUNNING 12, RUNNABLE 9459",
            id="the issue's 10,000-child array mid-run: failures first, then work under way",
        ),
        pytest.param(an_array(3, SUCCEEDED="0-2"), "SUCCEEDED 3/3", id="all succeeded: no other states"),
        pytest.param(
            an_array(5, FAILED="0-4"), "SUCCEEDED 0/5, FAILED 5", id="all failed: succeeded still shown"
        ),
        pytest.param(
            an_array(6, STARTING="0", RUNNING="1", SUCCEEDED="2"),
            "SUCCEEDED 1/6, RUNNING 1, STARTING 1, PENDING 3",
            id="zero counts are left out",
        ),
    ],
)
def test_progress_text(children: ArrayChildren, expected: str) -> None:
    assert progress_text(children.status_summary(), children.size) == expected


def test_status_written_before_status_reasons_were_kept_still_loads() -> None:
    children = ArrayChildren.from_status(
        {"size": 2, "states": {"FAILED": "0-1"}, "lastExits": {"1": [3, "Error"]}}
    )

    assert children.exits[1] == ChildExit(3, "Error", None)


def test_child_times_are_bounded_first_come_first_kept() -> None:
    children = an_array(MAX_TIME_DETAILS + 2, RUNNING=f"0-{MAX_TIME_DETAILS + 1}")
    kept = [children.record_times(i, 1.0 + i) for i in range(MAX_TIME_DETAILS + 2)]

    assert kept.count(False) == 2
    assert (len(children.times), children.times_omitted) == (MAX_TIME_DETAILS, 2)
    assert children.record_times(0, 5.0, 6.0)  # an entry already kept is always updated
    assert children.times[0] == ChildTimes(5.0, 6.0)
