"""Builders for Batchyard objects in cluster tests, and reads of what a user would see."""

from __future__ import annotations

import json
from typing import Any

from waiting import wait_for

from batchyard.devcluster import DevCluster, node_manifest

API = "batchyard.io/v1alpha1"
CE_LABEL = "batchyard.io/compute-environment"


def compute_environment(name: str, max_vcpus: int = 16, state: str = "ENABLED") -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ComputeEnvironment",
        "metadata": {"name": name},
        "spec": {
            # Tests create the nodes themselves (ce_nodes); unmanagedvCpus caps the environment.
            "type": "UNMANAGED",
            "state": state,
            "unmanagedvCpus": max_vcpus,
            "provider": {"type": "unmanaged"},
        },
    }


def job_queue(name: str, ces: list[str], priority: int = 1, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "JobQueue",
        "metadata": {"name": name},
        "spec": {
            "priority": priority,
            "state": "ENABLED",
            "computeEnvironmentOrder": [
                {"order": i + 1, "computeEnvironment": ce} for i, ce in enumerate(ces)
            ],
            **spec,
        },
    }


def job_definition(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "image": "busybox:1.36",
        "command": ["echo", "hello"],
        "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
    }
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": API,
        "kind": "JobDefinition",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "container", "containerProperties": container, **spec},
    }


def batch_job(
    name: str, namespace: str, queue: str, definition: str, *, exit_code: str | None = "0",
    delay: str = "300ms", annotations: dict[str, str] | None = None, **spec: Any,
) -> dict[str, Any]:  # fmt: skip
    ann = dict(annotations or {})
    if exit_code is not None:
        ann.setdefault("kwok.batchyard.io/exit-code", exit_code)
        ann.setdefault("kwok.batchyard.io/delay", delay)
    return {
        "apiVersion": API,
        "kind": "BatchJob",
        "metadata": {"name": name, "namespace": namespace, "annotations": ann},
        "spec": {"jobQueue": queue, "jobDefinition": definition, **spec},
    }


def apply(cluster: DevCluster, *objs: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objs))


def get(cluster: DevCluster, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    args = ["get", kind, name, "-o", "json"] + (["-n", namespace] if namespace else [])
    result: dict[str, Any] = json.loads(cluster.kubectl(*args).stdout)
    return result


def job_status(cluster: DevCluster, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = get(cluster, "batchjob", name, namespace).get("status") or {}
    return status


def wait_status(
    cluster: DevCluster, namespace: str, name: str, *states: str, timeout: float = 60
) -> dict[str, Any]:
    return wait_for(
        lambda: (s := job_status(cluster, namespace, name)).get("status") in states and s,
        timeout=timeout,
        what=f"job {name} to reach {states}",
    )


def pods(cluster: DevCluster, namespace: str, selector: str = "batchyard.io/job-uid") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
    )["items"]
    return items


def events(cluster: DevCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        cluster.kubectl(
            "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
        ).stdout
    )["items"]
    return items


def ce_nodes(cluster: DevCluster, ce: str, count: int = 1, cpu: str = "8", gpus: int = 0) -> None:
    taints = [{"key": CE_LABEL, "value": ce, "effect": e} for e in ("NoSchedule", "NoExecute")]
    if gpus:
        taints.append({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"})
    cluster.add_nodes(
        [
            node_manifest(
                f"{ce}-n{i}", cpu=cpu, memory="64Gi", gpus=gpus, labels={CE_LABEL: ce}, taints=taints
            )
            for i in range(count)
        ]
    )


def environment(cluster: DevCluster, namespace: str, max_vcpus: int = 16, nodes: int = 1) -> tuple[str, str]:
    """A compute environment with its own kwok nodes and a queue on it; returns (ce, queue)."""
    ce, queue = f"{namespace}-ce", f"{namespace}-q"
    apply(cluster, compute_environment(ce, max_vcpus), job_queue(queue, [ce]))
    if nodes:
        ce_nodes(cluster, ce, nodes)
    return ce, queue


def consumable_resource(name: str, total: int, resource_type: str = "REPLENISHABLE") -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ConsumableResource",
        "metadata": {"name": name},
        "spec": {"resourceType": resource_type, "totalQuantity": total},
    }


def scheduling_policy(
    name: str, weights: dict[str, float], decay_seconds: int = 0, reservation: int = 0
) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "SchedulingPolicy",
        "metadata": {"name": name},
        "spec": {
            "fairsharePolicy": {
                "shareDecaySeconds": decay_seconds,
                "computeReservation": reservation,
                "shareDistribution": [{"shareIdentifier": s, "weightFactor": w} for s, w in weights.items()],
            }
        },
    }


def job_rows(cluster: DevCluster, namespace: str) -> list[tuple[str, str, str]]:
    """(name, status, shareIdentifier) of every BatchJob, as `kubectl get` columns (cheap to poll)."""
    out = cluster.kubectl(
        "get", "batchjobs", "-n", namespace, "--no-headers",
        "-o", "custom-columns=N:.metadata.name,S:.status.status,SH:.spec.shareIdentifier",
    ).stdout  # fmt: skip
    return [(r[0], r[1], r[2]) for r in (line.split() for line in out.splitlines()) if len(r) == 3]
