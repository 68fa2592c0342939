"""The scheduler loop: observe the cluster state, ask the pure core, execute.

One loop per operator. ``decide`` is synchronous (no awaits) and reads as Kueue's
``schedule()`` does, one numbered step per concern:

0. take what changed since the last cycle out of the cluster state (``Inbox``);
1. record new job definition revisions (``core.revisions``);
2. forget deleted jobs (the scheduler and the dependents index drop them);
3. step every dirty or due job through its lifecycle (``core.lifecycle``; array parents through
   ``core.arrayjob``) and feed the scheduler (RUNNABLE jobs in, finished attempts out);
4. run one scheduling cycle (``core.scheduler``) over the queues and compute environments
   (``core.views.world``);
5. fold its decisions into the jobs' steps (dispatches are executed; blocks, unblocks and
   cancels change statuses);
6. refresh RUNNABLE jobs' queue positions (``core.queuestatus``).

``adapters.apply.Executor`` then executes the ``Plan`` (pods, status patches, events). What the
loop remembers between cycles is in ``adapters.bookkeeping``; how it reads a job is in
``adapters.observe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from batchyard.adapters.apply import Executor, Plan, StatusWriter, TransitionHook
from batchyard.adapters.arrayjobs import ParentHost
from batchyard.adapters.bookkeeping import Bookkeeping
from batchyard.adapters.kube import Kube
from batchyard.adapters.mnp import GangRunner
from batchyard.adapters.observe import CapacityBoard, JobReader
from batchyard.adapters.settings import Settings
from batchyard.adapters.state import ClusterState, JobEntry
from batchyard.api.batchjob import BatchJobStatus
from batchyard.core import estimate, lifecycle
from batchyard.core.arrayjob import ArraySteps
from batchyard.core.backoff import KeyedBackoff
from batchyard.core.jobref import JobRef
from batchyard.core.jobstate import POD_STATES, TERMINAL_STATES, JobState
from batchyard.core.queuestatus import QueuePositions
from batchyard.core.revisions import record_revisions
from batchyard.core.scheduler import Block, Cancel, CycleResult, Dispatch, Scheduler, Unblock, World
from batchyard.render.names import pod_name

log = logging.getLogger("batchyard.loop")

__all__ = ["Controller", "Plan", "Settings"]


@dataclass(frozen=True)
class Inbox:
    """What changed since the last cycle, taken out of the cluster state at its start."""

    definitions: frozenset[tuple[str, str]]
    forgotten: frozenset[JobRef]
    jobs: tuple[JobRef, ...]  # dirty or due, in arrival order (FIFO within a second)


class Controller:
    def __init__(
        self,
        kube: Kube,
        state: ClusterState,
        settings: Settings | None = None,
        *,
        scheduler: Scheduler | None = None,
        capacity: CapacityBoard | None = None,
        status_writers: Sequence[StatusWriter] = (),
        on_cycle: Sequence[Callable[[float], None]] = (),
        on_transition: Sequence[TransitionHook] = (),
        write_backoff: KeyedBackoff | None = None,
    ) -> None:
        self.kube = kube
        self.state = state
        self.settings = settings = settings or Settings()
        self._restored = False  # every job held was stepped once (the term's first cycle)
        self.book = Bookkeeping(
            state, scheduler or Scheduler(max_dispatches_per_cycle=settings.max_dispatches_per_cycle)
        )
        self.scheduler = self.book.scheduler
        self.reader = JobReader(
            state,
            capacity or CapacityBoard(),
            pod_retention=settings.pod_retention,
            time_limit_scale=settings.time_limit_scale,
            identity=settings.identity,
        )
        self.arrays = ArraySteps(self.book, pod_name)
        self.executor = Executor(
            kube,
            state,
            self.book,
            self.reader,
            self.arrays,
            settings,
            status_writers=[self._remember, *status_writers],
            on_transition=on_transition,
            write_backoff=write_backoff,
        )
        # multi-node parallel jobs (adapters.mnp)
        self.gangs = GangRunner(
            kube, state, self.scheduler, self.reader, pod_retention=settings.pod_retention
        )
        self.positions = QueuePositions(settings.queue_positions, settings.queue_position_interval_seconds)
        # Recent successful run times per job definition, for the estimated starts (core.estimate).
        self.run_times = estimate.RunTimes()
        self.on_cycle = tuple(on_cycle)
        self.cycles = 0
        # Liveness (adapters.health): monotonic time the loop last went round (idle or not).
        self.heartbeat = time.monotonic()
        self.last_result: CycleResult | None = None

    async def _remember(self, result: CycleResult) -> None:
        self.last_result = result

    # -- the loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            self.heartbeat = time.monotonic()
            try:
                wait = self._next_wake(time.time())
                # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that
                # arrives as the event fires, and the loop then outlives stop_engine.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self.state.event.wait()
                self.state.event.clear()
                if self.state.synced:
                    await self.reconcile_once()
            except Exception:  # the loop must survive anything one cycle does
                log.exception("scheduler cycle failed; retrying")
                await asyncio.sleep(1)

    def _next_wake(self, now: float) -> float:
        soonest = self.state.wakes.soonest()  # a heap: no scan of every job per pass
        if soonest is None:
            soonest = now + self.settings.tick_seconds
        return max(0.0, min(soonest - now, self.settings.tick_seconds))

    async def reconcile_once(self) -> None:
        started = time.perf_counter()
        now = time.time()
        plan = self.decide(now)
        decided = time.perf_counter()
        await self.executor.execute(plan, now)
        # Multi-node parallel jobs: child nodes' pods, once their main node runs (its status
        # is written by now).
        await asyncio.gather(*(self.gangs.launch(launch, now) for launch in self.gangs.take_launches()))
        await self.gangs.delete_services()
        if plan.result.truncated:
            self.state.wake()  # more to dispatch: go round again without waiting for an event
        self.cycles += 1
        ended = time.perf_counter()
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "cycle %d: %d jobs stepped, %d dispatched%s; decided in %.3f s, executed in %.3f s",
                self.cycles, len(plan.steps), len(plan.dispatches),
                " (budget ran out)" if plan.result.truncated else "", decided - started, ended - decided,
            )  # fmt: skip
        for hook in self.on_cycle:
            hook(ended - started)

    # -- deciding (synchronous: no awaits) -------------------------------------------------------
    def decide(self, now: float) -> Plan:
        inbox = self._take_inbox(now)
        # The scheduler reads policies when jobs are restored or enqueued: give it the world first.
        world = self.reader.world()
        self.scheduler.set_world(world)
        self.arrays.forget_except(self.state.jobs.keys())
        plan = Plan(result=CycleResult([], {}, {}, {}, truncated=False))
        # 1. record new job definition revisions
        plan.definition_status = self._record_revisions(inbox.definitions, now)
        # 2. forget deleted jobs
        self._forget(inbox.forgotten, now)
        # 3. step dirty and due jobs
        self._index_dependencies(inbox.jobs)
        for ref in inbox.jobs:
            self._step(ref, plan, now)
        # 4. one scheduler cycle
        plan.result = self.scheduler.cycle(world, now)
        # 5. its decisions, into the jobs' steps
        self._apply_decisions(plan, now)
        # 6. queue positions, and the estimated starts written with them
        self._queue_positions(plan, now, world)
        return plan

    def _take_inbox(self, now: float) -> Inbox:
        st = self.state
        definitions, forgotten, dirty = st.take_changes()
        dirty |= st.wakes.pop_due(now)
        ordered = sorted((k for k in dirty if k in st.jobs), key=lambda k: st.jobs[k].arrival)
        limit = self.settings.max_steps_per_cycle
        if self._restored and 0 < limit < len(ordered):
            # A burst of submissions (100,000 at once) would otherwise be one cycle of minutes,
            # writing every status before it reads another event. The oldest jobs go first (the
            # running ones' pod events before new arrivals); the rest stay dirty for the next
            # cycle, which starts at once: as if their events had come a little later.
            # Never in the first cycle of a term: the scheduler must hold every running and
            # RUNNABLE job before it dispatches anything (capacity, order).
            st.dirty_jobs.update(ordered[limit:])
            ordered = ordered[:limit]
            st.wake()
        self._restored = True
        return Inbox(frozenset(definitions), frozenset(forgotten), tuple(ordered))

    def _record_revisions(
        self, keys: frozenset[tuple[str, str]], now: float
    ) -> dict[tuple[str, str], dict[str, object]]:
        st = self.state
        written: dict[tuple[str, str], dict[str, object]] = {}
        for key in keys:
            jd = st.definitions.get(key)
            if jd is not None:
                new = record_revisions(jd, lifecycle.iso(now))
                if new is not None:
                    st.definitions[key] = jd.model_copy(update={"status": new})
                    written[key] = new.model_dump(mode="json", exclude_none=True)
        return written

    def _forget(self, forgotten: frozenset[JobRef], now: float) -> None:
        if not forgotten:
            return
        book = self.book
        for ref in [r for r in book.held | book.restored_parents if r.parent in forgotten]:
            book.forget(ref, now)
            book.restored_parents.discard(ref)
        for ref in forgotten:
            self.scheduler.forget_waiting(ref, now)
            if ref in book.indexed:
                book.dependents_in(ref.namespace).remove(ref.name)
                book.indexed.discard(ref)

    def _index_dependencies(self, refs: Sequence[JobRef]) -> None:
        """Index every job's dependsOn (immutable) the first time it is seen, before any step,
        so a dependency that ends in this cycle finds its dependents."""
        book = self.book
        for ref in refs:
            entry = self.state.jobs.get(ref)
            if ref not in book.indexed and entry is not None:
                book.dependents_in(ref.namespace).upsert(self.reader.facts(entry))
                book.indexed.add(ref)

    def _step(self, ref: JobRef, plan: Plan, now: float) -> None:
        entry = self.state.jobs.get(ref)
        if entry is None:
            return
        entry.wake_at = None
        if entry.job.spec.arrayProperties is not None:
            entry.dirty_children |= entry.timed_children
            step = self.arrays.step(ref, entry, ParentHost(self.reader, entry, now), now)
            array_was_terminal = entry.status.status in TERMINAL_STATES
            entry.status = step.status
            entry.wake_at = step.wake_at if entry.wake_at is None else entry.wake_at
            plan.steps[ref] = step
            plan.arrays.add(ref)
            if step.status.status in TERMINAL_STATES:
                entry.wake_at = self._ttl_deadline(step.status)
                if not array_was_terminal:  # e.g. failed before spawning: N_TO_N dependents fail
                    self.book.wake_dependents(ref)
            return
        self._restore(ref, entry, now)
        ctx = self.reader.context(entry)
        step = lifecycle.advance(entry.job, entry.status, ctx, now)
        found = self.reader.definition(entry)
        mnp_spec = found[1] if not isinstance(found, str) and found[1].nodeProperties is not None else None
        if mnp_spec is not None:
            self.gangs.before_feed(ref, entry, mnp_spec, step, ctx, now)
        self._feed_scheduler(ref, entry, step, now)
        if step.status.status == JobState.RUNNABLE and ref not in self.book.held and ctx.definition is None:
            # Its pinned revision can't be read (the JobDefinition was deleted): say so
            # rather than wait forever.
            lifecycle.fail(step, now, ctx.definition_problem or "the job definition can't be read")
        if ctx.pod is not None and ctx.pod.node and step.status.status in POD_STATES:
            # kube-scheduler may pick another node than the first fit we charged: follow it.
            self.scheduler.bind(ref, ctx.pod.node)
        if mnp_spec is not None:
            # A multi-node parallel job: the main node's pod is the attempt's pod; the gang's
            # other nodes follow it (adapters.mnp).
            self.gangs.after_step(ref, entry, mnp_spec, step, now)
        was_terminal = entry.status.status in TERMINAL_STATES
        entry.status = step.status
        entry.wake_at = step.wake_at
        plan.steps[ref] = step
        if step.status.status in TERMINAL_STATES:
            entry.wake_at = self._ttl_deadline(step.status)
            if not was_terminal:  # only the transition can release dependents
                self.book.wake_dependents(ref)
                if step.status.status == JobState.SUCCEEDED:
                    self._record_run_time(entry, step)

    def _restore(self, ref: JobRef, entry: JobEntry, now: float) -> None:
        """First sight of a job already RUNNABLE/STARTING/RUNNING (operator restart): tell the scheduler."""
        if ref in self.book.held:
            return
        state = entry.status.status
        if state == JobState.RUNNABLE and self._adopt_dispatched(ref, entry, now):
            return
        if state == JobState.RUNNABLE:
            view = self.reader.job_view(ref, entry, retried=bool(entry.status.attempts), now=now)
            if view is not None:
                self.scheduler.add_runnable(view, now)
                self.book.held.add(ref)
        elif state in POD_STATES:
            view = self.reader.job_view(ref, entry, now=now)
            attempt = entry.status.attempts[-1] if entry.status.attempts else None
            if view is not None and attempt is not None:
                ce = attempt.computeEnvironment or entry.status.computeEnvironment or ""
                self.scheduler.add_running(view, ce, None, now, state=state)
                self.book.held.add(ref)

    def _adopt_dispatched(self, ref: JobRef, entry: JobEntry, now: float) -> bool:
        """A job RUNNABLE in the API whose next attempt's pod exists was dispatched by an operator
        that stopped before writing STARTING (core.lifecycle.starting_write_hold, or a crash
        between the create and the write): that attempt started. Charge it where its pod is and
        follow the pod; never dispatch the attempt again."""
        if entry.job.spec.arrayProperties is not None:
            return False
        attempt = lifecycle.next_pod_name_attempt(entry.status)
        name = pod_name(entry.job.metadata.name or "", attempt, None)
        pod = self.state.pods.get((ref.namespace, name))
        if pod is None or pod.job_uid != entry.job.metadata.uid or pod.node_index is not None:
            return False
        ce = pod.compute_environment or ""
        entry.status = lifecycle.start_attempt(
            entry.status, pod_name=name, compute_environment=ce, now=now
        ).status
        view = self.reader.job_view(ref, entry, now=now)
        if view is not None:
            self.scheduler.add_running(view, ce, pod.obs.node, now, state=JobState.STARTING.value)
            self.book.held.add(ref)
        return True

    def _feed_scheduler(self, ref: JobRef, entry: JobEntry, step: lifecycle.Step, now: float) -> None:
        if step.release:
            self.book.release(ref, now, keep=step.enqueue)
        if step.enqueue:
            view = self.reader.job_view(ref, entry, retried=step.retried, now=now)
            if view is not None:
                refused = self.scheduler.add_runnable(view, now)
                if refused is None:
                    self.book.held.add(ref)
                else:
                    # AWS: a job that would add a 501st active share identifier to its queue fails.
                    lifecycle.fail(step, now, refused.status_reason)
                    step.wake_at = None
        if step.status.status == JobState.RUNNING and entry.status.status == JobState.STARTING:
            self.scheduler.mark_running(ref)
        share = entry.job.spec.shareIdentifier
        if share and step.status.status in (JobState.SUBMITTED, JobState.PENDING):
            # AWS: SUBMITTED and PENDING jobs make their share identifier active too.
            refused = self.scheduler.note_waiting(ref, entry.job.spec.jobQueue, share, now)
            if refused is not None:
                lifecycle.fail(step, now, refused.status_reason)
                step.wake_at = None
        elif share and not step.enqueue:
            self.scheduler.forget_waiting(ref, now)

    def _ttl_deadline(self, status: BatchJobStatus) -> float | None:
        stopped = lifecycle.epoch(status.stoppedAt)
        return None if stopped is None else stopped + self.settings.finished_job_ttl_seconds

    def _apply_decisions(self, plan: Plan, now: float) -> None:
        for decision in plan.result.decisions:
            target = decision.job_key
            assert isinstance(target, JobRef)
            ref = target.parent
            entry = self.state.jobs.get(ref)
            if entry is None:
                continue
            if isinstance(decision, Dispatch):
                plan.dispatches.append(decision)
                if decision.nodes:
                    plan.step_for(ref, entry, now).events.append(
                        lifecycle.Event(
                            "Normal",
                            "GangAdmitted",
                            f"All {len(decision.nodes)} nodes of the job fit in compute environment "
                            f"{decision.compute_environment}: capacity held for the whole gang; main node first",
                        )
                    )
                continue
            step = plan.step_for(ref, entry, now)
            if target.is_child:
                # An array child: only Cancel changes it; a blocked child shows on the parent.
                if isinstance(decision, Cancel):
                    self.arrays.failed(target, entry, decision.status_reason)
                elif isinstance(decision, Block):
                    step.status.statusReason = decision.status_reason
                else:
                    step.status.statusReason = None
                plan.arrays.add(ref)
            elif isinstance(decision, Block):
                step.status.statusReason = decision.status_reason
            elif isinstance(decision, Unblock):
                step.status.statusReason = None
            else:
                lifecycle.fail(step, now, decision.status_reason, cancelled=True)
                self.book.held.discard(ref)
                self.book.wake_dependents(ref)

    def _queue_positions(self, plan: Plan, now: float, world: World) -> None:
        st = self.state
        for step in plan.steps.values():
            if step.status.status != JobState.RUNNABLE:
                step.status.queuePosition = None
                step.status.estimatedStartAt = step.status.estimatedStartBasis = None
        dispatched: set[object] = set()
        for decision in plan.dispatches:
            target = decision.job_key
            assert isinstance(target, JobRef)
            dispatched.add(target)
            entry = st.jobs.get(target.parent)
            if entry is not None:
                entry.status.queuePosition = None  # start_attempt copies it; the pod may not exist yet
                entry.status.estimatedStartAt = entry.status.estimatedStartBasis = None
        due = self.positions.due

        def position_of(key: object) -> tuple[bool, int | None] | None:
            entry = st.jobs.get(key) if isinstance(key, JobRef) else None
            return (
                None
                if entry is None
                else (entry.status.status == JobState.RUNNABLE, entry.status.queuePosition)
            )

        changes = self.positions.refresh(
            now,
            st.queues,
            self.scheduler.snapshot,
            position_of,
            lambda: [k for k, e in st.jobs.items() if e.status.queuePosition is not None],
            dispatched,
        )
        for key, position in changes.items():
            assert isinstance(key, JobRef)
            status = plan.step_for(key, st.jobs[key], now).status
            status.queuePosition = position
            if position is None:
                status.estimatedStartAt = status.estimatedStartBasis = None
        if self.positions.due != due:  # the positions were refreshed: so are the estimates
            self._estimated_starts(plan, now, world, changes, dispatched)

    def _estimated_starts(
        self,
        plan: Plan,
        now: float,
        world: World,
        changes: Mapping[object, int | None],
        dispatched: set[object],
    ) -> None:
        """status.estimatedStartAt of the positioned jobs (core.estimate), written with the
        positions: when a position is written, or when the estimate moved enough."""
        st = self.state
        holding: dict[str, list[estimate.Running]] = {}
        for key, ce, demand in self.scheduler.holdings():
            assert isinstance(key, JobRef)
            holding.setdefault(ce, []).append(self._running(key, demand.vcpus))
        for queue, order in self.positions.order.items():
            view = world.queues.get(queue)
            if view is None or not order:
                continue
            ces = view.compute_environment_order
            waiting = []
            for key in order:
                assert isinstance(key, JobRef)
                entry = st.jobs.get(key.parent)
                vcpus = self.scheduler.vcpus_of(key)
                waiting.append(estimate.Waiting(key, vcpus, self._expected(entry) if entry else None))
            starts = estimate.estimate_starts(
                waiting,
                [r for ce in ces for r in holding.get(ce, ())],
                estimate.queue_capacity(ces, world.compute_environments),
                now,
            )
            for key, found in starts.items():
                assert isinstance(key, JobRef)
                entry = st.jobs.get(key)
                if key.index is not None or entry is None or key in dispatched:
                    continue  # array children are not objects: no status of their own
                if entry.status.status != JobState.RUNNABLE:
                    continue
                at = found.at if found is not None else None
                old = lifecycle.epoch(entry.status.estimatedStartAt)
                if key in changes or estimate.worth_writing(old, at, now):
                    status = plan.step_for(key, entry, now).status
                    status.estimatedStartAt = lifecycle.iso(at) if at is not None else None
                    status.estimatedStartBasis = found.basis if found is not None else None

    def _expected(self, entry: JobEntry) -> tuple[float, str] | None:
        """One attempt's expected run time: recent run times of its definition, its timeout."""
        timeout = entry.status.timeout or entry.job.spec.timeout
        seconds = timeout.attemptDurationSeconds if timeout is not None else None
        return estimate.expected_run(self.run_times.typical(_definition_key(entry)), seconds)

    def _running(self, key: JobRef, vcpus: float) -> estimate.Running:
        entry = self.state.jobs.get(key.parent)
        if entry is None:
            return estimate.Running(vcpus, None, None)
        started = None
        if key.index is None and entry.status.status == JobState.RUNNING and entry.status.attempts:
            started = lifecycle.epoch(entry.status.attempts[-1].startedAt)
        # An array child's start is not kept per child: counted as starting now.
        return estimate.Running(vcpus, started, self._expected(entry))

    def _record_run_time(self, entry: JobEntry, step: lifecycle.Step) -> None:
        """A job SUCCEEDED: its run time joins its definition's recent ones (core.estimate)."""
        attempt = step.status.attempts[-1] if step.status.attempts else None
        started = lifecycle.epoch(attempt.startedAt) if attempt is not None else None
        stopped = lifecycle.epoch(attempt.stoppedAt) if attempt is not None else None
        if started is not None and stopped is not None:
            self.run_times.record(_definition_key(entry), stopped - started)


def _definition_key(entry: JobEntry) -> tuple[str, str]:
    """(namespace, job definition name): whose run times predict this job's (any revision)."""
    return entry.job.metadata.namespace or "", entry.job.spec.jobDefinition.partition(":")[0]
