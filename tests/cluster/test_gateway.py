"""The AWS Batch API gateway with the real boto3 and AWS CLI, the real operator, the real API server.

Pods end as the kwok exit stage says: the AWS API has no annotations, so the tests use what a
user has, job tags with propagateTags (Batchyard copies propagated tags to the pod as
annotations, and the kwok stage reads `kwok.batchyard.io/*` annotations).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from batch import ce_nodes
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from gateway_support import REGION, GatewayProcess, Key, aws_cli, client, make_key, start_gateway
from waiting import wait_for

from batchyard.devcluster import DevCluster
from batchyard.gateway.mapping import k8s_name

pytestmark = pytest.mark.cluster

DONE = ("SUCCEEDED", "FAILED")


@pytest.fixture(scope="module")
def gateway(
    operator: object, crds_installed: DevCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    yield from start_gateway(crds_installed, tmp_path_factory.mktemp("gateway"))


@pytest.fixture
def key(devcluster: DevCluster, gateway: GatewayProcess, namespace: str) -> Key:
    k = make_key(devcluster, namespace)
    # The gateway learns keys from its Secret watch: wait until it answers for this one.
    batch = client(gateway.url, k)
    wait_for(lambda: _accepted(batch), timeout=30, what="the gateway to know the new key")
    return k


def _accepted(batch: Any) -> bool:
    try:
        batch.describe_jobs(jobs=[])
        return True
    except ClientError:
        return False


def kwok_tags(exit_code: str = "0", delay: str = "300ms") -> dict[str, Any]:
    return {
        "tags": {"kwok.batchyard.io/exit-code": exit_code, "kwok.batchyard.io/delay": delay},
        "propagateTags": True,
    }


def aws_environment(batch: Any, devcluster: DevCluster, namespace: str, state: str = "ENABLED") -> str:
    """CreateComputeEnvironment + CreateJobQueue through the API, nodes for the CE; the queue name."""
    ce, queue = f"{namespace}-ce-{state.lower()}", f"{namespace}-q-{state.lower()}"
    batch.create_compute_environment(
        computeEnvironmentName=ce, type="UNMANAGED", state=state, unmanagedvCpus=16
    )
    batch.create_job_queue(
        jobQueueName=queue,
        priority=1,
        state="ENABLED",
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
    )
    if state == "ENABLED":
        ce_nodes(devcluster, ce)
    return queue


def register(
    batch: Any, name: str = "hello", command: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    got: dict[str, Any] = batch.register_job_definition(
        jobDefinitionName=name,
        type="container",
        containerProperties={
            "image": "busybox:1.36",
            "command": command or ["echo", "hello"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "256"}],
        },
        **extra,
    )
    return got


def describe(batch: Any, job_id: str) -> dict[str, Any]:
    jobs = batch.describe_jobs(jobs=[job_id])["jobs"]
    assert len(jobs) == 1, jobs
    job: dict[str, Any] = jobs[0]
    return job


def wait_job(batch: Any, job_id: str, *states: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(
        lambda: (j := describe(batch, job_id))["status"] in states and j,
        timeout=timeout,
        what=f"job {job_id} to reach {states}",
    )


def batchjobs(devcluster: DevCluster, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        devcluster.kubectl("get", "batchjobs", "-n", namespace, "-o", "json").stdout
    )["items"]
    return items


# --- the User Guide workflow ------------------------------------------------------------------------


def test_user_guide_workflow_with_boto3(
    devcluster: DevCluster, gateway: GatewayProcess, namespace: str, key: Key
) -> None:
    batch = client(gateway.url, key)
    queue = aws_environment(batch, devcluster, namespace)
    ces = batch.describe_compute_environments(computeEnvironments=[f"{namespace}-ce-enabled"])[
        "computeEnvironments"
    ]
    assert (
        ces[0]["computeEnvironmentArn"]
        == f"arn:aws:batch:{REGION}:{namespace}:compute-environment/{namespace}-ce-enabled"
    )
    jd = register(batch)
    assert jd["revision"] == 1
    assert jd["jobDefinitionArn"] == f"arn:aws:batch:{REGION}:{namespace}:job-definition/hello:1"

    submitted = batch.submit_job(jobName="Hello_World", jobQueue=queue, jobDefinition="hello", **kwok_tags())
    assert submitted["ResponseMetadata"]["RequestId"]
    job = wait_job(batch, submitted["jobId"], *DONE)

    assert job["status"] == "SUCCEEDED"
    assert job["jobName"] == "Hello_World"
    assert job["jobArn"] == f"arn:aws:batch:{REGION}:{namespace}:job/{submitted['jobId']}"
    assert job["jobDefinition"].endswith("job-definition/hello:1")
    assert isinstance(job["createdAt"], int) and job["createdAt"] <= job["startedAt"] <= job["stoppedAt"]
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [0]
    # jobId is the BatchJob's uid; the AWS name is kept in spec.jobName, the object name is valid.
    (obj,) = batchjobs(devcluster, namespace)
    assert obj["metadata"]["uid"] == submitted["jobId"]
    assert obj["spec"]["jobName"] == "Hello_World" and obj["metadata"]["name"].startswith("hello-world-")


def test_a_retried_job_shows_its_attempts(
    devcluster: DevCluster, gateway: GatewayProcess, namespace: str, key: Key
) -> None:
    batch = client(gateway.url, key)
    queue = aws_environment(batch, devcluster, namespace)
    register(
        batch, retryStrategy={"attempts": 3, "evaluateOnExit": [{"onExitCode": "137", "action": "RETRY"}]}
    )
    job_id = batch.submit_job(jobName="flaky", jobQueue=queue, jobDefinition="hello", **kwok_tags("137,0"))[
        "jobId"
    ]
    job = wait_job(batch, job_id, *DONE, timeout=90)
    assert job["status"] == "SUCCEEDED"
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [137, 0]
    # The effective retry strategy (the definition's), and the pinned definition's container.
    assert job["retryStrategy"]["attempts"] == 3
    assert (job["container"]["image"], job["container"]["exitCode"]) == ("busybox:1.36", 0)


def test_an_eks_job_has_eks_properties_and_eks_attempts(
    devcluster: DevCluster, gateway: GatewayProcess, namespace: str, key: Key
) -> None:
    batch = client(gateway.url, key)
    queue = aws_environment(batch, devcluster, namespace)
    batch.register_job_definition(
        jobDefinitionName="eks_hello",
        type="container",
        eksProperties={"podProperties": {"containers": [
            {"name": "main", "image": "busybox:1.36", "command": ["echo", "hi"],
             "resources": {"limits": {"cpu": "1", "memory": "256Mi"}}},
        ]}},
    )  # fmt: skip
    job_id = batch.submit_job(
        jobName="eks_hello",
        jobQueue=queue,
        jobDefinition="eks_hello",
        eksPropertiesOverride={
            "podProperties": {"containers": [{"name": "main", "command": ["echo", "bye"]}]}
        },
        **kwok_tags(),
    )["jobId"]
    job = wait_job(batch, job_id, *DONE, timeout=90)
    assert job["status"] == "SUCCEEDED"
    (main,) = job["eksProperties"]["podProperties"]["containers"]
    assert (main["image"], main["command"]) == ("busybox:1.36", ["echo", "bye"])
    (attempt,) = job["eksAttempts"]
    assert attempt["podNamespace"] == namespace and attempt["podName"] and attempt["nodeName"]
    assert [c.get("exitCode") for c in attempt["containers"]] == [0]
    assert job["eksProperties"]["podProperties"]["podName"] == attempt["podName"]


def test_array_of_ten_with_status_summary_and_children(
    devcluster: DevCluster, gateway: GatewayProcess, namespace: str, key: Key
) -> None:
    batch = client(gateway.url, key)
    queue = aws_environment(batch, devcluster, namespace)
    register(batch)
    tags = kwok_tags()
    tags["tags"]["kwok.batchyard.io/exit-code-index-7"] = "3"
    parent = batch.submit_job(
        jobName="arr", jobQueue=queue, jobDefinition="hello", arrayProperties={"size": 10}, **tags
    )["jobId"]
    # A job that depends on the array fails when a child fails (AWS).
    dependent = batch.submit_job(
        jobName="after", jobQueue=queue, jobDefinition="hello", dependsOn=[{"jobId": parent}], **kwok_tags()
    )["jobId"]

    job = wait_job(batch, parent, *DONE, timeout=90)
    assert job["status"] == "FAILED"
    assert job["arrayProperties"]["size"] == 10
    summary = job["arrayProperties"]["statusSummary"]
    assert (summary["SUCCEEDED"], summary["FAILED"]) == (9, 1)
    children = {j["jobId"]: j for j in batch.describe_jobs(jobs=[f"{parent}:{i}" for i in range(10)])["jobs"]}
    assert children[f"{parent}:7"]["status"] == "FAILED"
    assert children[f"{parent}:7"]["attempts"][-1]["container"]["exitCode"] == 3
    # Per child, as AWS: its times and its attempt's log (the failed attempt's pod, kept).
    failed = children[f"{parent}:7"]
    assert 0 < failed["startedAt"] <= failed["stoppedAt"]
    log_stream = failed["attempts"][-1]["container"]["logStreamName"]
    assert log_stream.startswith("pod/") and failed["container"]["logStreamName"] == log_stream
    devcluster.kubectl("get", "-n", namespace, log_stream)  # the pod it names is there
    assert children[f"{parent}:3"]["status"] == "SUCCEEDED" and children[f"{parent}:3"][
        "arrayProperties"
    ] == {"index": 3}
    listed = batch.list_jobs(arrayJobId=parent, jobStatus="SUCCEEDED")["jobSummaryList"]
    assert sorted(j["jobId"] for j in listed) == sorted(f"{parent}:{i}" for i in range(10) if i != 7)
    assert wait_job(batch, dependent, *DONE)["status"] == "FAILED"


def test_n_to_n_between_arrays_and_a_job_depending_on_an_array(
    devcluster: DevCluster, gateway: GatewayProcess, namespace: str, key: Key
) -> None:
    batch = client(gateway.url, key)
    queue = aws_environment(batch, devcluster, namespace)
    register(batch)
    first = batch.submit_job(
        jobName="a", jobQueue=queue, jobDefinition="hello", arrayProperties={"size": 3}, **kwok_tags()
    )["jobId"]
    second = batch.submit_job(
        jobName="b", jobQueue=queue, jobDefinition="hello", arrayProperties={"size": 3},
        dependsOn=[{"jobId": first, "type": "N_TO_N"}], **kwok_tags(),
    )["jobId"]  # fmt: skip
    # A single job depending on the whole array (AWS: it waits for every child).
    after = batch.submit_job(
        jobName="c", jobQueue=queue, jobDefinition="hello", dependsOn=[{"jobId": first}], **kwok_tags()
    )["jobId"]
    assert wait_job(batch, second, *DONE, timeout=90)["status"] == "SUCCEEDED"
    assert describe(batch, first)["stoppedAt"] <= describe(batch, second)["stoppedAt"]
    # N_TO_N, per child: child i of the second array starts after child i of the first stopped
    # (whole seconds: pod times have second precision).
    for i in range(3):
        before, after_i = describe(batch, f"{first}:{i}"), describe(batch, f"{second}:{i}")
        assert after_i["startedAt"] // 1000 >= before["stoppedAt"] // 1000, (before, after_i)
    single = wait_job(batch, after, *DONE, timeout=90)
    assert single["status"] == "SUCCEEDED" and [d["jobId"] for d in single["dependsOn"]] == [first]
    parent = describe(batch, first)
    assert parent["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 3
    # whole seconds: pod times have second precision, the operator's milliseconds
    assert single["startedAt"] // 1000 >= parent["stoppedAt"] // 1000


def test_cancel_runnable_and_terminate_running(
    devcluster: DevCluster, gateway: GatewayProcess, namespace: str, key: Key
) -> None:
    batch = client(gateway.url, key)
    running_queue = aws_environment(batch, devcluster, namespace)
    waiting_queue = aws_environment(batch, devcluster, namespace, state="DISABLED")
    register(batch)
    waiting = batch.submit_job(jobName="waits", jobQueue=waiting_queue, jobDefinition="hello")["jobId"]
    runs = batch.submit_job(jobName="runs", jobQueue=running_queue, jobDefinition="hello")[
        "jobId"
    ]  # no exit code: runs on
    wait_job(batch, waiting, "RUNNABLE")
    wait_job(batch, runs, "RUNNING")

    array = batch.submit_job(
        jobName="arr", jobQueue=waiting_queue, jobDefinition="hello", arrayProperties={"size": 3}
    )["jobId"]
    wait_job(batch, f"{array}:1", "RUNNABLE")
    batch.cancel_job(jobId=f"{array}:1", reason="child not needed")  # spec.childRequests
    batch.cancel_job(jobId=f"{array}:2", reason="this one neither")  # appended, not replacing
    assert [wait_job(batch, f"{array}:{i}", *DONE)["status"] for i in (1, 2)] == ["FAILED", "FAILED"]
    assert describe(batch, f"{array}:0")["status"] == "RUNNABLE"
    batch.cancel_job(jobId=waiting, reason="not needed")
    batch.terminate_job(jobId=runs, reason="stop now")

    cancelled = wait_job(batch, waiting, *DONE)
    assert (cancelled["status"], cancelled["statusReason"], cancelled["isCancelled"]) == (
        "FAILED",
        "not needed",
        True,
    )
    terminated = wait_job(batch, runs, *DONE)
    assert (terminated["status"], terminated["statusReason"], terminated["isTerminated"]) == (
        "FAILED",
        "stop now",
        True,
    )


# --- ListJobs ---------------------------------------------------------------------------------------


def test_list_jobs_filters_and_250_job_pagination(
    devcluster: DevCluster, gateway: GatewayProcess, namespace: str, key: Key
) -> None:
    batch = client(gateway.url, key)
    queue = aws_environment(batch, devcluster, namespace, state="DISABLED")  # jobs stay RUNNABLE
    register(batch, "alpha")
    register(batch, "beta")
    ids = [
        batch.submit_job(jobName=f"bulk-{i}", jobQueue=queue, jobDefinition="alpha")["jobId"]
        for i in range(249)
    ]
    # Kubernetes timestamps have whole seconds: leave a second on each side of the marker.
    time.sleep(1.1)
    marker = int(time.time() * 1000)
    time.sleep(1.1)
    last = batch.submit_job(jobName="Special_One", jobQueue=queue, jobDefinition="beta")["jobId"]
    wait_for(lambda: len(batch.list_jobs(jobQueue=queue, jobStatus="RUNNABLE", maxResults=1000)["jobSummaryList"]) == 250,
             timeout=120, what="250 RUNNABLE jobs")  # fmt: skip

    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"jobQueue": queue, "jobStatus": "RUNNABLE", "maxResults": 100}
        if token:
            kwargs["nextToken"] = token
        got = batch.list_jobs(**kwargs)
        seen += [j["jobId"] for j in got["jobSummaryList"]]
        pages += 1
        token = got.get("nextToken")
        if not token:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 250
    assert set(seen) == {*ids, last}
    # boto3's own paginator follows nextToken the same way.
    paginated = [j["jobId"] for page in batch.get_paginator("list_jobs").paginate(jobQueue=queue, jobStatus="RUNNABLE", PaginationConfig={"PageSize": 60}) for j in page["jobSummaryList"]]  # fmt: skip
    assert sorted(paginated) == sorted(seen)

    def only(flt: dict[str, Any]) -> list[str]:
        return [
            j["jobId"]
            for j in batch.list_jobs(jobQueue=queue, filters=[flt], maxResults=1000)["jobSummaryList"]
        ]

    assert only({"name": "JOB_NAME", "values": ["special_one"]}) == [last]
    assert len(only({"name": "JOB_NAME", "values": ["bulk-1*"]})) == 1 + 10 + 100
    assert only({"name": "JOB_DEFINITION", "values": ["beta"]}) == [last]
    assert only({"name": "AFTER_CREATED_AT", "values": [str(marker)]}) == [last]
    assert last not in only({"name": "BEFORE_CREATED_AT", "values": [str(marker)]})
    assert batch.list_jobs(jobQueue=queue)["jobSummaryList"] == []  # AWS default: RUNNING only


# --- multi-node parallel jobs ------------------------------------------------------------------------


def test_multi_node_job_nodes_in_list_jobs_and_describe_jobs(
    devcluster: DevCluster, gateway: GatewayProcess, namespace: str, key: Key
) -> None:
    """AWS: ListJobs(multiNodeJobId) "lists all nodes that are associated with the specified job";
    a node is `<jobId>#<node>` in DescribeJobs. MNP jobs need a MANAGED compute environment (the
    gateway's kwok provider here); each node asks 3 of an m5.xlarge's 4 vCPUs."""
    batch = client(gateway.url, key)
    ce, queue = f"{namespace}-mnp-ce", f"{namespace}-mnp-q"
    batch.create_compute_environment(
        computeEnvironmentName=ce,
        type="MANAGED",
        state="ENABLED",
        computeResources={"type": "EC2", "minvCpus": 0, "maxvCpus": 8, "instanceTypes": ["m5.xlarge"],
                          "subnets": ["subnet-1"], "instanceRole": "ecsInstanceRole"},
    )  # fmt: skip
    try:
        batch.create_job_queue(
            jobQueueName=queue, priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}]
        )
        rr = [{"type": "VCPU", "value": "3"}, {"type": "MEMORY", "value": "1024"}]
        batch.register_job_definition(
            jobDefinitionName="Mpi_Job",
            type="multinode",
            nodeProperties={
                "numNodes": 2,
                "mainNode": 0,
                "nodeRangeProperties": [
                    {"targetNodes": "0:", "container": {"image": "mpi:1", "command": ["mpirun"],
                                                        "resourceRequirements": rr}}
                ],
            },
        )  # fmt: skip
        # The main node exits 0 when told below; the child runs until the job ends and stops it.
        tags = {"kwok.batchyard.io/exit-code": "0", "kwok.batchyard.io/delay": "600s",
                "kwok.batchyard.io/delay-node-1": "600s"}  # fmt: skip
        job_id = batch.submit_job(
            jobName="Mpi_Run", jobQueue=queue, jobDefinition="Mpi_Job", tags=tags, propagateTags=True
        )["jobId"]

        running = wait_for(
            lambda: len(page := batch.list_jobs(multiNodeJobId=job_id)["jobSummaryList"]) == 2 and page,
            timeout=120,
            what="both nodes RUNNING in ListJobs(multiNodeJobId)",
        )
        assert [(n["jobId"], n["status"], n["nodeProperties"]) for n in running] == [
            (f"{job_id}#0", "RUNNING", {"isMainNode": True, "numNodes": 2, "nodeIndex": 0}),
            (f"{job_id}#1", "RUNNING", {"isMainNode": False, "numNodes": 2, "nodeIndex": 1}),
        ]
        assert running[1]["jobArn"] == f"arn:aws:batch:{REGION}:{namespace}:job/{job_id}#1"
        assert batch.list_jobs(multiNodeJobId=job_id, jobStatus="SUCCEEDED")["jobSummaryList"] == []
        parent, node1 = batch.describe_jobs(jobs=[job_id, f"{job_id}#1", f"{job_id}#7"])["jobs"]
        assert parent["jobId"] == job_id
        assert (parent["nodeProperties"]["numNodes"], parent["nodeProperties"]["mainNode"]) == (2, 0)
        assert parent["nodeProperties"]["nodeRangeProperties"][0]["container"]["image"] == "mpi:1"
        assert (node1["jobId"], node1["status"]) == (f"{job_id}#1", "RUNNING")
        assert node1["nodeDetails"] == {"nodeIndex": 1, "isMainNode": False}
        listed = batch.list_jobs(jobQueue=queue)["jobSummaryList"]
        assert [(j["jobId"], j["nodeProperties"]) for j in listed] == [(job_id, {"numNodes": 2})]
        with pytest.raises(ClientError) as err:
            batch.terminate_job(jobId=f"{job_id}#1", reason="one node")
        assert "multi-node" in str(err.value)

        batch.terminate_job(jobId=job_id, reason="done here")
        wait_job(batch, job_id, "FAILED", timeout=120)
        ended = wait_for(
            lambda: (n := describe(batch, f"{job_id}#0"))["status"] in DONE and n,
            timeout=60,
            what="the main node to end",
        )
        assert ended["nodeDetails"] == {"nodeIndex": 0, "isMainNode": True}
        assert ended["isTerminated"] is True
    finally:
        devcluster.kubectl("delete", "batchjobs", "--all", "-n", namespace, "--wait=false", check=False)
        devcluster.kubectl("delete", "jobqueue", k8s_name(queue), "--wait=false", check=False)
        devcluster.kubectl("delete", "computeenvironment", k8s_name(ce), "--wait=false", check=False)
        devcluster.kubectl(
            "delete",
            "node",
            "-l",
            f"batchyard.io/compute-environment={k8s_name(ce)}",
            "--wait=false",
            check=False,
        )


# --- job definitions and tags -----------------------------------------------------------------------


def test_register_twice_gives_two_revisions_and_deregister_makes_inactive(
    devcluster: DevCluster, gateway: GatewayProcess, namespace: str, key: Key
) -> None:
    batch = client(gateway.url, key)
    first = register(batch, "Etl_Job", ["echo", "one"])
    second = register(batch, "Etl_Job", ["echo", "two"])
    # AWS makes a revision per registration, also of a definition identical to the latest.
    third = register(batch, "Etl_Job", ["echo", "two"])
    assert (first["revision"], second["revision"], third["revision"]) == (1, 2, 3)

    batch.deregister_job_definition(jobDefinition=first["jobDefinitionArn"])

    described = wait_for(
        lambda: (
            (d := batch.describe_job_definitions(jobDefinitionName="Etl_Job")["jobDefinitions"])
            and d[0]["status"] == "INACTIVE"
            and d
        ),
        what="revision 1 to become INACTIVE",
    )
    assert [(d["revision"], d["status"], d["containerProperties"]["command"]) for d in described] == [
        (1, "INACTIVE", ["echo", "one"]),
        (2, "ACTIVE", ["echo", "two"]),
        (3, "ACTIVE", ["echo", "two"]),
    ]
    assert not any("registrationId" in d for d in described), "Batchyard bookkeeping is not AWS output"
    active = batch.describe_job_definitions(jobDefinitionName="Etl_Job", status="ACTIVE")["jobDefinitions"]
    assert [d["revision"] for d in active] == [2, 3]
    assert batch.describe_job_definitions(jobDefinitions=["Etl_Job:2"])["jobDefinitions"][0]["revision"] == 2


def test_tags_round_trip(devcluster: DevCluster, gateway: GatewayProcess, namespace: str, key: Key) -> None:
    batch = client(gateway.url, key)
    queue = aws_environment(batch, devcluster, namespace, state="DISABLED")
    queue_arn = batch.describe_job_queues(jobQueues=[queue])["jobQueues"][0]["jobQueueArn"]
    batch.tag_resource(resourceArn=queue_arn, tags={"team": "data", "cost": "42"})
    batch.untag_resource(resourceArn=queue_arn, tagKeys=["cost"])
    assert batch.list_tags_for_resource(resourceArn=queue_arn)["tags"] == {"team": "data"}

    register(batch)
    job = batch.submit_job(jobName="t", jobQueue=queue, jobDefinition="hello", tags={"a": "1"})
    batch.tag_resource(resourceArn=job["jobArn"], tags={"b": "2"})
    assert batch.list_tags_for_resource(resourceArn=job["jobArn"])["tags"] == {"a": "1", "b": "2"}
    assert describe(batch, job["jobId"])["tags"] == {"a": "1", "b": "2"}


def test_queue_snapshot_and_resource_crud(
    devcluster: DevCluster, gateway: GatewayProcess, namespace: str, key: Key
) -> None:
    batch = client(gateway.url, key)
    policy = batch.create_scheduling_policy(name=f"{namespace}-fair", fairsharePolicy={"shareDecaySeconds": 0, "shareDistribution": [{"shareIdentifier": "a", "weightFactor": 1.0}]})  # fmt: skip
    assert (
        batch.describe_scheduling_policies(arns=[policy["arn"]])["schedulingPolicies"][0]["name"]
        == f"{namespace}-fair"
    )
    cr = batch.create_consumable_resource(consumableResourceName=f"{namespace}-lic", totalQuantity=5)
    assert (
        batch.update_consumable_resource(
            consumableResource=cr["consumableResourceArn"], operation="ADD", quantity=2
        )["totalQuantity"]
        == 7
    )
    assert batch.describe_consumable_resource(consumableResource=f"{namespace}-lic")["totalQuantity"] == 7
    queue = aws_environment(batch, devcluster, namespace, state="DISABLED")
    batch.update_job_queue(jobQueue=queue, priority=7)
    assert batch.describe_job_queues(jobQueues=[queue])["jobQueues"][0]["priority"] == 7
    register(batch)
    ids = [
        batch.submit_job(jobName=f"s{i}", jobQueue=queue, jobDefinition="hello")["jobId"] for i in range(3)
    ]
    snap = wait_for(
        lambda: len((s := batch.get_job_queue_snapshot(jobQueue=queue))["frontOfQueue"]["jobs"]) == 3 and s,
        what="three jobs at the front of the queue",
    )
    assert [j["jobArn"].rsplit("/", 1)[1] for j in snap["frontOfQueue"]["jobs"]] == ids
    needs = {"consumableResourceList": [{"consumableResource": f"{namespace}-lic", "quantity": 3}]}
    holder = batch.submit_job(
        jobName="Needs_Lic", jobQueue=queue, jobDefinition="hello", consumableResourcePropertiesOverride=needs
    )
    by_cr = batch.list_jobs_by_consumable_resource(consumableResource=cr["consumableResourceArn"])["jobs"]
    assert [(j["jobArn"], j["quantity"]) for j in by_cr] == [(holder["jobArn"], 3)]
    with pytest.raises(ClientError, match="must be DISABLED"):
        batch.delete_job_queue(jobQueue=queue)
    batch.delete_consumable_resource(consumableResource=f"{namespace}-lic")
    batch.delete_scheduling_policy(arn=policy["arn"])
    with pytest.raises(ClientError, match="no meaning"):
        batch.list_service_jobs()


# --- the AWS CLI ------------------------------------------------------------------------------------


def test_aws_cli_submit_describe_list(
    devcluster: DevCluster, gateway: GatewayProcess, namespace: str, key: Key
) -> None:
    batch = client(gateway.url, key)
    queue = aws_environment(batch, devcluster, namespace)
    register(batch)
    tags = json.dumps(kwok_tags()["tags"])
    submitted = aws_cli(gateway.url, key, "submit-job", "--job-name", "cli-job", "--job-queue", queue,
                        "--job-definition", "hello", "--tags", tags, "--propagate-tags")  # fmt: skip
    done = wait_for(
        lambda: (
            (j := aws_cli(gateway.url, key, "describe-jobs", "--jobs", submitted["jobId"])["jobs"][0])[
                "status"
            ]
            in DONE
            and j
        ),
        what="the CLI-submitted job to finish",
    )
    assert done["status"] == "SUCCEEDED" and done["jobName"] == "cli-job"
    listed = aws_cli(gateway.url, key, "list-jobs", "--job-queue", queue, "--job-status", "SUCCEEDED")
    assert [j["jobId"] for j in listed["jobSummaryList"]] == [submitted["jobId"]]


# --- authentication, isolation, bad input -----------------------------------------------------------


def raw_request(
    url: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], dict[str, Any]]:
    req = urllib.request.Request(url + path, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"{}")


def signed_headers(
    url: str, path: str, body: bytes, key_id: str, secret: str, amz_date: str | None = None
) -> dict[str, str]:
    """SigV4 headers from botocore's signer; with `amz_date`, signed as of that (old) time."""
    req = AWSRequest(method="POST", url=url + path, data=body, headers={"Content-Type": "application/json"})
    signer = SigV4Auth(Credentials(key_id, secret), "batch", REGION)
    if amz_date is None:
        signer.add_auth(req)
    else:
        req.context["timestamp"] = amz_date
        req.headers["X-Amz-Date"] = amz_date
        canonical = signer.canonical_request(req)
        signature = signer.signature(signer.string_to_sign(req, canonical), req)
        req.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={key_id}/{amz_date[:8]}/{REGION}/batch/aws4_request, "
            f"SignedHeaders={signer.signed_headers(signer.headers_to_sign(req))}, Signature={signature}"
        )
    return dict(req.headers.items())


