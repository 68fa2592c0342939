"""Array jobs in the loop: children live compactly in the parent, each runs like a single job.

A parent's children are an ``core.arrays.ArrayChildren`` (index ranges per state), restored
from and written back to ``status.arrayProperties.children``, so no Kubernetes object exists
per child. Each child that has something to do (its pod changed, a dependency finished, a
timer fired) is stepped through the same pure ``core.lifecycle.advance`` as a single job, on
a small per-child status built for the step, so retries, timeouts and exit handling are the
same code. SEQUENTIAL and N_TO_N dependencies are resolved per child (``core.deps``).

The scheduler sees each RUNNABLE child as its own job, keyed ``(namespace, name, index)``.
The parent's status is written once per cycle, however many children moved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from batchyard import render
from batchyard.adapters.state import JobEntry, JobKey
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
from batchyard.core.jobstate import TERMINAL_STATES, JobState, StopKind, on_cancel, on_terminate

if TYPE_CHECKING:
    from batchyard.adapters.controller import Controller

ChildKey = tuple[str, str, int]
CHILD_FAILED_REASON = "{failed} of {size} child jobs failed"


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


def children_of(entry: JobEntry) -> ArrayChildren | None:
    """The parent's children, restored from status on first use."""
    if entry.children is None:
        entry.children = children_from_status(entry.status)
    return entry.children


def array_detail(children: ArrayChildren) -> ArrayPropertiesDetail:
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


