"""`batchyard list | queues | ces`: ListJobs and the queue and compute-environment overviews.

`list` filters on the API server where it can (the BatchJob CRD's selectableFields: status,
queue, definition) and on the client only for what a field selector cannot express (a name
prefix, several statuses). `--array-job` lists one array's children from the parent's compact
status, as `aws batch list-jobs --array-job-id` does. `-o json` prints AWS's ListJobs shape
(`jobSummaryList`). `queues` and `ces` read what the operator writes (job counts, the Blocked
condition, vCPUs in use, nodes), so they are as live as the operator and need no job list.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from batchyard.api.batchjob import BatchJob
from batchyard.api.common import JOB_STATES
from batchyard.cli.common import (
    Kubectl,
    UsageError,
    add_kube_args,
    age,
    cut,
    estimated_start,
    parse_job_ref,
    parse_time,
    show,
    table,
)
from batchyard.core.arrayjob import children_from_status
from batchyard.core.arrays import ArrayChildren
from batchyard.core.jobstate import JobState

COUNTED = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")


def register(sub: Any) -> None:
    p = sub.add_parser("list", help="ListJobs: jobs by queue, status, name prefix; an array's children")
    p.add_argument("--job-queue", "--queue", "-q", dest="job_queue", help="only jobs of this queue")
    p.add_argument("--job-status", "--status", "-s", dest="job_status",
                   help="only jobs in these states (comma list: RUNNABLE,RUNNING)")  # fmt: skip
    p.add_argument("--job-definition", "--definition", dest="job_definition", help="only this definition")
    p.add_argument("--name-prefix", help="only jobs whose name or jobName starts with this")
    p.add_argument("--job-name", help="AWS JOB_NAME filter: this jobName, or a prefix ending in '*'")
    p.add_argument("--created-after", metavar="TIME", help="AWS AFTER_CREATED_AT: RFC 3339 time")
    p.add_argument("--created-before", metavar="TIME", help="AWS BEFORE_CREATED_AT: RFC 3339 time")
    p.add_argument("--array-job", metavar="JOB", help="list this array job's children instead")
    p.add_argument("--output", "-o", choices=("table", "wide", "json"), default="table")
    p.add_argument("--watch", "-w", action="store_true", help="redraw every 2 s until Ctrl-C")
    add_kube_args(p, all_namespaces=True)
    p.set_defaults(func=cmd_list)

    q = sub.add_parser(
        "queues", help="job queues: state, priority, live job counts, capacity, blocked reason"
    )
    q.add_argument("--output", "-o", choices=("table", "json"), default="table")
    q.add_argument("--watch", "-w", action="store_true", help="redraw every 2 s until Ctrl-C")
    q.add_argument("--kubectl", default=p.get_default("kubectl"))
    q.set_defaults(func=cmd_queues, namespace=None)

    c = sub.add_parser("ces", help="compute environments: state, vCPUs (min/desired/in use/max), nodes")
    c.add_argument("--output", "-o", choices=("table", "json"), default="table")
    c.add_argument("--watch", "-w", action="store_true", help="redraw every 2 s until Ctrl-C")
    c.add_argument("--kubectl", default=p.get_default("kubectl"))
    c.set_defaults(func=cmd_ces, namespace=None)


def statuses(text: str | None) -> list[str]:
    if not text:
        return []
    wanted = [s.strip().upper() for s in text.split(",") if s.strip()]
    bad = [s for s in wanted if s not in JOB_STATES]
    if bad:
        raise UsageError(f"--job-status {','.join(bad)}: not a job state (one of {', '.join(JOB_STATES)})")
    return wanted


def field_selector(queue: str | None, wanted: list[str], definition: str | None) -> str:
    """What the API server can filter (CRD selectableFields): exact matches, ANDed."""
    parts = [f"spec.jobQueue={queue}"] if queue else []
    if len(wanted) == 1:
        parts.append(f"status.status={wanted[0]}")
    if definition:
        parts.append(f"spec.jobDefinition={definition}")
    return ",".join(parts)


def timestamp(text: str | None, flag: str) -> datetime | None:
    if not text:
        return None
    try:
        value = parse_time(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected an RFC 3339 time such as 2026-01-31T12:00:00Z") from None
    assert value is not None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def select(
    items: list[dict[str, Any]],
    wanted: list[str],
    prefix: str | None,
    job_name: str | None = None,
    after: datetime | None = None,
    before: datetime | None = None,
) -> list[dict[str, Any]]:
    """The client-side rest: several statuses (a job without status counts as SUBMITTED), a name
    prefix, AWS's JOB_NAME filter (exact, or a prefix when it ends in '*') and creation times."""
    out = []
    for item in items:
        state = (item.get("status") or {}).get("status") or "SUBMITTED"
        aws_name = (item.get("spec") or {}).get("jobName") or item["metadata"]["name"]
        names = (item["metadata"]["name"], aws_name)
        created = parse_time(
            (item.get("status") or {}).get("createdAt") or item["metadata"].get("creationTimestamp")
        )
        if wanted and state not in wanted:
            continue
        if prefix and not any(n.startswith(prefix) for n in names):
            continue
        if job_name and not (
            aws_name.startswith(job_name[:-1]) if job_name.endswith("*") else aws_name == job_name
        ):
            continue
        if (after or before) and created is None:
            continue
        if (after and created and created <= after) or (before and created and created >= before):
            continue
        out.append(item)
    return out


