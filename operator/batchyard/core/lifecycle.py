"""One job's lifecycle step: from what is observed (spec, status, pod, queue, dependencies) to
the next status and the effects that get it there.

Why this exists: the state machine, retries, timeouts, cancel and terminate must be decided in
one pure place so they can be tested exhaustively and so the operator loop only executes. The
scheduler (``core.scheduler``) owns RUNNABLE -> STARTING; everything else about a job is here.

The step, in order (AWS rules cited inline):

1. A terminal job only has leftovers cleaned up (a pod that outlived its recorded result).
2. ``spec.terminate`` fails any non-terminal job with the user's reason, stopping its pod.
3. ``spec.cancel`` fails a SUBMITTED, PENDING or RUNNABLE job -- a SUBMITTED or PENDING one only
   once its dependencies are complete (AWS CancelJob); in STARTING/RUNNING it is a no-op,
   reported once with an event.
4. A new job is checked: its queue and job definition must exist (a short grace covers watch
   streams that deliver the job before its queue), the definition must render, and its
   dependencies decide PENDING, RUNNABLE or FAILED.
5. PENDING re-resolves dependencies; a dependency that is never submitted fails the job after
   ``DEPENDENCY_SUBMIT_GRACE_SECONDS``.
6. STARTING/RUNNING follow the attempt's pod: Running -> RUNNING; a finished pod ends the
   attempt (exit 0 -> SUCCEEDED, else ``core.retry``, with the statusReason the pod explains:
   "Host EC2 (node N) terminated." when the system ended it, an init container's failure, or
   "Essential container in task exited"); a RUNNING attempt past its attemptDurationSeconds is
   stopped and FAILS once its pod has ended; a STARTING pod whose containers can't start fails
   after a bound (CANNOT_START_SECONDS); a pod that vanished from its node ends the attempt as a
   host failure. An attempt lost before RUNNING does not use one (MAX_UNCOUNTED_ATTEMPTS).

Time is an argument (epoch seconds); statuses carry RFC 3339 strings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchyard.api.batchjob import AttemptContainerDetail, AttemptDetail, BatchJob, BatchJobStatus
from batchyard.core import deps, jobstate, limits
from batchyard.core.effective import Effective
from batchyard.core.failures import FailureCategory, classify
from batchyard.core.jobstate import JobState, Reason, on_cancel, on_terminate
from batchyard.core.retention import PodRetention, keep_finished_pod
from batchyard.core.retry import AttemptExit, ExitRule, Fail, Retry, after_attempt, after_failed_attempt

# Watch streams of different kinds are not ordered with each other: a job may arrive before the
# queue or definition it names. Missing references fail the job only after this long.
MISSING_REFERENCE_GRACE_SECONDS = 5.0
# AWS rejects a SubmitJob whose dependsOn names an unknown job id. Kubernetes admits the object
# first and tools apply manifests in any order, so a dependency named before it exists is waited
# for -- but not forever: after this long (from the job's createdAt) the job FAILS with
# "Dependent Job not found: <name>". Ten minutes covers any apply order and an operator restart.
DEPENDENCY_SUBMIT_GRACE_SECONDS = 600.0
POD_LOST_REASON = "Pod {pod} was deleted before the attempt finished"
QUEUE_DELETED_REASON = "JobQueue {queue} was deleted"
# States in which a job belongs to its queue (admission has happened, no result yet).
ADMITTED_STATES = frozenset({JobState.PENDING, JobState.RUNNABLE, JobState.STARTING, JobState.RUNNING})
POD_STUCK_REASON = "Pod {pod} did not stop after it was deleted (its node may be unreachable)"
# The pod's own 30 s grace period (AWS: SIGKILL after 30 s) plus a margin for the kubelet.
STUCK_TERMINATING_SECONDS = 90.0
# AWS counts an attempt once it is RUNNING ("Automated job retries": "When a job is submitted to
# a job queue and placed into the RUNNING state that's considered an attempt"): an attempt whose
# host went away before it ran is re-queued without using one. Bounded, so a job whose pods keep
# losing their nodes before they start still ends.
MAX_UNCOUNTED_ATTEMPTS = 3
# AWS "AWS Batch on Amazon EKS job is stuck in STARTING status": a pod whose containers can't
# start would stay STARTING forever; AWS terminates the job in the qualifying scenarios. How long
# a container may wait with each reason, counted from when the pod was scheduled:
CANNOT_START_SECONDS: dict[str, float] = {
    "InvalidImageName": 0.0,  # never resolves by itself
    "ErrImageNeverPull": 0.0,
    "CreateContainerConfigError": 120.0,  # a missing Secret/ConfigMap may still be created
    "CreateContainerError": 120.0,
    "ErrImagePull": 300.0,  # a registry hiccup heals; a wrong image name or tag doesn't
    "ImagePullBackOff": 300.0,
    "ContainerCreating": 1800.0,  # a volume that can't attach or mount (or a very large pull)
}


def iso(ts: float) -> str:
    """RFC 3339 in UTC with milliseconds (AWS reports milliseconds; whole seconds would make
    sub-second attempts last 0 s). Every status timestamp uses this one form, so they also sort
    as strings."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def refine(seconds: float | None, now: float) -> float:
    """A whole-second Kubernetes timestamp made precise with the operator's clock: ``now`` when
    it falls within that second (the event was just seen), else the timestamp itself (seen late,
    e.g. after an operator restart). None -> ``now``."""
    if seconds is None:
        return now
    return now if seconds <= now < seconds + 1 else seconds


