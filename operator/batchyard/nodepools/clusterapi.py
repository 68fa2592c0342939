"""The Cluster API provider: a MachineDeployment whose replicas follow the plan.

Why this exists: on a Cluster API managed cluster nodes come from MachineDeployments. The
compute environment owns one (``batchyard-<ce>`` in ``spec.provider.clusterapi.namespace``, or
the existing one named by the option ``machineDeployment``). If it is missing, the operator
creates it from the provider settings (clusterName, infrastructureRef, bootstrapConfigRef,
version) with the CE's taints on its machines; afterwards it only writes ``replicas`` through the
scale subresource (the user or GitOps keeps the rest of the MachineDeployment).

A MachineDeployment has one machine template, so the compute environment must name exactly one
instance type (its shape sizes the plan). Scale-in never picks a busy machine: before lowering
replicas, the machines of the nodes the plan removes get the ``cluster.x-k8s.io/delete-machine``
annotation, which Cluster API deletes first. Cluster API copies only its own label domains
to Nodes, so the provider labels the MachineDeployment's Nodes with the CE label itself.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar
from urllib.parse import quote

from batchyard.api.computeenvironment import ComputeEnvironment, ObjectRef
from batchyard.apierrors import NotFound
from batchyard.core.instances import UnknownInstanceType
from batchyard.core.nodepool import (
    CE_LABEL,
    ScalePlan,
    instance_types_of,
    node_labels,
    node_taints,
    provider_options,
)
from batchyard.nodepools.base import CLIENT_ERROR, ObservedNode, ProviderBase, parse_node

GROUP = "cluster.x-k8s.io"
GROUP_VERSION = f"{GROUP}/v1beta2"
DEPLOYMENT_NAME_LABEL = f"{GROUP}/deployment-name"
CLUSTER_NAME_LABEL = f"{GROUP}/cluster-name"
DELETE_MACHINE_ANNOTATION = f"{GROUP}/delete-machine"
NODE_MACHINE_ANNOTATION = f"{GROUP}/machine"
MACHINE_DEPLOYMENT_OPTION = "machineDeployment"


def deployment_ref(ce: ComputeEnvironment) -> tuple[str, str]:
    """(namespace, name) of the compute environment's MachineDeployment."""
    capi = ce.spec.provider.clusterapi if ce.spec.provider else None
    if capi is None:
        raise ValueError("spec.provider.clusterapi is required for the clusterapi provider")
    name = provider_options(ce).get(MACHINE_DEPLOYMENT_OPTION) or f"batchyard-{ce.metadata.name}"
    return capi.namespace, name


def _ref(r: ObjectRef) -> dict[str, str]:
    group = r.group or (r.apiVersion.split("/")[0] if r.apiVersion and "/" in r.apiVersion else "")
    return {"apiGroup": group, "kind": r.kind, "name": r.name}


def machine_deployment(ce: ComputeEnvironment, replicas: int) -> dict[str, Any]:
    """A new MachineDeployment for ``ce`` from spec.provider.clusterapi. Pure."""
    capi = ce.spec.provider.clusterapi if ce.spec.provider else None
    assert capi is not None
    namespace, name = deployment_ref(ce)
    ce_name = ce.metadata.name or ""
    types = instance_types_of(ce)
    gpu = bool(types) and types[0].gpu
    taints = [
        {**t, "propagation": "Always"}
        for t in node_taints(
            ce_name, gpu, [t.model_dump(exclude_none=True) for t in ce.spec.nodeTaints or ()]
        )
    ]
    bootstrap: dict[str, Any] = (
        {"configRef": _ref(capi.bootstrapConfigRef)}
        if capi.bootstrapConfigRef
        else {"dataSecretName": provider_options(ce).get("bootstrapDataSecretName", f"{name}-bootstrap")}
    )
    template_spec: dict[str, Any] = {
        "clusterName": capi.clusterName,
        "bootstrap": bootstrap,
        "infrastructureRef": _ref(capi.infrastructureRef),
        "taints": taints,
    }
    if capi.version:
        template_spec["version"] = capi.version
    match = {DEPLOYMENT_NAME_LABEL: name, CLUSTER_NAME_LABEL: capi.clusterName}
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "MachineDeployment",
        "metadata": {"name": name, "namespace": namespace, "labels": node_labels(ce_name)},
        "spec": {
            "clusterName": capi.clusterName,
            "replicas": replicas,
            "selector": {"matchLabels": match},
            "template": {"metadata": {"labels": {**match, CE_LABEL: ce_name}}, "spec": template_spec},
        },
    }


