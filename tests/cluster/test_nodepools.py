"""Node-pool providers against the real API server: kwok nodes, Karpenter NodePools, Cluster API scale.

What a user sees: a kwok compute environment's nodes appear Ready with the CE label, the Batch
taints and the instance type's capacity, and an idle one disappears while a busy one stays; the
NodePool and MachineDeployment the operator writes are accepted by the real Karpenter and
Cluster API CRDs (taken from their Go modules) and hold the compute environment's values.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from batchyard.adapters.kube import Kube
from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.core.capacity import Resources
from batchyard.core.nodepool import (
    CE_LABEL,
    GPU_TAINT,
    ScalePlan,
    ce_taints,
    plan_scale,
    pool_spec,
)
from batchyard.devcluster import DevCluster, node_manifest
from batchyard.devcluster.thirdparty import crd_paths
from batchyard.nodepools import (
    ClusterApiProvider,
    KarpenterProvider,
    KwokProvider,
    UnmanagedProvider,
    validate,
)
from batchyard.nodepools.clusterapi import (
    DELETE_MACHINE_ANNOTATION,
    DEPLOYMENT_NAME_LABEL,
    NODE_MACHINE_ANNOTATION,
)
from batchyard.render.pod import job_tolerations

pytestmark = pytest.mark.cluster

T = TypeVar("T")


def run(cluster: DevCluster, fn: Callable[[Kube], Awaitable[T]]) -> T:
    """Run ``fn(kube)`` with a Kube client for the dev cluster."""

    async def main() -> T:
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        kube = await Kube.connect()
        try:
            return await fn(kube)
        finally:
            await kube.close()

    return asyncio.run(main())


def get(cluster: DevCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def a_ce(name: str, provider: dict[str, Any], **spec: Any) -> ComputeEnvironment:
    body: dict[str, Any] = {
        "apiVersion": "batchyard.io/v1alpha1",
        "kind": "ComputeEnvironment",
        "metadata": {"name": name},
        "spec": {
            "computeResources": {"minvCpus": 0, "maxvCpus": 8, "instanceTypes": ["c5.xlarge"]},
            "provider": provider,
            **spec,
        },
    }
    return ComputeEnvironment.model_validate(body)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def thirdparty(devcluster: DevCluster) -> DevCluster:
    """Karpenter's and Cluster API's CRDs from their Go modules, installed and Established."""
    for path in crd_paths():
        devcluster.kubectl("apply", "--server-side", "-f", str(path))
    devcluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/nodepools.karpenter.sh",
        "crd/machinedeployments.cluster.x-k8s.io",
        "crd/machines.cluster.x-k8s.io",
    )
    return devcluster


# --- validation --------------------------------------------------------------------------------
def test_a_missing_provider_crd_makes_the_ce_invalid(devcluster: DevCluster) -> None:
    if get(devcluster, "crd")["items"] and any(
        c["metadata"]["name"] == "nodepools.karpenter.sh" for c in get(devcluster, "crd")["items"]
    ):
        pytest.skip("Karpenter's CRDs are already installed in this session")
    ce = a_ce("k-missing", {"type": "karpenter", "karpenter": {"nodeClassRef": {"kind": "X", "name": "x"}}})
    reason = run(devcluster, lambda kube: validate(kube, ce))
    assert reason is not None and "karpenter.sh/v1 NodePool CRD is not installed" in reason


def test_a_missing_namespace_and_unknown_types_make_the_ce_invalid(devcluster: DevCluster) -> None:
    ce = a_ce("no-ns", {"type": "kwok"}, eksConfiguration={"kubernetesNamespace": "does-not-exist"})
    reason = run(devcluster, lambda kube: validate(kube, ce))
    assert reason == (
        "CLIENT_ERROR - Unable to validate Kubernetes Namespace: namespace does-not-exist not found"
    )
    ce = a_ce("bad-type", {"type": "kwok"}, computeResources={"maxvCpus": 8, "instanceTypes": ["q9.mega"]})
    reason = run(devcluster, lambda kube: validate(kube, ce))
    assert reason is not None and "unknown instance type q9.mega" in reason


def test_unmanaged_needs_labelled_nodes(devcluster: DevCluster) -> None:
    name = unique("um")
    ce = ComputeEnvironment.model_validate(
        {"metadata": {"name": name}, "spec": {"type": "UNMANAGED", "provider": {"type": "unmanaged"}}}
    )
    reason = run(devcluster, lambda kube: validate(kube, ce))
    assert reason == f"CLIENT_ERROR - no node carries the labels {CE_LABEL}={name}"
    devcluster.add_node(f"{name}-n", labels={CE_LABEL: name}, taints=ce_taints(name))
    try:
        assert run(devcluster, lambda kube: validate(kube, ce)) is None
        nodes = run(devcluster, lambda kube: UnmanagedProvider(kube).observed_nodes(ce))
        assert [n.name for n in nodes] == [f"{name}-n"]
    finally:
        devcluster.kubectl("delete", "node", f"{name}-n", "--wait=false")


# --- kwok --------------------------------------------------------------------------------------
@pytest.fixture
def kwok_ce(devcluster: DevCluster) -> Iterator[ComputeEnvironment]:
    name = unique("kw")
    yield a_ce(name, {"type": "kwok", "kwok": {"options": {"scaleDownDelaySeconds": "0"}}})
    devcluster.kubectl("delete", "node", "-l", f"{CE_LABEL}={name}", "--wait=false", check=False)


def test_kwok_nodes_appear_ready_with_identity_and_capacity(
    devcluster: DevCluster, kwok_ce: ComputeEnvironment
) -> None:
    name = kwok_ce.metadata.name or ""
    plan = plan_scale(pool_spec(kwok_ce), [], [Resources.of(1, 1024)] * 5, 0.0)
    assert [a.name for a in plan.add] == [f"{name}-0", f"{name}-1"]
    run(devcluster, lambda kube: KwokProvider(kube).apply(kwok_ce, plan))
    run(devcluster, lambda kube: KwokProvider(kube).apply(kwok_ce, plan))  # a repeat is harmless
    devcluster.kubectl("wait", "--for=condition=Ready", "--timeout=60s", "node", "-l", f"{CE_LABEL}={name}")

    node = get(devcluster, "node", f"{name}-0")
    labels = node["metadata"]["labels"]
    assert labels[CE_LABEL] == name
    assert labels["node.kubernetes.io/instance-type"] == "c5.xlarge"
    assert labels["batchyard.io/managed-by"] == "batchyard"
    assert {(t["key"], t.get("value"), t["effect"]) for t in node["spec"]["taints"]} == {
        (CE_LABEL, name, "NoSchedule"),
        (CE_LABEL, name, "NoExecute"),
    }
    # c5.xlarge: 4 vCPU, 8 GiB, 58 pods; allocatable - kube-reserved 80m and 11*58+255+100 MiB
    assert node["status"]["capacity"]["cpu"] == "4"
    assert node["status"]["allocatable"]["cpu"] == "3920m"
    assert node["status"]["allocatable"]["memory"] == f"{8192 - 11 * 58 - 255 - 100}Mi"

    observed = run(devcluster, lambda kube: KwokProvider(kube).observed_nodes(kwok_ce))
    assert sorted(n.name for n in observed) == [f"{name}-0", f"{name}-1"]
    assert all(n.ready and n.instance_type == "c5.xlarge" and n.capacity.milli_cpu == 4000 for n in observed)


def test_kwok_removes_an_idle_node_and_never_a_busy_one(
    devcluster: DevCluster, kwok_ce: ComputeEnvironment, namespace: str
) -> None:
    name = kwok_ce.metadata.name or ""
    spec = pool_spec(kwok_ce)
    run(
        devcluster,
        lambda kube: KwokProvider(kube).apply(kwok_ce, plan_scale(spec, [], [Resources.of(3)] * 2, 0.0)),
    )
    devcluster.kubectl("wait", "--for=condition=Ready", "--timeout=60s", "node", "-l", f"{CE_LABEL}={name}")
    busy = f"{name}-0"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "job", "namespace": namespace},
        "spec": {
            "nodeName": busy,
            "tolerations": job_tolerations(name, gpu=False),
            "containers": [{"name": "default", "image": "busybox", "resources": {"requests": {"cpu": "1"}}}],
        },
    }
    devcluster.apply([pod])

    plan = ScalePlan(desired_vcpus=0, remove=(f"{name}-0", f"{name}-1"), nodes=0)
    run(devcluster, lambda kube: KwokProvider(kube).apply(kwok_ce, plan))
    left = [n["metadata"]["name"] for n in get(devcluster, "node", "-l", f"{CE_LABEL}={name}")["items"]]
    assert left == [busy]
    assert not get(devcluster, "node", busy)["spec"].get("unschedulable")


def test_kwok_gpu_nodes_bring_gpus_and_the_gpu_taint(devcluster: DevCluster) -> None:
    name = unique("gpu")
    ce = a_ce(
        name, {"type": "kwok"}, computeResources={"maxvCpus": 16, "instanceTypes": ["c5.xlarge", "g4dn"]}
    )
    plan = plan_scale(pool_spec(ce), [], [Resources.of(1, 1024, 1)], 0.0)
    assert [a.instance_type.name for a in plan.add] == ["g4dn.xlarge"]
    try:
        run(devcluster, lambda kube: KwokProvider(kube).apply(ce, plan))
        devcluster.kubectl(
            "wait", "--for=condition=Ready", "--timeout=60s", "node", "-l", f"{CE_LABEL}={name}"
        )
        node = get(devcluster, "node", f"{name}-0")
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "1"
        assert dict(GPU_TAINT) in [
            {k: t[k] for k in ("key", "value", "effect")} for t in node["spec"]["taints"]
        ]
    finally:
        devcluster.kubectl("delete", "node", "-l", f"{CE_LABEL}={name}", "--wait=false", check=False)


# --- Karpenter ---------------------------------------------------------------------------------
KARPENTER = {
    "type": "karpenter",
    "karpenter": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}},
}


def test_karpenter_nodepool_is_accepted_and_holds_the_ce(thirdparty: DevCluster) -> None:
    name = unique("kp")
    ce = a_ce(
        name,
        {**KARPENTER, "karpenter": {**KARPENTER["karpenter"], "options": {"scaleDownDelaySeconds": "120"}}},  # type: ignore[dict-item]
        computeResources={
            "maxvCpus": 64,
            "instanceTypes": ["m5.xlarge", "m5.2xlarge", "g5.xlarge"],
            "type": "SPOT",
        },
        nodeLabels={"team": "ml"},
    )
    assert run(thirdparty, lambda kube: validate(kube, ce)) is None
    run(thirdparty, lambda kube: KarpenterProvider(kube).apply(ce, ScalePlan(desired_vcpus=0)))

    cpu = get(thirdparty, "nodepool", f"batchyard-{name}")
    spec = cpu["spec"]
    assert spec["limits"] == {"cpu": "64"}
    assert spec["disruption"]["consolidationPolicy"] == "WhenEmpty"
    assert spec["disruption"]["consolidateAfter"] == "120s"
    tmpl = spec["template"]
    assert tmpl["metadata"]["labels"] == {
        CE_LABEL: name,
        "batchyard.io/managed-by": "batchyard",
        "team": "ml",
    }
    assert tmpl["spec"]["nodeClassRef"] == {
        "group": "karpenter.k8s.aws",
        "kind": "EC2NodeClass",
        "name": "default",
    }
    reqs = {r["key"]: r["values"] for r in tmpl["spec"]["requirements"]}
    assert reqs == {
        "node.kubernetes.io/instance-type": ["m5.2xlarge", "m5.xlarge"],
        "karpenter.sh/capacity-type": ["spot"],
    }
    assert tmpl["spec"]["taints"] == ce_taints(name)

    gpu = get(thirdparty, "nodepool", f"batchyard-{name}-gpu")["spec"]["template"]["spec"]
    assert {r["key"]: r["values"] for r in gpu["requirements"]}["node.kubernetes.io/instance-type"] == [
        "g5.xlarge"
    ]
    assert gpu["taints"] == [*ce_taints(name), dict(GPU_TAINT)]

    # The CE drops its GPU types: the GPU NodePool goes; a new max is written.
    ce2 = a_ce(name, KARPENTER, computeResources={"maxvCpus": 32, "instanceTypes": ["m5.xlarge"]})
    run(thirdparty, lambda kube: KarpenterProvider(kube).apply(ce2, ScalePlan(desired_vcpus=0)))
    pools = [p["metadata"]["name"] for p in get(thirdparty, "nodepool", "-l", f"{CE_LABEL}={name}")["items"]]
    assert pools == [f"batchyard-{name}"]
    assert get(thirdparty, "nodepool", f"batchyard-{name}")["spec"]["limits"] == {"cpu": "32"}

    run(thirdparty, lambda kube: KarpenterProvider(kube).forget(ce2))
    assert get(thirdparty, "nodepool", "-l", f"{CE_LABEL}={name}")["items"] == []


# --- Cluster API -------------------------------------------------------------------------------
def capi_provider(namespace: str, **options: str) -> dict[str, Any]:
    return {
        "type": "clusterapi",
        "clusterapi": {
            "clusterName": "workload",
            "namespace": namespace,
            "infrastructureRef": {
                "group": "infrastructure.cluster.x-k8s.io",
                "kind": "DockerMachineTemplate",
                "name": "md-0",
            },
            "version": "v1.36.3",
            **({"options": options} if options else {}),
        },
    }


def a_machine_deployment(namespace: str, name: str) -> dict[str, Any]:
    match = {DEPLOYMENT_NAME_LABEL: name}
    return {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "MachineDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "clusterName": "workload",
            "replicas": 1,
            "selector": {"matchLabels": match},
            "template": {
                "metadata": {"labels": match},
                "spec": {
                    "clusterName": "workload",
                    "bootstrap": {"dataSecretName": "boot"},
                    "infrastructureRef": {
                        "apiGroup": "infrastructure.cluster.x-k8s.io",
                        "kind": "DockerMachineTemplate",
                        "name": "md-0",
                    },
                },
            },
        },
    }


def test_clusterapi_scales_an_existing_machine_deployment(thirdparty: DevCluster, namespace: str) -> None:
    thirdparty.apply([a_machine_deployment(namespace, "workers")])
    ce = a_ce(unique("capi"), capi_provider(namespace, machineDeployment="workers"))
    assert run(thirdparty, lambda kube: validate(kube, ce)) is None
    run(thirdparty, lambda kube: ClusterApiProvider(kube).apply(ce, ScalePlan(desired_vcpus=12, nodes=3)))
    scale = get(thirdparty, "--subresource=scale", "machinedeployment", "workers", "-n", namespace)
    assert scale["spec"]["replicas"] == 3
    assert get(thirdparty, "machinedeployment", "workers", "-n", namespace)["spec"]["replicas"] == 3


def test_clusterapi_marks_the_idle_machine_before_scaling_in(thirdparty: DevCluster, namespace: str) -> None:
    thirdparty.apply([a_machine_deployment(namespace, "workers")])
    ce = a_ce(unique("capi"), capi_provider(namespace, machineDeployment="workers"))
    node = f"{ce.metadata.name}-n0"
    machine = {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "Machine",
        "metadata": {"name": "m0", "namespace": namespace, "labels": {DEPLOYMENT_NAME_LABEL: "workers"}},
        "spec": {
            "clusterName": "workload",
            "bootstrap": {"dataSecretName": "boot"},
            "infrastructureRef": {
                "apiGroup": "infrastructure.cluster.x-k8s.io",
                "kind": "DockerMachine",
                "name": "m0",
            },
        },
    }
    thirdparty.apply([machine])
    thirdparty.kubectl(
        "patch", "machine", "m0", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"nodeRef": {"name": node}}}),
    )  # fmt: skip
    manifest = node_manifest(node, cpu="4", memory="8Gi")
    manifest["metadata"]["annotations"][NODE_MACHINE_ANNOTATION] = "m0"
    thirdparty.add_nodes([manifest])
    try:
        observed = run(thirdparty, lambda kube: ClusterApiProvider(kube).observed_nodes(ce))
        assert [n.name for n in observed] == [node]
        assert observed[0].labels[CE_LABEL] == ce.metadata.name  # labelled by the provider
        plan = ScalePlan(desired_vcpus=0, remove=(node,), nodes=0)
        run(thirdparty, lambda kube: ClusterApiProvider(kube).apply(ce, plan))
        m0 = get(thirdparty, "machine", "m0", "-n", namespace)
        assert m0["metadata"]["annotations"][DELETE_MACHINE_ANNOTATION] == "true"
        assert get(thirdparty, "machinedeployment", "workers", "-n", namespace)["spec"]["replicas"] == 0
    finally:
        thirdparty.kubectl("delete", "node", node, "--wait=false", check=False)


def test_clusterapi_creates_its_machine_deployment_when_missing(
    thirdparty: DevCluster, namespace: str
) -> None:
    name = unique("capi")
    ce = a_ce(
        name, capi_provider(namespace), computeResources={"maxvCpus": 32, "instanceTypes": ["g4dn.xlarge"]}
    )
    run(thirdparty, lambda kube: ClusterApiProvider(kube).apply(ce, ScalePlan(desired_vcpus=4, nodes=1)))
    md = get(thirdparty, "machinedeployment", f"batchyard-{name}", "-n", namespace)
    assert md["spec"]["replicas"] == 1
    tmpl = md["spec"]["template"]
    assert tmpl["metadata"]["labels"][CE_LABEL] == name
    assert tmpl["spec"]["infrastructureRef"]["kind"] == "DockerMachineTemplate"
    assert {(t["key"], t.get("value"), t["effect"], t["propagation"]) for t in tmpl["spec"]["taints"]} == {
        (CE_LABEL, name, "NoSchedule", "Always"),
        (CE_LABEL, name, "NoExecute", "Always"),
        ("nvidia.com/gpu", "present", "NoSchedule", "Always"),
    }
    run(thirdparty, lambda kube: ClusterApiProvider(kube).apply(ce, ScalePlan(desired_vcpus=8, nodes=2)))
    assert get(thirdparty, "machinedeployment", f"batchyard-{name}", "-n", namespace)["spec"]["replicas"] == 2


def test_clusterapi_needs_exactly_one_instance_type(thirdparty: DevCluster, namespace: str) -> None:
    ce = a_ce(
        unique("capi"), capi_provider(namespace), computeResources={"maxvCpus": 8, "instanceTypes": ["m5"]}
    )
    reason = run(thirdparty, lambda kube: validate(kube, ce))
    assert reason is not None and "exactly one instance type" in reason