def epoch(value: str | None) -> float | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True, slots=True)
class ContainerExit:
    """One container's end (DescribeJobs eksAttempts[].containers[]: name, exitCode, reason)."""

    name: str
    exit_code: int | None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PodObs:
    """What the operator saw of an attempt's pod (from the pod watch)."""

    name: str
    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    node: str | None = None
    exit_code: int | None = None
    reason: str | None = None  # the container's terminated reason (e.g. OOMKilled, Error)
    message: str | None = None
    running_since: float | None = None  # when the (first) essential container started
    deleting: bool = False
    deleting_since: float | None = None  # when deletion was requested (deletionTimestamp - grace)
    # When the last essential container finished (its terminated.finishedAt): the attempt's
    # stoppedAt, not the moment the operator noticed.
    finished_at: float | None = None
    # The pod-level cause when the system, not the container, ended it: Evicted, NodeLost,
    # Shutdown, Terminated, or a DisruptionTarget condition's reason (preemption, taint eviction,
    # pod garbage collection after node loss). See ``host_failure_reason``.
    disruption: str | None = None
    # An init container that failed (its name): the main containers never ran.
    failed_init_container: str | None = None
    # A container that can't start (Waiting with ErrImagePull, ImagePullBackOff, InvalidImageName,
    # CreateContainerConfigError, ContainerCreating, ...) and since when the pod is on its node.
    waiting_reason: str | None = None
    waiting_message: str | None = None
    scheduled_at: float | None = None
    # Every essential container that terminated, for the attempt's record.
    containers: tuple[ContainerExit, ...] = ()
    # All essential containers terminated though the pod still runs (a non-essential container
    # that never exits): the attempt is over (ECS: the task stops when an essential container exits).
    essentials_done: bool = False
    # The pod's and its node's addresses (a multi-node parallel job's main node address: AWS
    # AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS).
    pod_ip: str | None = None
    host_ip: str | None = None

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed") or self.essentials_done

    @property
    def succeeded(self) -> bool:
        # K8s: phase Succeeded means every container exited 0 (a disruption noticed after that
        # changes nothing); Failed never is a success.
        if self.phase in ("Succeeded", "Failed"):
            return self.phase == "Succeeded"
        if self.disruption or self.failed_init_container:
            return False
        return self.essentials_done and all(c.exit_code == 0 for c in self.containers)


@dataclass(frozen=True, slots=True)
class Resolved:
    """The job definition revision a job runs, with what the lifecycle reads of it."""

    revision: int
    rules: tuple[ExitRule, ...]
    attempts: int
    attempt_duration_seconds: int | None
    problems: tuple[str, ...] = ()  # render problems: the job can never run
    effective: Effective | None = None  # recorded in status at admission (DescribeJobs fields)


