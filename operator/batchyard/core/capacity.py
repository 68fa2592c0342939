"""Resource arithmetic and compute-environment capacity accounting for the scheduler.

Why this exists: AWS Batch places a job only where its vCPU, memory and GPU demand fits, and
never past a compute environment's ``maxvCpus``. The scheduler needs exact, cheap arithmetic for
that, so quantities are integers (millicpu, MiB, whole GPUs): summing 100,000 float vCPU values
drifts, integers do not.

Capacity model (documented choice; AWS has instances, we have Kubernetes nodes):

* ``maxvCpus`` binds always: vCPUs charged to a CE (all queues together) + the job's vCPUs must
  stay <= maxvCpus. AWS may exceed maxvCpus "by more than a single instance" never; we never
  exceed it at all, which is the conservative reading.
* ``nodes`` binds when the caller knows them (``CEView.nodes`` is a tuple): a pod never spans
  nodes, so the job must fit on one node's free allocatable (vCPU, memory *and* GPU). A node's
  allocatable is what is left for batch pods (node allocatable minus DaemonSets and other
  workloads). The scheduler charges each dispatched job to the first node with room (first fit
  in the order given), so two jobs in the same cycle never count the same free space twice.
* ``nodes is None`` means "capacity materialises on demand" (a managed CE whose node provider
  reacts to pending pods, e.g. Karpenter): only maxvCpus and the largest launchable node shape
  (``max_node``, when known) bind.

Multi-node parallel (MNP) jobs are placed as a gang (``CEWork.find_gang``): all ``numNodes``
pods at once, each on its own node, or none. AWS: "Multi-node parallel job nodes are
single-tenant" -- so a gang node must be entirely free, and it is charged whole (``Charge.node_demand``
is the node's allocatable) so that no other job lands beside the gang's pod. ``maxvCpus`` is
charged the job's own vCPUs, as for every other job.

Capacity is charged when the scheduler dispatches (assume-then-undo: the Dispatch is counted
before the pod exists) and released when the attempt ends or the dispatch is undone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Final

# AWS: CE state ENABLED/DISABLED; status CREATING|UPDATING|DELETING|DELETED|VALID|INVALID.
ENABLED: Final = "ENABLED"
DISABLED: Final = "DISABLED"
VALID: Final = "VALID"
INVALID: Final = "INVALID"


@dataclass(frozen=True, slots=True, order=True)
class Resources:
    """A demand or a capacity: integer millicpu, MiB of memory, whole GPUs."""

    milli_cpu: int = 0
    memory_mib: int = 0
    gpus: int = 0

    @staticmethod
    def of(cpu: str | float | int = 0, memory: str | int = 0, gpus: int = 0) -> Resources:
        """Build from Kubernetes-style quantities: ``Resources.of(cpu="500m", memory="2Gi")``.

        A bare number for ``memory`` is MiB (the AWS Batch unit); a bare number for ``cpu`` is vCPUs.
        """
        return Resources(parse_cpu(cpu), parse_memory_mib(memory), int(gpus))

    @property
    def vcpus(self) -> float:
        return self.milli_cpu / 1000

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.milli_cpu + other.milli_cpu, self.memory_mib + other.memory_mib, self.gpus + other.gpus
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            self.milli_cpu - other.milli_cpu, self.memory_mib - other.memory_mib, self.gpus - other.gpus
        )

    def fits_in(self, room: Resources) -> bool:
        """True when every dimension of this demand is <= the same dimension of ``room``."""
        return (
            self.milli_cpu <= room.milli_cpu and self.memory_mib <= room.memory_mib and self.gpus <= room.gpus
        )

    def short_of(self, room: Resources) -> tuple[str, ...]:
        """The dimensions ("vCPU", "memory", "GPU") in which this demand exceeds ``room``."""
        out = []
        if self.milli_cpu > room.milli_cpu:
            out.append("vCPU")
        if self.memory_mib > room.memory_mib:
            out.append("memory")
        if self.gpus > room.gpus:
            out.append("GPU")
        return tuple(out)


ZERO: Final = Resources()

# The API server writes quantities in canonical form: a node's 1000 CPUs come back as "1k".
_CPU_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*(m|k|M|G|T|P|E)?\s*$")
_CPU_FACTOR: Final[dict[str, Decimal]] = {
    "m": Decimal(1),
    "": Decimal(1000),
    "k": Decimal(1000) ** 2,
    "M": Decimal(1000) ** 3,
    "G": Decimal(1000) ** 4,
    "T": Decimal(1000) ** 5,
    "P": Decimal(1000) ** 6,
    "E": Decimal(1000) ** 7,
}
_MEM_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([KMGTPE]i?|k)?\s*$")
_MEM_FACTOR: Final[dict[str, Decimal]] = {
    "": Decimal(1),  # bare numbers in strings are bytes, as in Kubernetes
    "k": Decimal(1000),
    "K": Decimal(1000),
    "M": Decimal(1000) ** 2,
    "G": Decimal(1000) ** 3,
    "T": Decimal(1000) ** 4,
    "P": Decimal(1000) ** 5,
    "E": Decimal(1000) ** 6,
    "Ki": Decimal(1024),
    "Mi": Decimal(1024) ** 2,
    "Gi": Decimal(1024) ** 3,
    "Ti": Decimal(1024) ** 4,
    "Pi": Decimal(1024) ** 5,
    "Ei": Decimal(1024) ** 6,
}


def parse_cpu(value: str | float | int) -> int:
    """vCPUs -> millicpu, rounding up (a job asking 0.0001 vCPU still needs 1m)."""
    if isinstance(value, int | float):
        return math.ceil(Decimal(str(value)) * 1000)
    m = _CPU_RE.match(value)
    if not m:
        raise ValueError(f"not a CPU quantity: {value!r}")
    return math.ceil(Decimal(m.group(1)) * _CPU_FACTOR[m.group(2) or ""])


def parse_memory_mib(value: str | int) -> int:
    """Memory -> MiB, rounding up. Ints are MiB (AWS unit); strings are Kubernetes quantities."""
    if isinstance(value, int):
        return value
    m = _MEM_RE.match(value)
    if not m:
        raise ValueError(f"not a memory quantity: {value!r}")
    try:
        number = Decimal(m.group(1))
    except InvalidOperation as exc:  # pragma: no cover - the regex already filters
        raise ValueError(f"not a memory quantity: {value!r}") from exc
    return math.ceil(number * _MEM_FACTOR[m.group(2) or ""] / (Decimal(1024) ** 2))


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node of a CE: its allocatable capacity left for batch pods."""

    name: str
    allocatable: Resources


