"""AWS "Automated job retries": evaluateOnExit matching, attempts, never-retry causes."""

from __future__ import annotations

import pytest

from batchyard.core.jobstate import JobState, Reason
from batchyard.core.retry import (
    Action,
    AttemptExit,
    ExitRule,
    Fail,
    FailCause,
    Retry,
    after_attempt,
    after_failed_attempt,
    attempt_status_reason,
    exit_rule_errors,
    parse_action,
    pattern_matches,
    retry_strategy_errors,
    rule_matches,
)


def retry_on(
    exit_code: str | None = None, reason: str | None = None, status_reason: str | None = None
) -> ExitRule:
    return ExitRule(Action.RETRY, exit_code, reason, status_reason)


def exit_on(
    exit_code: str | None = None, reason: str | None = None, status_reason: str | None = None
) -> ExitRule:
    return ExitRule(Action.EXIT, exit_code, reason, status_reason)


def exited(code: int | None = 1, reason: str | None = None, status_reason: str | None = None) -> AttemptExit:
    return AttemptExit(exit_code=code, reason=reason, status_reason=status_reason)


# The AWS User Guide example: two RETRY entries and a catch-all EXIT.
AWS_EXAMPLE = [
    retry_on(reason="AGENT"),
    retry_on(status_reason="Task failed to start"),
    exit_on(reason="*"),
]
# The AWS Spot best-practice example.
SPOT_EXAMPLE = [retry_on(status_reason="Host EC2*"), exit_on(reason="*")]


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        pytest.param("137", "137", True, id="exact exit code matches"),
        pytest.param("137", "1370", False, id="exact pattern is not a prefix match"),
        pytest.param("13*", "137", True, id="trailing star matches a prefix"),
        pytest.param("13*", "13", True, id="trailing star matches the empty rest"),
        pytest.param("13*", "14", False, id="trailing star needs the prefix"),
        pytest.param("*", "anything at all", True, id="lone star matches anything"),
        pytest.param("*", None, True, id="lone star matches an absent value"),
        pytest.param("*", "", True, id="lone star matches the empty string"),
        pytest.param("AGENT", None, False, id="literal does not match an absent value"),
        pytest.param("agent", "AGENT", False, id="matching is case sensitive"),
        pytest.param("1*3", "123", False, id="inner star is literal, not a wildcard"),
        pytest.param("1*3", "1*3", True, id="inner star matches itself literally"),
        pytest.param("Host EC2*", "Host EC2 (instance i-0abc) terminated.", True, id="AWS spot pattern"),
        pytest.param("Task failed to start", "Task failed to start", True, id="AWS status reason exact"),
        pytest.param("Task failed to start", "Task failed to start ", False, id="trailing space matters"),
    ],
)
def test_pattern_matches(pattern: str, value: str | None, expected: bool) -> None:
    assert pattern_matches(pattern, value) is expected


@pytest.mark.parametrize(
    ("rule", "exit", "expected"),
    [
        pytest.param(retry_on(exit_code="137"), exited(137), True, id="exit 137 matches RETRY rule"),
        pytest.param(retry_on(exit_code="137"), exited(1), False, id="exit 1 does not match 137"),
        pytest.param(retry_on(exit_code="1*"), exited(143), True, id="exit 143 matches 1*"),
        pytest.param(retry_on(exit_code="-1"), exited(-1), True, id="negative exit code in decimal"),
        pytest.param(retry_on(exit_code="*"), exited(None), True, id="star matches a missing exit code"),
        pytest.param(retry_on(exit_code="0*"), exited(None), False, id="missing exit code is not 0"),
        pytest.param(
            retry_on(exit_code="137", reason="OOMKilled"),
            exited(137, reason="OOMKilled"),
            True,
            id="all specified conditions match",
        ),
        pytest.param(
            retry_on(exit_code="137", reason="OOMKilled"),
            exited(137, reason="Error"),
            False,
            id="AND: one condition failing fails the entry",
        ),
        pytest.param(
            retry_on(exit_code="137", reason="OOM*", status_reason="Essential*"),
            exited(137, reason="OOMKilled", status_reason="Essential container in task exited"),
            True,
            id="three conditions all matching",
        ),
        pytest.param(
            retry_on(exit_code="137", reason="OOM*", status_reason="Host*"),
            exited(137, reason="OOMKilled", status_reason="Essential container in task exited"),
            False,
            id="three conditions, status reason failing",
        ),
        pytest.param(
            retry_on(status_reason="Host EC2*"),
            exited(None, status_reason="Host EC2 (instance i-1) terminated."),
            True,
            id="status reason only, exit code ignored",
        ),
        pytest.param(
            exit_on(status_reason="Essential*"),
            exited(1),
            True,
            id="AWS: an ordinary failure's statusReason (Essential container in task exited) is matched",
        ),
        pytest.param(
            exit_on(status_reason="Host EC2*"), exited(1), False, id="... and is not a host failure"
        ),
        pytest.param(ExitRule(Action.RETRY), exited(1), False, id="entry without conditions never matches"),
    ],
)
def test_rule_matches(rule: ExitRule, exit: AttemptExit, expected: bool) -> None:
    assert rule_matches(rule, exit) is expected


