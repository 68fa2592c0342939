"""The job state machine: transitions, cancel vs terminate, timeouts, statusReason strings."""

from __future__ import annotations

import itertools

import pytest

from batchyard.core.jobstate import (
    ARRAY_PARENT_TRANSITIONS,
    TERMINAL_STATES,
    TRANSITIONS,
    IllegalTransition,
    JobState,
    Reason,
    StopKind,
    StopOutcome,
    attempt_deadline,
    can_transition,
    is_timed_out,
    on_cancel,
    on_stop,
    on_terminate,
    on_timeout,
    transition,
)

S = JobState

ALLOWED = {
    (S.SUBMITTED, S.PENDING),
    (S.SUBMITTED, S.RUNNABLE),
    (S.SUBMITTED, S.FAILED),
    (S.PENDING, S.RUNNABLE),
    (S.PENDING, S.FAILED),
    (S.RUNNABLE, S.STARTING),
    (S.RUNNABLE, S.FAILED),
    (S.STARTING, S.RUNNING),
    (S.STARTING, S.SUCCEEDED),
    (S.STARTING, S.FAILED),
    (S.STARTING, S.RUNNABLE),
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.RUNNABLE),
}


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(JobState)
    assert set(ARRAY_PARENT_TRANSITIONS) == set(JobState)


@pytest.mark.parametrize(
    ("src", "dst"),
    [pytest.param(a, b, id=f"{a} -> {b}") for a, b in itertools.product(JobState, JobState)],
)
def test_transition_table_is_exactly_the_documented_one(src: JobState, dst: JobState) -> None:
    expected = (src, dst) in ALLOWED
    assert can_transition(src, dst) is expected
    if expected:
        assert transition(src, dst) is dst
    else:
        with pytest.raises(IllegalTransition):
            transition(src, dst)


@pytest.mark.parametrize(
    ("src", "dst", "allowed"),
    [
        pytest.param(S.SUBMITTED, S.PENDING, True, id="parent SUBMITTED -> PENDING"),
        pytest.param(S.SUBMITTED, S.FAILED, True, id="parent cancelled before children"),
        pytest.param(S.PENDING, S.SUCCEEDED, True, id="parent PENDING -> SUCCEEDED"),
        pytest.param(S.PENDING, S.FAILED, True, id="parent PENDING -> FAILED"),
        pytest.param(S.PENDING, S.RUNNABLE, False, id="parent never RUNNABLE"),
        pytest.param(S.SUBMITTED, S.RUNNING, False, id="parent never RUNNING"),
        pytest.param(S.SUCCEEDED, S.FAILED, False, id="parent terminal is final"),
    ],
)
def test_array_parent_transitions(src: JobState, dst: JobState, allowed: bool) -> None:
    assert can_transition(src, dst, array_parent=True) is allowed


def test_terminal_states_have_no_exit() -> None:
    assert {s for s in JobState if s.is_terminal} == TERMINAL_STATES == {S.SUCCEEDED, S.FAILED}
    for state in TERMINAL_STATES:
        assert TRANSITIONS[state] == frozenset()


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param(
            S.SUBMITTED, StopOutcome(S.FAILED, True, False, "stop it", True, False), id="SUBMITTED cancels"
        ),
        pytest.param(
            S.PENDING, StopOutcome(S.FAILED, True, False, "stop it", True, False), id="PENDING cancels"
        ),
        pytest.param(
            S.RUNNABLE, StopOutcome(S.FAILED, True, False, "stop it", True, False), id="RUNNABLE cancels"
        ),
        pytest.param(S.STARTING, StopOutcome(S.STARTING, False), id="STARTING: cancel is a no-op"),
        pytest.param(S.RUNNING, StopOutcome(S.RUNNING, False), id="RUNNING: cancel is a no-op"),
        pytest.param(S.SUCCEEDED, StopOutcome(S.SUCCEEDED, False), id="SUCCEEDED: cancel is a no-op"),
        pytest.param(S.FAILED, StopOutcome(S.FAILED, False), id="FAILED: cancel is a no-op"),
    ],
)
def test_cancel_by_state(state: JobState, expected: StopOutcome) -> None:
    assert on_cancel(state, "stop it") == expected
    assert on_stop(StopKind.CANCEL, state, "stop it") == expected


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param(
            S.SUBMITTED, StopOutcome(S.FAILED, True, False, "stop it", True, False), id="SUBMITTED: cancelled"
        ),
        pytest.param(
            S.PENDING, StopOutcome(S.FAILED, True, False, "stop it", True, False), id="PENDING: cancelled"
        ),
        pytest.param(
            S.RUNNABLE, StopOutcome(S.FAILED, True, False, "stop it", True, False), id="RUNNABLE: cancelled"
        ),
        pytest.param(
            S.STARTING, StopOutcome(S.FAILED, True, True, "stop it", False, True), id="STARTING: pod stopped"
        ),
        pytest.param(
            S.RUNNING, StopOutcome(S.FAILED, True, True, "stop it", False, True), id="RUNNING: pod stopped"
        ),
        pytest.param(S.SUCCEEDED, StopOutcome(S.SUCCEEDED, False), id="SUCCEEDED: no-op"),
        pytest.param(S.FAILED, StopOutcome(S.FAILED, False), id="FAILED: no-op"),
    ],
)
def test_terminate_by_state(state: JobState, expected: StopOutcome) -> None:
    assert on_terminate(state, "stop it") == expected
    assert on_stop(StopKind.TERMINATE, state, "stop it") == expected


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        pytest.param(StopKind.CANCEL, Reason.CANCELLED_DEFAULT, id="cancel without reason"),
        pytest.param(StopKind.TERMINATE, Reason.TERMINATED_DEFAULT, id="terminate without reason"),
    ],
)
def test_stop_default_reason(kind: StopKind, expected: str) -> None:
    assert on_stop(kind, S.RUNNABLE).status_reason == expected
    assert on_stop(kind, S.RUNNABLE, "").status_reason == expected


