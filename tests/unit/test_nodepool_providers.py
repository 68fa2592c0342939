"""Unit tables for the providers' pure parts: Node parsing and the manifests they write."""

from __future__ import annotations

from typing import Any

import pytest

from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.core.capacity import ZERO, Resources
from batchyard.core.instances import BUILTIN_CATALOGUE
from batchyard.core.nodepool import CE_LABEL, GPU_TAINT, ce_taints, node_views
from batchyard.nodepools import parse_node, provider_kind
from batchyard.nodepools.clusterapi import deployment_ref, machine_deployment
from batchyard.nodepools.karpenter import nodepool_manifests
from batchyard.nodepools.kwok import kwok_node


def a_ce(provider: dict[str, Any], **compute: Any) -> ComputeEnvironment:
    return ComputeEnvironment.model_validate(
        {
            "metadata": {"name": "ce1"},
            "spec": {
                "computeResources": {"maxvCpus": 16, "instanceTypes": ["c5.xlarge"], **compute},
                "provider": provider,
                "nodeTaints": [{"key": "team", "value": "ml", "effect": "NoSchedule"}],
            },
        }
    )


def test_parse_node_reads_capacity_readiness_and_identity() -> None:
    node = {
        "metadata": {
            "name": "n1",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {CE_LABEL: "ce1", "node.kubernetes.io/instance-type": "g5.xlarge"},
        },
        "spec": {"unschedulable": True},
        "status": {
            "capacity": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
            "allocatable": {"cpu": "3920m", "memory": "15000Mi", "nvidia.com/gpu": "1"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    n = parse_node(node)
    assert (n.instance_type, n.ready, n.unschedulable) == ("g5.xlarge", True, True)
    assert n.capacity == Resources(4000, 16384, 1) and n.allocatable == Resources(3920, 15000, 1)
    assert n.created_at == 1767225600.0
    # cordoned: no room, but its vCPUs still count against maxvCpus
    pn = n.pool_node(used=Resources.of(1), running_jobs=1)
    assert (pn.allocatable, pn.milli_cpu, pn.running_jobs) == (ZERO, 4000, 1)


def test_pool_node_subtracts_other_pods_and_node_views_skip_unready() -> None:
    ready = parse_node(
        {
            "metadata": {"name": "a"},
            "status": {"allocatable": {"cpu": "2"}, "conditions": [{"type": "Ready", "status": "True"}]},
        }
    )
    booting = parse_node({"metadata": {"name": "b"}, "status": {"allocatable": {"cpu": "2"}}})
    pa = ready.pool_node(other_pods=Resources.of("500m"))
    assert pa.allocatable.milli_cpu == 1500
    assert [v.name for v in node_views([booting.pool_node(), pa])] == ["a"]


def test_kwok_node_manifest() -> None:
    ce = a_ce({"type": "kwok"})
    body = kwok_node(ce, "ce1-0", BUILTIN_CATALOGUE["g4dn.xlarge"])
    assert body["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert body["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "g4dn.xlarge"
    assert body["status"]["capacity"] == {
        "cpu": "4000m",
        "memory": "16384Mi",
        "pods": "29",
        "nvidia.com/gpu": "1",
    }
    assert body["status"]["allocatable"]["cpu"] == "3920m"
    assert body["spec"]["taints"] == [
        *ce_taints("ce1"),
        dict(GPU_TAINT),
        {"key": "team", "value": "ml", "effect": "NoSchedule"},
    ]


@pytest.mark.parametrize(
    ("types", "expected_pools"),
    [
        pytest.param(["c5.xlarge"], ["batchyard-ce1"], id="CPU types: one NodePool"),
        pytest.param(["g5"], ["batchyard-ce1-gpu"], id="GPU types: one tainted NodePool"),
        pytest.param(["c5.xlarge", "g5.xlarge"], ["batchyard-ce1", "batchyard-ce1-gpu"], id="mixed: two"),
    ],
)
def test_karpenter_nodepools(types: list[str], expected_pools: list[str]) -> None:
    ce = a_ce(
        {
            "type": "karpenter",
            "karpenter": {
                "nodeClassRef": {"apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "name": "d"}
            },
        },
        instanceTypes=types,
    )
    pools = nodepool_manifests(ce)
    assert [p["metadata"]["name"] for p in pools] == expected_pools
    for p in pools:
        assert p["spec"]["limits"] == {"cpu": "16"}
        assert p["spec"]["template"]["spec"]["nodeClassRef"]["group"] == "karpenter.k8s.aws"
        gpu = p["metadata"]["name"].endswith("-gpu")
        assert (dict(GPU_TAINT) in p["spec"]["template"]["spec"]["taints"]) == gpu


def test_clusterapi_machine_deployment() -> None:
    ce = a_ce(
        {
            "type": "clusterapi",
            "clusterapi": {
                "clusterName": "c",
                "namespace": "capi",
                "infrastructureRef": {
                    "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
                    "kind": "K",
                    "name": "t",
                },
                "bootstrapConfigRef": {
                    "group": "bootstrap.cluster.x-k8s.io",
                    "kind": "KubeadmConfigTemplate",
                    "name": "b",
                },
            },
        }
    )
    assert deployment_ref(ce) == ("capi", "batchyard-ce1")
    md = machine_deployment(ce, 2)
    assert md["spec"]["replicas"] == 2
    tmpl = md["spec"]["template"]["spec"]
    assert tmpl["infrastructureRef"] == {
        "apiGroup": "infrastructure.cluster.x-k8s.io",
        "kind": "K",
        "name": "t",
    }
    assert tmpl["bootstrap"]["configRef"]["kind"] == "KubeadmConfigTemplate"
    assert all(t["propagation"] == "Always" for t in tmpl["taints"])


def test_unmanaged_ce_without_provider() -> None:
    ce = ComputeEnvironment.model_validate({"metadata": {"name": "u"}, "spec": {"type": "UNMANAGED"}})
    assert provider_kind(ce) == "unmanaged"