@pytest.mark.parametrize(
    ("rules", "attempts", "attempt", "exit", "expected"),
    [
        pytest.param(
            [],
            1,
            1,
            exited(1),
            Fail(Reason.ESSENTIAL_CONTAINER_EXITED, FailCause.ATTEMPTS_EXHAUSTED),
            id="default single attempt fails",
        ),
        pytest.param(
            [],
            3,
            1,
            exited(1),
            Retry(2, Reason.ESSENTIAL_CONTAINER_EXITED, None),
            id="no rules, attempts left: retry",
        ),
        pytest.param(
            [],
            3,
            2,
            exited(1),
            Retry(3, Reason.ESSENTIAL_CONTAINER_EXITED, None),
            id="second of three attempts retries",
        ),
        pytest.param(
            [],
            3,
            3,
            exited(1),
            Fail(Reason.ESSENTIAL_CONTAINER_EXITED, FailCause.ATTEMPTS_EXHAUSTED),
            id="attempts=3 means at most three attempts",
        ),
        pytest.param(
            [exit_on(exit_code="1")],
            3,
            1,
            exited(2),
            Retry(2, Reason.ESSENTIAL_CONTAINER_EXITED, None),
            id="nothing matches: retried (AWS default)",
        ),
        pytest.param(
            [retry_on(exit_code="137")],
            3,
            1,
            exited(137),
            Retry(2, Reason.ESSENTIAL_CONTAINER_EXITED, 0),
            id="exit 137 matches RETRY rule",
        ),
        pytest.param(
            [retry_on(exit_code="137")],
            2,
            2,
            exited(137),
            Fail(Reason.ESSENTIAL_CONTAINER_EXITED, FailCause.ATTEMPTS_EXHAUSTED, 0),
            id="matching RETRY rule still bounded by attempts",
        ),
        pytest.param(
            [exit_on(exit_code="1")],
            5,
            1,
            exited(1),
            Fail(Reason.ESSENTIAL_CONTAINER_EXITED, FailCause.EXIT_RULE, 0),
            id="EXIT rule fails with attempts left",
        ),
        pytest.param(
            [retry_on(exit_code="1*"), exit_on(exit_code="137")],
            5,
            1,
            exited(137),
            Retry(2, Reason.ESSENTIAL_CONTAINER_EXITED, 0),
            id="first matching entry wins over a later EXIT",
        ),
        pytest.param(
            [exit_on(exit_code="137"), retry_on(exit_code="1*")],
            5,
            1,
            exited(137),
            Fail(Reason.ESSENTIAL_CONTAINER_EXITED, FailCause.EXIT_RULE, 0),
            id="first matching entry wins over a later RETRY",
        ),
        pytest.param(
            AWS_EXAMPLE,
            3,
            1,
            exited(1, reason="AGENT"),
            Retry(2, Reason.ESSENTIAL_CONTAINER_EXITED, 0),
            id="AWS example: reason AGENT retries",
        ),
        pytest.param(
            AWS_EXAMPLE,
            3,
            1,
            exited(None, status_reason="Task failed to start"),
            Retry(2, "Task failed to start", 1),
            id="AWS example: Task failed to start retries",
        ),
        pytest.param(
            AWS_EXAMPLE,
            3,
            1,
            exited(2, reason="Error"),
            Fail(Reason.ESSENTIAL_CONTAINER_EXITED, FailCause.EXIT_RULE, 2),
            id="AWS example: anything else exits",
        ),
        pytest.param(
            AWS_EXAMPLE,
            3,
            1,
            exited(2),
            Fail(Reason.ESSENTIAL_CONTAINER_EXITED, FailCause.EXIT_RULE, 2),
            id="AWS example: catch-all matches an absent reason",
        ),
        pytest.param(
            SPOT_EXAMPLE,
            5,
            1,
            exited(None, status_reason="Host EC2 (instance i-1) terminated."),
            Retry(2, "Host EC2 (instance i-1) terminated.", 0),
            id="spot example: host loss retries",
        ),
        pytest.param(
            SPOT_EXAMPLE,
            5,
            1,
            exited(3, reason="Error"),
            Fail(Reason.ESSENTIAL_CONTAINER_EXITED, FailCause.EXIT_RULE, 1),
            id="spot example: application error exits",
        ),
        pytest.param(
            [retry_on(exit_code="*")],
            5,
            1,
            AttemptExit(exit_code=137, timed_out=True),
            Fail(Reason.TIMEOUT, FailCause.TIMED_OUT),
            id="timed out never retries even with a RETRY match",
        ),
        pytest.param(
            [retry_on(exit_code="*")],
            5,
            1,
            AttemptExit(exit_code=137, status_reason="Job terminated by ops", terminated=True),
            Fail("Job terminated by ops", FailCause.TERMINATED),
            id="terminated never retries, keeps the caller's reason",
        ),
        pytest.param(
            [],
            5,
            1,
            AttemptExit(terminated=True),
            Fail(Reason.TERMINATED_DEFAULT, FailCause.TERMINATED),
            id="terminated without reason gets the default reason",
        ),
        pytest.param(
            [retry_on(exit_code="*")],
            5,
            1,
            AttemptExit(cancelled=True),
            Fail(Reason.CANCELLED_DEFAULT, FailCause.CANCELLED),
            id="cancelled never retries",
        ),
        pytest.param(
            [],
            5,
            1,
            AttemptExit(invalid_job_definition=True, status_reason="Invalid job definition: no image"),
            Fail("Invalid job definition: no image", FailCause.INVALID_JOB_DEFINITION),
            id="invalid job definition never retries",
        ),
        pytest.param(
            [],
            5,
            1,
            AttemptExit(timed_out=True, terminated=True, status_reason="user"),
            Fail(Reason.TIMEOUT, FailCause.TIMED_OUT),
            id="timeout reason wins over any other reason",
        ),
    ],
)
def test_after_failed_attempt(
    rules: list[ExitRule], attempts: int, attempt: int, exit: AttemptExit, expected: Retry | Fail
) -> None:
    assert after_failed_attempt(rules, attempts, attempt, exit) == expected


