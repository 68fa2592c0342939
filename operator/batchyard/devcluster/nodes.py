"""Fake nodes for kwok: Node manifests with the capacity, labels and taints a test asks for.

kwok's node-initialize stage keeps the capacity and allocatable we set, so the real scheduler
fits pods against exactly these numbers (cpu, memory, pods, `nvidia.com/gpu`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from batchyard.devcluster.kwok import NODE_SELECTOR_ANNOTATION, NODE_SELECTOR_VALUE

GPU_RESOURCE = "nvidia.com/gpu"


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
    """A Node that kwok manages; `taints` are dicts with key, value (optional) and effect."""
    capacity = {"cpu": cpu, "memory": memory, "pods": pods}
    if gpus:
        capacity[GPU_RESOURCE] = str(gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                NODE_SELECTOR_ANNOTATION: NODE_SELECTOR_VALUE,
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **(labels or {}),
            },
        },
        "spec": {"taints": [dict(t) for t in taints]},
        "status": {
            "capacity": dict(capacity),
            "allocatable": dict(capacity),
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
                "bootID": "",
                "machineID": "",
                "systemUUID": "",
                "osImage": "",
                "kernelVersion": "",
                "containerRuntimeVersion": "",
            },
            "phase": "Running",
        },
    }
