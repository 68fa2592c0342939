"""One job's lifecycle step (core.lifecycle): admission, dependencies, cancel/terminate, pods,
retries, timeouts, lost attempts, cleanup. AWS rules: digest §2.2 (transitions), §2.3 (cancel
vs terminate), §2.5 (statusReason strings), §2.6 (retries)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from batchyard.api.batchjob import AttemptDetail, BatchJob, BatchJobStatus
from batchyard.core import deps
from batchyard.core.jobstate import JobState, Reason, can_transition
from batchyard.core.lifecycle import (
    DEPENDENCY_SUBMIT_GRACE_SECONDS,
    MAX_TERMINATION_MESSAGE,
    MAX_UNCOUNTED_ATTEMPTS,
    MISSING_REFERENCE_GRACE_SECONDS,
    STUCK_TERMINATING_SECONDS,
    ContainerExit,
    Context,
    PodObs,
    Resolved,
    Step,
    advance,
    epoch,
    iso,
    next_pod_name_attempt,
    queue_refusal,
    start_attempt,
    termination_message,
)
from batchyard.core.retention import PodRetention
from batchyard.core.retry import Action, ExitRule

T0 = 1_700_000_000.0  # the job's creationTimestamp
STARTED = T0 + 100  # when the current attempt's pod started running
NOW = T0 + 600
STUCK = "Pod j-a1 did not stop after it was deleted (its node may be unreachable)"
GRACE = MISSING_REFERENCE_GRACE_SECONDS
ESSENTIAL = Reason.ESSENTIAL_CONTAINER_EXITED
ATTEMPT_STATES = ("STARTING", "RUNNING")

# --- builders ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobB:
    """a_job("j").in_state("RUNNING", attempts=2).cancelled("no longer needed")"""

    name: str
    queue: str = "q"
    definition: str = "d"
    created: float | None = T0
    state: str | None = None
    attempts: int = 0
    reason: str | None = None
    started: float | None = None
    cancel: str | None = None
    terminate: str | None = None
    conditions: tuple[dict[str, Any], ...] = ()
    queue_position: int | None = None

    def in_queue(self, queue: str) -> JobB:
        return replace(self, queue=queue)

    def using(self, definition: str) -> JobB:
        return replace(self, definition=definition)

    def created_at(self, ts: float | None) -> JobB:
        return replace(self, created=ts)

    def in_state(
        self, state: str, attempts: int = 0, reason: str | None = None, started: float | None = None
    ) -> JobB:
        if state in ATTEMPT_STATES and attempts == 0:
            attempts = 1
        if state == "RUNNING" and started is None:
            started = STARTED
        return replace(self, state=state, attempts=attempts, reason=reason, started=started)

    def cancelled(self, reason: str = "not needed") -> JobB:
        return replace(self, cancel=reason)

    def terminated(self, reason: str = "stop now") -> JobB:
        return replace(self, terminate=reason)

    def warned_cancel_ignored(self) -> JobB:
        cond = {"type": "CancelIgnored", "status": "True", "reason": "JobAlreadyStarted", "message": "x"}
        return replace(self, conditions=(*self.conditions, cond))

    def at_queue_position(self, position: int) -> JobB:
        return replace(self, queue_position=position)

    def pod(self, attempt: int | None = None) -> str:
        return f"{self.name}-a{attempt or self.attempts}"

    def job(self) -> BatchJob:
        spec: dict[str, Any] = {"jobQueue": self.queue, "jobDefinition": self.definition}
        if self.cancel:
            spec["cancel"] = {"reason": self.cancel}
        if self.terminate:
            spec["terminate"] = {"reason": self.terminate}
        meta: dict[str, Any] = {"name": self.name, "namespace": "ns", "uid": f"uid-{self.name}"}
        if self.created is not None:
            meta["creationTimestamp"] = iso(self.created)
        return BatchJob.from_body({"metadata": meta, "spec": spec})

    def status(self) -> BatchJobStatus:
        if self.state is None:
            return BatchJobStatus()
        attempts = []
        for n in range(1, self.attempts + 1):
            current = n == self.attempts and self.state in ATTEMPT_STATES
            a = AttemptDetail(attempt=n, podName=self.pod(n), computeEnvironment="ce")
            if not current:
                a.startedAt, a.stoppedAt = iso(T0 + 10 * n), iso(T0 + 10 * n + 5)
                a.exitCode, a.reason, a.statusReason = 1, "Error", ESSENTIAL
            elif self.state == "RUNNING":
                a.startedAt, a.nodeName = iso(self.started or STARTED), "n1"
            attempts.append(a)
        return BatchJobStatus.model_validate(
            {
                "status": self.state,
                "statusReason": self.reason,
                "jobId": f"uid-{self.name}",
                "jobDefinitionRevision": 1,
                "createdAt": iso(T0),
                "startedAt": attempts[0].startedAt if attempts else None,
                "stoppedAt": iso(T0 + 50) if self.state in ("SUCCEEDED", "FAILED") else None,
                "attempts": [a.model_dump() for a in attempts] or None,
                "queuePosition": self.queue_position,
                "conditions": list(self.conditions) or None,
            }
        )


def a_job(name: str) -> JobB:
    return JobB(name)


@dataclass(frozen=True)
class PodB:
    """a_pod("j-a1").running(since=...) / .exited(137, "OOMKilled") / .succeeded() / .deleting()"""

    obs: PodObs

    def pending(self) -> PodB:
        return PodB(replace(self.obs, phase="Pending"))

    def running(self, since: float | None = STARTED, node: str = "n1") -> PodB:
        return PodB(replace(self.obs, phase="Running", running_since=since, node=node))

    def exited(self, code: int | None, reason: str | None = "Error") -> PodB:
        return PodB(replace(self.obs, phase="Failed", exit_code=code, reason=reason, node="n1"))

    def succeeded(self, code: int | None = 0) -> PodB:
        return PodB(replace(self.obs, phase="Succeeded", exit_code=code, reason="Completed", node="n1"))

    def unknown(self) -> PodB:
        return PodB(replace(self.obs, phase="Unknown"))

    def deleting(self, since: float | None = None) -> PodB:
        return PodB(replace(self.obs, deleting=True, deleting_since=since))

    def killed(self, code: int = 143, at: float = NOW) -> PodB:
        """Stopped by the operator (timeout): SIGTERM/SIGKILL, then it ends with ``code``."""
        return PodB(
            replace(self.obs, phase="Failed", exit_code=code, reason="Error", node="n1", deleting=True,
                    deleting_since=at - 30, finished_at=at, running_since=self.obs.running_since or STARTED)
        )  # fmt: skip

    def finished_at(self, at: float) -> PodB:
        return PodB(replace(self.obs, finished_at=at))

    def disrupted(self, why: str = "Evicted", since: float | None = None) -> PodB:
        """Ended by the system (eviction, preemption, node shutdown), not by its container."""
        return PodB(replace(self.obs, phase="Failed", disruption=why, node="n1", running_since=since))

    def init_failed(self, name: str = "setup", code: int = 2) -> PodB:
        return PodB(replace(self.obs, phase="Failed", failed_init_container=name, exit_code=code, node="n1"))

    def sidecar_still_running(self, code: int = 0) -> PodB:
        """The essential container ended; a non-essential one still runs (pod phase Running)."""
        return PodB(
            replace(self.obs, phase="Running", node="n1", running_since=STARTED, exit_code=code,
                    containers=(ContainerExit("default", code, "Completed"),), essentials_done=True)
        )  # fmt: skip

    def waiting(self, reason: str, scheduled: float, message: str = "boom") -> PodB:
        return PodB(
            replace(self.obs, phase="Pending", node="n1", waiting_reason=reason, waiting_message=message,
                    scheduled_at=scheduled)
        )  # fmt: skip


def a_pod(name: str) -> PodB:
    return PodB(PodObs(name=name, phase="Pending"))


def retry_on(exit_code: str | None = None, reason: str | None = None, status: str | None = None) -> ExitRule:
    return ExitRule(Action.RETRY, exit_code, reason, status)


def exit_on(exit_code: str | None = None, reason: str | None = None, status: str | None = None) -> ExitRule:
    return ExitRule(Action.EXIT, exit_code, reason, status)


DEFAULT_DEFINITION = Resolved(revision=1, rules=(), attempts=1, attempt_duration_seconds=None)


@dataclass(frozen=True)
class CtxB:
    """a_context().retrying(3).with_pod(a_pod("j-a1").exited(1))"""

    ctx: Context = field(
        default_factory=lambda: Context(
            queue_exists=True,
            queue_problem=None,
            definition=DEFAULT_DEFINITION,
            definition_problem=None,
            dependencies=deps.READY,
            pod=None,
        )
    )

    def _with(self, **changes: Any) -> CtxB:
        return CtxB(replace(self.ctx, **changes))

    def _definition(self, **changes: Any) -> CtxB:
        return self._with(definition=replace(self.ctx.definition or DEFAULT_DEFINITION, **changes))

    def without_queue(self) -> CtxB:
        return self._with(queue_exists=False)

    def queue_refusing(self, problem: str) -> CtxB:
        return self._with(queue_problem=problem)

    def without_definition(self, problem: str | None = None) -> CtxB:
        return self._with(definition=None, definition_problem=problem)

    def revision(self, number: int) -> CtxB:
        return self._definition(revision=number)

    def retrying(self, attempts: int, *rules: ExitRule) -> CtxB:
        return self._definition(attempts=attempts, rules=rules)

    def rules(self, *rules: ExitRule) -> CtxB:
        return self._definition(rules=rules)

    def timeout(self, seconds: int) -> CtxB:
        return self._definition(attempt_duration_seconds=seconds)

    def render_problems(self, *problems: str) -> CtxB:
        return self._definition(problems=problems)

    def waiting_for(self, *names: str) -> CtxB:
        return self._with(dependencies=deps.Wait(names, Reason.dependencies_outstanding(names)))

    def dependency_failed(self, reason: str = Reason.DEPENDENT_JOB_FAILED) -> CtxB:
        return self._with(dependencies=deps.Fail(reason, ("a",)))

    def with_pod(self, pod: PodB) -> CtxB:
        return self._with(pod=pod.obs, pod_seen=True)

    def pod_seen(self) -> CtxB:
        return self._with(pod_seen=True)

    def keeping_pods(self, retention: PodRetention = PodRetention.ALL) -> CtxB:
        return self._with(pod_retention=retention)


def a_context() -> CtxB:
    return CtxB()


FLAGS = ("enqueue", "retried", "release", "ensure_pod")


@dataclass(frozen=True)
class Expect:
    """The parts of a Step every row checks, compared as a whole."""

    state: str | None
    reason: str | None = None
    deleted: tuple[str, ...] = ()
    flags: frozenset[str] = frozenset()
    wake_at: float | None = None

    @staticmethod
    def of(step: Step) -> Expect:
        return Expect(
            state=step.status.status,
            reason=step.status.statusReason,
            deleted=tuple(step.delete_pods),
            flags=frozenset(f for f in FLAGS if getattr(step, f)),
            wake_at=step.wake_at,
        )


def flags(*names: str) -> frozenset[str]:
    assert set(names) <= set(FLAGS), names
    return frozenset(names)


def run(job: JobB, ctx: CtxB, now: float = NOW) -> Step:
    return advance(job.job(), job.status(), ctx.ctx, now)


J = a_job("j")
C = a_context()
RELEASED = flags("release")
REQUEUED = flags("enqueue", "retried", "release")
LOST = "Pod j-a1 was deleted before the attempt finished"
HOST = "Host EC2 (node n1) terminated."
SPOT = (retry_on(status="Host EC2*"), exit_on(reason="*"))  # AWS "Use Amazon EC2 Spot best practices"
WAITING_A = Reason.dependencies_outstanding(("a",))
POD = a_pod("j-a1")  # the first attempt's pod
RUNNING = J.in_state("RUNNING")
STARTING = J.in_state("STARTING")

# --- the table --------------------------------------------------------------------------------

P = pytest.param
TERMINAL_ROWS = [
    P(J.in_state("SUCCEEDED", 1), C.with_pod(POD.succeeded()), NOW,
      Expect("SUCCEEDED", deleted=("j-a1",)), id="succeeded job: its finished pod is a leftover, deleted"),
    P(J.in_state("FAILED", 1, "boom"), C.with_pod(POD.running()), NOW,
      Expect("FAILED", "boom", deleted=("j-a1",)), id="failed job: a pod still running is deleted"),
    P(J.in_state("SUCCEEDED", 1), C.with_pod(POD.succeeded()).keeping_pods(), NOW,
      Expect("SUCCEEDED"), id="terminal job with keepPods=all: the pod stays for inspection"),
    P(J.in_state("FAILED", 1, "boom"), C.with_pod(POD.exited(1).deleting()), NOW,
      Expect("FAILED", "boom"), id="terminal job: a pod already being deleted is not deleted again"),
    P(J.in_state("SUCCEEDED", 1), C, NOW, Expect("SUCCEEDED"), id="terminal job without pod: nothing to do"),
    P(J.in_state("SUCCEEDED", 1).terminated(), C, NOW, Expect("SUCCEEDED"),
      id="AWS: terminate of a SUCCEEDED job is a no-op"),
    P(J.in_state("FAILED", 0, "Dependent Job failed").cancelled(), C, NOW,
      Expect("FAILED", "Dependent Job failed"), id="AWS: cancel of a FAILED job is a no-op"),
    P(J.in_state("FAILED", 1, "boom"), C.waiting_for("a").without_queue(), NOW, Expect("FAILED", "boom"),
      id="terminal job: queue, definition and dependencies are not looked at again"),
]  # fmt: skip

TERMINATE_ROWS = [
    P(J.terminated("stop now"), C, NOW, Expect("FAILED", "stop now", flags=RELEASED),
      id="AWS: terminate before admission fails the job with the user's reason"),
    P(J.in_state("SUBMITTED").terminated(), C, NOW, Expect("FAILED", "stop now", flags=RELEASED),
      id="AWS: terminate SUBMITTED -> FAILED"),
    P(J.in_state("PENDING", reason=WAITING_A).terminated(), C.waiting_for("a"), NOW,
      Expect("FAILED", "stop now", flags=RELEASED),
      id="AWS: terminate PENDING -> FAILED without waiting for dependencies"),
    P(J.in_state("RUNNABLE").terminated(), C, NOW, Expect("FAILED", "stop now", flags=RELEASED),
      id="AWS: terminate RUNNABLE -> FAILED, the scheduler's hold is released"),
    P(J.in_state("RUNNABLE", 1, ESSENTIAL).terminated(), C, NOW, Expect("FAILED", "stop now", flags=RELEASED),
      id="terminate RUNNABLE between retries -> FAILED, no pod to stop"),
    P(STARTING.terminated(), C.with_pod(POD.pending()), NOW,
      Expect("FAILED", "stop now", ("j-a1",), RELEASED), id="AWS: terminate STARTING -> FAILED, pod stopped"),
    P(STARTING.terminated(), C, NOW, Expect("FAILED", "stop now", flags=RELEASED),
      id="terminate STARTING before the pod was seen: FAILED, nothing to delete yet"),
    P(RUNNING.terminated(), C.with_pod(POD.running()), NOW,
      Expect("FAILED", "stop now", ("j-a1",), RELEASED), id="AWS: terminate RUNNING -> FAILED, pod stopped"),
    P(RUNNING.terminated(), C.with_pod(POD.running()).keeping_pods(), NOW,
      Expect("FAILED", "stop now", ("j-a1",), RELEASED),
      id="terminate stops a running pod even with keepPods=all"),
    P(RUNNING.terminated(), C.with_pod(POD.exited(1)), NOW,
      Expect("FAILED", "stop now", ("j-a1",), RELEASED),
      id="terminate racing a finished pod: FAILED, the finished pod is cleaned up now"),
    P(RUNNING.terminated(), C.with_pod(POD.exited(1)).keeping_pods(), NOW,
      Expect("FAILED", "stop now", flags=RELEASED), id="terminate with a finished pod and keepPods=all: kept"),
    P(RUNNING.terminated("t").cancelled("c"), C.with_pod(POD.running()), NOW,
      Expect("FAILED", "t", ("j-a1",), RELEASED), id="terminate wins over cancel"),
    P(RUNNING.terminated(), C.with_pod(POD.running()).retrying(5), NOW,
      Expect("FAILED", "stop now", ("j-a1",), RELEASED), id="AWS: a terminated job is not retried"),
]  # fmt: skip

CANCEL_ROWS = [
    P(J.cancelled("not needed"), C, NOW, Expect("FAILED", "not needed", flags=RELEASED),
      id="AWS: cancel before admission fails the job with the user's reason"),
    P(J.in_state("SUBMITTED").cancelled(), C, NOW, Expect("FAILED", "not needed", flags=RELEASED),
      id="AWS: cancel SUBMITTED -> FAILED"),
    P(J.in_state("PENDING", reason=WAITING_A).cancelled(), C.waiting_for("a"), NOW,
      Expect("PENDING", WAITING_A),
      id="AWS CancelJob: PENDING is cancelled only after all dependency jobs are completed (digest §2.3)"),
    P(J.cancelled(), C.waiting_for("a"), NOW, Expect("PENDING", WAITING_A),
      id="AWS CancelJob: a new job with outstanding dependencies goes PENDING, cancelled later"),
    P(J.in_state("PENDING", reason=WAITING_A).cancelled(), C, NOW,
      Expect("FAILED", "not needed", flags=RELEASED), id="cancel PENDING -> FAILED once dependencies are done"),
    P(J.in_state("PENDING", reason=WAITING_A).cancelled(), C.dependency_failed(), NOW,
      Expect("FAILED", "not needed", flags=RELEASED),
      id="cancel PENDING -> FAILED (cancelled) when a dependency failed"),
    P(J.in_state("RUNNABLE").cancelled(), C, NOW, Expect("FAILED", "not needed", flags=RELEASED),
      id="AWS: cancel RUNNABLE -> FAILED"),
    P(STARTING.cancelled(), C.with_pod(POD.pending()), NOW, Expect("STARTING"),
      id="AWS: cancel STARTING is a no-op"),
    P(RUNNING.cancelled(), C.with_pod(POD.running()), NOW, Expect("RUNNING"),
      id="AWS: cancel RUNNING is a no-op"),
    P(RUNNING.cancelled(), C.with_pod(POD.succeeded()), NOW,
      Expect("SUCCEEDED", deleted=("j-a1",), flags=RELEASED),
      id="ignored cancel: the pod is still followed to SUCCEEDED"),
    P(RUNNING.cancelled(), C.with_pod(POD.exited(1)).retrying(2), NOW,
      Expect("RUNNABLE", ESSENTIAL, ("j-a1",), REQUEUED),
      id="ignored cancel: a failed attempt still retries (the cancel arrived too late)"),
]  # fmt: skip

ADMISSION_ROWS = [
    P(J, C, T0, Expect("RUNNABLE", flags=flags("enqueue")),
      id="AWS: SUBMITTED -> RUNNABLE without dependencies"),
    P(J.in_state("SUBMITTED"), C, NOW, Expect("RUNNABLE", flags=flags("enqueue")),
      id="a recorded SUBMITTED job is admitted like a new one"),
    P(J, C.waiting_for("a"), T0, Expect("PENDING", WAITING_A),
      id="AWS: SUBMITTED -> PENDING with dependencies"),
    P(J, C.dependency_failed(), T0, Expect("FAILED", Reason.DEPENDENT_JOB_FAILED),
      id="a dependency already FAILED fails the job at its first evaluation"),
    P(J, C.dependency_failed("Dependency cycle: j -> a -> j"), T0,
      Expect("FAILED", "Dependency cycle: j -> a -> j"),
      id="a dependency cycle fails the job with the cycle"),
    P(J, C.without_queue(), T0 + 1, Expect(None, wake_at=T0 + GRACE),
      id="missing queue within the grace period: wait, wake when it ends"),
    P(J, C.without_queue(), T0 + GRACE - 0.5, Expect(None, wake_at=T0 + GRACE),
      id="missing queue just before the grace ends: still waits"),
    P(J, C.without_queue(), T0 + GRACE, Expect("FAILED", "JobQueue q does not exist"),
      id="missing queue when the grace ends: FAILED naming the queue"),
    P(J.in_queue("gpu"), C.without_queue(), NOW, Expect("FAILED", "JobQueue gpu does not exist"),
      id="missing queue long after submission: FAILED"),
    P(J, C.without_definition(), T0 + 2, Expect(None, wake_at=T0 + GRACE),
      id="missing definition within the grace period: wait"),
    P(J.using("sleep"), C.without_definition(), NOW, Expect("FAILED", "JobDefinition sleep does not exist"),
      id="missing definition after the grace: FAILED naming it"),
    P(J.using("d:3"), C.without_definition("JobDefinition d has no revision 3"), NOW,
      Expect("FAILED", "JobDefinition d has no revision 3"),
      id="the resolver's reason is used when the definition can't be resolved"),
    P(J, C.without_queue().without_definition(), NOW,
      Expect("FAILED", "JobQueue q does not exist; JobDefinition d does not exist"),
      id="queue and definition both missing: both named"),
    P(J, C.queue_refusing("JobQueue q is DISABLED and accepts no new jobs"), T0,
      Expect("FAILED", "JobQueue q is DISABLED and accepts no new jobs"),
      id="a queue that refuses the job fails it at once, no grace"),
    P(J, C.queue_refusing("refused").without_definition(), T0, Expect("FAILED", "refused"),
      id="a refusing queue wins over a missing definition"),
    P(J, C.render_problems("container image is empty"), T0,
      Expect("FAILED", "Invalid job definition: container image is empty"),
      id="AWS: an invalid job definition fails the job (not retried)"),
    P(J, C.render_problems("a", "b").retrying(10), T0, Expect("FAILED", "Invalid job definition: a; b"),
      id="all render problems are listed, retries do not apply"),
    P(J, C.render_problems("x").waiting_for("a"), T0, Expect("FAILED", "Invalid job definition: x"),
      id="an invalid definition fails before dependencies are waited for"),
]  # fmt: skip

PENDING_ROWS = [
    P(J.in_state("PENDING", reason=WAITING_A), C, NOW, Expect("RUNNABLE", flags=flags("enqueue")),
      id="AWS: PENDING -> RUNNABLE when all dependencies SUCCEEDED"),
    P(J.in_state("PENDING", reason=WAITING_A), C.waiting_for("a"), NOW, Expect("PENDING", WAITING_A),
      id="PENDING while the dependency runs: unchanged"),
    P(J.in_state("PENDING", reason=Reason.dependencies_outstanding(("a", "b"))), C.waiting_for("a"), NOW,
      Expect("PENDING", WAITING_A), id="PENDING: the reason follows what is still outstanding"),
    P(J.in_state("PENDING", reason=WAITING_A), C.dependency_failed(), NOW,
      Expect("FAILED", Reason.DEPENDENT_JOB_FAILED), id="AWS: PENDING -> FAILED when a dependency fails"),
    P(J.in_state("PENDING", reason=WAITING_A), C.without_definition(), NOW,
      Expect("RUNNABLE", flags=flags("enqueue")),
      id="PENDING is past admission: the definition is not re-checked"),
    P(J.in_state("PENDING", reason=WAITING_A), C.without_queue(), NOW,
      Expect("FAILED", "JobQueue q was deleted", flags=RELEASED),
      id="AWS DeleteJobQueue: an admitted job whose queue is gone is terminated"),
    P(J.in_state("RUNNING", 1), C.without_queue().with_pod(POD.running()), NOW,
      Expect("FAILED", "JobQueue q was deleted", ("j-a1",), RELEASED),
      id="queue deleted under a RUNNING job: terminated, its pod stopped"),
    P(J.in_state("RUNNABLE"), C, NOW, Expect("RUNNABLE"), id="RUNNABLE belongs to the scheduler: no change"),
    P(J.in_state("RUNNABLE"), C.dependency_failed(), NOW, Expect("RUNNABLE"),
      id="RUNNABLE: dependencies are settled and not re-read"),
]  # fmt: skip

POD_ROWS = [
    P(STARTING, C.with_pod(POD.pending()), NOW, Expect("STARTING"),
      id="STARTING while the pod is Pending (image pull, init containers)"),
    P(STARTING, C.with_pod(POD.unknown()), NOW, Expect("STARTING"),
      id="pod phase Unknown: wait"),
    P(STARTING, C.with_pod(POD.running()), NOW, Expect("RUNNING"),
      id="AWS: STARTING -> RUNNING when the container runs"),
    P(STARTING, C.with_pod(POD.running(since=NOW - 10)).timeout(60), NOW,
      Expect("RUNNING", wake_at=NOW + 50),
      id="STARTING -> RUNNING with a timeout: wake at startedAt + duration"),
    P(STARTING, C.with_pod(POD.running(since=NOW - 61)).timeout(60), NOW,
      Expect("RUNNING", None, ("j-a1",), wake_at=NOW + STUCK_TERMINATING_SECONDS),
      id="seen Running only after the deadline (operator was down): stopped at once"),
    P(STARTING, C.with_pod(POD.pending()).timeout(60), NOW + 10_000, Expect("STARTING"),
      id="AWS: STARTING is not included in timeouts"),
    P(RUNNING, C.with_pod(POD.running()), NOW, Expect("RUNNING"),
      id="RUNNING without a timeout: nothing to wake for"),
    P(RUNNING, C.with_pod(POD.running()).timeout(3600), NOW,
      Expect("RUNNING", wake_at=STARTED + 3600), id="RUNNING before its deadline: wake at the deadline"),
    P(RUNNING, C.with_pod(POD.running()).timeout(60), STARTED + 60,
      Expect("RUNNING", None, ("j-a1",), wake_at=STARTED + 60 + STUCK_TERMINATING_SECONDS),
      id="AWS: attemptDurationSeconds after startedAt -> pod stopped; RUNNING until it has ended"),
    P(RUNNING, C.with_pod(POD.killed(143, at=STARTED + 62)).timeout(60), STARTED + 63,
      Expect("FAILED", Reason.TIMEOUT, ("j-a1",), RELEASED),
      id="AWS: the stopped pod ended: FAILED with the timeout reason (exit recorded)"),
    P(RUNNING, C.with_pod(POD.running().deleting(since=STARTED + 60)).timeout(60), STARTED + 70,
      Expect("RUNNING", wake_at=STARTED + 60 + STUCK_TERMINATING_SECONDS),
      id="the stopped pod is still in its 30 s grace: the attempt has not ended yet"),
    P(RUNNING, C.pod_seen().timeout(60), STARTED + 70, Expect("FAILED", Reason.TIMEOUT, flags=RELEASED),
      id="the stopped pod went without reporting an exit: FAILED, timed out"),
    P(RUNNING, C.with_pod(POD.running().deleting(since=STARTED + 60)).timeout(60),
      STARTED + 60 + STUCK_TERMINATING_SECONDS, Expect("FAILED", Reason.TIMEOUT, flags=RELEASED),
      id="the stopped pod is stuck Terminating: FAILED, timed out, after the bound"),
    P(RUNNING, C.with_pod(POD.exited(0).finished_at(STARTED + 61)).timeout(60), NOW,
      Expect("FAILED", Reason.TIMEOUT, ("j-a1",), RELEASED),
      id="AWS: finished after the deadline (noticed late): a timeout, even with exit 0"),
    P(RUNNING, C.with_pod(POD.killed()).timeout(60).retrying(3), NOW,
      Expect("FAILED", Reason.TIMEOUT, ("j-a1",), RELEASED), id="AWS: a timed-out attempt is not retried"),
    P(RUNNING, C.with_pod(POD.killed()).timeout(60).retrying(3, retry_on(reason="*")),
      NOW, Expect("FAILED", Reason.TIMEOUT, ("j-a1",), RELEASED),
      id="AWS: not even when a RETRY rule would match"),
    P(RUNNING, C.with_pod(POD.running()).timeout(60).keeping_pods(), NOW,
      Expect("RUNNING", None, ("j-a1",), wake_at=NOW + STUCK_TERMINATING_SECONDS),
      id="a timed-out pod is stopped even with keepPods=all"),
    P(J.in_state("RUNNING", 2, started=NOW - 30), C.with_pod(a_pod("j-a2").running()).timeout(60).retrying(3),
      NOW, Expect("RUNNING", wake_at=NOW + 30),
      id="AWS: the timeout countdown starts over for a new attempt"),
    P(RUNNING, C.with_pod(POD.succeeded()).timeout(60), NOW,
      Expect("SUCCEEDED", deleted=("j-a1",), flags=RELEASED),
      id="a pod that finished before the deadline was noticed: its exit decides"),
    P(RUNNING, C.with_pod(POD.succeeded()), NOW,
      Expect("SUCCEEDED", deleted=("j-a1",), flags=RELEASED), id="AWS: RUNNING -> SUCCEEDED on exit 0"),
    P(RUNNING, C.with_pod(POD.succeeded()).keeping_pods(), NOW,
      Expect("SUCCEEDED", flags=RELEASED), id="keepPods=all: a finished pod is kept"),
    P(STARTING, C.with_pod(POD.succeeded()), NOW,
      Expect("SUCCEEDED", deleted=("j-a1",), flags=RELEASED),
      id="K8s: Pending and Succeeded coalesced by the watch: STARTING -> SUCCEEDED"),
    P(RUNNING, C.with_pod(POD.exited(0, "Terminated")).retrying(2), NOW,
      Expect("RUNNABLE", ESSENTIAL, ("j-a1",), REQUEUED),
      id="K8s: pod Failed with exit 0 (node shutdown, eviction) is a failed attempt, retried"),
    P(RUNNING, C.with_pod(POD.exited(0, "Terminated")), NOW, Expect("FAILED", ESSENTIAL, ("j-a1",), RELEASED),
      id="K8s: pod Failed with exit 0 is never SUCCEEDED"),
    P(RUNNING, C.with_pod(POD.succeeded(code=None)), NOW, Expect("SUCCEEDED", deleted=("j-a1",), flags=RELEASED),
      id="K8s: pod Succeeded without a reported exit code is a success (the phase decides)"),
    P(RUNNING, C.with_pod(POD.exited(1)), NOW,
      Expect("FAILED", ESSENTIAL, ("j-a1",), RELEASED),
      id="AWS: by default one attempt: exit 1 -> FAILED (Essential container in task exited)"),
    P(RUNNING, C.with_pod(POD.exited(1)).retrying(3), NOW,
      Expect("RUNNABLE", ESSENTIAL, ("j-a1",), REQUEUED),
      id="AWS: RUNNING -> RUNNABLE while attempts remain"),
    P(J.in_state("RUNNING", 2), C.with_pod(a_pod("j-a2").exited(1)).retrying(3), NOW,
      Expect("RUNNABLE", ESSENTIAL, ("j-a2",), REQUEUED), id="attempt 2 of 3 fails: retried again"),
    P(J.in_state("RUNNING", 3), C.with_pod(a_pod("j-a3").exited(1)).retrying(3), NOW,
      Expect("FAILED", ESSENTIAL, ("j-a3",), RELEASED), id="AWS: attempt 3 of 3 fails: attempts exhausted"),
    P(RUNNING, C.with_pod(POD.exited(1)).retrying(3).keeping_pods(), NOW,
      Expect("RUNNABLE", ESSENTIAL, flags=REQUEUED), id="keepPods=all: a retried attempt's pod is kept"),
    P(RUNNING, C.with_pod(POD.exited(137, "OOMKilled")).retrying(5, exit_on(reason="OOMKilled")),
      NOW, Expect("FAILED", ESSENTIAL, ("j-a1",), RELEASED),
      id="AWS: an EXIT rule matching the reason fails at once"),
    P(RUNNING, C.with_pod(POD.exited(3)).retrying(5, exit_on(exit_code="1*")), NOW,
      Expect("RUNNABLE", ESSENTIAL, ("j-a1",), REQUEUED), id="AWS: no rule matches -> retried"),
    P(RUNNING, C.with_pod(POD.exited(12)).retrying(5, retry_on(exit_code="1*"), exit_on(reason="*")),
      NOW, Expect("RUNNABLE", ESSENTIAL, ("j-a1",), REQUEUED),
      id="AWS: first matching rule wins (RETRY before EXIT)"),
    P(RUNNING, C.with_pod(POD.exited(2)).retrying(5, retry_on(exit_code="1*"), exit_on(reason="*")),
      NOW, Expect("FAILED", ESSENTIAL, ("j-a1",), RELEASED),
      id="AWS: catch-all EXIT after the RETRY entries"),
    P(RUNNING, C.with_pod(POD.exited(1)).retrying(1, retry_on(reason="*")), NOW,
      Expect("FAILED", ESSENTIAL, ("j-a1",), RELEASED), id="AWS: a RETRY rule cannot exceed attempts"),
    P(STARTING, C.with_pod(POD.exited(None, "ContainerCannotRun")).retrying(2), NOW,
      Expect("RUNNABLE", ESSENTIAL, ("j-a1",), REQUEUED),
      id="K8s: pod failed before running: STARTING -> RUNNABLE"),
    P(RUNNING, C.with_pod(POD.exited(1)).without_definition(), NOW,
      Expect("FAILED", ESSENTIAL, ("j-a1",), RELEASED),
      id="definition deleted while running: one attempt assumed, FAILED"),
    P(RUNNING, C.with_pod(POD.exited(1).deleting()), NOW,
      Expect("FAILED", ESSENTIAL, ("j-a1",), RELEASED),
      id="a finished pod being deleted still reports its exit"),
    P(RUNNING, C.with_pod(POD.running().deleting()), NOW, Expect("RUNNING"),
      id="a running pod being deleted by someone else: wait for it to go or exit"),
    P(RUNNING, C.with_pod(POD.running().deleting(since=NOW - 10)), NOW,
      Expect("RUNNING", wake_at=NOW - 10 + STUCK_TERMINATING_SECONDS),
      id="deleted 10 s ago and still running: wait, and look again when it would be stuck"),
    P(RUNNING, C.with_pod(POD.running().deleting(since=NOW - STUCK_TERMINATING_SECONDS)), NOW,
      Expect("FAILED", STUCK, flags=RELEASED),
      id="stuck Terminating (unreachable node): the attempt is lost, one attempt only -> FAILED"),
    P(RUNNING, C.with_pod(POD.running().deleting(since=NOW - 200)).retrying(3), NOW,
      Expect("RUNNABLE", STUCK, flags=flags("enqueue", "retried", "release")),
      id="stuck Terminating with attempts left: retried like a lost host"),
]  # fmt: skip

LOST_ROWS = [
    P(STARTING, C, NOW, Expect("STARTING", flags=flags("ensure_pod")),
      id="STARTING, pod never seen (restart between writes): ensure the pod, idempotently"),
    P(STARTING, C.pod_seen(), NOW, Expect("FAILED", LOST, flags=RELEASED),
      id="STARTING, pod seen then gone: a lost attempt, one attempt only -> FAILED"),
    P(STARTING, C.pod_seen().retrying(2), NOW, Expect("RUNNABLE", LOST, flags=REQUEUED),
      id="AWS: instance failure is retried: lost attempt -> RUNNABLE"),
    P(RUNNING, C.pod_seen().retrying(2), NOW, Expect("RUNNABLE", HOST, flags=REQUEUED),
      id="RUNNING, pod gone from its node (node lost): Host EC2 (node n1) terminated., retried"),
    P(J.in_state("RUNNING", 2), C.pod_seen().retrying(2), NOW, Expect("FAILED", HOST, flags=RELEASED),
      id="lost on the last attempt: FAILED with the host reason"),
    P(RUNNING, C.pod_seen().retrying(5, exit_on(status="Host EC2*")), NOW,
      Expect("FAILED", HOST, flags=RELEASED), id="an EXIT rule on the statusReason matches a lost host"),
    P(RUNNING, C.pod_seen().retrying(5, exit_on(exit_code="*")), NOW,
      Expect("FAILED", HOST, flags=RELEASED), id="a lost pod has no exit code: onExitCode * matches it"),
    P(RUNNING, C.retrying(2), NOW, Expect("RUNNABLE", HOST, flags=REQUEUED),
      id="RUNNING, pod never seen by this operator (gone while it was down): lost, not re-created"),
    P(RUNNING, C.pod_seen().retrying(3, *SPOT), NOW, Expect("RUNNABLE", HOST, flags=REQUEUED),
      id="AWS Spot recipe: node lost while RUNNING -> RETRY on Host EC2*"),
    P(RUNNING, C.with_pod(POD.exited(1)).retrying(3, *SPOT), NOW, Expect("FAILED", ESSENTIAL, ("j-a1",), RELEASED),
      id="AWS Spot recipe: an ordinary failure -> EXIT"),
    P(RUNNING, C.with_pod(POD.disrupted("Evicted", since=STARTED)).retrying(3, *SPOT), NOW,
      Expect("RUNNABLE", HOST, ("j-a1",), REQUEUED), id="K8s: evicted while RUNNING: a host failure, retried"),
    P(RUNNING, C.with_pod(POD.disrupted("PreemptionByScheduler", since=STARTED)).retrying(3, *SPOT), NOW,
      Expect("RUNNABLE", HOST, ("j-a1",), REQUEUED), id="K8s: preempted (DisruptionTarget): a host failure"),
    P(RUNNING, C.with_pod(POD.disrupted("Shutdown", since=STARTED)), NOW,
      Expect("FAILED", HOST, ("j-a1",), RELEASED), id="K8s: node shutdown with no attempts left: FAILED, host"),
    P(STARTING, C.with_pod(POD.disrupted("Evicted")), NOW, Expect("RUNNABLE", HOST, ("j-a1",), REQUEUED),
      id="AWS: lost before RUNNING does not use an attempt: re-queued even with one attempt"),
    P(STARTING, C.with_pod(POD.disrupted("Evicted")).rules(exit_on(status="Host*")), NOW,
      Expect("RUNNABLE", HOST, ("j-a1",), REQUEUED), id="... and no evaluateOnExit rule applies to it"),
]  # fmt: skip

EXIT_ROWS = [
    P(RUNNING, C.with_pod(POD.exited(1)).retrying(3, exit_on(status="Essential*")), NOW,
      Expect("FAILED", ESSENTIAL, ("j-a1",), RELEASED),
      id="AWS: onStatusReason Essential* matches an ordinary failure -> EXIT"),
    P(RUNNING, C.with_pod(POD.exited(1)).retrying(3, exit_on(status="Host EC2*")), NOW,
      Expect("RUNNABLE", ESSENTIAL, ("j-a1",), REQUEUED), id="onStatusReason Host EC2* does not"),
    P(STARTING, C.with_pod(POD.init_failed("setup", 2)), NOW,
      Expect("FAILED", "Init container setup exited", ("j-a1",), RELEASED),
      id="an init container failed: its name in the statusReason"),
    P(RUNNING, C.with_pod(POD.sidecar_still_running(0)), NOW, Expect("SUCCEEDED", None, ("j-a1",), RELEASED),
      id="the essential container exited 0, a sidecar still runs: SUCCEEDED, pod stopped"),
    P(RUNNING, C.with_pod(POD.sidecar_still_running(0)).keeping_pods(), NOW,
      Expect("SUCCEEDED", None, ("j-a1",), RELEASED), id="... stopped even with keepPods=all"),
    P(RUNNING, C.with_pod(POD.sidecar_still_running(3)), NOW, Expect("FAILED", ESSENTIAL, ("j-a1",), RELEASED),
      id="the essential container exited 3, a sidecar still runs: FAILED"),
    P(STARTING, C.with_pod(POD.waiting("ImagePullBackOff", scheduled=NOW - 10)), NOW,
      Expect("STARTING", wake_at=NOW - 10 + 300), id="image pull back-off: wait up to 300 s"),
    P(STARTING, C.with_pod(POD.waiting("ImagePullBackOff", scheduled=NOW - 300)), NOW,
      Expect("FAILED", "CannotPullContainerError: ImagePullBackOff: boom", ("j-a1",), RELEASED),
      id="AWS: stuck in STARTING on an image pull: the job fails"),
    P(STARTING, C.with_pod(POD.waiting("InvalidImageName", scheduled=NOW)), NOW,
      Expect("FAILED", "CannotPullContainerError: InvalidImageName: boom", ("j-a1",), RELEASED),
      id="an invalid image name fails at once"),
    P(STARTING, C.with_pod(POD.waiting("CreateContainerConfigError", scheduled=NOW - 120)).retrying(2), NOW,
      Expect("RUNNABLE", "CannotCreateContainerError: CreateContainerConfigError: boom", ("j-a1",), REQUEUED),
      id="a missing Secret: the attempt fails and counts (retried while attempts remain)"),
    P(STARTING, C.with_pod(POD.waiting("ContainerCreating", scheduled=NOW - 1799)), NOW,
      Expect("STARTING", wake_at=NOW + 1), id="ContainerCreating (volume mount): wait up to 1800 s"),
    P(STARTING, C.with_pod(POD.waiting("PodInitializing", scheduled=NOW - 99_999)), NOW,
      Expect("STARTING"), id="init containers running: no bound"),
]  # fmt: skip

FAILED_ONLY = PodRetention.FAILED
NONE = PodRetention.NONE
# Issue 15: which ended attempts keep their pod (core.retention), per setting.
RETENTION_ROWS = [
    P(RUNNING, C.with_pod(POD.succeeded()).keeping_pods(FAILED_ONLY), NOW,
      Expect("SUCCEEDED", deleted=("j-a1",), flags=RELEASED), id="keepPods=failed: a succeeded attempt's pod goes"),
    P(RUNNING, C.with_pod(POD.exited(1)).keeping_pods(FAILED_ONLY), NOW,
      Expect("FAILED", ESSENTIAL, flags=RELEASED), id="keepPods=failed: a failed attempt's pod stays"),
    P(RUNNING, C.with_pod(POD.exited(1)).retrying(3).keeping_pods(FAILED_ONLY), NOW,
      Expect("RUNNABLE", ESSENTIAL, flags=REQUEUED), id="keepPods=failed: a retried attempt's pod stays"),
    P(RUNNING, C.with_pod(POD.exited(0, "Terminated")).keeping_pods(FAILED_ONLY), NOW,
      Expect("FAILED", ESSENTIAL, flags=RELEASED), id="keepPods=failed: a pod Failed with exit 0 is failed: stays"),
    P(RUNNING, C.with_pod(POD.exited(0).finished_at(STARTED + 61)).timeout(60).keeping_pods(FAILED_ONLY), NOW,
      Expect("FAILED", Reason.TIMEOUT, flags=RELEASED), id="keepPods=failed: a timed-out attempt that ended by itself stays"),
    P(RUNNING, C.with_pod(POD.killed()).timeout(60).keeping_pods(FAILED_ONLY), NOW,
      Expect("FAILED", Reason.TIMEOUT, ("j-a1",), RELEASED), id="keepPods=failed: a pod stopped by the operator is not kept"),
    P(RUNNING, C.with_pod(POD.sidecar_still_running(3)).keeping_pods(FAILED_ONLY), NOW,
      Expect("FAILED", ESSENTIAL, ("j-a1",), RELEASED), id="keepPods=failed: a pod still running a sidecar is stopped"),
    P(RUNNING, C.with_pod(POD.running()).timeout(60).keeping_pods(FAILED_ONLY), NOW,
      Expect("RUNNING", None, ("j-a1",), wake_at=NOW + STUCK_TERMINATING_SECONDS),
      id="keepPods=failed: a timed-out running pod is stopped"),
    P(RUNNING.terminated(), C.with_pod(POD.exited(1)).keeping_pods(FAILED_ONLY), NOW,
      Expect("FAILED", "stop now", flags=RELEASED), id="keepPods=failed: terminate racing a failed pod: kept"),
    P(RUNNING.terminated(), C.with_pod(POD.succeeded()).keeping_pods(FAILED_ONLY), NOW,
      Expect("FAILED", "stop now", flags=RELEASED), id="keepPods=failed: terminate racing a finished pod: the job FAILED, kept"),
    P(J.in_state("FAILED", 1, "boom"), C.with_pod(POD.exited(1)).keeping_pods(FAILED_ONLY), NOW,
      Expect("FAILED", "boom"), id="keepPods=failed: a FAILED job's finished pod is no leftover"),
    P(J.in_state("SUCCEEDED", 1), C.with_pod(POD.succeeded()).keeping_pods(FAILED_ONLY), NOW,
      Expect("SUCCEEDED", deleted=("j-a1",)), id="keepPods=failed: a SUCCEEDED job's pod is a leftover, deleted"),
    P(J.in_state("FAILED", 1, "boom"), C.with_pod(POD.running()).keeping_pods(FAILED_ONLY), NOW,
      Expect("FAILED", "boom", ("j-a1",)), id="keepPods=failed: a FAILED job's running pod is deleted"),
    P(J.in_state("RUNNABLE", 1, ESSENTIAL), C.with_pod(POD.exited(1)).keeping_pods(FAILED_ONLY), NOW,
      Expect("RUNNABLE", ESSENTIAL), id="keepPods=failed: the kept pod of the last attempt is not a live attempt"),
    P(RUNNING, C.with_pod(POD.exited(1)).keeping_pods(NONE), NOW,
      Expect("FAILED", ESSENTIAL, ("j-a1",), RELEASED), id="keepPods=none: a failed attempt's pod goes"),
    P(J.in_state("FAILED", 1, "boom"), C.with_pod(POD.exited(1)).keeping_pods(NONE), NOW,
      Expect("FAILED", "boom", ("j-a1",)), id="keepPods=none: a FAILED job's pod is a leftover, deleted"),
    P(RUNNING, C.with_pod(POD.succeeded()).keeping_pods(PodRetention.ALL), NOW,
      Expect("SUCCEEDED", flags=RELEASED), id="keepPods=all: a succeeded attempt's pod stays"),
]  # fmt: skip


ALL_ROWS = (
    TERMINAL_ROWS
    + TERMINATE_ROWS
    + CANCEL_ROWS
    + ADMISSION_ROWS
    + PENDING_ROWS
    + POD_ROWS
    + LOST_ROWS
    + EXIT_ROWS
    + RETENTION_ROWS
)


@pytest.mark.parametrize(("job", "ctx", "now", "expect"), ALL_ROWS)
def test_step(job: JobB, ctx: CtxB, now: float, expect: Expect) -> None:
    step = run(job, ctx, now)

    assert Expect.of(step) == expect


@pytest.mark.parametrize(("job", "ctx", "now", "expect"), ALL_ROWS)
def test_every_state_change_is_an_aws_transition(job: JobB, ctx: CtxB, now: float, expect: Expect) -> None:
    before = JobState(job.state or "SUBMITTED")
    after = run(job, ctx, now).status.status

    assert after is None or after == before or can_transition(before, JobState(after))


@pytest.mark.parametrize(("job", "ctx", "now", "expect"), ALL_ROWS)
def test_a_step_does_not_mutate_its_input(job: JobB, ctx: CtxB, now: float, expect: Expect) -> None:
    status = job.status()
    before = status.model_dump()

    advance(job.job(), status, ctx.ctx, now)

    assert status.model_dump() == before


@pytest.mark.parametrize(("job", "ctx", "now", "expect"), ALL_ROWS)
def test_a_step_is_idempotent_once_applied(job: JobB, ctx: CtxB, now: float, expect: Expect) -> None:
    """Stepping again with the same observations changes nothing more (no second event)."""
    first = run(job, ctx, now)
    if first.delete_pods or first.enqueue or first.ensure_pod:
        return  # the world changes in between (pod deleted, job dispatched)
    second = advance(job.job(), first.status, ctx.ctx, now)

    assert second.status == first.status
    assert second.events == []


# --- what a step records ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "ctx", "cancelled", "terminated"),
    [
        P(J.terminated(), C, True, None, id="AWS: terminate before STARTING is a cancel (new job)"),
        P(J.in_state("SUBMITTED").terminated(), C, True, None, id="terminate SUBMITTED: isCancelled"),
        P(J.in_state("PENDING").terminated(), C.waiting_for("a"), True, None,
          id="terminate PENDING: isCancelled"),
        P(J.in_state("RUNNABLE").terminated(), C, True, None, id="terminate RUNNABLE: isCancelled"),
        P(STARTING.terminated(), C, None, True, id="terminate STARTING: isTerminated"),
        P(RUNNING.terminated(), C.with_pod(POD.running()), None, True,
          id="terminate RUNNING: isTerminated"),
        P(J.in_state("RUNNABLE").cancelled(), C, True, None, id="cancel RUNNABLE: isCancelled"),
        P(J.in_state("PENDING").cancelled(), C, True, None,
          id="cancel PENDING: isCancelled"),
        P(RUNNING.cancelled(), C.with_pod(POD.running()), None, None,
          id="ignored cancel: neither"),
        P(RUNNING, C.with_pod(POD.running()).timeout(60), None, None,
          id="timeout: neither"),
    ],
)  # fmt: skip
def test_is_cancelled_and_is_terminated(
    job: JobB, ctx: CtxB, cancelled: bool | None, terminated: bool | None
) -> None:
    st = run(job, ctx).status

    assert (st.isCancelled, st.isTerminated) == (cancelled, terminated)


@pytest.mark.parametrize(
    ("job", "ctx", "now"),
    [
        P(J.terminated(), C, NOW, id="terminate"),
        P(J.in_state("RUNNABLE").cancelled(), C, NOW, id="cancel"),
        P(RUNNING, C.with_pod(POD.exited(1)), NOW, id="attempts exhausted"),
        P(RUNNING, C.with_pod(POD.killed(at=NOW)).timeout(60), NOW, id="timeout"),
        P(RUNNING, C.with_pod(POD.succeeded()), NOW, id="success"),
        P(J, C.without_queue(), NOW, id="missing queue"),
        P(J, C.render_problems("x"), NOW, id="invalid definition"),
        P(J.in_state("PENDING", reason=WAITING_A), C.dependency_failed(), NOW, id="dependency failed"),
        P(J, C.dependency_failed(), NOW, id="dependency failed at admission"),
    ],
)
def test_a_terminal_step_records_stopped_at_and_a_final_condition(job: JobB, ctx: CtxB, now: float) -> None:
    st = run(job, ctx, now).status
    final = [c for c in st.conditions or [] if c.type in ("Complete", "Failed")]

    assert st.stoppedAt == iso(now)
    assert len(final) == 1
    cond = final[0]
    assert cond.status == "True"
    assert cond.type == ("Complete" if st.status == "SUCCEEDED" else "Failed")
    assert st.status is not None
    assert cond.reason == st.status.capitalize()
    assert cond.message == (st.statusReason or st.status)
    assert cond.lastTransitionTime == iso(now)


def test_a_non_terminal_step_records_no_stopped_at_nor_final_condition() -> None:
    st = run(RUNNING, C.with_pod(POD.exited(1)).retrying(2)).status

    assert st.stoppedAt is None
    assert not [c for c in st.conditions or [] if c.type in ("Complete", "Failed")]


def test_terminate_clears_the_queue_position() -> None:
    st = run(J.in_state("RUNNABLE").at_queue_position(3).terminated(), C).status

    assert st.queuePosition is None


def test_admission_fills_created_at_job_id_and_the_pinned_revision() -> None:
    st = run(J, C.revision(4), T0 + 1).status

    assert (st.createdAt, st.jobId, st.jobDefinitionRevision) == (iso(T0), "uid-j", 4)


def test_created_at_falls_back_to_now_without_a_creation_timestamp() -> None:
    st = run(J.created_at(None), C, NOW).status

    assert st.createdAt == iso(NOW)


def test_a_job_without_creation_timestamp_still_fails_a_missing_queue_after_the_grace() -> None:
    job = J.created_at(None)
    first = run(job, C.without_queue(), NOW)
    assert first.status.status is None
    assert first.wake_at == NOW + GRACE

    later = advance(job.job(), first.status, C.without_queue().ctx, NOW + GRACE)

    assert (later.status.status, later.status.statusReason) == ("FAILED", "JobQueue q does not exist")


def test_a_grace_wait_records_nothing_visible_but_the_submission() -> None:
    step = run(J, C.without_queue(), T0 + 1)

    assert step.events == []
    assert step.status.jobDefinitionRevision is None


@pytest.mark.parametrize(
    ("seen", "created"),
    [
        P(T0 + 0.25, iso(T0 + 0.25), id="seen within its creation second: the operator's clock (ms)"),
        P(T0 + 5, iso(T0), id="seen late (operator restart): the creationTimestamp"),
    ],
)
def test_created_at_has_millisecond_resolution_when_seen_at_once(seen: float, created: str) -> None:
    assert run(J, C, seen).status.createdAt == created


def test_jobs_created_within_one_second_keep_their_order_in_created_at() -> None:
    first = run(a_job("a"), C, T0 + 0.100).status.createdAt
    second = run(a_job("b"), C, T0 + 0.200).status.createdAt

    assert first is not None and second is not None and first < second


def test_starting_to_succeeded_between_observations_still_records_started_at() -> None:
    # The watch saw Pending, then Succeeded: the container's terminated.startedAt is the start.
    pod = PodB(replace(POD.succeeded().obs, running_since=T0 + 200, finished_at=T0 + 230))
    st = run(STARTING, C.with_pod(pod), NOW).status
    assert st.attempts is not None

    assert (st.startedAt, st.attempts[-1].startedAt) == (iso(T0 + 200), iso(T0 + 200))
    assert (st.stoppedAt, st.attempts[-1].stoppedAt) == (iso(T0 + 230), iso(T0 + 230))


def test_stopped_at_is_the_container_s_finish_time_not_when_it_was_noticed() -> None:
    st = run(RUNNING, C.with_pod(POD.exited(1).finished_at(STARTED + 7)), NOW).status
    assert st.attempts is not None

    assert (st.stoppedAt, st.attempts[-1].stoppedAt) == (iso(STARTED + 7), iso(STARTED + 7))


def test_a_finish_seen_within_its_second_gets_milliseconds() -> None:
    st = run(RUNNING, C.with_pod(POD.exited(1).finished_at(STARTED + 7)), STARTED + 7.456).status

    assert st.stoppedAt == iso(STARTED + 7.456)


def test_an_attempt_never_starts_before_the_previous_one_stopped() -> None:
    job = J.in_state("STARTING", attempts=2)
    status = job.status()
    assert status.attempts is not None
    status.attempts[0].stoppedAt = iso(T0 + 20.5)  # attempt 1 stopped at .5 s
    pod = PodB(replace(a_pod("j-a2").running().obs, running_since=T0 + 20))  # whole seconds
    step = advance(job.job(), status, C.with_pod(pod).retrying(3).ctx, T0 + 30)

    assert step.status.attempts is not None
    assert step.status.attempts[-1].startedAt == iso(T0 + 20.5)


def test_a_multi_container_attempt_records_each_container_s_exit() -> None:
    pod = PodB(
        replace(
            POD.exited(3).obs,
            containers=(ContainerExit("main", 3, "Error"), ContainerExit("log", 0, "Completed")),
        )
    )
    st = run(RUNNING, C.with_pod(pod)).status
    assert st.attempts is not None
    containers = st.attempts[-1].containers or []

    assert [(c.name, c.exitCode, c.reason) for c in containers] == [
        ("main", 3, "Error"),
        ("log", 0, "Completed"),
    ]


def _uncounted_losses(n: int) -> BatchJobStatus:
    """STARTING on attempt n+1 after n attempts whose host went away before they ran."""
    status = J.in_state("STARTING", attempts=n + 1).status()
    assert status.attempts is not None
    for a in status.attempts[:-1]:
        a.startedAt, a.exitCode, a.reason, a.statusReason = None, None, None, HOST
    return status


@pytest.mark.parametrize(
    ("earlier", "state"),
    [
        P(0, "RUNNABLE", id="first loss before RUNNING: re-queued without using the one attempt"),
        P(MAX_UNCOUNTED_ATTEMPTS - 1, "RUNNABLE", id="still within the bound"),
        P(MAX_UNCOUNTED_ATTEMPTS, "FAILED", id="bound reached: this loss counts, attempts exhausted"),
    ],
)
def test_losses_before_running_are_free_up_to_a_bound(earlier: int, state: str) -> None:
    status = _uncounted_losses(earlier)
    pod = a_pod(f"j-a{earlier + 1}").disrupted("Evicted")
    step = advance(J.job(), status, C.with_pod(pod).ctx, NOW)

    assert (step.status.status, step.status.statusReason) == (state, HOST)


def test_uncounted_losses_do_not_use_up_attempts_for_a_later_failure() -> None:
    # Two losses before RUNNING, then attempt 3 runs and exits 1 with attempts=2: it is the
    # first counted attempt, so it is retried.
    status = _uncounted_losses(2)
    status.attempts[-1].startedAt = iso(STARTED)  # type: ignore[index]
    status.status = "RUNNING"
    step = advance(J.job(), status, C.with_pod(a_pod("j-a3").exited(1)).retrying(2).ctx, NOW)

    assert step.status.status == "RUNNABLE"


def test_starting_to_running_records_started_at_and_node() -> None:
    step = run(STARTING, C.with_pod(POD.running(since=T0 + 200, node="n7")))
    st = step.status
    assert st.attempts is not None
    attempt = st.attempts[-1]

    assert (st.startedAt, attempt.startedAt, attempt.nodeName) == (iso(T0 + 200), iso(T0 + 200), "n7")
    assert [(e.type, e.reason) for e in step.events] == [("Normal", "Running")]


def test_started_at_is_never_before_created_at() -> None:
    """createdAt has milliseconds; a container start seen late is whole seconds, and can fall in
    the job's creation second before createdAt. AWS: createdAt <= startedAt <= stoppedAt."""
    st = run(STARTING, C.with_pod(POD.running(since=T0 - 1)), NOW).status

    assert st.createdAt == iso(T0)
    assert st.startedAt == iso(T0)