def test_bad_signatures_get_403_and_write_nothing(
    devcluster: DevCluster, gateway: GatewayProcess, namespace: str, key: Key
) -> None:
    body = json.dumps({"jobName": "x", "jobQueue": "q", "jobDefinition": "d"}).encode()
    path = "/v1/submitjob"
    stale = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 600))
    cases = {
        "unsigned": {"Content-Type": "application/json"},
        "unknown key": signed_headers(gateway.url, path, body, "AKIDNOBODY", "x"),
        "wrong secret": signed_headers(gateway.url, path, body, key.access_key_id, "not-the-secret"),
        "stale date": signed_headers(
            gateway.url, path, body, key.access_key_id, key.secret_access_key, stale
        ),
    }
    answers = {name: raw_request(gateway.url, path, body, headers) for name, headers in cases.items()}
    for name, (status, headers, payload) in answers.items():
        assert status == 403, name
        assert headers.get("x-amzn-RequestId") and headers.get("X-Amzn-ErrorType") == payload["__type"], name
        assert payload["message"], name
    assert answers["unsigned"][2]["__type"] == "MissingAuthenticationTokenException"
    assert answers["unknown key"][2]["__type"] == "UnrecognizedClientException"
    assert answers["wrong secret"][2]["__type"] == "InvalidSignatureException"
    assert "expired" in answers["stale date"][2]["message"]
    # boto3 sees AWS's error codes too.
    with pytest.raises(ClientError) as err:
        client(gateway.url, key, secret="wrong").describe_jobs(jobs=["x"])
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert batchjobs(devcluster, namespace) == []


