"""The scheduler loop: read the cluster state, ask the pure core for decisions, execute them.

One loop per operator. A cycle:

1. records new job definition revisions (``core.revisions``);
2. steps every dirty job through its lifecycle (``core.lifecycle``) and feeds the scheduler
   (RUNNABLE jobs in, finished attempts out);
3. runs one scheduling cycle (``core.scheduler``) over the queues and compute environments;
4. executes: pod deletions, pod creations for dispatches (a dispatch is assumed in the scheduler
   before its pod exists and undone if the create fails; a 409 means the pod of that attempt
   already exists, so a restarted operator never makes a second one), then one merge patch of
   status per changed job, events, and queue / compute environment status.

Pod names are deterministic per job and attempt, so every write here is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from batchyard import API_VERSION, GROUP, VERSION
from batchyard.adapters.arrayjobs import ArrayRunner, children_of
from batchyard.adapters.kube import ApiError, Kube
from batchyard.adapters.mnp import GangRunner, is_mnp, node_consumables, node_demands
from batchyard.adapters.objectstatus import QueuePositions
from batchyard.adapters.state import JOB_UID_LABEL, ClusterState, JobEntry, JobKey
from batchyard.api.batchjob import BatchJob, BatchJobStatus
from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.api.consumableresource import ConsumableResource
from batchyard.api.jobdefinition import JobDefinitionSpec
from batchyard.core import deps, lifecycle
from batchyard.core.backoff import KeyedBackoff
from batchyard.core.capacity import CEView, NodeView, Resources
from batchyard.core.consumables import ConsumableView, requirement_problems
from batchyard.core.effective import effective
from batchyard.core.fairshare import PolicyView
from batchyard.core.jobstate import JobState
from batchyard.core.refusals import classify_pod_refusal
from batchyard.core.retry import ExitRule, parse_action
from batchyard.core.revisions import record_revisions, resolve
from batchyard.core.scheduler import (
    Block,
    Cancel,
    CycleResult,
    Dispatch,
    JobView,
    QueueView,
    Scheduler,
    TimeLimitAction,
    Unblock,
    World,
)
from batchyard.core.tenancy import OperatorIdentity, namespace_refusal, service_account_refusal
from batchyard.render import pod as render

log = logging.getLogger("batchyard.loop")

TERMINAL = ("SUCCEEDED", "FAILED")
UNBOUNDED_VCPUS = 1_000_000
POD_CONFLICT_RETRY_SECONDS = 2.0
EXPIRY_SCAN_SECONDS = 10.0
MAX_EXPIRIES_PER_SCAN = 200


@dataclass(frozen=True)
class Settings:
    keep_pods: bool = False  # keep finished pods for debugging
    finished_job_ttl_seconds: float = 7 * 24 * 3600  # AWS keeps finished jobs at least 7 days
    tick_seconds: float = 1.0  # the loop wakes at least this often (timeouts, time limits)
    create_concurrency: int = 16
    # Test knob (env BATCHYARD_TIME_LIMIT_SCALE): multiplies every jobStateTimeLimitActions
    # maxTimeSeconds. The CRD keeps AWS's 600 s minimum; cluster tests run with a small scale.
    time_limit_scale: float = 1.0
    # status.queuePosition: the first N RUNNABLE jobs of each queue, refreshed at most this often
    # (see adapters.objectstatus.QueuePositions).
    queue_positions: int = 100
    queue_position_interval_seconds: float = 5.0
    # hostNetwork of an eksProperties job that does not set it. AWS defaults it to true, but Pod
    # Security baseline and restricted refuse host networking, so Batchyard defaults to false;
    # BATCHYARD_EKS_HOST_NETWORK=true (Helm operator.eksHostNetworkDefault) restores AWS's default.
    eks_host_network: bool = False
    # BATCHYARD_RESTRICTED_POD_DEFAULTS (Helm operator.restrictedPodDefaults): fill what Pod
    # Security restricted requires where the definition is silent (render.pod._restricted_defaults).
    restricted_pod_defaults: bool = False
    # The operator's namespace and ServiceAccount, out of a job's reach (core.tenancy).
    identity: OperatorIdentity = field(default_factory=OperatorIdentity)


@dataclass(frozen=True)
class CECapacity:
    nodes: tuple[NodeView, ...] | None = None
    max_node: Resources | None = None
    status: str = "VALID"
    status_reason: str = ""
    scaling: bool = False  # the node pool follows demand (see core.capacity.CEView)


@dataclass
class Plan:
    """What one cycle decided, to be executed by ``execute``."""

    steps: dict[JobKey, lifecycle.Step] = field(default_factory=dict)
    dispatches: list[tuple[Dispatch, JobKey]] = field(default_factory=list)
    definition_status: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    arrays: set[JobKey] = field(default_factory=set)  # array parents whose children moved
    result: CycleResult | None = None


def _path(plural: str, name: str, namespace: str | None = None, sub: str = "") -> str:
    ns = f"/namespaces/{namespace}" if namespace else ""
    return f"/apis/{GROUP}/{VERSION}{ns}/{plural}/{name}{'/' + sub if sub else ''}"


def status_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) turning ``old`` into ``new``.

    Objects merge key by key on the server, so a key that disappeared must be sent as null at
    every depth (a child index range that is no longer RUNNABLE, say); lists are replaced whole.
    """
    patch: dict[str, Any] = {}
    for k in set(old) | set(new):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            patch[k] = status_diff(a, b)
        else:
            patch[k] = b
    return patch