def test_running_since_unknown_falls_back_to_now() -> None:
    st = run(STARTING, C.with_pod(POD.running(since=None)), NOW).status

    assert st.startedAt == iso(NOW)


def test_job_started_at_is_the_first_attempt_s() -> None:
    """The job's startedAt is when it first ran; each attempt keeps its own."""
    st = run(J.in_state("STARTING", 2), C.with_pod(a_pod("j-a2").running(since=T0 + 300))).status
    assert st.attempts is not None

    assert st.startedAt == iso(T0 + 10)
    assert st.attempts[-1].startedAt == iso(T0 + 300)


def test_a_failed_attempt_is_recorded_and_earlier_ones_untouched() -> None:
    job = J.in_state("RUNNING", 2)
    st = run(job, C.with_pod(a_pod("j-a2").exited(137, "OOMKilled")).retrying(3)).status
    assert st.attempts is not None
    first, second = st.attempts

    assert first == job.status().attempts[0]  # type: ignore[index]
    assert second.model_dump(exclude_none=True) == {
        "attempt": 2,
        "podName": "j-a2",
        "computeEnvironment": "ce",
        "nodeName": "n1",
        "exitCode": 137,
        "reason": "OOMKilled",
        "statusReason": ESSENTIAL,
        "startedAt": iso(STARTED),
        "stoppedAt": iso(NOW),
        "logRetained": False,  # the context's default keepPods=none
    }


