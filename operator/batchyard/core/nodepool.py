"""Node pools: the node identity of a compute environment and how many nodes it needs.

Why this exists: a MANAGED compute environment scales its nodes with the RUNNABLE demand routed
to it, between minvCpus and maxvCpus (AWS "desiredvCpus ... As your job queue demand increases,
AWS Batch can increase the desired number of vCPUs ... and add EC2 instances, up to the maximum
vCPUs. As demand decreases, AWS Batch can decrease the desired number of vCPUs ... down to the
minimum vCPUs"). This module decides it, purely: ``plan_scale`` takes the pool, its nodes, the
demand and the time, and returns a ``ScalePlan`` that a provider in ``batchyard.nodepools``
carries out.

Node identity (the conventions the pod renderer and the providers share):

* every node of a compute environment carries the label ``batchyard.io/compute-environment=<ce>``
  and the taints ``batchyard.io/compute-environment=<ce>:NoSchedule`` and ``...:NoExecute``
  (AWS puts ``batch.amazonaws.com/batch-node`` with both effects on its nodes, digest §5.2);
  nodes Batchyard creates also carry ``node.kubernetes.io/instance-type=<type>`` and
  ``batchyard.io/managed-by=batchyard``;
* GPU nodes also carry ``nvidia.com/gpu=present:NoSchedule``;
* job pods carry the node selector ``batchyard.io/compute-environment=<ce>`` and tolerate both CE
  taints; GPU jobs (and CPU jobs the queue sends to a compute environment that has only GPU
  types) also tolerate ``nvidia.com/gpu`` (operator Exists). Other pods stay off.
* DaemonSets opt in to Batchyard nodes with the toleration
  ``{key: batchyard.io/compute-environment, operator: Exists}`` (``DAEMONSET_TOLERATION``; the
  AWS equivalent is ``{key: batch.amazonaws.com/batch-node, operator: Exists}``). A DaemonSet
  that should also run on GPU nodes (the NVIDIA device plugin) adds ``GPU_TOLERATION``.

Sizing rules (``plan_scale``), in order:

1. Demand (per-job Resources, in queue order) first goes into the free room of the existing
   nodes (first fit, node name order), then into the room of nodes this plan adds. CPU jobs never
   use GPU nodes or GPU types unless the pool has only GPU types (AWS: "We do not recommend that
   you mix compute-based ... workloads with GPU-based workloads"); GPU jobs only GPU ones.
2. A job that fits nowhere brings a new node, unless the pool is DISABLED ("Managed compute
   environments in the DISABLED state don't scale out"):

   * ``BEST_FIT``: the lowest-price type that holds the job (ties: fewer vCPUs, then name). If
     that type is unavailable or would pass maxvCpus, the job waits (AWS: "If additional
     instances of the selected instance type aren't available, AWS Batch waits").
   * ``BEST_FIT_PROGRESSIVE`` (and the SPOT strategies, which have no spot market here): every
     type that holds the job, is available and stays within maxvCpus is scored by its price per
     vCPU of the pending jobs it would hold (the next jobs of the same kind, packed first fit);
     the lowest score wins (ties: fewer vCPUs, then name). So a large backlog gets large nodes,
     a single job a small one, and when the preferred type is unavailable or too big for the
     remaining headroom another type is chosen (AWS: "If additional instances of the previously
     selected instance types aren't available, AWS Batch selects new instance types").

   A node's room before it exists is the estimate from ``instances.job_capacity_estimate``
   (kube-reserved, evictionHard and the DaemonSet allowance); an existing node's room is the real
   allocatable the caller passes in.
   A multi-node parallel job (``Gang``) is sized as a unit, never packed: it needs numNodes
   whole nodes, one job pod each (AWS: "Multi-node parallel job nodes are single-tenant"), all
   of one instance type (AWS: "The same instance type is used for all node groups"), a type that
   holds its largest node's demand. Existing nodes count only when entirely free (no job pod,
   no room given to earlier demand in this plan) and of that type; the rest are added in one
   plan, or none at all: a gang whose missing nodes would pass maxvCpus (or need an unavailable
   type) adds nothing and waits, so a half-built gang never holds capacity. ``BEST_FIT`` takes
   the cheapest type that holds the largest node; ``BEST_FIT_PROGRESSIVE`` the type that adds
   the least price (free nodes of a type count as already paid), ties: fewer vCPUs, then name.
   A gang whose numNodes nodes of every fitting type exceed maxvCpus can never run: it counts
   as unplaceable (the scheduler says ``MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE``,
   ``core.capacity.gang_never_fits``). No single job is packed onto a gang's nodes.
3. maxvCpus: the instance vCPUs of all nodes never exceed it. AWS may overshoot "by more than a
   single instance" never; like the scheduler (``core.capacity``) we never overshoot at all.
4. minvCpus: nodes are added (cheapest per vCPU, CPU types first) until the pool holds at least
   minvCpus, "even if the compute environment is DISABLED"; without headroom for a whole node
   the floor is not reached.
5. Scale-in: a node idle (no job pods) for at least the scale-down delay is removed, oldest idle
   first, while the pool stays at or above minvCpus. A node running a job, or one the pending
   demand was just packed into, is never removed.

``desired_vcpus`` is the vCPUs the pool holds after the plan, clamped to minvCpus..maxvCpus.
``spec.computeResources.desiredvCpus`` does not drive sizing (AWS: "Don't specify this parameter
for compute environments using Amazon EKS clusters"); status.desiredvCpus reports the plan.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.core.capacity import ZERO, NodeView, Resources, parse_cpu, parse_memory_mib
from batchyard.core.instances import (
    DEFAULT_DAEMONSET_OVERHEAD,
    InstanceType,
    UnknownInstanceType,
    catalogue,
    estimated_price,
    job_capacity_estimate,
    resolve,
)

# --- node identity ---------------------------------------------------------------------------
CE_LABEL: Final = "batchyard.io/compute-environment"
CE_TAINT_KEY: Final = CE_LABEL
CE_TAINT_EFFECTS: Final = ("NoSchedule", "NoExecute")
MANAGED_BY_LABEL: Final = "batchyard.io/managed-by"
MANAGED_BY_VALUE: Final = "batchyard"
INSTANCE_TYPE_LABEL: Final = "node.kubernetes.io/instance-type"
GPU_RESOURCE: Final = "nvidia.com/gpu"
GPU_TAINT_KEY: Final = "nvidia.com/gpu"
GPU_TAINT_VALUE: Final = "present"
GPU_TAINT: Final[Mapping[str, str]] = {"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": "NoSchedule"}
GPU_TOLERATION: Final[Mapping[str, str]] = {"key": GPU_TAINT_KEY, "operator": "Exists"}
DAEMONSET_TOLERATION: Final[Mapping[str, str]] = {"key": CE_TAINT_KEY, "operator": "Exists"}

# --- allocation strategies -------------------------------------------------------------------
BEST_FIT: Final = "BEST_FIT"
BEST_FIT_PROGRESSIVE: Final = "BEST_FIT_PROGRESSIVE"

# Scale-down delay when neither the provider options nor spec.computeResources.scalingPolicy set
# one. AWS doesn't document its own; 5 minutes keeps a node for the next job of a steady stream.
DEFAULT_SCALE_DOWN_DELAY_SECONDS: Final = 300.0
SCALE_DOWN_DELAY_OPTION: Final = "scaleDownDelaySeconds"  # spec.provider.<type>.options key
DAEMONSET_CPU_OPTION: Final = "daemonSetCpu"  # e.g. "500m": the DaemonSet allowance per new node
DAEMONSET_MEMORY_OPTION: Final = "daemonSetMemory"  # e.g. "500Mi"

# How many pending jobs BEST_FIT_PROGRESSIVE looks ahead when scoring a type.
_LOOKAHEAD: Final = 256


def ce_taints(ce: str) -> list[dict[str, str]]:
    """The Batch taints of compute environment ``ce``'s nodes (NoSchedule and NoExecute)."""
    return [{"key": CE_TAINT_KEY, "value": ce, "effect": e} for e in CE_TAINT_EFFECTS]


