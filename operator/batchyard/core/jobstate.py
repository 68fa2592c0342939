"""The AWS Batch job state machine, as data, plus the pure transitions around it.

Why this module exists: every other part of the operator (scheduler, handlers, status writer)
must agree on which state changes are legal, what cancel and terminate do in each state, when
an attempt has timed out, and which statusReason strings a user will see. Those strings are
matched by users' `evaluateOnExit` patterns and dashboards, so they live here, in one place.

Sources: digest §2.1-§2.5; AWS User Guide "Job states", "Job timeouts", "Automated job
retries", "Array jobs"; API reference CancelJob / TerminateJob.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class JobState(StrEnum):
    """The seven job states of DescribeJobs `status` (service-job-only SCHEDULED is out of scope)."""

    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    RUNNABLE = "RUNNABLE"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES: frozenset[JobState] = frozenset({JobState.SUCCEEDED, JobState.FAILED})
# Every state, in lifecycle order (metrics series, status counts).
JOB_STATES: tuple[JobState, ...] = tuple(JobState)
# The states a job queue's jobCounts and the scheduler care about: not finished yet.
ACTIVE_STATES: tuple[JobState, ...] = tuple(s for s in JobState if s not in TERMINAL_STATES)

# States in which a pod for the current attempt exists (or is being created): a terminate
# must stop it. AWS: "Jobs that progressed to the STARTING or RUNNING state are terminated".
POD_STATES: frozenset[JobState] = frozenset({JobState.STARTING, JobState.RUNNING})

# States in which the job has not yet reached a host: CancelJob acts here.
# AWS CancelJob: "Jobs that progressed to the STARTING or RUNNING state aren't canceled."
CANCELLABLE_STATES: frozenset[JobState] = frozenset({JobState.SUBMITTED, JobState.PENDING, JobState.RUNNABLE})


class Reason:
    """statusReason strings, in one place.

    The AWS documents do not list these; the digest (§2.5, [FIELD]) records the strings real AWS
    Batch reports, and we use them verbatim so that users' evaluateOnExit patterns and alerts
    written for AWS keep matching.
    """

    # AWS [FIELD]: dependent job moved PENDING -> FAILED because a dependency failed.
    DEPENDENT_JOB_FAILED = "Dependent Job failed"
    # AWS [FIELD]: attempt exceeded timeout.attemptDurationSeconds (counted from RUNNING).
    TIMEOUT = "Job attempt duration exceeded timeout"
    # AWS [FIELD] (ECS wording, reused for a failed pod exit so patterns written for AWS match).
    ESSENTIAL_CONTAINER_EXITED = "Essential container in task exited"
    # AWS [FIELD] ("Use Amazon EC2 Spot best practices": retry on onStatusReason "Host EC2*"):
    # the attempt's host went away. Batchyard: the pod's node was lost, shut down, or the pod was
    # evicted or preempted; what follows "Host EC2" is the Kubernetes node's name.
    HOST_TERMINATED_PREFIX = "Host EC2"
    HOST_TERMINATED_FMT = "Host EC2 (node {node}) terminated."
    # An init container failed, so the essential containers never ran (Batchyard; EKS has no
    # documented string).
    INIT_CONTAINER_EXITED_FMT = "Init container {name} exited"
    # AWS [FIELD] ECS stopped reasons, reused for a pod that can't start its containers
    # ("AWS Batch on Amazon EKS job is stuck in STARTING status": AWS terminates such jobs).
    CANNOT_PULL_PREFIX = "CannotPullContainerError: "
    CANNOT_CREATE_PREFIX = "CannotCreateContainerError: "
    CANNOT_START_PREFIX = "CannotStartContainerError: "
    # Used when CancelJob / TerminateJob came without a caller-supplied reason (AWS requires
    # one; our spec field may be empty). Caller-supplied reasons are recorded verbatim.
    CANCELLED_DEFAULT = "Job cancelled by user request"
    TERMINATED_DEFAULT = "Job terminated by user request"
    # AWS: "jobs that fail because of an invalid job definition aren't retried".
    INVALID_JOB_DEFINITION_PREFIX = "Invalid job definition: "
    # Batchyard-specific (no AWS counterpart: AWS rejects these at SubmitJob).
    DEPENDENCY_NOT_SUBMITTED_FMT = "Waiting for dependency {name} to be submitted"
    DEPENDENCIES_OUTSTANDING_PREFIX = "Waiting for dependencies: "
    DEPENDENCY_CYCLE_PREFIX = "Dependency cycle: "
    DEPENDENCY_NOT_FOUND_PREFIX = "Dependent Job not found: "
    INVALID_DEPENDENCY_PREFIX = "Invalid dependsOn: "

    @staticmethod
    def host_terminated(node: str | None) -> str:
        return Reason.HOST_TERMINATED_FMT.format(node=node or "unknown")

    @staticmethod
    def is_host_failure(reason: str | None) -> bool:
        return bool(reason) and reason.startswith(Reason.HOST_TERMINATED_PREFIX)  # type: ignore[union-attr]

    @staticmethod
    def invalid_job_definition(detail: str) -> str:
        return Reason.INVALID_JOB_DEFINITION_PREFIX + detail

    @staticmethod
    def dependency_not_submitted(name: str) -> str:
        return Reason.DEPENDENCY_NOT_SUBMITTED_FMT.format(name=name)

    @staticmethod
    def dependencies_outstanding(names: tuple[str, ...]) -> str:
        return Reason.DEPENDENCIES_OUTSTANDING_PREFIX + ", ".join(names)

    @staticmethod
    def dependency_cycle(cycle: tuple[str, ...]) -> str:
        # Close the loop in the message: "a -> b -> a".
        return Reason.DEPENDENCY_CYCLE_PREFIX + " -> ".join((*cycle, cycle[0]))

    @staticmethod
    def dependency_not_found(refs: tuple[str, ...]) -> str:
        return Reason.DEPENDENCY_NOT_FOUND_PREFIX + ", ".join(refs)

    @staticmethod
    def invalid_dependency(problems: list[str]) -> str:
        return Reason.INVALID_DEPENDENCY_PREFIX + "; ".join(problems)


S = JobState

# Allowed transitions of a single job or an array child (digest §2.2).
# Two additions that a Kubernetes observer needs, marked K8s below: a watch may coalesce pod
# phases, so a pod seen Pending and then Succeeded/Failed moves STARTING -> SUCCEEDED/FAILED
# directly; and a pod lost before its container ran (node gone) is a failed attempt that may be
# retried, STARTING -> RUNNABLE.
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    # AWS: SUBMITTED -> PENDING with dependencies, -> RUNNABLE without; cancel/terminate -> FAILED;
    # a dependency that already FAILED fails the job at its first evaluation.
    S.SUBMITTED: frozenset({S.PENDING, S.RUNNABLE, S.FAILED}),
    # AWS: PENDING -> RUNNABLE when all dependencies SUCCEEDED; -> FAILED when any fails.
    S.PENDING: frozenset({S.RUNNABLE, S.FAILED}),
    # AWS: RUNNABLE -> STARTING when placed; -> FAILED on cancel/terminate/jobStateTimeLimitActions.
    S.RUNNABLE: frozenset({S.STARTING, S.FAILED}),
    # AWS: STARTING -> RUNNING; -> FAILED on terminate. K8s: -> SUCCEEDED/FAILED/RUNNABLE (above).
    S.STARTING: frozenset({S.RUNNING, S.SUCCEEDED, S.FAILED, S.RUNNABLE}),
    # AWS: exit 0 -> SUCCEEDED; failed attempt with attempts left -> RUNNABLE; otherwise FAILED.
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.RUNNABLE}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
}

# AWS "Array jobs": "The parent array job can enter a SUBMITTED, PENDING, FAILED, or SUCCEEDED
# status." It is PENDING while children run and terminal when all children are terminal.
ARRAY_PARENT_TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    S.SUBMITTED: frozenset({S.PENDING, S.FAILED}),
    S.PENDING: frozenset({S.SUCCEEDED, S.FAILED}),
    S.RUNNABLE: frozenset(),
    S.STARTING: frozenset(),
    S.RUNNING: frozenset(),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
}


class IllegalTransition(ValueError):
    """A state change the AWS state machine does not allow."""


def can_transition(src: JobState, dst: JobState, *, array_parent: bool = False) -> bool:
    """True when `src -> dst` is an allowed change (staying in the same state is not a change)."""
    table = ARRAY_PARENT_TRANSITIONS if array_parent else TRANSITIONS
    return dst in table[src]


def transition(src: JobState, dst: JobState, *, array_parent: bool = False) -> JobState:
    """Return `dst` if `src -> dst` is allowed, else raise IllegalTransition."""
    if not can_transition(src, dst, array_parent=array_parent):
        kind = "array parent" if array_parent else "job"
        raise IllegalTransition(f"{kind} cannot move from {src} to {dst}")
    return dst


# --- cancel / terminate (digest §2.3) -------------------------------------------------------


class StopKind(StrEnum):
    CANCEL = "CANCEL"
    TERMINATE = "TERMINATE"


@dataclass(frozen=True, slots=True)
class StopOutcome:
    """What a cancel or terminate request does to a job in a given state.

    `applied` is False for a no-op (the request still "succeeds", as CancelJob does).
    `stop_pod` tells the adapter to delete the attempt's pod (SIGTERM, then SIGKILL after the
    grace period). `is_cancelled`/`is_terminated` mirror DescribeJobs `isCancelled`/`isTerminated`.
    """

    state: JobState
    applied: bool
    stop_pod: bool = False
    status_reason: str | None = None
    is_cancelled: bool = False
    is_terminated: bool = False


def on_cancel(state: JobState, reason: str | None = None) -> StopOutcome:
    """CancelJob: SUBMITTED/PENDING/RUNNABLE -> FAILED; no-op in STARTING/RUNNING/terminal.

    AWS: "Jobs that progressed to the STARTING or RUNNING state aren't canceled. However, the
    API operation still succeeds". Decision: a PENDING job fails at once; AWS waits "until all
    dependency jobs are completed", which only delays the same outcome (digest §2.3). A RUNNABLE
    job fails at once (current API text; digest §8.1 #6).
    """
    if state not in CANCELLABLE_STATES:
        return StopOutcome(state=state, applied=False)
    return StopOutcome(
        state=JobState.FAILED,
        applied=True,
        status_reason=reason or Reason.CANCELLED_DEFAULT,
        is_cancelled=True,
    )


def on_terminate(state: JobState, reason: str | None = None) -> StopOutcome:
    """TerminateJob: any non-terminal state -> FAILED; the pod is stopped in STARTING/RUNNING.

    AWS TerminateJob: "Jobs that are in the STARTING or RUNNING state are terminated, which
    causes them to transition to FAILED. Jobs that have not progressed to the STARTING state
    are cancelled." Terminal jobs are left alone.
    """
    if state.is_terminal:
        return StopOutcome(state=state, applied=False)
    return StopOutcome(
        state=JobState.FAILED,
        applied=True,
        stop_pod=state in POD_STATES,
        status_reason=reason or Reason.TERMINATED_DEFAULT,
        # AWS: before STARTING a terminate is a cancel.
        is_cancelled=state in CANCELLABLE_STATES,
        is_terminated=state in POD_STATES,
    )


def on_stop(kind: StopKind, state: JobState, reason: str | None = None) -> StopOutcome:
    return on_cancel(state, reason) if kind is StopKind.CANCEL else on_terminate(state, reason)


# --- timeouts (digest §3.1.7) ---------------------------------------------------------------

# AWS (console, "Execution timeout"): "The minimum value is 60 seconds."
MIN_ATTEMPT_DURATION_SECONDS = 60
# AWS: "If the container is still running after 30 seconds, a SIGKILL signal is sent".
TIMEOUT_KILL_GRACE_SECONDS = 30


def attempt_deadline(running_since: float | None, attempt_duration_seconds: int | None) -> float | None:
    """When the current attempt times out, or None (no timeout, or not RUNNING yet).

    AWS: duration is measured "from the job attempt's startedAt timestamp", i.e. the moment the
    attempt reached RUNNING; "STARTING is not included in timeouts".
    """
    if attempt_duration_seconds is None or running_since is None:
        return None
    return running_since + attempt_duration_seconds


def is_timed_out(
    state: JobState,
    running_since: float | None,
    attempt_duration_seconds: int | None,
    now: float,
) -> bool:
    """True when a RUNNING attempt has used up attemptDurationSeconds at time `now`."""
    if state is not JobState.RUNNING:
        return False  # AWS: the countdown only runs in RUNNING
    deadline = attempt_deadline(running_since, attempt_duration_seconds)
    return deadline is not None and now >= deadline


def on_timeout(state: JobState) -> StopOutcome:
    """A timed-out attempt: the pod is stopped and the job FAILS (AWS: timeouts aren't retried)."""
    if state is not JobState.RUNNING:
        return StopOutcome(state=state, applied=False)
    return StopOutcome(state=JobState.FAILED, applied=True, stop_pod=True, status_reason=Reason.TIMEOUT)