def test_two_keys_in_two_namespaces_are_isolated(
    devcluster: DevCluster, gateway: GatewayProcess, namespace: str, key: Key
) -> None:
    other_ns = f"{namespace}-b"
    devcluster.kubectl("create", "namespace", other_ns)
    try:
        other_key = make_key(devcluster, other_ns)
        a, b = client(gateway.url, key), client(gateway.url, other_key)
        wait_for(lambda: _accepted(b), timeout=30, what="the second key")
        queue = aws_environment(a, devcluster, namespace, state="DISABLED")
        register(a)
        job_id = a.submit_job(jobName="mine", jobQueue=queue, jobDefinition="hello")["jobId"]
        wait_job(a, job_id, "RUNNABLE")

        assert b.describe_jobs(jobs=[job_id])["jobs"] == []
        assert b.list_jobs(jobQueue=queue, jobStatus="RUNNABLE")["jobSummaryList"] == []
        assert b.describe_job_definitions()["jobDefinitions"] == []
        with pytest.raises(ClientError):
            b.terminate_job(jobId=job_id, reason="not yours")
        with pytest.raises(ClientError):
            b.cancel_job(jobId=job_id, reason="not yours")
        assert describe(a, job_id)["status"] == "RUNNABLE"
        (obj,) = batchjobs(devcluster, namespace)
        assert "terminate" not in obj["spec"] and "cancel" not in obj["spec"]
        # B's submissions land in B's namespace.
        b_job = b.submit_job(jobName="theirs", jobQueue=queue, jobDefinition="hello")["jobId"]
        assert [j["metadata"]["uid"] for j in batchjobs(devcluster, other_ns)] == [b_job]
        assert a.describe_jobs(jobs=[b_job])["jobs"] == []
    finally:
        devcluster.kubectl("delete", "namespace", other_ns, "--wait=false", check=False)


