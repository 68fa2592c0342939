"""One job's lifecycle step: from what is observed (spec, status, pod, queue, dependencies) to
the next status and the effects that get it there.

Why this exists: the state machine, retries, timeouts, cancel and terminate must be decided in
one pure place so they can be tested exhaustively and so the operator loop only executes. The
scheduler (``core.scheduler``) owns RUNNABLE -> STARTING; everything else about a job is here.

The step, in order (AWS rules cited inline):

1. A terminal job only has leftovers cleaned up (a pod that outlived its recorded result).
2. ``spec.terminate`` fails any non-terminal job with the user's reason, stopping its pod.
3. ``spec.cancel`` fails a SUBMITTED, PENDING or RUNNABLE job; in STARTING/RUNNING it is a
   no-op (AWS CancelJob), reported once with an event.
4. A new job is checked: its queue and job definition must exist (a short grace covers watch
   streams that deliver the job before its queue), the definition must render, and its
   dependencies decide PENDING, RUNNABLE or FAILED.
5. PENDING re-resolves dependencies.
6. STARTING/RUNNING follow the attempt's pod: Running -> RUNNING; a finished pod ends the
   attempt (exit 0 -> SUCCEEDED, else ``core.retry``); a RUNNING attempt past its
   attemptDurationSeconds is stopped and FAILS; a pod that vanished ends the attempt as lost.

Time is an argument (epoch seconds); statuses carry RFC 3339 strings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from batchyard.api.batchjob import AttemptDetail, BatchJob, BatchJobStatus
from batchyard.core import deps, jobstate
from batchyard.core.failures import FailureCategory, classify
from batchyard.core.jobstate import JobState, Reason, on_cancel, on_terminate
from batchyard.core.retry import AttemptExit, ExitRule, Fail, Retry, after_attempt, after_failed_attempt

# Watch streams of different kinds are not ordered with each other: a job may arrive before the
# queue or definition it names. Missing references fail the job only after this long.
MISSING_REFERENCE_GRACE_SECONDS = 5.0
POD_LOST_REASON = "Pod {pod} was deleted before the attempt finished"
QUEUE_DELETED_REASON = "JobQueue {queue} was deleted"
# States in which a job belongs to its queue (admission has happened, no result yet).
ADMITTED_STATES = frozenset({JobState.PENDING, JobState.RUNNABLE, JobState.STARTING, JobState.RUNNING})
POD_STUCK_REASON = "Pod {pod} did not stop after it was deleted (its node may be unreachable)"
# The pod's own 30 s grace period (AWS: SIGKILL after 30 s) plus a margin for the kubelet.
STUCK_TERMINATING_SECONDS = 90.0


def iso(ts: float) -> str:
    """RFC 3339 in UTC with milliseconds (AWS reports milliseconds; whole seconds would make
    sub-second attempts last 0 s). Every status timestamp uses this one form, so they also sort
    as strings."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def epoch(value: str | None) -> float | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True, slots=True)
class PodObs:
    """What the operator saw of an attempt's pod (from the pod watch)."""

    name: str
    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    node: str | None = None
    exit_code: int | None = None
    reason: str | None = None  # the container's terminated reason (e.g. OOMKilled, Error)
    message: str | None = None
    running_since: float | None = None
    deleting: bool = False
    deleting_since: float | None = None  # when deletion was requested (deletionTimestamp - grace)

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


@dataclass(frozen=True, slots=True)
class Resolved:
    """The job definition revision a job runs, with what the lifecycle reads of it."""

    revision: int
    rules: tuple[ExitRule, ...]
    attempts: int
    attempt_duration_seconds: int | None
    problems: tuple[str, ...] = ()  # render problems: the job can never run


