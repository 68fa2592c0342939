"""Pure translations between AWS Batch requests/responses and Batchyard custom resources.

Why this exists: the gateway's behaviour is almost entirely "which AWS field becomes which spec
field, and which status field becomes which response field". Keeping it pure (dicts in, dicts
out, time as an argument, no I/O) makes every rule unit-testable without a cluster.

Identity rules (issue 12): jobId is the BatchJob's uid; ARNs are
`arn:aws:batch:<region>:<account>:<kind>/<name>` with the access key's namespace as the account;
array children are `<jobId>:<index>`; timestamps are epoch milliseconds.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from batchyard.api import (
    BatchJobSpec,
    ComputeEnvironmentSpec,
    ConsumableResourceSpec,
    JobDefinitionSpec,
    JobQueueSpec,
    SchedulingPolicySpec,
)
from batchyard.core import limits
from batchyard.core.arrays import RangeSet
from batchyard.gateway.errors import client_error
from batchyard.render.names import pod_name

M = TypeVar("M", bound=BaseModel)

GROUP = "batchyard.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
# Original AWS names that are not valid Kubernetes names, and EC2-only fields, are kept here.
AWS_NAME_ANNOTATION = "gateway.batchyard.io/aws-name"
AWS_FIELDS_ANNOTATION = "gateway.batchyard.io/aws-fields"
JOB_TAGS_ANNOTATION = "gateway.batchyard.io/tags"

JOB_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")

# AWS resource kinds in ARNs, and the Kubernetes plural of each.
ARN_KINDS = {
    "job": "batchjobs",
    "job-definition": "jobdefinitions",
    "job-queue": "jobqueues",
    "compute-environment": "computeenvironments",
    "scheduling-policy": "schedulingpolicies",
    "consumable-resource": "consumableresources",
}
ARN_RE = re.compile(r"^arn:aws[a-z-]*:batch:([^:]*):([^:]*):([a-z-]+)/(.+)$")


@dataclass(frozen=True)
class Account:
    """Where ARNs point: the region the client signed for and the key's namespace."""

    region: str
    namespace: str

    def arn(self, kind: str, name: str) -> str:
        return f"arn:aws:batch:{self.region}:{self.namespace}:{kind}/{name}"


# --- names, ARNs, times -------------------------------------------------------------------------


def name_from(value: str, kind: str, field: str) -> str:
    """An object name from an AWS "name or ARN" field; ClientException naming the field otherwise."""
    if value.startswith("arn:"):
        m = ARN_RE.match(value)
        if not m or m.group(3) != kind:
            raise client_error(f"{field}: {value!r} is not a {kind} ARN")
        return m.group(4)
    return value


def parse_arn(value: str, field: str = "resourceArn") -> tuple[str, str]:
    """(AWS kind, name) of a Batch ARN."""
    m = ARN_RE.match(value)
    if not m or m.group(3) not in ARN_KINDS:
        raise client_error(f"{field}: {value!r} is not an AWS Batch resource ARN")
    return m.group(3), m.group(4)


_K8S_BAD = re.compile(r"[^a-z0-9-]+")


def k8s_name(aws_name: str, max_len: int = 63) -> str:
    """A valid DNS-1123 name for an AWS name (upper case, underscores): lower-cased, `_` -> `-`."""
    name = _K8S_BAD.sub("-", aws_name.lower().replace("_", "-")).strip("-")[:max_len].strip("-")
    return name or "x"


def job_name_prefix(job_name: str) -> str:
    """metadata.generateName for a job: AWS job names need not be unique, object names must.

    Kept short (40) so that pod names `<name>-<index>-a<attempt>` stay well within limits.
    """
    return k8s_name(job_name, 40) + "-"


def epoch_ms(value: str | None) -> int | None:
    """RFC 3339 -> epoch milliseconds (AWS response timestamps are Long milliseconds)."""
    if not value:
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def validated(model: type[M], spec: Mapping[str, Any], prefix: str = "") -> M:
    """A spec as the CRD's own model; ClientException naming the first bad field."""
    try:
        return model.model_validate(dict(spec))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function"))
        raise client_error(f"{prefix}{where}: {first['msg']}") from None


