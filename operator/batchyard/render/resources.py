"""vCPU, memory and GPU of a job's containers: AWS Batch rules -> Kubernetes requests/limits.

Why this module exists: the scheduler charges a job's demand against compute environments, and the
pod must ask the kubelet for exactly the same amounts, so both come from here. AWS has two shapes:

* ECS-style `containerProperties` / `ecsProperties`: `resourceRequirements` VCPU/MEMORY/GPU (or the
  deprecated `vcpus`/`memory`). VCPU is a reservation (CPU shares), not a cap, so it becomes a
  cpu *request* only; MEMORY is "the hard limit" so it becomes request and limit; GPU is pinned,
  so request == limit.
* EKS `resources.limits/requests` (digest §5.3): "AWS Batch uses the requests value for scaling
  decisions. If a requests value isn't specified, the limits value is copied to the requests
  value." Memory and GPU requests must equal limits.

Defaults when a job names no vCPU or no memory at all (AWS refuses such definitions at
registration: "You must specify at least one vCPU", memory "is required"): Batchyard accepts them
and uses DEFAULT_VCPUS = 1 and DEFAULT_MEMORY_MIB = 2048 (the AWS console's defaults for a new
job definition), put on the pod's first container.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Final

from batchyard.core.capacity import ZERO, Resources, parse_cpu, parse_memory_mib
from batchyard.render.names import GPU_RESOURCE

DEFAULT_VCPUS: Final = 1
DEFAULT_MEMORY_MIB: Final = 2048


def cpu_quantity(vcpus: str | int | float) -> str:
    """AWS vCPUs ("0.25", "2", 1.5) -> the canonical Kubernetes form ("250m", "2", "1500m")."""
    milli = parse_cpu(vcpus if not isinstance(vcpus, str) else vcpus.strip())
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def memory_quantity(mib: str | int) -> str:
    """AWS MiB (2048 or "2048") -> "2048Mi"."""
    return f"{int(mib)}Mi"


def gpu_count(value: str) -> int:
    """A GPU quantity ("1") as an integer; fractions are not allowed (AWS: "whole number")."""
    try:
        number = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"not a GPU count: {value!r}") from exc
    if number != number.to_integral_value() or number < 0:
        raise ValueError(f"not a GPU count: {value!r}")
    return int(number)


def eks_resources(
    limits: Mapping[str, str] | None, requests: Mapping[str, str] | None
) -> tuple[dict[str, str], dict[str, str]]:
    """EKS limits/requests as the pod gets them: (requests, limits).

    AWS: "If a requests value isn't specified, the limits value is copied to the requests value."
    The reverse copy for memory and GPU (requests only -> limits too) is Batchyard's reading: AWS
    requires them equal, memory is "the hard limit", and Kubernetes refuses a GPU request without
    a limit. A cpu request alone stays a soft request (AWS "soft vCPU" example).
    """
    lim = dict(limits or {})
    req = dict(requests or {})
    for key, value in lim.items():
        req.setdefault(key, value)
    for key in ("memory", GPU_RESOURCE):
        if key in req and key not in lim:
            lim[key] = req[key]
    return req, lim


def container_demand(requests: Mapping[str, str]) -> Resources:
    """What one container needs, from its (already AWS-normalised) requests."""
    cpu = requests.get("cpu")
    memory = requests.get("memory")
    gpus = requests.get(GPU_RESOURCE)
    return Resources(
        parse_cpu(cpu) if cpu is not None else 0,
        parse_memory_mib(memory) if memory is not None else 0,
        gpu_count(gpus) if gpus is not None else 0,
    )


def pod_demand(
    containers: Iterable[Mapping[str, str]], init_containers: Iterable[Mapping[str, str]]
) -> Resources:
    """A pod's demand: the sum over its containers, or the largest init container if that is more.

    AWS multi-container EKS jobs are sized by their containers together; init containers run one
    at a time before them, so (as the Kubernetes scheduler does) each dimension is
    max(sum(containers), max(init containers)).
    """
    total = ZERO
    for requests in containers:
        total = total + container_demand(requests)
    cpu, mem, gpu = total.milli_cpu, total.memory_mib, total.gpus
    for requests in init_containers:
        d = container_demand(requests)
        cpu, mem, gpu = max(cpu, d.milli_cpu), max(mem, d.memory_mib), max(gpu, d.gpus)
    return Resources(cpu, mem, gpu)
