"""The node-pool provider interface and what all providers share.

Why this exists: a compute environment's nodes come from kwok, Karpenter, Cluster API or an
existing unmanaged set, chosen by ``spec.provider.type``. The operator loop must not care which:
it validates the compute environment, reads its nodes, asks ``core.nodepool.plan_scale`` for a
plan, and hands the plan to the provider. This module holds that small interface, the node
parsing every provider needs, and the checks that apply to every provider (digest §5.8: a
missing namespace, an unknown instance type).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol
from urllib.parse import quote

from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.apierrors import NotFound
from batchyard.core.capacity import ZERO, Resources, parse_cpu, parse_memory_mib
from batchyard.core.instances import UnknownInstanceType
from batchyard.core.nodepool import (
    CE_LABEL,
    GPU_RESOURCE,
    INSTANCE_TYPE_LABEL,
    PoolNode,
    ScalePlan,
    pool_spec,
)

# AWS §5.8 prefixes its INVALID reasons with the error class.
CLIENT_ERROR = "CLIENT_ERROR - "


class KubeClient(Protocol):
    """The part of ``adapters.kube.Kube`` the providers use (structural, so nodepools doesn't import
    adapters: the import contract keeps the two layers independent)."""

    async def get(self, path: str) -> Any: ...

    async def list(self, path: str, params: Mapping[str, str] | None = None) -> Any: ...

    async def create(self, path: str, body: Mapping[str, Any]) -> Any: ...

    async def merge_patch(self, path: str, body: Mapping[str, Any], verb: str = "patch") -> Any: ...

    async def delete(self, path: str, body: Mapping[str, Any] | None = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class ObservedNode:
    """A Node of a compute environment as the API server shows it (only what sizing reads)."""

    name: str
    instance_type: str | None
    capacity: Resources
    allocatable: Resources
    ready: bool
    created_at: float
    unschedulable: bool = False
    deleting: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    def pool_node(
        self,
        used: Resources = ZERO,
        running_jobs: int = 0,
        idle_since: float | None = None,
        other_pods: Resources = ZERO,
    ) -> PoolNode:
        """The sizing view: ``other_pods`` are the requests of non-job pods here (DaemonSets).

        AWS §5.4: once a node runs, its real allocatable replaces the estimate. A cordoned node
        offers no room but still counts against maxvCpus.
        """
        room = ZERO if self.unschedulable else self.allocatable - other_pods
        return PoolNode(
            name=self.name,
            instance_type=self.instance_type,
            milli_cpu=self.capacity.milli_cpu,
            allocatable=room,
            used=used,
            running_jobs=running_jobs,
            idle_since=idle_since,
            ready=self.ready,
            deleting=self.deleting,
        )


def _resources(q: Mapping[str, Any] | None) -> Resources:
    q = q or {}
    return Resources(
        parse_cpu(str(q.get("cpu", "0"))),
        parse_memory_mib(str(q.get("memory", "0"))),
        int(str(q.get(GPU_RESOURCE, "0"))),
    )


def _epoch(ts: str | None) -> float:
    if not ts:
        return 0.0
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def parse_node(node: Mapping[str, Any]) -> ObservedNode:
    """A Node dict (from the API server) -> ObservedNode."""
    meta = node.get("metadata", {})
    status = node.get("status", {})
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ()
    )
    labels = meta.get("labels") or {}
    return ObservedNode(
        name=meta["name"],
        instance_type=labels.get(INSTANCE_TYPE_LABEL),
        capacity=_resources(status.get("capacity")),
        allocatable=_resources(status.get("allocatable")),
        ready=ready,
        created_at=_epoch(meta.get("creationTimestamp")),
        unschedulable=bool(node.get("spec", {}).get("unschedulable")),
        deleting=bool(meta.get("deletionTimestamp")),
        labels=labels,
        annotations=meta.get("annotations") or {},
    )


def selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class NodePoolProvider(Protocol):
    """What the operator loop calls for one compute environment.

    ``scales_nodes``: True when the provider adds and removes nodes from the plan (kwok,
    clusterapi); the scheduler then sees the CE's nodes as binding (CEView.nodes). False when
    nodes appear on demand from pending pods (karpenter: CEView.nodes None, max_node set) or
    never (unmanaged: CEView.nodes from observed nodes, managed=False).
    """

    kind: ClassVar[str]
    scales_nodes: ClassVar[bool]

    async def validate(self, ce: ComputeEnvironment) -> str | None:
        """The INVALID statusReason of the provider-specific checks, or None when VALID."""
        ...

    async def observed_nodes(self, ce: ComputeEnvironment) -> list[ObservedNode]:
        """The compute environment's nodes now."""
        ...

    async def apply(self, ce: ComputeEnvironment, plan: ScalePlan) -> None:
        """Carry out the plan (idempotent: repeating it is harmless)."""
        ...

    async def forget(self, ce: ComputeEnvironment) -> None:
        """The compute environment is being deleted: remove what the provider wrote for it."""
        ...


class ProviderBase:
    """Shared plumbing: the client, listing the CE's nodes by label, discovery checks."""

    kind: ClassVar[str] = ""
    scales_nodes: ClassVar[bool] = False

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    async def validate(self, ce: ComputeEnvironment) -> str | None:
        return None

    async def observed_nodes(self, ce: ComputeEnvironment) -> list[ObservedNode]:
        body = await self.kube.list(
            "/api/v1/nodes", params={"labelSelector": selector(self.node_selector(ce))}
        )
        return [parse_node(n) for n in body.get("items", ())]

    def node_selector(self, ce: ComputeEnvironment) -> dict[str, str]:
        return {CE_LABEL: ce.metadata.name or ""}

    async def apply(self, ce: ComputeEnvironment, plan: ScalePlan) -> None:
        return None

    async def forget(self, ce: ComputeEnvironment) -> None:
        return None

    async def served(self, group_version: str, plural: str) -> bool:
        """True when ``group_version`` serves ``plural`` (discovery: needs no rights on CRDs)."""
        try:
            body = await self.kube.get(f"/apis/{group_version}")
        except NotFound:
            return False
        return any(r.get("name") == plural for r in body.get("resources", ()))


async def node_has_job_pods(kube: KubeClient, node: str) -> bool:
    """True when a pod that is not a DaemonSet's and has not finished is bound to ``node``."""
    body = await kube.list(
        "/api/v1/pods",
        params={"fieldSelector": f"spec.nodeName={node},status.phase!=Succeeded,status.phase!=Failed"},
    )
    for pod in body.get("items", ()):
        owners = pod.get("metadata", {}).get("ownerReferences") or ()
        if not any(o.get("kind") == "DaemonSet" for o in owners):
            return True
    return False


async def validate_common(kube: KubeClient, ce: ComputeEnvironment) -> str | None:
    """Checks for every provider: instance types resolve (MANAGED), the job namespace exists."""
    if ce.spec.type == "MANAGED":
        try:
            pool_spec(ce)
        except UnknownInstanceType as exc:
            return f"{CLIENT_ERROR}{exc}"
    ns = ce.spec.eksConfiguration.kubernetesNamespace if ce.spec.eksConfiguration else None
    if ns:
        try:
            await kube.get(f"/api/v1/namespaces/{quote(ns)}")
        except NotFound:
            # AWS: "CLIENT_ERROR - Unable to validate Kubernetes Namespace"
            return f"{CLIENT_ERROR}Unable to validate Kubernetes Namespace: namespace {ns} not found"
    return None
