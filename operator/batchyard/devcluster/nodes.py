"""Fake nodes for kwok: Node manifests with the capacity, labels and taints a test asks for.

kwok's node-initialize stage keeps the capacity and allocatable we set, so the real scheduler
fits pods against exactly these numbers (cpu, memory, pods, `nvidia.com/gpu`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from batchyard.nodepools.kwok import fake_node
from batchyard.render.names import GPU_RESOURCE


def node_manifest(
    name: str,
    *,
    cpu: str = "4",
    memory: str = "16Gi",
    pods: str = "110",
    gpus: int = 0,
    labels: Mapping[str, str] | None = None,
    taints: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """A Node that kwok manages (see `nodepools.kwok.fake_node`); `taints` are dicts with key,
    value (optional) and effect."""
    capacity = {"cpu": cpu, "memory": memory, "pods": pods}
    if gpus:
        capacity[GPU_RESOURCE] = str(gpus)
    return fake_node(name, dict(capacity), dict(capacity), dict(labels or {}), [dict(t) for t in taints])
