"""The kwok provider: fake Nodes of the chosen instance types, created and deleted by the operator.

Why this exists: the demo and the tests need a compute environment that really scales without a
cloud. kwok makes any Node annotated ``kwok.x-k8s.io/node: fake`` Ready and runs the pods bound to
it, so creating a Node object is "launching an instance" and deleting it is "terminating" one.
Capacity is the instance type's; allocatable is capacity minus the EKS kube-reserved and
eviction threshold (digest §5.4), as a real node would report.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, ClassVar
from urllib.parse import quote

from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.apierrors import Conflict, NotFound
from batchyard.core.instances import InstanceType, node_allocatable
from batchyard.core.nodepool import (
    CE_LABEL,
    GPU_RESOURCE,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    ScalePlan,
    node_labels,
    node_taints,
)
from batchyard.nodepools.base import ProviderBase, node_has_job_pods

log = logging.getLogger(__name__)

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_ANNOTATION_VALUE = "fake"


def kwok_node(ce: ComputeEnvironment, name: str, t: InstanceType) -> dict[str, Any]:
    """The Node manifest of one fake instance of type ``t`` in compute environment ``ce``."""
    ce_name = ce.metadata.name or ""
    alloc = node_allocatable(t)
    capacity = {"cpu": f"{t.milli_cpu}m", "memory": f"{t.memory_mib}Mi", "pods": str(t.max_pods)}
    allocatable = {"cpu": f"{alloc.milli_cpu}m", "memory": f"{alloc.memory_mib}Mi", "pods": str(t.max_pods)}
    if t.gpus:
        capacity[GPU_RESOURCE] = allocatable[GPU_RESOURCE] = str(t.gpus)
    taints = node_taints(
        ce_name, t.gpu, [tt.model_dump(exclude_none=True) for tt in ce.spec.nodeTaints or ()]
    )
    return fake_node(name, capacity, allocatable, node_labels(ce_name, t.name, ce.spec.nodeLabels), taints)


def fake_node(
    name: str,
    capacity: dict[str, str],
    allocatable: dict[str, str],
    labels: dict[str, str],
    taints: list[dict[str, Any]],
) -> dict[str, Any]:
    """A Node that kwok manages: its node-initialize stage keeps the capacity and allocatable
    set here, so the real scheduler fits pods against exactly these numbers."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **labels,
            },
            "annotations": {KWOK_ANNOTATION: KWOK_ANNOTATION_VALUE, "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": taints},
        "status": {
            "capacity": capacity,
            "allocatable": allocatable,
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


class KwokProvider(ProviderBase):
    kind: ClassVar[str] = "kwok"
    scales_nodes: ClassVar[bool] = True

    async def apply(self, ce: ComputeEnvironment, plan: ScalePlan) -> None:
        for add in plan.add:
            # Conflict: a repeated plan, the node is already there.
            with contextlib.suppress(Conflict):
                await self.kube.create("/api/v1/nodes", kwok_node(ce, add.name, add.instance_type))
        for name in plan.remove:
            await self.remove_idle_node(ce, name)

    async def remove_idle_node(self, ce: ComputeEnvironment, name: str) -> bool:
        """Cordon, make sure no job pod is bound, then delete. Returns True when deleted.

        The cordon closes the race with a pod bound between the plan and the delete: if one
        is found the node is uncordoned and kept (a node running a job is never removed).
        """
        path = f"/api/v1/nodes/{quote(name)}"
        try:
            node = await self.kube.get(path)
        except NotFound:
            return True
        labels = node.get("metadata", {}).get("labels") or {}
        if labels.get(CE_LABEL) != ce.metadata.name or labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
            log.warning("not removing node %s: not a Batchyard node of %s", name, ce.metadata.name)
            return False
        await self.kube.merge_patch(path, {"spec": {"unschedulable": True}})
        if await node_has_job_pods(self.kube, name):
            await self.kube.merge_patch(path, {"spec": {"unschedulable": None}})
            return False
        with contextlib.suppress(NotFound):
            await self.kube.delete(path)
        return True

    async def forget(self, ce: ComputeEnvironment) -> None:
        """Delete the CE's idle nodes; nodes still running jobs stay until a later call."""
        for node in await self.observed_nodes(ce):
            await self.remove_idle_node(ce, node.name)