def test_a_successful_attempt_has_no_status_reason() -> None:
    st = run(RUNNING, C.with_pod(POD.succeeded())).status
    assert st.attempts is not None

    assert (st.attempts[-1].exitCode, st.attempts[-1].reason, st.attempts[-1].statusReason) == (
        0,
        "Completed",
        None,
    )
    assert st.attempts[-1].stoppedAt == iso(NOW)
    assert st.statusReason is None


def test_a_timed_out_attempt_records_the_timeout_reason() -> None:
    st = run(RUNNING, C.with_pod(POD.killed(at=NOW)).timeout(60)).status
    assert st.attempts is not None

    assert (st.attempts[-1].statusReason, st.attempts[-1].stoppedAt) == (Reason.TIMEOUT, iso(NOW))


def test_a_lost_attempt_records_the_lost_reason_and_no_exit() -> None:
    st = run(RUNNING, C.pod_seen().retrying(2)).status
    assert st.attempts is not None
    attempt = st.attempts[-1]

    assert (attempt.exitCode, attempt.reason, attempt.statusReason) == (None, None, HOST)


@pytest.mark.parametrize(
    ("job", "ctx"),
    [
        P(RUNNING.terminated("stop now"), C.with_pod(POD.running()), id="RUNNING"),
        P(STARTING.terminated("stop now"), C, id="STARTING without pod"),
    ],
)
def test_a_stopped_attempt_records_the_user_s_reason(job: JobB, ctx: CtxB) -> None:
    st = run(job, ctx).status
    assert st.attempts is not None

    assert (st.attempts[-1].statusReason, st.attempts[-1].stoppedAt) == ("stop now", iso(NOW))


