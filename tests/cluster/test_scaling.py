"""Compute environments as node pools that follow demand, with the real operator and kwok nodes.

What a user sees: jobs on an empty compute environment bring up just the nodes maxvCpus allows,
run, and the nodes go after the scale-down delay; a GPU job brings a GPU node (and no CPU node);
a DISABLED compute environment takes no new jobs and launches nothing; a node running a job is
never removed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from batch import API, apply, batch_job, get, job_definition, job_queue, job_status, wait_status
from waiting import wait_for

from batchyard.core.capacity import parse_cpu
from batchyard.devcluster import DevCluster

pytestmark = pytest.mark.cluster

CE_LABEL = "batchyard.io/compute-environment"
TYPE_LABEL = "node.kubernetes.io/instance-type"


def managed_ce(
    name: str,
    instance_types: list[str],
    max_vcpus: int = 8,
    min_vcpus: int = 0,
    state: str = "ENABLED",
    scale_down_delay: str = "2",
) -> dict[str, Any]:
    """A MANAGED kwok compute environment with a short scale-down delay (a provider option)."""
    return {
        "apiVersion": API,
        "kind": "ComputeEnvironment",
        "metadata": {"name": name},
        "spec": {
            "type": "MANAGED",
            "state": state,
            "computeResources": {
                "minvCpus": min_vcpus,
                "maxvCpus": max_vcpus,
                "instanceTypes": instance_types,
            },
            "provider": {"type": "kwok", "kwok": {"options": {"scaleDownDelaySeconds": scale_down_delay}}},
        },
    }


def nodes_of(cluster: DevCluster, ce: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        cluster.kubectl("get", "nodes", "-l", f"{CE_LABEL}={ce}", "-o", "json").stdout
    )["items"]
    return items


def job_pods(cluster: DevCluster, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        cluster.kubectl("get", "pods", "-n", namespace, "-l", "batchyard.io/job-uid", "-o", "json").stdout
    )["items"]
    return items


def bound_cpu(pods: list[dict[str, Any]]) -> int:
    """Millicpu requested by the pods bound to a node and not finished."""
    return sum(
        parse_cpu(c.get("resources", {}).get("requests", {}).get("cpu", "0"))
        for p in pods
        if p["spec"].get("nodeName") and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
        for c in p["spec"]["containers"]
    )


def ce_status(cluster: DevCluster, ce: str) -> dict[str, Any]:
    status: dict[str, Any] = get(cluster, "computeenvironment", ce).get("status") or {}
    return status


@pytest.fixture
def pool(devcluster: DevCluster, operator: object, namespace: str) -> Iterator[tuple[str, str]]:
    """(compute environment, queue) names for this test; both deleted afterwards, nodes with them."""
    ce, queue = f"{namespace}-ce", f"{namespace}-q"
    yield ce, queue
    devcluster.kubectl("delete", "jobqueue", queue, "--wait=false", check=False)
    devcluster.kubectl("delete", "computeenvironment", ce, "--wait=false", check=False)
    devcluster.kubectl("delete", "node", "-l", f"{CE_LABEL}={ce}", "--wait=false", check=False)


def test_twenty_jobs_bring_up_two_nodes_within_max_vcpus_and_the_nodes_go_afterwards(
    devcluster: DevCluster, namespace: str, pool: tuple[str, str]
) -> None:
    ce, queue = pool
    apply(devcluster, managed_ce(ce, ["m5.xlarge"], max_vcpus=8), job_queue(queue, [ce]))
    wait_for(lambda: ce_status(devcluster, ce).get("status") == "VALID", timeout=30, what=f"{ce} VALID")
    assert nodes_of(devcluster, ce) == []  # minvCpus 0: an empty pool launches nothing

    apply(
        devcluster,
        job_definition("one-cpu", namespace),
        *(batch_job(f"j{i:02}", namespace, queue, "one-cpu", delay="1s") for i in range(20)),
    )

    seen_nodes: set[str] = set()
    reasons: set[str] = set()
    peak_cpu = peak_desired = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        seen_nodes |= {n["metadata"]["name"] for n in nodes_of(devcluster, ce)}
        peak_cpu = max(peak_cpu, bound_cpu(job_pods(devcluster, namespace)))
        peak_desired = max(peak_desired, ce_status(devcluster, ce).get("desiredvCpus") or 0)
        out = devcluster.kubectl(
            "get", "batchjobs", "-n", namespace, "--no-headers",
            "-o", "custom-columns=S:.status.status,R:.status.statusReason",
        ).stdout  # fmt: skip
        rows = [line.split(None, 1)[0] for line in out.splitlines() if line.strip()]
        reasons |= {
            line.split(None, 1)[1].strip() for line in out.splitlines() if len(line.split(None, 1)) > 1
        }
        if len(rows) == 20 and all(s in ("SUCCEEDED", "FAILED") for s in rows):
            break
        time.sleep(0.2)

    assert rows.count("SUCCEEDED") == 20, rows
    # while the nodes launch the jobs wait; the provider never "failed to deliver"
    assert not any("INSUFFICIENT_INSTANCE_CAPACITY" in r for r in reasons), reasons
    # m5.xlarge = 4 vCPUs: maxvCpus 8 allows exactly two nodes, and each holds three 1-vCPU jobs
    assert len(seen_nodes) == 2, seen_nodes
    assert 0 < peak_cpu <= 8000
    assert peak_desired == 8
    nodes = {n["metadata"]["labels"][TYPE_LABEL] for n in nodes_of(devcluster, ce)}
    assert nodes <= {"m5.xlarge"}

    # idle past the scale-down delay (2 s): both nodes go, the status follows
    wait_for(lambda: not nodes_of(devcluster, ce), timeout=30, what=f"the nodes of {ce} to be removed")
    status = wait_for(
        lambda: (s := ce_status(devcluster, ce)).get("nodes") == 0 and s.get("vcpusInUse") == 0 and s,
        timeout=15,
        what="the compute environment status to show no nodes",
    )
    assert status["status"] == "VALID"
    assert status["statusReason"] == "ComputeEnvironment Healthy"
    assert status["desiredvCpus"] == 0
    assert status["conditions"][0]["type"] == "Ready" and status["conditions"][0]["status"] == "True"


def test_a_gpu_job_brings_up_a_gpu_node_and_no_cpu_node(
    devcluster: DevCluster, namespace: str, pool: tuple[str, str]
) -> None:
    ce, queue = pool
    apply(devcluster, managed_ce(ce, ["m5.xlarge", "g4dn.xlarge"], max_vcpus=16), job_queue(queue, [ce]))
    gpu_definition = job_definition(
        "gpu",
        namespace,
        container={
            "resourceRequirements": [
                {"type": "VCPU", "value": "1"},
                {"type": "MEMORY", "value": "1024"},
                {"type": "GPU", "value": "1"},
            ]
        },
    )
    apply(devcluster, gpu_definition, batch_job("train", namespace, queue, "gpu", delay="2s"))

    status = wait_status(devcluster, namespace, "train", "SUCCEEDED", "FAILED", timeout=60)

    assert status["status"] == "SUCCEEDED"
    types = {n["metadata"]["name"]: n["metadata"]["labels"][TYPE_LABEL] for n in nodes_of(devcluster, ce)}
    assert list(types.values()) == ["g4dn.xlarge"], types


def scaler_passes(operator: Any) -> int:
    """How many node-pool passes the in-process operator has finished (adapters.scaler)."""
    return int(operator.memo.scaler.passes)


def test_a_disabled_compute_environment_gets_no_new_jobs_and_no_nodes(
    devcluster: DevCluster, operator: Any, namespace: str, pool: tuple[str, str]
) -> None:
    ce, queue = pool
    apply(devcluster, managed_ce(ce, ["m5.xlarge"], state="DISABLED"), job_queue(queue, [ce]))
    apply(devcluster, job_definition("one-cpu", namespace), batch_job("waits", namespace, queue, "one-cpu"))

    status = wait_for(
        lambda: (s := job_status(devcluster, namespace, "waits")).get("statusReason") and s,
        timeout=30,
        what="the job to say why it waits",
    )
    assert status["status"] == "RUNNABLE"
    assert f"{ce}: DISABLED" in status["statusReason"]
    # Several node-pool passes have seen the waiting job (a count, not a fixed sleep): none of
    # them may have launched a node.
    seen = scaler_passes(operator)
    wait_for(lambda: scaler_passes(operator) >= seen + 3, timeout=60, what="three more node-pool passes")
    assert job_status(devcluster, namespace, "waits")["status"] == "RUNNABLE"
    assert nodes_of(devcluster, ce) == []
    assert job_pods(devcluster, namespace) == []

    # ENABLED again: the environment scales out and the job runs
    apply(devcluster, managed_ce(ce, ["m5.xlarge"], state="ENABLED"))
    assert wait_status(devcluster, namespace, "waits", "SUCCEEDED", "FAILED")["status"] == "SUCCEEDED"


def test_a_node_running_a_job_is_never_removed(
    devcluster: DevCluster, namespace: str, pool: tuple[str, str]
) -> None:
    ce, queue = pool
    apply(devcluster, managed_ce(ce, ["m5.xlarge"], scale_down_delay="1"), job_queue(queue, [ce]))
    apply(
        devcluster,
        job_definition("one-cpu", namespace),
        batch_job("long", namespace, queue, "one-cpu", delay="12s"),
        *(batch_job(f"short{i}", namespace, queue, "one-cpu", delay="1s") for i in range(4)),
    )
    wait_status(devcluster, namespace, "long", "RUNNING", timeout=60)
    long_pod = next(p for p in job_pods(devcluster, namespace) if p["metadata"]["name"].startswith("long-"))
    busy = long_pod["spec"]["nodeName"]

    # while the long job runs, its node stays (and stays schedulable) while the other scales in
    scaled_in = False
    while job_status(devcluster, namespace, "long")["status"] == "RUNNING":
        nodes = nodes_of(devcluster, ce)
        node = next((n for n in nodes if n["metadata"]["name"] == busy), None)
        assert node is not None, f"node {busy} was removed while job 'long' ran on it"
        assert not node["spec"].get("unschedulable")
        scaled_in = scaled_in or len(nodes) == 1
        time.sleep(0.3)
    assert scaled_in, "the idle node was not removed while the long job ran"
    assert job_status(devcluster, namespace, "long")["status"] == "SUCCEEDED"
    for i in range(4):
        assert job_status(devcluster, namespace, f"short{i}")["status"] == "SUCCEEDED"
    wait_for(lambda: not nodes_of(devcluster, ce), timeout=30, what="the idle nodes to be removed")