@dataclass(frozen=True, slots=True)
class Context:
    """Everything besides the job itself that one step reads."""

    queue_exists: bool
    queue_problem: str | None  # the queue exists but refuses the job (DISABLED, namespace not allowed)
    definition: Resolved | None  # None: the named definition (or revision) does not exist
    definition_problem: str | None  # why it could not be resolved (for statusReason)
    dependencies: deps.Resolution
    pod: PodObs | None  # the current attempt's pod, if observed
    # consumables.requirement_problems of a new job (a missing resource, more than its total)
    consumable_problems: tuple[str, ...] = ()
    pod_seen: bool = False  # this operator saw the current attempt's pod earlier
    # Which ended attempts keep their pod (core.retention; the operator's default is FAILED).
    pod_retention: PodRetention = PodRetention.NONE


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


# The state changes every job passes on its way to SUCCEEDED. status.status, the conditions and
# the batchyard_jobs / dispatch metrics already carry them, and one Event each would be half the
# API writes of a short job, so they are posted only when the operator is told to (the
# BATCHYARD_ROUTINE_EVENTS setting). Failures, retries, blocks and ignored requests are what a
# person needs to read, and are always posted.
ROUTINE_REASONS: frozenset[str] = frozenset(
    {"Submitted", "Pending", "Runnable", "Starting", "Running", "Succeeded"}
)


def is_routine(event: Event) -> bool:
    """A Normal event announcing one of the ordinary state changes (see ROUTINE_REASONS)."""
    return event.type == "Normal" and event.reason in ROUTINE_REASONS


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
    queue: str,
    state: str | None,
    allowed_namespaces: Sequence[str] | None,
    namespace: str,
    *,
    scheduling_policy: str | None = None,
    share_identifier: str | None = None,
) -> str | None:
    """Why an existing queue refuses a new job, or None (AWS SubmitJob fails for a DISABLED
    queue; allowedNamespaces is Batchyard's per-namespace admission).

    AWS SubmitJob ``shareIdentifier``: "Don't specify this parameter if the job queue doesn't have
    a scheduling policy. If the job queue has a scheduling policy, then this parameter must be
    specified." AWS's documents give no message text for either refusal, so ours names the rule.
    """
    if state == "DISABLED":
        return f"JobQueue {queue} is DISABLED and accepts no new jobs"
    if allowed_namespaces and namespace not in allowed_namespaces:
        return f"JobQueue {queue} does not accept jobs from namespace {namespace}"
    if share_identifier and not scheduling_policy:
        return (
            f"shareIdentifier {share_identifier} is not allowed: JobQueue {queue} has no scheduling "
            "policy (AWS SubmitJob: don't specify shareIdentifier if the job queue doesn't have one)"
        )
    if scheduling_policy and not share_identifier:
        return (
            f"shareIdentifier is required: JobQueue {queue} has the scheduling policy {scheduling_policy} "
            "(AWS SubmitJob: if the job queue has a scheduling policy, shareIdentifier must be specified)"
        )
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


def _stop_time(pod: PodObs | None, attempt: AttemptDetail | None, now: float) -> float:
    """When the attempt ended: its containers' finishedAt (AWS stoppedAt), refined to
    milliseconds when seen at once, never before the attempt started."""
    stopped = refine(pod.finished_at, now) if pod is not None and pod.finished_at is not None else now
    started = epoch(attempt.startedAt) if attempt is not None else None
    return max(stopped, started) if started is not None else stopped


def kept(retention: PodRetention, pod: PodObs, *, failed: bool) -> bool:
    """Whether an ended attempt's pod stays for its log (core.retention): only a pod that has
    stopped by itself (a running one is stopped by deleting it) and that is not going already."""
    stopped = pod.phase in ("Succeeded", "Failed") and not pod.deleting
    return stopped and keep_finished_pod(retention, failed=failed)


# Kubernetes bounds a container's termination message to 4096 bytes; the status keeps its end
# (the last log lines under FallbackToLogsOnError), which says most about why it failed.
MAX_TERMINATION_MESSAGE = 2048


