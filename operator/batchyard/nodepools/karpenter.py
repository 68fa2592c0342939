"""The Karpenter provider: one ``karpenter.sh/v1`` NodePool per compute environment.

Why this exists: on a cluster with Karpenter, launching nodes is Karpenter's job; the compute
environment only says which nodes may exist. The NodePool carries the CE's instance types (as a
``node.kubernetes.io/instance-type`` requirement), capacity type (EC2 -> on-demand, SPOT ->
spot), node labels and taints, ``limits.cpu = maxvCpus``, and ``consolidationPolicy: WhenEmpty``
after the scale-down delay, so idle nodes go and nodes running job pods are never consolidated.
Karpenter provisions from the job pods the scheduler creates, so the plan's node adds and
removals are not used here (``scales_nodes`` is False).

A NodePool's taints apply to all its nodes, so a compute environment that mixes CPU and GPU
types gets two NodePools: ``batchyard-<ce>`` for the CPU types and ``batchyard-<ce>-gpu`` (with
the ``nvidia.com/gpu`` taint) for the GPU types. Each carries ``limits.cpu = maxvCpus``; together
they may reach twice that (AWS advises against mixing CPU and GPU types in one CE anyway).
minvCpus has no NodePool equivalent and is not kept with this provider.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any, ClassVar
from urllib.parse import quote

from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.apierrors import NotFound
from batchyard.core.nodepool import (
    CE_LABEL,
    INSTANCE_TYPE_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    ScalePlan,
    instance_types_of,
    node_labels,
    node_taints,
    pool_spec,
)
from batchyard.nodepools.base import CLIENT_ERROR, KubeClient, ProviderBase, selector

GROUP_VERSION = "karpenter.sh/v1"
PATH = f"/apis/{GROUP_VERSION}/nodepools"
CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
DEFAULT_NODECLASS_GROUP = "karpenter.k8s.aws"


def nodepool_name(ce: str, gpu: bool = False) -> str:
    return f"batchyard-{ce}-gpu" if gpu else f"batchyard-{ce}"


def nodepool_manifests(ce: ComputeEnvironment) -> list[dict[str, Any]]:
    """The NodePools for ``ce`` (one, or two when it mixes CPU and GPU types). Pure."""
    name = ce.metadata.name or ""
    spec = pool_spec(ce)
    cr = ce.spec.computeResources
    provider = ce.spec.provider.karpenter if ce.spec.provider else None
    if provider is None:
        raise ValueError("spec.provider.karpenter is required for the karpenter provider")
    ref = provider.nodeClassRef
    group = ref.group or (ref.apiVersion.split("/")[0] if ref.apiVersion and "/" in ref.apiVersion else None)
    capacity_type = "spot" if cr is not None and cr.type == "SPOT" else "on-demand"
    extra_taints = [t.model_dump(exclude_none=True) for t in ce.spec.nodeTaints or ()]
    out = []
    types = instance_types_of(ce)
    for gpu in (False, True):
        names = sorted(t.name for t in types if t.gpu == gpu)
        if not names:
            continue
        out.append(
            {
                "apiVersion": GROUP_VERSION,
                "kind": "NodePool",
                "metadata": {
                    "name": nodepool_name(name, gpu),
                    "labels": {CE_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY_VALUE},
                },
                "spec": {
                    "template": {
                        "metadata": {"labels": node_labels(name, None, ce.spec.nodeLabels)},
                        "spec": {
                            "nodeClassRef": {
                                "group": group or DEFAULT_NODECLASS_GROUP,
                                "kind": ref.kind,
                                "name": ref.name,
                            },
                            "requirements": [
                                {"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": names},
                                {"key": CAPACITY_TYPE_LABEL, "operator": "In", "values": [capacity_type]},
                            ],
                            "taints": node_taints(name, gpu, extra_taints),
                        },
                    },
                    "limits": {"cpu": str(spec.max_vcpus)},
                    "disruption": {
                        "consolidationPolicy": "WhenEmpty",
                        "consolidateAfter": f"{int(spec.scale_down_delay_seconds)}s",
                    },
                },
            }
        )
    return out


def _digest(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class KarpenterProvider(ProviderBase):
    kind: ClassVar[str] = "karpenter"
    scales_nodes: ClassVar[bool] = False

    def __init__(self, kube: KubeClient) -> None:
        super().__init__(kube)
        self._written: dict[str, str] = {}  # CE name -> digest of the NodePools last written

    async def validate(self, ce: ComputeEnvironment) -> str | None:
        if not await self.served(GROUP_VERSION, "nodepools"):
            return f"{CLIENT_ERROR}the karpenter.sh/v1 NodePool CRD is not installed (install Karpenter)"
        return None

    async def apply(self, ce: ComputeEnvironment, plan: ScalePlan) -> None:
        """Create or update the NodePool(s) when they differ from what was last written; drop stale ones."""
        name = ce.metadata.name or ""
        wanted = nodepool_manifests(ce)
        digest = _digest(wanted)
        if self._written.get(name) == digest:
            return
        for body in wanted:
            await self._upsert(body)
        keep = {b["metadata"]["name"] for b in wanted}
        await self._delete_others(name, keep)
        self._written[name] = digest

    async def _upsert(self, body: dict[str, Any]) -> None:
        path = f"{PATH}/{quote(body['metadata']['name'])}"
        try:
            current = await self.kube.get(path)
        except NotFound:
            await self.kube.create(PATH, body)
            return
        same_labels = all(
            current["metadata"].get("labels", {}).get(k) == v for k, v in body["metadata"]["labels"].items()
        )
        if same_labels and all(current.get("spec", {}).get(k) == v for k, v in body["spec"].items()):
            return
        await self.kube.merge_patch(
            path, {"metadata": {"labels": body["metadata"]["labels"]}, "spec": body["spec"]}
        )

    async def _delete_others(self, ce: str, keep: set[str]) -> None:
        listed = await self.kube.list(PATH, params={"labelSelector": selector({CE_LABEL: ce})})
        for item in listed.get("items", ()):
            if item["metadata"]["name"] not in keep:
                with contextlib.suppress(NotFound):
                    await self.kube.delete(f"{PATH}/{quote(item['metadata']['name'])}")

    async def forget(self, ce: ComputeEnvironment) -> None:
        name = ce.metadata.name or ""
        if await self.served(GROUP_VERSION, "nodepools"):
            await self._delete_others(name, set())
        self._written.pop(name, None)
