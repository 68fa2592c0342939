"""One array job's step: the parent, its children, and what the scheduler learns of them.

Why this exists: an AWS array job's rules -- the parent goes PENDING when its children spawn,
cancel and terminate cascade to the children, a child whose SEQUENTIAL or N_TO_N dependency
failed fails, which child exits are kept, when the parent ends and how -- are decisions, so they
live in the pure core next to the single-job lifecycle (``core.lifecycle``), not in the loop.
The loop (``adapters.arrayjobs``) supplies what is observed (``ArrayHost``: the parent's
context, a child's pod, the scheduler's view of a child) and executes the effects left on the
parent's ``lifecycle.Step`` and on ``ArrayBook``.

A parent's children are an ``core.arrays.ArrayChildren`` (index ranges per state), restored
from and written back to ``status.arrayProperties.children``, so no Kubernetes object exists
per child. Each child that has something to do (its pod changed, a dependency finished, a timer
fired) is stepped through the same ``core.lifecycle.advance`` as a single job, on a small
per-child status built for the step, so retries, timeouts and exit handling are the same code.

The scheduler sees each RUNNABLE child as its own job, keyed ``JobRef(namespace, name, index)``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from batchyard.api.batchjob import (
    ArrayChildrenDetail,
    ArrayPropertiesDetail,
    AttemptDetail,
    BatchJob,
    BatchJobStatus,
    ChildExitDetail,
    JobStateCounts,
)
from batchyard.core import deps, lifecycle
from batchyard.core.arrays import ArrayChildren, progress_text
from batchyard.core.jobref import JobRef
from batchyard.core.jobstate import POD_STATES, TERMINAL_STATES, JobState, StopKind, on_cancel, on_terminate
from batchyard.core.retention import PodRetention
from batchyard.core.scheduler import JobView, Scheduler

CHILD_FAILED_REASON = "{failed} of {size} child jobs failed"


# --- status encoding -------------------------------------------------------------------------


def children_from_status(status: BatchJobStatus) -> ArrayChildren | None:
    """The children recorded in a parent's status (None before they were spawned)."""
    ap = status.arrayProperties
    if ap is None or ap.children is None or not ap.size:
        return None
    detail = ap.children
    return ArrayChildren.from_status(
        {
            "size": ap.size,
            "states": detail.states or {},
            "attempts": detail.attempts or {},
            "lastExits": {
                k: [v.exitCode, v.reason, v.statusReason] for k, v in (detail.lastExits or {}).items()
            },
            "lastExitsOmitted": detail.lastExitsOmitted or 0,
            "times": detail.times or {},
            "timesOmitted": detail.timesOmitted or 0,
        }
    )


def array_detail(children: ArrayChildren) -> ArrayPropertiesDetail:
    """The children as ``status.arrayProperties`` shows them."""
    raw = children.to_status()
    exits = raw.get("lastExits") or {}
    assert isinstance(exits, dict)
    return ArrayPropertiesDetail(
        size=children.size,
        statusSummary=JobStateCounts(**children.status_summary()),
        progress=progress_text(children.status_summary(), children.size),
        children=ArrayChildrenDetail(
            states=raw.get("states"),  # type: ignore[arg-type,unused-ignore]
            attempts=raw.get("attempts"),  # type: ignore[arg-type,unused-ignore]
            lastExits={
                k: ChildExitDetail(exitCode=v[0], reason=v[1], statusReason=v[2]) for k, v in exits.items()
            }
            or None,
            lastExitsOmitted=children.exits_omitted or None,
            times=raw.get("times") or None,  # type: ignore[arg-type,unused-ignore]
            timesOmitted=children.times_omitted or None,
        ),
    )


# --- what the step reads and tells -----------------------------------------------------------


class ArrayRecord(Protocol):
    """What the step reads and updates of one array parent (adapters.state.JobEntry)."""

    job: BatchJob
    status: BatchJobStatus
    children: ArrayChildren | None
    dirty_children: set[int]  # children to step this time
    timed_children: set[int]  # running children with a timeout (stepped again at wake_at)
    wake_at: float | None
    pods_seen: set[str]


@dataclass(frozen=True, slots=True)
class ChildPod:
    """An observed pod of one of this parent's children."""

    obs: lifecycle.PodObs
    compute_environment: str | None  # the pod's compute-environment label