def termination_message(message: str | None) -> str | None:
    """A failed attempt's termination message as the status keeps it: its last
    ``MAX_TERMINATION_MESSAGE`` characters, without surrounding blank space; None if empty."""
    text = (message or "").strip()
    if not text:
        return None
    return text if len(text) <= MAX_TERMINATION_MESSAGE else "..." + text[-(MAX_TERMINATION_MESSAGE - 3) :]


def _end_attempt(step: Step, now: float, exit: AttemptExit, pod: PodObs | None, reason: str, *,
                 failed: bool, retained: bool) -> None:  # fmt: skip
    attempt = _current_attempt(step.status)
    if attempt is None:
        return
    attempt.exitCode = exit.exit_code
    attempt.reason = exit.reason
    attempt.statusReason = reason
    attempt.stoppedAt = iso(_stop_time(pod, attempt, now))
    # Issue 15: where the log is, whether it outlives the attempt, and a failed attempt's last
    # words (kept even when the pod goes).
    attempt.logRetained = retained
    if failed and pod is not None:
        attempt.terminationMessage = termination_message(pod.message)
    if pod is not None and pod.node:
        attempt.nodeName = pod.node
    if pod is not None and len(pod.containers) > 1:
        # AWS eksAttempts[].containers[]: each container's exit, when there is more than one
        # (a single container's is the attempt's own exitCode/reason).
        attempt.containers = [
            AttemptContainerDetail(name=c.name, exitCode=c.exit_code, reason=c.reason) for c in pod.containers
        ]


def _record_start(st: BatchJobStatus, attempt: AttemptDetail | None, pod: PodObs, now: float) -> None:
    """AWS startedAt: when the attempt (and, for the first, the job) reached RUNNING. From the
    container's own start, so an attempt seen only once it had finished still has one."""
    if attempt is None or attempt.startedAt is not None:
        return
    started = refine(pod.running_since, now)
    previous = [epoch(a.stoppedAt) for a in (st.attempts or [])[:-1] if a.stoppedAt]
    if previous:
        # Never before the previous attempt stopped (whole-second container times could say so).
        started = max(started, max(p for p in previous if p is not None))
    created = epoch(st.createdAt)
    if created is not None:
        # Nor before the job was created: createdAt has the operator's milliseconds, a container
        # start seen after its second is whole seconds (AWS: createdAt <= startedAt).
        started = max(started, created)
    attempt.startedAt = iso(started)
    st.startedAt = st.startedAt or attempt.startedAt


def pod_status_reason(pod: PodObs, node: str | None) -> str | None:
    """The attempt's statusReason read from a finished pod, or None for an ordinary exit
    (reported as "Essential container in task exited" by core.retry)."""
    if pod.disruption:
        return Reason.host_terminated(pod.node or node)
    if pod.failed_init_container:
        return Reason.INIT_CONTAINER_EXITED_FMT.format(name=pod.failed_init_container)
    return None


def cannot_start(pod: PodObs, now: float) -> tuple[str | None, float | None]:
    """(statusReason, None) when a STARTING pod's container can't start and its bound is over;
    (None, when to look again) while within the bound; (None, None) otherwise."""
    bound = CANNOT_START_SECONDS.get(pod.waiting_reason or "")
    if bound is None or pod.scheduled_at is None:
        return None, None
    if now < pod.scheduled_at + bound:
        return None, pod.scheduled_at + bound
    detail = f"{pod.waiting_reason}: {pod.waiting_message}" if pod.waiting_message else pod.waiting_reason
    prefix = {
        "ErrImagePull": Reason.CANNOT_PULL_PREFIX,
        "ImagePullBackOff": Reason.CANNOT_PULL_PREFIX,
        "InvalidImageName": Reason.CANNOT_PULL_PREFIX,
        "ErrImageNeverPull": Reason.CANNOT_PULL_PREFIX,
        "CreateContainerConfigError": Reason.CANNOT_CREATE_PREFIX,
        "CreateContainerError": Reason.CANNOT_CREATE_PREFIX,
    }.get(pod.waiting_reason or "", Reason.CANNOT_START_PREFIX)
    if pod.waiting_reason == "ContainerCreating":
        detail = (
            f"pod {pod.name} stayed ContainerCreating for {int(now - pod.scheduled_at)} s (volume mount?)"
        )
    return (prefix + (detail or ""))[:1024], None