class ArrayRunner:
    def __init__(self, controller: Controller) -> None:
        self.c = controller
        self._bare: dict[JobKey, BatchJob] = {}

    # -- a parent's step ---------------------------------------------------------------------
    def step(self, key: JobKey, entry: JobEntry, now: float) -> lifecycle.Step:
        job = entry.job
        assert job.spec.arrayProperties is not None
        size = job.spec.arrayProperties.size
        children = children_of(entry)
        status = entry.status
        state = JobState(status.status) if status.status else None
        if state is not None and state.is_terminal:
            return lifecycle.Step(status=status.model_copy(deep=True), now=now)
        if children is None:
            # Admission as for any job: queue, definition, whole-job dependencies.
            step = lifecycle.advance(job, status, self.c._context(entry), now)
            if not step.enqueue:
                return step  # waiting (PENDING / grace) or FAILED
            step.enqueue = False
            children = entry.children = ArrayChildren.new(size)
            # AWS: "Array job parents are updated to PENDING when any child job is updated to
            # RUNNABLE and remain in PENDING status while child jobs are running."
            step.status.status = JobState.PENDING.value
            step.status.statusReason = None
            step.events[-1] = lifecycle.Event("Normal", "Pending", f"array of {size} child jobs spawned")
            entry.dirty_children = set(range(size))
            self.c.known.add(key)  # the scheduler now knows this parent's children as they come
        else:
            step = lifecycle.Step(status=status.model_copy(deep=True), now=now)
            if not self.c._restored(key):
                self._restore(key, entry, now)

        self._parent_request(key, entry, step, now)
        self._child_requests(key, entry, step, now)
        dirty, entry.dirty_children = entry.dirty_children, set()
        for index in sorted(dirty):
            self._step_child(key, entry, index, step, now)
        self.finish(entry, step, now)
        return step

    def finish(self, entry: JobEntry, step: lifecycle.Step, now: float) -> None:
        """Fold the children into the parent's status and state."""
        children = entry.children
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
            lifecycle._transition(step, parent, reason, "Warning" if parent is JobState.FAILED else "Normal")
            self.c._wake_dependents(entry)
        elif parent is not current:
            st.status = parent.value

    def _restore(self, key: JobKey, entry: JobEntry, now: float) -> None:
        """First sight after a restart: hand RUNNABLE and running children to the scheduler."""
        children = entry.children
        assert children is not None
        for state in (JobState.RUNNABLE, JobState.STARTING, JobState.RUNNING):
            for index in children.in_state(state):
                view = self.c._job_view((*key, index), entry, retried=children.attempt_of(index) > 1)
                if view is None:
                    continue
                if state is JobState.RUNNABLE:
                    self.c.scheduler.add_runnable(view, now)
                else:
                    # Charge the child where its pod runs (the pod's compute-environment label),
                    # not where the parent's last child went.
                    pod = self.c.state.pods.get((key[0], self.pod_name(entry, index)))
                    ce = (
                        (pod.compute_environment if pod is not None else None)
                        or entry.status.computeEnvironment
                        or ""
                    )
                    node = pod.obs.node if pod is not None else None
                    self.c.scheduler.add_running(view, ce, node, now, state=state.value)
                self.c.known.add((*key, index))
        # Pending children may be waiting on dependencies that finished while we were away.
        entry.dirty_children |= set(children.in_state(JobState.PENDING))
        self.c.known.add(key)

    # -- requests --------------------------------------------------------------------------------
    def _parent_request(self, key: JobKey, entry: JobEntry, step: lifecycle.Step, now: float) -> None:
        job, children = entry.job, entry.children
        assert children is not None
        request = job.spec.terminate or job.spec.cancel
        if request is None:
            return
        kind = StopKind.TERMINATE if job.spec.terminate is not None else StopKind.CANCEL
        # AWS: "If you cancel or terminate a parent array job, all the child jobs are cancelled
        # or terminated with it."
        stop = children.children_to_stop(kind)
        for index in stop.fail_now:
            self._stop_child(key, entry, index, step, now, request.reason, kind)
        step.status.statusReason = request.reason
        if kind is StopKind.TERMINATE:
            step.status.isTerminated = True
        else:
            step.status.isCancelled = True

    def _child_requests(self, key: JobKey, entry: JobEntry, step: lifecycle.Step, now: float) -> None:
        children = entry.children
        assert children is not None
        for req in entry.job.spec.childRequests or []:
            if req.index >= children.size or children.state_of(req.index) in TERMINAL_STATES:
                continue
            kind = StopKind.TERMINATE if req.action == "TERMINATE" else StopKind.CANCEL
            self._stop_child(key, entry, req.index, step, now, req.reason, kind)

    def _stop_child(self, key: JobKey, entry: JobEntry, index: int, step: lifecycle.Step, now: float,
                    reason: str, kind: StopKind) -> None:  # fmt: skip
        children = entry.children
        assert children is not None
        state = children.state_of(index)
        outcome = on_terminate(state, reason) if kind is StopKind.TERMINATE else on_cancel(state, reason)
        if not outcome.applied:
            return
        children.set_state(index, JobState.FAILED)
        children.record_exit(index, None, reason)
        if outcome.stop_pod:
            step.delete_pods.append(self.pod_name(entry, index))
        self._release(key, index, now)
        self._wake_child_dependents(key, entry, index)

    # -- one child -------------------------------------------------------------------------------
    def pod_name(self, entry: JobEntry, index: int) -> str:
        assert entry.children is not None
        return render.pod_name(entry.job.metadata.name or "", entry.children.attempt_of(index), index)

    def _bare_job(self, key: JobKey, job: BatchJob) -> BatchJob:
        """The job without parent-level requests (children get them through _parent_request)."""
        cached = self._bare.get(key)
        if cached is None or cached.metadata.resourceVersion != job.metadata.resourceVersion:
            cached = job.model_copy(
                update={"spec": job.spec.model_copy(update={"cancel": None, "terminate": None})}
            )
            self._bare[key] = cached
        return cached

    def _step_child(self, key: JobKey, entry: JobEntry, index: int, step: lifecycle.Step, now: float) -> None:
        children = entry.children
        assert children is not None
        state = children.state_of(index)
        if state.is_terminal:
            # A pod that outlived its recorded result (the operator stopped between the status
            # write and the delete): remove it now.
            leftover = self.c.state.pods.get(
                (entry.job.metadata.namespace or "", self.pod_name(entry, index))
            )
            if (
                leftover is not None
                and leftover.job_uid == entry.job.metadata.uid
                and not leftover.obs.deleting
                and not self.c.settings.keep_pods
            ):
                step.delete_pods.append(leftover.obs.name)
            return
        if state in (JobState.SUBMITTED, JobState.PENDING):
            res = deps.resolve_child(self.c._facts(entry), index, self.c._lookup(entry))
            if isinstance(res, deps.Fail):
                # AWS: a child whose SEQUENTIAL / N_TO_N dependency failed fails too.
                children.set_state(index, JobState.FAILED)
                children.record_exit(index, None, res.reason)
                self._wake_child_dependents(key, entry, index)
            elif not isinstance(res, deps.Wait):
                children.set_state(index, JobState.RUNNABLE)
                view = self.c._job_view((*key, index), entry, retried=children.attempt_of(index) > 1)
                if view is not None:
                    self.c.scheduler.add_runnable(view, now)
                    self.c.known.add((*key, index))
            return
        if state is JobState.RUNNABLE:
            return
        # STARTING / RUNNING: follow the attempt's pod with the single-job lifecycle.
        attempt = children.attempt_of(index)
        name = self.pod_name(entry, index)
        found = self.c.state.pods.get((entry.job.metadata.namespace or "", name))
        pod = found.obs if found is not None and found.job_uid == entry.job.metadata.uid else None
        started = lifecycle.iso(pod.running_since) if pod is not None and pod.running_since else None
        child_status = BatchJobStatus(
            status=state.value,
            createdAt=entry.status.createdAt,
            jobDefinitionRevision=entry.status.jobDefinitionRevision,
            attempts=[AttemptDetail(attempt=attempt, podName=name, startedAt=started)],
        )
        ctx = self.c._context(entry, pod=pod, pod_seen=name in entry.pods_seen, dependencies=deps.READY)
        cstep = lifecycle.advance(self._bare_job(key, entry.job), child_status, ctx, now)
        if pod is not None and pod.node and cstep.status.status in ("STARTING", "RUNNING"):
            self.c.scheduler.bind((*key, index), pod.node)
        new = JobState(cstep.status.status) if cstep.status.status else state
        step.delete_pods.extend(cstep.delete_pods)
        if cstep.ensure_pod:
            self.c.ensure_child_pods.append((*key, index))
        if cstep.wake_at is not None:
            entry.wake_at = cstep.wake_at if entry.wake_at is None else min(entry.wake_at, cstep.wake_at)
            entry.timed_children.add(index)
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
            self.c.scheduler.mark_running((*key, index))
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
            self._release(key, index, now, keep=cstep.enqueue)
        if cstep.enqueue:  # retry: back to RUNNABLE with the next attempt number
            children.set_attempt(index, attempt + 1)
            view = self.c._job_view((*key, index), entry, retried=True)
            if view is not None:
                self.c.scheduler.add_runnable(view, now)
                self.c.known.add((*key, index))
        if new.is_terminal:
            entry.timed_children.discard(index)
            self._wake_child_dependents(key, entry, index)

    def _release(self, key: JobKey, index: int, now: float, keep: bool = False) -> None:
        ckey = (*key, index)
        if ckey not in self.c.known:
            return
        if self.c.scheduler.state_of(ckey) in ("STARTING", "RUNNING"):
            self.c.scheduler.attempt_ended(ckey, now)
        if not keep:
            self.c.scheduler.remove(ckey, now)
            self.c.known.discard(ckey)

    def _wake_child_dependents(self, key: JobKey, entry: JobEntry, index: int) -> None:
        """SEQUENTIAL: child index+1 of the same array; N_TO_N: child index of each dependent."""
        children = entry.children
        assert children is not None
        self.c.finished_first.add(key)
        # Jobs on this one child ("name:index", core.deps.split_child_ref).
        for name in self.c.dependents_in(key[0]).dependents_of_child(key[1], index):
            self.c.state.dirty_jobs.add((key[0], name))
        for name, child in self.c.dependents_in(key[0]).affected_by_child(key[1], index):
            other = self.c.state.jobs.get((key[0], name))
            if other is not None:
                other.dirty_children.add(child)
                self.c.state.dirty_jobs.add((key[0], name))

    def begin_cycle(self) -> None:
        # Forget cached bare copies of jobs that are gone.
        self._bare = {k: v for k, v in self._bare.items() if k in self.c.state.jobs}

    # -- the scheduler's decisions for children ---------------------------------------------------
    def started(self, key: JobKey, entry: JobEntry, index: int, ce: str) -> None:
        assert entry.children is not None
        entry.children.set_state(index, JobState.STARTING)
        entry.status.computeEnvironment = ce
        # Step it again next cycle even if no pod event comes (an adopted pod may be done).
        entry.dirty_children.add(index)

    def cancelled(self, key: JobKey, entry: JobEntry, index: int, reason: str, step: lifecycle.Step) -> None:
        assert entry.children is not None
        entry.children.set_state(index, JobState.FAILED)
        entry.children.record_exit(index, None, reason)
        self.c.known.discard((*key, index))
        self._wake_child_dependents(key, entry, index)

    def render_child(self, entry: JobEntry, index: int, ce: Any) -> dict[str, Any]:
        resolved = self.c._definition(entry)
        if isinstance(resolved, str):
            raise ValueError(resolved)
        revision, spec = resolved
        assert entry.children is not None
        return render.render_pod(
            entry.job,
            spec,
            revision=revision,
            attempt=entry.children.attempt_of(index),
            array_index=index,
            array_size=entry.children.size,
            queue=entry.job.spec.jobQueue,
            compute_environment=ce,
            default_host_network=self.c.settings.eks_host_network,
            restricted_defaults=self.c.settings.restricted_pod_defaults,
        )