def job_rows(items: list[dict[str, Any]], wide: bool, now: datetime, namespaces: bool) -> str:
    header = ["NAME", "STATUS", "QUEUE", "DEFINITION", "ATTEMPTS", "PROGRESS", "REASON", "AGE"]
    if wide:
        header += ["POSITION", "EST. START", "SHARE", "CE", "JOB ID"]
    if namespaces:
        header.insert(0, "NAMESPACE")
    rows = []
    for item in items:
        spec, status = item.get("spec") or {}, item.get("status") or {}
        attempts = status.get("attempts") or []
        row = [
            item["metadata"]["name"],
            status.get("status") or "SUBMITTED",
            spec.get("jobQueue", ""),
            spec.get("jobDefinition", "")
            + (
                f" (rev {status['jobDefinitionRevision']})"
                if wide and status.get("jobDefinitionRevision")
                else ""
            ),
            str(attempts[-1]["attempt"]) if attempts else "0",
            (status.get("arrayProperties") or {}).get("progress") or "",
            status.get("statusReason", "") if wide else cut(status.get("statusReason"), 60),
            age(item["metadata"].get("creationTimestamp"), now),
        ]
        if wide:
            position = status.get("queuePosition")
            row += [
                "" if position is None else str(position),
                estimated_start(status, now),
                spec.get("shareIdentifier", ""),
                status.get("computeEnvironment", ""),
                status.get("jobId", item["metadata"].get("uid", "")),
            ]
        if namespaces:
            row.insert(0, item["metadata"].get("namespace", ""))
        rows.append(row)
    return table(header, rows)


def job_summary(item: dict[str, Any]) -> dict[str, Any]:
    """AWS JobSummary (ListJobs), plus the object's namespace and name."""
    spec, status = item.get("spec") or {}, item.get("status") or {}
    attempts = status.get("attempts") or []
    summary: dict[str, Any] = {
        "namespace": item["metadata"].get("namespace"),
        "name": item["metadata"]["name"],
        "jobId": status.get("jobId") or item["metadata"].get("uid"),
        "jobName": spec.get("jobName") or item["metadata"]["name"],
        "jobQueue": spec.get("jobQueue"),
        "jobDefinition": spec.get("jobDefinition"),
        "status": status.get("status") or "SUBMITTED",
        "statusReason": status.get("statusReason"),
        "createdAt": status.get("createdAt") or item["metadata"].get("creationTimestamp"),
        "startedAt": status.get("startedAt"),
        "stoppedAt": status.get("stoppedAt"),
    }
    if attempts and attempts[-1].get("exitCode") is not None:
        summary["container"] = {"exitCode": attempts[-1]["exitCode"], "reason": attempts[-1].get("reason")}
    ap = status.get("arrayProperties") or {}
    if (spec.get("arrayProperties") or {}).get("size"):
        summary["arrayProperties"] = {
            "size": spec["arrayProperties"]["size"],
            "statusSummary": ap.get("statusSummary"),
        }
    return {k: v for k, v in summary.items() if v is not None}


