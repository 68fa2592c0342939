"""Job lifecycle against the real control plane: what a user sees with kubectl."""

from __future__ import annotations

import json

import pytest
from batch import (
    apply,
    batch_job,
    ce_nodes,
    compute_environment,
    environment,
    events,
    get,
    job_definition,
    job_queue,
    job_status,
    pods,
    wait_status,
)
from waiting import wait_for

from batchyard.devcluster import DevCluster, node_manifest

pytestmark = pytest.mark.cluster


def test_exit_zero_succeeds_with_one_attempt(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    _, queue = environment(devcluster, namespace)
    apply(devcluster, job_definition("hello", namespace), batch_job("j", namespace, queue, "hello"))

    status = wait_status(devcluster, namespace, "j", "SUCCEEDED", "FAILED")

    assert status["status"] == "SUCCEEDED"
    assert len(status["attempts"]) == 1
    attempt = status["attempts"][0]
    assert attempt["exitCode"] == 0
    assert status["createdAt"] <= status["startedAt"] <= status["stoppedAt"]
    assert attempt["startedAt"] <= attempt["stoppedAt"]
    assert status["jobDefinitionRevision"] == 1
    wait_for(lambda: not pods(devcluster, namespace), what="the finished pod to be deleted")
    reasons = {e["reason"] for e in events(devcluster, namespace, "j")}
    # Issue 14: the routine state changes get no Event by default (BATCHYARD_ROUTINE_EVENTS);
    # status and its conditions carry them.
    assert not {"Submitted", "Pending", "Runnable", "Starting", "Running", "Succeeded"} & reasons


RETRY_137 = {
    "attempts": 3,
    "evaluateOnExit": [{"onExitCode": "137", "action": "RETRY"}, {"onReason": "*", "action": "EXIT"}],
}


@pytest.mark.parametrize(
    ("codes", "final", "attempts", "reason"),
    [
        pytest.param("137,0", "SUCCEEDED", 2, None, id="137 is retried, then exit 0 succeeds"),
        pytest.param(
            "1", "FAILED", 1, "Essential container in task exited", id="exit 1 matches EXIT: no retry"
        ),
        pytest.param("137", "FAILED", 3, "Essential container in task exited", id="attempts exhausted"),
    ],
)
def test_retry_strategy_decides_by_exit_code(
    devcluster: DevCluster, operator: object, namespace: str, codes: str, final: str, attempts: int,
    reason: str | None,
) -> None:  # fmt: skip
    _, queue = environment(devcluster, namespace)
    apply(
        devcluster,
        job_definition("retry", namespace, retryStrategy=RETRY_137),
        batch_job("j", namespace, queue, "retry", exit_code=codes),
    )

    status = wait_status(devcluster, namespace, "j", "SUCCEEDED", "FAILED", timeout=90)

    assert status["status"] == final
    assert [a["attempt"] for a in status["attempts"]] == list(range(1, attempts + 1))
    expected_codes = [int(c) for c in codes.split(",")]
    for a in status["attempts"]:
        assert a["exitCode"] == expected_codes[min(a["attempt"], len(expected_codes)) - 1]
        assert a["podName"].endswith(f"-a{a['attempt']}")
    if reason is not None:
        assert status["statusReason"] == reason
        assert status["attempts"][-1]["statusReason"] == reason
    if attempts > 1:
        assert any(e["reason"] == "Retrying" for e in events(devcluster, namespace, "j"))


def test_timeout_fails_the_attempt_without_retry(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    _, queue = environment(devcluster, namespace)
    apply(
        devcluster,
        job_definition(
            "slow", namespace, timeout={"attemptDurationSeconds": 60}, retryStrategy={"attempts": 3}
        ),
        batch_job("j", namespace, queue, "slow", exit_code=None),  # runs until stopped
    )
    running = wait_status(devcluster, namespace, "j", "RUNNING")
    pod_name = running["attempts"][0]["podName"]

    status = wait_status(devcluster, namespace, "j", "SUCCEEDED", "FAILED", timeout=120)

    assert status["status"] == "FAILED"
    assert status["statusReason"] == "Job attempt duration exceeded timeout"
    assert len(status["attempts"]) == 1  # timeouts are not retried
    assert status["attempts"][0]["statusReason"] == "Job attempt duration exceeded timeout"
    wait_for(lambda: not any(p["metadata"]["name"] == pod_name for p in pods(devcluster, namespace)),
             what="the timed-out pod to be stopped")  # fmt: skip


def test_cancel_runnable_fails_with_the_users_reason(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    # A queue whose only compute environment is DISABLED: the job waits in RUNNABLE.
    ce, queue = f"{namespace}-off", f"{namespace}-q"
    apply(devcluster, compute_environment(ce, state="DISABLED"), job_queue(queue, [ce]))
    apply(devcluster, job_definition("d", namespace), batch_job("j", namespace, queue, "d"))
    wait_status(devcluster, namespace, "j", "RUNNABLE")

    devcluster.kubectl("patch", "batchjob", "j", "-n", namespace, "--type", "merge",
                       "-p", json.dumps({"spec": {"cancel": {"reason": "not needed any more"}}}))  # fmt: skip
    status = wait_status(devcluster, namespace, "j", "FAILED")

    assert status["statusReason"] == "not needed any more"
    assert status["isCancelled"] is True
    assert not status.get("attempts")


def test_cancel_running_is_a_no_op_and_terminate_stops_it(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    _, queue = environment(devcluster, namespace)
    apply(devcluster, job_definition("d", namespace), batch_job("j", namespace, queue, "d", exit_code=None))
    running = wait_status(devcluster, namespace, "j", "RUNNING")
    pod_name = running["attempts"][0]["podName"]

    devcluster.kubectl("patch", "batchjob", "j", "-n", namespace, "--type", "merge",
                       "-p", json.dumps({"spec": {"cancel": {"reason": "too late"}}}))  # fmt: skip
    wait_for(lambda: any(e["reason"] == "CancelIgnored" for e in events(devcluster, namespace, "j")),
             what="the ignored cancel to be reported")  # fmt: skip
    assert job_status(devcluster, namespace, "j")["status"] == "RUNNING"

    devcluster.kubectl("patch", "batchjob", "j", "-n", namespace, "--type", "merge",
                       "-p", json.dumps({"spec": {"terminate": {"reason": "operator says stop"}}}))  # fmt: skip
    status = wait_status(devcluster, namespace, "j", "FAILED")

    assert status["statusReason"] == "operator says stop"
    assert status["isTerminated"] is True
    assert status["attempts"][0]["statusReason"] == "operator says stop"
    wait_for(lambda: not any(p["metadata"]["name"] == pod_name for p in pods(devcluster, namespace)),
             what="the terminated job's pod to be gone")  # fmt: skip


def test_parameters_overrides_and_batch_environment_reach_the_pod(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    ce, queue = environment(devcluster, namespace)
    jd = job_definition(
        "params", namespace,
        parameters={"greeting": "hello", "target": "world"},
        container={"command": ["echo", "Ref::greeting", "Ref::target"],
                   "environment": [{"name": "FROM_DEFINITION", "value": "d"}]},
    )  # fmt: skip
    job = batch_job(
        "j", namespace, queue, "params", exit_code=None,
        parameters={"target": "batchyard"},
        containerOverrides={"environment": [{"name": "FROM_OVERRIDE", "value": "o"}]},
    )  # fmt: skip
    apply(devcluster, jd, job)
    status = wait_status(devcluster, namespace, "j", "RUNNING")
    pod = get(devcluster, "pod", status["attempts"][0]["podName"], namespace)

    container = pod["spec"]["containers"][0]
    # AWS: containerProperties.command is Docker's CMD: the container's args (ENTRYPOINT stays).
    assert container["args"] == ["echo", "hello", "batchyard"]
    assert "command" not in container
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FROM_DEFINITION"] == "d"
    assert env["FROM_OVERRIDE"] == "o"
    assert env["AWS_BATCH_JOB_ID"] == status["jobId"]
    assert env["AWS_BATCH_JOB_ATTEMPT"] == "1"
    assert env["AWS_BATCH_JQ_NAME"] == queue
    assert env["AWS_BATCH_CE_NAME"] == ce
    assert "AWS_BATCH_JOB_ARRAY_INDEX" not in env
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 30
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("BatchJob", "j", status["jobId"])
    assert pod["spec"]["nodeSelector"]["batchyard.io/compute-environment"] == ce


def test_gpu_job_requests_gpus_and_runs_on_a_gpu_node(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    ce, queue = environment(devcluster, namespace, nodes=0)
    ce_nodes(devcluster, ce, 1, cpu="8")  # a CPU node first: the GPU job must not go there
    gpu_node = f"{ce}-gpu"
    taints = [
        {"key": "batchyard.io/compute-environment", "value": ce, "effect": e}
        for e in ("NoSchedule", "NoExecute")
    ]
    taints.append({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"})
    devcluster.add_nodes([node_manifest(gpu_node, cpu="16", memory="64Gi", gpus=4,
                                        labels={"batchyard.io/compute-environment": ce}, taints=taints)])  # fmt: skip
    jd = job_definition("gpu", namespace, container={"resourceRequirements": [
        {"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "2048"}, {"type": "GPU", "value": "2"}]})  # fmt: skip
    apply(devcluster, jd, batch_job("j", namespace, queue, "gpu", exit_code=None))

    status = wait_status(devcluster, namespace, "j", "RUNNING")
    pod = get(devcluster, "pod", status["attempts"][0]["podName"], namespace)
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "2"
    assert pod["spec"]["nodeName"] == gpu_node
    assert status["attempts"][0]["nodeName"] == gpu_node


@pytest.mark.parametrize(
    ("queue_exists", "definition_exists", "reason"),
    [
        pytest.param(False, True, "JobQueue nowhere does not exist", id="missing queue"),
        pytest.param(
            True, False, "JobDefinition ghost does not exist in the job's namespace", id="missing definition"
        ),
    ],
)
def test_missing_queue_or_definition_fails_with_a_clear_reason(
    devcluster: DevCluster, operator: object, namespace: str, queue_exists: bool, definition_exists: bool,
    reason: str,
) -> None:  # fmt: skip
    _, queue = environment(devcluster, namespace, nodes=0)
    apply(devcluster, job_definition("real", namespace))
    job = batch_job(
        "j", namespace, queue if queue_exists else "nowhere", "real" if definition_exists else "ghost"
    )
    apply(devcluster, job)

    status = wait_status(devcluster, namespace, "j", "FAILED", timeout=30)

    assert reason in status["statusReason"]
    assert not status.get("attempts")


def test_restarted_operator_creates_no_second_pod(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    """A second operator started mid-run (as after a crash) adopts the running attempts."""
    from batchyard.devcluster.operator import OperatorThread

    _, queue = environment(devcluster, namespace, max_vcpus=64, nodes=2)
    apply(devcluster, job_definition("d", namespace))
    apply(devcluster, *[batch_job(f"j{i}", namespace, queue, "d", exit_code=None) for i in range(5)])
    for i in range(5):
        wait_status(devcluster, namespace, f"j{i}", "RUNNING")
    before = sorted(p["metadata"]["name"] for p in pods(devcluster, namespace))

    second = OperatorThread(devcluster.kubeconfig).start()
    try:
        wait_for(lambda: second.controller.cycles > 3, what="the second operator to run a few cycles")
        after = sorted(p["metadata"]["name"] for p in pods(devcluster, namespace))
        assert after == before
        assert len(after) == 5
        for i in range(5):
            assert len(job_status(devcluster, namespace, f"j{i}")["attempts"]) == 1
    finally:
        second.stop()


def test_definition_edits_make_revisions_and_jobs_keep_theirs(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    _, queue = environment(devcluster, namespace)
    apply(devcluster, job_definition("jd", namespace, container={"command": ["echo", "one"]}))
    apply(devcluster, batch_job("first", namespace, queue, "jd", exit_code=None))
    first = wait_status(devcluster, namespace, "first", "RUNNING")
    assert first["jobDefinitionRevision"] == 1

    apply(devcluster, job_definition("jd", namespace, container={"command": ["echo", "two"]}))
    wait_for(
        lambda: (
            (get(devcluster, "jobdefinition", "jd", namespace).get("status") or {}).get("latestRevision") == 2
        ),
        what="revision 2 to be recorded",
    )
    apply(
        devcluster,
        batch_job("second", namespace, queue, "jd", exit_code=None),
        batch_job("pinned", namespace, queue, "jd:1", exit_code=None),
    )
    second = wait_status(devcluster, namespace, "second", "RUNNING")
    pinned = wait_status(devcluster, namespace, "pinned", "RUNNING")

    def command(status: dict[str, object]) -> list[str]:
        attempts = status["attempts"]
        assert isinstance(attempts, list)
        result: list[str] = get(devcluster, "pod", attempts[0]["podName"], namespace)["spec"]["containers"][
            0
        ]["args"]
        return result

    assert second["jobDefinitionRevision"] == 2
    assert command(second) == ["echo", "two"]
    assert pinned["jobDefinitionRevision"] == 1
    assert command(pinned) == ["echo", "one"]
    # The running job still runs revision 1: a later edit never changes a submitted job.
    assert job_status(devcluster, namespace, "first")["jobDefinitionRevision"] == 1
    assert command(first) == ["echo", "one"]

    # Revision 1 made INACTIVE: a new job naming it explicitly is refused with a reason.
    jd = job_definition("jd", namespace, container={"command": ["echo", "two"]})
    jd["spec"]["inactiveRevisions"] = [1]
    apply(devcluster, jd)
    wait_for(
        lambda: (
            get(devcluster, "jobdefinition", "jd", namespace)["status"]["revisions"][0]["state"] == "INACTIVE"
        ),
        what="revision 1 to become INACTIVE",
    )
    apply(devcluster, batch_job("late", namespace, queue, "jd:1"))
    late = wait_status(devcluster, namespace, "late", "FAILED")
    assert "jd:1 is INACTIVE" in late["statusReason"]


def test_deleting_a_running_job_stops_its_pod(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    _, queue = environment(devcluster, namespace)
    apply(devcluster, job_definition("d", namespace), batch_job("j", namespace, queue, "d", exit_code=None))
    wait_status(devcluster, namespace, "j", "RUNNING")
    assert len(pods(devcluster, namespace)) == 1

    devcluster.kubectl("delete", "batchjob", "j", "-n", namespace, "--wait=false")

    wait_for(lambda: not pods(devcluster, namespace), what="the deleted job's pod to be gone")


def test_deleting_a_queue_terminates_its_jobs(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    _, queue = environment(devcluster, namespace)
    apply(devcluster, job_definition("d", namespace), batch_job("j", namespace, queue, "d", exit_code=None))
    wait_status(devcluster, namespace, "j", "RUNNING")

    devcluster.kubectl("delete", "jobqueue", queue)
    status = wait_status(devcluster, namespace, "j", "FAILED")

    # AWS DeleteJobQueue: "All jobs in the queue are eventually terminated".
    assert status["statusReason"] == f"JobQueue {queue} was deleted"
    assert status["isTerminated"] is True
    wait_for(lambda: not pods(devcluster, namespace), what="the job's pod to be stopped")


def test_multinode_jobs_wait_with_a_reason_on_unmanaged_compute_environments(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    # AWS "Compute environment considerations": "Multi-node parallel jobs aren't supported on
    # UNMANAGED compute environments" (the test environment is UNMANAGED, with free nodes).
    # Multi-node jobs themselves run: tests/cluster/test_multinode.py.
    _, queue = environment(devcluster, namespace, nodes=2)
    mnp = {
        "apiVersion": "batchyard.io/v1alpha1",
        "kind": "JobDefinition",
        "metadata": {"name": "mpi", "namespace": namespace},
        "spec": {
            "type": "multinode",
            "nodeProperties": {
                "numNodes": 2,
                "mainNode": 0,
                "nodeRangeProperties": [
                    {
                        "targetNodes": "0:",
                        "eksProperties": {
                            "podProperties": {
                                "containers": [
                                    {
                                        "image": "busybox",
                                        "resources": {"limits": {"cpu": "1", "memory": "512Mi"}},
                                    }
                                ]
                            }
                        },
                    }
                ],
            },
        },
    }
    apply(devcluster, mnp, batch_job("j", namespace, queue, "mpi"))

    status = wait_for(
        lambda: (s := job_status(devcluster, namespace, "j")).get("statusReason") and s,
        what="the multi-node job to say why it waits",
    )

    assert status["status"] == "RUNNABLE"
    assert "aren't supported on UNMANAGED compute environments" in status["statusReason"]
    assert not pods(devcluster, namespace)


# AWS "Use Amazon EC2 Spot best practices": retry when the host went away, exit otherwise.
SPOT_RECIPE = {
    "attempts": 3,
    "evaluateOnExit": [
        {"onStatusReason": "Host EC2*", "action": "RETRY"},
        {"onReason": "*", "action": "EXIT"},
    ],
}


def test_a_job_whose_node_vanishes_is_retried_by_the_spot_recipe(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    # Two nodes: the first attempt's node is deleted under it (like a reclaimed Spot instance);
    # the pod garbage collector removes its pod, the attempt reports "Host EC2 (node <name>)
    # terminated.", and the Spot recipe retries it on the other node.
    _, queue = environment(devcluster, namespace, nodes=2)
    apply(
        devcluster,
        job_definition("spot", namespace, retryStrategy=SPOT_RECIPE),
        batch_job("j", namespace, queue, "spot", exit_code=None),  # runs until its pod goes
    )
    running = wait_status(devcluster, namespace, "j", "RUNNING", timeout=60)
    node = running["attempts"][0]["nodeName"]
    assert node

    devcluster.kubectl("delete", "node", node, "--wait=false")

    status = wait_for(
        lambda: (
            (s := job_status(devcluster, namespace, "j")).get("status") == "RUNNING"
            and len(s.get("attempts") or []) == 2
            and s
        ),
        timeout=150,
        what="the job to run its second attempt after its node was deleted",
    )
    first, second = status["attempts"]
    assert first["statusReason"] == f"Host EC2 (node {node}) terminated."
    assert first["stoppedAt"] >= first["startedAt"]
    assert second["nodeName"] != node