def test_stopping_between_retries_leaves_the_finished_attempt_alone() -> None:
    job = J.in_state("RUNNABLE", 1, ESSENTIAL).cancelled()
    st = run(job, C).status

    assert st.attempts == job.status().attempts


@pytest.mark.parametrize(
    ("job", "ctx", "events"),
    [
        P(J, C, [("Normal", "Runnable", "RUNNABLE")], id="admitted"),
        P(J, C.waiting_for("a"), [("Normal", "Pending", f"PENDING: {WAITING_A}")], id="waiting"),
        P(J.in_state("PENDING", reason=Reason.dependencies_outstanding(("a", "b"))), C.waiting_for("a"), [],
          id="a new PENDING reason is not an event"),
        P(J, C.without_queue(), [("Warning", "Failed", "FAILED: JobQueue q does not exist")], id="invalid"),
        P(J.in_state("RUNNABLE").cancelled(), C, [("Warning", "Failed", "FAILED: not needed")],
          id="cancelled"),
        P(RUNNING, C.with_pod(POD.exited(1)).retrying(2),
          [("Warning", "Retrying", f"attempt 1 failed ({ESSENTIAL}); retrying")], id="retrying"),
        P(RUNNING, C.with_pod(POD.succeeded()), [("Normal", "Succeeded", "SUCCEEDED")],
          id="succeeded"),
        P(RUNNING, C.with_pod(POD.killed()).timeout(60),
          [("Warning", "Failed", f"FAILED: {Reason.TIMEOUT}")], id="timed out"),
        P(RUNNING.cancelled(), C.with_pod(POD.running()),
          [("Warning", "CancelIgnored", "cancel has no effect in RUNNING; use spec.terminate")],
          id="AWS: ignored cancel is reported (the API call still succeeds)"),
        P(RUNNING.cancelled().warned_cancel_ignored(), C.with_pod(POD.running()), [],
          id="... only once"),
    ],
)  # fmt: skip
def test_events(job: JobB, ctx: CtxB, events: list[tuple[str, str, str]]) -> None:
    step = run(job, ctx)

    assert [(e.type, e.reason, e.message) for e in step.events] == events