class Controller:
    def __init__(self, kube: Kube, state: ClusterState, settings: Settings | None = None) -> None:
        self.kube = kube
        self.state = state
        self.settings = settings or Settings()
        self.scheduler = Scheduler()
        self.known: set[tuple[Any, ...]] = set()  # job (and array child) keys the scheduler holds
        self.cycles = 0
        # Liveness (adapters.health): monotonic time the loop last went round (idle or not).
        self.heartbeat = time.monotonic()
        # Failed status writes back off per job (exponential with jitter, capped).
        self.write_backoff = KeyedBackoff()
        # Pod creates refused for now (core.refusals: quota, throttling) back off per job/child.
        self.create_backoff = KeyedBackoff(base_seconds=1.0, cap_seconds=60.0)
        self.on_cycle: list[Callable[[float], None]] = []
        # Status writers for the cluster-scoped kinds (queues, consumables: adapters.objectstatus;
        # compute environments: adapters.scaler), called after each cycle with its result.
        self.object_status_writers: list[Callable[[CycleResult], Awaitable[None]]] = []
        self.last_result: CycleResult | None = None
        # Called once per job state change that reached the API server: (entry, old, new).
        self.on_transition: list[Callable[[JobEntry, str | None, str | None], None]] = []
        # Compute-environment facts owned by the node-pool reconciler (adapters.scaler): its
        # nodes (None: capacity appears on demand), largest launchable node, and VALID/INVALID.
        self.ce_capacity: dict[str, CECapacity] = {}
        self._sem = asyncio.Semaphore(self.settings.create_concurrency)
        self._event_tasks: set[asyncio.Task[None]] = set()
        self._next_expiry_scan = 0.0
        # Jobs whose (child's) end may release dependents this cycle: their status is written
        # before any pod is created, so nobody sees a dependent start before its dependency ended.
        self.finished_first: set[JobKey] = set()
        # Reverse dependency indexes per namespace, and the jobs already in them.
        self._dependents: dict[str, deps.DependentsIndex] = {}
        self.indexed: set[JobKey] = set()
        self.queue_positions = QueuePositions(self)
        self.arrays = ArrayRunner(self)
        self.gangs = GangRunner(self)  # multi-node parallel jobs (adapters.mnp)
        self.ensure_child_pods: list[tuple[str, str, int]] = []

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
        due = [e.wake_at for e in self.state.jobs.values() if e.wake_at is not None]
        soonest = min(due, default=now + self.settings.tick_seconds)
        return max(0.0, min(soonest - now, self.settings.tick_seconds))

    async def reconcile_once(self) -> None:
        started = time.perf_counter()
        now = time.time()
        plan = self.decide(now)
        await self.execute(plan, now)
        self.cycles += 1
        for hook in self.on_cycle:
            hook(time.perf_counter() - started)

    # -- deciding (synchronous: no awaits) -------------------------------------------------------
    def decide(self, now: float) -> Plan:
        plan = Plan()
        st = self.state
        # The scheduler reads policies when jobs are restored or enqueued: give it the world first.
        world = self._world()
        self.scheduler.set_world(world)
        self.arrays.begin_cycle()
        for key in list(st.dirty_definitions):
            jd = st.definitions.get(key)
            if jd is not None:
                new = record_revisions(jd, lifecycle.iso(now))
                if new is not None:
                    st.definitions[key] = jd.model_copy(update={"status": new})
                    plan.definition_status[key] = new.model_dump(mode="json", exclude_none=True)
        st.dirty_definitions.clear()

        if st.forgotten_jobs:
            for k in [k for k in self.known if k[:2] in st.forgotten_jobs]:
                self.scheduler.remove(k, now)
                self.known.discard(k)
            for ns, name in st.forgotten_jobs:
                self.scheduler.forget_waiting((ns, name), now)
                if (ns, name) in self.indexed:
                    self.dependents_in(ns).remove(name)
                    self.indexed.discard((ns, name))
        st.forgotten_jobs.clear()

        # Take the dirty set first and then add the due jobs: nothing marked dirty is lost.
        dirty, st.dirty_jobs = st.dirty_jobs, set()
        dirty |= {k for k, e in st.jobs.items() if e.wake_at is not None and e.wake_at <= now}
        # Index every job's dependsOn (immutable) the first time it is seen, before any step, so
        # a dependency that ends in this cycle finds its dependents.
        for key in dirty - self.indexed:
            entry = st.jobs.get(key)
            if entry is not None:
                self.dependents_in(key[0]).upsert(self._facts(entry))
                self.indexed.add(key)
        for key in sorted(dirty, key=lambda k: e.arrival if (e := st.jobs.get(k)) is not None else -1):
            entry = st.jobs.get(key)
            if entry is None:
                continue
            entry.wake_at = None
            if entry.job.spec.arrayProperties is not None:
                entry.dirty_children |= entry.timed_children
                step = self.arrays.step(key, entry, now)
                array_was_terminal = entry.status.status in TERMINAL
                entry.status = step.status
                entry.wake_at = step.wake_at if entry.wake_at is None else entry.wake_at
                plan.steps[key] = step
                plan.arrays.add(key)
                if step.status.status in TERMINAL:
                    entry.wake_at = self._ttl_deadline(step.status)
                    if not array_was_terminal:  # e.g. failed before spawning: N_TO_N dependents fail
                        self._wake_dependents(entry)
                continue
            self._restore(key, entry, now)
            ctx = self._context(entry)
            step = lifecycle.advance(entry.job, entry.status, ctx, now)
            self._feed_scheduler(key, entry, step, now)
            if step.status.status == "RUNNABLE" and key not in self.known and ctx.definition is None:
                # Its pinned revision can't be read (the JobDefinition was deleted): say so
                # rather than wait forever.
                lifecycle.fail(step, now, ctx.definition_problem or "the job definition can't be read")
            if ctx.pod is not None and ctx.pod.node and step.status.status in ("STARTING", "RUNNING"):
                # kube-scheduler may pick another node than the first fit we charged: follow it.
                self.scheduler.bind(key, ctx.pod.node)
            mnp_spec = self._mnp_spec(entry)
            if mnp_spec is not None:
                # The main node's pod is the attempt's pod; the gang's other nodes follow it.
                self.gangs.after_step(key, entry, mnp_spec, step, now)
            was_terminal = entry.status.status in TERMINAL
            entry.status = step.status
            entry.wake_at = step.wake_at
            plan.steps[key] = step
            if step.status.status in TERMINAL:
                entry.wake_at = self._ttl_deadline(step.status)
                if not was_terminal:  # only the transition can release dependents
                    self._wake_dependents(entry)

        plan.result = self.scheduler.cycle(world, now)
        for decision in plan.result.decisions:
            dkey: Any = decision.job_key
            key = (dkey[0], dkey[1])
            entry = st.jobs.get(key)
            if entry is None:
                continue
            if isinstance(decision, Dispatch):
                plan.dispatches.append((decision, key))
            elif len(dkey) == 3:
                # An array child: only Cancel changes it; a blocked child shows on the parent.
                step = plan.steps.get(key) or lifecycle.Step(
                    status=entry.status.model_copy(deep=True), now=now
                )
                if isinstance(decision, Cancel):
                    self.arrays.cancelled(key, entry, dkey[2], decision.status_reason, step)
                elif isinstance(decision, Block):
                    step.status.statusReason = decision.status_reason
                else:
                    step.status.statusReason = None
                entry.status = step.status
                plan.steps[key] = step
                plan.arrays.add(key)
            elif isinstance(decision, Block | Unblock | Cancel):
                step = plan.steps.get(key) or lifecycle.Step(
                    status=entry.status.model_copy(deep=True), now=now
                )
                if isinstance(decision, Block):
                    step.status.statusReason = decision.status_reason
                elif isinstance(decision, Unblock):
                    step.status.statusReason = None
                else:
                    lifecycle.fail(step, now, decision.status_reason, cancelled=True)
                    self.known.discard(key)
                    self._wake_dependents(entry)
                entry.status = step.status
                plan.steps[key] = step
        self.queue_positions.refresh(plan, now)
        return plan

    def _restore(self, key: JobKey, entry: JobEntry, now: float) -> None:
        """First sight of a job already RUNNABLE/STARTING/RUNNING (operator restart): tell the scheduler."""
        if key in self.known:
            return
        state = entry.status.status
        if state == "RUNNABLE":
            view = self._job_view(key, entry, retried=bool(entry.status.attempts))
            if view is not None:
                self.scheduler.add_runnable(view, now)
                self.known.add(key)
        elif state in ("STARTING", "RUNNING"):
            view = self._job_view(key, entry)
            attempt = entry.status.attempts[-1] if entry.status.attempts else None
            if view is not None and attempt is not None:
                ce = attempt.computeEnvironment or entry.status.computeEnvironment or ""
                self.scheduler.add_running(view, ce, None, now, state=state)
                self.known.add(key)

    def _mnp_spec(self, entry: JobEntry) -> JobDefinitionSpec | None:
        resolved = self._definition(entry)
        return resolved[1] if not isinstance(resolved, str) and is_mnp(resolved[1]) else None

    def _restored(self, key: JobKey) -> bool:
        return key in self.known

    def _feed_scheduler(self, key: JobKey, entry: JobEntry, step: lifecycle.Step, now: float) -> None:
        if step.release and key in self.known:
            if self.scheduler.state_of(key) in ("STARTING", "RUNNING"):
                self.scheduler.attempt_ended(key, now)
            if not step.enqueue:
                self.scheduler.remove(key, now)
                self.known.discard(key)
        if step.enqueue:
            view = self._job_view(key, entry, retried=step.retried)
            if view is not None:
                refused = self.scheduler.add_runnable(view, now)
                if refused is None:
                    self.known.add(key)
                else:
                    # AWS: a job that would add a 501st active share identifier to its queue fails.
                    lifecycle.fail(step, now, refused.status_reason)
                    step.wake_at = None
        if step.status.status == "RUNNING" and entry.status.status == "STARTING":
            self.scheduler.mark_running(key)
        share = entry.job.spec.shareIdentifier
        if share and step.status.status in ("SUBMITTED", "PENDING"):
            # AWS: SUBMITTED and PENDING jobs make their share identifier active too.
            refused = self.scheduler.note_waiting(key, entry.job.spec.jobQueue, share, now)
            if refused is not None:
                lifecycle.fail(step, now, refused.status_reason)
                step.wake_at = None
        elif share and not step.enqueue:
            self.scheduler.forget_waiting(key, now)

    def _definition(self, entry: JobEntry) -> tuple[int, JobDefinitionSpec] | str:
        """The revision the job runs. Once pinned it is kept with the job, so a definition
        deleted (or edited) while the job runs changes nothing for it (AWS: revisions are
        immutable)."""
        pinned = entry.status.jobDefinitionRevision
        if pinned is not None and entry.definition is not None and entry.definition[0] == pinned:
            return entry.definition
        job = entry.job
        name = job.spec.jobDefinition.partition(":")[0]
        jd = self.state.definitions.get((job.metadata.namespace or "", name))
        resolved = resolve(jd, job.spec.jobDefinition, pinned)
        if pinned is not None and not isinstance(resolved, str):
            entry.definition = resolved
        return resolved

    def _context(
        self,
        entry: JobEntry,
        *,
        pod: lifecycle.PodObs | None = None,
        pod_seen: bool | None = None,
        dependencies: deps.Resolution | None = None,
    ) -> lifecycle.Context:
        job = entry.job
        queue = self.state.queues.get(job.spec.jobQueue)
        queue_problem = None
        if entry.status.status is None:
            # The operator's namespace and kube-system are not served unless listed.
            queue_problem = namespace_refusal(job.metadata.namespace or "", self.settings.identity)
        if queue is not None and entry.status.status is None and queue_problem is None:
            queue_problem = lifecycle.queue_refusal(
                job.spec.jobQueue,
                queue.spec.state,
                queue.spec.allowedNamespaces,
                job.metadata.namespace or "",
                scheduling_policy=queue.spec.schedulingPolicy,
                share_identifier=job.spec.shareIdentifier,
            )
        resolved = self._definition(entry)
        definition: lifecycle.Resolved | None = None
        problem = None
        if isinstance(resolved, str):
            problem = resolved
        else:
            revision, spec = resolved
            strategy = job.spec.retryStrategy or spec.retryStrategy
            timeout = job.spec.timeout or spec.timeout
            rules = tuple(
                ExitRule(parse_action(r.action), r.onExitCode, r.onReason, r.onStatusReason)
                for r in (strategy.evaluateOnExit or [] if strategy else [])
            )
            definition = lifecycle.Resolved(
                revision=revision,
                rules=rules,
                attempts=(strategy.attempts if strategy and strategy.attempts else 1),
                attempt_duration_seconds=timeout.attemptDurationSeconds if timeout else None,
                problems=tuple(render.render_problems(job, spec))
                + _unsupported(spec)
                + self._identity_problems(job, spec),
                effective=effective(job.spec, spec),
            )
        consumable_problems: tuple[str, ...] = ()
        if entry.status.status in (None, "SUBMITTED") and not isinstance(resolved, str):
            # Admission only: a resource deleted later leaves RUNNABLE jobs waiting (AWS).
            props = job.spec.consumableResourcePropertiesOverride or resolved[1].consumableResourceProperties
            needs = {
                c.consumableResource: c.quantity
                for c in (props.consumableResourceList or [] if props else [])
            }
            if needs:
                consumable_problems = tuple(
                    requirement_problems(needs, {v.name: v for v in self._consumable_views()})
                )
        attempt = entry.status.attempts[-1] if entry.status.attempts else None
        if pod is None and pod_seen is None and attempt is not None and attempt.podName:
            found = self.state.pods.get((job.metadata.namespace or "", attempt.podName))
            # A pod of the same name may belong to an older job of the same name.
            pod = found.obs if found is not None and found.job_uid == job.metadata.uid else None
        if pod_seen is None:
            pod_seen = bool(attempt and attempt.podName in entry.pods_seen)
        return lifecycle.Context(
            queue_exists=queue is not None,
            queue_problem=queue_problem,
            definition=definition,
            definition_problem=problem,
            dependencies=dependencies if dependencies is not None else self._dependencies(entry),
            pod=pod,
            pod_seen=pod_seen,
            keep_pods=self.settings.keep_pods,
            consumable_problems=consumable_problems,
        )

    def _identity_problems(self, job: BatchJob, spec: JobDefinitionSpec) -> tuple[str, ...]:
        """A job can't run as the operator's ServiceAccount (core.tenancy)."""
        pod = spec.eksProperties.podProperties if spec.eksProperties is not None else None
        account = pod.serviceAccountName if pod is not None else None
        refusal = service_account_refusal(job.metadata.namespace or "", account, self.settings.identity)
        return (refusal,) if refusal else ()

    def _facts(self, entry: JobEntry) -> deps.JobFacts:
        job = entry.job
        return deps.JobFacts(
            name=job.metadata.name or "",
            uid=job.metadata.uid or "",
            state=JobState(entry.status.status) if entry.status.status else JobState.SUBMITTED,
            array_size=job.spec.arrayProperties.size if job.spec.arrayProperties else None,
            depends_on=tuple(
                deps.Dependency(d.jobId, deps.DependencyType.from_api(d.type))
                for d in job.spec.dependsOn or []
            ),
            # Restored from status on first use, so a dependency read before its own step is seen.
            children=children_of(entry) if job.spec.arrayProperties is not None else None,
        )

    def _lookup(self, entry: JobEntry) -> deps.Lookup:
        namespace = entry.job.metadata.namespace or ""

        def lookup(ref: str) -> deps.JobFacts | None:
            key = self.state.uids.get(ref) or (namespace, ref)
            found = self.state.jobs.get(key)
            return self._facts(found) if found is not None and key[0] == namespace else None

        return lookup

    def _dependencies(self, entry: JobEntry) -> deps.Resolution:
        if not entry.job.spec.dependsOn:
            return deps.READY
        return deps.resolve_job(self._facts(entry), self._lookup(entry))

    def _wake_dependents(self, entry: JobEntry) -> None:
        job = entry.job
        namespace = job.metadata.namespace or ""
        self.finished_first.add((namespace, job.metadata.name or ""))
        index = self.dependents_in(namespace)
        for name in index.dependents_of(job.metadata.name or ""):
            other = self.state.jobs.get((namespace, name))
            if other is not None and other.status.status in (None, "SUBMITTED", "PENDING"):
                self.state.dirty_jobs.add((namespace, name))
        if job.spec.arrayProperties is not None and entry.children is None:
            # An array that ended before spawning: children waiting N_TO_N on it resolve now.
            for name in index.n_to_n_dependents_of(job.metadata.name or ""):
                other = self.state.jobs.get((namespace, name))
                if other is not None and other.children is not None:
                    other.dirty_children |= set(other.children.in_state(JobState.PENDING))
                    self.state.dirty_jobs.add((namespace, name))
        if self.state.dirty_jobs:
            self.state.wake()

    def dependents_in(self, namespace: str) -> deps.DependentsIndex:
        """The reverse dependency index of one namespace (dependencies never cross namespaces)."""
        index = self._dependents.get(namespace)
        if index is None:
            index = self._dependents[namespace] = deps.DependentsIndex()
        return index

    def _ttl_deadline(self, status: BatchJobStatus) -> float | None:
        stopped = lifecycle.epoch(status.stoppedAt)
        return None if stopped is None else stopped + self.settings.finished_job_ttl_seconds

    def _job_view(self, key: Any, entry: JobEntry, retried: bool = False) -> JobView | None:
        resolved = self._definition(entry)
        if isinstance(resolved, str):
            return None
        _, spec = resolved
        job = entry.job
        priority = job.spec.schedulingPriorityOverride
        if priority is None:
            priority = spec.schedulingPriority or 0
        consumables = job.spec.consumableResourcePropertiesOverride or spec.consumableResourceProperties
        needs = {
            c.consumableResource: c.quantity
            for c in (consumables.consumableResourceList or [] if consumables else [])
        }
        gang: tuple[Resources, ...] = ()
        if is_mnp(spec):
            # AWS gang scheduling: all nodes at once, each with its own demand and consumables
            gang = node_demands(entry, spec)
            needs = node_consumables(entry, spec, needs)
        return JobView(
            key=key,
            queue=job.spec.jobQueue,
            submitted_at=lifecycle.epoch(entry.status.createdAt or job.metadata.creationTimestamp)
            or time.time(),
            demand=render.job_demand(job, spec),
            share_identifier=job.spec.shareIdentifier,
            scheduling_priority=priority,
            retried=retried,
            consumables=needs,
            node_demands=gang,
        )

    def _time_limit(self, seconds: int) -> int:
        return math.ceil(seconds * self.settings.time_limit_scale)  # the scale is a test knob (Settings)

    def _world(self) -> World:
        st = self.state
        ces = []
        for ce in st.compute_environments.values():
            cr = ce.spec.computeResources
            # An UNMANAGED environment has no maxvCpus: unmanagedvCpus (what AWS counts it as)
            # caps it when set, else its nodes are the limit (the real scheduler keeps pods
            # Pending until they fit).
            unmanaged = ce.spec.type == "UNMANAGED"
            unmanaged_cap = ce.spec.unmanagedvCpus or UNBOUNDED_VCPUS
            name = ce.metadata.name or ""
            cap = self.ce_capacity.get(name, CECapacity())
            ces.append(
                CEView(
                    name=name,
                    max_vcpus=(cr.maxvCpus if cr else 0) if not unmanaged else unmanaged_cap,
                    managed=not unmanaged,
                    state=ce.spec.state or "ENABLED",
                    status=cap.status,
                    status_reason=cap.status_reason,
                    nodes=cap.nodes,
                    max_node=cap.max_node,
                    scaling=cap.scaling,
                    instance_types=tuple(cr.instanceTypes or ()) if cr else (),
                )
            )
        queues = []
        for q in st.queues.values():
            policy = None
            if q.spec.schedulingPolicy and q.spec.schedulingPolicy in st.policies:
                fp = st.policies[q.spec.schedulingPolicy].spec.fairsharePolicy
                if fp is not None:
                    policy = PolicyView(
                        # AWS User Guide "Fair-share scheduling policies": "A value of zero
                        # indicates that only current usage is measured" (unset is 0 too).
                        share_decay_seconds=fp.shareDecaySeconds or 0,
                        compute_reservation=fp.computeReservation or 0,
                        weights={
                            s.shareIdentifier: float(s.weightFactor or 1.0)
                            for s in fp.shareDistribution or []
                        },
                    )
            queues.append(
                QueueView(
                    name=q.metadata.name or "",
                    priority=q.spec.priority,
                    compute_environment_order=tuple(
                        o.computeEnvironment
                        for o in sorted(q.spec.computeEnvironmentOrder, key=lambda o: o.order)
                    ),
                    state=q.spec.state or "ENABLED",
                    policy=policy,
                    time_limit_actions=tuple(
                        TimeLimitAction(a.reason, self._time_limit(a.maxTimeSeconds), a.action, a.state)
                        for a in q.spec.jobStateTimeLimitActions or []
                    ),
                )
            )
        return World.of(ces, queues, self._consumable_views())

    def _consumable_views(self) -> list[ConsumableView]:
        return [
            ConsumableView(
                name=c.metadata.name or "",
                total_quantity=c.spec.totalQuantity,
                resource_type=c.spec.resourceType or "REPLENISHABLE",
                consumed=_consumed(c),
            )
            for c in self.state.consumables.values()
        ]

    # -- executing ---------------------------------------------------------------------------
    async def execute(self, plan: Plan, now: float) -> None:
        st = self.state
        for key, status in plan.definition_status.items():
            await self.patch_status("jobdefinitions", key[1], key[0], status)

        # Pods are deleted only after the statuses are written: a finished attempt's result
        # must reach the API server before its pod goes, or a restart in between would see a
        # RUNNING job without a pod and run it again.
        deletes = [(key, pod) for key, step in plan.steps.items() for pod in step.delete_pods]
        creates = [self._dispatch(plan, d, key, now) for d, key in plan.dispatches]
        ensures = [self._ensure_pod(key, now) for key, step in plan.steps.items() if step.ensure_pod]
        ensures += [self._ensure_child_pod(ckey) for ckey in self.ensure_child_pods]
        ensures += [self.gangs.launch(launch) for launch in self.gangs.take_launches()]
        self.ensure_child_pods = []
        # What each job looked like before this cycle's writes (for the transition hooks).
        before: dict[JobKey, tuple[JobEntry, str | None, int]] = {
            key: (entry, entry.written.get("status"), len(entry.written.get("attempts") or []))
            for key in plan.steps
            if (entry := st.jobs.get(key)) is not None
        }
        first = [k for k in self.finished_first if k in plan.steps and k in st.jobs]
        self.finished_first = set()
        for key in first:
            if key in plan.arrays:
                self.arrays.finish(st.jobs[key], plan.steps[key], now)
                st.jobs[key].status = plan.steps[key].status
        await _gather_limited(self._sem, [self._write_job(k, st.jobs[k], []) for k in first])
        await _gather_limited(self._sem, [*creates, *ensures])
        for key in plan.arrays:
            entry = st.jobs.get(key)
            if entry is None:
                continue
            step = plan.steps.get(key) or lifecycle.Step(status=entry.status.model_copy(deep=True), now=now)
            step.status = entry.status if step.status is not entry.status else step.status
            self.arrays.finish(entry, step, now)
            entry.status = step.status
            plan.steps[key] = step

        writes = []
        for key, step in plan.steps.items():
            entry = st.jobs.get(key)
            if entry is None:
                continue
            before.setdefault(
                key, (entry, entry.written.get("status"), len(entry.written.get("attempts") or []))
            )
            writes.append(self._write_job(key, entry, step.events))
        await _gather_limited(self._sem, writes)
        await _gather_limited(self._sem, [self._delete_pod(key, pod) for key, pod in deletes])
        for entry, old, old_attempts in before.values():
            new = entry.written.get("status")
            # A new attempt without a visible state change (STARTING -> retried -> STARTING in one
            # cycle) is a transition too.
            if new != old or len(entry.written.get("attempts") or []) != old_attempts:
                for hook in self.on_transition:
                    hook(entry, old, new)
        if plan.result is not None:
            self.last_result = plan.result
            for write in self.object_status_writers:
                await write(plan.result)
        await self._expire(now)

    async def _dispatch(self, plan: Plan, decision: Dispatch, key: JobKey, now: float) -> None:
        try:
            await self._dispatch_once(plan, decision, key, now)
        except Exception:  # network trouble, a render bug: nothing may be left half-assumed
            log.exception("dispatching %s failed; it stays RUNNABLE", decision.job_key)
            if self.scheduler.state_of(decision.job_key) in ("STARTING", "RUNNING"):
                self.scheduler.undo(decision, now)
            self.state.dirty_jobs.add(key)

    async def _dispatch_once(self, plan: Plan, decision: Dispatch, key: JobKey, now: float) -> None:
        entry = self.state.jobs.get(key)
        if entry is None:
            self.scheduler.undo(decision, now)
            return
        dkey: Any = decision.job_key
        index: int | None = dkey[2] if len(dkey) == 3 else None
        if index is not None:
            assert entry.children is not None
            attempt = entry.children.attempt_of(index)
        else:
            attempt = lifecycle.next_pod_name_attempt(entry.status)
        try:
            pod_name = await self._create_pod(entry, attempt, decision.compute_environment, index)
        except ApiError as err:
            self.scheduler.undo(decision, now)
            if err.status == 409:
                # The name is taken by a pod of another job (a deleted job of the same name whose
                # pod is still going away): try again shortly.
                entry.wake_at = now + POD_CONFLICT_RETRY_SECONDS
                return
            # Pod Security, a webhook, an invalid spec: final; a full quota, throttling: wait.
            refusal = classify_pod_refusal(err.status, err.message)
            if refusal.transient:
                until = self.create_backoff.failed(dkey, now)
                self.scheduler.hold(dkey, refusal.code, refusal.status_reason, until, now)
                log.warning("creating the pod of %s was refused, will retry: %s", dkey, err)
                entry.wake_at = until if entry.wake_at is None else min(entry.wake_at, until)
            else:
                self.create_backoff.succeeded(dkey)
                log.warning("creating the pod of %s was refused for good: %s", dkey, err)
            step = plan.steps.get(key) or lifecycle.Step(status=entry.status.model_copy(deep=True), now=now)
            if index is not None:
                # An array child: the same rule per child (a blocked child shows on the parent).
                if refusal.permanent:
                    self.arrays.cancelled(key, entry, index, refusal.status_reason, step)
                    self.scheduler.remove(dkey, now)
                else:
                    step.status.statusReason = refusal.status_reason
                plan.arrays.add(key)
            elif refusal.permanent:
                # AWS: "jobs that fail because of an invalid job definition aren't retried".
                lifecycle.fail(step, now, refusal.status_reason)
                self._wake_dependents(entry)
                self.scheduler.remove(key, now)
                self.known.discard(key)
            else:
                step.status.statusReason = refusal.status_reason
            entry.status = step.status
            plan.steps[key] = step
            return
        self.create_backoff.succeeded(dkey)
        self.scheduler.release_hold(dkey)
        # Look at the attempt again next cycle even if no event comes (an adopted pod that
        # already finished produces none).
        self.state.dirty_jobs.add(key)
        if index is not None:
            self.arrays.started(key, entry, index, decision.compute_environment)
            plan.arrays.add(key)
            return
        step = lifecycle.start_attempt(
            entry.status, pod_name=pod_name, compute_environment=decision.compute_environment, now=now
        )
        if decision.nodes:
            step.events.append(
                lifecycle.Event(
                    "Normal",
                    "GangAdmitted",
                    f"All {len(decision.nodes)} nodes of the job fit in compute environment "
                    f"{decision.compute_environment}: capacity held for the whole gang; main node first",
                )
            )
        previous = plan.steps.get(key)
        if previous is not None:
            step.events = previous.events + step.events
        entry.status = step.status
        plan.steps[key] = step

    async def _ensure_pod(self, key: JobKey, now: float) -> None:
        entry = self.state.jobs.get(key)
        if entry is None or not entry.status.attempts:
            return
        attempt = entry.status.attempts[-1]
        try:
            await self._create_pod(entry, attempt.attempt, attempt.computeEnvironment or "")
        except ApiError as err:
            log.warning("re-creating the pod of %s failed: %s", key, err)

    async def _ensure_child_pod(self, ckey: tuple[str, str, int]) -> None:
        entry = self.state.jobs.get((ckey[0], ckey[1]))
        if entry is None or entry.children is None:
            return
        try:
            await self._create_pod(
                entry, entry.children.attempt_of(ckey[2]), entry.status.computeEnvironment or "", ckey[2]
            )
        except ApiError as err:
            log.warning("re-creating the pod of %s failed: %s", ckey, err)

    async def _create_pod(self, entry: JobEntry, attempt: int, ce_name: str, index: int | None = None) -> str:
        job = entry.job
        resolved = self._definition(entry)
        if isinstance(resolved, str):
            raise ApiError(422, {"message": resolved}, "RENDER", job.metadata.name or "")
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
        except ApiError as err:
            if err.status != 409:
                raise
            # 409: this attempt's pod exists already (a repeated decision: adopt it), unless it
            # belongs to an older job of the same name.
            existing = await self.kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
            owner = ((existing.get("metadata") or {}).get("labels") or {}).get(JOB_UID_LABEL)
            if owner != job.metadata.uid:
                raise
        return name

    async def _delete_pod(self, key: JobKey, name: str) -> None:
        try:
            await self.kube.delete(f"/api/v1/namespaces/{key[0]}/pods/{name}")
        except ApiError as err:
            if err.status != 404:
                log.warning("deleting pod %s/%s failed, will retry: %s", key[0], name, err)
                self.state.dirty_jobs.add(key)
        except Exception as err:
            log.warning("deleting pod %s/%s failed, will retry: %r", key[0], name, err)
            self.state.dirty_jobs.add(key)

    async def _write_job(self, key: JobKey, entry: JobEntry, events: list[lifecycle.Event]) -> None:
        new = entry.status.model_dump(mode="json", exclude_none=True)
        new["observedGeneration"] = entry.job.metadata.generation
        patch = status_diff(entry.written, new)
        if patch:
            now = time.time()
            if not self.write_backoff.ready(key, now):
                self._retry_write_later(key, entry)  # still backing off: no request now
                return
            try:
                await self.kube.merge_patch(
                    _path("batchjobs", key[1], key[0], "status"), {"status": patch}, verb="patch_status"
                )
                entry.written = new
                self.write_backoff.succeeded(key)
            except ApiError as err:
                if err.status == 404:
                    self.write_backoff.succeeded(key)
                    self.state.forget_job(key)
                    return
                self.write_backoff.failed(key, now)
                log.warning("status write for %s failed, will retry: %s", key, err)
                self._retry_write_later(key, entry)
                return
            except Exception as err:
                self.write_backoff.failed(key, now)
                log.warning("status write for %s failed, will retry: %r", key, err)
                self._retry_write_later(key, entry)
                return
        # Events are not on the critical path of the next cycle: post them in the background
        # (bounded by the same semaphore), so a burst of transitions doesn't stall the loop.
        for event in events:
            self._spawn_event(entry.job, event)

    def _retry_write_later(self, key: JobKey, entry: JobEntry) -> None:
        """Step the job again when its write backoff ends (not every cycle: client-go's
        rate-limited workqueue), or earlier if something else wakes it."""
        at = self.write_backoff.retry_at(key)
        if at is not None:
            entry.wake_at = at if entry.wake_at is None else min(entry.wake_at, at)

    def _spawn_event(self, job: BatchJob, event: lifecycle.Event) -> None:
        async def post() -> None:
            async with self._sem:
                await self._event(job, event)

        task = asyncio.get_running_loop().create_task(post())
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    async def _event(self, job: BatchJob, event: lifecycle.Event) -> None:
        namespace = job.metadata.namespace or "default"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{job.metadata.name}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": "BatchJob",
                "name": job.metadata.name,
                "namespace": namespace,
                "uid": job.metadata.uid,
            },
            "reason": event.reason,
            "message": event.message[:1024],
            "type": event.type,
            "source": {"component": "batchyard"},
            "firstTimestamp": lifecycle.iso(time.time()),
            "lastTimestamp": lifecycle.iso(time.time()),
            "count": 1,
        }
        try:
            await self.kube.create(f"/api/v1/namespaces/{namespace}/events", body)
        except ApiError as err:
            log.debug("event for %s not recorded: %s", job.metadata.name, err)

    async def patch_status(
        self, plural: str, name: str, namespace: str | None, status: Mapping[str, Any]
    ) -> bool:
        try:
            await self.kube.merge_patch(
                _path(plural, name, namespace, "status"), {"status": status}, verb="patch_status"
            )
            return True
        except ApiError as err:
            log.warning("status write for %s %s failed: %s", plural, name, err)
            return False

    async def _expire(self, now: float) -> None:
        """Delete finished BatchJobs after the TTL (AWS keeps them at least 7 days)."""
        if now < self._next_expiry_scan:
            return
        self._next_expiry_scan = now + EXPIRY_SCAN_SECONDS
        ttl = self.settings.finished_job_ttl_seconds
        expired = [
            key
            for key, e in self.state.jobs.items()
            if e.status.status in TERMINAL and (lifecycle.epoch(e.status.stoppedAt) or now) + ttl <= now
        ][:MAX_EXPIRIES_PER_SCAN]  # a burst of expiries must not stall scheduling

        async def delete(key: JobKey) -> None:
            try:
                await self.kube.delete(_path("batchjobs", key[1], key[0]))
            except ApiError as err:
                if err.status != 404:
                    log.warning("deleting expired job %s failed: %s", key, err)
                    return
            self.state.forget_job(key)

        await _gather_limited(self._sem, [delete(k) for k in expired])


def _unsupported(spec: JobDefinitionSpec) -> tuple[str, ...]:
    """What the API accepts but the loop does not run yet: said at submission, never half-run."""
    del spec  # multi-node parallel jobs run as a gang (adapters.mnp); nothing is refused here now
    return ()


def _consumed(c: ConsumableResource) -> int:
    """NON_REPLENISHABLE units used up, as persisted in status (totalQuantity there is the spec's
    total minus them); trusted only while the status reflects the current spec generation."""
    st = c.status
    if c.spec.resourceType != "NON_REPLENISHABLE" or st is None or st.totalQuantity is None:
        return 0
    if st.observedGeneration != c.metadata.generation:
        return 0
    return max(0, c.spec.totalQuantity - st.totalQuantity)


async def _gather_limited(sem: asyncio.Semaphore, coros: Iterable[Awaitable[None]]) -> None:
    async def run(c: Awaitable[None]) -> None:
        async with sem:
            await c

    for result in await asyncio.gather(*(run(c) for c in coros), return_exceptions=True):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            log.error("an API action failed: %r", result)