@pytest.mark.parametrize(
    ("exit", "expected"),
    [
        pytest.param(exited(0), JobState.SUCCEEDED, id="exit 0 succeeds"),
        pytest.param(
            AttemptExit(exit_code=0, terminated=True),
            FailCause.TERMINATED,
            id="exit 0 after terminate still fails",
        ),
        pytest.param(
            AttemptExit(exit_code=0, timed_out=True), FailCause.TIMED_OUT, id="exit 0 after timeout fails"
        ),
        pytest.param(exited(1), FailCause.ATTEMPTS_EXHAUSTED, id="exit 1 with one attempt fails"),
        pytest.param(exited(None), FailCause.ATTEMPTS_EXHAUSTED, id="no exit code is not success"),
    ],
)
def test_after_attempt(exit: AttemptExit, expected: JobState | FailCause) -> None:
    outcome = after_attempt([], 1, 1, exit)
    if isinstance(expected, JobState):
        assert outcome is expected
    else:
        assert isinstance(outcome, Fail)
        assert outcome.cause is expected
        assert outcome.state is JobState.FAILED


def test_retry_goes_back_to_runnable() -> None:
    outcome = after_failed_attempt([], 2, 1, exited(1))
    assert isinstance(outcome, Retry)
    assert outcome.state is JobState.RUNNABLE


