"""Array jobs and dependencies against the real control plane."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from batch import (
    apply,
    batch_job,
    ce_nodes,
    compute_environment,
    environment,
    get,
    job_definition,
    job_queue,
    job_status,
    pods,
    wait_status,
)
from waiting import wait_for

from batchyard.devcluster import DevCluster

pytestmark = pytest.mark.cluster


def test_array_of_50_with_one_failing_child(devcluster: DevCluster, operator: object, namespace: str) -> None:
    _, queue = environment(devcluster, namespace, max_vcpus=32, nodes=2)
    job = batch_job(
        "arr", namespace, queue, "d", arrayProperties={"size": 50},
        annotations={"kwok.batchyard.io/exit-code-index-7": "1"},
    )  # fmt: skip
    apply(devcluster, job_definition("d", namespace), job)

    status = wait_status(devcluster, namespace, "arr", "SUCCEEDED", "FAILED", timeout=180)

    assert status["status"] == "FAILED"
    summary = status["arrayProperties"]["statusSummary"]
    assert summary["SUCCEEDED"] == 49
    assert summary["FAILED"] == 1
    children = status["arrayProperties"]["children"]
    assert children["states"] == {"SUCCEEDED": "0-6,8-49", "FAILED": "7"}
    assert children["lastExits"]["7"]["exitCode"] == 1
    assert status["statusReason"] == "1 of 50 child jobs failed"
    # keepPods=failed (the default): the failed child's pod stays for its log, the others go.
    wait_for(
        lambda: [p["metadata"]["name"] for p in pods(devcluster, namespace)] == ["arr-7-a1"],
        what="the succeeded children's pods to be deleted, the failed one's kept",
    )

    described = json.loads(batchyard(devcluster, "describe", "arr:7", "-n", namespace))
    assert described["jobId"] == f"{status['jobId']}:7"
    assert described["status"] == "FAILED"
    assert described["lastExit"]["exitCode"] == 1
    assert json.loads(batchyard(devcluster, "describe", "arr:8", "-n", namespace))["status"] == "SUCCEEDED"


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


def test_sequential_array_runs_in_index_order(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    _, queue = environment(devcluster, namespace, max_vcpus=32, nodes=1)
    job = batch_job(
        "seq", namespace, queue, "d", arrayProperties={"size": 5}, dependsOn=[{"type": "SEQUENTIAL"}]
    )
    apply(devcluster, job_definition("d", namespace), job)

    seen_running: list[int] = []

    def progress() -> bool:
        for p in pods(devcluster, namespace):
            idx = int(p["metadata"]["labels"]["batchyard.io/array-index"])
            if idx not in seen_running:
                seen_running.append(idx)
        running = [
            p for p in pods(devcluster, namespace) if p["status"].get("phase") in ("Pending", "Running")
        ]
        assert len(running) <= 1, "a SEQUENTIAL array ran two children at once"
        return job_status(devcluster, namespace, "seq").get("status") in ("SUCCEEDED", "FAILED")

    wait_for(progress, timeout=120, interval=0.1, what="the sequential array to finish")
    assert job_status(devcluster, namespace, "seq")["status"] == "SUCCEEDED"
    assert seen_running == sorted(seen_running)


def test_n_to_n_releases_each_index_after_its_twin(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    _, queue = environment(devcluster, namespace, max_vcpus=32, nodes=2)
    apply(devcluster, job_definition("d", namespace))
    # A's children run 2 s each; B's child i may start only after A's child i succeeded.
    apply(devcluster, batch_job("a", namespace, queue, "d", delay="2s", arrayProperties={"size": 10}))
    apply(devcluster, batch_job("b", namespace, queue, "d", arrayProperties={"size": 10},
                                dependsOn=[{"jobId": "a", "type": "N_TO_N"}]))  # fmt: skip

    def b_started_early() -> None:
        # Pods first, then A's status: the operator writes A's child SUCCEEDED before it creates
        # B's pod of the same index, so whatever pod of B is seen, a status read *after* it must
        # show its twin succeeded. (Reading A first and the pods second raced: A:i could finish and
        # B:i start between the two reads, a false failure seen once on a fresh machine.)
        b_pods = [
            p for p in pods(devcluster, namespace) if p["metadata"]["labels"]["batchyard.io/job-name"] == "b"
        ]
        a = (
            job_status(devcluster, namespace, "a")
            .get("arrayProperties", {})
            .get("children", {})
            .get("states", {})
        )
        for p in b_pods:
            labels = p["metadata"]["labels"]
            if labels["batchyard.io/job-name"] == "b":
                idx = int(labels["batchyard.io/array-index"])
                done = a.get("SUCCEEDED", "")
                assert _in_ranges(idx, done), f"b:{idx} started before a:{idx} succeeded ({a})"

    def finished() -> bool:
        b_started_early()
        return job_status(devcluster, namespace, "b").get("status") in ("SUCCEEDED", "FAILED")

    wait_for(finished, timeout=180, interval=0.2, what="array b to finish")
    assert job_status(devcluster, namespace, "a")["status"] == "SUCCEEDED"
    assert job_status(devcluster, namespace, "b")["status"] == "SUCCEEDED"


def test_aws_array_job_workflow_submitted_up_front(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    """AWS User Guide "Example of an array job workflow": JobA, array JobB that depends on JobA,
    and JobC that depends N_TO_N on JobB, all submitted at once. JobC's children wait for JobB's
    (which do not exist until JobA is done) instead of failing."""
    _, queue = environment(devcluster, namespace, max_vcpus=32, nodes=2)
    apply(
        devcluster,
        job_definition("d", namespace),
        batch_job("job-a", namespace, queue, "d", delay="3s"),
        batch_job("job-b", namespace, queue, "d", arrayProperties={"size": 4}, dependsOn=[{"jobId": "job-a"}]),
        batch_job("job-c", namespace, queue, "d", arrayProperties={"size": 4},
                  dependsOn=[{"jobId": "job-b", "type": "N_TO_N"}]),
    )  # fmt: skip

    for name in ("job-a", "job-b", "job-c"):
        status = wait_status(devcluster, namespace, name, "SUCCEEDED", "FAILED", timeout=120)
        assert status["status"] == "SUCCEEDED", (name, status.get("statusReason"))


def test_n_to_n_on_an_array_that_fails_before_spawning(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    _, queue = environment(devcluster, namespace, max_vcpus=32, nodes=1)
    apply(
        devcluster,
        job_definition("d", namespace),
        batch_job("job-a", namespace, queue, "d", exit_code="1"),
        batch_job("job-b", namespace, queue, "d", arrayProperties={"size": 3}, dependsOn=[{"jobId": "job-a"}]),
        batch_job("job-c", namespace, queue, "d", arrayProperties={"size": 3},
                  dependsOn=[{"jobId": "job-b", "type": "N_TO_N"}]),
    )  # fmt: skip

    assert wait_status(devcluster, namespace, "job-b", "FAILED", "SUCCEEDED")["statusReason"] == (
        "Dependent Job failed"
    )
    c = wait_status(devcluster, namespace, "job-c", "FAILED", "SUCCEEDED")
    assert c["status"] == "FAILED"
    assert c["arrayProperties"]["children"]["states"] == {"FAILED": "0-2"}
    assert {e["reason"] for e in c["arrayProperties"]["children"]["lastExits"].values()} == {
        "Dependent Job failed"
    }


def test_a_job_depending_on_one_array_child(devcluster: DevCluster, operator: object, namespace: str) -> None:
    """dependsOn "arr:<index>" (AWS child job id "<job id>:<index>"), by name and by uid: the
    dependent follows that child only."""
    _, queue = environment(devcluster, namespace, max_vcpus=32, nodes=2)
    apply(
        devcluster,
        job_definition("d", namespace),
        batch_job("arr", namespace, queue, "d", delay="2s", arrayProperties={"size": 3},
                  annotations={"kwok.batchyard.io/exit-code-index-2": "1"}),
        batch_job("on-good-child", namespace, queue, "d", dependsOn=[{"jobId": "arr:1"}]),
        batch_job("on-bad-child", namespace, queue, "d", dependsOn=[{"jobId": "arr:2"}]),
    )  # fmt: skip
    uid = get(devcluster, "batchjob", "arr", namespace)["metadata"]["uid"]
    apply(devcluster, batch_job("on-child-by-uid", namespace, queue, "d", dependsOn=[{"jobId": f"{uid}:0"}]))

    good = wait_status(devcluster, namespace, "on-good-child", "SUCCEEDED", "FAILED", timeout=120)
    assert good["status"] == "SUCCEEDED"
    assert (
        wait_status(devcluster, namespace, "on-child-by-uid", "SUCCEEDED", "FAILED")["status"] == "SUCCEEDED"
    )
    bad = wait_status(devcluster, namespace, "on-bad-child", "SUCCEEDED", "FAILED")
    assert (bad["status"], bad["statusReason"]) == ("FAILED", "Dependent Job failed")
    assert not bad.get("attempts")
    arr = wait_status(devcluster, namespace, "arr", "SUCCEEDED", "FAILED")
    assert arr["status"] == "FAILED"  # child 2 failed, yet the jobs on children 0 and 1 ran


def _in_ranges(index: int, ranges: str) -> bool:
    for part in filter(None, ranges.split(",")):
        lo, _, hi = part.partition("-")
        if int(lo) <= index <= int(hi or lo):
            return True
    return False


def test_chain_where_the_first_fails(devcluster: DevCluster, operator: object, namespace: str) -> None:
    _, queue = environment(devcluster, namespace)
    apply(devcluster, job_definition("d", namespace))
    apply(
        devcluster,
        batch_job("c", namespace, queue, "d", dependsOn=[{"jobId": "b"}]),  # submitted first: honoured
        batch_job("b", namespace, queue, "d", dependsOn=[{"jobId": "a"}]),
        batch_job("a", namespace, queue, "d", exit_code="1"),
    )

    assert wait_status(devcluster, namespace, "a", "FAILED", "SUCCEEDED")["status"] == "FAILED"
    for name in ("b", "c"):
        status = wait_status(devcluster, namespace, name, "FAILED", "SUCCEEDED")
        assert status["status"] == "FAILED"
        assert status["statusReason"] == "Dependent Job failed"
        assert not status.get("attempts")


def children_states(cluster: DevCluster, namespace: str, name: str) -> dict[str, str]:
    states: dict[str, str] = (
        job_status(cluster, namespace, name).get("arrayProperties", {}).get("children", {}).get("states", {})
    )
    return states


def test_cancelling_one_child_fails_the_parent_when_all_are_done(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    # The compute environment starts DISABLED, so child 9 is surely still RUNNABLE when the
    # cancel lands (AWS: a child that has not started can be cancelled; a started one can't),
    # however slow the machine; it is enabled once the cancel took effect.
    ce, queue = f"{namespace}-ce", f"{namespace}-q"
    apply(devcluster, compute_environment(ce, 2, state="DISABLED"), job_queue(queue, [ce]))
    ce_nodes(devcluster, ce, 1)
    apply(devcluster, job_definition("d", namespace))
    apply(devcluster, batch_job("arr", namespace, queue, "d", delay="1s", arrayProperties={"size": 10}))
    wait_for(lambda: children_states(devcluster, namespace, "arr") == {"RUNNABLE": "0-9"},
             what="the ten children RUNNABLE")  # fmt: skip
    batchyard(devcluster, "cancel", "arr:9", "--reason", "skip nine", "-n", namespace)
    wait_for(lambda: children_states(devcluster, namespace, "arr").get("FAILED") == "9",
             what="child 9 cancelled")  # fmt: skip
    devcluster.kubectl("patch", "computeenvironment", ce, "--type", "merge",
                       "-p", json.dumps({"spec": {"state": "ENABLED"}}))  # fmt: skip

    status = wait_status(devcluster, namespace, "arr", "SUCCEEDED", "FAILED", timeout=120)

    assert status["status"] == "FAILED"
    assert status["arrayProperties"]["children"]["states"] == {"SUCCEEDED": "0-8", "FAILED": "9"}
    assert status["arrayProperties"]["children"]["lastExits"]["9"]["reason"] == "skip nine"
    assert get(devcluster, "batchjob", "arr", namespace)["metadata"]["name"] == "arr"


def test_terminating_the_parent_stops_every_child(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    _, queue = environment(devcluster, namespace, max_vcpus=4, nodes=1)
    apply(devcluster, job_definition("d", namespace))
    apply(devcluster, batch_job("arr", namespace, queue, "d", exit_code=None, arrayProperties={"size": 6}))
    wait_for(lambda: len(pods(devcluster, namespace)) == 4, what="four children to run")

    batchyard(devcluster, "terminate", "arr", "--reason", "stop the lot", "-n", namespace)
    status = wait_status(devcluster, namespace, "arr", "FAILED")

    assert status["statusReason"] == "stop the lot"
    assert status["isTerminated"] is True
    assert status["arrayProperties"]["statusSummary"]["FAILED"] == 6
    wait_for(lambda: not pods(devcluster, namespace), what="every child's pod to be stopped")
