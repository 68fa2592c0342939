"""AWS "Automated job retries": what happens after an attempt ends.

Why this module exists: retry behaviour is a user-visible contract (users paste their AWS
`retryStrategy` into a BatchJob) and has surprising defaults — a failed attempt that matches
no `evaluateOnExit` entry is RETRIED — so it gets one pure function with exhaustive tests.

Mapping from the API models (one line per field):
    ExitRule(parse_action(e.action), e.onExitCode, e.onReason, e.onStatusReason)
    attempts_allowed = retryStrategy.attempts or 1

Rules implemented (AWS User Guide "Automated job retries" and "Retry strategy"; S000):
* "By default, each job is given one attempt"; attempts is 1..10 and counts all attempts, so
  attempt N may be retried only while N < attempts ("the number of attempts specified in the
  retry configuration is greater than the AWS_BATCH_JOB_ATTEMPT number").
* "If evaluateOnExit is specified but none of the entries match, then the job is retried."
* An entry's action applies "if all of the specified conditions (onStatusReason, onReason, and
  onExitCode) are met" — AND over the conditions present.
* Entries are evaluated in order and the first match wins (digest §3.1.6 [INFERENCE]: the
  advice "For jobs that don't match to exit, add a final entry that exits for any reason" only
  makes sense with ordered first-match).
* Patterns: "It can optionally end with an asterisk (*) so that only the start of the string
  needs to be an exact match." Only a trailing `*` is a wildcard; anything else is literal.
  Matching is case-sensitive ("exact match"); the "values aren't case sensitive" sentence is
  part of the `action` field's documentation and applies to RETRY/EXIT only.
* onExitCode matches "the decimal representation of the ExitCode".
* A value that is absent (no exit code, e.g. the pod never ran; no reason) is matched as the
  empty string, so `*` matches it and any other pattern does not. This keeps the documented
  catch-all `{"action": "EXIT", "onReason": "*"}` a catch-all.
* "Jobs that are cancelled or terminated aren't retried. Also, jobs that fail because of an
  invalid job definition aren't retried." "If a job is terminated due to a timeout, it isn't
  retried." These override both evaluateOnExit and remaining attempts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from batchyard.core.jobstate import JobState, Reason

MAX_ATTEMPTS = 10  # AWS: "You can specify between 1 and 10 attempts."
MAX_EXIT_RULES = 5  # AWS: "Array of up to 5 objects"
MAX_PATTERN_LENGTH = 512  # AWS: "The pattern can be up to 512 characters"

# AWS onExitCode: "It can contain only numbers ... can optionally end with an asterisk".
_EXIT_CODE_PATTERN = re.compile(r"[0-9]*\*?")
# AWS onReason/onStatusReason: "letters, numbers, periods (.), colons (:), and white space
# (spaces, tabs). It can optionally end with an asterisk (*)".
_TEXT_PATTERN = re.compile(r"[A-Za-z0-9.: \t]*\*?")


class Action(StrEnum):
    RETRY = "RETRY"
    EXIT = "EXIT"


def parse_action(value: str) -> Action:
    """AWS: "The values aren't case sensitive." ("retry", "Exit" are accepted)."""
    try:
        return Action(value.upper())
    except ValueError:
        raise ValueError(f"evaluateOnExit action must be RETRY or EXIT, got {value!r}") from None


@dataclass(frozen=True, slots=True)
class ExitRule:
    """One evaluateOnExit entry. None means "condition not specified" (ignored when matching)."""

    action: Action
    on_exit_code: str | None = None
    on_reason: str | None = None
    on_status_reason: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptExit:
    """How an attempt ended, as observed from its pod and from the operator's own actions.

    `reason` is the container reason (DescribeJobs `container.reason` / `eksAttempts[].containers[].reason`,
    e.g. "OOMKilled"); `status_reason` is the attempt's statusReason.
    """

    exit_code: int | None = None
    reason: str | None = None
    status_reason: str | None = None
    cancelled: bool = False
    terminated: bool = False
    timed_out: bool = False
    invalid_job_definition: bool = False


class FailCause(StrEnum):
    EXIT_RULE = "EXIT_RULE"  # an evaluateOnExit entry with action EXIT matched
    ATTEMPTS_EXHAUSTED = "ATTEMPTS_EXHAUSTED"
    CANCELLED = "CANCELLED"
    TERMINATED = "TERMINATED"
    TIMED_OUT = "TIMED_OUT"
    INVALID_JOB_DEFINITION = "INVALID_JOB_DEFINITION"


@dataclass(frozen=True, slots=True)
class Retry:
    """Move the job back to RUNNABLE for `next_attempt` (AWS_BATCH_JOB_ATTEMPT of the next pod)."""

    next_attempt: int
    status_reason: str
    matched_rule: int | None  # index into evaluateOnExit, None when nothing matched
    state: JobState = JobState.RUNNABLE


@dataclass(frozen=True, slots=True)
class Fail:
    status_reason: str
    cause: FailCause
    matched_rule: int | None = None
    state: JobState = JobState.FAILED


def pattern_matches(pattern: str, value: str | None) -> bool:
    """Exact match, or prefix match when the pattern ends with `*` (the only wildcard)."""
    text = "" if value is None else value
    if pattern.endswith("*"):
        return text.startswith(pattern[:-1])
    return text == pattern


def rule_matches(rule: ExitRule, exit: AttemptExit) -> bool:
    """AWS: the action applies "if all of the specified conditions ... are met" (AND)."""
    exit_code = None if exit.exit_code is None else str(exit.exit_code)  # decimal representation
    checks = (
        (rule.on_exit_code, exit_code),
        (rule.on_reason, exit.reason),
        # AWS: onStatusReason is matched against the statusReason the attempt reports, which
        # for an ordinary failure is "Essential container in task exited" (not an empty string).
        (rule.on_status_reason, attempt_status_reason(exit)),
    )
    specified = [(p, v) for p, v in checks if p is not None]
    # An entry without conditions is invalid (exit_rule_errors); it never matches.
    return bool(specified) and all(pattern_matches(p, v) for p, v in specified)


def first_matching_rule(rules: Sequence[ExitRule], exit: AttemptExit) -> int | None:
    for i, rule in enumerate(rules):
        if rule_matches(rule, exit):
            return i
    return None


def attempt_status_reason(exit: AttemptExit) -> str:
    """The statusReason recorded for a finished, unsuccessful attempt.

    The observed status_reason wins; otherwise the string AWS reports for that cause
    (digest §2.5) so that evaluateOnExit patterns written for AWS keep matching.
    """
    if exit.timed_out:
        return Reason.TIMEOUT  # AWS: timeout reason is fixed, whatever the pod said
    if exit.status_reason:
        return exit.status_reason
    if exit.terminated:
        return Reason.TERMINATED_DEFAULT
    if exit.cancelled:
        return Reason.CANCELLED_DEFAULT
    if exit.invalid_job_definition:
        return Reason.invalid_job_definition("unspecified")
    return Reason.ESSENTIAL_CONTAINER_EXITED


def after_failed_attempt(
    rules: Sequence[ExitRule],
    attempts_allowed: int,
    attempt_number: int,
    exit: AttemptExit,
) -> Retry | Fail:
    """AWS "Automated job retries": first matching evaluateOnExit entry wins; none -> retry.

    `attempt_number` is the attempt that just ended (1-based, = its AWS_BATCH_JOB_ATTEMPT).
    Cancelled, terminated, timed-out and invalid-job-definition attempts never retry.
    """
    if attempts_allowed < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts_allowed}")
    if attempt_number < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt_number}")
    reason = attempt_status_reason(exit)
    # AWS: these never retry, whatever evaluateOnExit says. Order: the most specific cause first.
    if exit.timed_out:
        return Fail(reason, FailCause.TIMED_OUT)
    if exit.terminated:
        return Fail(reason, FailCause.TERMINATED)
    if exit.cancelled:
        return Fail(reason, FailCause.CANCELLED)
    if exit.invalid_job_definition:
        return Fail(reason, FailCause.INVALID_JOB_DEFINITION)
    matched = first_matching_rule(rules, exit)
    if matched is not None and rules[matched].action is Action.EXIT:
        return Fail(reason, FailCause.EXIT_RULE, matched)
    # AWS: RETRY (matched or by default) only while attempts remain.
    if attempt_number >= attempts_allowed:
        return Fail(reason, FailCause.ATTEMPTS_EXHAUSTED, matched)
    return Retry(next_attempt=attempt_number + 1, status_reason=reason, matched_rule=matched)


def attempt_succeeded(exit: AttemptExit) -> bool:
    """AWS: "An exit code of 0 indicates success" — unless the operator stopped the attempt."""
    stopped = exit.cancelled or exit.terminated or exit.timed_out or exit.invalid_job_definition
    return exit.exit_code == 0 and not stopped


def after_attempt(
    rules: Sequence[ExitRule],
    attempts_allowed: int,
    attempt_number: int,
    exit: AttemptExit,
) -> JobState | Retry | Fail:
    """SUCCEEDED for a clean exit 0, otherwise the retry decision."""
    if attempt_succeeded(exit):
        return JobState.SUCCEEDED
    return after_failed_attempt(rules, attempts_allowed, attempt_number, exit)


def exit_rule_errors(rule: ExitRule) -> list[str]:
    """Validation of one evaluateOnExit entry, as messages (empty when valid)."""
    errors: list[str] = []
    fields = (
        ("onExitCode", rule.on_exit_code, _EXIT_CODE_PATTERN),
        ("onReason", rule.on_reason, _TEXT_PATTERN),
        ("onStatusReason", rule.on_status_reason, _TEXT_PATTERN),
    )
    if all(value is None for _, value, _ in fields):
        # AWS console: "If you choose Add evaluate on exit, you must configure at least one parameter".
        errors.append("evaluateOnExit entry needs at least one of onExitCode, onReason, onStatusReason")
    for name, value, allowed in fields:
        if value is None:
            continue
        if len(value) > MAX_PATTERN_LENGTH:
            errors.append(f"{name} is longer than {MAX_PATTERN_LENGTH} characters")
        elif not allowed.fullmatch(value):
            errors.append(f"{name} {value!r} has characters AWS does not allow or a '*' not at the end")
    return errors


def retry_strategy_errors(rules: Sequence[ExitRule], attempts: int | None) -> list[str]:
    """Validation of a whole retryStrategy (attempts 1..10, ≤5 entries, each entry valid)."""
    errors: list[str] = []
    if attempts is not None and not 1 <= attempts <= MAX_ATTEMPTS:
        errors.append(f"attempts must be between 1 and {MAX_ATTEMPTS}, got {attempts}")
    if rules and attempts is None:
        # AWS: "If this parameter is specified, then the attempts parameter must also be specified."
        errors.append("evaluateOnExit requires attempts")
    if len(rules) > MAX_EXIT_RULES:
        errors.append(f"evaluateOnExit has {len(rules)} entries, at most {MAX_EXIT_RULES} allowed")
    for i, rule in enumerate(rules):
        errors.extend(f"evaluateOnExit[{i}]: {e}" for e in exit_rule_errors(rule))
    return errors