def advance(job: BatchJob, status: BatchJobStatus, ctx: Context, now: float) -> Step:
    """One lifecycle step for a single (non-array) job. ``status`` is not mutated."""
    step = Step(status=status.model_copy(deep=True), now=now)
    st = step.status
    state = _state(st)
    if st.createdAt is None:
        # creationTimestamp has whole seconds; the operator's clock at first sight refines it to
        # milliseconds (recorded once, in status), so jobs created within one second keep their
        # order (the scheduler's FIFO key is createdAt, and first sight is watch = creation order).
        st.createdAt = iso(refine(epoch(job.metadata.creationTimestamp), now))
    if st.jobId is None:
        st.jobId = job.metadata.uid

    # 1. Terminal: only leftovers (a pod kept for its log stays: core.retention).
    if state is not None and state.is_terminal:
        if (
            ctx.pod is not None
            and not ctx.pod.deleting
            and not kept(ctx.pod_retention, ctx.pod, failed=state is JobState.FAILED)
        ):
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

    # 3. Cancel (before STARTING). AWS CancelJob (API model, digest §2.3): "Jobs that are in the
    # SUBMITTED or PENDING state are cancelled after all dependency jobs are completed": while a
    # dependency is outstanding the job stays (or becomes) PENDING and is cancelled once they end.
    awaiting_dependencies = state in (None, JobState.SUBMITTED, JobState.PENDING) and isinstance(
        ctx.dependencies, deps.Wait
    )
    if job.spec.cancel is not None and not awaiting_dependencies:
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
    retained = pod is not None and kept(ctx.pod_retention, pod, failed=True)
    if pod is not None and not pod.deleting and not retained:
        step.delete_pods.append(pod.name)
    if _current_attempt(st) is not None and _current_attempt(st).stoppedAt is None:  # type: ignore[union-attr]
        exit = AttemptExit(
            exit_code=ctx.pod.exit_code if ctx.pod else None,
            reason=ctx.pod.reason if ctx.pod else None,
            status_reason=reason,
            cancelled=cancelled,
            terminated=terminated,
        )
        _end_attempt(step, now, exit, ctx.pod, reason, failed=True, retained=retained)
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
    # AWS's 30 KiB SubmitJob quota; the admission webhook refuses such a job before it is stored,
    # this is the backstop for one admitted while the webhook was off (core.limits).
    too_large = limits.submission_problem(job.spec)
    if too_large is not None:
        return _fail_invalid(step, now, too_large)
    if ctx.consumable_problems:
        # Within the grace a resource may still be arriving on its own watch stream.
        missing.append("Invalid consumable resource requirement: " + "; ".join(ctx.consumable_problems))
    if missing:
        if age < MISSING_REFERENCE_GRACE_SECONDS:
            step.wake_at = now + MISSING_REFERENCE_GRACE_SECONDS - age
            return step
        return _fail_invalid(step, now, "; ".join(missing))
    assert ctx.definition is not None
    st.jobDefinitionRevision = ctx.definition.revision
    eff = ctx.definition.effective
    if eff is not None:
        # AWS DescribeJobs reports what the job runs with, after the submission's overrides.
        st.schedulingPriority = eff.scheduling_priority
        st.retryStrategy = eff.retry_strategy
        st.timeout = eff.timeout
        st.parameters = eff.parameters or None
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


def end_refused(step: Step, ctx: Context, now: float, reason: str) -> Step:
    """A running attempt ends FAILED because one of its pods was refused for good (a multi-node
    parallel job's child node, ``core.mnp.AttemptRefused``): its pod is stopped, its capacity
    released, no retry (AWS: "jobs that fail because of an invalid job definition aren't
    retried")."""
    return _stop(step, ctx, now, reason)


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
    if isinstance(res, deps.Wait) and res.not_submitted:
        deadline = (epoch(st.createdAt) or step.now) + DEPENDENCY_SUBMIT_GRACE_SECONDS
        if step.now >= deadline:
            st.stoppedAt = iso(step.now)
            _transition(step, JobState.FAILED, Reason.dependency_not_found(res.not_submitted), "Warning")
            return step
        step.wake_at = deadline
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