def test_an_ignored_cancel_sets_the_cancel_ignored_condition() -> None:
    st = run(STARTING.cancelled(), C.with_pod(POD.pending())).status
    cond = {c.type: c for c in st.conditions or []}["CancelIgnored"]

    assert (cond.status, cond.reason, cond.lastTransitionTime) == ("True", "JobAlreadyStarted", iso(NOW))
    assert cond.message == "spec.cancel has no effect once a job is STARTING; set spec.terminate"


def test_conditions_are_kept_by_type() -> None:
    job = RUNNING.cancelled().warned_cancel_ignored()
    st = run(job, C.with_pod(POD.succeeded())).status

    assert sorted(c.type for c in st.conditions or []) == ["CancelIgnored", "Complete"]


# --- start_attempt and a whole life ------------------------------------------------------------


def test_start_attempt_appends_the_next_attempt() -> None:
    status = J.in_state("RUNNABLE", 1, ESSENTIAL).at_queue_position(0).status()
    step = start_attempt(status, pod_name="j-a2", compute_environment="ce2", now=NOW)
    st = step.status
    assert st.attempts is not None

    assert (st.status, st.statusReason, st.computeEnvironment, st.queuePosition) == (
        "STARTING",
        None,
        "ce2",
        None,
    )
    assert [a.attempt for a in st.attempts] == [1, 2]
    assert st.attempts[-1].model_dump(exclude_none=True) == {
        "attempt": 2,
        "podName": "j-a2",
        "computeEnvironment": "ce2",
        "logStreamName": "pod/j-a2",
    }
    assert [(e.type, e.reason, e.message) for e in step.events] == [
        ("Normal", "Starting", "attempt 2: pod j-a2 in ce2")
    ]
    assert status.status == "RUNNABLE" and len(status.attempts or []) == 1  # input untouched


