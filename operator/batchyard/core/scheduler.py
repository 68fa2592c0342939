"""The AWS Batch scheduling cycle: which RUNNABLE job starts where, and why the others wait.

Why this exists: Batchyard must dispatch jobs the way the AWS Batch scheduler does, and a job
that cannot run must say why. This module is pure: no Kubernetes, no I/O, no clock -- ``now``
is an argument, and every effect on the scheduler's memory is a method call.

Shape. ``Scheduler`` keeps an incrementally maintained backlog (``queueing``), a capacity ledger
(``capacity``), consumable-resource holdings (``consumables``) and fair-share usage
(``fairshare``). The operator feeds it events -- ``add_runnable``, ``remove``,
``attempt_ended``, ``add_running`` (on restart), ``bind`` -- and calls ``cycle(world, now)``
with the current compute environments, queues and consumable resources. A cycle returns a
``CycleResult``: decisions (``Dispatch``, ``Block``, ``Unblock``, ``Cancel``) plus queue,
compute-environment and consumable status (and, with ``positions=k``, the first k RUNNABLE
jobs of every queue; ``snapshot``/``position`` answer the same on demand; ``count_jobs_by_state``
counts all AWS states for the JobQueue status). Dispatches are *assumed*: their capacity is charged
before the pod exists; if applying a decision fails, ``undo(decision)`` releases the capacity and
puts the job back at its exact position.

The cycle (AWS rules cited inline):

1. Queues in descending ``priority``; equal priorities in ascending queue name (Batchyard's tie
   rule: AWS does not define one, a name order is stable and visible to users).
2. Within a queue, the head job: FIFO order (retried jobs first), or fair-share order when the
   queue has a scheduling policy (see ``fairshare``).
3. The head goes to the first compute environment in ``computeEnvironmentOrder`` that is ENABLED
   and VALID, is under ``maxvCpus`` with the job added, and (when its nodes are known) has a node
   with free vCPU, memory and GPU for it. All of the job's consumable resources must be
   available, and a fair-share queue must stay under its computeReservation line. Capacity and
   consumables are charged at once, so the next job sees what is left.
4. A head that cannot start blocks its queue for this cycle -- no backfill behind it. AWS
   describes a "RUNNABLE job at the head and blocking the queue" and says that cancelling it
   "allows the subsequent job to move to the head of the queue"; that only makes sense without
   backfill. The cycle then moves on to the next queue (AWS: "If there are insufficient
   resources available at that time, the cycle proceeds to the next queue"), so a lower-priority
   queue may still use capacity a blocked higher-priority head cannot use. No preemption.
5. The blocked head gets a reason. AWS blocked reasons (the queue gets a Blocked condition and
   an event; ``jobStateTimeLimitActions`` may cancel the job):

   * ``MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE`` -- the job's vCPUs exceed maxvCpus of
     every usable CE;
   * ``MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT`` -- no usable CE has (or can launch) a node big
     enough for the job's vCPU/memory/GPU;
   * ``CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY`` -- a managed CE is below maxvCpus but none of
     its nodes has room: the node provider has not delivered the instances;
   * ``ACTION_REQUIRED`` -- no CE is usable and at least one is INVALID (or missing).

   Batchyard waiting reasons (the job says why, but the queue is not "blocked" in the AWS sense:
   no condition, no event): ``WAITING:CAPACITY`` (CEs at maxvCpus, or an unmanaged CE's nodes
   are full, with running jobs that will release capacity; or a managed CE whose node pool is
   scaling to the demand, ``CEView.scaling``), ``WAITING:CONSUMABLE_RESOURCE``,
   ``WAITING:COMPUTE_RESERVATION``, ``WAITING:COMPUTE_ENVIRONMENT`` (CEs DISABLED or not yet
   VALID).
6. ``jobStateTimeLimitActions``: AWS "Specifies an action that Batch will take after the job has
   remained at the head of the queue in the specified state for longer than the specified time"
   with the given reason. The clock starts when the job became the blocked head with that reason
   (a change of reason restarts it); the job is cancelled with statusReason
   ``Canceled by JobStateTimeLimit action due to reason: <reason>`` and the next job becomes the
   head within the same cycle.

DISABLED queues: AWS (API reference) "new jobs can't be added to the queue, but jobs already in
the queue can finish". Rejecting submissions belongs to admission; the cycle keeps dispatching
the jobs already queued (``dispatch_from_disabled_queues=True``; set it False for the stricter
reading). DISABLED or non-VALID compute environments receive no new jobs; running ones continue.

Decisions are emitted on change only: ``Block`` when a job becomes the blocked head or its reason
code changes, ``Unblock`` when a formerly blocked head is still RUNNABLE but no longer the
blocked head (its statusReason should be cleared). A ``Dispatch`` clears the statusReason too.

Cost: a cycle is O(queues + CEs*nodes + shares) plus O(log n) per job it dispatches or cancels;
it never walks the backlog. ``snapshot`` (queue positions) costs O(k log k) for the first k jobs.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from batchyard.core.capacity import (
    DISABLED,
    ENABLED,
    INVALID,
    ZERO,
    CapacityLedger,
    CEView,
    CEWork,
    Charge,
    Resources,
    gang_instance_milli,
    total,
)
from batchyard.core.consumables import ConsumableLedger, ConsumableUsage, ConsumableView
from batchyard.core.fairshare import MAX_ACTIVE_SHARES, FairShareState, PolicyView
from batchyard.core.jobstate import JOB_STATES
from batchyard.core.nodepool import Gang
from batchyard.core.queueing import HeapItem, Merge, QueueBacklog, order_key
from batchyard.core.refusals import WAITING_POD_CREATE, WAITING_RESOURCE_QUOTA

JobKey = Hashable

# --- reasons ---------------------------------------------------------------------------------
# AWS "Jobs stuck in a RUNNABLE status": the code (also the jobStateTimeLimitActions reason) and
# the statusReason while stuck, verbatim (including the space after the colon in the third).
CAPACITY_INSUFFICIENT: Final = "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
CE_MAX_RESOURCE: Final = "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE"
JOB_RESOURCE_REQUIREMENT: Final = "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"
SERVICE_ROLE_PERMISSIONS: Final = "MISCONFIGURATION:SERVICE_ROLE_PERMISSIONS"
CE_INVALID: Final = "ACTION_REQUIRED"
UNDETERMINED: Final = "UNDETERMINED"

CAPACITY_INSUFFICIENT_MESSAGE: Final = (
    "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - Service cannot fulfill the capacity requested for "
    "instance type {instance_type}"
)
CE_MAX_RESOURCE_MESSAGE: Final = (
    "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE - CE(s) associated with the job queue cannot "
    "meet the CPU requirement of the job."
)
JOB_RESOURCE_REQUIREMENT_MESSAGE: Final = (
    "MISCONFIGURATION: JOB_RESOURCE_REQUIREMENT - The job resource requirement (vCPU/memory/GPU) is "
    "higher than that can be met by the CE(s) attached to the job queue."
)
SERVICE_ROLE_PERMISSIONS_MESSAGE: Final = (
    "MISCONFIGURATION:SERVICE_ROLE_PERMISSIONS - Batch service role has a permission issue."
)
CE_INVALID_MESSAGE: Final = "ACTION_REQUIRED CE(s) associated with the job queue are invalid."
UNDETERMINED_MESSAGE: Final = "UNDETERMINED Batch job is blocked, root cause is undetermined."
TIME_LIMIT_CANCEL_MESSAGE: Final = "Canceled by JobStateTimeLimit action due to reason: {reason}"

# Batchyard waiting reasons (not AWS blocked reasons; see the module docstring, step 5).
WAITING_CAPACITY: Final = "WAITING:CAPACITY"
WAITING_CONSUMABLE: Final = "WAITING:CONSUMABLE_RESOURCE"
WAITING_RESERVATION: Final = "WAITING:COMPUTE_RESERVATION"
WAITING_CE: Final = "WAITING:COMPUTE_ENVIRONMENT"

# AWS blocked reasons: the queue shows a Blocked condition and an event.
QUEUE_BLOCKING_REASONS: Final = frozenset(
    {
        CAPACITY_INSUFFICIENT,
        CE_MAX_RESOURCE,
        JOB_RESOURCE_REQUIREMENT,
        SERVICE_ROLE_PERMISSIONS,
        CE_INVALID,
        UNDETERMINED,
    }
)
# AWS: only these can be acted on by jobStateTimeLimitActions ("You can't configure a
# programmable action ... to resolve this error" for the others). Batchyard adds the consumable
# wait, which AWS says waits "until all the required resources become available or the job state
# time limit is reached".
# A pod the API server refuses for now (a full ResourceQuota, throttling) is a wait of the same
# kind (see core.refusals and ``Scheduler.hold``).
TIME_LIMIT_REASONS: Final = frozenset(
    {
        CAPACITY_INSUFFICIENT,
        CE_MAX_RESOURCE,
        JOB_RESOURCE_REQUIREMENT,
        WAITING_CONSUMABLE,
        WAITING_RESOURCE_QUOTA,
        WAITING_POD_CREATE,
    }
)

RUNNABLE: Final = "RUNNABLE"
STARTING: Final = "STARTING"
RUNNING: Final = "RUNNING"


# --- inputs ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class JobView:
    """A RUNNABLE (or running) job as the scheduler needs it."""

    key: JobKey  # opaque, hashable: e.g. (namespace, name, array_index)
    queue: str
    submitted_at: float  # AWS createdAt (array child: when it was spawned)
    demand: Resources
    share_identifier: str | None = None
    # schedulingPriorityOverride if set, else the definition's schedulingPriority
    scheduling_priority: int = 0
    retried: bool = False  # back in RUNNABLE after a failed attempt: goes to the front
    consumables: Mapping[str, int] = field(default_factory=dict)
    # A multi-node parallel job: one demand per node, in node-index order (``demand`` is their
    # sum and ``consumables`` the per-node quantities summed). Empty for other jobs.
    node_demands: tuple[Resources, ...] = ()

    @property
    def gang(self) -> bool:
        return bool(self.node_demands)


@dataclass(frozen=True, slots=True)
class GangNode:
    """The capacity-ledger key of node ``index`` of a multi-node parallel job."""

    job_key: JobKey
    index: int


@dataclass(frozen=True, slots=True)
class TimeLimitAction:
    """One entry of a JobQueue's jobStateTimeLimitActions."""

    reason: str
    max_time_seconds: int
    action: str = "CANCEL"
    state: str = RUNNABLE