def _deadline(attempt: AttemptDetail | None, definition: Resolved | None) -> float | None:
    """AWS "Job timeouts": attemptDurationSeconds after the attempt's startedAt."""
    if attempt is None or definition is None or not definition.attempt_duration_seconds:
        return None
    since = epoch(attempt.startedAt)
    return None if since is None else since + definition.attempt_duration_seconds


def _follow_pod(step: Step, state: JobState, ctx: Context, now: float) -> Step:
    st = step.status
    attempt = _current_attempt(st)
    pod = ctx.pod
    if attempt is not None and pod is not None and pod.node:
        attempt.nodeName = pod.node
    deadline = _deadline(attempt, ctx.definition)
    timed_out = deadline is not None and now >= deadline
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
            # attempt is lost, as if its host had gone. A pod stopped for its timeout is waited
            # for the same way, so the attempt records its exit code.
            if pod.deleting_since is None:
                return step
            give_up = pod.deleting_since + STUCK_TERMINATING_SECONDS
            if now < give_up:
                step.wake_at = give_up
                return step
            if timed_out:
                return _attempt_over(step, ctx, now, AttemptExit(timed_out=True), None)
            lost = (
                Reason.host_terminated(pod.node) if pod.disruption else POD_STUCK_REASON.format(pod=pod.name)
            )
            return _attempt_over(step, ctx, now, AttemptExit(status_reason=lost), None)
        if timed_out:
            # The pod stopped for the timeout is gone without reporting an exit.
            return _attempt_over(step, ctx, now, AttemptExit(timed_out=True), None)
        # Gone without the operator asking: its node was deleted (the pod garbage collector
        # removes the pods of a vanished node) or it was evicted: the host went away.
        node = attempt.nodeName if attempt else None
        lost = (
            Reason.host_terminated(node)
            if node
            else POD_LOST_REASON.format(pod=attempt.podName if attempt else "?")
        )
        return _attempt_over(step, ctx, now, AttemptExit(status_reason=lost), None)

    if pod.finished:
        if pod.running_since is not None:
            # STARTING -> SUCCEEDED/FAILED between two observations: the container did run.
            _record_start(st, attempt, pod, now)
            deadline = _deadline(attempt, ctx.definition)
        ended = pod.finished_at if pod.finished_at is not None else now
        exit = AttemptExit(
            exit_code=pod.exit_code,
            reason=pod.reason,
            status_reason=pod_status_reason(pod, attempt.nodeName if attempt else None),
            # AWS: past attemptDurationSeconds the attempt is a timeout, whatever it exited with.
            # (A finish time not reported: only a pod the operator stopped counts as timed out.)
            timed_out=deadline is not None
            and (pod.finished_at is not None or pod.deleting)
            and ended >= deadline,
        )
        return _attempt_over(step, ctx, now, exit, pod)

    if state is JobState.STARTING and pod.phase != "Running":
        reason, look_again = cannot_start(pod, now)
        if reason is not None:
            # AWS: a job whose pod can't start is terminated rather than left STARTING.
            step.delete_pods.append(pod.name)
            return _attempt_over(step, ctx, now, AttemptExit(status_reason=reason), None)
        step.wake_at = look_again
        return step

    if pod.phase == "Running" and state is JobState.STARTING:
        # AWS: startedAt is "when the job transitioned from the STARTING state to the RUNNING state".
        _record_start(st, attempt, pod, now)
        _transition(step, JobState.RUNNING, None)
        state = JobState.RUNNING
        deadline = _deadline(attempt, ctx.definition)

    if state is JobState.RUNNING and deadline is not None:
        if now >= deadline:
            # AWS "Job timeouts": the container gets SIGTERM, then SIGKILL 30 s later; the job
            # fails (timeouts aren't retried) once the attempt has really ended, so its exit code
            # is recorded and dependents start only after it.
            step.delete_pods.append(pod.name)
            step.wake_at = now + STUCK_TERMINATING_SECONDS
            return step
        step.wake_at = deadline
    return step


def _uncounted(attempt: AttemptDetail) -> bool:
    """An attempt whose host went away before it reached RUNNING (AWS: not an attempt)."""
    return attempt.startedAt is None and Reason.is_host_failure(attempt.statusReason)