class ClusterApiProvider(ProviderBase):
    kind: ClassVar[str] = "clusterapi"
    scales_nodes: ClassVar[bool] = True

    def _path(self, ce: ComputeEnvironment, sub: str = "") -> str:
        namespace, name = deployment_ref(ce)
        return f"/apis/{GROUP_VERSION}/namespaces/{quote(namespace)}/machinedeployments/{quote(name)}{sub}"

    async def validate(self, ce: ComputeEnvironment) -> str | None:
        if not await self.served(GROUP_VERSION, "machinedeployments"):
            return f"{CLIENT_ERROR}the {GROUP_VERSION} MachineDeployment CRD is not installed"
        try:
            types = instance_types_of(ce)
        except UnknownInstanceType:
            return None  # validate_common reports it
        if len(types) != 1:
            return (
                f"{CLIENT_ERROR}the clusterapi provider needs exactly one instance type (a MachineDeployment "
                f"has one machine template); spec.computeResources.instanceTypes resolves to {len(types)}"
            )
        return None

    async def observed_nodes(self, ce: ComputeEnvironment) -> list[ObservedNode]:
        """The Nodes of the MachineDeployment's Machines (labelled with the CE label on the way)."""
        namespace, name = deployment_ref(ce)
        machines = await self.kube.list(
            f"/apis/{GROUP_VERSION}/namespaces/{quote(namespace)}/machines",
            params={"labelSelector": f"{DEPLOYMENT_NAME_LABEL}={name}"},
        )
        out = []
        instance_type = instance_types_of(ce)[0].name
        labels = node_labels(ce.metadata.name or "", instance_type, ce.spec.nodeLabels)
        for m in machines.get("items", ()):
            node_name = (m.get("status", {}).get("nodeRef") or {}).get("name")
            if not node_name:
                continue
            path = f"/api/v1/nodes/{quote(node_name)}"
            try:
                node = await self.kube.get(path)
            except NotFound:
                continue
            have = node.get("metadata", {}).get("labels") or {}
            if any(have.get(k) != v for k, v in labels.items()):
                node = await self.kube.merge_patch(path, {"metadata": {"labels": labels}})
            out.append(parse_node(node))
        return out

    async def apply(self, ce: ComputeEnvironment, plan: ScalePlan) -> None:
        namespace, _ = deployment_ref(ce)
        try:
            scale = await self.kube.get(self._path(ce, "/scale"))
        except NotFound:
            await self.kube.create(
                f"/apis/{GROUP_VERSION}/namespaces/{quote(namespace)}/machinedeployments",
                machine_deployment(ce, plan.nodes),
            )
            return
        for node_name in plan.remove:
            await self._mark_for_deletion(namespace, node_name)
        if scale.get("spec", {}).get("replicas") != plan.nodes:
            await self.kube.merge_patch(self._path(ce, "/scale"), {"spec": {"replicas": plan.nodes}})

    async def _mark_for_deletion(self, namespace: str, node_name: str) -> None:
        try:
            node = await self.kube.get(f"/api/v1/nodes/{quote(node_name)}")
        except NotFound:
            return
        machine = (node.get("metadata", {}).get("annotations") or {}).get(NODE_MACHINE_ANNOTATION)
        if machine:
            await self.kube.merge_patch(
                f"/apis/{GROUP_VERSION}/namespaces/{quote(namespace)}/machines/{quote(machine)}",
                {"metadata": {"annotations": {DELETE_MACHINE_ANNOTATION: "true"}}},
            )

    async def forget(self, ce: ComputeEnvironment) -> None:
        """Scale to zero; the MachineDeployment itself stays (it may be the user's)."""
        with contextlib.suppress(NotFound):
            await self.kube.merge_patch(self._path(ce, "/scale"), {"spec": {"replicas": 0}})