@dataclass(frozen=True, slots=True)
class CEView:
    """What the scheduler needs to know about a ComputeEnvironment."""

    name: str
    max_vcpus: int
    state: str = ENABLED
    status: str = VALID
    status_reason: str = ""
    # None: capacity appears on demand (provider scales from pending pods); a tuple: these
    # nodes bind (see module docstring).
    nodes: tuple[NodeView, ...] | None = None
    # managed CEs can scale out: a full node set below maxvCpus means the provider failed to
    # deliver instances (AWS: CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY); an unmanaged CE with
    # full nodes is only waiting for running jobs to end.
    managed: bool = True
    # The largest node shape the CE can launch (from its instance types), when known; used to
    # detect MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT for CEs without known nodes.
    max_node: Resources | None = None
    instance_types: tuple[str, ...] = ()
    # A managed CE whose node pool follows demand (nodes are being added, or its instances
    # already add up to maxvCpus and running jobs must end): full nodes then mean "wait", not
    # INSUFFICIENT_INSTANCE_CAPACITY (which stays for a provider that fails to deliver).
    scaling: bool = False
    # Spot capacity: AWS "Multi-node parallel jobs aren't supported on compute environments that
    # use Spot Instances", so gangs skip it.
    spot: bool = False
    # A node pool's launchable instance types as (instance millicpu, room for job pods), when
    # known: a gang needs numNodes whole instances of one type, counted against maxvCpus.
    node_types: tuple[tuple[int, Resources], ...] = ()

    @property
    def usable(self) -> bool:
        # AWS: "If the first compute environment has a status of VALID and has available
        # resources, the job is scheduled ... If [it] has a status of INVALID or can't provide a
        # suitable compute resource, the scheduler attempts to run the job on the next".
        # AWS: a DISABLED CE: "the Batch scheduler doesn't attempt to place jobs within it".
        return self.state == ENABLED and self.status == VALID


@dataclass(slots=True)
class Charge:
    """Capacity held by one attempt: which CE, which node (if nodes are known), how much."""

    ce: str
    node: str | None
    demand: Resources
    # what the node is charged, when it differs from ``demand``: a gang node is held whole
    node_demand: Resources | None = None

    @property
    def on_node(self) -> Resources:
        return self.demand if self.node_demand is None else self.node_demand