def _attempt_over(step: Step, ctx: Context, now: float, exit: AttemptExit, pod: PodObs | None) -> Step:
    st = step.status
    attempt = _current_attempt(st)
    definition = ctx.definition
    rules: Sequence[ExitRule] = definition.rules if definition else ()
    allowed = definition.attempts if definition else 1
    earlier = (st.attempts or [])[:-1]
    uncounted = sum(1 for a in earlier if _uncounted(a))
    # Attempts used so far, this one included (AWS counts attempts from RUNNING). An array
    # child's status holds only its current attempt: its number counts every earlier pod.
    number = (attempt.attempt if attempt else 1) - uncounted
    outcome: JobState | Retry | Fail
    free = (
        attempt is not None
        and attempt.startedAt is None
        and Reason.is_host_failure(exit.status_reason)
        and uncounted < MAX_UNCOUNTED_ATTEMPTS
        and attempt.attempt <= allowed + MAX_UNCOUNTED_ATTEMPTS
    )
    if free:
        outcome = Retry(next_attempt=number, status_reason=exit.status_reason or "", matched_rule=None)
    elif pod is not None and pod.finished:
        # K8s (restartPolicy Never): phase Succeeded means every container exited 0; phase Failed
        # means a container failed or the system stopped the pod (eviction, node shutdown), even
        # when the exit code reported is 0. The phase decides; a Failed pod is never a success.
        success = pod.succeeded and not exit.timed_out
        outcome = JobState.SUCCEEDED if success else after_failed_attempt(rules, allowed, number, exit)
    else:
        outcome = after_attempt(rules, allowed, number, exit)
    step.release = True
    # The pod goes unless it is kept for its log (core.retention); a pod still running a
    # non-essential container is stopped whatever the setting.
    retained = pod is not None and kept(ctx.pod_retention, pod, failed=outcome is not JobState.SUCCEEDED)
    if pod is not None and not retained and pod.name not in step.delete_pods:
        step.delete_pods.append(pod.name)
    stopped = iso(_stop_time(pod, attempt, now))
    if isinstance(outcome, Retry):
        _end_attempt(step, now, exit, pod, outcome.status_reason, failed=True, retained=retained)
        # AWS: "the job is placed back in the RUNNABLE state" and goes to the front of the queue.
        _transition(step, JobState.RUNNABLE, outcome.status_reason)
        what = "did not start" if free else "failed"
        step.events[-1] = Event(
            "Warning",
            "Retrying",
            f"attempt {len(st.attempts or [])} {what} ({outcome.status_reason}); retrying",
        )
        step.enqueue = True
        step.retried = True
        return step
    if isinstance(outcome, Fail):
        _end_attempt(step, now, exit, pod, outcome.status_reason, failed=True, retained=retained)
        st.stoppedAt = stopped
        _transition(step, JobState.FAILED, outcome.status_reason, "Warning")
        return step
    _end_attempt(
        step, now, exit, pod, "Succeeded" if exit.exit_code == 0 else "", failed=False, retained=retained
    )
    if attempt is not None:
        attempt.statusReason = None
    st.stoppedAt = stopped
    _transition(step, JobState.SUCCEEDED, None)
    return step


def start_attempt(status: BatchJobStatus, *, pod_name: str, compute_environment: str, now: float) -> Step:
    """RUNNABLE -> STARTING after the scheduler placed the job and its pod was created."""
    step = Step(status=status.model_copy(deep=True), now=now)
    st = step.status
    number = len(st.attempts or []) + 1
    st.attempts = [
        *(st.attempts or []),
        AttemptDetail(
            attempt=number,
            podName=pod_name,
            computeEnvironment=compute_environment,
            logStreamName=f"pod/{pod_name}",
        ),
    ]
    st.computeEnvironment = compute_environment
    st.queuePosition = None
    _transition(step, JobState.STARTING, None)
    step.events[-1] = Event(
        "Normal", "Starting", f"attempt {number}: pod {pod_name} in {compute_environment}"
    )
    return step