@dataclass(frozen=True, slots=True)
class QueueView:
    name: str
    priority: int
    compute_environment_order: tuple[str, ...]  # already sorted by `order` ascending
    state: str = ENABLED
    policy: PolicyView | None = None  # a scheduling policy makes the queue fair-share
    time_limit_actions: tuple[TimeLimitAction, ...] = ()


@dataclass(frozen=True, slots=True)
class World:
    """The cluster objects a cycle reads (small: tens of queues and CEs)."""

    compute_environments: Mapping[str, CEView]
    queues: Mapping[str, QueueView]
    consumables: Mapping[str, ConsumableView] = field(default_factory=dict)

    @staticmethod
    def of(
        compute_environments: Iterable[CEView] = (),
        queues: Iterable[QueueView] = (),
        consumables: Iterable[ConsumableView] = (),
    ) -> World:
        return World(
            {c.name: c for c in compute_environments},
            {q.name: q for q in queues},
            {r.name: r for r in consumables},
        )


# --- outputs ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Dispatch:
    """RUNNABLE -> STARTING: create the attempt's pod in ``compute_environment``."""

    job_key: JobKey
    queue: str
    compute_environment: str
    node: str | None  # the node charged (a hint; None when the CE's nodes don't bind)
    demand: Resources
    consumables: Mapping[str, int]
    # multi-node parallel job: the node charged for each node index (the whole gang is held)
    nodes: tuple[str | None, ...] = ()


@dataclass(frozen=True, slots=True)
class Block:
    """The job is the head of its queue and cannot start: set its statusReason."""

    job_key: JobKey
    queue: str
    reason_code: str
    status_reason: str
    queue_blocked: bool  # an AWS blocked reason: Blocked condition + event on the JobQueue


@dataclass(frozen=True, slots=True)
class Unblock:
    """The job was a blocked head, is still RUNNABLE, and no longer blocks: clear statusReason."""

    job_key: JobKey
    queue: str


@dataclass(frozen=True, slots=True)
class Cancel:
    """RUNNABLE -> FAILED with ``status_reason`` (time-limit action, share limit)."""

    job_key: JobKey
    queue: str
    status_reason: str


Decision = Dispatch | Block | Unblock | Cancel


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """A queue's blocked (or waiting) head: what the JobQueue's Blocked condition shows."""

    job_key: JobKey
    reason_code: str
    status_reason: str
    since: float
    queue_blocked: bool
    new: bool  # began this cycle: emit the "Batch Job Queue Blocked" event once
    detail: str  # why, in Batchyard's words (e.g. INVALID CEs and their statusReason)


@dataclass(frozen=True, slots=True)
class QueueStatus:
    name: str
    counts: Mapping[str, int]  # RUNNABLE / STARTING / RUNNING jobs the scheduler holds
    head: JobKey | None
    blocked: BlockInfo | None
    runnable_demand: Resources


@dataclass(frozen=True, slots=True)
class CEUsage:
    name: str
    in_use: Resources  # charged by STARTING/RUNNING attempts of all queues
    jobs: int

    @property
    def vcpus_in_use(self) -> float:
        return self.in_use.vcpus