def test_rbac_decides_what_a_key_may_do(
    devcluster: DevCluster, gateway: GatewayProcess, namespace: str
) -> None:
    # A key whose ServiceAccount has no rights on cluster-scoped kinds cannot create a queue.
    k = make_key(devcluster, namespace, cluster_kinds=False)
    batch = client(gateway.url, k)
    wait_for(lambda: _accepted(batch), timeout=30, what="the key")
    with pytest.raises(ClientError) as err:
        batch.create_job_queue(
            jobQueueName=f"{namespace}-nope",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "x"}],
        )
    assert err.value.response["Error"]["Code"] == "AccessDeniedException"
    assert devcluster.kubectl("get", "jobqueue", f"{namespace}-nope", check=False).returncode != 0


def test_malformed_input_is_a_client_exception_naming_the_field(
    devcluster: DevCluster, gateway: GatewayProcess, namespace: str, key: Key
) -> None:
    # boto3 validates locally; turn that off to send what a buggy client would.
    batch = boto3.client(
        "batch", endpoint_url=gateway.url, region_name=REGION, aws_access_key_id=key.access_key_id,
        aws_secret_access_key=key.secret_access_key,
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )  # fmt: skip
    cases = [
        ({"jobName": "j", "jobQueue": "q"}, "jobDefinition"),
        (
            {"jobName": "j", "jobQueue": "q", "jobDefinition": "d", "arrayProperties": {"size": 1}},
            "arrayProperties.size",
        ),
        (
            {"jobName": "j", "jobQueue": "q", "jobDefinition": "d", "retryStrategy": {"attempts": 99}},
            "retryStrategy.attempts",
        ),
        (
            {
                "jobName": "j",
                "jobQueue": "q",
                "jobDefinition": "d",
                "timeout": {"attemptDurationSeconds": "soon"},
            },
            "timeout.attemptDurationSeconds",
        ),
    ]
    path = "/v1/submitjob"
    for params, field in cases:
        with pytest.raises(ClientError) as err:
            batch.submit_job(**params)
        response = err.value.response
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 400, params
        assert response["Error"]["Code"] == "ClientException", params
        assert field in response["Error"]["Message"], (field, response["Error"]["Message"])
    # Unknown fields: botocore cannot even serialize them, so send the body as a buggy client would.
    body = json.dumps({"jobName": "j", "jobQueue": "q", "jobDefinition": "d", "colour": "red"}).encode()
    status, _, payload = raw_request(
        gateway.url,
        path,
        body,
        signed_headers(gateway.url, path, body, key.access_key_id, key.secret_access_key),
    )
    assert (status, payload["__type"]) == (400, "ClientException") and "colour" in payload["message"]
    for body in (b"{not json", b"[1, 2]"):
        status, _, payload = raw_request(
            gateway.url,
            path,
            body,
            signed_headers(gateway.url, path, body, key.access_key_id, key.secret_access_key),
        )
        assert (status, payload["__type"]) == (400, "ClientException")
    assert batchjobs(devcluster, namespace) == []
    assert client(gateway.url, key).describe_jobs(jobs=[])["jobs"] == []  # still serving
    assert "Traceback" not in Path(gateway.log).read_text()