def children_list(item: dict[str, Any], wanted: list[str]) -> list[dict[str, Any]]:
    """One AWS JobSummary per child of an array job (arrayProperties.index), from the parent."""
    job = BatchJob.from_body(item)
    if job.spec.arrayProperties is None:
        raise UsageError(f"--array-job {job.metadata.name}: not an array job")
    children = children_from_status(job.status) if job.status else None
    size = job.spec.arrayProperties.size
    if children is None:  # not spawned yet: every child is where the parent is
        state = (job.status.status if job.status else None) or "SUBMITTED"
        children = ArrayChildren.new(size, initial=JobState(state))
    job_id = (job.status.jobId if job.status else None) or job.metadata.uid
    out = []
    for index in range(size):
        state = children.state_of(index).value
        if wanted and state not in wanted:
            continue
        entry: dict[str, Any] = {
            "jobId": f"{job_id}:{index}",
            "jobName": job.job_name,
            "status": state,
            "arrayProperties": {"index": index},
            "attempt": children.attempt_of(index),
        }
        last = children.exits.get(index)
        if last is not None:
            entry["container"] = {"exitCode": last.exit_code, "reason": last.reason}
        out.append(entry)
    return out


def child_rows(children: list[dict[str, Any]]) -> str:
    rows = [
        [
            str(c["arrayProperties"]["index"]),
            c["status"],
            str(c["attempt"]),
            "" if "container" not in c else str(c["container"].get("exitCode", "")),
            cut((c.get("container") or {}).get("reason"), 60),
        ]
        for c in children
    ]
    return table(["INDEX", "STATUS", "ATTEMPT", "EXIT", "REASON"], rows)


def cmd_list(args: argparse.Namespace) -> int:
    kube = Kubectl.of(args)
    wanted = statuses(args.job_status)
    after = timestamp(args.created_after, "--created-after")
    before = timestamp(args.created_before, "--created-before")
    if args.array_job:
        ref = parse_job_ref(args.array_job)
        if args.all_namespaces:
            raise UsageError("--array-job names one job: use --namespace, not --all-namespaces")
        children = children_list(Kubectl(args.kubectl, args.namespace).get("batchjob", ref.name), wanted)
        if args.output == "json":
            print(json.dumps({"jobSummaryList": children}, indent=2))
        else:
            print(child_rows(children))
        return 0
    selector = field_selector(args.job_queue, wanted, args.job_definition)

    def render() -> str:
        items = kube.get("batchjobs", *(["--field-selector", selector] if selector else []))["items"]
        items = select(items, wanted, args.name_prefix, args.job_name, after, before)
        items.sort(
            key=lambda i: (
                i["metadata"].get("namespace", ""),
                i["metadata"].get("creationTimestamp", ""),
                i["metadata"]["name"],
            )
        )
        if args.output == "json":
            return json.dumps({"jobSummaryList": [job_summary(i) for i in items]}, indent=2)
        if not items:
            return "No jobs found."
        return job_rows(items, args.output == "wide", datetime.now(UTC), args.all_namespaces)

    return show(render, args.watch)


# --- queues and compute environments --------------------------------------------------------------


def _blocked(obj: dict[str, Any]) -> str:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Blocked" and c.get("status") == "True":
            return str(c.get("message") or c.get("reason") or "blocked")
    return ""


def _max_vcpus(ce: dict[str, Any]) -> float:
    spec = ce.get("spec") or {}
    value = (spec.get("computeResources") or {}).get("maxvCpus", spec.get("unmanagedvCpus"))
    return float(value or 0)


def _num(x: Any) -> str:
    if x is None:
        return "-"
    return str(int(x)) if float(x).is_integer() else f"{float(x):g}"