@dataclass(slots=True)
class CapacityLedger:
    """Running totals of what attempts hold, per CE and per (CE, node). Integer arithmetic."""

    ce_milli: dict[str, int] = field(default_factory=dict)
    ce_memory: dict[str, int] = field(default_factory=dict)
    ce_gpus: dict[str, int] = field(default_factory=dict)
    ce_jobs: dict[str, int] = field(default_factory=dict)
    node_used: dict[tuple[str, str], Resources] = field(default_factory=dict)
    charges: dict[Hashable, Charge] = field(default_factory=dict)
    # per-CE free-room arrays, kept in step with every charge so a cycle need not rebuild them
    work: dict[str, CEWork] = field(default_factory=dict)

    def view(self, ce: CEView) -> CEWork:
        """The CE's working view; rebuilt only when the CEView changed (nodes, maxvCpus...)."""
        w = self.work.get(ce.name)
        if w is None or (w.ce is not ce and w.ce != ce):
            w = self.work[ce.name] = CEWork(ce, self)
        else:
            w.ce = ce
        return w

    def forget_views(self, keep: Iterable[str]) -> None:
        wanted = set(keep)
        for name in [n for n in self.work if n not in wanted]:
            del self.work[name]

    def charge(self, key: Hashable, charge: Charge) -> None:
        if key in self.charges:
            self.release(key)
        self.charges[key] = charge
        ce, d = charge.ce, charge.demand
        self.ce_milli[ce] = self.ce_milli.get(ce, 0) + d.milli_cpu
        self.ce_memory[ce] = self.ce_memory.get(ce, 0) + d.memory_mib
        self.ce_gpus[ce] = self.ce_gpus.get(ce, 0) + d.gpus
        self.ce_jobs[ce] = self.ce_jobs.get(ce, 0) + 1
        if charge.node is not None:
            nd = charge.on_node
            nk = (ce, charge.node)
            self.node_used[nk] = self.node_used.get(nk, ZERO) + nd
            w = self.work.get(ce)
            if w is not None:
                w.adjust(charge.node, nd, -1)

    def release(self, key: Hashable) -> Charge | None:
        charge = self.charges.pop(key, None)
        if charge is None:
            return None
        ce, d = charge.ce, charge.demand
        self.ce_milli[ce] -= d.milli_cpu
        self.ce_memory[ce] -= d.memory_mib
        self.ce_gpus[ce] -= d.gpus
        self.ce_jobs[ce] -= 1
        if charge.node is not None:
            nd = charge.on_node
            nk = (ce, charge.node)
            left = self.node_used[nk] - nd
            if left == ZERO:
                del self.node_used[nk]
            else:
                self.node_used[nk] = left
            w = self.work.get(ce)
            if w is not None:
                w.adjust(charge.node, nd, +1)
        return charge

    def rebind(self, key: Hashable, node: str | None) -> None:
        """The pod landed on ``node`` (kube-scheduler's choice may differ from our first fit)."""
        charge = self.charges.get(key)
        if charge is None or charge.node == node:
            return
        self.release(key)
        self.charge(key, Charge(charge.ce, node, charge.demand, charge.node_demand))

    def in_use(self, ce: str) -> Resources:
        return Resources(self.ce_milli.get(ce, 0), self.ce_memory.get(ce, 0), self.ce_gpus.get(ce, 0))


