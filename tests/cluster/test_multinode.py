"""Multi-node parallel jobs against the real control plane: a gang of pods, a main node, one outcome.

AWS "Job lifecycle for MNP jobs": the main node starts first; the child nodes start when it is
RUNNING and know its address; the job ends when the main node exits, the others are stopped,
and the job's outcome is the main node's. Nodes are single-tenant, and the gang starts whole
or not at all. The compute environments here are MANAGED kwok pools (AWS: MNP jobs aren't
supported on UNMANAGED compute environments) of m5.xlarge (4 vCPUs) nodes, and each node of the
job asks 3 vCPUs, so every node of the job needs a node of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from batch import API, apply, batch_job, events, get, job_queue, job_status, pods, wait_status
from waiting import wait_for

from batchyard.devcluster import DevCluster

pytestmark = pytest.mark.cluster

CE_LABEL = "batchyard.io/compute-environment"
NODE_INDEX = "batchyard.io/node-index"


def managed_ce(name: str, max_vcpus: int, min_vcpus: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ComputeEnvironment",
        "metadata": {"name": name},
        "spec": {
            "type": "MANAGED",
            "state": "ENABLED",
            "computeResources": {
                "minvCpus": min_vcpus,
                "maxvCpus": max_vcpus,
                "instanceTypes": ["m5.xlarge"],
            },
            "provider": {"type": "kwok", "kwok": {"options": {"scaleDownDelaySeconds": "2"}}},
        },
    }


def mnp_definition(name: str, namespace: str, nodes: int = 4, vcpus: int = 3, **spec: Any) -> dict[str, Any]:
    rr = [{"type": "VCPU", "value": str(vcpus)}, {"type": "MEMORY", "value": "1024"}]
    return {
        "apiVersion": API,
        "kind": "JobDefinition",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": "multinode",
            "nodeProperties": {
                "numNodes": nodes,
                "mainNode": 0,
                "nodeRangeProperties": [
                    {
                        "targetNodes": "0:",
                        "container": {"image": "mpi:1", "command": ["mpirun"], "resourceRequirements": rr},
                    }
                ],
            },
            **spec,
        },
    }


def gang_job(name: str, namespace: str, queue: str, main_exit: str = "0", main_delay: str = "4s",
             annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:  # fmt: skip
    """Children run until they are stopped (a long per-node delay); the main node exits as told."""
    ann = {f"kwok.batchyard.io/delay-node-{i}": "600s" for i in (1, 2, 3)}
    ann.update(annotations or {})
    return batch_job(
        name, namespace, queue, "mpi", exit_code=main_exit, delay=main_delay, annotations=ann, **spec
    )


@pytest.fixture
def pool(devcluster: DevCluster, operator: object, namespace: str) -> Iterator[tuple[str, str]]:
    ce, queue = f"{namespace}-ce", f"{namespace}-q"
    yield ce, queue
    devcluster.kubectl("delete", "jobqueue", queue, "--wait=false", check=False)
    devcluster.kubectl("delete", "computeenvironment", ce, "--wait=false", check=False)
    devcluster.kubectl("delete", "node", "-l", f"{CE_LABEL}={ce}", "--wait=false", check=False)


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0].get("env", [])}


def ready_since(pod: dict[str, Any]) -> str:
    for c in pod["status"].get("conditions", []):
        if c["type"] == "Ready" and c["status"] == "True":
            return str(c["lastTransitionTime"])
    return ""


def test_four_node_gang_main_first_children_with_its_address_one_outcome(
    devcluster: DevCluster, namespace: str, pool: tuple[str, str]
) -> None:
    ce, queue = pool
    apply(devcluster, managed_ce(ce, max_vcpus=16), job_queue(queue, [ce]), mnp_definition("mpi", namespace))
    apply(devcluster, gang_job("gang", namespace, queue))

    # The main node's pod comes alone; the children only once it is RUNNING.
    seen: dict[str, dict[str, Any]] = {}

    def children_up() -> bool:
        for p in pods(devcluster, namespace):
            seen.setdefault(p["metadata"]["name"], p)
            if p["metadata"]["labels"][NODE_INDEX] == "0":
                seen["main"] = p
        assert all(p["metadata"]["labels"][NODE_INDEX] == "0" or "main" in seen for p in seen.values()), (
            "a child node's pod came before the main node's"
        )
        return len([p for p in pods(devcluster, namespace) if p["status"].get("phase") == "Running"]) == 4

    wait_for(children_up, timeout=120, interval=0.2, what="the 4 nodes to run")
    running = {p["metadata"]["labels"][NODE_INDEX]: p for p in pods(devcluster, namespace)}
    main = running["0"]
    main_ip = main["status"]["podIP"]
    assert main_ip
    for i in ("1", "2", "3"):
        child = running[i]
        env = env_of(child)
        assert env["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] == main_ip
        assert env["AWS_BATCH_JOB_NODE_INDEX"] == i
        assert env["AWS_BATCH_JOB_MAIN_NODE_INDEX"] == "0"
        assert env["AWS_BATCH_JOB_NUM_NODES"] == "4"
        assert env["AWS_BATCH_JOB_ID"].endswith(f"#{i}")
        assert env["BATCHYARD_MAIN_NODE_HOST"] == f"gang-main.{namespace}.svc"
        assert (
            child["metadata"]["creationTimestamp"]
            >= ready_since(main)[: len(child["metadata"]["creationTimestamp"])]
        )
    assert len({p["spec"]["nodeName"] for p in running.values()}) == 4, "each node of the job on its own node"
    # The main node's headless Service (a stable DNS name), owned by the job, selects the main pod.
    svc = get(devcluster, "service", "gang-main", namespace)
    assert svc["spec"]["clusterIP"] == "None"
    assert [o["kind"] for o in svc["metadata"]["ownerReferences"]] == ["BatchJob"]

    def service_addresses() -> list[str]:
        slices = json.loads(
            devcluster.kubectl(
                "get",
                "endpointslices",
                "-n",
                namespace,
                "-l",
                "kubernetes.io/service-name=gang-main",
                "-o",
                "json",
            ).stdout
        )["items"]
        return [a for sl in slices for e in sl.get("endpoints") or [] for a in e["addresses"]]

    wait_for(
        lambda: service_addresses() == [main_ip], timeout=60, what="the Service to resolve to the main node"
    )

    status = wait_status(devcluster, namespace, "gang", "SUCCEEDED", "FAILED", timeout=120)
    assert status["status"] == "SUCCEEDED"
    assert status["attempts"][-1]["exitCode"] == 0
    assert status["attempts"][-1]["podName"] == main["metadata"]["name"]
    nodes = status["nodeProperties"]["nodes"]
    assert [(n["nodeIndex"], n.get("isMainNode")) for n in nodes] == [
        (0, True),
        (1, False),
        (2, False),
        (3, False),
    ]
    # AWS: "All child nodes are then stopped"
    wait_for(lambda: not pods(devcluster, namespace), timeout=60, what="the children to be stopped")
    # the Service goes with the gang
    wait_for(
        lambda: (
            devcluster.kubectl("get", "service", "gang-main", "-n", namespace, check=False).returncode != 0
        ),
        timeout=60,
        what="the main node's Service to be deleted",
    )
    reasons = {e["reason"] for e in events(devcluster, namespace, "gang")}
    # The gang's own events; the routine state events (Succeeded, ...) are off by default
    # (BATCHYARD_ROUTINE_EVENTS), the job's end is in its status and conditions.
    assert {"GangAdmitted", "MainNodeRunning"} <= reasons
    assert "Succeeded" not in reasons

    # AWS: "describe aws_batch_job_id#1" shows one node
    node2 = json.loads(batchyard(devcluster, "describe", "gang#2", "-n", namespace))
    assert node2["jobId"] == f"{status['jobId']}#2"
    assert node2["nodeDetails"] == {"nodeIndex": 2, "isMainNode": False}
    assert node2["podName"] == running["2"]["metadata"]["name"]
    assert node2["nodeName"] == running["2"]["spec"]["nodeName"]
    # one row in kubectl get batchjobs
    rows = devcluster.kubectl("get", "batchjobs", "-n", namespace, "--no-headers").stdout.splitlines()
    assert len(rows) == 1 and "SUCCEEDED" in rows[0]


def batchyard(cluster: DevCluster, *args: str) -> str:
    """Run the `batchyard` CLI as a user would, against the test control plane."""
    assert cluster.binaries is not None
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    proc = subprocess.run(
        [sys.executable, "-m", "batchyard.cli.main", *args, "--kubectl", str(cluster.binaries.kubectl)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def running_gang(devcluster: DevCluster, namespace: str) -> dict[str, dict[str, Any]]:
    wait_for(
        lambda: len([p for p in pods(devcluster, namespace) if p["status"].get("phase") == "Running"]) == 4,
        timeout=120,
        what="the 4 nodes to run",
    )
    return {p["metadata"]["labels"][NODE_INDEX]: p for p in pods(devcluster, namespace)}


def test_terminate_stops_the_whole_gang(
    devcluster: DevCluster, namespace: str, pool: tuple[str, str]
) -> None:
    ce, queue = pool
    apply(devcluster, managed_ce(ce, max_vcpus=16), job_queue(queue, [ce]), mnp_definition("mpi", namespace))
    apply(devcluster, batch_job("gang", namespace, queue, "mpi", exit_code=None))  # runs until stopped
    running_gang(devcluster, namespace)

    devcluster.kubectl("patch", "batchjob", "gang", "-n", namespace, "--type", "merge",
                       "-p", json.dumps({"spec": {"terminate": {"reason": "stop the gang"}}}))  # fmt: skip
    status = wait_status(devcluster, namespace, "gang", "FAILED", timeout=60)
    assert status["statusReason"] == "stop the gang"
    wait_for(lambda: not pods(devcluster, namespace), timeout=60, what="every node's pod to be stopped")


def test_timeout_applies_to_the_whole_gang(
    devcluster: DevCluster, namespace: str, pool: tuple[str, str]
) -> None:
    ce, queue = pool
    apply(
        devcluster,
        managed_ce(ce, max_vcpus=16),
        job_queue(queue, [ce]),
        mnp_definition("mpi", namespace, timeout={"attemptDurationSeconds": 60}),
    )
    apply(devcluster, batch_job("gang", namespace, queue, "mpi", exit_code=None))
    running_gang(devcluster, namespace)
    status = wait_status(devcluster, namespace, "gang", "SUCCEEDED", "FAILED", timeout=150)
    assert status["status"] == "FAILED"
    assert status["statusReason"] == "Job attempt duration exceeded timeout"
    wait_for(lambda: not pods(devcluster, namespace), timeout=60, what="every node's pod to be stopped")


def test_operator_restarted_mid_gang_creates_no_duplicate_and_loses_no_node(
    devcluster: DevCluster, operator: Any, namespace: str, pool: tuple[str, str]
) -> None:
    ce, queue = pool
    apply(devcluster, managed_ce(ce, max_vcpus=16), job_queue(queue, [ce]), mnp_definition("mpi", namespace))
    apply(devcluster, gang_job("gang", namespace, queue, main_delay="25s"))
    before = running_gang(devcluster, namespace)

    operator.stop()
    operator.start()

    status = wait_status(devcluster, namespace, "gang", "SUCCEEDED", "FAILED", timeout=120)
    assert status["status"] == "SUCCEEDED"
    assert len(status["attempts"]) == 1
    assert [n["podName"] for n in status["nodeProperties"]["nodes"]] == [
        before[str(i)]["metadata"]["name"] for i in range(4)
    ]
    assert {n["nodeName"] for n in status["nodeProperties"]["nodes"]} == {
        p["spec"]["nodeName"] for p in before.values()
    }
    # What the operator kept in memory is derivable from the cluster: the restarted operator
    # finds the children and announces no second launch.
    launched = [e for e in events(devcluster, namespace, "gang") if e["reason"] == "MainNodeRunning"]
    assert len(launched) == 1, [e["message"] for e in launched]


def pool_nodes(devcluster: DevCluster, ce: str) -> list[dict[str, Any]]:
    out = json.loads(devcluster.kubectl("get", "nodes", "-l", f"{CE_LABEL}={ce}", "-o", "json").stdout)
    return list(out["items"])


def test_gang_waits_whole_until_a_fourth_node_is_possible(
    devcluster: DevCluster, namespace: str, pool: tuple[str, str]
) -> None:
    ce, queue = pool
    # minvCpus = maxvCpus = 12: three m5.xlarge nodes, and the job needs four
    apply(
        devcluster,
        managed_ce(ce, max_vcpus=12, min_vcpus=12),
        job_queue(queue, [ce]),
        mnp_definition("mpi", namespace),
    )
    wait_for(lambda: len(pool_nodes(devcluster, ce)) == 3, timeout=60, what="the pool's 3 nodes")
    apply(devcluster, gang_job("gang", namespace, queue, main_delay="1s"))

    status = wait_for(
        lambda: (s := job_status(devcluster, namespace, "gang")).get("statusReason") and s,
        timeout=60,
        what="the gang to wait with a reason",
    )
    assert status["status"] == "RUNNABLE"
    # four whole m5.xlarge instances (16 vCPUs) can never fit maxvCpus 12: AWS's blocked reason
    assert status["statusReason"].startswith("MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE")
    assert "4 x 4 vCPUs > maxvCpus 12" in status["statusReason"]
    assert pods(devcluster, namespace) == [], "no pod of a gang that can't start whole"
    assert len(pool_nodes(devcluster, ce)) == 3, "no node for a gang that can never fit"
    assert job_status(devcluster, namespace, "gang")["status"] == "RUNNABLE"

    apply(devcluster, managed_ce(ce, max_vcpus=16))  # room for a fourth node
    status = wait_status(devcluster, namespace, "gang", "SUCCEEDED", "FAILED", timeout=120)
    assert status["status"] == "SUCCEEDED"


def test_main_node_failure_retries_the_whole_gang_with_shared_attempt_numbers(
    devcluster: DevCluster, namespace: str, pool: tuple[str, str]
) -> None:
    ce, queue = pool
    apply(
        devcluster,
        managed_ce(ce, max_vcpus=16),
        job_queue(queue, [ce]),
        mnp_definition("mpi", namespace, retryStrategy={"attempts": 2}),
    )
    apply(devcluster, gang_job("gang", namespace, queue, main_exit="1,0", main_delay="3s"))

    attempts_seen: dict[str, set[str]] = {}

    def done() -> bool:
        for p in pods(devcluster, namespace):
            labels = p["metadata"]["labels"]
            attempts_seen.setdefault(labels["batchyard.io/attempt"], set()).add(labels[NODE_INDEX])
            assert env_of(p)["AWS_BATCH_JOB_ATTEMPT"] == labels["batchyard.io/attempt"]
        return job_status(devcluster, namespace, "gang").get("status") in ("SUCCEEDED", "FAILED")

    wait_for(done, timeout=180, interval=0.2, what="the gang's two attempts")
    status = job_status(devcluster, namespace, "gang")
    assert status["status"] == "SUCCEEDED"
    assert [a["exitCode"] for a in status["attempts"]] == [1, 0]
    # every node took part in both attempts, each with the attempt's number
    assert attempts_seen.get("2") == {"0", "1", "2", "3"}
    assert attempts_seen.get("1", set()) >= {"0"}
    # keepPods=failed (the default): the failed attempt's main pod stays for its log; the
    # children stopped while running and the succeeded attempt's pods go.
    first_main = status["attempts"][0]["podName"]
    wait_for(
        lambda: [p["metadata"]["name"] for p in pods(devcluster, namespace)] == [first_main],
        timeout=60,
        what="all nodes stopped but the failed attempt's main pod",
    )


def test_child_node_failure_takes_no_action_and_the_outcome_is_the_main_nodes(
    devcluster: DevCluster, namespace: str, pool: tuple[str, str]
) -> None:
    ce, queue = pool
    apply(devcluster, managed_ce(ce, max_vcpus=16), job_queue(queue, [ce]), mnp_definition("mpi", namespace))
    apply(
        devcluster,
        gang_job(
            "gang", namespace, queue, main_delay="8s",
            annotations={"kwok.batchyard.io/exit-code-node-2": "1", "kwok.batchyard.io/delay-node-2": "1s"},
        ),
    )  # fmt: skip

    def node2_failed_others_run() -> bool:
        by_index = {p["metadata"]["labels"][NODE_INDEX]: p for p in pods(devcluster, namespace)}
        return by_index.get("2", {}).get("status", {}).get("phase") == "Failed" and all(
            by_index.get(i, {}).get("status", {}).get("phase") == "Running" for i in ("0", "1", "3")
        )

    wait_for(node2_failed_others_run, timeout=120, interval=0.2, what="node 2 to fail while the others run")
    assert job_status(devcluster, namespace, "gang")["status"] == "RUNNING"
    status = wait_status(devcluster, namespace, "gang", "SUCCEEDED", "FAILED", timeout=120)
    assert status["status"] == "SUCCEEDED"
    assert len(status["attempts"]) == 1, "a child node's failure makes no new attempt"
    node2 = status["nodeProperties"]["nodes"][2]
    assert (node2["status"], node2.get("exitCode")) == ("FAILED", 1)
    assert get(devcluster, "batchjob", "gang", namespace)["status"]["status"] == "SUCCEEDED"


def test_a_gang_and_single_jobs_share_a_fifo_queue_without_starving(
    devcluster: DevCluster, namespace: str, pool: tuple[str, str]
) -> None:
    # AWS FIFO: the head of the queue starts first and nothing backfills past it. Two single jobs,
    # then the gang, then two more: the gang waits for free nodes and starts before the later ones.
    ce, queue = pool
    three = [{"type": "VCPU", "value": "3"}, {"type": "MEMORY", "value": "1024"}]
    apply(
        devcluster,
        managed_ce(ce, max_vcpus=16),
        job_queue(queue, [ce]),
        mnp_definition("mpi", namespace),
        {
            "apiVersion": API,
            "kind": "JobDefinition",
            "metadata": {"name": "one", "namespace": namespace},
            "spec": {
                "type": "container",
                "containerProperties": {"image": "x", "resourceRequirements": three},
            },
        },
    )
    apply(devcluster, batch_job("first-a", namespace, queue, "one", delay="3s"))
    apply(devcluster, batch_job("first-b", namespace, queue, "one", delay="3s"))
    wait_for(
        lambda: job_status(devcluster, namespace, "first-b").get("status") == "RUNNABLE",
        what="first-b queued",
    )
    apply(devcluster, gang_job("gang", namespace, queue, main_delay="3s"))
    wait_for(
        lambda: job_status(devcluster, namespace, "gang").get("status") == "RUNNABLE", what="the gang queued"
    )
    apply(devcluster, batch_job("later-a", namespace, queue, "one", delay="1s"))
    apply(devcluster, batch_job("later-b", namespace, queue, "one", delay="1s"))

    done = {
        name: wait_status(devcluster, namespace, name, "SUCCEEDED", "FAILED", timeout=180)
        for name in ("first-a", "first-b", "gang", "later-a", "later-b")
    }
    assert {s["status"] for s in done.values()} == {"SUCCEEDED"}
    gang_started = done["gang"]["attempts"][0]["startedAt"]
    assert done["first-a"]["attempts"][0]["startedAt"] <= gang_started
    assert done["first-b"]["attempts"][0]["startedAt"] <= gang_started
    # the later jobs did not pass the waiting gang
    assert done["later-a"]["attempts"][0]["startedAt"] >= gang_started
    assert done["later-b"]["attempts"][0]["startedAt"] >= gang_started


def test_a_managed_pool_scales_out_whole_nodes_for_a_gang(
    devcluster: DevCluster, namespace: str, pool: tuple[str, str]
) -> None:
    # Three 1-vCPU nodes would pack onto one m5.xlarge; a gang needs three nodes of its own
    # (AWS: MNP nodes are single-tenant), so the empty pool scales out to three nodes at once.
    ce, queue = pool
    apply(
        devcluster,
        managed_ce(ce, max_vcpus=12),
        job_queue(queue, [ce]),
        mnp_definition("mpi", namespace, nodes=3, vcpus=1),
    )
    assert pool_nodes(devcluster, ce) == []
    apply(devcluster, gang_job("gang", namespace, queue, main_delay="4s"))

    placed: dict[str, str] = {}

    def all_three_ran() -> bool:
        for p in pods(devcluster, namespace):
            if p["spec"].get("nodeName"):
                placed[p["metadata"]["labels"][NODE_INDEX]] = p["spec"]["nodeName"]
        return len(placed) == 3

    wait_for(all_three_ran, timeout=120, interval=0.2, what="the 3 nodes of the job to be placed")
    status = wait_status(devcluster, namespace, "gang", "SUCCEEDED", "FAILED", timeout=120)
    assert status["status"] == "SUCCEEDED"
    assert len(set(placed.values())) == 3, f"each node of the job on its own node: {placed}"
    nodes = {n["metadata"]["name"]: n for n in pool_nodes(devcluster, ce)}
    assert set(placed.values()) <= set(nodes)
    assert {n["metadata"]["labels"]["node.kubernetes.io/instance-type"] for n in nodes.values()} == {
        "m5.xlarge"
    }
    assert [n["nodeName"] for n in status["nodeProperties"]["nodes"]] == [placed[str(i)] for i in range(3)]


def test_a_child_node_refused_by_pod_security_fails_the_job_at_once(
    devcluster: DevCluster, namespace: str, pool: tuple[str, str]
) -> None:
    # A node range whose container is privileged only for the child nodes, in a namespace that
    # enforces Pod Security baseline: the main node runs, the children are refused for good.
    # The job is FAILED with the refusal quoted (not retried: the same pods would be refused
    # again), every node is stopped and the gang's capacity is released.
    ce, queue = pool
    devcluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=baseline")
    definition = mnp_definition("mpi", namespace, nodes=3, retryStrategy={"attempts": 3})
    ranges = definition["spec"]["nodeProperties"]["nodeRangeProperties"]
    child = json.loads(json.dumps(ranges[0]))
    child["targetNodes"] = "1:"
    child["container"]["privileged"] = True
    ranges[0]["targetNodes"] = "0:0"
    ranges.append(child)
    apply(devcluster, managed_ce(ce, max_vcpus=16), job_queue(queue, [ce]), definition)
    apply(devcluster, batch_job("gang", namespace, queue, "mpi", exit_code=None))  # runs until stopped

    status = wait_status(devcluster, namespace, "gang", "FAILED", "SUCCEEDED", timeout=120)
    assert status["status"] == "FAILED"
    reason = status["statusReason"]
    assert reason.startswith("Invalid job definition: pod rejected:"), reason
    assert 'violates PodSecurity "baseline' in reason and reason.endswith("(node 1)"), reason
    assert len(status["attempts"]) == 1, "a node refused for good is not retried"
    assert status["attempts"][0]["statusReason"] == reason
    rows = {n["nodeIndex"]: n for n in status["nodeProperties"]["nodes"]}
    assert rows[1]["status"] == "FAILED" and "violates PodSecurity" in rows[1]["reason"]
    wait_for(lambda: not pods(devcluster, namespace), timeout=60, what="the main node's pod to be stopped")
    wait_for(
        lambda: get(devcluster, "computeenvironment", ce, None).get("status", {}).get("vcpusInUse") == 0,
        timeout=60,
        what="the gang's capacity to be released",
    )
