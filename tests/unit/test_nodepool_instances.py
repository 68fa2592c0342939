"""Unit tables for the instance catalogue and the node-capacity estimate (AWS digest §5.4)."""

from __future__ import annotations

from typing import Any

import pytest

from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.core.capacity import Resources
from batchyard.core.instances import (
    BUILTIN_CATALOGUE,
    InstanceType,
    UnknownInstanceType,
    catalogue,
    job_capacity_estimate,
    kube_reserved_memory_mib,
    kube_reserved_milli_cpu,
    node_allocatable,
    resolve,
)
from batchyard.core.nodepool import (
    BEST_FIT_PROGRESSIVE,
    CE_LABEL,
    DAEMONSET_TOLERATION,
    GPU_TAINT,
    node_labels,
    node_taints,
    pool_spec,
    tolerates_gpu_nodes,
)
from batchyard.render.pod import job_tolerations


@pytest.mark.parametrize(
    ("vcpus", "reserved_m"),
    [
        pytest.param(1, 60, id="1 vCPU: 6% of the first core"),
        pytest.param(2, 70, id="c5.large (2 vCPU): 60 + 10 = 70m, the AWS example"),
        pytest.param(4, 80, id="4 vCPU: + 0.5% of cores 3-4"),
        pytest.param(5, 83, id="5 vCPU: + 0.25% of core 5 = 82.5m rounded up"),
        pytest.param(96, 310, id="c5.24xlarge (96 vCPU): 60 + 10 + 10 + 92*2.5 = 310m, the AWS example"),
    ],
)
def test_kube_reserved_cpu(vcpus: int, reserved_m: int) -> None:
    assert kube_reserved_milli_cpu(vcpus * 1000) == reserved_m


def test_allocatable_memory_matches_the_aws_c5_large_example() -> None:
    # AWS: "(7748 - (11 * 29) -255 -100) = 7074 MiB"
    c5 = InstanceType("c5.large", 2000, 7748, max_pods=29)
    assert kube_reserved_memory_mib(29) == 574
    assert node_allocatable(c5) == Resources(1930, 7074, 0)
    # AWS: "a job that requires 1.75 vCPU units fits" (before the DaemonSet allowance)
    assert Resources.of(1.75).fits_in(node_allocatable(c5))
    assert not Resources.of(2).fits_in(node_allocatable(c5))


def test_job_capacity_subtracts_the_daemonset_allowance() -> None:
    # AWS: "AWS Batch initially allocates 0.5 vCPU units and 500 MiB for expected DaemonSets"
    c5 = InstanceType("c5.large", 2000, 7748, max_pods=29)
    assert job_capacity_estimate(c5) == Resources(1430, 6574, 0)
    assert job_capacity_estimate(c5, Resources(100, 100)) == Resources(1830, 6974, 0)


def test_gpu_types_bring_their_gpus() -> None:
    assert node_allocatable(BUILTIN_CATALOGUE["p3.8xlarge"]).gpus == 4
    assert BUILTIN_CATALOGUE["g5.xlarge"].gpu and not BUILTIN_CATALOGUE["m5.xlarge"].gpu


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        pytest.param(["m5.xlarge"], ["m5.xlarge"], id="a size"),
        pytest.param(["p3"], ["p3.2xlarge", "p3.8xlarge", "p3.16xlarge"], id="a family, cheapest first"),
        pytest.param(None, None, id="unset means optimal: c5, m5 and r5"),
    ],
)
def test_resolve(names: list[str] | None, expected: list[str] | None) -> None:
    got = [t.name for t in resolve(names, BUILTIN_CATALOGUE)]
    if expected is None:
        assert {n.split(".")[0] for n in got} == {"c5", "m5", "r5"}
    else:
        assert got == expected


def test_unknown_types_are_named() -> None:
    with pytest.raises(UnknownInstanceType, match=r"x1\.huge, zz"):
        resolve(["m5.large", "x1.huge", "zz"], BUILTIN_CATALOGUE)


def test_user_catalogue_extends_and_overrides() -> None:
    mine = InstanceType("gpu.large", 8000, 65536, gpus=2)
    cat = catalogue([mine, InstanceType("m5.large", 2000, 4096)])
    assert cat["gpu.large"] is mine and cat["m5.large"].memory_mib == 4096


# --- node identity -----------------------------------------------------------------------------
def test_node_identity_conventions() -> None:
    assert node_labels("ce1", "m5.large") == {
        CE_LABEL: "ce1",
        "batchyard.io/managed-by": "batchyard",
        "node.kubernetes.io/instance-type": "m5.large",
    }
    assert node_taints("ce1", gpu=True) == [
        {"key": CE_LABEL, "value": "ce1", "effect": "NoSchedule"},
        {"key": CE_LABEL, "value": "ce1", "effect": "NoExecute"},
        dict(GPU_TAINT),
    ]
    # Job pods are built by render.pod; its tolerations match these node taints.
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in job_tolerations(
        "ce1", gpu=True
    )
    assert len(job_tolerations("ce1", gpu=False)) == 2
    assert DAEMONSET_TOLERATION == {"key": CE_LABEL, "operator": "Exists"}
    assert tolerates_gpu_nodes(0, pool_gpu_only=True) and not tolerates_gpu_nodes(0, pool_gpu_only=False)


# --- from the ComputeEnvironment ---------------------------------------------------------------
def a_ce(**spec: Any) -> ComputeEnvironment:
    body = {
        "apiVersion": "batchyard.io/v1alpha1",
        "kind": "ComputeEnvironment",
        "metadata": {"name": "ce1"},
        "spec": {
            "computeResources": {"minvCpus": 0, "maxvCpus": 8, "instanceTypes": ["c5.xlarge"]},
            "provider": {"type": "kwok", "kwok": {"options": {"scaleDownDelaySeconds": "5"}}},
            **spec,
        },
    }
    return ComputeEnvironment.model_validate(body)


def test_pool_spec_from_a_compute_environment() -> None:
    spec = pool_spec(a_ce())
    assert (spec.name, spec.max_vcpus, spec.scale_down_delay_seconds) == ("ce1", 8, 5.0)
    assert [t.name for t in spec.instance_types] == ["c5.xlarge"]
    assert spec.node_name_prefix == "ce1"


def test_pool_spec_uses_the_instance_catalog_and_the_strategy() -> None:
    ce = a_ce(
        computeResources={
            "maxvCpus": 16,
            "instanceTypes": ["gpu.large"],
            "allocationStrategy": "BEST_FIT_PROGRESSIVE",
            "scalingPolicy": {"minScaleDownDelayMinutes": 20},
        },
        provider={"type": "kwok"},
        instanceCatalog=[{"name": "gpu.large", "vcpus": 8, "memoryMiB": 65536, "gpus": 2}],
    )
    spec = pool_spec(ce)
    assert spec.instance_types[0].gpus == 2 and spec.gpu_only
    assert spec.allocation_strategy == BEST_FIT_PROGRESSIVE
    assert spec.scale_down_delay_seconds == 1200.0


def test_pool_spec_rejects_unknown_types() -> None:
    with pytest.raises(UnknownInstanceType):
        pool_spec(a_ce(computeResources={"maxvCpus": 8, "instanceTypes": ["q9.mega"]}))