@dataclass(frozen=True, slots=True)
class CycleResult:
    decisions: list[Decision]
    queues: dict[str, QueueStatus]
    compute_environments: dict[str, CEUsage]
    consumables: dict[str, ConsumableUsage]
    truncated: bool  # the dispatch budget ran out: run another cycle soon
    # queue -> first RUNNABLE jobs in order (position = index + 1), when asked for
    positions: dict[str, list[JobKey]] = field(default_factory=dict)


def count_jobs_by_state(jobs: Iterable[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """(queue, status) pairs of all jobs -> per-queue counts of every AWS job state, for the
    JobQueue status. The scheduler only holds RUNNABLE..RUNNING jobs; the cluster state holds all."""
    out: dict[str, dict[str, int]] = {}
    for queue, state in jobs:
        counts = out.get(queue)
        if counts is None:
            counts = out[queue] = dict.fromkeys(JOB_STATES, 0)
        counts[state] = counts.get(state, 0) + 1
    return out


# --- internal state --------------------------------------------------------------------------
@dataclass(slots=True)
class _Entry:
    job: JobView
    seq: int
    share: str  # "" when the job has no share identifier
    state: str = RUNNABLE
    bucket: str | None = None  # fair-share bucket charged while running


@dataclass(slots=True)
class _HeadBlock:
    job_key: JobKey
    reason_code: str
    status_reason: str
    since: float
    queue_blocked: bool
    detail: str
    new: bool = True


@dataclass(slots=True)
class _Outcome:
    code: str
    message: str
    queue_blocked: bool
    detail: str = ""
    since: float | None = None  # the wait began earlier than this cycle (a held job)


@dataclass(slots=True)
class _Hold:
    """A RUNNABLE job whose pod the API server refused for now: not dispatched before ``until``."""

    until: float
    code: str
    message: str
    since: float  # the first refusal with this code: the jobStateTimeLimitActions clock


class Scheduler:
    """Incremental AWS Batch scheduler. See the module docstring for the rules."""

    def __init__(
        self, max_dispatches_per_cycle: int = 5_000, dispatch_from_disabled_queues: bool = True
    ) -> None:
        self.max_dispatches_per_cycle = max_dispatches_per_cycle
        self.dispatch_from_disabled_queues = dispatch_from_disabled_queues
        self._jobs: dict[JobKey, _Entry] = {}
        self._backlogs: dict[str, QueueBacklog] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._demand: dict[str, Resources] = {}
        self._queue_milli: dict[str, int] = {}  # vCPUs held by each queue's attempts
        self._capacity = CapacityLedger()
        self._consumables = ConsumableLedger()
        self._fairshare: dict[str, FairShareState] = {}
        self._head_blocks: dict[str, _HeadBlock] = {}
        # cancelled this cycle, with the head block that led to it, for undo
        self._removed: dict[JobKey, tuple[_Entry, _HeadBlock]] = {}
        self._bucket_cache: dict[str, tuple[PolicyView, dict[str, tuple[str, float]]]] = {}
        self._holds: dict[JobKey, _Hold] = {}
        self._seq = itertools.count()
        self._world = World({}, {})
        # SUBMITTED/PENDING jobs with a share identifier: key -> (queue, share). AWS: "If a share
        # identifier has jobs in a SUBMITTED, PENDING, RUNNABLE, STARTING, or RUNNING state, it's
        # considered an active share identifier."
        self._waiting: dict[JobKey, tuple[str, str]] = {}

    # --- events from the cluster state --------------------------------------------------------
    def add_runnable(self, job: JobView, now: float) -> Cancel | None:
        """The job entered RUNNABLE (new, or again after a failed attempt).

        Returns a Cancel when the job would add a 501st active share identifier to its queue
        (AWS: "submissions of any jobs that add a new share identifier fail").
        """
        old = self._jobs.get(job.key)
        if old is not None:
            self._drop(old, now, consume=False)
        waiting = self._waiting.pop(job.key, None)
        if waiting is None and job.share_identifier is not None:  # (a waiting job was admitted)
            fs = self._fs(job.queue)
            decay = self._decay(job.queue)
            share = job.share_identifier
            if not fs.is_active(share, now, decay) and fs.active_count(now, decay) >= MAX_ACTIVE_SHARES:
                return Cancel(
                    job.key,
                    job.queue,
                    f"Job queue {job.queue} already has {MAX_ACTIVE_SHARES} active share identifiers; "
                    f"a job can't add the share identifier {share!r}",
                )
        entry = _Entry(job, next(self._seq), job.share_identifier or "")
        self._enqueue(entry)
        if waiting is not None:
            self._fs(waiting[0]).job_left(waiting[1], now)  # ... and joins again just below
        self._fs(job.queue).job_joined(entry.share)
        return None

    def add_runnables(self, jobs: Iterable[JobView], now: float) -> list[Cancel]:
        """``add_runnable`` for many jobs (an array's RUNNABLE children after a restart): the
        same state as one call per job in this order, with the per-queue bookkeeping (counts,
        demand, fair-share membership) done once per run of jobs of one queue and share, and
        a backlog that grows by more than its size heapified once instead of pushed per job.
        A job the scheduler already holds, one that waited, or one whose share identifier is not
        active yet goes through ``add_runnable`` (the only paths that can refuse or undo)."""
        cancels: list[Cancel] = []
        run: list[_Entry] = []
        held, waiting, seq = self._jobs, self._waiting, self._seq  # locals: a million turns
        run_queue, run_share = "", ""
        for job in jobs:
            key, share = job.key, job.share_identifier
            slow = (
                key in held  # also one earlier in this run: it is entered at once
                or (waiting and key in waiting)
                or (share is not None and share not in self._fs(job.queue).live_jobs)
            )
            if slow or (run and (run_queue != job.queue or run_share != (share or ""))):
                self._enqueue_run(run)
                run = []
            if slow:
                cancel = self.add_runnable(job, now)
                if cancel is not None:
                    cancels.append(cancel)
                continue
            if not run:
                run_queue, run_share = job.queue, share or ""
            entry = _Entry(job, next(seq), run_share)
            held[key] = entry
            run.append(entry)
        self._enqueue_run(run)
        return cancels

    def _enqueue_run(self, run: list[_Entry]) -> None:
        """Enqueue new entries (already in ``_jobs``) of one queue and one share identifier
        (an active one, or none)."""
        if not run:
            return
        queue, share = run[0].job.queue, run[0].share
        backlog = self._backlogs.get(queue)
        if backlog is None:
            backlog = self._backlogs[queue] = QueueBacklog(queue)
        q = self._world.queues.get(queue)
        fair = q is not None and q.policy is not None
        # queueing.order_key, inlined (a million calls); test_add_runnables compares the heaps.
        items = [
            (
                -e.job.scheduling_priority if fair and e.job.share_identifier is not None else 0,
                0 if e.job.retried else 1,
                e.job.submitted_at,
                e.seq,
                e.job.key,
            )
            for e in run
        ]
        backlog.push_many(share, items)
        # An array's children share one demand object: one multiplication, not a sum per child.
        first = run[0].job.demand
        if all(e.job.demand is first for e in run):
            n = len(run)
            added = Resources(first.milli_cpu * n, first.memory_mib * n, first.gpus * n)
        else:
            added = ZERO
            for e in run:
                added = added + e.job.demand
        self._demand[queue] = self._demand.get(queue, ZERO) + added
        self._count(queue, RUNNABLE, len(run))
        fs = self._fs(queue)
        fs.live_jobs[share] = fs.live_jobs.get(share, 0) + len(run)

    def note_waiting(self, key: JobKey, queue: str, share_identifier: str, now: float) -> Cancel | None:
        """A SUBMITTED or PENDING job with a share identifier makes that identifier active (AWS
        counts those states). Returns a Cancel when it would add a 501st active share identifier
        to its queue (AWS: "submissions of any jobs that add a new share identifier fail").
        Idempotent; ``add_runnable``, ``remove`` or ``forget_waiting`` end it."""
        if key in self._waiting:
            return None
        fs = self._fs(queue)
        decay = self._decay(queue)
        if (
            not fs.is_active(share_identifier, now, decay)
            and fs.active_count(now, decay) >= MAX_ACTIVE_SHARES
        ):
            return Cancel(
                key,
                queue,
                f"Job queue {queue} already has {MAX_ACTIVE_SHARES} active share identifiers; "
                f"a job can't add the share identifier {share_identifier!r}",
            )
        self._waiting[key] = (queue, share_identifier)
        fs.job_joined(share_identifier)
        return None

    def forget_waiting(self, key: JobKey, now: float) -> None:
        """A job noted by ``note_waiting`` failed, was cancelled or deleted before RUNNABLE."""
        waiting = self._waiting.pop(key, None)
        if waiting is not None:
            self._fs(waiting[0]).job_left(waiting[1], now)

    def remove(self, key: JobKey, now: float) -> bool:
        """The job left the scheduler's hands (cancelled, terminated, deleted, finished).

        A running attempt is released as by ``attempt_ended``.
        """
        self.forget_waiting(key, now)
        entry = self._jobs.get(key)
        if entry is None:
            return False
        self._drop(entry, now, consume=True)
        return True

    def attempt_ended(self, key: JobKey, now: float) -> dict[str, int]:
        """The attempt reached SUCCEEDED/FAILED (or went back to RUNNABLE for a retry: call
        ``add_runnable`` with ``retried=True`` afterwards). Releases its capacity and consumable
        resources; returns the NON_REPLENISHABLE quantities consumed for good."""
        entry = self._jobs.get(key)
        if entry is None or entry.state == RUNNABLE:
            return {}
        return self._drop(entry, now, consume=True)

    def add_running(
        self,
        job: JobView,
        compute_environment: str,
        node: str | None,
        now: float,
        state: str = STARTING,
        gang_nodes: tuple[str | None, ...] = (),
    ) -> None:
        """Restore an attempt found STARTING/RUNNING (operator restart): charge what it holds.

        A multi-node parallel job holds its whole gang again (``gang_nodes``: the node of each
        node index, None for a pod not yet created or bound)."""
        old = self._jobs.get(job.key)
        if old is not None:
            self._drop(old, now, consume=False)
        self.forget_waiting(job.key, now)
        entry = _Entry(job, next(self._seq), job.share_identifier or "", state=state)
        self._jobs[job.key] = entry
        self._fs(job.queue).job_joined(entry.share)
        if job.gang:
            nodes = gang_nodes or (None,) * len(job.node_demands)
            self._hold(
                entry, compute_environment, node, now, self._gang_charges(job, compute_environment, nodes)
            )
        else:
            self._hold(entry, compute_environment, node, now)
        self._count(job.queue, state, +1)

    def mark_running(self, key: JobKey) -> None:
        """STARTING -> RUNNING (for the per-state counts only; capacity is already held)."""
        entry = self._jobs.get(key)
        if entry is not None and entry.state == STARTING:
            self._count(entry.job.queue, STARTING, -1)
            self._count(entry.job.queue, RUNNING, +1)
            entry.state = RUNNING

    def hold(self, key: JobKey, code: str, message: str, until: float, now: float) -> None:
        """The API server refused the job's pod for a reason that may clear (core.refusals): keep
        it RUNNABLE, not dispatched before ``until`` (the caller's backoff). While held at the head
        of its queue it blocks the queue with ``code`` as its reason, and the
        jobStateTimeLimitActions clock runs from the first refusal with that code."""
        old = self._holds.get(key)
        since = old.since if old is not None and old.code == code else now
        self._holds[key] = _Hold(until, code, message, since)

    def release_hold(self, key: JobKey) -> None:
        """The job's pod was created (or the job left): forget its refusals."""
        self._holds.pop(key, None)

    def held(self, key: JobKey) -> bool:
        return key in self._holds

    def bind(self, key: JobKey, node: str | None, node_index: int | None = None) -> None:
        """The attempt's pod was bound to ``node``: move its node charge there (for a
        multi-node parallel job, the charge of node ``node_index``)."""
        entry = self._jobs.get(key)
        if entry is not None and entry.job.gang:
            if node_index is None:
                return
            gk = GangNode(key, node_index)
            charge = self._capacity.charges.get(gk)
            if charge is None or charge.node == node:
                return
            # the member holds its new node whole (single-tenant), when the node is known
            work = self._capacity.work.get(charge.ce)
            i = work.index.get(node) if work is not None and node is not None else None
            whole = work.whole_node(i) if work is not None and i is not None else None
            self._capacity.charge(gk, Charge(charge.ce, node, charge.demand, whole))
            return
        self._capacity.rebind(key, node)

    def undo(self, decision: Decision, now: float) -> None:
        """Applying ``decision`` failed: restore the state as if it had never been made."""
        if isinstance(decision, Dispatch):
            entry = self._jobs.get(decision.job_key)
            if entry is None or entry.state == RUNNABLE:
                return
            self._release(entry, now, consume=False)
            self._count(entry.job.queue, entry.state, -1)
            entry.state = RUNNABLE
            self._push(entry)  # same seq: the job is back at its exact position
        elif isinstance(decision, Cancel):
            removed = self._removed.pop(decision.job_key, None)
            if removed is not None and decision.job_key not in self._jobs:
                entry, hb = removed
                self._enqueue(entry)
                self._fs(entry.job.queue).job_joined(entry.share)
                self._head_blocks[entry.job.queue] = hb  # still overdue: cancelled again next cycle
        elif isinstance(decision, Block):
            current = self._head_blocks.get(decision.queue)
            if current is not None and current.job_key == decision.job_key:
                del self._head_blocks[decision.queue]  # re-emitted next cycle

    # --- queries ------------------------------------------------------------------------------
    def counts(self, queue: str) -> dict[str, int]:
        c = self._counts.get(queue, {})
        return {RUNNABLE: c.get(RUNNABLE, 0), STARTING: c.get(STARTING, 0), RUNNING: c.get(RUNNING, 0)}

    def state_of(self, key: JobKey) -> str | None:
        entry = self._jobs.get(key)
        return entry.state if entry is not None else None

    def runnable_demand(self, queue: str) -> Resources:
        """Sum of the demand of the queue's RUNNABLE jobs (for node-pool sizing)."""
        return self._demand.get(queue, ZERO)

    def demand_of(self, key: JobKey) -> Resources | None:
        """The demand of a job the scheduler holds (with ``snapshot``: per-job node-pool sizing)."""
        entry = self._jobs.get(key)
        return entry.job.demand if entry is not None else None

    def sizing_demand(self, key: JobKey) -> Resources | Gang | None:
        """What node-pool sizing must find room for: the job's one demand, or a ``Gang`` of one
        demand per node of a multi-node parallel job (AWS: its nodes are single-tenant, so N
        whole nodes, not N pods' worth of packed room). None for a job the scheduler does not
        hold."""
        entry = self._jobs.get(key)
        if entry is None:
            return None
        return Gang(entry.job.node_demands) if entry.job.gang else entry.job.demand

    def vcpus_of(self, key: JobKey) -> float:
        """The vCPUs a job the scheduler holds asks in all (every node of a gang); 0 for a job
        it does not hold (the estimated start's arithmetic, core.estimate)."""
        demand = self.sizing_demand(key)
        if demand is None:
            return 0.0
        if isinstance(demand, Gang):
            return sum(node.vcpus for node in demand.nodes)
        return demand.vcpus

    def whole_nodes(self) -> dict[str, set[str]]:
        """Per compute environment, the nodes gangs hold whole (charged before their pods
        exist): busy for node-pool sizing and scale-in."""
        out: dict[str, set[str]] = {}
        for c in self._capacity.charges.values():
            if c.node is not None and c.node_demand is not None:
                out.setdefault(c.ce, set()).add(c.node)
        return out

    def holdings(self) -> Iterator[tuple[JobKey, str, Resources]]:
        """Every STARTING/RUNNING attempt's hold: (job, compute environment, what it holds); a
        multi-node parallel job once per node (for core.estimate)."""
        for key, charge in self._capacity.charges.items():
            yield (key.job_key if isinstance(key, GangNode) else key), charge.ce, charge.demand

    def share_admission(self, queue: str, share_identifier: str, now: float) -> str | None:
        """None if a job with ``share_identifier`` may be submitted to ``queue``, else the reason."""
        fs = self._fs(queue)
        decay = self._decay(queue)
        if fs.is_active(share_identifier, now, decay) or fs.active_count(now, decay) < MAX_ACTIVE_SHARES:
            return None
        return f"Job queue {queue} already has {MAX_ACTIVE_SHARES} active share identifiers"

    def snapshot(self, queue: str, limit: int = 100) -> list[JobKey]:
        """The first ``limit`` RUNNABLE jobs of ``queue`` in dispatch order (AWS "Job queue
        snapshot" shows the first 100). Position of a job = its index + 1. For a fair-share queue
        the order simulates the coming picks from current usage, as AWS's snapshot does."""
        return list(itertools.islice(self._ordered(queue), limit))

    def position(self, key: JobKey) -> int | None:
        """1-based position of a RUNNABLE job in its queue; O(position * log) -- use for a few jobs."""
        entry = self._jobs.get(key)
        if entry is None or entry.state != RUNNABLE:
            return None
        for i, k in enumerate(self._ordered(entry.job.queue), start=1):
            if k == key:
                return i
        return None  # pragma: no cover - a RUNNABLE entry is always in its backlog

    # --- the cycle ----------------------------------------------------------------------------
    def set_world(self, world: World) -> None:
        """Remember the queues/policies/consumables (``cycle`` does this too). Call it before
        ``add_running`` on restart so fair-share usage is charged to the right bucket."""
        self._world = world

    def cycle(self, world: World, now: float, positions: int = 0) -> CycleResult:
        """Run one scheduling cycle at ``now``. ``positions`` > 0 also returns the first
        ``positions`` RUNNABLE jobs of every queue in order (O(positions * log) per queue)."""
        self._world = world
        self._removed.clear()
        decisions: list[Decision] = []
        # 1. this cycle's view of every CE: free room per node after what attempts hold
        work = {name: self._capacity.view(ce) for name, ce in world.compute_environments.items()}
        self._capacity.forget_views(work)
        # 2. fair-share usage decayed to now
        for q in world.queues.values():
            if q.policy is not None:
                self._fs(q.name).advance_all(now, q.policy.share_decay_seconds)
        # 3. queues by priority, higher first; ties by name
        budget = self.max_dispatches_per_cycle
        truncated = False
        for q in sorted(world.queues.values(), key=lambda q: (-q.priority, q.name)):
            budget = self._run_queue(q, world, work, now, decisions, budget)
            if budget <= 0:
                truncated = True
                break
        # 4. status for users
        queues = {name: self._queue_status(name) for name in world.queues}
        for hb in self._head_blocks.values():
            hb.new = False
        ces = {
            name: CEUsage(name, self._capacity.in_use(name), self._capacity.ce_jobs.get(name, 0))
            for name in world.compute_environments
        }
        cons = {name: self._consumables.usage(v) for name, v in world.consumables.items()}
        for q in world.queues.values():
            if q.policy is not None:
                self._fs(q.name).forget_idle(now, q.policy.share_decay_seconds)
        pos = {name: self.snapshot(name, positions) for name in world.queues} if positions > 0 else {}
        return CycleResult(decisions, queues, ces, cons, truncated, pos)

    def _run_queue(
        self,
        q: QueueView,
        world: World,
        work: Mapping[str, CEWork],
        now: float,
        decisions: list[Decision],
        budget: int,
    ) -> int:
        backlog = self._backlogs.get(q.name)
        if backlog is None or backlog.live == 0:
            self._head_blocks.pop(q.name, None)
            return budget
        # AWS: DISABLED queue -- "jobs already in the queue can finish".
        if q.state == DISABLED and not self.dispatch_from_disabled_queues:
            return budget
        ces = [work.get(name) for name in q.compute_environment_order]
        picker = _Picker(self, q, backlog, now)
        reserve_cap: int | None = None
        capacity = 0
        if q.policy is not None and q.policy.compute_reservation > 0:
            capacity = sum(c.max_milli for c in ces if c is not None and c.ce.usable)
            fs = self._fs(q.name)
            frac = q.policy.reserved_fraction(fs.active_count(now, q.policy.share_decay_seconds))
            reserve_cap = int(capacity * (1 - frac))
        while True:
            picked = picker.peek()
            if picked is None:
                self._head_blocks.pop(q.name, None)
                return budget
            if budget <= 0:
                return budget
            entry = picked
            job = entry.job
            d = job.demand
            outcome: _Outcome | None = None
            gang: list[int] | None = None
            held = self._holds.get(job.key)
            placed: tuple[CEWork, int] | None = None
            if held is None or held.until <= now:
                if job.gang:
                    placed_gang = _first_fit_gang(job.node_demands, ces)
                    placed = (placed_gang[0], -1) if placed_gang is not None else None
                    gang = placed_gang[1] if placed_gang is not None else None
                else:
                    placed = _first_fit(d, ces)
            if held is not None and held.until > now:
                outcome = _Outcome(
                    held.code,
                    held.message,
                    held.code in QUEUE_BLOCKING_REASONS,
                    "the API server refused the job's pod for now; it is tried again after a backoff",
                    held.since,
                )
            elif placed is None:
                outcome = _classify(job.node_demands or (d,), q, ces, job.gang)
            else:
                short = self._consumables.shortfall(job.consumables, world.consumables)
                if short:
                    outcome = _Outcome(
                        WAITING_CONSUMABLE,
                        "Waiting for consumable resource(s): "
                        + ", ".join(f"{n} (needs {need}, available {have})" for n, need, have in short),
                        False,
                    )
                elif reserve_cap is not None and self._queue_milli.get(q.name, 0) + d.milli_cpu > reserve_cap:
                    outcome = _Outcome(
                        WAITING_RESERVATION,
                        "Waiting for capacity: the scheduling policy's computeReservation holds "
                        f"{(capacity - reserve_cap) / 1000:g} vCPUs back for inactive share identifiers",
                        False,
                    )
            if outcome is None and placed is not None:
                cew, idx = placed
                node = cew.node_names[idx] if idx >= 0 else None
                backlog.pop_head(entry.share)
                self._unqueue_counts(entry)
                entry.state = STARTING
                gang_nodes: tuple[str | None, ...] = ()
                if gang is not None:
                    # AWS: the whole gang's capacity is held before its first pod is created
                    gang_nodes = tuple(cew.node_names[i] if i >= 0 else None for i in gang)
                    node = None
                    charges = [
                        Charge(
                            cew.ce.name,
                            gang_nodes[k],
                            job.node_demands[k],
                            cew.whole_node(i) if i >= 0 else None,
                        )
                        for k, i in enumerate(gang)
                    ]
                    self._hold(entry, cew.ce.name, None, now, charges)
                else:
                    self._hold(entry, cew.ce.name, node, now)
                picker.taken()
                self._count(q.name, STARTING, +1)
                hb = self._head_blocks.get(q.name)
                if hb is not None and hb.job_key == job.key:
                    del self._head_blocks[q.name]
                decisions.append(
                    Dispatch(job.key, q.name, cew.ce.name, node, d, dict(job.consumables), gang_nodes)
                )
                budget -= 1
                continue
            assert outcome is not None
            hb = self._head_blocks.get(q.name)
            if hb is not None and hb.job_key == job.key and hb.reason_code == outcome.code:
                hb.status_reason, hb.detail = outcome.message, outcome.detail
            else:
                if hb is not None and hb.job_key != job.key:
                    old = self._jobs.get(hb.job_key)
                    if old is not None and old.state == RUNNABLE:
                        decisions.append(Unblock(hb.job_key, q.name))
                since = outcome.since if outcome.since is not None else now
                hb = _HeadBlock(
                    job.key, outcome.code, outcome.message, since, outcome.queue_blocked, outcome.detail
                )
                self._head_blocks[q.name] = hb
                decisions.append(Block(job.key, q.name, outcome.code, outcome.message, outcome.queue_blocked))
            action = _due_action(q, hb, now)
            if action is None:
                return budget
            # AWS: cancelling the blocked head "allows the subsequent job to move to the head"
            if decisions and isinstance(decisions[-1], Block) and decisions[-1].job_key == job.key:
                decisions.pop()  # blocked and cancelled in the same cycle: the Cancel says it all
            del self._head_blocks[q.name]
            hb.new = False
            backlog.pop_head(entry.share)
            self._unqueue_counts(entry)
            del self._jobs[job.key]
            picker.taken()
            self._fs(q.name).job_left(entry.share, now)
            self._removed[job.key] = (entry, hb)
            decisions.append(Cancel(job.key, q.name, TIME_LIMIT_CANCEL_MESSAGE.format(reason=action.reason)))

    # --- helpers ------------------------------------------------------------------------------
    def _fs(self, queue: str) -> FairShareState:
        fs = self._fairshare.get(queue)
        if fs is None:
            fs = self._fairshare[queue] = FairShareState()
        return fs

    def _buckets_for(self, queue: str, policy: PolicyView) -> dict[str, tuple[str, float]]:
        """share identifier -> (bucket, weight), cached until the queue's policy changes."""
        cached = self._bucket_cache.get(queue)
        if cached is None or (cached[0] is not policy and cached[0] != policy):
            cached = self._bucket_cache[queue] = (policy, {})
        return cached[1]

    def _decay(self, queue: str) -> int:
        q = self._world.queues.get(queue)
        return q.policy.share_decay_seconds if q is not None and q.policy is not None else 0

    def _count(self, queue: str, state: str, delta: int) -> None:
        c = self._counts.get(queue)
        if c is None:
            c = self._counts[queue] = {}
        c[state] = c.get(state, 0) + delta

    def _valid(self, item: HeapItem) -> bool:
        entry = self._jobs.get(item[4])
        return entry is not None and entry.seq == item[3] and entry.state == RUNNABLE

    def _push(self, entry: _Entry) -> None:
        job = entry.job
        backlog = self._backlogs.get(job.queue)
        if backlog is None:
            backlog = self._backlogs[job.queue] = QueueBacklog(job.queue)
        q = self._world.queues.get(job.queue)
        item = order_key(
            job.scheduling_priority,
            # AWS SubmitJob schedulingPriorityOverride: "This only affects jobs in job queues with
            # a fair share policy": in a FIFO queue neither it nor a shareIdentifier reorders.
            job.share_identifier is not None and q is not None and q.policy is not None,
            job.retried,
            job.submitted_at,
            entry.seq,
            job.key,
        )
        backlog.push(entry.share, item)
        self._count(job.queue, RUNNABLE, +1)
        self._demand[job.queue] = self._demand.get(job.queue, ZERO) + job.demand

    def _enqueue(self, entry: _Entry) -> None:
        self._jobs[entry.job.key] = entry
        self._push(entry)

    def _unqueue_counts(self, entry: _Entry) -> None:
        q = entry.job.queue
        self._count(q, RUNNABLE, -1)
        self._demand[q] = self._demand.get(q, ZERO) - entry.job.demand

    def _gang_charges(self, job: JobView, ce: str, nodes: tuple[str | None, ...]) -> list[Charge]:
        """Restart: the gang's charges on the nodes its pods are bound to (held whole when known)."""
        work = self._capacity.work.get(ce)
        out = []
        for k, d in enumerate(job.node_demands):
            node = nodes[k] if k < len(nodes) else None
            i = work.index.get(node) if work is not None and node is not None else None
            whole = work.whole_node(i) if work is not None and i is not None else None
            out.append(Charge(ce, node, d, whole))
        return out

    def _hold(
        self, entry: _Entry, ce: str, node: str | None, now: float, gang: list[Charge] | None = None
    ) -> None:
        job = entry.job
        if gang is not None:
            for k, charge in enumerate(gang):
                self._capacity.charge(GangNode(job.key, k), charge)
        else:
            self._capacity.charge(job.key, Charge(ce, node, job.demand))
        self._consumables.acquire(job.key, job.consumables)
        self._queue_milli[job.queue] = self._queue_milli.get(job.queue, 0) + job.demand.milli_cpu
        q = self._world.queues.get(job.queue)
        policy = q.policy if q is not None else None
        if policy is not None:
            bucket, _ = policy.bucket_of(job.share_identifier)
            entry.bucket = bucket
            self._fs(job.queue).charge(bucket, job.demand.milli_cpu, now, policy.share_decay_seconds)

    def _release(self, entry: _Entry, now: float, consume: bool) -> dict[str, int]:
        job = entry.job
        if job.gang:
            # AWS: a gang that cannot complete (or ends) releases every node it held
            for k in range(len(job.node_demands)):
                self._capacity.release(GangNode(job.key, k))
        else:
            self._capacity.release(job.key)
        gone = self._consumables.release(job.key, self._world.consumables, consume)
        self._queue_milli[job.queue] = self._queue_milli.get(job.queue, 0) - job.demand.milli_cpu
        if entry.bucket is not None:
            decay = self._decay(job.queue)
            self._fs(job.queue).charge(entry.bucket, -job.demand.milli_cpu, now, decay)
            entry.bucket = None
        return gone

    def _drop(self, entry: _Entry, now: float, consume: bool) -> dict[str, int]:
        """Forget a job entirely (it left RUNNABLE, or its attempt ended)."""
        job = entry.job
        gone: dict[str, int] = {}
        del self._jobs[job.key]
        self._holds.pop(job.key, None)
        if entry.state == RUNNABLE:
            self._unqueue_counts(entry)
            self._backlogs[job.queue].discard(entry.share, self._valid)
        else:
            gone = self._release(entry, now, consume)
            self._count(job.queue, entry.state, -1)
        self._fs(job.queue).job_left(entry.share, now)
        return gone

    def _queue_status(self, name: str) -> QueueStatus:
        hb = self._head_blocks.get(name)
        blocked = None
        if hb is not None:
            blocked = BlockInfo(
                hb.job_key, hb.reason_code, hb.status_reason, hb.since, hb.queue_blocked, hb.new, hb.detail
            )
        head = hb.job_key if hb is not None else None
        return QueueStatus(name, self.counts(name), head, blocked, self._demand.get(name, ZERO))

    def _ordered(self, queue: str) -> Iterator[JobKey]:
        backlog = self._backlogs.get(queue)
        if backlog is None:
            return iter(())
        q = self._world.queues.get(queue)
        if q is None or q.policy is None:
            merge = Merge(backlog, list(backlog.shares), self._valid)
            return (item[4] for item in merge.ordered())
        return self._fair_order(backlog, q.policy, q.name)

    def _fair_order(self, backlog: QueueBacklog, policy: PolicyView, queue: str) -> Iterator[JobKey]:
        # Simulate the coming picks: lowest score first, each pick adds weight * vCPUs.
        fs = self._fs(queue)
        groups: dict[str, list[str]] = {}
        weights: dict[str, float] = {}
        for share in backlog.shares:
            bucket, w = policy.bucket_of(share or None)
            groups.setdefault(bucket, []).append(share)
            weights[bucket] = w
        iters: dict[str, Iterator[HeapItem]] = {}
        heap: list[tuple[float, str]] = []
        for bucket, shares in groups.items():
            iters[bucket] = Merge(backlog, shares, self._valid).ordered()
            b = fs.buckets.get(bucket)
            heap.append((b.score(weights[bucket]) if b is not None else 0.0, bucket))
        heapq.heapify(heap)
        while heap:
            score, bucket = heap[0]
            item = next(iters[bucket], None)
            if item is None:
                heapq.heappop(heap)
                continue
            entry = self._jobs[item[4]]
            heapq.heapreplace(heap, (score + weights[bucket] * entry.job.demand.milli_cpu / 1000, bucket))
            yield item[4]


class _Picker:
    """The next job of one queue during one cycle: FIFO merge, or fair-share bucket choice.

    Fair share: a heap of (score, bucket) over the buckets with RUNNABLE jobs; a bucket's merge of
    share heaps is built only when the bucket reaches the top, so a queue whose head blocks at
    once costs O(shares), not O(shares * log) with a merge per share."""

    __slots__ = ("_backlog", "_fs", "_groups", "_heap", "_merge", "_merges", "_sched", "_top", "_weights")

    def __init__(self, sched: Scheduler, q: QueueView, backlog: QueueBacklog, now: float) -> None:
        self._sched = sched
        self._backlog = backlog
        self._merge: Merge | None = None
        self._merges: dict[str, Merge] = {}
        self._groups: dict[str, list[str]] = {}
        self._weights: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._top: str | None = None
        self._fs = sched._fs(q.name)
        if q.policy is None:
            self._merge = Merge(backlog, list(backlog.shares), sched._valid)
            return
        buckets = sched._buckets_for(q.name, q.policy)
        groups = self._groups
        for share in backlog.shares:
            bw = buckets.get(share)
            if bw is None:
                bw = buckets[share] = q.policy.bucket_of(share or None)
            bucket, w = bw
            g = groups.get(bucket)
            if g is None:
                groups[bucket] = [share]
                self._weights[bucket] = w
            else:
                g.append(share)
        fsb = self._fs.buckets
        for bucket, w in self._weights.items():
            b = fsb.get(bucket)
            self._heap.append((b.score(w) if b is not None else 0.0, bucket))
        heapq.heapify(self._heap)

    def peek(self) -> _Entry | None:
        jobs = self._sched._jobs
        if self._merge is not None:
            top = self._merge.peek()
            return jobs[top[0][4]] if top is not None else None
        heap = self._heap
        while heap:
            bucket = heap[0][1]
            merge = self._merges.get(bucket)
            if merge is None:
                merge = self._merges[bucket] = Merge(self._backlog, self._groups[bucket], self._sched._valid)
            top = merge.peek()
            if top is None:
                heapq.heappop(heap)
                continue
            self._top = bucket
            return jobs[top[0][4]]
        return None

    def taken(self) -> None:
        """The peeked job left the backlog (dispatched or cancelled; its share heap was popped
        and, for a dispatch, its bucket charged): move on and re-score its bucket."""
        if self._merge is not None:
            self._merge.advance()
            return
        assert self._top is not None
        bucket = self._top
        self._merges[bucket].advance()
        b = self._fs.buckets.get(bucket)
        heapq.heapreplace(self._heap, (b.score(self._weights[bucket]) if b is not None else 0.0, bucket))


def _first_fit(d: Resources, ces: list[CEWork | None]) -> tuple[CEWork, int] | None:
    # AWS: CEs "are tried in ascending order"; skip what is not ENABLED+VALID or has no room.
    for cew in ces:
        if cew is None or not cew.ce.usable or not cew.under_max(d):
            continue
        i = cew.find_node(d)
        if i is not None:
            return cew, i
    return None


def _first_fit_gang(
    demands: tuple[Resources, ...], ces: list[CEWork | None]
) -> tuple[CEWork, list[int]] | None:
    # AWS: a multi-node parallel job starts only when all its nodes fit at once ("gang
    # scheduling"), in one compute environment; "Multi-node parallel jobs aren't supported on
    # UNMANAGED compute environments", so those are skipped.
    total_demand = total(demands)
    for cew in ces:
        if (
            cew is None
            or not cew.ce.usable
            or not cew.ce.managed
            or cew.ce.spot
            or not cew.under_max(total_demand)
        ):
            continue
        nodes = cew.find_gang(demands)
        if nodes is not None:
            return cew, nodes
    return None


def _classify(demands: tuple[Resources, ...], q: QueueView, ces: list[CEWork | None], gang: bool) -> _Outcome:
    """Why the head job fits in no CE now (module docstring, step 5). ``demands``: the job's one
    demand, or one per node of a multi-node parallel job (``gang``)."""
    d = total(demands)
    usable = [c for c in ces if c is not None and c.ce.usable]
    if not usable:
        problems = []
        invalid = False
        for name, c in zip(q.compute_environment_order, ces, strict=True):
            if c is None:
                invalid = True
                problems.append(f"{name}: not found")
            elif c.ce.status == INVALID:
                invalid = True
                problems.append(
                    f"{name}: INVALID" + (f" ({c.ce.status_reason})" if c.ce.status_reason else "")
                )
            else:
                problems.append(f"{name}: {c.ce.state}/{c.ce.status}")
        detail = "; ".join(problems) or "the job queue has no compute environments"
        if invalid:
            return _Outcome(CE_INVALID, CE_INVALID_MESSAGE, True, detail)
        return _Outcome(
            WAITING_CE,
            f"Waiting: no compute environment of the job queue is ENABLED and VALID ({detail})",
            False,
            detail,
        )
    if gang:
        unmanaged = [c.ce.name for c in usable if not c.ce.managed]
        spot = [c.ce.name for c in usable if c.ce.managed and c.ce.spot]
        usable = [c for c in usable if c.ce.managed and not c.ce.spot]
        if not usable:
            # AWS "Compute environment considerations": "Multi-node parallel jobs aren't supported
            # on UNMANAGED compute environments" and "... on compute environments that use Spot
            # Instances" -- the job can never start in this queue.
            kinds = []
            if unmanaged:
                kinds.append(f"UNMANAGED compute environments ({', '.join(unmanaged)})")
            if spot:
                kinds.append(f"compute environments that use Spot Instances ({', '.join(spot)})")
            return _Outcome(
                JOB_RESOURCE_REQUIREMENT,
                f"{JOB_RESOURCE_REQUIREMENT_MESSAGE} Multi-node parallel jobs aren't supported on "
                + " or ".join(kinds),
                True,
                "multi-node parallel jobs aren't supported on UNMANAGED or Spot compute environments",
            )
    if all(d.milli_cpu > c.max_milli for c in usable):
        return _Outcome(
            CE_MAX_RESOURCE, CE_MAX_RESOURCE_MESSAGE, True, "job vCPUs exceed maxvCpus of every CE"
        )
    # a gang: numNodes whole instances of one type must fit maxvCpus (instance vCPUs count)
    instances = {c.ce.name: gang_instance_milli(demands, c.ce) if gang else None for c in usable}
    within = [c for c in usable if d.milli_cpu <= c.max_milli and (instances[c.ce.name] or 0) <= c.max_milli]
    if not within:
        need = ", ".join(
            f"{c.ce.name}: {len(demands)} x {(instances[c.ce.name] or 0) // len(demands) / 1000:g} "
            f"vCPUs > maxvCpus {c.ce.max_vcpus}"
            for c in usable
            if instances[c.ce.name]
        )
        return _Outcome(
            CE_MAX_RESOURCE,
            f"{CE_MAX_RESOURCE_MESSAGE} A multi-node parallel job needs numNodes instances of one "
            f"type that holds its largest node ({need})",
            True,
            "the gang's whole instances exceed maxvCpus of every CE",
        )
    possible = [c for c in within if all(c.shape_fits(x) for x in demands)]
    if not possible:
        return _Outcome(
            JOB_RESOURCE_REQUIREMENT,
            JOB_RESOURCE_REQUIREMENT_MESSAGE,
            True,
            "no node of any CE is large enough for the job's vCPU/memory/GPU",
        )
    starved = [c for c in possible if c.ce.managed and c.under_max(d)]
    if starved and all(c.ce.scaling for c in starved):
        # AWS reports no blocked reason while a compute environment scales out normally (or
        # holds maxvCpus of instances, counted in instance vCPUs, not job vCPUs); the provider
        # failing to deliver is the case below.
        names = ", ".join(c.ce.name for c in starved)
        return _Outcome(
            WAITING_CAPACITY,
            f"Waiting for capacity: the node pool of compute environment(s) {names} is scaling "
            "to the demand (or holds maxvCpus until running jobs end)",
            False,
            "the node pool is scaling",
        )
    if starved:
        types = sorted({t for c in starved for t in c.ce.instance_types}) or [c.ce.name for c in starved]
        return _Outcome(
            CAPACITY_INSUFFICIENT,
            CAPACITY_INSUFFICIENT_MESSAGE.format(instance_type=",".join(types)),
            True,
            "no node has room and the node provider has not added capacity",
        )
    names = ", ".join(c.ce.name for c in possible)
    return _Outcome(
        WAITING_CAPACITY,
        f"Waiting for capacity: running jobs hold the capacity of compute environment(s) {names}",
        False,
    )


def _due_action(q: QueueView, hb: _HeadBlock, now: float) -> TimeLimitAction | None:
    for a in q.time_limit_actions:
        if (
            a.state == RUNNABLE
            and a.action == "CANCEL"
            and a.reason == hb.reason_code
            and hb.reason_code in TIME_LIMIT_REASONS
            and now - hb.since >= a.max_time_seconds
        ):
            return a
    return None