@pytest.mark.parametrize(
    ("job", "expected"),
    [P(J, 1, id="new job: attempt 1"), P(J.in_state("RUNNABLE", 2), 3, id="after two attempts: 3")],
)
def test_next_pod_name_attempt(job: JobB, expected: int) -> None:
    assert next_pod_name_attempt(job.status()) == expected


def test_a_whole_life_retry_then_success() -> None:
    """SUBMITTED -> RUNNABLE -> STARTING -> RUNNING -> RUNNABLE -> STARTING -> RUNNING -> SUCCEEDED."""
    job = J.job()
    ctx = C.retrying(3)
    seen: list[str | None] = []

    st = advance(job, BatchJobStatus(), ctx.ctx, T0).status
    seen.append(st.status)
    for n, exit_code in ((1, 1), (2, 0)):
        pod = a_pod(f"j-a{n}")
        st = start_attempt(st, pod_name=pod.obs.name, compute_environment="ce", now=T0 + 10 * n).status
        seen.append(st.status)
        st = advance(job, st, ctx.with_pod(pod.running(since=T0 + 10 * n + 1)).ctx, T0 + 10 * n + 2).status
        seen.append(st.status)
        done = pod.succeeded() if exit_code == 0 else pod.exited(exit_code)
        st = advance(job, st, ctx.with_pod(done).ctx, T0 + 10 * n + 5).status
        seen.append(st.status)

    assert seen == ["RUNNABLE", "STARTING", "RUNNING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]
    assert [(a.attempt, a.exitCode, a.statusReason) for a in st.attempts or []] == [
        (1, 1, ESSENTIAL),
        (2, 0, None),
    ]
    assert (st.startedAt, st.stoppedAt) == (iso(T0 + 11), iso(T0 + 25))


# --- time helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        P(None, None, id="absent"),
        P("", None, id="empty"),
        P("2023-11-14T22:13:20Z", T0, id="Z suffix"),
        P("2023-11-14T23:13:20+01:00", T0, id="offset"),
        P("2023-11-14T22:13:20.5Z", T0 + 0.5, id="fraction"),
    ],
)
def test_epoch(text: str | None, expected: float | None) -> None:
    assert epoch(text) == expected


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        P(T0, "2023-11-14T22:13:20.000Z", id="now-ish"),
        P(0.0, "1970-01-01T00:00:00.000Z", id="the epoch"),
        P(T0 + 0.9, "2023-11-14T22:13:20.900Z", id="milliseconds are kept (AWS reports ms)"),
        P(T0 + 0.0004, "2023-11-14T22:13:20.000Z", id="below a millisecond is truncated"),
    ],
)
def test_iso_is_rfc3339_utc_with_milliseconds(ts: float, text: str) -> None:
    assert iso(ts) == text
    assert epoch(text) == pytest.approx(ts, abs=0.001)