def starting_write_hold(
    written_state: str | None,
    state: str | None,
    dispatched_at: float | None,
    now: float,
    delay: float,
) -> float | None:
    """Until when the status write of a just-dispatched job waits (None: write now).

    A job dispatched this moment is STARTING with its pod just created; most pods run within a
    second, and the job is then written once, RUNNING (the attempt, its pod and compute
    environment included), instead of STARTING and RUNNING one after the other. This holds only
    the first write of a dispatch from a state without a pod (SUBMITTED, PENDING, RUNNABLE or
    never written): the API server then still shows the job RUNNABLE with no attempt of this
    pod, which a restarted operator reads safely (it finds the attempt's pod by its
    deterministic name and adopts it, no second attempt). A result that is written before a pod
    goes is never held (the caller holds nothing in a cycle that deletes pods of the job)."""
    if delay <= 0 or dispatched_at is None or state != JobState.STARTING.value:
        return None
    if written_state not in (None, JobState.SUBMITTED.value, JobState.PENDING.value, JobState.RUNNABLE.value):
        return None
    until = dispatched_at + delay
    return until if now < until else None


def runnable_write_hold(
    written_state: str | None,
    state: str | None,
    created_at: str | None,
    now: float,
    delay: float,
    budget_ran_out: bool,
) -> float | None:
    """Until when the first write of a new job that is RUNNABLE only because this cycle's
    dispatch budget ran out waits (None: write now).

    A burst larger than the budget leaves its tail RUNNABLE for a cycle, and the next cycle,
    which starts at once, dispatches it: written now, RUNNABLE would be a status patch that the
    dispatch's own write replaces a moment later. Held, the job's first write is its dispatch's
    (RUNNING, see starting_write_hold). Bounded: only in a cycle whose budget ran out, only for a
    job never shown past PENDING, and only until `delay` after its creation (createdAt), so a
    job that waits for capacity is shown RUNNABLE soon anyway. Nothing is lost while held: the
    API server shows the job as submitted, and a restarted operator steps it again."""
    if delay <= 0 or not budget_ran_out or state != JobState.RUNNABLE.value:
        return None
    if written_state not in (None, JobState.SUBMITTED.value, JobState.PENDING.value):
        return None
    created = epoch(created_at)
    if created is None:
        return None
    until = created + delay
    return until if now < until else None


# Attempt fields a pod reports on its own before it runs, which say nothing a person acts on
# while the job's state stays the same: written with the job's next change (or at the hold's end).
DETAIL_ATTEMPT_FIELDS = frozenset({"nodeName"})


def detail_only(written: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether the status `new` differs from what the API server shows (`written`, both as JSON)
    only in the current attempts' DETAIL_ATTEMPT_FIELDS: the same state, reason, conditions and
    attempts, each with the same fields but those. Nothing else is ever a detail."""
    keys = (set(written) | set(new)) - {"attempts"}
    if any(written.get(k) != new.get(k) for k in keys):
        return False
    old_attempts, new_attempts = written.get("attempts") or [], new.get("attempts") or []
    if len(old_attempts) != len(new_attempts) or old_attempts == new_attempts:
        return False
    for a, b in zip(old_attempts, new_attempts, strict=True):
        if {k: v for k, v in a.items() if k not in DETAIL_ATTEMPT_FIELDS} != {
            k: v for k, v in b.items() if k not in DETAIL_ATTEMPT_FIELDS
        }:
            return False
    return True


def detail_write_hold(
    written: Mapping[str, Any], new: Mapping[str, Any], dispatched_at: float | None, now: float, delay: float
) -> float | None:
    """Until when a status write that would only add a detail waits (None: write now).

    A pod bound to a node while its job is STARTING gives the attempt its nodeName, but the job
    shows nothing new to act on: written at once, it is one more status patch per job in
    every busy burst (issue 14: a third of the jobs paid it). Held, it rides with the job's next
    write (RUNNING, as a rule), or is written when the hold ends: `delay` after the dispatch, so
    a pod that stays pending shows its node soon anyway. Nothing is lost while held: the pod
    carries the node, and a restarted operator reads it from there."""
    if delay <= 0 or dispatched_at is None or not detail_only(written, new):
        return None
    until = dispatched_at + delay
    return until if now < until else None


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