@dataclass(frozen=True, slots=True)
class Context:
    """Everything besides the job itself that one step reads."""

    queue_exists: bool
    queue_problem: str | None  # the queue exists but refuses the job (DISABLED, namespace not allowed)
    definition: Resolved | None  # None: the named definition (or revision) does not exist
    definition_problem: str | None  # why it could not be resolved (for statusReason)
    dependencies: deps.Resolution
    pod: PodObs | None  # the current attempt's pod, if observed
    pod_seen: bool = False  # this operator saw the current attempt's pod earlier
    keep_pods: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


def _now(step: Step) -> float:
    return step.now


@dataclass(slots=True)
class Step:
    """The outcome of one step. ``status`` is the full new status (the caller diffs and patches)."""

    status: BatchJobStatus
    now: float
    events: list[Event] = field(default_factory=list)
    delete_pods: list[str] = field(default_factory=list)
    enqueue: bool = False  # became RUNNABLE: hand to the scheduler
    retried: bool = False  # ... after a failed attempt (AWS: goes to the front of the queue)
    release: bool = False  # left STARTING/RUNNING/RUNNABLE: release the scheduler's hold
    ensure_pod: bool = False  # STARTING without a pod: (re)create it, idempotently by name
    failure: FailureCategory | None = None  # moved to FAILED: why, as a metric label
    wake_at: float | None = None  # the next time this job must be looked at without an event


def queue_refusal(
    queue: str, state: str | None, allowed_namespaces: Sequence[str] | None, namespace: str
) -> str | None:
    """Why an existing queue refuses a new job, or None (AWS SubmitJob fails for a DISABLED
    queue; allowedNamespaces is Batchyard's per-namespace admission)."""
    if state == "DISABLED":
        return f"JobQueue {queue} is DISABLED and accepts no new jobs"
    if allowed_namespaces and namespace not in allowed_namespaces:
        return f"JobQueue {queue} does not accept jobs from namespace {namespace}"
    return None


def _state(status: BatchJobStatus) -> JobState | None:
    return JobState(status.status) if status.status else None


def transition(
    step: Step, state: JobState, reason: str | None, kind: str = "Normal", *, array_parent: bool = False
) -> None:
    """Move the step's job to ``state`` with an event (and the Kubernetes Complete/Failed
    condition at the end). The move must be in ``jobstate.TRANSITIONS`` (or
    ``ARRAY_PARENT_TRANSITIONS``): that table is the state machine, an illegal move raises
    ``IllegalTransition``."""
    current = _state(step.status) or JobState.SUBMITTED
    if current is not state:
        jobstate.transition(current, state, array_parent=array_parent)
    step.status.status = state.value
    step.status.statusReason = reason
    if state is JobState.FAILED:
        step.failure = classify(step.status)
    message = f"{state.value}" + (f": {reason}" if reason else "")
    step.events.append(Event(kind, state.value.capitalize(), message))
    if state.is_terminal:
        # Kubernetes convention (as on batch/v1 Job): a Complete or Failed condition at the end.
        kind_ = "Complete" if state is JobState.SUCCEEDED else "Failed"
        _set_condition(
            step.status, kind_, "True", state.value.capitalize(), reason or state.value, _now(step)
        )


_transition = transition


def _current_attempt(status: BatchJobStatus) -> AttemptDetail | None:
    return status.attempts[-1] if status.attempts else None


def _end_attempt(step: Step, now: float, exit: AttemptExit, pod: PodObs | None, reason: str) -> None:
    attempt = _current_attempt(step.status)
    if attempt is None:
        return
    attempt.exitCode = exit.exit_code
    attempt.reason = exit.reason
    attempt.statusReason = reason
    attempt.stoppedAt = iso(now)
    if pod is not None and pod.node:
        attempt.nodeName = pod.node


