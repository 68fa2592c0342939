"""The CRDs against the real API server: examples are accepted, invalid objects are rejected by name.

What a user sees: `kubectl apply` of anything in examples/ works; a mistake is refused by the API
server itself (OpenAPI constraints or CEL rules from the generated CRDs) with a message that names
the offending field; `kubectl explain` prints the field documentation.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from waiting import wait_for

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
API = "batchyard.io/v1alpha1"

# --- builders: the smallest valid object of each kind ------------------------------------------


def obj(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec}


def a_compute_environment() -> dict[str, Any]:
    return obj(
        "ComputeEnvironment",
        "ce-under-test",
        {"type": "MANAGED", "computeResources": {"minvCpus": 0, "maxvCpus": 8}, "provider": {"type": "kwok"}},
    )


def a_job_queue() -> dict[str, Any]:
    return obj(
        "JobQueue",
        "jq-under-test",
        {"priority": 1, "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}]},
    )


def a_scheduling_policy() -> dict[str, Any]:
    return obj(
        "SchedulingPolicy",
        "sp-under-test",
        {"fairsharePolicy": {"shareDecaySeconds": 600, "computeReservation": 10, "shareDistribution": []}},
    )


def a_consumable_resource() -> dict[str, Any]:
    return obj("ConsumableResource", "cr-under-test", {"totalQuantity": 1})


def a_container(**extra: Any) -> dict[str, Any]:
    return {"image": "busybox:1.36", "resources": {"limits": {"cpu": "1", "memory": "64Mi"}}, **extra}


def a_job_definition() -> dict[str, Any]:
    return obj(
        "JobDefinition",
        "jd-under-test",
        {"type": "container", "eksProperties": {"podProperties": {"containers": [a_container()]}}},
    )


def an_ecs_job_definition() -> dict[str, Any]:
    return obj(
        "JobDefinition",
        "jd-ecs-under-test",
        {
            "type": "container",
            "containerProperties": {
                "image": "busybox:1.36",
                "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"}],
            },
        },
    )


def an_mnp_job_definition() -> dict[str, Any]:
    return obj(
        "JobDefinition",
        "jd-mnp-under-test",
        {
            "type": "multinode",
            "nodeProperties": {
                "numNodes": 2,
                "mainNode": 0,
                "nodeRangeProperties": [{"targetNodes": "0:", "container": {"image": "busybox:1.36"}}],
            },
        },
    )


def a_job() -> dict[str, Any]:
    return obj("BatchJob", "bj-under-test", {"jobQueue": "q", "jobDefinition": "d"})


def an_array_job() -> dict[str, Any]:
    job = a_job()
    job["spec"]["arrayProperties"] = {"size": 4}
    return job


Mutation = Callable[[dict[str, Any]], None]


def setting(path: str, value: Any) -> Mutation:
    """Set a dotted path (list indices as numbers) on the object, creating objects on the way."""

    def apply(o: dict[str, Any]) -> None:
        keys = path.split(".")
        cur: Any = o
        for k in keys[:-1]:
            cur = cur[int(k)] if isinstance(cur, list) else cur.setdefault(k, {})
        last = keys[-1]
        if isinstance(cur, list):
            cur[int(last)] = value
        else:
            cur[last] = value

    return apply


def removing(path: str) -> Mutation:
    def apply(o: dict[str, Any]) -> None:
        *head, last = path.split(".")
        cur: Any = o
        for k in head:
            cur = cur[int(k)] if isinstance(cur, list) else cur[k]
        del cur[last]

    return apply


def both(*mutations: Mutation) -> Mutation:
    def apply(o: dict[str, Any]) -> None:
        for m in mutations:
            m(o)

    return apply


POD = "spec.eksProperties.podProperties"
C0 = f"{POD}.containers.0"
RETRY = "spec.retryStrategy"
EOE = [{"onExitCode": "1", "action": "RETRY"}]

# (id, builder, mutation, text the error must contain: the offending field)
INVALID: list[tuple[str, Callable[[], dict[str, Any]], Mutation, str]] = [
    # --- BatchJob: retry strategy
    ("attempts below 1", a_job, setting(RETRY, {"attempts": 0}), "spec.retryStrategy.attempts"),
    ("attempts above 10", a_job, setting(RETRY, {"attempts": 11}), "spec.retryStrategy.attempts"),
    (
        "six evaluateOnExit entries",
        a_job,
        setting(RETRY, {"attempts": 2, "evaluateOnExit": EOE * 6}),
        "spec.retryStrategy.evaluateOnExit",
    ),
    (
        "evaluateOnExit entry without a condition",
        a_job,
        setting(RETRY, {"attempts": 2, "evaluateOnExit": [{"action": "EXIT"}]}),
        "evaluateOnExit",
    ),
    (
        "evaluateOnExit without attempts",
        a_job,
        setting(RETRY, {"evaluateOnExit": EOE}),
        "spec.retryStrategy.attempts",
    ),
    (
        "onExitCode with a letter",
        a_job,
        setting(RETRY, {"attempts": 2, "evaluateOnExit": [{"onExitCode": "1a", "action": "EXIT"}]}),
        "onExitCode",
    ),
    (
        "onExitCode with a leading star",
        a_job,
        setting(RETRY, {"attempts": 2, "evaluateOnExit": [{"onExitCode": "*1", "action": "EXIT"}]}),
        "onExitCode",
    ),
    (
        "onReason with a star in the middle",
        a_job,
        setting(RETRY, {"attempts": 2, "evaluateOnExit": [{"onReason": "Err*or", "action": "EXIT"}]}),
        "onReason",
    ),
    (
        "onReason with a forbidden character",
        a_job,
        setting(RETRY, {"attempts": 2, "evaluateOnExit": [{"onReason": "Error!", "action": "EXIT"}]}),
        "onReason",
    ),
    (
        "onStatusReason of 513 characters",
        a_job,
        setting(RETRY, {"attempts": 2, "evaluateOnExit": [{"onStatusReason": "a" * 513, "action": "EXIT"}]}),
        "onStatusReason",
    ),
    (
        "unknown evaluateOnExit action",
        a_job,
        setting(RETRY, {"attempts": 2, "evaluateOnExit": [{"onReason": "x", "action": "RESTART"}]}),
        "action",
    ),
    # --- BatchJob: timeout, arrays, dependencies
    (
        "attemptDurationSeconds below 60",
        a_job,
        setting("spec.timeout", {"attemptDurationSeconds": 59}),
        "spec.timeout.attemptDurationSeconds",
    ),
    ("array size 1", a_job, setting("spec.arrayProperties", {"size": 1}), "spec.arrayProperties.size"),
    (
        "array size 10,001",
        a_job,
        setting("spec.arrayProperties", {"size": 10001}),
        "spec.arrayProperties.size",
    ),
    (
        "21 dependencies",
        a_job,
        setting("spec.dependsOn", [{"jobId": f"j{i}"} for i in range(21)]),
        "spec.dependsOn",
    ),
    (
        "N_TO_N without a jobId",
        an_array_job,
        setting("spec.dependsOn", [{"type": "N_TO_N"}]),
        "spec.dependsOn",
    ),
    (
        "SEQUENTIAL naming a jobId",
        an_array_job,
        setting("spec.dependsOn", [{"type": "SEQUENTIAL", "jobId": "x"}]),
        "spec.dependsOn",
    ),
    ("plain dependency without a jobId", a_job, setting("spec.dependsOn", [{}]), "spec.dependsOn"),
    (
        "a job depending on itself",
        a_job,
        setting("spec.dependsOn", [{"jobId": "bj-under-test"}]),
        "spec.dependsOn",
    ),
    (
        "SEQUENTIAL on a job that is not an array",
        a_job,
        setting("spec.dependsOn", [{"type": "SEQUENTIAL"}]),
        "spec.dependsOn",
    ),
    (
        "array job with node overrides",
        an_array_job,
        setting("spec.nodeOverrides", {"numNodes": 2}),
        "spec.nodeOverrides",
    ),
    # --- BatchJob: fair share, tags, names
    (
        "schedulingPriorityOverride above 9999",
        a_job,
        setting("spec.schedulingPriorityOverride", 10000),
        "spec.schedulingPriorityOverride",
    ),
    (
        "schedulingPriorityOverride below 0",
        a_job,
        setting("spec.schedulingPriorityOverride", -1),
        "spec.schedulingPriorityOverride",
    ),
    (
        "shareIdentifier with a hyphen",
        a_job,
        setting("spec.shareIdentifier", "team-a"),
        "spec.shareIdentifier",
    ),
    (
        "shareIdentifier of 256 alphanumerics",
        a_job,
        setting("spec.shareIdentifier", "a" * 256),
        "spec.shareIdentifier",
    ),
    ("51 tags", a_job, setting("spec.tags", {f"k{i}": "v" for i in range(51)}), "spec.tags"),
    ("tag key of 129 characters", a_job, setting("spec.tags", {"k" * 129: "v"}), "spec.tags"),
    ("tag value of 257 characters", a_job, setting("spec.tags", {"k": "v" * 257}), "spec.tags"),
    ("tag key with the reserved aws: prefix", a_job, setting("spec.tags", {"aws:owner": "me"}), "spec.tags"),
    ("jobName starting with an underscore", a_job, setting("spec.jobName", "_job"), "spec.jobName"),
    ("jobName of 129 characters", a_job, setting("spec.jobName", "j" * 129), "spec.jobName"),
    (
        "jobQueue that is not an object name",
        a_job,
        setting("spec.jobQueue", "High_Priority"),
        "spec.jobQueue",
    ),
    ("jobDefinition revision 0", a_job, setting("spec.jobDefinition", "d:0"), "spec.jobDefinition"),
    ("missing jobQueue", a_job, removing("spec.jobQueue"), "spec.jobQueue"),
    ("misspelt field", a_job, setting("spec.jobQeue", "q"), "spec.jobQeue"),
    (
        "metadata.name over 128 characters without jobName",
        a_job,
        setting("metadata.name", "j" * 129),
        "metadata.name",
    ),
    # --- BatchJob: user requests
    ("cancel without a reason", a_job, setting("spec.cancel", {"reason": ""}), "spec.cancel.reason"),
    (
        "terminate reason over 1024 characters",
        a_job,
        setting("spec.terminate", {"reason": "r" * 1025}),
        "spec.terminate.reason",
    ),
    (
        "childRequests on a job that is not an array",
        a_job,
        setting("spec.childRequests", [{"index": 0, "action": "CANCEL", "reason": "r"}]),
        "spec.childRequests",
    ),
    (
        "childRequests index beyond the array",
        an_array_job,
        setting("spec.childRequests", [{"index": 4, "action": "CANCEL", "reason": "r"}]),
        "spec.childRequests",
    ),
    (
        "childRequests with the same index twice",
        an_array_job,
        setting(
            "spec.childRequests",
            [
                {"index": 1, "action": "CANCEL", "reason": "r"},
                {"index": 1, "action": "TERMINATE", "reason": "r"},
            ],
        ),
        "spec.childRequests",
    ),
    (
        "childRequests with an unknown action",
        an_array_job,
        setting("spec.childRequests", [{"index": 1, "action": "PAUSE", "reason": "r"}]),
        "action",
    ),
    # --- BatchJob: overrides
    (
        "AWS_BATCH environment override",
        a_job,
        setting("spec.containerOverrides", {"environment": [{"name": "AWS_BATCH_JOB_ID", "value": "x"}]}),
        "spec.containerOverrides.environment",
    ),
    (
        "empty string in a command override",
        a_job,
        setting("spec.containerOverrides", {"command": ["echo", ""]}),
        "spec.containerOverrides.command",
    ),
    (
        "millicores in an EKS override",
        a_job,
        setting(
            "spec.eksPropertiesOverride",
            {"podProperties": {"containers": [{"resources": {"limits": {"cpu": "100m"}}}]}},
        ),
        "resources.limits.cpu",
    ),
    (
        "six consumable resources in an override",
        a_job,
        setting(
            "spec.consumableResourcePropertiesOverride",
            {"consumableResourceList": [{"consumableResource": f"r{i}", "quantity": 1} for i in range(6)]},
        ),
        "spec.consumableResourcePropertiesOverride.consumableResourceList",
    ),
    (
        "pod namespace override 'default'",
        a_job,
        setting("spec.eksPropertiesOverride", {"podProperties": {"metadata": {"namespace": "default"}}}),
        "spec.eksPropertiesOverride.podProperties.metadata.namespace",
    ),
    (
        "any pod namespace override (refused, not ignored: pods run in the job's namespace)",
        a_job,
        setting("spec.eksPropertiesOverride", {"podProperties": {"metadata": {"namespace": "batch-jobs"}}}),
        "spec.eksPropertiesOverride.podProperties.metadata.namespace",
    ),
    # --- JobDefinition: type exclusivity
    ("container type without any properties", a_job_definition, removing("spec.eksProperties"), "spec.type"),
    (
        "container type with containerProperties and eksProperties",
        a_job_definition,
        setting("spec.containerProperties", {"image": "busybox"}),
        "spec.containerProperties",
    ),
    (
        "container type with nodeProperties",
        a_job_definition,
        setting(
            "spec.nodeProperties",
            {
                "numNodes": 1,
                "mainNode": 0,
                "nodeRangeProperties": [{"targetNodes": "0", "container": {"image": "x"}}],
            },
        ),
        "spec.nodeProperties",
    ),
    (
        "multinode type without nodeProperties",
        a_job_definition,
        setting("spec.type", "multinode"),
        "spec.nodeProperties",
    ),
    ("unknown job definition type", a_job_definition, setting("spec.type", "array"), "spec.type"),
    (
        "eksProperties with platformCapabilities",
        a_job_definition,
        setting("spec.platformCapabilities", ["EC2"]),
        "spec.platformCapabilities",
    ),
    (
        "eksProperties with propagateTags",
        a_job_definition,
        setting("spec.propagateTags", True),
        "spec.propagateTags",
    ),
    (
        "multinode on FARGATE",
        an_mnp_job_definition,
        setting("spec.platformCapabilities", ["FARGATE"]),
        "spec.platformCapabilities",
    ),
    (
        "schedulingPriority above 9999",
        a_job_definition,
        setting("spec.schedulingPriority", 10000),
        "spec.schedulingPriority",
    ),
    # --- JobDefinition: EKS resources
    ("vCPU of 0.3", a_job_definition, setting(f"{C0}.resources.limits.cpu", "0.3"), "resources.limits.cpu"),
    (
        "vCPU of 0.1 (below 0.25)",
        a_job_definition,
        setting(f"{C0}.resources.limits.cpu", "0.1"),
        "resources.limits.cpu",
    ),
    (
        "vCPU in millicores",
        a_job_definition,
        setting(f"{C0}.resources.requests", {"cpu": "500m"}),
        "resources.requests.cpu",
    ),
    (
        "memory in GiB",
        a_job_definition,
        setting(f"{C0}.resources.limits.memory", "1Gi"),
        "resources.limits.memory",
    ),
    (
        "memory below 4 MiB",
        a_job_definition,
        setting(f"{C0}.resources.limits.memory", "3Mi"),
        "resources.limits.memory",
    ),
    (
        "fractional GPU",
        a_job_definition,
        setting(f"{C0}.resources", {"limits": {"nvidia.com/gpu": "0.5", "memory": "64Mi"}}),
        "nvidia.com/gpu",
    ),
    (
        "GPU requests different from limits",
        a_job_definition,
        setting(
            f"{C0}.resources",
            {"limits": {"nvidia.com/gpu": "2", "memory": "64Mi"}, "requests": {"nvidia.com/gpu": "1"}},
        ),
        "resources.requests.nvidia.com/gpu",
    ),
    (
        "memory requests different from limits",
        a_job_definition,
        setting(f"{C0}.resources", {"limits": {"memory": "128Mi"}, "requests": {"memory": "64Mi"}}),
        "resources.requests.memory",
    ),
    (
        "cpu requests above limits",
        a_job_definition,
        setting(f"{C0}.resources", {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}),
        "resources.requests.cpu",
    ),
    (
        "eleven containers",
        a_job_definition,
        setting(f"{POD}.containers", [a_container(name=f"c{i}") for i in range(11)]),
        f"{POD}.containers",
    ),
    (
        "two containers without names",
        a_job_definition,
        setting(f"{POD}.containers", [a_container(), a_container()]),
        "containers[].name",
    ),
    (
        "duplicate container names",
        a_job_definition,
        setting(f"{POD}.containers", [a_container(name="a"), a_container(name="a")]),
        "container names",
    ),
    (
        "upper-case container name",
        a_job_definition,
        setting(f"{C0}.name", "Main"),
        f"{POD}.containers[0].name",
    ),
    (
        "image of 256 characters",
        a_job_definition,
        setting(f"{C0}.image", "i" * 256),
        f"{POD}.containers[0].image",
    ),
    (
        "AWS_BATCH variable in a pod",
        a_job_definition,
        setting(f"{C0}.env", [{"name": "AWS_BATCH_X", "value": "1"}]),
        f"{POD}.containers[0].env",
    ),
    (
        "reserved label prefix",
        a_job_definition,
        setting(f"{POD}.metadata", {"labels": {"batch.amazonaws.com/job-id": "x"}}),
        f"{POD}.metadata.labels",
    ),
    (
        "volume with two sources",
        a_job_definition,
        setting(f"{POD}.volumes", [{"name": "v", "emptyDir": {}, "hostPath": {"path": "/tmp"}}]),
        "volumes",
    ),
    (
        "volumeMount of an undeclared volume",
        a_job_definition,
        setting(f"{C0}.volumeMounts", [{"name": "data", "mountPath": "/data"}]),
        "volumeMounts",
    ),
    # --- JobDefinition: containerProperties resourceRequirements
    (
        "VCPU requirement of 0.3",
        an_ecs_job_definition,
        setting("spec.containerProperties.resourceRequirements.0.value", "0.3"),
        "resourceRequirements",
    ),
    (
        "MEMORY requirement below 4 MiB",
        an_ecs_job_definition,
        setting("spec.containerProperties.resourceRequirements.1.value", "3"),
        "resourceRequirements",
    ),
    (
        "fractional GPU requirement",
        an_ecs_job_definition,
        setting("spec.containerProperties.resourceRequirements", [{"type": "GPU", "value": "1.5"}]),
        "resourceRequirements",
    ),
    (
        "VCPU listed twice",
        an_ecs_job_definition,
        setting("spec.containerProperties.resourceRequirements", [{"type": "VCPU", "value": "1"}] * 2),
        "resourceRequirements",
    ),
    (
        "vcpus together with a VCPU requirement",
        an_ecs_job_definition,
        setting("spec.containerProperties.vcpus", 2),
        "containerProperties.vcpus",
    ),
    (
        "containerProperties without an image",
        an_ecs_job_definition,
        removing("spec.containerProperties.image"),
        "spec.containerProperties.image",
    ),
    (
        "deprecated memory below 4 MiB",
        an_ecs_job_definition,
        setting("spec.containerProperties.memory", 3),
        "spec.containerProperties.memory",
    ),
    # --- JobDefinition: multi-node
    (
        "mainNode not below numNodes",
        an_mnp_job_definition,
        setting("spec.nodeProperties.mainNode", 2),
        "spec.nodeProperties.mainNode",
    ),
    (
        "1,001 nodes",
        an_mnp_job_definition,
        setting("spec.nodeProperties.numNodes", 1001),
        "spec.nodeProperties.numNodes",
    ),
    (
        "six node ranges",
        an_mnp_job_definition,
        setting(
            "spec.nodeProperties.nodeRangeProperties",
            [{"targetNodes": "0:", "container": {"image": "x"}}] * 6,
        ),
        "spec.nodeProperties.nodeRangeProperties",
    ),
    (
        "malformed targetNodes",
        an_mnp_job_definition,
        setting("spec.nodeProperties.nodeRangeProperties.0.targetNodes", "a:b"),
        "targetNodes",
    ),
    (
        "node range with two kinds of container",
        an_mnp_job_definition,
        setting(
            "spec.nodeProperties.nodeRangeProperties.0.eksProperties",
            {"podProperties": {"containers": [a_container()]}},
        ),
        "nodeRangeProperties",
    ),
    # --- JobQueue
    ("queue priority above 1000", a_job_queue, setting("spec.priority", 1001), "spec.priority"),
    ("negative queue priority", a_job_queue, setting("spec.priority", -1), "spec.priority"),
    (
        "queue without compute environments",
        a_job_queue,
        setting("spec.computeEnvironmentOrder", []),
        "spec.computeEnvironmentOrder",
    ),
    (
        "four compute environments",
        a_job_queue,
        setting(
            "spec.computeEnvironmentOrder", [{"order": i, "computeEnvironment": f"ce{i}"} for i in range(4)]
        ),
        "spec.computeEnvironmentOrder",
    ),
    (
        "two compute environments with the same order",
        a_job_queue,
        setting(
            "spec.computeEnvironmentOrder",
            [{"order": 1, "computeEnvironment": "a"}, {"order": 1, "computeEnvironment": "b"}],
        ),
        "spec.computeEnvironmentOrder",
    ),
    (
        "the same compute environment twice",
        a_job_queue,
        setting(
            "spec.computeEnvironmentOrder",
            [{"order": 1, "computeEnvironment": "a"}, {"order": 2, "computeEnvironment": "a"}],
        ),
        "spec.computeEnvironmentOrder",
    ),
    (
        "maxTimeSeconds below 600",
        a_job_queue,
        setting(
            "spec.jobStateTimeLimitActions",
            [{"reason": "R", "state": "RUNNABLE", "maxTimeSeconds": 599, "action": "CANCEL"}],
        ),
        "maxTimeSeconds",
    ),
    (
        "maxTimeSeconds above 86,400",
        a_job_queue,
        setting(
            "spec.jobStateTimeLimitActions",
            [{"reason": "R", "state": "RUNNABLE", "maxTimeSeconds": 86401, "action": "CANCEL"}],
        ),
        "maxTimeSeconds",
    ),
    (
        "time limit action on RUNNING",
        a_job_queue,
        setting(
            "spec.jobStateTimeLimitActions",
            [{"reason": "R", "state": "RUNNING", "maxTimeSeconds": 600, "action": "CANCEL"}],
        ),
        "spec.jobStateTimeLimitActions[0].state",
    ),
    (
        "time limit action TERMINATE",
        a_job_queue,
        setting(
            "spec.jobStateTimeLimitActions",
            [{"reason": "R", "state": "RUNNABLE", "maxTimeSeconds": 600, "action": "TERMINATE"}],
        ),
        "spec.jobStateTimeLimitActions[0].action",
    ),
    ("queue state ON", a_job_queue, setting("spec.state", "ON"), "spec.state"),
    # --- ComputeEnvironment
    (
        "minvCpus above maxvCpus",
        a_compute_environment,
        setting("spec.computeResources.minvCpus", 9),
        "spec.computeResources.minvCpus",
    ),
    (
        "desiredvCpus above maxvCpus",
        a_compute_environment,
        setting("spec.computeResources.desiredvCpus", 9),
        "spec.computeResources.desiredvCpus",
    ),
    (
        "desiredvCpus below minvCpus",
        a_compute_environment,
        both(setting("spec.computeResources.minvCpus", 4), setting("spec.computeResources.desiredvCpus", 2)),
        "spec.computeResources.desiredvCpus",
    ),
    (
        "negative maxvCpus",
        a_compute_environment,
        setting("spec.computeResources.maxvCpus", -1),
        "spec.computeResources.maxvCpus",
    ),
    (
        "spot strategy on on-demand capacity",
        a_compute_environment,
        setting("spec.computeResources.allocationStrategy", "SPOT_CAPACITY_OPTIMIZED"),
        "spec.computeResources.allocationStrategy",
    ),
    (
        "managed environment without computeResources",
        a_compute_environment,
        removing("spec.computeResources"),
        "spec.computeResources",
    ),
    (
        "unmanaged environment with computeResources",
        a_compute_environment,
        setting("spec.type", "UNMANAGED"),
        "spec.computeResources",
    ),
    (
        "kubernetesNamespace 'default'",
        a_compute_environment,
        setting("spec.eksConfiguration", {"kubernetesNamespace": "default"}),
        "spec.eksConfiguration.kubernetesNamespace",
    ),
    (
        "kubernetesNamespace starting with kube-",
        a_compute_environment,
        setting("spec.eksConfiguration", {"kubernetesNamespace": "kube-jobs"}),
        "spec.eksConfiguration.kubernetesNamespace",
    ),
    (
        "any kubernetesNamespace (refused, not ignored: pods run in the job's namespace)",
        a_compute_environment,
        setting("spec.eksConfiguration", {"kubernetesNamespace": "batch-jobs"}),
        "spec.eksConfiguration.kubernetesNamespace",
    ),
    (
        "jobExecutionTimeoutMinutes above 360",
        a_compute_environment,
        setting("spec.updatePolicy", {"jobExecutionTimeoutMinutes": 361}),
        "spec.updatePolicy.jobExecutionTimeoutMinutes",
    ),
    (
        "minScaleDownDelayMinutes of 10",
        a_compute_environment,
        setting("spec.computeResources.scalingPolicy", {"minScaleDownDelayMinutes": 10}),
        "minScaleDownDelayMinutes",
    ),
    (
        "three ec2Configuration entries",
        a_compute_environment,
        setting("spec.computeResources.ec2Configuration", [{"imageType": "EKS_AL2023"}] * 3),
        "spec.computeResources.ec2Configuration",
    ),
    (
        "provider settings that don't match its type",
        a_compute_environment,
        setting("spec.provider", {"type": "kwok", "unmanaged": {}}),
        "spec.provider",
    ),
    # --- SchedulingPolicy
    (
        "weightFactor of 0",
        a_scheduling_policy,
        setting("spec.fairsharePolicy.shareDistribution", [{"shareIdentifier": "a", "weightFactor": 0}]),
        "weightFactor",
    ),
    (
        "weightFactor of 1000",
        a_scheduling_policy,
        setting("spec.fairsharePolicy.shareDistribution", [{"shareIdentifier": "a", "weightFactor": 1000}]),
        "weightFactor",
    ),
    (
        "shareDecaySeconds above a week",
        a_scheduling_policy,
        setting("spec.fairsharePolicy.shareDecaySeconds", 604801),
        "spec.fairsharePolicy.shareDecaySeconds",
    ),
    (
        "computeReservation of 100",
        a_scheduling_policy,
        setting("spec.fairsharePolicy.computeReservation", 100),
        "spec.fairsharePolicy.computeReservation",
    ),
    (
        "share prefix overlapping a share identifier",
        a_scheduling_policy,
        setting(
            "spec.fairsharePolicy.shareDistribution",
            [{"shareIdentifier": "UserA*"}, {"shareIdentifier": "UserA1"}],
        ),
        "spec.fairsharePolicy.shareDistribution",
    ),
    (
        "share prefix overlapping another prefix",
        a_scheduling_policy,
        setting(
            "spec.fairsharePolicy.shareDistribution",
            [{"shareIdentifier": "UserA*"}, {"shareIdentifier": "UserAB*"}],
        ),
        "spec.fairsharePolicy.shareDistribution",
    ),
    (
        "the same share identifier twice",
        a_scheduling_policy,
        setting(
            "spec.fairsharePolicy.shareDistribution", [{"shareIdentifier": "a"}, {"shareIdentifier": "a"}]
        ),
        "spec.fairsharePolicy.shareDistribution",
    ),
    (
        "share identifier with an underscore",
        a_scheduling_policy,
        setting("spec.fairsharePolicy.shareDistribution", [{"shareIdentifier": "team_a"}]),
        "shareIdentifier",
    ),
    # --- ConsumableResource
    (
        "negative totalQuantity",
        a_consumable_resource,
        setting("spec.totalQuantity", -1),
        "spec.totalQuantity",
    ),
    (
        "unknown resourceType",
        a_consumable_resource,
        setting("spec.resourceType", "RENEWABLE"),
        "spec.resourceType",
    ),
]


def dry_run(cluster: Any, namespace: str, body: dict[str, Any]) -> Any:
    return cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(body), check=False
    )


def test_the_invalid_table_is_large_enough() -> None:
    assert len(INVALID) >= 40


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_example_is_accepted(crds_installed: Any, namespace: str, example: Path) -> None:
    proc = crds_installed.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", str(example), check=False
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("builder", "mutation", "field"),
    [(b, m, f) for _, b, m, f in INVALID],
    ids=[i for i, *_ in INVALID],
)
def test_invalid_object_is_rejected_naming_the_field(
    crds_installed: Any, namespace: str, builder: Callable[[], dict[str, Any]], mutation: Mutation, field: str
) -> None:
    valid = builder()
    assert dry_run(crds_installed, namespace, valid).returncode == 0, "the builder itself must be valid"
    invalid = copy.deepcopy(valid)
    mutation(invalid)
    proc = dry_run(crds_installed, namespace, invalid)
    assert proc.returncode != 0, f"accepted: {json.dumps(invalid)}"
    assert field in proc.stderr, proc.stderr


# --- updates: what AWS does not let you change --------------------------------------------------

UPDATES: list[tuple[str, Callable[[], dict[str, Any]], Mutation, str]] = [
    ("BatchJob jobQueue can't change", a_job, setting("spec.jobQueue", "other"), "spec.jobQueue"),
    (
        "BatchJob can't become an array job",
        a_job,
        setting("spec.arrayProperties", {"size": 3}),
        "spec.arrayProperties",
    ),
    ("BatchJob can't move to another queue", a_job, setting("spec.jobQueue", "other"), "spec.jobQueue"),
    ("BatchJob can't gain tags", a_job, setting("spec.tags", {"team": "x"}), "spec.tags"),
    (
        "JobQueue can't drop its scheduling policy",
        lambda: _with(a_job_queue(), "spec.schedulingPolicy", "fs"),
        removing("spec.schedulingPolicy"),
        "spec.schedulingPolicy",
    ),
    (
        "JobQueue can't gain a scheduling policy",
        a_job_queue,
        setting("spec.schedulingPolicy", "fs"),
        "spec.schedulingPolicy",
    ),
    (
        "desiredvCpus can't be lowered",
        lambda: _with(a_compute_environment(), "spec.computeResources.desiredvCpus", 4),
        setting("spec.computeResources.desiredvCpus", 2),
        "spec.computeResources.desiredvCpus",
    ),
    (
        "ComputeEnvironment type can't change",
        lambda: _with(a_compute_environment(), "spec.type", "MANAGED"),
        both(setting("spec.type", "UNMANAGED"), removing("spec.computeResources"), removing("spec.provider")),
        "spec.type",
    ),
]


def _with(o: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    setting(path, value)(o)
    return o


@pytest.mark.parametrize(
    ("builder", "mutation", "field"), [(b, m, f) for _, b, m, f in UPDATES], ids=[i for i, *_ in UPDATES]
)
def test_update_is_rejected_naming_the_field(
    crds_installed: Any, namespace: str, builder: Callable[[], dict[str, Any]], mutation: Mutation, field: str
) -> None:
    original = builder()
    original["metadata"]["name"] = (
        f"{original['metadata']['name']}-{namespace}"  # cluster-scoped: unique per test
    )
    crds_installed.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(original))
    try:
        changed = copy.deepcopy(original)
        mutation(changed)
        # kubectl replace reads the live resourceVersion, then PUTs: an operator's status write in
        # between is a 409 Conflict, not the validation under test. Retry those, as a client would.
        for _ in range(10):
            proc = crds_installed.kubectl(
                "replace", "-n", namespace, "-f", "-", input=json.dumps(changed), check=False
            )
            if "the object has been modified" not in proc.stderr:
                break
        assert proc.returncode != 0, "update accepted"
        assert field in proc.stderr, proc.stderr
    finally:
        crds_installed.kubectl("delete", "-n", namespace, "-f", "-", input=json.dumps(original), check=False)


def test_user_requests_can_be_added_to_a_submitted_job(crds_installed: Any, namespace: str) -> None:
    job = an_array_job()
    crds_installed.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(job))
    patch = {
        "spec": {
            "cancel": {"reason": "not needed"},
            "childRequests": [{"index": 2, "action": "TERMINATE", "reason": "x"}],
        }
    }
    crds_installed.kubectl(
        "patch", "batchjob", "bj-under-test", "-n", namespace, "--type", "merge", "-p", json.dumps(patch)
    )
    stored = json.loads(
        crds_installed.kubectl("get", "batchjob", "bj-under-test", "-n", namespace, "-o", "json").stdout
    )
    assert stored["spec"]["cancel"] == {"reason": "not needed"}
    assert stored["spec"]["childRequests"] == [{"index": 2, "action": "TERMINATE", "reason": "x"}]


# --- kubectl explain ---------------------------------------------------------------------------


def test_kubectl_explain_prints_evaluate_on_exit_documentation(crds_installed: Any) -> None:
    def explained() -> Any:
        proc = crds_installed.kubectl("explain", "batchjob.spec.retryStrategy.evaluateOnExit", check=False)
        return proc if proc.returncode == 0 else None

    # The API server publishes new OpenAPI documents a few seconds after the CRD.
    proc = wait_for(explained, timeout=60, interval=1, what="kubectl explain to know the new CRD")
    text = " ".join(proc.stdout.split())
    assert "first match wins" in text
    for field in ("onExitCode", "onReason", "onStatusReason", "action"):
        assert field in text
    assert "Up to 512 characters" in text


def test_kubectl_get_batchyard_lists_every_kind(crds_installed: Any, namespace: str) -> None:
    proc = crds_installed.kubectl("get", "batchyard", "-n", namespace, "--show-kind", check=False)
    assert proc.returncode == 0, proc.stderr