def test_submit_job_over_the_payload_quota_is_refused_and_writes_nothing(
    devcluster: DevCluster, gateway: GatewayProcess, namespace: str, key: Key
) -> None:
    # AWS: "Maximum job payload size (for SubmitJob API operations) 30 KiB" (core.limits, the
    # admission webhook's rule); the gateway refuses it itself, before any write.
    batch = client(gateway.url, key)
    parameters = {f"p{i}": "x" * 4000 for i in range(8)}  # each value within its own 4,096 limit
    with pytest.raises(ClientError) as err:
        batch.submit_job(jobName="too_big", jobQueue="q", jobDefinition="d", parameters=parameters)
    response = err.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "ClientException"
    assert "maximum job payload size of 30 KiB" in response["Error"]["Message"], response["Error"]
    assert "SubmitJob" in response["Error"]["Message"]
    assert batchjobs(devcluster, namespace) == []
    del parameters["p7"]  # 28 KB: within the quota
    job_id = batch.submit_job(jobName="big", jobQueue="q", jobDefinition="d", parameters=parameters)["jobId"]
    assert [j["metadata"]["uid"] for j in batchjobs(devcluster, namespace)] == [job_id]


def test_the_charts_least_privilege_rbac_is_enough_and_no_more(
    devcluster: DevCluster, operator: object, namespace: str, tmp_path: Path
) -> None:
    """The gateway as its own ServiceAccount with exactly the chart's RBAC (not the admin)."""
    from batchyard.devcluster.helm import ensure_helm

    release_ns = f"{namespace}-gw"
    devcluster.kubectl("create", "namespace", release_ns)
    try:
        rendered = subprocess.run(
            [str(ensure_helm(log=lambda _m: None)), "template", "by", str(Path(__file__).parents[2] / "helm" / "batchyard"),
             "--namespace", release_ns, "--set", "gateway.enabled=true",
             "--set", f"gateway.serviceAccounts[0].namespace={namespace},gateway.serviceAccounts[0].name=batch-user"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        docs = [d for d in yaml.safe_load_all(rendered) if d and "gateway" in d["metadata"]["name"]]
        rbac = [
            d
            for d in docs
            if d["kind"] in ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
        ]
        for d in rbac:  # cluster-scoped names are per test, so parallel sessions never collide
            if d["kind"].startswith("Cluster"):
                d["metadata"]["name"] += f"-{namespace}"
            if d["kind"] == "ClusterRoleBinding":
                d["roleRef"]["name"] += f"-{namespace}"
        devcluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in rbac))
        token = devcluster.kubectl("create", "token", "by-batchyard-gateway", "-n", release_ns).stdout.strip()
        kubeconfig = json.loads(devcluster.kubeconfig.read_text())
        kubeconfig["users"] = [{"name": "admin", "user": {"token": token}}]
        (tmp_path / "kubeconfig").write_text(json.dumps(kubeconfig))
        served = make_key(devcluster, namespace, keys_namespace=release_ns)
        unserved = make_key(devcluster, namespace, keys_namespace=release_ns, sa="not-served")

        gen = start_gateway(devcluster, tmp_path, tmp_path / "kubeconfig", secrets_namespace=release_ns)
        gw = next(gen)
        try:
            ok = client(gw.url, served)
            wait_for(lambda: _accepted(ok), timeout=30, what="the served key")
            queue = aws_environment(ok, devcluster, namespace, state="DISABLED")
            register(ok)
            job = ok.submit_job(jobName="rbac", jobQueue=queue, jobDefinition="hello")["jobId"]
            assert wait_job(ok, job, "RUNNABLE")["jobName"] == "rbac"
            # A key whose ServiceAccount the chart does not list: the API server refuses impersonation.
            with pytest.raises(ClientError) as err:
                client(gw.url, unserved).submit_job(jobName="x", jobQueue=queue, jobDefinition="hello")
            assert err.value.response["Error"]["Code"] == "AccessDeniedException"
            assert [j["metadata"]["uid"] for j in batchjobs(devcluster, namespace)] == [job]
        finally:
            gen.close()
    finally:
        devcluster.kubectl("delete", "namespace", release_ns, "--wait=false", check=False)