def advance(job: BatchJob, status: BatchJobStatus, ctx: Context, now: float) -> Step:
    """One lifecycle step for a single (non-array) job. ``status`` is not mutated."""
    step = Step(status=status.model_copy(deep=True), now=now)
    st = step.status
    state = _state(st)
    if st.createdAt is None:
        created = epoch(job.metadata.creationTimestamp)
        st.createdAt = iso(created if created is not None else now)
    if st.jobId is None:
        st.jobId = job.metadata.uid

    # 1. Terminal: only leftovers.
    if state is not None and state.is_terminal:
        if ctx.pod is not None and not ctx.pod.deleting and not ctx.keep_pods:
            step.delete_pods.append(ctx.pod.name)
        return step

    # 2. Terminate (any non-terminal state): the user's request, or the queue's deletion (AWS
    # DeleteJobQueue: "All jobs in the queue are eventually terminated").
    terminate = job.spec.terminate.reason if job.spec.terminate is not None else None
    if terminate is None and not ctx.queue_exists and state in ADMITTED_STATES:
        terminate = QUEUE_DELETED_REASON.format(queue=job.spec.jobQueue)
    if terminate is not None:
        outcome = on_terminate(state or JobState.SUBMITTED, terminate)
        if outcome.applied:
            return _stop(step, ctx, now, outcome.status_reason or Reason.TERMINATED_DEFAULT,
                         cancelled=outcome.is_cancelled, terminated=outcome.is_terminated)  # fmt: skip

    # 3. Cancel (before STARTING).
    if job.spec.cancel is not None:
        outcome = on_cancel(state or JobState.SUBMITTED, job.spec.cancel.reason)
        if outcome.applied:
            return _stop(step, ctx, now, outcome.status_reason or Reason.CANCELLED_DEFAULT, cancelled=True)
        if not any(c.type == "CancelIgnored" for c in st.conditions or []):
            # AWS: "the API operation still succeeds, even if no job is canceled".
            step.events.append(
                Event("Warning", "CancelIgnored", f"cancel has no effect in {state}; use spec.terminate")
            )
            message = f"spec.cancel has no effect once a job is {state}; set spec.terminate"
            _set_condition(st, "CancelIgnored", "True", "JobAlreadyStarted", message, now)

    if state is None or state is JobState.SUBMITTED:
        return _admit(step, job, ctx, now)
    if state is JobState.PENDING:
        return _resolve_dependencies(step, ctx)
    if state is JobState.RUNNABLE:
        return step
    return _follow_pod(step, state, ctx, now)


def _stop(step: Step, ctx: Context, now: float, reason: str, *, cancelled: bool = False,
          terminated: bool = False) -> Step:  # fmt: skip
    st = step.status
    # A running pod is stopped; a finished one is cleaned up now (unless kept), as no later pod
    # event would bring the job back for its leftovers.
    pod = ctx.pod
    if pod is not None and not pod.deleting and (not pod.finished or not ctx.keep_pods):
        step.delete_pods.append(pod.name)
    if _current_attempt(st) is not None and _current_attempt(st).stoppedAt is None:  # type: ignore[union-attr]
        exit = AttemptExit(
            exit_code=ctx.pod.exit_code if ctx.pod else None,
            reason=ctx.pod.reason if ctx.pod else None,
            status_reason=reason,
            cancelled=cancelled,
            terminated=terminated,
        )
        _end_attempt(step, now, exit, ctx.pod, reason)
    st.isCancelled = cancelled or None
    st.isTerminated = terminated or None
    st.stoppedAt = iso(now)
    st.queuePosition = None
    step.release = True
    _transition(step, JobState.FAILED, reason, "Warning")
    return step


def _admit(step: Step, job: BatchJob, ctx: Context, now: float) -> Step:
    st = step.status
    # createdAt is the creationTimestamp, or the first step's time when the object has none.
    age = now - (epoch(st.createdAt) or now)
    missing = []
    if not ctx.queue_exists:
        missing.append(f"JobQueue {job.spec.jobQueue} does not exist")
    if ctx.definition is None:
        missing.append(ctx.definition_problem or f"JobDefinition {job.spec.jobDefinition} does not exist")
    if ctx.queue_problem:
        return _fail_invalid(step, now, ctx.queue_problem)
    if missing:
        if age < MISSING_REFERENCE_GRACE_SECONDS:
            step.wake_at = now + MISSING_REFERENCE_GRACE_SECONDS - age
            return step
        return _fail_invalid(step, now, "; ".join(missing))
    assert ctx.definition is not None
    st.jobDefinitionRevision = ctx.definition.revision
    if ctx.definition.problems:
        return _fail_invalid(step, now, Reason.invalid_job_definition("; ".join(ctx.definition.problems)))
    return _resolve_dependencies(step, ctx)