def queue_views(queues: list[dict[str, Any]], ces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each queue with its live job counts, the capacity of its compute environments, and why it is
    blocked (the operator's Blocked condition: the head job's AWS blocked reason)."""
    by_name = {c["metadata"]["name"]: c for c in ces}
    views = []
    for q in sorted(
        queues, key=lambda q: (-int((q.get("spec") or {}).get("priority", 0)), q["metadata"]["name"])
    ):
        spec, status = q.get("spec") or {}, q.get("status") or {}
        order = sorted(spec.get("computeEnvironmentOrder") or [], key=lambda e: e.get("order", 0))
        names = [e["computeEnvironment"] for e in order]
        known = [by_name[n] for n in names if n in by_name]
        counts = status.get("jobCounts") or {}
        views.append(
            {
                "name": q["metadata"]["name"],
                "state": spec.get("state", "ENABLED"),
                "status": status.get("status"),
                "priority": spec.get("priority"),
                "schedulingPolicy": spec.get("schedulingPolicy"),
                "computeEnvironments": names,
                "jobCounts": {s: int(counts.get(s) or 0) for s in COUNTED},
                "vcpusInUse": sum(float((c.get("status") or {}).get("vcpusInUse") or 0) for c in known),
                "maxvCpus": sum(_max_vcpus(c) for c in known),
                "missingComputeEnvironments": [n for n in names if n not in by_name],
                "blockedReason": _blocked(q),
            }
        )
    return views


def queue_rows(views: list[dict[str, Any]]) -> str:
    header = ["NAME", "STATE", "PRIORITY", *COUNTED, "VCPUS", "CES", "BLOCKED"]
    rows = [
        [
            v["name"],
            v["state"],
            str(v["priority"]),
            *[str(v["jobCounts"][s]) for s in COUNTED],
            f"{_num(v['vcpusInUse'])}/{_num(v['maxvCpus'])}",
            ",".join(v["computeEnvironments"]),
            v["blockedReason"]
            or (
                "missing CE: " + ",".join(v["missingComputeEnvironments"])
                if v["missingComputeEnvironments"]
                else ""
            ),
        ]
        for v in views
    ]
    return table(header, rows)


def ce_views(ces: list[dict[str, Any]], queues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    views = []
    for c in sorted(ces, key=lambda c: c["metadata"]["name"]):
        spec, status = c.get("spec") or {}, c.get("status") or {}
        name = c["metadata"]["name"]
        views.append(
            {
                "name": name,
                "state": spec.get("state", "ENABLED"),
                "status": status.get("status"),
                "statusReason": status.get("statusReason"),
                "type": spec.get("type"),
                "provider": (spec.get("provider") or {}).get("type"),
                "minvCpus": (spec.get("computeResources") or {}).get("minvCpus"),
                "desiredvCpus": status.get("desiredvCpus"),
                "vcpusInUse": status.get("vcpusInUse"),
                "maxvCpus": _max_vcpus(c),
                "nodes": status.get("nodes"),
                "jobQueues": sorted(
                    q["metadata"]["name"]
                    for q in queues
                    if any(
                        e.get("computeEnvironment") == name
                        for e in (q.get("spec") or {}).get("computeEnvironmentOrder") or []
                    )
                ),
            }
        )
    return views


def ce_rows(views: list[dict[str, Any]]) -> str:
    header = [
        "NAME",
        "STATE",
        "STATUS",
        "TYPE",
        "PROVIDER",
        "MIN",
        "DESIRED",
        "IN-USE",
        "MAX",
        "NODES",
        "QUEUES",
        "REASON",
    ]
    rows = [
        [
            v["name"], v["state"], v["status"] or "", v["type"] or "", v["provider"] or "",
            _num(v["minvCpus"]), _num(v["desiredvCpus"]), _num(v["vcpusInUse"]), _num(v["maxvCpus"]),
            _num(v["nodes"]), ",".join(v["jobQueues"]), cut(v["statusReason"], 60),
        ]
        for v in views
    ]  # fmt: skip
    return table(header, rows)


def cmd_queues(args: argparse.Namespace) -> int:
    kube = Kubectl(args.kubectl)

    def render() -> str:
        views = queue_views(kube.get("jobqueues")["items"], kube.get("computeenvironments")["items"])
        if args.output == "json":
            return json.dumps({"jobQueues": views}, indent=2)
        return queue_rows(views) if views else "No job queues found."

    return show(render, args.watch)


def cmd_ces(args: argparse.Namespace) -> int:
    kube = Kubectl(args.kubectl)

    def render() -> str:
        views = ce_views(kube.get("computeenvironments")["items"], kube.get("jobqueues")["items"])
        if args.output == "json":
            return json.dumps({"computeEnvironments": views}, indent=2)
        return ce_rows(views) if views else "No compute environments found."

    return show(render, args.watch)