class CEWork:
    """Working view of a CE: free room per node as plain int lists, kept current by the ledger."""

    __slots__ = (
        "ce",
        "free_cpu",
        "free_gpu",
        "free_mem",
        "index",
        "ledger",
        "node_names",
        "shape_cpu",
        "shape_gpu",
        "shape_mem",
    )

    def __init__(self, ce: CEView, ledger: CapacityLedger) -> None:
        self.ce = ce
        self.ledger = ledger
        self.node_names: list[str] = []
        self.index: dict[str, int] = {}
        self.free_cpu: list[int] = []
        self.free_mem: list[int] = []
        self.free_gpu: list[int] = []
        self.shape_cpu: list[int] = []
        self.shape_mem: list[int] = []
        self.shape_gpu: list[int] = []
        if ce.nodes is not None:
            for node in ce.nodes:
                used = ledger.node_used.get((ce.name, node.name), ZERO)
                a = node.allocatable
                self.index[node.name] = len(self.node_names)
                self.node_names.append(node.name)
                self.free_cpu.append(a.milli_cpu - used.milli_cpu)
                self.free_mem.append(a.memory_mib - used.memory_mib)
                self.free_gpu.append(a.gpus - used.gpus)
                self.shape_cpu.append(a.milli_cpu)
                self.shape_mem.append(a.memory_mib)
                self.shape_gpu.append(a.gpus)
        elif ce.max_node is not None:
            self.shape_cpu.append(ce.max_node.milli_cpu)
            self.shape_mem.append(ce.max_node.memory_mib)
            self.shape_gpu.append(ce.max_node.gpus)

    @property
    def max_milli(self) -> int:
        return self.ce.max_vcpus * 1000

    @property
    def used_milli(self) -> int:
        return self.ledger.ce_milli.get(self.ce.name, 0)

    def under_max(self, d: Resources) -> bool:
        """AWS maxvCpus: the CE's charged vCPUs plus this job stay within maxvCpus."""
        return self.ledger.ce_milli.get(self.ce.name, 0) + d.milli_cpu <= self.ce.max_vcpus * 1000

    def find_node(self, d: Resources) -> int | None:
        """Index of the first node with free room for ``d``; -1 when nodes don't bind; None: no room."""
        if self.ce.nodes is None:
            return -1 if self.shape_fits(d) else None
        c, m, g = d.milli_cpu, d.memory_mib, d.gpus
        fc, fm, fg = self.free_cpu, self.free_mem, self.free_gpu
        for i in range(len(fc)):
            if c <= fc[i] and m <= fm[i] and g <= fg[i]:
                return i
        return None

    def find_gang(self, demands: tuple[Resources, ...]) -> list[int] | None:
        """One distinct, entirely free node per gang member (index i -> node index), or None.

        AWS "Multi-node parallel jobs" ("also known as gang scheduling"): the job starts only
        when all its nodes can; AWS: MNP nodes are single-tenant, so a node that already runs
        anything is not a candidate. Nodes that don't bind (capacity on demand): every member
        gets -1 when each fits the largest launchable node. First fit in node order; the
        largest demands are placed first so a mixed gang does not waste the big nodes.
        """
        if self.ce.nodes is None:
            return [-1] * len(demands) if all(self.shape_fits(d) for d in demands) else None
        fc, fm, fg = self.free_cpu, self.free_mem, self.free_gpu
        sc, sm, sg = self.shape_cpu, self.shape_mem, self.shape_gpu
        free = [i for i in range(len(fc)) if fc[i] == sc[i] and fm[i] == sm[i] and fg[i] == sg[i]]
        if len(free) < len(demands):
            return None
        out: list[int] = [0] * len(demands)
        taken: set[int] = set()
        for k in sorted(range(len(demands)), key=lambda k: demands[k], reverse=True):
            d = demands[k]
            for i in free:
                if i not in taken and d.milli_cpu <= fc[i] and d.memory_mib <= fm[i] and d.gpus <= fg[i]:
                    taken.add(i)
                    out[k] = i
                    break
            else:
                return None
        return out

    def whole_node(self, i: int) -> Resources:
        """Node ``i``'s allocatable: what a single-tenant gang member holds."""
        return Resources(self.shape_cpu[i], self.shape_mem[i], self.shape_gpu[i])

    def adjust(self, node: str, d: Resources, sign: int) -> None:
        """A charge on ``node`` was added (sign -1) or released (+1)."""
        i = self.index.get(node)
        if i is None:
            return  # a node that is gone (or not yet known): nothing to keep in step
        self.free_cpu[i] += sign * d.milli_cpu
        self.free_mem[i] += sign * d.memory_mib
        self.free_gpu[i] += sign * d.gpus

    def shape_fits(self, d: Resources) -> bool:
        """Could ``d`` ever fit on one node of this CE (ignoring what runs now)?"""
        if not self.shape_cpu:
            return True  # unknown shape: assume the provider can launch a large enough node
        c, m, g = d.milli_cpu, d.memory_mib, d.gpus
        sc, sm, sg = self.shape_cpu, self.shape_mem, self.shape_gpu
        return any(c <= sc[i] and m <= sm[i] and g <= sg[i] for i in range(len(sc)))


def gang_instance_milli(demands: tuple[Resources, ...], ce: CEView) -> int | None:
    """The instance millicpu a gang needs at least in ``ce``: numNodes instances of the smallest
    type that holds its largest node (AWS: one instance type for all node groups; instance
    vCPUs count against maxvCpus). None when ``ce``'s types are not known or none holds it."""
    if not ce.node_types or not demands:
        return None
    largest = Resources(
        max(d.milli_cpu for d in demands), max(d.memory_mib for d in demands), max(d.gpus for d in demands)
    )
    fits = [milli for milli, room in ce.node_types if largest.fits_in(room)]
    return len(demands) * min(fits) if fits else None


def total(resources: Iterable[Resources]) -> Resources:
    out = ZERO
    for r in resources:
        out = out + r
    return out