def fail(step: Step, now: float, reason: str, *, cancelled: bool = False) -> Step:
    """-> FAILED with ``reason`` for causes decided outside the step (a queue's time-limit
    action, a pod the API server refuses, the fair-share identifier limit): same status fields,
    event and Failed condition as every other failure."""
    step.status.stoppedAt = iso(now)
    step.status.queuePosition = None
    if cancelled:
        step.status.isCancelled = True
    _transition(step, JobState.FAILED, reason, "Warning")
    return step


def _fail_invalid(step: Step, now: float, reason: str) -> Step:
    # AWS: "jobs that fail because of an invalid job definition aren't retried".
    step.status.stoppedAt = iso(now)
    _transition(step, JobState.FAILED, reason, "Warning")
    return step


def _resolve_dependencies(step: Step, ctx: Context) -> Step:
    res = ctx.dependencies
    st = step.status
    if isinstance(res, deps.Fail):
        # AWS: "If any of the job dependencies fail, the dependent job automatically
        # transitions from PENDING to FAILED."
        st.stoppedAt = iso(step.now)
        _transition(step, JobState.FAILED, res.reason, "Warning")
        return step
    if isinstance(res, deps.Wait):
        if st.status != JobState.PENDING.value or st.statusReason != res.reason:
            if st.status == JobState.PENDING.value:
                st.statusReason = res.reason
            else:
                _transition(step, JobState.PENDING, res.reason)
        return step
    # AWS: SUBMITTED -> RUNNABLE with no dependencies; PENDING -> RUNNABLE once they succeed.
    _transition(step, JobState.RUNNABLE, None)
    step.enqueue = True
    return step


def _follow_pod(step: Step, state: JobState, ctx: Context, now: float) -> Step:
    st = step.status
    attempt = _current_attempt(st)
    pod = ctx.pod
    definition = ctx.definition
    if pod is None or (pod.deleting and not pod.finished):
        if pod is None and not ctx.pod_seen and state is JobState.STARTING:
            # The dispatch recorded the attempt but the pod is not there (operator restart
            # between the two writes, or the watch is behind): create it, idempotently.
            # A RUNNING attempt's pod existed (it was seen Running): gone means lost, and
            # re-creating it would silently run the attempt twice.
            step.ensure_pod = True
            return step
        if pod is not None:
            # Being deleted: wait for it to go or to report its exit, but not forever (a pod on
            # an unreachable node stays Terminating): after the grace period and a margin, the
            # attempt is lost, as if its host had gone.
            if pod.deleting_since is None:
                return step
            give_up = pod.deleting_since + STUCK_TERMINATING_SECONDS
            if now < give_up:
                step.wake_at = give_up
                return step
            lost = POD_STUCK_REASON.format(pod=pod.name)
            return _attempt_over(step, ctx, now, AttemptExit(status_reason=lost), None)
        lost = POD_LOST_REASON.format(pod=attempt.podName if attempt else "?")
        return _attempt_over(step, ctx, now, AttemptExit(status_reason=lost), None)

    if pod.finished:
        exit = AttemptExit(exit_code=pod.exit_code, reason=pod.reason)
        return _attempt_over(step, ctx, now, exit, pod)

    if pod.phase == "Running" and state is JobState.STARTING:
        # AWS: startedAt is "when the job transitioned from the STARTING state to the RUNNING state".
        started = pod.running_since or now
        st.startedAt = st.startedAt or iso(started)
        if attempt is not None:
            attempt.startedAt = iso(started)
            attempt.nodeName = pod.node
        _transition(step, JobState.RUNNING, None)
        state = JobState.RUNNING

    if state is JobState.RUNNING and definition and definition.attempt_duration_seconds:
        since = epoch(attempt.startedAt) if attempt else None
        deadline = (since or now) + definition.attempt_duration_seconds
        if now >= deadline:
            # AWS "Job timeouts": the attempt is stopped and the job fails; timeouts aren't retried.
            step.delete_pods.append(pod.name)
            exit = AttemptExit(exit_code=pod.exit_code, reason=pod.reason, timed_out=True)
            return _attempt_over(step, ctx, now, exit, pod)
        step.wake_at = deadline
    return step


