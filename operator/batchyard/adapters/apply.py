"""Execute one cycle's plan: pod creates and deletes, status writes, events, expiry.

The asynchronous half of the loop (``adapters.controller`` decides; this module acts). Order
matters and is the point of this module:

1. new job definition revisions are recorded;
2. the status of jobs whose end may release dependents is written first
   (``Bookkeeping.write_before_dispatch``), so nobody sees a dependent start before its
   dependency ended;
3. pods are created for dispatches (a dispatch is assumed in the scheduler before its pod
   exists and undone if the create fails; a 409 means the pod of that attempt already exists,
   so a restarted operator never makes a second one), and re-created where a STARTING attempt
   lost its pod;
4. one merge patch of status per changed job, then its events (in the background);
5. pods are deleted only after the statuses are written: a finished attempt's result must reach
   the API server before its pod goes, or a restart in between would see a RUNNING job without
   a pod and run it again;
6. the transition hooks, the object status writers, and the TTL expiry of finished jobs.

Pod names are deterministic per job and attempt, so every write here is idempotent.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchyard.adapters.bookkeeping import Bookkeeping
from batchyard.adapters.kube import ApiError, Conflict, Invalid, Kube, NotFound
from batchyard.adapters.observe import JobReader
from batchyard.adapters.settings import Settings
from batchyard.adapters.state import ClusterState, JobEntry
from batchyard.adapters.writes import (
    involved_object,
    patch_status,
    post_event,
    resource_path,
    status_diff,
)
from batchyard.api.batchjob import BatchJob
from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.core import lifecycle
from batchyard.core.arrayjob import ArraySteps
from batchyard.core.backoff import KeyedBackoff
from batchyard.core.failures import FailureCategory
from batchyard.core.jobref import JobRef
from batchyard.core.jobstate import POD_STATES, TERMINAL_STATES
from batchyard.core.refusals import classify_pod_refusal
from batchyard.core.scheduler import CycleResult, Dispatch
from batchyard.render import pod as render
from batchyard.render.names import LABEL_JOB_UID

log = logging.getLogger("batchyard.loop")

POD_CONFLICT_RETRY_SECONDS = 2.0
EXPIRY_SCAN_SECONDS = 10.0
MAX_EXPIRIES_PER_SCAN = 200

StatusWriter = Callable[[CycleResult], Awaitable[None]]
# (entry, old state, new state, why it FAILED): once per state change that reached the API server.
TransitionHook = Callable[[JobEntry, str | None, str | None, FailureCategory | None], None]


@dataclass
class Plan:
    """What one cycle decided, to be executed by ``Executor.execute``."""

    result: CycleResult
    steps: dict[JobRef, lifecycle.Step] = field(default_factory=dict)
    dispatches: list[Dispatch] = field(default_factory=list)  # job_key: a JobRef
    definition_status: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    arrays: set[JobRef] = field(default_factory=set)  # array parents whose children moved

    def step_for(self, ref: JobRef, entry: JobEntry, now: float) -> lifecycle.Step:
        """This cycle's step of ``ref`` (a job or array parent), created from its status if it
        was not stepped yet; the entry's status follows the step's from now on."""
        step = self.steps.get(ref)
        if step is None:
            step = self.steps[ref] = lifecycle.Step(status=entry.status.model_copy(deep=True), now=now)
        entry.status = step.status
        return step


class Executor:
    def __init__(
        self,
        kube: Kube,
        state: ClusterState,
        book: Bookkeeping,
        reader: JobReader,
        arrays: ArraySteps,
        settings: Settings,
        *,
        status_writers: Sequence[StatusWriter] = (),
        on_transition: Sequence[TransitionHook] = (),
        write_backoff: KeyedBackoff | None = None,
    ) -> None:
        self.kube = kube
        self.state = state
        self.book = book
        self.reader = reader
        self.arrays = arrays
        self.settings = settings
        # Writers of the cluster-scoped kinds' status (queues, consumables: adapters.objectstatus;
        # compute environments: adapters.scaler; metrics: adapters.instrumentation).
        self.status_writers = tuple(status_writers)
        # Called once per job state change that reached the API server: (entry, old, new).
        self.on_transition = tuple(on_transition)
        # Failed status writes back off per job (exponential with jitter, capped), as client-go's
        # rate-limited workqueue does, instead of being retried every cycle.
        self.write_backoff = write_backoff or KeyedBackoff()
        # Pod creates refused for now (core.refusals: quota, throttling) back off per job/child.
        self.create_backoff = KeyedBackoff(base_seconds=1.0, cap_seconds=60.0)
        self._sem = asyncio.Semaphore(settings.create_concurrency)
        self._event_tasks: set[asyncio.Task[None]] = set()
        self._next_expiry_scan = 0.0

    async def execute(self, plan: Plan, now: float) -> None:
        st, book = self.state, self.book
        # 1. revisions
        for key, status in plan.definition_status.items():
            await patch_status(self.kube, "jobdefinitions", key[1], key[0], status)

        # Taken now: a dispatch in this cycle replaces its job's step (a retry's new attempt), and
        # the old attempt's pod must still go.
        deletes = {ref: list(step.delete_pods) for ref, step in plan.steps.items() if step.delete_pods}
        creates = [self._dispatch(plan, d, now) for d in plan.dispatches]
        ensures = [self._ensure_pod(ref) for ref, step in plan.steps.items() if step.ensure_pod]
        ensures += [self._ensure_child_pod(child) for child in book.take_pending_child_pod_creates()]
        # What each job looked like before this cycle's writes (for the transition hooks).
        before: dict[JobRef, tuple[JobEntry, str | None, int]] = {
            ref: _written(entry) for ref in plan.steps if (entry := st.jobs.get(ref)) is not None
        }
        # 2. statuses that release dependents
        first = [r for r in book.take_write_before_dispatch() if r in plan.steps and r in st.jobs]
        for ref in first:
            if ref in plan.arrays:
                self.arrays.fold(ref, st.jobs[ref], plan.steps[ref], now)
                st.jobs[ref].status = plan.steps[ref].status
        await _gather_limited(self._sem, [self._write_job(r, st.jobs[r], []) for r in first])
        # 3. pods
        await _gather_limited(self._sem, [*creates, *ensures])
        for ref in plan.arrays:
            entry = st.jobs.get(ref)
            if entry is None:
                continue
            latest = entry.status  # children started or failed by the dispatches above
            step = plan.step_for(ref, entry, now)
            step.status = entry.status = latest
            self.arrays.fold(ref, entry, step, now)
            entry.status = step.status

        # 4. job statuses and events
        # 5. pod deletions: each job's status, then its finished pods, per job in that order (the
        # result reaches the API server before the pod goes) but without a barrier across jobs,
        # so no job's delete waits for every other job's write (issue 14).
        async def write_then_delete(
            ref: JobRef, entry: JobEntry | None, events: list[lifecycle.Event]
        ) -> None:
            if entry is not None:
                await self._write_job(
                    ref, entry, events, may_hold=not deletes.get(ref), budget_ran_out=plan.result.truncated
                )
            for pod in deletes.get(ref, ()):
                await self._delete_pod(ref, pod)

        chains = []
        for ref in plan.steps.keys() | deletes.keys():
            entry = st.jobs.get(ref)
            if entry is not None:
                before.setdefault(ref, _written(entry))
            stepped = plan.steps.get(ref)
            if stepped is None:  # only pods to delete
                chains.append(write_then_delete(ref, None, []))
            else:
                chains.append(write_then_delete(ref, entry, stepped.events))
        await _gather_limited(self._sem, chains)
        # 6. hooks, object status, expiry
        for ref, (entry, old, old_attempts) in before.items():
            new = entry.written.get("status")
            # A new attempt without a visible state change (STARTING -> retried -> STARTING in one
            # cycle) is a transition too.
            if new != old or len(entry.written.get("attempts") or []) != old_attempts:
                stepped = plan.steps.get(ref)
                failure = stepped.failure if stepped is not None else None
                for hook in self.on_transition:
                    hook(entry, old, new, failure)
        for write in self.status_writers:
            await write(plan.result)
        await self._expire(now)

    # -- pods --------------------------------------------------------------------------------------
    async def _dispatch(self, plan: Plan, decision: Dispatch, now: float) -> None:
        try:
            await self._dispatch_once(plan, decision, now)
        except Exception:  # network trouble, a render bug: nothing may be left half-assumed
            log.exception("dispatching %s failed; it stays RUNNABLE", decision.job_key)
            if self.book.scheduler.state_of(decision.job_key) in POD_STATES:
                self.book.scheduler.undo(decision, now)
            assert isinstance(decision.job_key, JobRef)
            self.state.dirty_jobs.add(decision.job_key.parent)

    async def _dispatch_once(self, plan: Plan, decision: Dispatch, now: float) -> None:
        target = decision.job_key
        assert isinstance(target, JobRef)
        ref = target.parent
        sched = self.book.scheduler
        entry = self.state.jobs.get(ref)
        if entry is None:
            sched.undo(decision, now)
            return
        if target.index is not None:
            assert entry.children is not None
            attempt = entry.children.attempt_of(target.index)
        else:
            attempt = lifecycle.next_pod_name_attempt(entry.status)
        try:
            pod_name = await self._create_pod(entry, attempt, decision.compute_environment, target.index)
        except ApiError as err:
            sched.undo(decision, now)
            if isinstance(err, Conflict):
                # The name is taken by a pod of another job (a deleted job of the same name whose
                # pod is still going away): try again shortly.
                entry.wake_at = now + POD_CONFLICT_RETRY_SECONDS
                return
            # Pod Security, a webhook, an invalid spec: final; a full quota, throttling: wait.
            refusal = classify_pod_refusal(err.status, err.message)
            if refusal.transient:
                until = self.create_backoff.failed(target, now)
                sched.hold(target, refusal.code, refusal.status_reason, until, now)
                log.warning("creating the pod of %s was refused, will retry: %s", target, err)
                entry.wake_at = until if entry.wake_at is None else min(entry.wake_at, until)
            else:
                self.create_backoff.succeeded(target)
                log.warning("creating the pod of %s was refused for good: %s", target, err)
            if target.index is not None:
                # An array child: the same rule per child (a blocked child shows on the parent).
                if refusal.permanent:
                    self.arrays.failed(target, entry, refusal.status_reason)
                    sched.remove(target, now)
                else:
                    plan.step_for(ref, entry, now).status.statusReason = refusal.status_reason
                plan.arrays.add(ref)
            elif refusal.permanent:
                # AWS: "jobs that fail because of an invalid job definition aren't retried".
                step = plan.step_for(ref, entry, now)
                lifecycle.fail(step, now, refusal.status_reason)
                self.book.wake_dependents(ref)
                self.book.forget(ref, now)
            else:
                plan.step_for(ref, entry, now).status.statusReason = refusal.status_reason
            return
        self.create_backoff.succeeded(target)
        sched.release_hold(target)
        # Look at the attempt again next cycle even if no event comes (an adopted pod that
        # already finished produces none).
        self.state.dirty_jobs.add(ref)
        if target.index is not None:
            self.arrays.started(target, entry, decision.compute_environment)
            plan.arrays.add(ref)
            return
        step = lifecycle.start_attempt(
            entry.status, pod_name=pod_name, compute_environment=decision.compute_environment, now=now
        )
        entry.dispatched_at = None if decision.nodes else time.time()
        previous = plan.steps.get(ref)
        if previous is not None:
            step.events = previous.events + step.events
        entry.status = step.status
        plan.steps[ref] = step

    async def _ensure_pod(self, ref: JobRef) -> None:
        entry = self.state.jobs.get(ref)
        if entry is None or not entry.status.attempts:
            return
        if entry.dispatched_at is not None:
            # This process created the attempt's pod (or adopted it) moments ago and the pod
            # watch has not delivered it yet: a create now would only meet a 409. A pod deleted
            # before the watch saw it still arrives as ADDED then DELETED (seen, then lost).
            return
        attempt = entry.status.attempts[-1]
        try:
            await self._create_pod(entry, attempt.attempt, attempt.computeEnvironment or "")
        except ApiError as err:
            log.warning("re-creating the pod of %s failed: %s", ref, err)

    async def _ensure_child_pod(self, child: JobRef) -> None:
        entry = self.state.jobs.get(child.parent)
        if entry is None or entry.children is None or child.index is None:
            return
        try:
            await self._create_pod(
                entry,
                entry.children.attempt_of(child.index),
                entry.status.computeEnvironment or "",
                child.index,
            )
        except ApiError as err:
            log.warning("re-creating the pod of %s failed: %s", child, err)

    async def _create_pod(self, entry: JobEntry, attempt: int, ce_name: str, index: int | None = None) -> str:
        job = entry.job
        resolved = self.reader.definition(entry)
        if isinstance(resolved, str):
            raise Invalid(422, {"message": resolved}, "RENDER", job.metadata.name or "")
        revision, spec = resolved
        ce: ComputeEnvironment | None = self.state.compute_environments.get(ce_name)
        manifest = render.render_pod(
            job,
            spec,
            revision=revision,
            attempt=attempt,
            array_index=index,
            array_size=entry.children.size if index is not None and entry.children is not None else None,
            queue=job.spec.jobQueue,
            compute_environment=ce if ce is not None else ce_name,
            default_host_network=self.settings.eks_host_network,
            restricted_defaults=self.settings.restricted_pod_defaults,
        )
        namespace = job.metadata.namespace or ""
        name = str(manifest["metadata"]["name"])
        try:
            await self.kube.create(f"/api/v1/namespaces/{namespace}/pods", manifest)
        except Conflict:
            # 409: this attempt's pod exists already (a repeated decision: adopt it), unless it
            # belongs to an older job of the same name.
            existing = await self.kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
            owner = ((existing.get("metadata") or {}).get("labels") or {}).get(LABEL_JOB_UID)
            if owner != job.metadata.uid:
                raise
        return name

    async def _delete_pod(self, ref: JobRef, name: str) -> None:
        try:
            await self.kube.delete(f"/api/v1/namespaces/{ref.namespace}/pods/{name}")
        except NotFound:
            pass  # gone already
        except ApiError as err:
            log.warning("deleting pod %s/%s failed, will retry: %s", ref.namespace, name, err)
            self.state.dirty_jobs.add(ref)
        except Exception as err:
            log.warning("deleting pod %s/%s failed, will retry: %r", ref.namespace, name, err)
            self.state.dirty_jobs.add(ref)

    # -- job status and events ---------------------------------------------------------------------
    async def _write_job(
        self,
        ref: JobRef,
        entry: JobEntry,
        events: list[lifecycle.Event],
        *,
        may_hold: bool = False,
        budget_ran_out: bool = False,
    ) -> None:
        now = time.time()
        hold = None
        if may_hold:
            delay = self.settings.starting_write_delay_seconds
            written = entry.written.get("status")
            hold = lifecycle.starting_write_hold(
                written, entry.status.status, entry.dispatched_at, now, delay
            ) or lifecycle.runnable_write_hold(
                written, entry.status.status, entry.status.createdAt, now, delay, budget_ran_out
            )
        new: dict[str, Any] = {}
        patch: dict[str, Any] = {}
        if hold is not None:
            # Written at the next step: the pod's Running (RUNNING at once) or the hold's end.
            entry.wake_at = hold if entry.wake_at is None else min(entry.wake_at, hold)
        else:
            new = entry.status.model_dump(mode="json", exclude_none=True)
            new["observedGeneration"] = entry.job.metadata.generation
            detail = (
                lifecycle.detail_write_hold(
                    entry.written, new, entry.dispatched_at, now, self.settings.detail_write_delay_seconds
                )
                if may_hold
                else None
            )
            if detail is not None:
                entry.wake_at = detail if entry.wake_at is None else min(entry.wake_at, detail)
            else:
                patch = status_diff(entry.written, new)
        if patch:
            if not self.write_backoff.ready(ref, now):
                self._retry_write_later(ref, entry)  # still backing off: no request now
                return
            try:
                await self.kube.merge_patch(
                    resource_path("batchjobs", ref.name, ref.namespace, "status"),
                    {"status": patch},
                    verb="patch_status",
                )
                self.state.record_written(entry, new)
                self.write_backoff.succeeded(ref)
            except NotFound:
                self.write_backoff.succeeded(ref)
                self.state.forget_job(ref)
                return
            except Exception as err:
                self.write_backoff.failed(ref, now)
                log.warning("status write for %s failed, will retry: %r", ref, err)
                self._retry_write_later(ref, entry)
                return
        # Events are not on the critical path of the next cycle: post them in the background
        # (bounded by the same semaphore), so a burst of transitions doesn't stall the loop.
        for event in events:
            # Routine state changes are in status, conditions and metrics already: their Events
            # only when asked for (Settings.routine_events); failures, retries and blocks always.
            if self.settings.routine_events or not lifecycle.is_routine(event):
                self._spawn_event(entry.job, event)

    def _retry_write_later(self, ref: JobRef, entry: JobEntry) -> None:
        """Step the job again when its write backoff ends (not every cycle: client-go's
        rate-limited workqueue), or earlier if something else wakes it."""
        at = self.write_backoff.retry_at(ref)
        if at is not None:
            entry.wake_at = at if entry.wake_at is None else min(entry.wake_at, at)

    async def events_posted(self) -> None:
        """Wait for the events posted in the background so far (tests, shutdown)."""
        await asyncio.gather(*self._event_tasks, return_exceptions=True)

    def _spawn_event(self, job: BatchJob, event: lifecycle.Event) -> None:
        namespace = job.metadata.namespace or "default"
        involved = involved_object("BatchJob", job.metadata.name or "", job.metadata.uid, namespace)

        async def post() -> None:
            async with self._sem:
                await post_event(self.kube, involved, namespace, event.reason, event.message, event.type)

        task = asyncio.get_running_loop().create_task(post())
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    async def _expire(self, now: float) -> None:
        """Delete finished BatchJobs after the TTL (AWS keeps them at least 7 days)."""
        if now < self._next_expiry_scan:
            return
        self._next_expiry_scan = now + EXPIRY_SCAN_SECONDS
        ttl = self.settings.finished_job_ttl_seconds
        expired = [
            ref
            for ref, e in self.state.jobs.items()
            if e.status.status in TERMINAL_STATES
            and (lifecycle.epoch(e.status.stoppedAt) or now) + ttl <= now
        ][:MAX_EXPIRIES_PER_SCAN]  # a burst of expiries must not stall scheduling
        if not expired:
            return
        # The pods kept for their logs (core.retention) go with their job: deleted here first,
        # so they never depend on the garbage collector (their ownerReference is the fallback).
        uids = {self.state.jobs[ref].job.metadata.uid: ref for ref in expired}
        kept: dict[JobRef, list[str]] = {}
        for pod in self.state.pods.values():
            owner = uids.get(pod.job_uid)
            if owner is not None and not pod.obs.deleting:
                kept.setdefault(owner, []).append(pod.obs.name)

        async def delete(ref: JobRef) -> None:
            for name in kept.get(ref, ()):
                await self._delete_pod(ref, name)
            try:
                await self.kube.delete(resource_path("batchjobs", ref.name, ref.namespace))
            except NotFound:
                pass  # gone already
            except ApiError as err:
                log.warning("deleting expired job %s failed: %s", ref, err)
                return
            self.state.forget_job(ref)

        await _gather_limited(self._sem, [delete(r) for r in expired])


def _written(entry: JobEntry) -> tuple[JobEntry, str | None, int]:
    return entry, entry.written.get("status"), len(entry.written.get("attempts") or [])


async def _gather_limited(sem: asyncio.Semaphore, coros: Iterable[Awaitable[None]]) -> None:
    async def run(c: Awaitable[None]) -> None:
        async with sem:
            await c

    pending = list(coros)
    try:
        results = await asyncio.gather(*(run(c) for c in pending), return_exceptions=True)
    finally:
        # Cancelled (a leader term ending) while some actions still waited for the semaphore:
        # those never started; close them rather than leave them to be collected unawaited.
        for c in pending:
            if inspect.iscoroutine(c) and inspect.getcoroutinestate(c) == inspect.CORO_CREATED:
                c.close()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            log.error("an API action failed: %r", result)
