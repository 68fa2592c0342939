"""The Pod manifest of one attempt of a job (or of one array child's attempt).

Why this module exists: AWS Batch on EKS "transforms the job into a podspec" — one pod per attempt,
labelled so that it can be mapped back to its job, placed only on the compute environment's nodes,
and seeing the AWS_BATCH_* variables. The operator loop calls `render_pod` when the scheduler
dispatches a job and creates the result as it is; everything here is pure and deterministic
(same inputs -> byte-identical manifest), so a repeated dispatch gets 409 Conflict, not a twin.

Placement: the pod selects `batchyard.io/compute-environment=<ce>` and tolerates the taint of the
same key and value with NoSchedule and NoExecute (the node-pool code puts both on every node of
the environment), plus the environment's own nodeLabels/nodeTaints. An UNMANAGED environment's
nodes are the user's: they are selected by its nodeLabels alone when it has any.

Networking: AWS defaults EKS job pods to hostNetwork=true with dnsPolicy ClusterFirstWithHostNet
("If the hostNetwork parameter isn't explicitly set ... hostNetwork=true and
dnsPolicy=ClusterFirstWithHostNet"); `default_host_network` lets the operator configuration change
that default (the operator's default is false: Pod Security baseline refuses host networking).
ECS-style containerProperties jobs get normal pod networking. `restricted_defaults` fills what Pod
Security restricted requires where the definition is silent.

Namespace: the pod lives in the BatchJob's namespace. A compute environment's kubernetesNamespace
and a podProperties metadata.namespace are refused (CRD rules; a render problem for older objects):
an owner reference can't cross namespaces, and without it a deleted job would leak its pods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from batchyard.api.batchjob import BatchJob
from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.api.jobdefinition import JobDefinitionSpec
from batchyard.core.capacity import Resources
from batchyard.core.instances import UnknownInstanceType
from batchyard.core.nodepool import instance_types_of, tolerates_gpu_nodes
from batchyard.core.params import ArrayChild, BatchEnvContext, MultiNode, batch_env, child_job_id, node_job_id
from batchyard.render.mnp import (
    MAIN_NODE_HOST_ENV,
    layout_problems,
    main_node,
    main_service_host,
    node_choice,
    num_nodes,
)
from batchyard.render.model import ContainerPlan, PodPlan
from batchyard.render.names import (
    ANNOTATION_JOB_DEFINITION,
    ANNOTATION_JOB_ID,
    AWS_LABEL_CE_UUID,
    AWS_LABEL_JOB_ID,
    GPU_RESOURCE,
    KWOK_ANNOTATION_PREFIX,
    LABEL_ARRAY_INDEX,
    LABEL_ATTEMPT,
    LABEL_COMPUTE_ENVIRONMENT,
    LABEL_JOB_NAME,
    LABEL_JOB_UID,
    LABEL_MANAGED_BY,
    LABEL_NODE_INDEX,
    LABEL_QUEUE,
    MANAGED_BY,
    NODE_LABEL_COMPUTE_ENVIRONMENT,
    NODE_TAINT_COMPUTE_ENVIRONMENT,
    NODE_TAINT_EFFECTS,
    is_label_key,
    label_value,
    owned_by_job,
    pod_name,
)
from batchyard.render.plan import plan_pod
from batchyard.render.resources import pod_demand

# AWS: on termination the container gets SIGTERM and, 30 seconds later, SIGKILL.
TERMINATION_GRACE_SECONDS: Final = 30


# AWS: "If the total number of combined tags from the job and job definition is over 50, the job is
# moved to the FAILED state."
MAX_PROPAGATED_TAGS: Final = 50


def propagated_tags(job: BatchJob, definition: JobDefinitionSpec) -> dict[str, str]:
    """Tags copied to the pod as annotations, when tag propagation is on.

    AWS SubmitJob propagateTags: "When specified, this overrides the tag propagation setting in the
    job definition"; "For tags with the same name, job tags are given priority over job definitions
    tags". Tags whose key is not a valid annotation key (e.g. with spaces) are not copied.
    """
    on = job.spec.propagateTags if job.spec.propagateTags is not None else definition.propagateTags
    if not on:
        return {}
    return dict(definition.tags or {}) | dict(job.spec.tags or {})


def _tag_problems(job: BatchJob, definition: JobDefinitionSpec) -> list[str]:
    tags = propagated_tags(job, definition)
    if len(tags) > MAX_PROPAGATED_TAGS:
        return [
            f"propagateTags: the job and job definition have {len(tags)} tags combined; at most "
            f"{MAX_PROPAGATED_TAGS} can be propagated"
        ]
    return []


def _node_groups(job: BatchJob, definition: JobDefinitionSpec) -> list[tuple[int, int]]:
    """MNP: (first node index, number of nodes) per distinct (node range, override) pair."""
    groups: dict[tuple[int | None, int | None], list[int]] = {}
    for i in range(num_nodes(job, definition)):
        groups.setdefault(node_choice(job, definition, i), []).append(i)
    return [(nodes[0], len(nodes)) for nodes in groups.values()]


def _plan_demand(plan: PodPlan) -> Resources:
    # K8s: a native sidecar runs beside the containers, so its requests add to theirs.
    sidecars = [c.requests for c in plan.init_containers if c.sidecar]
    inits = [c.requests for c in plan.init_containers if not c.sidecar]
    return pod_demand([*(c.requests for c in plan.containers), *sidecars], inits)


def job_demand(job: BatchJob, definition: JobDefinitionSpec, node_index: int | None = None) -> Resources:
    """vCPU (millicpu), memory (MiB) and GPUs one pod of this job needs, after overrides.

    ECS-style: resourceRequirements VCPU/MEMORY/GPU (or deprecated vcpus/memory). EKS: requests,
    or limits where requests are missing (AWS: "the limits value is copied to the requests value"),
    summed over containers (init containers: the largest, if more). Nothing given: 1 vCPU and
    2048 MiB (see render.resources). A job with problems still gets a best-effort figure.

    Multi-node parallel jobs: the demand of node `node_index`, or without it the sum over all
    nodes (what the whole job holds once every node runs).
    """
    if definition.nodeProperties is not None and node_index is None:
        total = Resources()
        for first, count in _node_groups(job, definition):
            d = _plan_demand(plan_pod(job, definition, first))
            total = total + Resources(d.milli_cpu * count, d.memory_mib * count, d.gpus * count)
        return total
    return _plan_demand(plan_pod(job, definition, node_index))


def render_problems(job: BatchJob, definition: JobDefinitionSpec) -> list[str]:
    """Everything that makes the job unrunnable, one message per problem naming the field.

    Empty when the job can run. The operator fails the job (no retry) with these messages as its
    statusReason. Unresolved `Ref::` placeholders are not problems: AWS leaves them literal.
    """
    problems = _tag_problems(job, definition)
    if definition.nodeProperties is not None:
        problems += layout_problems(job, definition)
        plans = [plan_pod(job, definition, first) for first, _ in _node_groups(job, definition)]
    else:
        plans = [plan_pod(job, definition)]
    for plan in plans:
        for problem in plan.problems:
            if problem not in problems:
                problems.append(problem)
        for c in [*plan.containers, *plan.init_containers]:
            if not c.image and not any("image is required" in p for p in problems):
                problems.append(f"container {c.name!r} has no image")
    return problems


def _ce_parts(
    ce: ComputeEnvironment | str,
) -> tuple[str, str | None, dict[str, str], list[dict[str, Any]], bool]:
    """(name, uid, extra node selector, extra tolerations, select by CE label) of a compute environment."""
    if isinstance(ce, str):
        return ce, None, {}, [], True
    name = ce.metadata.name or ""
    spec = ce.spec
    tolerations: list[dict[str, Any]] = []
    for t in spec.nodeTaints or ():
        tol: dict[str, Any] = {"key": t.key, "operator": "Equal" if t.value is not None else "Exists"}
        if t.value is not None:
            tol["value"] = t.value
        tol["effect"] = t.effect
        tolerations.append(tol)
    node_labels = dict(spec.nodeLabels or {})
    # An UNMANAGED environment's nodes are the user's: its nodeLabels select them; the operator
    # can't count on its own label being there.
    by_ce_label = not (spec.type == "UNMANAGED" and node_labels)
    return name, ce.metadata.uid, node_labels, tolerations, by_ce_label


def _gpu_only(ce: ComputeEnvironment | str) -> bool:
    """True when a MANAGED compute environment's instance types are all GPU types."""
    if isinstance(ce, str) or ce.spec.type != "MANAGED":
        return False
    try:
        types = instance_types_of(ce)
    except UnknownInstanceType:
        return False
    return bool(types) and all(t.gpu for t in types)