class ArrayHost(Protocol):
    """What the loop observes for one parent (adapters.arrayjobs)."""

    pod_retention: PodRetention  # which ended attempts keep their pod (core.retention)

    def context(
        self,
        *,
        pod: lifecycle.PodObs | None = None,
        pod_seen: bool | None = None,
        dependencies: deps.Resolution | None = None,
    ) -> lifecycle.Context: ...

    def child_view(self, child: JobRef, *, retried: bool) -> JobView | None: ...

    def child_pod(self, pod_name: str) -> ChildPod | None: ...

    def facts(self) -> deps.JobFacts: ...

    def lookup(self) -> deps.Lookup: ...


class ArrayBook(Protocol):
    """What the loop remembers across cycles (adapters.bookkeeping.Bookkeeping)."""

    scheduler: Scheduler
    held: set[JobRef]
    restored_parents: set[JobRef]
    pending_child_pod_creates: list[JobRef]

    def release(self, ref: JobRef, now: float, *, keep: bool = False) -> None: ...

    def wake_dependents(self, ref: JobRef) -> None: ...

    def wake_child_dependents(self, child: JobRef) -> None: ...


# --- the step --------------------------------------------------------------------------------


class PodNamer(Protocol):
    """render.pod_name: the deterministic name of an attempt's pod."""

    def __call__(
        self, job_name: str, attempt: int, array_index: int | None, node_index: int | None = None
    ) -> str: ...