def test_ec2_only_fields_are_accepted_stored_and_described(
    devcluster: DevCluster, gateway: GatewayProcess, namespace: str, key: Key
) -> None:
    # The README's create-compute-environment line, with the AWS CLI's shorthand syntax.
    ce = f"{namespace}-managed"
    aws_cli(gateway.url, key, "create-compute-environment", "--compute-environment-name", ce, "--type", "MANAGED",
            "--compute-resources", "type=EC2,maxvCpus=16,minvCpus=0,subnets=subnet-1,instanceRole=ecsInstanceRole",
            "--service-role", "arn:aws:iam::123456789012:role/AWSBatchServiceRole")  # fmt: skip
    (detail,) = aws_cli(gateway.url, key, "describe-compute-environments", "--compute-environments", ce)[
        "computeEnvironments"
    ]
    assert detail["computeResources"]["subnets"] == ["subnet-1"]
    assert detail["computeResources"]["instanceRole"] == "ecsInstanceRole"
    assert detail["serviceRole"].endswith("AWSBatchServiceRole")
    # ...and do nothing here: the spec holds what Batchyard uses, the provider is the gateway's.
    spec = json.loads(devcluster.kubectl("get", "computeenvironment", ce, "-o", "json").stdout)["spec"]
    assert spec["computeResources"] == {"type": "EC2", "maxvCpus": 16, "minvCpus": 0}
    assert spec["provider"] == {"type": "kwok"}
    wait_for(
        lambda: client(gateway.url, key).describe_compute_environments(computeEnvironments=[ce])["computeEnvironments"][0]["status"] == "VALID",
        what="the operator to mark the compute environment VALID",
    )  # fmt: skip
    client(gateway.url, key).update_compute_environment(computeEnvironment=ce, state="DISABLED")
    client(gateway.url, key).delete_compute_environment(computeEnvironment=ce)