def test_every_applied_stop_is_a_legal_transition() -> None:
    for state, kind in itertools.product(JobState, StopKind):
        outcome = on_stop(kind, state)
        if outcome.applied:
            assert can_transition(state, outcome.state)
        else:
            assert outcome.state is state
            assert not outcome.stop_pod


@pytest.mark.parametrize(
    ("state", "running_since", "duration", "now", "expected"),
    [
        pytest.param(S.RUNNING, 1000.0, 60, 1059.9, False, id="RUNNING just before the deadline"),
        pytest.param(S.RUNNING, 1000.0, 60, 1060.0, True, id="RUNNING at the deadline"),
        pytest.param(S.RUNNING, 1000.0, 60, 5000.0, True, id="RUNNING long after the deadline"),
        pytest.param(S.RUNNING, 1000.0, None, 10**9, False, id="no timeout configured"),
        pytest.param(S.RUNNING, None, 60, 10**9, False, id="no RUNNING timestamp yet"),
        pytest.param(S.STARTING, 1000.0, 60, 5000.0, False, id="STARTING is not counted"),
        pytest.param(S.RUNNABLE, 1000.0, 60, 5000.0, False, id="RUNNABLE between attempts"),
        pytest.param(S.SUCCEEDED, 1000.0, 60, 5000.0, False, id="terminal jobs never time out"),
    ],
)
def test_is_timed_out(
    state: JobState, running_since: float | None, duration: int | None, now: float, expected: bool
) -> None:
    assert is_timed_out(state, running_since, duration, now) is expected


def test_deadline_counts_from_running_not_starting() -> None:
    starting_at, running_at = 100.0, 700.0  # ten minutes of image pull in STARTING
    assert attempt_deadline(running_at, 120) == 820.0
    assert attempt_deadline(running_at, 120) != starting_at + 120
    assert attempt_deadline(None, 120) is None


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param(
            S.RUNNING, StopOutcome(S.FAILED, True, True, Reason.TIMEOUT), id="RUNNING times out, pod stopped"
        ),
        pytest.param(S.STARTING, StopOutcome(S.STARTING, False), id="STARTING cannot time out"),
        pytest.param(S.FAILED, StopOutcome(S.FAILED, False), id="terminal ignores timeout"),
    ],
)
def test_on_timeout(state: JobState, expected: StopOutcome) -> None:
    assert on_timeout(state) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(Reason.DEPENDENT_JOB_FAILED, "Dependent Job failed", id="dependency failure verbatim"),
        pytest.param(Reason.TIMEOUT, "Job attempt duration exceeded timeout", id="timeout verbatim"),
        pytest.param(
            Reason.dependency_not_submitted("a"), "Waiting for dependency a to be submitted", id="not yet"
        ),
        pytest.param(Reason.dependency_cycle(("a", "b")), "Dependency cycle: a -> b -> a", id="cycle closes"),
        pytest.param(
            Reason.dependencies_outstanding(("a", "b")), "Waiting for dependencies: a, b", id="waiting"
        ),
        pytest.param(Reason.dependency_not_found(("u1",)), "Dependent Job not found: u1", id="not found"),
        pytest.param(Reason.invalid_dependency(["x", "y"]), "Invalid dependsOn: x; y", id="invalid"),
    ],
)
def test_reason_strings(value: str, expected: str) -> None:
    assert value == expected


# --- the table is the state machine -------------------------------------------------------------


def test_the_lifecycle_refuses_a_move_the_transition_table_does_not_allow() -> None:
    from batchyard.api.batchjob import BatchJobStatus
    from batchyard.core.jobstate import IllegalTransition
    from batchyard.core.lifecycle import Step, transition

    step = Step(status=BatchJobStatus(status="SUCCEEDED"), now=0.0)
    with pytest.raises(IllegalTransition, match="SUCCEEDED to RUNNING"):
        transition(step, JobState.RUNNING, None)
    pending = Step(status=BatchJobStatus(status="PENDING"), now=0.0)
    with pytest.raises(IllegalTransition):  # AWS: a single job goes PENDING -> RUNNABLE first
        transition(pending, JobState.STARTING, None)
    transition(pending, JobState.SUCCEEDED, None, array_parent=True)  # an array parent may
    assert pending.status.status == "SUCCEEDED"


def test_job_refs_name_a_job_or_one_array_child() -> None:
    from batchyard.core.jobref import JobRef

    child = JobRef("ns", "arr").child(3)
    assert child.parent == JobRef("ns", "arr") and child.is_child and not child.parent.is_child
    assert str(child) == "ns/arr:3" and str(child.parent) == "ns/arr"
    assert len({child, JobRef("ns", "arr", 3), child.parent}) == 2