def _container(c: ContainerPlan, batch_vars: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": c.name, "image": c.image}
    if c.sidecar:
        out["restartPolicy"] = "Always"
    if c.image_pull_policy:
        out["imagePullPolicy"] = c.image_pull_policy
    if c.command is not None:
        out["command"] = c.command
    if c.args is not None:
        out["args"] = c.args
    # A failed container's last log lines become its termination message (Kubernetes keeps at
    # most 2048 bytes / 80 lines of it), which the operator copies into the attempt's status
    # (attempts[].terminationMessage), so the reason outlives the pod (issue 15). The job
    # definition has no field for it (AWS has none); a message the program writes to
    # /dev/termination-log still wins.
    out["terminationMessagePolicy"] = "FallbackToLogsOnError"
    # AWS_BATCH_* first, so that user variables can refer to them with $(AWS_BATCH_JOB_ID).
    env: list[dict[str, Any]] = [{"name": n, "value": v} for n, v in batch_vars]
    env.extend({"name": n, "value": v} if v is not None else {"name": n} for n, v in c.env)
    env.extend(
        {"name": n, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for n, secret, key in c.secret_env
    )
    out["env"] = env
    resources: dict[str, Any] = {}
    if c.requests:
        resources["requests"] = dict(c.requests)
    if c.limits:
        resources["limits"] = dict(c.limits)
    out["resources"] = resources
    if c.volume_mounts:
        out["volumeMounts"] = c.volume_mounts
    if c.security_context:
        out["securityContext"] = c.security_context
    return out


def job_tolerations(ce_name: str, gpu: bool, extra: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """The tolerations of a job pod placed in compute environment ``ce_name``: both Batch taints
    of its nodes, the compute environment's own ``extra`` tolerations, and with ``gpu`` the GPU
    taint (GPU nodes are tainted nvidia.com/gpu:NoSchedule by core.nodepool; a GPU job tolerates
    it, and so does a CPU job placed in a compute environment that has only GPU types)."""
    out: list[dict[str, Any]] = [
        {"key": NODE_TAINT_COMPUTE_ENVIRONMENT, "operator": "Equal", "value": ce_name, "effect": effect}
        for effect in NODE_TAINT_EFFECTS
    ]
    out.extend(dict(t) for t in extra)
    if gpu:
        out.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    return out


def _restricted_defaults(spec: dict[str, Any]) -> None:
    """Fill what Pod Security `restricted` requires and an AWS JobDefinition can't say (a seccomp
    profile, dropped capabilities) or leaves unset (runAsNonRoot, allowPrivilegeEscalation), where
    the definition is silent. A privileged container or runAsUser 0 stays as asked: restricted
    refuses it, and the job fails saying so. Images must then run as a non-root user."""
    spec.setdefault("securityContext", {}).setdefault("seccompProfile", {"type": "RuntimeDefault"})
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        sc = c.setdefault("securityContext", {})
        if sc.get("privileged"):
            continue
        # AWS (EksContainerSecurityContext): allowPrivilegeEscalation "The default value is false".
        sc.setdefault("allowPrivilegeEscalation", False)
        sc.setdefault("capabilities", {"drop": ["ALL"]})
        if sc.get("runAsUser") != 0:
            sc.setdefault("runAsNonRoot", True)


def render_pod(
    job: BatchJob,
    definition: JobDefinitionSpec,
    *,
    revision: int,
    attempt: int,
    array_index: int | None = None,
    array_size: int | None = None,
    queue: str,
    compute_environment: ComputeEnvironment | str,
    node_index: int | None = None,
    main_node_ip: str | None = None,
    default_host_network: bool = True,
    restricted_defaults: bool = False,
) -> dict[str, Any]:
    """The v1 Pod of attempt `attempt` (from 1) of `job`, or of its array child `array_index`.

    `definition` is the JobDefinition revision the job pinned (number `revision`); `queue` and
    `compute_environment` are where the scheduler placed it (a ComputeEnvironment object, or just
    its name). Call `render_problems` first: rendering a job with problems gives a best-effort pod.

    Multi-node parallel jobs: `node_index` (default: the main node) picks the node; every node but
    the main one needs `main_node_ip` (AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS), known once
    the main node runs (AWS starts the other nodes after it).
    """
    meta = job.metadata
    if not meta.name or not meta.namespace or not meta.uid:
        raise ValueError("the BatchJob needs metadata.name, metadata.namespace and metadata.uid")
    if array_index is not None and array_size is None:
        array_size = job.spec.arrayProperties.size if job.spec.arrayProperties else None
        if array_size is None:
            raise ValueError("an array child needs array_size (the job has no arrayProperties)")
    mnp = definition.nodeProperties is not None
    if mnp and node_index is None:
        node_index = main_node(definition)
    if not mnp and node_index is not None:
        raise ValueError("node_index is only for multi-node parallel jobs")
    plan = plan_pod(job, definition, node_index)
    ce_name, ce_uid, ce_node_labels, ce_tolerations, by_ce_label = _ce_parts(compute_environment)

    # AWS: AWS_BATCH_JOB_ID is the job id; an array child's is "<parent id>:<index>".
    # A node's is "<job id>#<node index>".
    job_id = meta.uid
    if array_index is not None:
        job_id = child_job_id(meta.uid, array_index)
    elif node_index is not None:
        job_id = node_job_id(meta.uid, node_index)
    batch_vars = batch_env(
        BatchEnvContext(
            job_id=meta.uid,
            queue_name=queue,
            compute_environment_name=ce_name,
            attempt=attempt,
            array=ArrayChild(array_index, array_size) if array_index is not None and array_size else None,
            node=(
                MultiNode(node_index, num_nodes(job, definition), main_node(definition), main_node_ip)
                if node_index is not None
                else None
            ),
        )
    )

    if node_index is not None:
        # Batchyard's stable name of the main node (its headless Service), on every node.
        batch_vars = sorted([*batch_vars, (MAIN_NODE_HOST_ENV, main_service_host(job))])

    labels = _labels(
        job, plan, queue=queue, ce_name=ce_name, ce_uid=ce_uid, attempt=attempt, index=array_index
    )
    if node_index is not None:
        labels[LABEL_NODE_INDEX] = str(node_index)
    annotations = {k: v for k, v in propagated_tags(job, definition).items() if is_label_key(k)}
    annotations.update(plan.annotations)
    for key, value in (meta.annotations or {}).items():
        if key.startswith(KWOK_ANNOTATION_PREFIX):
            annotations[key] = value
    if node_index is not None:
        # kwok's exit stage reads one delay per pod: a node's own delay wins (devcluster/kwok.py)
        node_delay = (meta.annotations or {}).get(f"{KWOK_ANNOTATION_PREFIX}delay-node-{node_index}")
        if node_delay:
            annotations[f"{KWOK_ANNOTATION_PREFIX}delay"] = node_delay
    annotations[ANNOTATION_JOB_ID] = job_id
    annotations[ANNOTATION_JOB_DEFINITION] = f"{job.spec.job_definition_ref()[0]}:{revision}"

    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
    }
    if plan.init_containers:
        spec["initContainers"] = [_container(c, batch_vars) for c in plan.init_containers]
    spec["containers"] = [_container(c, batch_vars) for c in plan.containers]
    if plan.volumes:
        spec["volumes"] = plan.volumes
    spec.update(plan.pod_spec)
    host_network = plan.host_network if plan.host_network is not None else (default_host_network and plan.eks)
    if host_network:
        spec["hostNetwork"] = True
        # AWS: with host networking and no dnsPolicy, "dnsPolicy=ClusterFirstWithHostNet".
        spec.setdefault("dnsPolicy", "ClusterFirstWithHostNet")
    elif plan.host_network is False:
        spec["hostNetwork"] = False
    if restricted_defaults:
        _restricted_defaults(spec)

    node_selector: dict[str, str] = {}
    if by_ce_label:
        node_selector[NODE_LABEL_COMPUTE_ENVIRONMENT] = ce_name
    node_selector.update(ce_node_labels)
    node_selector.update(plan.node_selector)
    spec["nodeSelector"] = node_selector
    gpu_job = any(GPU_RESOURCE in c.limits for c in [*plan.containers, *plan.init_containers])
    spec["tolerations"] = job_tolerations(
        ce_name, tolerates_gpu_nodes(int(gpu_job), _gpu_only(compute_environment)), ce_tolerations
    )
    if node_index is not None:
        # AWS "Running MNP jobs": "Multi-node parallel job nodes are single-tenant" -- one pod per
        # node. Required anti-affinity against every Batchyard job pod, in every namespace, keeps
        # this pod off nodes that run another job, and (kube-scheduler honours existing pods'
        # required anti-affinity) keeps every other job pod off this pod's node.
        affinity = spec.setdefault("affinity", {})
        anti = affinity.setdefault("podAntiAffinity", {})
        anti.setdefault("requiredDuringSchedulingIgnoredDuringExecution", []).append(
            {
                "labelSelector": {"matchExpressions": [{"key": LABEL_JOB_UID, "operator": "Exists"}]},
                "namespaceSelector": {},
                "topologyKey": "kubernetes.io/hostname",
            }
        )

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(meta.name, attempt, array_index, node_index),
            "namespace": meta.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": owned_by_job(meta.name, meta.uid),
        },
        "spec": spec,
    }


def _labels(
    job: BatchJob,
    plan: PodPlan,
    *,
    queue: str,
    ce_name: str,
    ce_uid: str | None,
    attempt: int,
    index: int | None,
) -> dict[str, str]:
    """User labels first, then the operator's (which win: they are how the operator finds pods)."""
    uid = job.metadata.uid or ""
    labels = dict(plan.labels)
    labels.update(
        {
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_JOB_NAME: label_value(job.metadata.name or ""),
            LABEL_JOB_UID: label_value(uid),
            LABEL_QUEUE: label_value(queue),
            LABEL_COMPUTE_ENVIRONMENT: label_value(ce_name),
            LABEL_ATTEMPT: str(attempt),
            # AWS pods carry batch.amazonaws.com/job-id=<job id>. A child's id "<uid>:<index>" is
            # not a valid label value (':'), so the label holds the submitted job's id and the
            # array-index label tells children apart; the full id is the batchyard.io/job-id
            # annotation.
            AWS_LABEL_JOB_ID: label_value(uid),
        }
    )
    if ce_uid:
        labels[AWS_LABEL_CE_UUID] = label_value(ce_uid)
    if index is not None:
        labels[LABEL_ARRAY_INDEX] = str(index)
    return labels