def validate_spec(model: type[BaseModel], spec: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Validate a spec with the CRD's own model; ClientException naming the first bad field."""
    validated(model, spec, prefix)
    return dict(spec)


def _drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


# --- jobs ----------------------------------------------------------------------------------------


def submit_job_manifest(params: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """SubmitJob request -> BatchJob manifest (generateName; the API server picks the name)."""
    spec = dict(params)
    spec["jobQueue"] = k8s_name(name_from(str(spec["jobQueue"]), "job-queue", "jobQueue"), 253)
    jd_name, revision = definition_ref(str(spec["jobDefinition"]))
    spec["jobDefinition"] = f"{jd_name}:{revision}" if revision else jd_name
    if spec.get("dependsOn"):
        spec["dependsOn"] = [
            {**d, "jobId": _job_id_ref(str(d["jobId"]))} if d.get("jobId") else d for d in spec["dependsOn"]
        ]
    # AWS's SubmitJob payload quota (30 KiB), counted as the admission webhook counts it
    # (core.limits): refused here, before anything is written, so the client gets a
    # ClientException naming the quota whether or not the webhook is installed (without it the
    # operator would only fail the stored job).
    problem = limits.submission_problem(validated(BatchJobSpec, spec), "SubmitJob")
    if problem is not None:
        raise client_error(problem)
    return {
        "apiVersion": API_VERSION,
        "kind": "BatchJob",
        "metadata": {"generateName": job_name_prefix(str(spec["jobName"])), "namespace": namespace},
        "spec": spec,
    }


def _job_id_ref(value: str) -> str:
    return name_from(value, "job", "dependsOn.jobId")


def split_job_id(job_id: str) -> tuple[str, int | None]:
    """`<uid>` or `<uid>:<index>` (an array child), from an id or a job ARN."""
    value = name_from(job_id, "job", "jobId")
    base, sep, index = value.partition(":")
    if sep:
        if not index.isdigit():
            raise client_error(f"jobId: {job_id!r} is not <jobId> or <jobId>:<array index>")
        return base, int(index)
    return base, None


def split_node_id(job_id: str) -> tuple[str, int] | None:
    """`<uid>#<node>` (a node of a multi-node parallel job, AWS's form) -> (uid, node), else None."""
    value = name_from(job_id, "job", "jobId")
    base, sep, node = value.partition("#")
    if not sep:
        return None
    if not base or not node.isdigit():
        raise client_error(f"jobId: {job_id!r} is not <jobId> or <jobId>#<node index>")
    return base, int(node)


def _status(obj: Mapping[str, Any]) -> dict[str, Any]:
    return dict(obj.get("status") or {})


def job_state(obj: Mapping[str, Any]) -> str:
    # Before the operator's first status write, a created job is SUBMITTED (AWS's first state).
    return str(_status(obj).get("status") or "SUBMITTED")


def job_created_ms(obj: Mapping[str, Any]) -> int:
    return epoch_ms(_status(obj).get("createdAt")) or epoch_ms(obj["metadata"].get("creationTimestamp")) or 0


def job_name(obj: Mapping[str, Any]) -> str:
    return str(obj["spec"].get("jobName") or obj["metadata"]["name"])


def job_definition_arn(obj: Mapping[str, Any], account: Account) -> str:
    name, _, rev = str(obj["spec"]["jobDefinition"]).partition(":")
    revision = _status(obj).get("jobDefinitionRevision") or rev
    return account.arn("job-definition", f"{name}:{revision}" if revision else name)


def child_states(obj: Mapping[str, Any]) -> dict[int, str]:
    """Array child index -> state, from the parent's status index ranges."""
    detail = _status(obj).get("arrayProperties") or {}
    states = (detail.get("children") or {}).get("states") or {}
    out: dict[int, str] = {}
    for state, ranges in states.items():
        for start, end in RangeSet.parse(str(ranges)).ranges():
            for i in range(start, end + 1):
                out[i] = state
    size = int((obj["spec"].get("arrayProperties") or {}).get("size") or 0)
    for i in range(size):
        # AWS: children start SUBMITTED/PENDING with the parent; before the operator records
        # ranges, a child has the parent's state.
        out.setdefault(i, "PENDING" if job_state(obj) not in ("SUBMITTED",) else "SUBMITTED")
    return out


def mnp_nodes(obj: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """A multi-node parallel job's nodes of the current attempt (status.nodeProperties.nodes)."""
    nodes = ((_status(obj).get("nodeProperties") or {}).get("nodes")) or []
    return {int(n["nodeIndex"]): dict(n) for n in nodes if n.get("nodeIndex") is not None}


def node_state(obj: Mapping[str, Any], node: Mapping[str, Any]) -> str:
    # A node without a recorded state has the job's (before its pod exists).
    return str(node.get("status") or job_state(obj))


# What an attempt shows in AWS's AttemptContainerDetail / ContainerDetail. logStreamName is
# `pod/<pod>` here (status.attempts[].logStreamName: `kubectl logs` or `batchyard logs` reads it
# while the pod is kept), where AWS names a CloudWatch Logs stream.
_ATTEMPT_CONTAINER_FIELDS = ("exitCode", "reason", "logStreamName")


def _attempts(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for a in _status(obj).get("attempts") or []:
        container = _drop_none({k: a.get(k) for k in _ATTEMPT_CONTAINER_FIELDS})
        out.append(
            _drop_none(
                {
                    "container": container or None,
                    "startedAt": epoch_ms(a.get("startedAt")),
                    "stoppedAt": epoch_ms(a.get("stoppedAt")),
                    "statusReason": a.get("statusReason"),
                }
            )
        )
    return out


def pinned_definition(definition: Mapping[str, Any] | None, revision: int | None) -> Mapping[str, Any]:
    """The spec of the definition revision a job pinned (the latest recorded one before it has
    pinned one, the live spec before any is recorded); empty when the definition is unknown."""
    if definition is None:
        return {}
    revisions = _status(definition).get("revisions") or []
    chosen = [r for r in revisions if revision is not None and r.get("revision") == revision] or revisions[
        -1:
    ]
    spec: Mapping[str, Any] = (chosen[0].get("spec") if chosen else None) or definition.get("spec") or {}
    return spec


def _merged_by(base: Sequence[Mapping[str, Any]], over: Sequence[Mapping[str, Any]], key: str) -> list[Any]:
    """AWS override semantics for environment / resourceRequirements: an override replaces the
    entry with the same key, others are added."""
    out = {str(e.get(key)): dict(e) for e in base}
    out.update({str(e.get(key)): dict(e) for e in over})
    return list(out.values())


def container_detail(properties: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """ContainerDetail: the definition's containerProperties with the job's containerOverrides."""
    out = dict(properties)
    for k in ("command", "instanceType"):
        if overrides.get(k) is not None:
            out[k] = overrides[k]
    if overrides.get("environment"):
        out["environment"] = _merged_by(properties.get("environment") or [], overrides["environment"], "name")
    if overrides.get("resourceRequirements"):
        out["resourceRequirements"] = _merged_by(
            properties.get("resourceRequirements") or [], overrides["resourceRequirements"], "type"
        )
    return out


def _eks_containers(
    base: Sequence[Mapping[str, Any]], over: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    out = [dict(c) for c in base]
    for i, o in enumerate(over):
        at = next((j for j, c in enumerate(out) if o.get("name") and c.get("name") == o["name"]), i)
        if at < len(out):
            out[at].update({k: v for k, v in o.items() if v is not None and k != "name"})
    return out


def eks_properties_detail(
    properties: Mapping[str, Any], override: Mapping[str, Any], last: Mapping[str, Any] | None
) -> dict[str, Any]:
    """EksPropertiesDetail: the definition's podProperties with the job's eksPropertiesOverride,
    and the current attempt's pod and node."""
    pod = dict(properties.get("podProperties") or {})
    over = override.get("podProperties") or {}
    for key in ("containers", "initContainers"):
        if over.get(key):
            pod[key] = _eks_containers(pod.get(key) or [], over[key])
    if over.get("metadata"):
        meta = dict(pod.get("metadata") or {})
        for key, values in over["metadata"].items():
            meta[key] = {**(meta.get(key) or {}), **values} if isinstance(values, dict) else values
        pod["metadata"] = meta
    if last:
        pod.update(_drop_none({"podName": last.get("podName"), "nodeName": last.get("nodeName")}))
    return {"podProperties": pod}


def _eks_attempts(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """EksAttemptDetail per attempt (AWS eksAttempts): the pod, its node, each container's end."""
    out = []
    ns = obj["metadata"].get("namespace")
    for a in _status(obj).get("attempts") or []:
        containers = [
            _drop_none({"name": c.get("name"), "exitCode": c.get("exitCode"), "reason": c.get("reason")})
            for c in a.get("containers") or []
        ] or ([_drop_none({"exitCode": a.get("exitCode"), "reason": a.get("reason")})]
              if a.get("exitCode") is not None or a.get("reason") else [])  # fmt: skip
        out.append(
            _drop_none(
                {
                    "containers": containers,
                    "podName": a.get("podName"),
                    "podNamespace": ns if a.get("podName") else None,
                    "nodeName": a.get("nodeName"),
                    "startedAt": epoch_ms(a.get("startedAt")),
                    "stoppedAt": epoch_ms(a.get("stoppedAt")),
                    "statusReason": a.get("statusReason"),
                }
            )
        )
    return out


def job_detail(
    obj: Mapping[str, Any],
    account: Account,
    index: int | None = None,
    definition: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """DescribeJobs JobDetail for a BatchJob (or for one array child with `index`).

    `definition` is the job's JobDefinition object when the caller has it: the pinned revision
    gives `container` / `eksProperties` (with the job's overrides), `eksAttempts` for EKS jobs,
    `platformCapabilities`, the definition's consumable resources and the node ranges.
    Effective values the operator records in status (retryStrategy, timeout, parameters,
    schedulingPriority) win over the job's own spec.
    """
    st = _status(obj)
    spec = obj["spec"]
    uid = str(obj["metadata"]["uid"])
    jd = pinned_definition(definition, st.get("jobDefinitionRevision"))
    detail: dict[str, Any] = {
        "jobArn": account.arn("job", uid),
        "jobName": job_name(obj),
        "jobId": uid,
        "jobQueue": account.arn("job-queue", spec["jobQueue"]),
        "status": job_state(obj),
        "statusReason": st.get("statusReason"),
        "createdAt": job_created_ms(obj),
        "startedAt": epoch_ms(st.get("startedAt")),
        "stoppedAt": epoch_ms(st.get("stoppedAt")),
        "dependsOn": spec.get("dependsOn") or [],
        "jobDefinition": job_definition_arn(obj, account),
        "parameters": st.get("parameters") or spec.get("parameters") or {},
        "attempts": _attempts(obj),
        "retryStrategy": st.get("retryStrategy") or spec.get("retryStrategy"),
        "timeout": st.get("timeout") or spec.get("timeout"),
        "tags": job_tags(obj) or None,
        "propagateTags": spec.get("propagateTags"),
        "shareIdentifier": spec.get("shareIdentifier"),
        "schedulingPriority": st.get("schedulingPriority", spec.get("schedulingPriorityOverride")),
        "isCancelled": bool(st.get("isCancelled")),
        "isTerminated": bool(st.get("isTerminated")),
        "platformCapabilities": jd.get("platformCapabilities") or [],
        "consumableResourceProperties": spec.get("consumableResourcePropertiesOverride")
        or jd.get("consumableResourceProperties"),
    }
    attempts = st.get("attempts") or []
    last = attempts[-1] if attempts else None
    exit_ = _drop_none({k: last.get(k) for k in _ATTEMPT_CONTAINER_FIELDS}) if last else {}
    if jd.get("containerProperties"):
        detail["container"] = {**container_detail(jd["containerProperties"], spec.get("containerOverrides") or {}),
                               **exit_}  # fmt: skip
    elif spec.get("containerOverrides"):
        detail["container"] = spec["containerOverrides"]
    if jd.get("eksProperties"):
        detail["eksProperties"] = eks_properties_detail(
            jd["eksProperties"], spec.get("eksPropertiesOverride") or {}, last
        )
        detail["eksAttempts"] = _eks_attempts(obj)
    elif spec.get("eksPropertiesOverride"):
        detail["eksProperties"] = spec["eksPropertiesOverride"]
    mnp = st.get("nodeProperties") or {}
    if mnp.get("numNodes") is not None:
        # AWS NodeProperties: the job's node count, main node and the definition's node ranges.
        ranges = (jd.get("nodeProperties") or {}).get("nodeRangeProperties")
        detail["nodeProperties"] = _drop_none(
            {"numNodes": mnp["numNodes"], "mainNode": mnp.get("mainNode"), "nodeRangeProperties": ranges}
        )
    array = spec.get("arrayProperties")
    if array and index is None:
        summary = ((st.get("arrayProperties") or {}).get("statusSummary")) or {}
        detail["arrayProperties"] = {
            "size": array["size"],
            "statusSummary": {s: int(summary.get(s) or 0) for s in JOB_STATES},
        }
    elif array and index is not None:
        overlay, log_stream = _child_overlay(obj, account, index)
        detail.update(overlay)
        detail.pop("eksAttempts", None)  # a child's attempts are not kept one by one
        if "container" in detail:
            last_exit = (detail["attempts"] or [{}])[-1].get("container") or {}
            detail["container"] = {
                **{k: v for k, v in detail["container"].items() if k not in _ATTEMPT_CONTAINER_FIELDS},
                **_drop_none({"logStreamName": log_stream}),
                **last_exit,
            }
    return _drop_none(detail)


def _child_times(children: Mapping[str, Any], index: int) -> tuple[int | None, int | None]:
    """A child's startedAt/stoppedAt (epoch ms) of its current or last attempt, as the operator
    keeps them (`children.times`, "started-stopped", for at most 500 children)."""
    text = (children.get("times") or {}).get(str(index))
    if not isinstance(text, str):
        return None, None
    started, _, stopped = text.partition("-")
    return (int(started) if started.isdigit() else None), (int(stopped) if stopped.isdigit() else None)


def _child_attempt(children: Mapping[str, Any], index: int) -> int:
    """A child's current attempt number (`children.attempts` lists attempts 2 and up)."""
    for number, ranges in (children.get("attempts") or {}).items():
        if index in RangeSet.parse(str(ranges)):
            return int(number)
    return 1


def _child_overlay(obj: Mapping[str, Any], account: Account, index: int) -> tuple[dict[str, Any], str | None]:
    """A child's own JobDetail fields, and the log stream of its current attempt (None before
    it started)."""
    uid = str(obj["metadata"]["uid"])
    state = child_states(obj).get(index, "SUBMITTED")
    children = ((_status(obj).get("arrayProperties") or {}).get("children")) or {}
    last = (children.get("lastExits") or {}).get(str(index))
    started, stopped = _child_times(children, index)
    finished = state in ("SUCCEEDED", "FAILED")
    # The attempt's log, as the parent's attempts name it (status.attempts[].logStreamName): the
    # child's deterministic pod name.
    pod = pod_name(str(obj["metadata"]["name"]), _child_attempt(children, index), index)
    log_stream = f"pod/{pod}" if last or started is not None else None
    status_reason = None
    if finished and last:
        status_reason = last.get("statusReason") or "Essential container in task exited"
    out: dict[str, Any] = {
        "jobArn": account.arn("job", f"{uid}:{index}"),
        "jobId": f"{uid}:{index}",
        "jobName": job_name(obj),
        "status": state,
        "statusReason": status_reason,
        "arrayProperties": {"index": index},
        "attempts": [
            _drop_none(
                {
                    "container": _drop_none(
                        {
                            "exitCode": last.get("exitCode"),
                            "reason": last.get("reason"),
                            "logStreamName": log_stream,
                        }
                    ),
                    "startedAt": started,
                    "stoppedAt": stopped,
                    "statusReason": status_reason,
                }
            )
        ]
        if last
        else [],
        "startedAt": started,
        "stoppedAt": stopped if finished else None,
    }
    return out, log_stream


def node_detail(
    obj: Mapping[str, Any], account: Account, node: int, definition: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """DescribeJobs JobDetail for node `node` of a multi-node parallel job (`<jobId>#<node>`),
    None when the job has no such node."""
    found = mnp_nodes(obj).get(node)
    if found is None:
        return None
    uid = str(obj["metadata"]["uid"])
    detail = job_detail(obj, account, definition=definition)
    detail.pop("nodeProperties", None)
    detail.pop("container", None)  # the job's (main node's) exit is not this node's
    detail.pop("eksAttempts", None)
    state = node_state(obj, found)
    container = _drop_none({"exitCode": found.get("exitCode"), "reason": found.get("reason")})
    detail.update(
        {
            "jobArn": account.arn("job", f"{uid}#{node}"),
            "jobId": f"{uid}#{node}",
            "status": state,
            "nodeDetails": {"nodeIndex": node, "isMainNode": bool(found.get("isMainNode"))},
            "attempts": [{"container": container}] if container and state in ("SUCCEEDED", "FAILED") else [],
        }
    )
    if container:
        detail["container"] = container
    if state not in ("SUCCEEDED", "FAILED"):
        detail.pop("stoppedAt", None)
    if state in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING"):
        detail.pop("startedAt", None)
    return _drop_none(detail)


def job_summary(obj: Mapping[str, Any], account: Account, index: int | None = None) -> dict[str, Any]:
    """ListJobs JobSummary."""
    d = job_detail(obj, account, index)
    summary = {k: d.get(k) for k in (
        "jobArn", "jobId", "jobName", "createdAt", "status", "statusReason", "startedAt", "stoppedAt",
        "jobDefinition", "shareIdentifier", "isCancelled", "isTerminated",
    )}  # fmt: skip
    if d.get("attempts"):
        last = d["attempts"][-1].get("container")
        if last:
            summary["container"] = last
    if obj["spec"].get("arrayProperties"):
        summary["arrayProperties"] = (
            {"index": index} if index is not None else {"size": obj["spec"]["arrayProperties"]["size"]}
        )
    if d.get("nodeProperties"):
        summary["nodeProperties"] = {"numNodes": d["nodeProperties"]["numNodes"]}
    return _drop_none(summary)


def node_summary(obj: Mapping[str, Any], account: Account, node: int) -> dict[str, Any] | None:
    """ListJobs(multiNodeJobId) JobSummary of one node: `<jobId>#<node>` with NodePropertiesSummary."""
    d = node_detail(obj, account, node)
    if d is None:
        return None
    summary = {k: d.get(k) for k in (
        "jobArn", "jobId", "jobName", "createdAt", "status", "statusReason", "startedAt", "stoppedAt",
        "jobDefinition", "shareIdentifier", "isCancelled", "isTerminated",
    )}  # fmt: skip
    if d.get("attempts"):
        summary["container"] = d["attempts"][-1].get("container")
    num = (_status(obj).get("nodeProperties") or {}).get("numNodes")
    summary["nodeProperties"] = _drop_none(
        {"isMainNode": d["nodeDetails"]["isMainNode"], "numNodes": num, "nodeIndex": node}
    )
    return _drop_none(summary)


def job_tags(obj: Mapping[str, Any]) -> dict[str, str]:
    """A job's tags: spec.tags (immutable after submission) plus those added by TagResource."""
    tags = dict(obj["spec"].get("tags") or {})
    extra = ((obj.get("metadata") or {}).get("annotations") or {}).get(JOB_TAGS_ANNOTATION)
    if extra:
        tags.update(json.loads(extra))
    return tags


# --- ListJobs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    """A parsed ListJobs request."""

    queue: str | None
    array_job_id: str | None
    statuses: frozenset[str] | None  # None: any status (AWS: filters ignore jobStatus)
    name: str | None = None
    name_prefix: bool = False
    definition: str | None = None
    definition_prefix: bool = False
    before_ms: int | None = None
    after_ms: int | None = None
    max_results: int = 100
    after_key: tuple[int, str] | None = None
    share: str | None = None
    multi_node_job_id: str | None = None


def _token(key: tuple[int, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _untoken(token: str) -> tuple[int, str]:
    try:
        created, ident = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(created), str(ident)
    except (ValueError, TypeError):
        raise client_error("nextToken: not a token this service returned") from None


def parse_list_jobs(params: Mapping[str, Any]) -> ListQuery:
    """Validate a ListJobs request (AWS rules from the ListJobs reference)."""
    scopes = [k for k in ("jobQueue", "arrayJobId", "multiNodeJobId") if params.get(k)]
    if len(scopes) != 1:
        # AWS: "You must specify only one of the following items: jobQueue, arrayJobId, multiNodeJobId".
        raise client_error("jobQueue, arrayJobId, multiNodeJobId: specify exactly one of them")
    raw_max = params.get("maxResults")
    max_results = 100 if raw_max is None else int(raw_max)
    if not 1 <= max_results <= 1000:
        raise client_error("maxResults: must be between 1 and 1000")
    filters = params.get("filters") or []
    if len(filters) > 1:
        raise client_error("filters: only one filter can be used at a time")
    status = params.get("jobStatus")
    # AWS: "If you don't specify a status, only RUNNING jobs are returned"; with a filter,
    # "the jobStatus parameter is ignored and jobs with any status are returned".
    statuses: frozenset[str] | None = None if filters else frozenset([status or "RUNNING"])
    q: dict[str, Any] = {}
    for f in filters:
        name, values = f.get("name"), f.get("values") or []
        if len(values) != 1:
            raise client_error(f"filters.values: {name} takes exactly one value")
        value = str(values[0])
        if name == "JOB_NAME":
            q["name_prefix"] = value.endswith("*")
            q["name"] = value.rstrip("*").lower()
        elif name == "JOB_DEFINITION":
            ref = name_from(value, "job-definition", "filters.values") if value.startswith("arn:") else value
            q["definition_prefix"] = ref.endswith("*")
            q["definition"] = ref.rstrip("*")
        elif name in ("BEFORE_CREATED_AT", "AFTER_CREATED_AT"):
            if not value.isdigit():
                raise client_error(f"filters.values: {name} takes epoch milliseconds")
            q["before_ms" if name == "BEFORE_CREATED_AT" else "after_ms"] = int(value)
        elif name == "SHARE_IDENTIFIER":
            q["share"] = value
        else:
            raise client_error(
                f"filters.name: {name!r} must be JOB_NAME, JOB_DEFINITION, BEFORE_CREATED_AT, "
                "AFTER_CREATED_AT or SHARE_IDENTIFIER"
            )
    return ListQuery(
        queue=name_from(str(params["jobQueue"]), "job-queue", "jobQueue") if params.get("jobQueue") else None,
        array_job_id=split_job_id(str(params["arrayJobId"]))[0] if params.get("arrayJobId") else None,
        multi_node_job_id=_multi_node_job_id(str(params["multiNodeJobId"]))
        if params.get("multiNodeJobId")
        else None,
        statuses=statuses,
        max_results=max_results,
        after_key=_untoken(str(params["nextToken"])) if params.get("nextToken") else None,
        **q,
    )


def _multi_node_job_id(value: str) -> str:
    uid = name_from(value, "job", "multiNodeJobId")
    if ":" in uid or "#" in uid:
        raise client_error(f"multiNodeJobId: {value!r} is not the ID of a multi-node parallel job")
    return uid


def _definition_matches(obj: Mapping[str, Any], q: ListQuery) -> bool:
    if q.definition is None:
        return True
    ref = str(obj["spec"]["jobDefinition"])
    name = ref.partition(":")[0]
    rev = _status(obj).get("jobDefinitionRevision")
    full = f"{name}:{rev}" if rev else ref
    if q.definition_prefix:
        return full.startswith(q.definition) or name.startswith(q.definition)
    return q.definition in (name, full, ref)


def list_jobs(
    jobs: Iterable[Mapping[str, Any]], q: ListQuery, account: Account
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of JobSummary entries and the next token.

    Order is newest first by (createdAt, id), and the token is the last key returned, so a page
    continues strictly after it: jobs changing state or new submissions never shift or repeat
    entries that stay in the result (AWS: nextToken "returned ... when the results exceed maxResults").
    """
    rows: list[tuple[tuple[int, str], dict[str, Any]]] = []
    for obj in jobs:
        created = job_created_ms(obj)
        if q.before_ms is not None and not created < q.before_ms:
            continue
        if q.after_ms is not None and not created > q.after_ms:
            continue
        if q.name is not None:
            nm = job_name(obj).lower()
            if not (nm.startswith(q.name) if q.name_prefix else nm == q.name):
                continue
        if not _definition_matches(obj, q):
            continue
        if q.share is not None and obj["spec"].get("shareIdentifier") != q.share:
            continue
        if q.array_job_id is not None:
            for index, state in sorted(child_states(obj).items()):
                if q.statuses is None or state in q.statuses:
                    rows.append(((index, str(index)), job_summary(obj, account, index)))
            continue
        if q.multi_node_job_id is not None:
            for node, found in sorted(mnp_nodes(obj).items()):
                summary = node_summary(obj, account, node)
                if summary is not None and (q.statuses is None or node_state(obj, found) in q.statuses):
                    rows.append(((node, str(node)), summary))
            continue
        if q.queue is not None and obj["spec"].get("jobQueue") != q.queue:
            continue
        if q.statuses is not None and job_state(obj) not in q.statuses:
            continue
        rows.append(((created, str(obj["metadata"]["uid"])), job_summary(obj, account)))
    if q.array_job_id is not None or q.multi_node_job_id is not None:
        rows.sort(key=lambda r: r[0])  # children and nodes in index order
        if q.after_key is not None:
            rows = [r for r in rows if r[0] > q.after_key]
    else:
        rows.sort(key=lambda r: r[0], reverse=True)  # newest first
        if q.after_key is not None:
            rows = [r for r in rows if r[0] < q.after_key]
    page = rows[: q.max_results]
    token = _token(page[-1][0]) if len(rows) > q.max_results else None
    return [r[1] for r in page], token


# --- job definitions -----------------------------------------------------------------------------

_JD_RESPONSE_ONLY = ("jobDefinitionName",)


def register_spec(params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """RegisterJobDefinition -> (object name, JobDefinition spec)."""
    body = dict(params)
    aws_name = str(body.pop("jobDefinitionName"))
    # AWS: "up to 128 letters (uppercase and lowercase), numbers, hyphens, and underscores".
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", aws_name):
        raise client_error("jobDefinitionName: up to 128 letters, numbers, hyphens and underscores")
    name = k8s_name(aws_name, 128)
    # AWS's RegisterJobDefinition quota (24 KiB), counted as the admission webhook counts it:
    # refused before anything is written (without the webhook the operator would only refuse
    # the stored revision).
    problem = limits.definition_problem(validated(JobDefinitionSpec, body), "RegisterJobDefinition")
    if problem is not None:
        raise client_error(problem)
    return name, body


def definition_entries(obj: Mapping[str, Any], account: Account) -> list[dict[str, Any]]:
    """DescribeJobDefinitions entries: one per recorded revision."""
    name = str((obj["metadata"].get("annotations") or {}).get(AWS_NAME_ANNOTATION) or obj["metadata"]["name"])
    out = []
    for rev in _status(obj).get("revisions") or []:
        spec = dict(rev.get("spec") or {})
        spec.pop("inactiveRevisions", None)
        spec.pop("registrationId", None)
        kind = "EKS" if spec.get("eksProperties") else "ECS"
        out.append(
            {
                "jobDefinitionName": name,
                "jobDefinitionArn": account.arn("job-definition", f"{name}:{rev['revision']}"),
                "revision": int(rev["revision"]),
                "status": rev.get("state") or "ACTIVE",
                "containerOrchestrationType": kind,
                **spec,
            }
        )
    return out


def definition_ref(value: str, field: str = "jobDefinition") -> tuple[str, int | None]:
    """`name`, `name:revision` or a job-definition ARN -> (object name, revision)."""
    ref = name_from(value, "job-definition", field)
    name, sep, rev = ref.partition(":")
    if sep and not rev.isdigit():
        raise client_error(f"{field}: {value!r} must be name, name:revision or a job definition ARN")
    return k8s_name(name, 128), int(rev) if sep else None


# --- queues, compute environments, scheduling policies, consumable resources ---------------------


def queue_spec(params: Mapping[str, Any], existing: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """CreateJobQueue / UpdateJobQueue -> JobQueue spec."""
    spec: dict[str, Any] = dict(existing or {})
    for key in ("state", "priority", "jobStateTimeLimitActions", "tags"):
        if key in params:
            spec[key] = params[key]
    if "computeEnvironmentOrder" in params:
        spec["computeEnvironmentOrder"] = [
            {
                "order": o["order"],
                "computeEnvironment": k8s_name(
                    name_from(str(o["computeEnvironment"]), "compute-environment", "computeEnvironmentOrder"),
                    253,
                ),
            }
            for o in params["computeEnvironmentOrder"]
        ]
    if params.get("schedulingPolicyArn"):
        spec["schedulingPolicy"] = k8s_name(
            name_from(str(params["schedulingPolicyArn"]), "scheduling-policy", "schedulingPolicyArn"), 253
        )
    if params.get("serviceEnvironmentOrder"):
        raise client_error("serviceEnvironmentOrder: service environments (SageMaker) have no meaning here")
    if params.get("jobQueueType") not in (None, "EKS", "ECS"):
        raise client_error(f"jobQueueType: {params['jobQueueType']} has no meaning here (EKS or ECS)")
    validate_spec(JobQueueSpec, spec)
    return spec


def queue_detail(obj: Mapping[str, Any], account: Account) -> dict[str, Any]:
    spec, st, name = obj["spec"], _status(obj), aws_name(obj)
    return _drop_none(
        {
            "jobQueueName": name,
            "jobQueueArn": account.arn("job-queue", name),
            "state": spec.get("state", "ENABLED"),
            "schedulingPolicyArn": account.arn("scheduling-policy", spec["schedulingPolicy"])
            if spec.get("schedulingPolicy")
            else None,
            "status": st.get("status") or "CREATING",
            "statusReason": st.get("statusReason"),
            "priority": spec["priority"],
            "computeEnvironmentOrder": [
                {
                    "order": o["order"],
                    "computeEnvironment": account.arn("compute-environment", o["computeEnvironment"]),
                }
                for o in spec.get("computeEnvironmentOrder") or []
            ],
            "jobQueueType": "EKS",
            "tags": spec.get("tags") or {},
            "jobStateTimeLimitActions": spec.get("jobStateTimeLimitActions") or [],
        }
    )


# EC2/ECS-only fields: accepted and stored (AWS shape) but they do nothing on Kubernetes.
_CE_EC2_ONLY = (
    "imageId", "subnets", "securityGroupIds", "ec2KeyPair", "instanceRole", "placementGroup",
    "spotIamFleetRole", "launchTemplate", "ec2Configuration", "managedInstancesProvider",
    "capacityTags", "updateToLatestImageVersion",
)  # fmt: skip
_CE_TOP_ONLY = ("serviceRole", "context", "ecsSettings")


def ce_spec(
    params: Mapping[str, Any], provider: Mapping[str, Any], existing: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create/UpdateComputeEnvironment -> (spec, EC2-only fields kept in an annotation)."""
    spec: dict[str, Any] = dict(existing or {})
    stored: dict[str, Any] = {}
    for key in ("type", "state", "unmanagedvCpus", "tags", "updatePolicy"):
        if key in params:
            spec[key] = params[key]
    for key in _CE_TOP_ONLY:
        if key in params:
            stored[key] = params[key]
    if params.get("eksConfiguration"):
        eks = dict(params["eksConfiguration"])
        stored["eksConfiguration"] = dict(eks)
        if eks.get("kubernetesNamespace"):
            spec["eksConfiguration"] = {"kubernetesNamespace": eks["kubernetesNamespace"]}
    if "computeResources" in params:
        cr = dict(spec.get("computeResources") or {})
        kept: dict[str, Any] = {}
        for key, value in params["computeResources"].items():
            if key in _CE_EC2_ONLY:
                kept[key] = value
            else:
                cr[key] = value
        if cr.get("type") in ("FARGATE", "FARGATE_SPOT"):
            raise client_error(
                "computeResources.type: FARGATE compute environments have no meaning here (EC2 or SPOT)"
            )
        spec["computeResources"] = cr
        if kept:
            stored["computeResources"] = kept
    if spec.get("type", "MANAGED") == "MANAGED":
        spec.setdefault("provider", dict(provider))
    else:
        spec.setdefault("provider", {"type": "unmanaged"})
    validate_spec(ComputeEnvironmentSpec, spec)
    return spec, stored


def ce_detail(obj: Mapping[str, Any], account: Account) -> dict[str, Any]:
    spec, st, name = obj["spec"], _status(obj), aws_name(obj)
    stored = json.loads((obj["metadata"].get("annotations") or {}).get(AWS_FIELDS_ANNOTATION) or "{}")
    cr = spec.get("computeResources")
    if cr is not None:
        cr = {**cr, **(stored.get("computeResources") or {})}
    return _drop_none(
        {
            "computeEnvironmentName": name,
            "computeEnvironmentArn": account.arn("compute-environment", name),
            "type": spec.get("type", "MANAGED"),
            "state": spec.get("state", "ENABLED"),
            "status": st.get("status") or "CREATING",
            "statusReason": st.get("statusReason"),
            "unmanagedvCpus": spec.get("unmanagedvCpus"),
            "computeResources": cr,
            "serviceRole": stored.get("serviceRole"),
            "updatePolicy": spec.get("updatePolicy"),
            "eksConfiguration": stored.get("eksConfiguration"),
            "containerOrchestrationType": "EKS",
            "uuid": obj["metadata"].get("uid"),
            "tags": spec.get("tags") or {},
            "context": stored.get("context"),
        }
    )


def sp_spec(params: Mapping[str, Any], existing: Mapping[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = dict(existing or {})
    if params.get("quotaSharePolicy"):
        raise client_error("quotaSharePolicy: quota shares have no meaning here; use fairsharePolicy")
    for key in ("fairsharePolicy", "tags"):
        if key in params:
            spec[key] = params[key]
    validate_spec(SchedulingPolicySpec, spec)
    return spec


def sp_detail(obj: Mapping[str, Any], account: Account) -> dict[str, Any]:
    name = aws_name(obj)
    return _drop_none(
        {
            "name": name,
            "arn": account.arn("scheduling-policy", name),
            "fairsharePolicy": obj["spec"].get("fairsharePolicy"),
            "tags": obj["spec"].get("tags") or {},
        }
    )


def cr_spec(params: Mapping[str, Any]) -> dict[str, Any]:
    spec = _drop_none(
        {
            "resourceType": params.get("resourceType"),
            "totalQuantity": params.get("totalQuantity", 0),
            "tags": params.get("tags"),
        }
    )
    validate_spec(ConsumableResourceSpec, spec)
    return spec


def cr_update(spec: Mapping[str, Any], operation: str | None, quantity: int | None) -> dict[str, Any]:
    """UpdateConsumableResource: SET, ADD or REMOVE the total quantity (AWS)."""
    total = int(spec.get("totalQuantity") or 0)
    op = operation or "SET"
    if quantity is None:
        raise client_error("quantity: required to update a consumable resource")
    if quantity < 0:
        raise client_error("quantity: must be non-negative")
    if op == "SET":
        total = quantity
    elif op == "ADD":
        total += quantity
    elif op == "REMOVE":
        if quantity > total:
            raise client_error(f"quantity: cannot remove {quantity} from a total of {total}")
        total -= quantity
    else:
        raise client_error(f"operation: {op!r} must be SET, ADD or REMOVE")
    return {**spec, "totalQuantity": total}


def cr_detail(obj: Mapping[str, Any], account: Account) -> dict[str, Any]:
    spec, st, name = obj["spec"], _status(obj), aws_name(obj)
    total = int(spec.get("totalQuantity") or 0)
    in_use = int(st.get("inUseQuantity") or 0)
    return _drop_none(
        {
            "consumableResourceName": name,
            "consumableResourceArn": account.arn("consumable-resource", name),
            "totalQuantity": total,
            "inUseQuantity": in_use,
            "availableQuantity": st.get("availableQuantity", max(0, total - in_use)),
            "resourceType": spec.get("resourceType", "REPLENISHABLE"),
            "createdAt": epoch_ms(obj["metadata"].get("creationTimestamp")),
            "tags": spec.get("tags") or {},
        }
    )


def aws_name(obj: Mapping[str, Any]) -> str:
    """The AWS name a resource was created with (kept when it is not a valid object name)."""
    return str((obj["metadata"].get("annotations") or {}).get(AWS_NAME_ANNOTATION) or obj["metadata"]["name"])


def object_meta(
    aws: str, namespace: str | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """metadata for a named resource: a valid object name, the AWS name kept when they differ."""
    name = k8s_name(aws, 253)
    annotations = dict(extra or {})
    if name != aws:
        annotations[AWS_NAME_ANNOTATION] = aws
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = annotations
    return meta


def paginate(
    items: Sequence[dict[str, Any]], key: str, max_results: int | None, token: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Name-ordered pagination for the Describe*/List* of named resources."""
    ordered = sorted(items, key=lambda i: str(i[key]))
    if token:
        after = _untoken(token)[1]
        ordered = [i for i in ordered if str(i[key]) > after]
    limit = max_results or 100
    page = ordered[:limit]
    return page, _token((0, str(page[-1][key]))) if len(ordered) > limit else None


def snapshot(jobs: Iterable[Mapping[str, Any]], queue: str, account: Account, now_ms: int) -> dict[str, Any]:
    """GetJobQueueSnapshot from the queue positions the operator writes (first 100 RUNNABLE)."""
    front = sorted(
        (
            (int(_status(j)["queuePosition"]), j)
            for j in jobs
            if j["spec"].get("jobQueue") == queue
            and job_state(j) == "RUNNABLE"
            and _status(j).get("queuePosition") is not None
        ),
        key=lambda p: p[0],
    )
    return {
        "frontOfQueue": {
            "jobs": [
                {
                    "jobArn": account.arn("job", str(j["metadata"]["uid"])),
                    "earliestTimeAtPosition": job_created_ms(j),
                }
                for _, j in front[:100]
            ],
            "lastUpdatedAt": now_ms,
        }
    }


def _definition_properties(
    definition: Mapping[str, Any] | None, revision: int | None
) -> Mapping[str, Any] | None:
    if definition is None:
        return None
    props: Mapping[str, Any] | None = pinned_definition(definition, revision).get(
        "consumableResourceProperties"
    )
    return props


def jobs_by_consumable_resource(
    jobs: Iterable[Mapping[str, Any]],
    definitions: Mapping[str, Mapping[str, Any]],
    resource: str,
    filters: Sequence[Mapping[str, Any]],
    account: Account,
) -> list[dict[str, Any]]:
    """ListJobsByConsumableResource: jobs whose (override or definition) requirements name `resource`.

    AWS filters: JOB_STATUS (one state) and JOB_NAME (case-insensitive, trailing `*` = prefix).
    """
    status_filter: str | None = None
    name_filter: tuple[str, bool] | None = None
    for f in filters:
        values = f.get("values") or []
        if len(values) != 1:
            raise client_error(f"filters.values: {f.get('name')} takes exactly one value")
        if f.get("name") == "JOB_STATUS":
            status_filter = str(values[0])
        elif f.get("name") == "JOB_NAME":
            name_filter = (str(values[0]).rstrip("*").lower(), str(values[0]).endswith("*"))
        else:
            raise client_error(f"filters.name: {f.get('name')!r} must be JOB_STATUS or JOB_NAME")
    out = []
    for obj in jobs:
        spec = obj["spec"]
        props = spec.get("consumableResourcePropertiesOverride") or _definition_properties(
            definitions.get(str(spec["jobDefinition"]).partition(":")[0]),
            _status(obj).get("jobDefinitionRevision"),
        )
        wanted = [
            r
            for r in (props or {}).get("consumableResourceList") or []
            if r.get("consumableResource") == resource
        ]
        if not wanted:
            continue
        if status_filter is not None and job_state(obj) != status_filter:
            continue
        if name_filter is not None:
            nm = job_name(obj).lower()
            if not (nm.startswith(name_filter[0]) if name_filter[1] else nm == name_filter[0]):
                continue
        d = job_detail(obj, account)
        out.append(
            _drop_none(
                {
                    "jobArn": d["jobArn"],
                    "jobQueueArn": d["jobQueue"],
                    "jobName": d["jobName"],
                    "jobDefinitionArn": d["jobDefinition"],
                    "shareIdentifier": d.get("shareIdentifier"),
                    "jobStatus": d["status"],
                    "quantity": int(wanted[0]["quantity"]),
                    "statusReason": d.get("statusReason"),
                    "startedAt": d.get("startedAt"),
                    "createdAt": d["createdAt"],
                    "consumableResourceProperties": dict(props or {}),
                }
            )
        )
    out.sort(key=lambda j: (-int(j["createdAt"]), j["jobArn"]))
    return out