def test_iso_strings_sort_like_the_times_they_name() -> None:
    times = [T0, T0 + 0.5, T0 + 1, T0 + 1.001, T0 + 60]
    assert sorted(iso(t) for t in reversed(times)) == [iso(t) for t in times]


# --- digest §2.3, cancel vs terminate by state, as one table ----------------------------------

# state -> (after CancelJob, after TerminateJob); "=" is a no-op.
CANCEL_VS_TERMINATE = {
    "SUBMITTED": ("FAILED", "FAILED"),
    "PENDING": ("FAILED", "FAILED"),
    "RUNNABLE": ("FAILED", "FAILED"),
    "STARTING": ("=", "FAILED"),
    "RUNNING": ("=", "FAILED"),
    "SUCCEEDED": ("=", "="),
    "FAILED": ("=", "="),
}


@pytest.mark.parametrize(
    ("state", "request_", "expected"),
    [
        P(state, kind, outcomes[i], id=f"{kind} in {state} -> {outcomes[i]}")
        for state, outcomes in CANCEL_VS_TERMINATE.items()
        for i, kind in enumerate(("cancel", "terminate"))
    ],
)
def test_cancel_vs_terminate_by_state(state: str, request_: str, expected: str) -> None:
    job = J.in_state(state, reason="before")
    job = job.cancelled("why") if request_ == "cancel" else job.terminated("why")
    pod = POD.running() if state == "RUNNING" else POD.pending()
    ctx = C.with_pod(pod) if state in ATTEMPT_STATES else C

    st = run(job, ctx).status

    if expected == "=":
        assert (st.status, st.statusReason) == (state, "before")
    else:
        assert (st.status, st.statusReason) == (expected, "why")