class ArraySteps:
    """Steps array parents; keeps the parents' request-free copies between cycles."""

    def __init__(self, book: ArrayBook, pod_name: PodNamer) -> None:
        self.book = book
        self.pod_name = pod_name
        self._bare: dict[JobRef, BatchJob] = {}

    def forget_except(self, live: Collection[JobRef]) -> None:
        """Drop cached copies of parents that are gone."""
        self._bare = {k: v for k, v in self._bare.items() if k in live}

    def child_pod_name(self, record: ArrayRecord, index: int) -> str:
        assert record.children is not None
        return self.pod_name(record.job.metadata.name or "", record.children.attempt_of(index), index)

    def step(self, ref: JobRef, record: ArrayRecord, host: ArrayHost, now: float) -> lifecycle.Step:
        """One step of array parent ``ref``: admission, requests, the dirty children, the fold."""
        job = record.job
        assert job.spec.arrayProperties is not None
        size = job.spec.arrayProperties.size
        if record.children is None:
            record.children = children_from_status(record.status)
        children = record.children
        status = record.status
        state = JobState(status.status) if status.status else None
        if state is not None and state.is_terminal:
            return lifecycle.Step(status=status.model_copy(deep=True), now=now)
        if children is None:
            # Admission as for any job: queue, definition, whole-job dependencies.
            step = lifecycle.advance(job, status, host.context(), now)
            if not step.enqueue:
                return step  # waiting (PENDING / grace) or FAILED
            step.enqueue = False
            children = record.children = ArrayChildren.new(size)
            # AWS: "Array job parents are updated to PENDING when any child job is updated to
            # RUNNABLE and remain in PENDING status while child jobs are running."
            step.status.status = JobState.PENDING.value
            step.status.statusReason = None
            step.events[-1] = lifecycle.Event("Normal", "Pending", f"array of {size} child jobs spawned")
            record.dirty_children = set(range(size))
            self.book.restored_parents.add(ref)  # the scheduler now learns its children as they come
        else:
            step = lifecycle.Step(status=status.model_copy(deep=True), now=now)
            if ref not in self.book.restored_parents:
                self._restore(ref, record, host, now)

        self._parent_request(ref, record, step, now)
        self._child_requests(ref, record, step, now)
        dirty, record.dirty_children = record.dirty_children, set()
        for index in sorted(dirty):
            self._step_child(ref, record, host, index, step, now)
        self.fold(ref, record, step, now)
        return step

    def fold(self, ref: JobRef, record: ArrayRecord, step: lifecycle.Step, now: float) -> None:
        """Fold the children into the parent's status and state (AWS "Array jobs": the parent
        FAILS once all children are done if any failed, else SUCCEEDS)."""
        children = record.children
        if children is None:
            return
        st = step.status
        st.arrayProperties = array_detail(children)
        current = JobState(st.status) if st.status else JobState.PENDING
        parent = children.parent_state(current)
        if parent is not current and parent.is_terminal:
            st.stoppedAt = lifecycle.iso(now)
            failed = len(children.in_state(JobState.FAILED))
            if parent is JobState.FAILED:
                reason = st.statusReason if (st.isCancelled or st.isTerminated) else None
                reason = reason or CHILD_FAILED_REASON.format(failed=failed, size=children.size)
            else:
                reason = None
            lifecycle.transition(
                step, parent, reason, "Warning" if parent is JobState.FAILED else "Normal", array_parent=True
            )
            self.book.wake_dependents(ref)
        elif parent is not current:
            st.status = parent.value

    def _restore(self, ref: JobRef, record: ArrayRecord, host: ArrayHost, now: float) -> None:
        """First sight after a restart: hand RUNNABLE and running children to the scheduler."""
        children = record.children
        assert children is not None
        sched = self.book.scheduler
        # RUNNABLE children in one hand-over per array (a million of them after a restart).
        runnable = []
        for index in children.in_state(JobState.RUNNABLE):
            child = ref.child(index)
            view = host.child_view(child, retried=children.attempt_of(index) > 1)
            if view is not None:
                runnable.append(view)
                self.book.held.add(child)
        sched.add_runnables(runnable, now)
        for state in (JobState.STARTING, JobState.RUNNING):
            for index in children.in_state(state):
                child = ref.child(index)
                view = host.child_view(child, retried=children.attempt_of(index) > 1)
                if view is None:
                    continue
                # Charge the child where its pod runs (the pod's compute-environment label),
                # not where the parent's last child went.
                pod = host.child_pod(self.child_pod_name(record, index))
                ce = (
                    (pod.compute_environment if pod is not None else None)
                    or record.status.computeEnvironment
                    or ""
                )
                node = pod.obs.node if pod is not None else None
                sched.add_running(view, ce, node, now, state=state.value)
                self.book.held.add(child)
        # Pending children may be waiting on dependencies that finished while we were away.
        record.dirty_children |= set(children.in_state(JobState.PENDING))
        self.book.restored_parents.add(ref)

    # -- requests --------------------------------------------------------------------------------
    def _parent_request(self, ref: JobRef, record: ArrayRecord, step: lifecycle.Step, now: float) -> None:
        job, children = record.job, record.children
        assert children is not None
        request = job.spec.terminate or job.spec.cancel
        if request is None:
            return
        kind = StopKind.TERMINATE if job.spec.terminate is not None else StopKind.CANCEL
        # AWS: "If you cancel or terminate a parent array job, all the child jobs are cancelled
        # or terminated with it."
        stop = children.children_to_stop(kind)
        for index in stop.fail_now:
            self._stop_child(ref, record, index, step, now, request.reason, kind)
        step.status.statusReason = request.reason
        if kind is StopKind.TERMINATE:
            step.status.isTerminated = True
        else:
            step.status.isCancelled = True

    def _child_requests(self, ref: JobRef, record: ArrayRecord, step: lifecycle.Step, now: float) -> None:
        children = record.children
        assert children is not None
        for req in record.job.spec.childRequests or []:
            if req.index >= children.size or children.state_of(req.index) in TERMINAL_STATES:
                continue
            kind = StopKind.TERMINATE if req.action == "TERMINATE" else StopKind.CANCEL
            self._stop_child(ref, record, req.index, step, now, req.reason, kind)

    def _stop_child(self, ref: JobRef, record: ArrayRecord, index: int, step: lifecycle.Step, now: float,
                    reason: str, kind: StopKind) -> None:  # fmt: skip
        children = record.children
        assert children is not None
        state = children.state_of(index)
        outcome = on_terminate(state, reason) if kind is StopKind.TERMINATE else on_cancel(state, reason)
        if not outcome.applied:
            return
        children.set_state(index, JobState.FAILED)
        children.record_exit(index, None, reason)
        if outcome.stop_pod:
            step.delete_pods.append(self.child_pod_name(record, index))
        self.book.release(ref.child(index), now)
        self.book.wake_child_dependents(ref.child(index))

    # -- one child -------------------------------------------------------------------------------
    def _without_parent_requests(self, ref: JobRef, job: BatchJob) -> BatchJob:
        """The job without parent-level requests (children get them through _parent_request)."""
        cached = self._bare.get(ref)
        if cached is None or cached.metadata.resourceVersion != job.metadata.resourceVersion:
            cached = job.model_copy(
                update={"spec": job.spec.model_copy(update={"cancel": None, "terminate": None})}
            )
            self._bare[ref] = cached
        return cached

    def _step_child(self, ref: JobRef, record: ArrayRecord, host: ArrayHost, index: int, step: lifecycle.Step,
                    now: float) -> None:  # fmt: skip
        children = record.children
        assert children is not None
        child = ref.child(index)
        sched = self.book.scheduler
        state = children.state_of(index)
        if state.is_terminal:
            # A pod that outlived its recorded result (the operator stopped between the status
            # write and the delete): remove it now.
            leftover = host.child_pod(self.child_pod_name(record, index))
            failed = state is JobState.FAILED
            if (
                leftover is not None
                and not leftover.obs.deleting
                and not lifecycle.kept(host.pod_retention, leftover.obs, failed=failed)
            ):
                step.delete_pods.append(leftover.obs.name)
            return
        if state in (JobState.SUBMITTED, JobState.PENDING):
            res = deps.resolve_child(host.facts(), index, host.lookup())
            if isinstance(res, deps.Fail):
                # AWS: a child whose SEQUENTIAL / N_TO_N dependency failed fails too.
                children.set_state(index, JobState.FAILED)
                children.record_exit(index, None, res.reason)
                self.book.wake_child_dependents(child)
            elif not isinstance(res, deps.Wait):
                children.set_state(index, JobState.RUNNABLE)
                view = host.child_view(child, retried=children.attempt_of(index) > 1)
                if view is not None:
                    sched.add_runnable(view, now)
                    self.book.held.add(child)
            return
        if state is JobState.RUNNABLE:
            return
        # STARTING / RUNNING: follow the attempt's pod with the single-job lifecycle.
        attempt = children.attempt_of(index)
        name = self.child_pod_name(record, index)
        found = host.child_pod(name)
        pod = found.obs if found is not None else None
        started = lifecycle.iso(pod.running_since) if pod is not None and pod.running_since else None
        child_status = BatchJobStatus(
            status=state.value,
            createdAt=record.status.createdAt,
            jobDefinitionRevision=record.status.jobDefinitionRevision,
            attempts=[AttemptDetail(attempt=attempt, podName=name, startedAt=started)],
        )
        ctx = host.context(pod=pod, pod_seen=name in record.pods_seen, dependencies=deps.READY)
        cstep = lifecycle.advance(self._without_parent_requests(ref, record.job), child_status, ctx, now)
        if pod is not None and pod.node and cstep.status.status in POD_STATES:
            sched.bind(child, pod.node)
        new = JobState(cstep.status.status) if cstep.status.status else state
        step.delete_pods.extend(cstep.delete_pods)
        if cstep.ensure_pod:
            self.book.pending_child_pod_creates.append(child)
        if cstep.wake_at is not None:
            record.wake_at = cstep.wake_at if record.wake_at is None else min(record.wake_at, cstep.wake_at)
            record.timed_children.add(index)
        if new is state:
            return
        children.set_state(index, new)
        last = cstep.status.attempts[-1] if cstep.status.attempts else None
        if last is not None and last.startedAt is not None:
            # AWS: each child has its own startedAt/stoppedAt (the container's times).
            children.record_times(index, lifecycle.epoch(last.startedAt), lifecycle.epoch(last.stoppedAt))
            # The parent started with its first child, even one seen only once it had finished.
            step.status.startedAt = step.status.startedAt or last.startedAt
        if new is JobState.RUNNING:
            sched.mark_running(child)
            if step.status.startedAt is None:
                step.status.startedAt = (
                    last.startedAt if last is not None and last.startedAt else lifecycle.iso(now)
                )
            return
        # Only unsuccessful attempts are worth the space: the table is bounded (500 children),
        # and a success says nothing a state range doesn't.
        if (
            last is not None
            and new is not JobState.SUCCEEDED
            and (last.exitCode is not None or last.statusReason)
        ):
            children.record_exit(index, last.exitCode, last.reason or last.statusReason, last.statusReason)
        if cstep.release:
            self.book.release(child, now, keep=cstep.enqueue)
        if cstep.enqueue:  # retry: back to RUNNABLE with the next attempt number
            children.set_attempt(index, attempt + 1)
            view = host.child_view(child, retried=True)
            if view is not None:
                sched.add_runnable(view, now)
                self.book.held.add(child)
        if new.is_terminal:
            record.timed_children.discard(index)
            self.book.wake_child_dependents(child)

    # -- the scheduler's decisions for children ---------------------------------------------------
    def started(self, child: JobRef, record: ArrayRecord, compute_environment: str) -> None:
        """The child's pod was created: STARTING."""
        assert record.children is not None and child.index is not None
        record.children.set_state(child.index, JobState.STARTING)
        record.status.computeEnvironment = compute_environment
        # Step it again next cycle even if no pod event comes (an adopted pod may be done).
        record.dirty_children.add(child.index)

    def failed(self, child: JobRef, record: ArrayRecord, reason: str) -> None:
        """The child fails without running (a queue's time-limit action, a refused pod)."""
        assert record.children is not None and child.index is not None
        record.children.set_state(child.index, JobState.FAILED)
        record.children.record_exit(child.index, None, reason)
        self.book.held.discard(child)
        self.book.wake_child_dependents(child)
