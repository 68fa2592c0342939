"""The local control plane is real: scheduler, taints, GPUs, kwok exit stage, GC, validation."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from conftest import get_json
from waiting import wait_for

from batchyard.devcluster import DevCluster, node_manifest
from batchyard.devcluster.kwok import EXIT_CODE, REASON

pytestmark = pytest.mark.cluster


def pod(name: str, *, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "resources": spec.pop("resources", {})}],
            **spec,
        },
    }


def create(cluster: DevCluster, ns: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(obj))


def pod_json(cluster: DevCluster, ns: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = get_json(cluster, "pod", name, "-n", ns)
    return result


def unique_pool() -> str:
    return f"pool-{uuid.uuid4().hex[:8]}"


def test_scheduler_honours_taints_and_tolerations(devcluster: DevCluster, namespace: str) -> None:
    pool = unique_pool()
    taint = {"key": "batchyard.io/test", "value": pool, "effect": "NoSchedule"}
    devcluster.add_node(f"{pool}-tainted", labels={"test-pool": pool}, taints=[taint])
    toleration = {"key": "batchyard.io/test", "operator": "Equal", "value": pool, "effect": "NoSchedule"}
    create(devcluster, namespace, pod("tolerant", nodeSelector={"test-pool": pool}, tolerations=[toleration]))
    create(devcluster, namespace, pod("intolerant", nodeSelector={"test-pool": pool}))

    running = wait_for(
        lambda: (p := pod_json(devcluster, namespace, "tolerant"))["status"].get("phase") == "Running" and p,
        what="the tolerating pod to run",
    )
    assert running["spec"]["nodeName"] == f"{pool}-tainted"

    def unschedulable() -> dict[str, Any] | None:
        conds = pod_json(devcluster, namespace, "intolerant")["status"].get("conditions", [])
        return next((c for c in conds if c["type"] == "PodScheduled" and c["status"] == "False"), None)

    cond = wait_for(unschedulable, what="the intolerant pod to be reported unschedulable")
    assert cond["reason"] == "Unschedulable"
    assert "untolerated taint" in cond["message"]
    assert pod_json(devcluster, namespace, "intolerant")["status"]["phase"] == "Pending"


def test_gpu_pod_lands_only_on_a_gpu_node(devcluster: DevCluster, namespace: str) -> None:
    pool = unique_pool()
    devcluster.add_nodes(
        [
            node_manifest(f"{pool}-cpu", cpu="32", labels={"test-pool": pool}),
            node_manifest(f"{pool}-gpu", cpu="8", gpus=4, labels={"test-pool": pool}),
        ]
    )
    gpus = {"limits": {"nvidia.com/gpu": "2"}, "requests": {"nvidia.com/gpu": "2"}}
    for i in range(2):
        create(devcluster, namespace, pod(f"gpu-{i}", nodeSelector={"test-pool": pool}, resources=gpus))
    # A third pair would need 6 GPUs: the node has 4, so it must stay Pending.
    create(devcluster, namespace, pod("gpu-2", nodeSelector={"test-pool": pool}, resources=gpus))

    for i in range(2):
        scheduled = wait_for(
            lambda i=i: pod_json(devcluster, namespace, f"gpu-{i}")["spec"].get("nodeName"),
            what=f"gpu-{i} to be scheduled",
        )
        assert scheduled == f"{pool}-gpu"
    wait_for(
        lambda: any(
            c["reason"] == "Unschedulable" and "nvidia.com/gpu" in c["message"]
            for c in pod_json(devcluster, namespace, "gpu-2")["status"].get("conditions", [])
        ),
        what="the third GPU pod to be unschedulable for lack of GPUs",
    )
    assert "nodeName" not in pod_json(devcluster, namespace, "gpu-2")["spec"]


@pytest.mark.parametrize(
    ("annotations", "phase", "exit_code", "reason"),
    [
        pytest.param({EXIT_CODE: "0"}, "Succeeded", 0, "Completed", id="exit 0 succeeds"),
        pytest.param({EXIT_CODE: "3", REASON: "OutOfCheese"}, "Failed", 3, "OutOfCheese", id="exit 3 fails"),
        pytest.param({EXIT_CODE: "9"}, "Failed", 9, "Error", id="non-zero default reason is Error"),
    ],
)
def test_kwok_ends_bare_pods_as_annotated(
    devcluster: DevCluster,
    namespace: str,
    annotations: dict[str, str],
    phase: str,
    exit_code: int,
    reason: str,
) -> None:
    devcluster.add_node(f"{namespace}-node")
    annotations = {**annotations, "kwok.batchyard.io/delay": "200ms"}
    create(devcluster, namespace, pod("p", annotations=annotations, nodeName=f"{namespace}-node"))

    done = wait_for(
        lambda: (
            (p := pod_json(devcluster, namespace, "p"))["status"].get("phase") in ("Succeeded", "Failed")
            and p
        ),
        what="the pod to finish",
    )
    assert done["status"]["phase"] == phase
    terminated = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == exit_code
    assert terminated["reason"] == reason


def test_exit_code_list_is_chosen_by_attempt_label(devcluster: DevCluster, namespace: str) -> None:
    devcluster.add_node(f"{namespace}-node")
    for attempt, expected in [("1", 137), ("2", 0), ("5", 0)]:
        obj = pod(f"attempt-{attempt}", annotations={EXIT_CODE: "137,0", "kwok.batchyard.io/delay": "100ms"},
                  nodeName=f"{namespace}-node")  # fmt: skip
        obj["metadata"]["labels"] = {"batchyard.io/attempt": attempt}
        create(devcluster, namespace, obj)
        done = wait_for(
            lambda a=attempt: (
                (p := pod_json(devcluster, namespace, f"attempt-{a}"))["status"]
                .get("containerStatuses", [{}])[0]
                .get("state", {})
                .get("terminated")
                and p
            ),
            what=f"attempt {attempt} to finish",
        )
        assert done["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == expected


def test_garbage_collector_deletes_owned_pods(devcluster: DevCluster, namespace: str) -> None:
    devcluster.kubectl("create", "configmap", "owner", "-n", namespace)
    owner = get_json(devcluster, "configmap", "owner", "-n", namespace)
    obj = pod("owned")
    obj["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    ]
    create(devcluster, namespace, obj)
    devcluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(
        lambda: devcluster.kubectl("get", "pod", "owned", "-n", namespace, check=False).returncode != 0,
        what="the garbage collector to delete the owned pod",
    )


def test_api_server_rejects_malformed_object_naming_the_field(k8s: Any, namespace: str) -> None:
    from kubernetes import client

    bad = pod("bad")
    bad["spec"]["containers"][0]["name"] = "Not_A_DNS_Label"
    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(k8s).create_namespaced_pod(namespace, bad)
    assert err.value.status == 422
    body = json.loads(err.value.body)
    assert body["reason"] == "Invalid"
    assert any(c["field"] == "spec.containers[0].name" for c in body["details"]["causes"])
    assert "spec.containers[0].name" in body["message"]