@pytest.mark.parametrize(
    ("state", "allowed", "namespace", "expected"),
    [
        P("ENABLED", None, "team-a", None, id="enabled, every namespace: accepted"),
        P(None, None, "team-a", None, id="state unset means ENABLED"),
        P("DISABLED", None, "team-a", "JobQueue q is DISABLED and accepts no new jobs",
          id="AWS: a DISABLED queue accepts no new jobs"),
        P("ENABLED", ["team-a"], "team-a", None, id="namespace allowed"),
        P("ENABLED", ["team-a"], "team-b", "JobQueue q does not accept jobs from namespace team-b",
          id="namespace not in allowedNamespaces"),
        P("ENABLED", [], "team-b", None, id="an empty allowedNamespaces allows all"),
    ],
)  # fmt: skip
def test_queue_refusal(
    state: str | None, allowed: list[str] | None, namespace: str, expected: str | None
) -> None:
    assert queue_refusal("q", state, allowed, namespace) == expected


def test_admission_records_the_effective_priority_retry_strategy_timeout_and_parameters() -> None:
    from batchyard.api.jobdefinition import JobDefinitionSpec
    from batchyard.core.effective import effective

    definition = JobDefinitionSpec.model_validate(
        {
            "type": "container",
            "containerProperties": {"image": "busybox"},
            "parameters": {"in": "a", "out": "b"},
            "schedulingPriority": 5,
            "retryStrategy": {"attempts": 2},
            "timeout": {"attemptDurationSeconds": 600},
        }
    )
    job = BatchJob.from_body(
        {
            "metadata": {"name": "j", "namespace": "ns", "uid": "u"},
            "spec": {
                "jobQueue": "q",
                "jobDefinition": "d",
                "parameters": {"out": "c"},
                "schedulingPriorityOverride": 9,
                "retryStrategy": {"attempts": 4},
            },
        }
    )
    eff = effective(job.spec, definition)
    ctx = C._definition(effective=eff).ctx
    st = advance(job, BatchJobStatus(), ctx, NOW).status

    assert (st.schedulingPriority, st.parameters) == (9, {"in": "a", "out": "c"})
    assert (
        st.retryStrategy is not None and st.retryStrategy.attempts == 4
    )  # the job's replaces the definition's
    assert st.timeout is not None and st.timeout.attemptDurationSeconds == 600


# --- a dependency that is never submitted (issue 11 item 12) ------------------------------------


def _not_submitted(name: str) -> CtxB:
    return C._with(dependencies=deps.Wait((name,), Reason.dependency_not_submitted(name), (name,)))


@pytest.mark.parametrize(
    ("now", "expect"),
    [
        P(T0 + 1, Expect("PENDING", "Waiting for dependency later to be submitted",
                         wake_at=T0 + DEPENDENCY_SUBMIT_GRACE_SECONDS),
          id="waits, with a timer at the bound"),
        P(T0 + DEPENDENCY_SUBMIT_GRACE_SECONDS, Expect("FAILED", "Dependent Job not found: later"),
          id="at the bound: FAILED naming the missing dependency"),
    ],
)  # fmt: skip
def test_a_dependency_never_submitted_fails_after_the_documented_bound(now: float, expect: Expect) -> None:
    job = J.in_state("PENDING", reason="Waiting for dependency later to be submitted")
    assert Expect.of(run(job, _not_submitted("later"), now)) == expect


def test_an_outstanding_dependency_that_exists_is_waited_for_without_bound() -> None:
    job = J.in_state("PENDING", reason=WAITING_A)
    assert Expect.of(run(job, C.waiting_for("a"), T0 + 10 * DEPENDENCY_SUBMIT_GRACE_SECONDS)) == Expect(
        "PENDING", WAITING_A
    )


@pytest.mark.parametrize(
    ("policy", "share", "expected"),
    [
        P(None, None, None, id="FIFO queue, no shareIdentifier: admitted"),
        P("fair", "teamA", None, id="fair-share queue, shareIdentifier: admitted"),
        P(None, "teamA",
          "shareIdentifier teamA is not allowed: JobQueue q has no scheduling policy (AWS SubmitJob: "
          "don't specify shareIdentifier if the job queue doesn't have one)",
          id="AWS: shareIdentifier on a queue without a scheduling policy is refused"),
        P("fair", None,
          "shareIdentifier is required: JobQueue q has the scheduling policy fair (AWS SubmitJob: if the "
          "job queue has a scheduling policy, shareIdentifier must be specified)",
          id="AWS: a fair-share queue refuses a job without a shareIdentifier"),
    ],
)  # fmt: skip
def test_share_identifier_admission(policy: str | None, share: str | None, expected: str | None) -> None:
    got = queue_refusal("q", "ENABLED", None, "ns", scheduling_policy=policy, share_identifier=share)
    assert got == expected


def test_a_refused_share_identifier_fails_the_job_at_admission() -> None:
    reason = queue_refusal("q", None, None, "ns", scheduling_policy=None, share_identifier="A")
    assert reason is not None
    assert Expect.of(run(J, C.queue_refusing(reason))) == Expect("FAILED", reason)


def test_an_impossible_consumable_requirement_fails_the_new_job_naming_the_resource() -> None:
    problem = "consumable resource nope does not exist"
    ctx = C._with(consumable_problems=(problem,))
    # Within the grace the resource may still arrive on its watch stream: wait.
    assert Expect.of(run(J, ctx, T0 + 1)).state is None
    assert Expect.of(run(J, ctx, NOW)) == Expect(
        "FAILED", f"Invalid consumable resource requirement: {problem}"
    )


def test_a_submission_over_30_kib_fails_naming_aws_s_limit() -> None:
    job = J.job()
    big = job.model_copy(
        update={"spec": job.spec.model_copy(update={"parameters": {f"p{i}": "x" * 200 for i in range(160)}})}
    )
    step = advance(big, J.status(), C.ctx, NOW)
    assert step.status.status == "FAILED"
    assert (step.status.statusReason or "").startswith("Job payload of ")
    assert "over the maximum job payload size of 30 KiB" in (step.status.statusReason or "")
    small = job.model_copy(update={"spec": job.spec.model_copy(update={"parameters": {"p": "x" * 100}})})
    assert advance(small, J.status(), C.ctx, NOW).status.status == "RUNNABLE"


@pytest.mark.parametrize(
    ("pod", "ctx", "retained", "message"),
    [
        (POD.exited(1), C.keeping_pods(FAILED_ONLY), True, "boom"),
        (POD.exited(1), C.keeping_pods(NONE), False, "boom"),
        (POD.succeeded(), C.keeping_pods(FAILED_ONLY), False, None),
        (POD.succeeded(), C.keeping_pods(PodRetention.ALL), True, None),
        (POD.exited(1), C.retrying(2).keeping_pods(FAILED_ONLY), True, "boom"),
    ],
    ids=[
        "failed, kept",
        "failed, none kept",
        "succeeded: no message, not kept",
        "all: kept",
        "retried: kept",
    ],
)
def test_an_ended_attempt_records_where_its_log_is_and_its_termination_message(
    pod: PodB, ctx: CtxB, retained: bool, message: str | None
) -> None:
    """Issue 15: logStreamName from the start, logRetained and a failed attempt's message at the end."""
    said = PodB(replace(pod.obs, message="  boom\n"))
    st = run(RUNNING, ctx.with_pod(said)).status
    assert st.attempts is not None
    attempt = st.attempts[0]
    assert (attempt.logRetained, attempt.terminationMessage) == (retained, message)


def test_a_new_attempt_names_its_log_stream() -> None:
    step = start_attempt(
        BatchJobStatus(status="RUNNABLE"), pod_name="j-a1", compute_environment="ce", now=NOW
    )
    assert step.status.attempts is not None
    assert step.status.attempts[0].logStreamName == "pod/j-a1"


@pytest.mark.parametrize(
    ("message", "kept"),
    [
        (None, None),
        ("", None),
        ("  \n ", None),
        ("oom at step 3\n", "oom at step 3"),
        ("x" * MAX_TERMINATION_MESSAGE, "x" * MAX_TERMINATION_MESSAGE),
        ("head" + "y" * MAX_TERMINATION_MESSAGE, "..." + "y" * (MAX_TERMINATION_MESSAGE - 3)),
    ],
    ids=["none", "empty", "blank", "one line", "at the bound", "over the bound: the end is kept"],
)
def test_termination_message_is_bounded_and_keeps_the_end(message: str | None, kept: str | None) -> None:
    assert termination_message(message) == kept
