"""Instance types: a built-in catalogue of common EC2 shapes and the node-capacity estimate.

Why this exists: a managed compute environment names instance types (``m5``, ``c5.2xlarge``,
``optimal``) and the node-pool sizing must know, before a node exists, how many vCPUs, MiB and
GPUs each type brings and how much of that a job pod can actually use. AWS estimates the usable
share from the EKS bootstrap's kube-reserved formula and an initial DaemonSet allowance, then
switches to the node's real allocatable once it runs (digest §5.4); we do the same.

The catalogue holds a few sizes of the m5, m6i, c5, c6i, r5 families and the NVIDIA GPU families
g4dn, g5 and p3 (public EC2 shapes; ``max_pods`` is the EKS AMI's ENI-based pod limit and
``price`` the us-east-1 on-demand USD/hour, used only to rank types against one another). A
compute environment extends or overrides it with ``spec.instanceCatalog``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from batchyard.core.capacity import Resources


@dataclass(frozen=True, slots=True)
class InstanceType:
    """One node shape: capacity as the kubelet reports it, the pod limit and a relative price."""

    name: str
    milli_cpu: int
    memory_mib: int
    gpus: int = 0
    max_pods: int = 110
    price: float = 0.0  # USD/hour on demand; only compared between types

    @property
    def vcpus(self) -> float:
        return self.milli_cpu / 1000

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def gpu(self) -> bool:
        return self.gpus > 0

    @property
    def capacity(self) -> Resources:
        return Resources(self.milli_cpu, self.memory_mib, self.gpus)


def _t(name: str, vcpus: int, gib: float, price: float, pods: int, gpus: int = 0) -> InstanceType:
    return InstanceType(name, vcpus * 1000, int(gib * 1024), gpus, pods, price)


# name, vCPUs, GiB, USD/h, max pods (EKS eni-max-pods), GPUs
BUILTIN_CATALOGUE: Final[Mapping[str, InstanceType]] = {
    t.name: t
    for t in (
        _t("m5.large", 2, 8, 0.096, 29),
        _t("m5.xlarge", 4, 16, 0.192, 58),
        _t("m5.2xlarge", 8, 32, 0.384, 58),
        _t("m5.4xlarge", 16, 64, 0.768, 234),
        _t("m5.8xlarge", 32, 128, 1.536, 234),
        _t("m5.12xlarge", 48, 192, 2.304, 234),
        _t("m5.24xlarge", 96, 384, 4.608, 737),
        _t("m6i.large", 2, 8, 0.096, 29),
        _t("m6i.xlarge", 4, 16, 0.192, 58),
        _t("m6i.2xlarge", 8, 32, 0.384, 58),
        _t("m6i.4xlarge", 16, 64, 0.768, 234),
        _t("m6i.8xlarge", 32, 128, 1.536, 234),
        _t("c5.large", 2, 4, 0.085, 29),
        _t("c5.xlarge", 4, 8, 0.17, 58),
        _t("c5.2xlarge", 8, 16, 0.34, 58),
        _t("c5.4xlarge", 16, 32, 0.68, 234),
        _t("c5.9xlarge", 36, 72, 1.53, 234),
        _t("c5.18xlarge", 72, 144, 3.06, 737),
        _t("c5.24xlarge", 96, 192, 4.08, 737),
        _t("c6i.large", 2, 4, 0.085, 29),
        _t("c6i.xlarge", 4, 8, 0.17, 58),
        _t("c6i.2xlarge", 8, 16, 0.34, 58),
        _t("c6i.4xlarge", 16, 32, 0.68, 234),
        _t("r5.large", 2, 16, 0.126, 29),
        _t("r5.xlarge", 4, 32, 0.252, 58),
        _t("r5.2xlarge", 8, 64, 0.504, 58),
        _t("r5.4xlarge", 16, 128, 1.008, 234),
        _t("r5.8xlarge", 32, 256, 2.016, 234),
        _t("g4dn.xlarge", 4, 16, 0.526, 29, gpus=1),
        _t("g4dn.2xlarge", 8, 32, 0.752, 29, gpus=1),
        _t("g4dn.4xlarge", 16, 64, 1.204, 29, gpus=1),
        _t("g4dn.12xlarge", 48, 192, 3.912, 234, gpus=4),
        _t("g5.xlarge", 4, 16, 1.006, 58, gpus=1),
        _t("g5.2xlarge", 8, 32, 1.212, 58, gpus=1),
        _t("g5.4xlarge", 16, 64, 1.624, 234, gpus=1),
        _t("g5.12xlarge", 48, 192, 5.672, 737, gpus=4),
        _t("g5.48xlarge", 192, 768, 16.288, 345, gpus=8),
        _t("p3.2xlarge", 8, 61, 3.06, 58, gpus=1),
        _t("p3.8xlarge", 32, 244, 12.24, 234, gpus=4),
        _t("p3.16xlarge", 64, 488, 24.48, 234, gpus=8),
    )
}

# AWS "instanceTypes" keywords. `optimal` is c4/m4/r4/c5/m5/r5 (we carry the 5th generation);
# `default_x86_64` is m6i/c6i/r6i/c7i (we carry m6i and c6i). Unset instanceTypes means optimal.
KEYWORDS: Final[Mapping[str, tuple[str, ...]]] = {
    "optimal": ("c5", "m5", "r5"),
    "default_x86_64": ("m6i", "c6i"),
}
DEFAULT_INSTANCE_TYPES: Final = ("optimal",)


class UnknownInstanceType(ValueError):
    """An instanceTypes entry is neither a known type, a known family, nor a keyword."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        super().__init__(
            f"unknown instance type{'s' if len(names) > 1 else ''} {', '.join(names)}: not in the built-in "
            "catalogue and not in spec.instanceCatalog"
        )