def _attempt_over(step: Step, ctx: Context, now: float, exit: AttemptExit, pod: PodObs | None) -> Step:
    st = step.status
    attempt = _current_attempt(st)
    number = attempt.attempt if attempt else 1
    definition = ctx.definition
    rules: Sequence[ExitRule] = definition.rules if definition else ()
    allowed = definition.attempts if definition else 1
    outcome: JobState | Retry | Fail
    if pod is not None and pod.finished:
        # K8s (restartPolicy Never): phase Succeeded means every container exited 0; phase Failed
        # means a container failed or the system stopped the pod (eviction, node shutdown), even
        # when the exit code reported is 0. The phase decides; a Failed pod is never a success.
        success = pod.phase == "Succeeded"
        outcome = JobState.SUCCEEDED if success else after_failed_attempt(rules, allowed, number, exit)
    else:
        outcome = after_attempt(rules, allowed, number, exit)
    step.release = True
    if pod is not None and not ctx.keep_pods and pod.name not in step.delete_pods:
        step.delete_pods.append(pod.name)
    if isinstance(outcome, Retry):
        _end_attempt(step, now, exit, pod, outcome.status_reason)
        # AWS: "the job is placed back in the RUNNABLE state" and goes to the front of the queue.
        _transition(step, JobState.RUNNABLE, outcome.status_reason)
        step.events[-1] = Event(
            "Warning", "Retrying", f"attempt {number} failed ({outcome.status_reason}); retrying"
        )
        step.enqueue = True
        step.retried = True
        return step
    if isinstance(outcome, Fail):
        _end_attempt(step, now, exit, pod, outcome.status_reason)
        st.stoppedAt = iso(now)
        _transition(step, JobState.FAILED, outcome.status_reason, "Warning")
        return step
    _end_attempt(step, now, exit, pod, "Succeeded" if exit.exit_code == 0 else "")
    if attempt is not None:
        attempt.statusReason = None
    st.stoppedAt = iso(now)
    _transition(step, JobState.SUCCEEDED, None)
    return step


def start_attempt(status: BatchJobStatus, *, pod_name: str, compute_environment: str, now: float) -> Step:
    """RUNNABLE -> STARTING after the scheduler placed the job and its pod was created."""
    step = Step(status=status.model_copy(deep=True), now=now)
    st = step.status
    number = len(st.attempts or []) + 1
    st.attempts = [
        *(st.attempts or []),
        AttemptDetail(attempt=number, podName=pod_name, computeEnvironment=compute_environment),
    ]
    st.computeEnvironment = compute_environment
    st.queuePosition = None
    _transition(step, JobState.STARTING, None)
    step.events[-1] = Event(
        "Normal", "Starting", f"attempt {number}: pod {pod_name} in {compute_environment}"
    )
    return step


def next_pod_name_attempt(status: BatchJobStatus) -> int:
    """The attempt number the next dispatch creates (AWS_BATCH_JOB_ATTEMPT)."""
    return len(status.attempts or []) + 1


def _set_condition(st: BatchJobStatus, type_: str, value: str, reason: str, message: str, now: float) -> None:
    from batchyard.api.common import Condition

    conditions = [c for c in st.conditions or [] if c.type != type_]
    conditions.append(
        Condition(type=type_, status=value, reason=reason, message=message, lastTransitionTime=iso(now))
    )
    st.conditions = conditions
