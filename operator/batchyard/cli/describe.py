"""`batchyard describe <job>[:<index>|#<node>]`: DescribeJobs for a job, one array child, or one
node of a multi-node parallel job (AWS `jobId#node`: its state, pod, node and address from the
job's status.nodeProperties).

Array children are not Kubernetes objects: a child's state, attempt and last exit live in the
parent's status (compact index ranges), and its pod exists while it runs. This command puts the
two together, as `aws batch describe-jobs --jobs <id>:<index>` would.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from batchyard import render
from batchyard.api.batchjob import BatchJob
from batchyard.cli.common import CommandError, Kubectl, UsageError, add_kube_args, parse_job_ref
from batchyard.core.arrayjob import children_from_status
from batchyard.core.lifecycle import iso


def register(sub: Any) -> None:
    p = sub.add_parser(
        "describe", help="describe a job, one array child as <job>:<index>, or one MNP node as <job>#<node>"
    )
    p.add_argument("job", help="BatchJob name, <name>:<index> for an array child, <name>#<node> for a node")
    add_kube_args(p)
    p.set_defaults(func=cmd_describe)


def child_detail(job: BatchJob, index: int, pod: dict[str, Any] | None) -> dict[str, Any]:
    """The DescribeJobs-like view of child `index` (pure: the pod, if any, is passed in)."""
    status = job.status
    if job.spec.arrayProperties is None or status is None:
        raise ValueError(f"{job.metadata.name} is not an array job (or has no status yet)")
    size = job.spec.arrayProperties.size
    if not 0 <= index < size:
        raise ValueError(f"index {index} is outside 0..{size - 1}")
    children = children_from_status(status)
    detail: dict[str, Any] = {
        "jobId": f"{status.jobId}:{index}",
        "jobName": job.job_name,
        "arrayProperties": {"index": index},
        "jobQueue": job.spec.jobQueue,
    }
    if children is None:
        detail["status"] = status.status or "SUBMITTED"
        return detail
    attempt = children.attempt_of(index)
    detail.update(status=children.state_of(index).value, attempts=attempt)
    # AWS: a child's createdAt is when its parent spawned it.
    detail["createdAt"] = status.createdAt
    times = children.times.get(index)
    if times is not None:
        detail["startedAt"] = iso(times.started) if times.started is not None else None
        detail["stoppedAt"] = iso(times.stopped) if times.stopped is not None else None
    last = children.exits.get(index)
    if last is not None:
        detail["lastExit"] = {"exitCode": last.exit_code, "reason": last.reason}
        if last.status_reason:
            detail["statusReason"] = last.status_reason
    detail["podName"] = render.pod_name(job.metadata.name or "", attempt, index)
    if pod is not None:
        detail["pod"] = {
            "phase": (pod.get("status") or {}).get("phase"),
            "nodeName": (pod.get("spec") or {}).get("nodeName"),
            "containers": [
                {"name": cs.get("name"), "state": cs.get("state")}
                for cs in (pod.get("status") or {}).get("containerStatuses") or []
            ],
        }
    return detail


def node_detail(job: BatchJob, node: int) -> dict[str, Any]:
    """The DescribeJobs-like view of node `node` of a multi-node parallel job (pure)."""
    status = job.status
    props = status.nodeProperties if status is not None else None
    if status is None or props is None or props.numNodes is None:
        raise ValueError(f"{job.metadata.name} is not a multi-node parallel job (or has no status yet)")
    if not 0 <= node < props.numNodes:
        raise ValueError(f"node {node} is outside 0..{props.numNodes - 1}")
    row = next((r for r in props.nodes or [] if r.nodeIndex == node), None)
    detail: dict[str, Any] = {
        "jobId": f"{status.jobId}#{node}",
        "jobName": job.job_name,
        "jobQueue": job.spec.jobQueue,
        # AWS JobDetail nodeDetails
        "nodeDetails": {"nodeIndex": node, "isMainNode": node == props.mainNode},
        "attempts": len(status.attempts or []),
    }
    if row is not None:
        detail.update(row.model_dump(exclude_none=True, mode="json", exclude={"nodeIndex", "isMainNode"}))
    return detail


def cmd_describe(args: argparse.Namespace) -> int:
    ref = parse_job_ref(args.job, allow_node=True)
    kube = Kubectl.of(args)
    body = kube.get_or_none("batchjob", ref.name)
    if body is None:
        raise CommandError(f'batchjob "{ref.name}" not found')
    job = BatchJob.from_body(body)
    if ref.node is not None:
        try:
            print(json.dumps(node_detail(job, ref.node), indent=2))
        except ValueError as err:
            raise UsageError(f"{ref}: {err}") from err
        return 0
    if ref.index is None:
        print(json.dumps({"spec": job.spec.model_dump(exclude_none=True, mode="json"),
                          "status": job.status.model_dump(exclude_none=True, mode="json") if job.status else {}},
                         indent=2))  # fmt: skip
        return 0
    index = ref.index
    size = job.spec.arrayProperties.size if job.spec.arrayProperties else None
    if size is None:
        raise UsageError(f"{ref}: {ref.name} is not an array job")
    if index >= size:
        raise UsageError(f"{ref}: index {index} is outside 0..{size - 1}")
    children = children_from_status(job.status) if job.status else None
    pod = None
    if children is not None:
        pod = kube.get_or_none("pod", render.pod_name(ref.name, children.attempt_of(index), index))
    print(json.dumps(child_detail(job, index, pod), indent=2))
    return 0