def estimated_price(milli_cpu: int, memory_mib: int, gpus: int) -> float:
    """A rank-only price for a user-defined type: roughly the m5 per-vCPU/GiB rate plus a GPU premium."""
    return round(0.024 * milli_cpu / 1000 + 0.006 * memory_mib / 1024 + 0.5 * gpus, 6)


def catalogue(extra: Iterable[InstanceType] = ()) -> dict[str, InstanceType]:
    """The built-in catalogue, extended (or overridden by name) with ``extra``."""
    out = dict(BUILTIN_CATALOGUE)
    out.update({t.name: t for t in extra})
    return out


def resolve(names: Sequence[str] | None, types: Mapping[str, InstanceType]) -> tuple[InstanceType, ...]:
    """Expand sizes, families and keywords into instance types, sorted by (price, vCPUs, name).

    Raises UnknownInstanceType naming every entry that matches nothing.
    """
    wanted = list(names) if names else list(DEFAULT_INSTANCE_TYPES)
    found: dict[str, InstanceType] = {}
    unknown: list[str] = []
    for name in wanted:
        families = KEYWORDS.get(name, (name,))
        hits = [t for t in types.values() if t.name == name or t.family in families]
        if not hits:
            unknown.append(name)
        found.update({t.name: t for t in hits})
    if unknown:
        raise UnknownInstanceType(unknown)
    return tuple(sorted(found.values(), key=lambda t: (t.price, t.milli_cpu, t.name)))


# --- node capacity estimate (AWS "Node CPU and memory reservations", digest §5.4) -------------

EVICTION_HARD_MIB: Final = 100  # kubelet evictionHard memory.available in the EKS bootstrap
# AWS: "AWS Batch initially allocates 0.5 vCPU units and 500 MiB for expected DaemonSets".
DEFAULT_DAEMONSET_OVERHEAD: Final = Resources(500, 500, 0)


def kube_reserved_milli_cpu(milli_cpu: int) -> int:
    """AWS: 6% of the first core, 1% of the second, 0.5% of cores 3-4, 0.25% of every further core.

    c5.large (2 vCPU) -> 70m; c5.24xlarge (96 vCPU) -> 310m. A partial core counts as a core;
    the total is rounded up to whole millicores.
    """
    cores = math.ceil(milli_cpu / 1000)
    # in tenths of a millicore: 600, 100, 50, 50, then 25 per core
    tenths = 0
    for core in range(1, cores + 1):
        tenths += 600 if core == 1 else 100 if core == 2 else 50 if core <= 4 else 25
    return math.ceil(tenths / 10)


def kube_reserved_memory_mib(max_pods: int) -> int:
    """AWS: kubeReserved memory = (11 * maximum number of pods) + 255 MiB."""
    return 11 * max_pods + 255


def node_allocatable(t: InstanceType) -> Resources:
    """What the kubelet reports as allocatable: capacity - kubeReserved - evictionHard.

    AWS example: c5.large with 7,748 MiB and 29 pods -> 7748 - 11*29 - 255 - 100 = 7074 MiB.
    """
    return Resources(
        t.milli_cpu - kube_reserved_milli_cpu(t.milli_cpu),
        t.memory_mib - kube_reserved_memory_mib(t.max_pods) - EVICTION_HARD_MIB,
        t.gpus,
    )


def job_capacity_estimate(
    t: InstanceType, daemonset_overhead: Resources = DEFAULT_DAEMONSET_OVERHEAD
) -> Resources:
    """What job pods can use on a node of type ``t`` that doesn't exist yet: allocatable - DaemonSets.

    AWS: "If no instances are running, vCPU and memory reservations can initially affect AWS Batch
    scaling logic ... After the instances are running, AWS Batch adjusts the initial allocations."
    """
    a = node_allocatable(t)
    return Resources(
        max(0, a.milli_cpu - daemonset_overhead.milli_cpu),
        max(0, a.memory_mib - daemonset_overhead.memory_mib),
        a.gpus,
    )