@pytest.mark.parametrize(
    ("attempts", "attempt"),
    [pytest.param(0, 1, id="zero attempts allowed"), pytest.param(1, 0, id="attempt numbers start at 1")],
)
def test_after_failed_attempt_rejects_nonsense(attempts: int, attempt: int) -> None:
    with pytest.raises(ValueError):
        after_failed_attempt([], attempts, attempt, exited(1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("RETRY", Action.RETRY, id="upper case"),
        pytest.param("retry", Action.RETRY, id="lower case (AWS: values aren't case sensitive)"),
        pytest.param("Exit", Action.EXIT, id="mixed case"),
    ],
)
def test_parse_action(text: str, expected: Action) -> None:
    assert parse_action(text) is expected


def test_parse_action_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="RETRY or EXIT"):
        parse_action("IGNORE")


@pytest.mark.parametrize(
    ("exit", "expected"),
    [
        pytest.param(AttemptExit(timed_out=True, status_reason="x"), Reason.TIMEOUT, id="timeout"),
        pytest.param(exited(1, status_reason="Pod evicted"), "Pod evicted", id="observed reason kept"),
        pytest.param(AttemptExit(cancelled=True), Reason.CANCELLED_DEFAULT, id="cancel default"),
        pytest.param(AttemptExit(terminated=True), Reason.TERMINATED_DEFAULT, id="terminate default"),
        pytest.param(
            AttemptExit(invalid_job_definition=True),
            Reason.invalid_job_definition("unspecified"),
            id="invalid definition default",
        ),
        pytest.param(exited(1), Reason.ESSENTIAL_CONTAINER_EXITED, id="plain failure"),
    ],
)
def test_attempt_status_reason(exit: AttemptExit, expected: str) -> None:
    assert attempt_status_reason(exit) == expected


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        pytest.param(ExitRule(Action.EXIT), "at least one", id="no conditions"),
        pytest.param(exit_on(exit_code="13a"), "onExitCode", id="letters in exit code"),
        pytest.param(exit_on(exit_code="*1"), "onExitCode", id="leading star in exit code"),
        pytest.param(exit_on(reason="OOM(Killed)"), "onReason", id="parentheses in reason"),
        pytest.param(exit_on(status_reason="a*b"), "onStatusReason", id="inner star in status reason"),
        pytest.param(exit_on(reason="x" * 513), "longer than 512", id="pattern too long"),
    ],
)
def test_exit_rule_errors(rule: ExitRule, fragment: str) -> None:
    errors = exit_rule_errors(rule)
    assert len(errors) == 1
    assert fragment in errors[0]


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param(exit_on(exit_code="137"), id="numeric exit code"),
        pytest.param(exit_on(exit_code="*"), id="star exit code"),
        pytest.param(retry_on(status_reason="Host EC2*"), id="AWS spot pattern"),
        pytest.param(retry_on(status_reason="Received status from SageMaker: Internal*"), id="colon allowed"),
        pytest.param(retry_on(reason="a.b\tc*"), id="period and tab allowed"),
        pytest.param(retry_on(reason="x" * 512), id="exactly 512 characters"),
    ],
)
def test_exit_rule_valid(rule: ExitRule) -> None:
    assert exit_rule_errors(rule) == []


@pytest.mark.parametrize(
    ("rules", "attempts", "fragments"),
    [
        pytest.param([], None, [], id="no strategy is valid"),
        pytest.param([], 10, [], id="ten attempts is the maximum"),
        pytest.param([], 11, ["between 1 and 10"], id="eleven attempts"),
        pytest.param([], 0, ["between 1 and 10"], id="zero attempts"),
        pytest.param(
            [exit_on(reason="*")], None, ["requires attempts"], id="evaluateOnExit without attempts"
        ),
        pytest.param([exit_on(reason="*")] * 6, 2, ["at most 5"], id="six entries"),
        pytest.param(
            [exit_on(reason="*"), ExitRule(Action.EXIT)], 2, ["evaluateOnExit[1]"], id="bad entry indexed"
        ),
    ],
)
def test_retry_strategy_errors(rules: list[ExitRule], attempts: int | None, fragments: list[str]) -> None:
    errors = retry_strategy_errors(rules, attempts)
    assert len(errors) == len(fragments)
    for error, fragment in zip(errors, fragments, strict=True):
        assert fragment in error