def node_taints(ce: str, gpu: bool, extra: Iterable[Mapping[str, Any]] = ()) -> list[dict[str, str]]:
    """Every taint a node of ``ce`` carries: the CE taints, the GPU taint on GPU nodes, then ``extra``."""
    out = ce_taints(ce)
    if gpu:
        out.append(dict(GPU_TAINT))
    out.extend({k: str(v) for k, v in t.items() if v is not None} for t in extra)
    return out


def node_labels(
    ce: str, instance_type: str | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Labels of a node Batchyard creates for ``ce`` (``extra`` = spec.nodeLabels)."""
    out = {**(extra or {}), CE_LABEL: ce, MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    if instance_type:
        out[INSTANCE_TYPE_LABEL] = instance_type
    return out


def tolerates_gpu_nodes(job_gpus: int, pool_gpu_only: bool) -> bool:
    """GPU jobs go to GPU nodes; CPU jobs only when the queue sent them to a GPU-only pool."""
    return job_gpus > 0 or pool_gpu_only


# --- inputs ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PoolSpec:
    """What sizing needs from a ComputeEnvironment (see ``pool_spec``)."""

    name: str
    min_vcpus: int = 0
    max_vcpus: int = 0
    instance_types: tuple[InstanceType, ...] = ()
    allocation_strategy: str = BEST_FIT
    enabled: bool = True  # spec.state ENABLED: may scale out
    scale_down_delay_seconds: float = DEFAULT_SCALE_DOWN_DELAY_SECONDS
    daemonset_overhead: Resources = DEFAULT_DAEMONSET_OVERHEAD
    node_name_prefix: str = ""  # new nodes are named <prefix>-<n>; default the CE name
    # Types the provider cannot launch right now (capacity errors): BEST_FIT waits for them,
    # BEST_FIT_PROGRESSIVE picks other types.
    unavailable: frozenset[str] = frozenset()

    @property
    def gpu_only(self) -> bool:
        return bool(self.instance_types) and all(t.gpu for t in self.instance_types)

    @property
    def node_types(self) -> tuple[tuple[int, Resources], ...]:
        """(instance millicpu, room for job pods) per type, for the scheduler's CEView."""
        return tuple(
            (t.milli_cpu, job_capacity_estimate(t, self.daemonset_overhead)) for t in self.instance_types
        )

    @property
    def max_node(self) -> Resources | None:
        """The largest job shape a new node can hold (per dimension), for the scheduler's CEView."""
        if not self.instance_types:
            return None
        caps = [job_capacity_estimate(t, self.daemonset_overhead) for t in self.instance_types]
        return Resources(
            max(c.milli_cpu for c in caps), max(c.memory_mib for c in caps), max(c.gpus for c in caps)
        )


@dataclass(frozen=True, slots=True)
class PoolNode:
    """One node of the pool as the loop sees it now.

    ``allocatable`` is what job pods may use: the node's status.allocatable minus the requests of
    pods that are not Batchyard jobs (DaemonSets); ``used`` is the requests of the job pods bound
    to it (STARTING and RUNNING). ``idle_since`` is when it last became empty (creation time for
    a node that never ran a job; see ``IdleTracker``); None means busy or unknown, never removed.
    """

    name: str
    instance_type: str | None
    milli_cpu: int  # instance vCPUs, counted against maxvCpus (node capacity cpu)
    allocatable: Resources
    used: Resources = ZERO
    running_jobs: int = 0
    idle_since: float | None = None
    ready: bool = True
    deleting: bool = False

    @property
    def gpu(self) -> bool:
        return self.allocatable.gpus > 0


@dataclass(frozen=True, slots=True)
class Gang:
    """A multi-node parallel job's sizing demand: one job pod per node, in node-index order."""

    nodes: tuple[Resources, ...]

    @property
    def largest(self) -> Resources:
        """Per dimension, the most any node asks: the one instance type must hold it."""
        return Resources(
            max(d.milli_cpu for d in self.nodes),
            max(d.memory_mib for d in self.nodes),
            max(d.gpus for d in self.nodes),
        )

    @property
    def milli_cpu(self) -> int:
        return sum(d.milli_cpu for d in self.nodes)


Demand = Resources | Gang


# --- output ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NodeAdd:
    """A node to create: its deterministic name (a repeat gets 409) and its type."""

    name: str
    instance_type: InstanceType


@dataclass(frozen=True, slots=True)
class ScalePlan:
    desired_vcpus: int  # vCPUs the pool holds after the plan, clamped to min..max
    add: tuple[NodeAdd, ...] = ()
    remove: tuple[str, ...] = ()
    nodes: int = 0  # nodes after the plan
    waiting_jobs: int = 0  # demand that needs a node the pool can't add now (max, DISABLED, unavailable)
    unplaceable_jobs: int = 0  # demand no instance type of the pool can ever hold
    milli_cpu: int = 0  # instance vCPUs after the plan, in millicpu (unclamped)

    @property
    def changes(self) -> bool:
        return bool(self.add or self.remove)


# --- sizing ----------------------------------------------------------------------------------
@dataclass(slots=True)
class _Room:
    name: str
    free: Resources
    gpu: bool


def _first_fit(d: Resources, rooms: list[_Room], gpu_ok: bool, cpu_ok: bool) -> _Room | None:
    for r in rooms:
        if (r.gpu and not gpu_ok) or (not r.gpu and not cpu_ok):
            continue
        if d.fits_in(r.free):
            r.free = r.free - d
            return r
    return None


def _kinds(d: Resources, spec: PoolSpec) -> tuple[bool, bool]:
    """(may use GPU nodes, may use CPU nodes) for a job with demand ``d``."""
    if d.gpus > 0:
        return True, False
    has_cpu_types = any(not t.gpu for t in spec.instance_types)
    return (not has_cpu_types), True


def _eligible(d: Resources, spec: PoolSpec) -> list[InstanceType]:
    gpu_ok, cpu_ok = _kinds(d, spec)
    return [
        t
        for t in spec.instance_types
        if ((t.gpu and gpu_ok) or (not t.gpu and cpu_ok))
        and d.fits_in(job_capacity_estimate(t, spec.daemonset_overhead))
    ]


def _progressive_score(t: InstanceType, spec: PoolSpec, upcoming: Sequence[Resources]) -> float:
    """Price per vCPU of pending jobs a fresh node of type ``t`` would hold (lower is better)."""
    room = job_capacity_estimate(t, spec.daemonset_overhead)
    held = 0
    for d in upcoming:
        if d.fits_in(room):
            room = room - d
            held += d.milli_cpu or 1
    return t.price / held * 1000 if held else math.inf


def _choose(
    d: Resources, spec: PoolSpec, headroom: int, upcoming: Sequence[Resources]
) -> tuple[InstanceType | None, bool]:
    """(type for a new node holding ``d``, or None; whether some type could ever hold ``d``)."""
    eligible = _eligible(d, spec)
    if not eligible:
        return None, False
    if spec.allocation_strategy == BEST_FIT:
        best = min(eligible, key=lambda t: (t.price, t.milli_cpu, t.name))
        ok = best.name not in spec.unavailable and best.milli_cpu <= headroom
        return (best if ok else None), True
    usable = [t for t in eligible if t.name not in spec.unavailable and t.milli_cpu <= headroom]
    if not usable:
        return None, True
    gpu_ok, cpu_ok = _kinds(d, spec)
    same_kind = [u for u in upcoming if _kinds(u, spec) == (gpu_ok, cpu_ok)]
    return min(usable, key=lambda t: (_progressive_score(t, spec, same_kind), t.milli_cpu, t.name)), True


def _gang_type_costs(g: Gang, spec: PoolSpec, free: Mapping[str, int]) -> list[tuple[InstanceType, int]]:
    """(type, nodes to add) for every type that can hold ``g``'s largest node; ``free``: the
    entirely free existing nodes per type name."""
    n = len(g.nodes)
    return [(t, n - min(n, free.get(t.name, 0))) for t in _eligible(g.largest, spec)]


def _gang_instance_milli(g: Gang, spec: PoolSpec) -> int | None:
    """The instance millicpu of ``g``'s numNodes nodes of the smallest type that holds its largest
    node, or None when no such type stays within maxvCpus (the gang never fits this pool)."""
    sizes = [len(g.nodes) * t.milli_cpu for t in _eligible(g.largest, spec)]
    fit = [m for m in sizes if m <= spec.max_vcpus * 1000]
    return min(fit) if fit else None


def _choose_gang(
    g: Gang, spec: PoolSpec, headroom: int, free: Mapping[str, int]
) -> tuple[tuple[InstanceType, int] | None, bool]:
    """((type, nodes to add) for gang ``g``, or None to wait; whether ``g`` can ever fit)."""
    if _gang_instance_milli(g, spec) is None:
        return None, False  # no instance type: numNodes of it pass maxvCpus (or none holds it)
    costs = _gang_type_costs(g, spec, free)

    def ok(t: InstanceType, add: int) -> bool:
        return add * t.milli_cpu <= headroom and (add == 0 or t.name not in spec.unavailable)

    if spec.allocation_strategy == BEST_FIT:
        t, add = min(costs, key=lambda c: (c[0].price, c[0].milli_cpu, c[0].name))
        return ((t, add) if ok(t, add) else None), True
    usable = [(t, add) for t, add in costs if ok(t, add)]
    if not usable:
        return None, True
    return min(usable, key=lambda c: (c[1] * c[0].price, c[0].milli_cpu, c[0].name)), True


def _place_gang(
    g: Gang, spec: PoolSpec, headroom: int, free: Sequence[PoolNode]
) -> tuple[list[str], list[InstanceType]] | None:
    """(existing nodes taken, nodes to add) for gang ``g``; ([], []) to wait; None: never fits.

    Entirely free nodes that hold the largest node cover the gang first when there are enough
    (what the scheduler's ``CEWork.find_gang`` takes); else the chosen type's free nodes plus
    new nodes of that type.
    """
    n = len(g.nodes)
    largest = g.largest
    gpu_ok, cpu_ok = _kinds(largest, spec)
    fitting = [
        p for p in free if ((p.gpu and gpu_ok) or (not p.gpu and cpu_ok)) and largest.fits_in(p.allocatable)
    ]
    pick, possible = _choose_gang(
        g, spec, headroom, Counter(p.instance_type for p in fitting if p.instance_type)
    )
    if len(fitting) >= n:
        return [p.name for p in fitting[:n]], []
    if not possible:
        return None
    if pick is None:
        return [], []
    t, add = pick
    return [p.name for p in fitting if p.instance_type == t.name][: n - add], [t] * add


def _names(prefix: str, taken: set[str]) -> Iterator[str]:
    i = 0
    while True:
        name = f"{prefix}-{i}"
        if name not in taken:
            taken.add(name)
            yield name
        i += 1


def plan_scale(spec: PoolSpec, nodes: Sequence[PoolNode], demand: Sequence[Demand], now: float) -> ScalePlan:
    """Size the pool for ``demand`` (RUNNABLE jobs routed here, queue order). See the module docstring."""
    live = sorted((n for n in nodes if not n.deleting), key=lambda n: n.name)
    max_milli = spec.max_vcpus * 1000
    min_milli = spec.min_vcpus * 1000
    total = sum(n.milli_cpu for n in live)
    rooms = [_Room(n.name, n.allocatable - n.used, n.gpu) for n in live]
    # entirely free existing nodes: a gang member's candidates (name order)
    whole = {n.name: n for n in live if n.ready and n.running_jobs == 0 and n.used == ZERO}
    singles = [d for d in demand if isinstance(d, Resources)]  # the lookahead of rule 2
    new_rooms: list[_Room] = []
    wanted: set[str] = set()  # existing nodes the pending demand goes to: never removed now
    adds: list[InstanceType] = []
    waiting = unplaceable = 0
    si = -1  # index of ``d`` in ``singles``

    # 1. existing room, then room on nodes this plan adds, then a new node (rule 2)
    for d in demand:
        if isinstance(d, Gang):
            headroom = max_milli - total - sum(t.milli_cpu for t in adds)
            placed = _place_gang(d, spec, headroom if spec.enabled else -1, list(whole.values()))
            if placed is None:
                unplaceable += 1
                continue
            taken, new = placed
            if not taken and not new:
                waiting += 1
                continue
            for name in taken:  # single-tenant: the node is the gang's, nothing else packs in
                del whole[name]
                wanted.add(name)
                for r in rooms:
                    if r.name == name:
                        r.free = ZERO
            adds.extend(new)  # and no room on the new nodes for others either
            continue
        si += 1
        gpu_ok, cpu_ok = _kinds(d, spec)
        hit = _first_fit(d, rooms, gpu_ok, cpu_ok)
        if hit is not None:
            wanted.add(hit.name)
            whole.pop(hit.name, None)
            continue
        if _first_fit(d, new_rooms, gpu_ok, cpu_ok) is not None:
            continue
        headroom = max_milli - total - sum(t.milli_cpu for t in adds)
        t, possible = _choose(d, spec, headroom if spec.enabled else -1, singles[si : si + _LOOKAHEAD])
        if not possible:
            unplaceable += 1
        elif t is None:
            waiting += 1
        else:
            adds.append(t)
            new_rooms.append(_Room("", job_capacity_estimate(t, spec.daemonset_overhead) - d, t.gpu))

    # 2. minvCpus floor, even when DISABLED (rule 4)
    floor_types = sorted(
        (t for t in spec.instance_types if t.name not in spec.unavailable),
        key=lambda t: (t.gpu, t.price / t.milli_cpu, t.milli_cpu, t.name),
    )
    while floor_types and total + sum(t.milli_cpu for t in adds) < min_milli:
        headroom = max_milli - total - sum(t.milli_cpu for t in adds)
        t = next((t for t in floor_types if t.milli_cpu <= headroom), None)
        if t is None:
            break
        adds.append(t)

    # 3. scale-in: idle past the delay, oldest idle first, never below minvCpus (rule 5)
    after = total + sum(t.milli_cpu for t in adds)
    idle = sorted(
        (
            n
            for n in live
            if n.running_jobs == 0
            and n.used == ZERO
            and n.idle_since is not None
            and now - n.idle_since >= spec.scale_down_delay_seconds
            and n.name not in wanted
        ),
        key=lambda n: (n.idle_since, n.name),
    )
    remove: list[str] = []
    for n in idle:
        if after - n.milli_cpu >= min_milli:
            remove.append(n.name)
            after -= n.milli_cpu

    names = _names(spec.node_name_prefix or spec.name, {n.name for n in nodes})
    add = tuple(NodeAdd(next(names), t) for t in adds)
    desired = min(max(math.ceil(after / 1000), spec.min_vcpus), spec.max_vcpus)
    return ScalePlan(
        desired_vcpus=desired,
        add=add,
        remove=tuple(remove),
        nodes=len(live) + len(add) - len(remove),
        waiting_jobs=waiting,
        unplaceable_jobs=unplaceable,
        milli_cpu=after,
    )


def node_views(nodes: Iterable[PoolNode]) -> tuple[NodeView, ...]:
    """The scheduler's view of a node-scaling pool (CEView.nodes): ready, not deleting, not cordoned.

    NodeView.allocatable is the room for job pods before the scheduler's own charges, i.e.
    PoolNode.allocatable (the scheduler's ledger charges the job pods itself).
    """
    return tuple(
        NodeView(n.name, n.allocatable)
        for n in sorted(nodes, key=lambda n: n.name)
        if n.ready and not n.deleting
    )


# --- idle bookkeeping ------------------------------------------------------------------------
@dataclass(slots=True)
class IdleTracker:
    """Remembers since when each node has had no job pods (one tracker per compute environment).

    Call ``observe`` every cycle with the node names, the names of nodes that hold job pods, and
    each node's creation time; it returns idle_since per node (None for busy nodes). A node that
    was never seen busy is idle since its creation (or since the tracker first saw it, whichever
    is later, so a restarted operator waits a full delay before removing anything).
    """

    started: float
    since: dict[str, float | None] = field(default_factory=dict)  # None: busy

    def observe(self, nodes: Mapping[str, float], busy: Iterable[str], now: float) -> dict[str, float | None]:
        busy_set = set(busy)
        for name, created in nodes.items():
            if name in busy_set:
                self.since[name] = None
            elif name not in self.since:
                self.since[name] = max(created, self.started)
            elif self.since[name] is None:
                self.since[name] = now  # its last job just ended
        for gone in set(self.since) - set(nodes):
            del self.since[gone]
        return {name: self.since[name] for name in nodes}


# --- demand routing --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QueueDemand:
    """One job queue's RUNNABLE demand: its compute environments in order, its jobs in order."""

    compute_environment_order: tuple[str, ...]
    jobs: Sequence[Demand]


def route_demand(
    queues: Sequence[QueueDemand],
    pools: Mapping[str, PoolSpec],
    in_use: Mapping[str, Resources] | None = None,
) -> dict[str, list[Demand]]:
    """Route each RUNNABLE job (queues in priority order, jobs in queue order) to one pool.

    AWS: a job goes to the first compute environment in the queue's order that is VALID, ENABLED
    and can provide a suitable resource; so a job goes to the first ENABLED pool in order with an
    instance type that can hold it (GPU jobs: a GPU type; CPU jobs: a CPU type, or any type when
    the pool has only GPU types) and whose maxvCpus, less what is in use and what was routed
    before, still has room for it. A job no pool can take is routed to the first pool that could
    ever hold it (it waits there, and counts as waiting in that pool's plan). ``pools`` holds
    only usable (VALID) compute environments. A ``Gang`` goes whole to one pool (AWS: a
    multi-node parallel job runs in one compute environment); it takes numNodes instances of
    the smallest type that holds its largest node (instance vCPUs count against maxvCpus), and
    a pool where those pass maxvCpus can never hold it.
    """
    budget = {
        name: p.max_vcpus * 1000 - (in_use or {}).get(name, ZERO).milli_cpu for name, p in pools.items()
    }
    out: dict[str, list[Demand]] = {name: [] for name in pools}

    def cost(d: Demand, p: PoolSpec) -> int | None:
        """vCPUs (milli) ``d`` takes of ``p``'s maxvCpus, or None if ``p`` can never hold it."""
        if isinstance(d, Resources):
            return d.milli_cpu if _eligible(d, p) else None
        return _gang_instance_milli(d, p)

    for q in queues:
        for d in q.jobs:
            first: str | None = None
            need = 0
            for name in q.compute_environment_order:
                p = pools.get(name)
                c = cost(d, p) if p is not None and p.enabled else None
                if c is None:
                    continue
                first = first or name
                need = c
                if c <= budget[name]:
                    break
            else:
                name = first or ""
                if name:
                    need = cost(d, pools[name]) or 0
            if name:
                out[name].append(d)
                budget[name] -= need
    return out


# --- from the ComputeEnvironment -------------------------------------------------------------
_SAFE = re.compile(r"[^a-z0-9-]+")


def _delay_seconds(ce: ComputeEnvironment, options: Mapping[str, str]) -> float:
    if SCALE_DOWN_DELAY_OPTION in options:
        return float(options[SCALE_DOWN_DELAY_OPTION])
    cr = ce.spec.computeResources
    if cr and cr.scalingPolicy and cr.scalingPolicy.minScaleDownDelayMinutes:
        return cr.scalingPolicy.minScaleDownDelayMinutes * 60.0
    return DEFAULT_SCALE_DOWN_DELAY_SECONDS


def provider_options(ce: ComputeEnvironment) -> dict[str, str]:
    """spec.provider.<type>.options, or {}."""
    p = ce.spec.provider
    if p is None:
        return {}
    sub = getattr(p, p.type, None)
    return dict(getattr(sub, "options", None) or {})


def instance_types_of(ce: ComputeEnvironment) -> tuple[InstanceType, ...]:
    """The resolved instance types (built-in catalogue + spec.instanceCatalog); raises UnknownInstanceType."""
    extra = [
        InstanceType(
            i.name,
            math.ceil(i.vcpus * 1000),
            i.memoryMiB,
            i.gpus or 0,
            price=estimated_price(math.ceil(i.vcpus * 1000), i.memoryMiB, i.gpus or 0),
        )
        for i in ce.spec.instanceCatalog or ()
    ]
    cr = ce.spec.computeResources
    return resolve(cr.instanceTypes if cr else None, catalogue(extra))


def pool_spec(ce: ComputeEnvironment, unavailable: Iterable[str] = ()) -> PoolSpec:
    """The sizing inputs of a MANAGED ComputeEnvironment; raises UnknownInstanceType."""
    cr = ce.spec.computeResources
    options = provider_options(ce)
    overhead = Resources(
        parse_cpu(options.get(DAEMONSET_CPU_OPTION, str(DEFAULT_DAEMONSET_OVERHEAD.milli_cpu) + "m")),
        parse_memory_mib(options.get(DAEMONSET_MEMORY_OPTION, f"{DEFAULT_DAEMONSET_OVERHEAD.memory_mib}Mi")),
    )
    name = ce.metadata.name or ""
    kwok = ce.spec.provider.kwok if ce.spec.provider else None
    prefix = (kwok.nodeNamePrefix if kwok else None) or _SAFE.sub("-", name.lower())[:40].strip("-")
    strategy = (cr.allocationStrategy if cr else None) or BEST_FIT
    return PoolSpec(
        name=name,
        min_vcpus=(cr.minvCpus or 0) if cr else 0,
        max_vcpus=cr.maxvCpus if cr else 0,
        instance_types=instance_types_of(ce),
        allocation_strategy=BEST_FIT if strategy == BEST_FIT else BEST_FIT_PROGRESSIVE,
        enabled=ce.spec.state == "ENABLED",
        scale_down_delay_seconds=_delay_seconds(ce, options),
        daemonset_overhead=overhead,
        node_name_prefix=prefix,
        unavailable=frozenset(unavailable),
    )


__all__ = [
    "BEST_FIT",
    "BEST_FIT_PROGRESSIVE",
    "CE_LABEL",
    "CE_TAINT_KEY",
    "DAEMONSET_TOLERATION",
    "GPU_RESOURCE",
    "GPU_TAINT",
    "GPU_TOLERATION",
    "INSTANCE_TYPE_LABEL",
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "Demand",
    "Gang",
    "IdleTracker",
    "NodeAdd",
    "PoolNode",
    "PoolSpec",
    "QueueDemand",
    "ScalePlan",
    "UnknownInstanceType",
    "ce_taints",
    "node_labels",
    "node_taints",
    "node_views",
    "plan_scale",
    "pool_spec",
    "route_demand",
    "tolerates_gpu_nodes",
]
