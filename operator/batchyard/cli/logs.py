"""`batchyard logs <job>[:<index>|#<node>] [--attempt N] [-f]`: an attempt's output.

AWS keeps each attempt's log stream in CloudWatch (DescribeJobs names it in
`attempts[].container.logStreamName`); here an attempt's output is its pod's log, which exists
as long as the pod does. So this command finds the attempt's pod (its name is deterministic:
`render.pod_name(job, attempt, index, node)`, or the podName recorded on the attempt) and runs
`kubectl logs` on it while it exists. The operator keeps an ended attempt's pod as its keepPods
setting says (core.retention: failed attempts' by default) and records the choice on the attempt
(`logRetained`); when the pod is gone this command says so plainly, and why, and prints what the
job's status still holds about that attempt (exit code, reason, termination message).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from batchyard import render
from batchyard.api.batchjob import BatchJob
from batchyard.cli.common import CommandError, JobRef, Kubectl, UsageError, add_kube_args, parse_job_ref
from batchyard.core.arrayjob import children_from_status


def register(sub: Any) -> None:
    p = sub.add_parser("logs", help="print an attempt's log while its pod exists")
    p.add_argument("job", help="<job>, <job>:<index> (array child) or <job>#<node> (multi-node job)")
    p.add_argument("--attempt", "-a", type=int, help="attempt number, from 1 (default: the latest)")
    p.add_argument("--follow", "-f", action="store_true", help="stream the log while the attempt runs")
    p.add_argument("--tail", type=int, default=-1, help="lines from the end (default: all)")
    add_kube_args(p)
    p.set_defaults(func=cmd_logs)


@dataclass(frozen=True)
class AttemptLog:
    """Where one attempt's log is, and what the status says about that attempt."""

    pod: str
    attempt: int
    latest: int
    finished: bool
    detail: dict[str, Any]  # exitCode, reason, statusReason, ... as the status records them

    @property
    def succeeded(self) -> bool:
        """The attempt succeeded (an earlier attempt than the latest one never did)."""
        if self.attempt < self.latest:
            return False
        if self.detail.get("status") == "SUCCEEDED":  # an array child's state
            return True
        return self.detail.get("exitCode") == 0 and self.detail.get("statusReason") in (None, "Succeeded")


def resolve(job: BatchJob, ref: JobRef, attempt: int | None) -> AttemptLog:
    """The pod of the requested attempt (pure; raises UsageError or CommandError)."""
    name = job.metadata.name or ref.name
    status = job.status
    state = (status.status if status else None) or "SUBMITTED"
    if attempt is not None and attempt < 1:
        raise UsageError("--attempt: attempt numbers start at 1")
    if job.spec.arrayProperties is not None and ref.index is None:
        raise UsageError(f"{name} is an array job: its children have the logs; name one as {name}:<index>")
    if ref.index is not None:
        size = job.spec.arrayProperties.size if job.spec.arrayProperties else None
        if size is None:
            raise UsageError(f"{ref}: {name} is not an array job")
        if ref.index >= size:
            raise UsageError(f"{ref}: index {ref.index} is outside 0..{size - 1}")
        children = children_from_status(status) if status else None
        if children is None:
            raise CommandError(f"{ref} has not started: the array is {state}, no child has a pod yet")
        child_state = children.state_of(ref.index)
        latest = children.attempt_of(ref.index)
        if child_state.value in ("SUBMITTED", "PENDING", "RUNNABLE") and latest == 1:
            raise CommandError(f"{ref} has not started (it is {child_state.value}): no log yet")
        number = _check_attempt(ref, attempt, latest)
        finished = number < latest or child_state.is_terminal
        last = children.exits.get(ref.index)
        detail: dict[str, Any] = {"status": child_state.value}
        if number == latest and last is not None:
            detail |= {"exitCode": last.exit_code, "reason": last.reason}
        return AttemptLog(render.pod_name(name, number, ref.index), number, latest, finished, detail)
    attempts = (status.attempts if status else None) or []
    if not attempts:
        reason = f" ({status.statusReason})" if status and status.statusReason else ""
        raise CommandError(f"{ref} has not started (it is {state}{reason}): no log yet")
    latest = attempts[-1].attempt
    number = _check_attempt(ref, attempt, latest)
    record = next((a for a in attempts if a.attempt == number), None)
    detail = record.model_dump(exclude_none=True, mode="json") if record else {}
    pod = render.pod_name(name, number, None, ref.node)
    if record is not None and record.podName and ref.node is None:
        pod = record.podName
    finished = number < latest or state in ("SUCCEEDED", "FAILED") or bool(record and record.stoppedAt)
    return AttemptLog(pod, number, latest, finished, detail)


def _check_attempt(ref: JobRef, attempt: int | None, latest: int) -> int:
    if attempt is None:
        return latest
    if attempt > latest:
        raise UsageError(f"--attempt {attempt}: {ref} has had {latest} attempt(s)")
    return attempt


def gone_reason(log: AttemptLog) -> str:
    """Why an attempt's pod (and so its log) no longer exists, from what its status recorded."""
    if not log.finished:
        return "The attempt has not ended: its pod was deleted (evicted, or removed by hand)."
    retained = log.detail.get("logRetained")
    if retained is True:
        return (
            "The operator kept it when the attempt ended, until the job expires; since then it was "
            "deleted (by hand, or by the garbage collector of terminated pods)."
        )
    if retained is False and log.succeeded:
        return (
            "The attempt succeeded, and the operator deletes a succeeded attempt's pod when it ends "
            "(its keepPods setting is failed, the default, or none; Helm operator.keepPods=all keeps them)."
        )
    if retained is False:
        return (
            "The operator deleted it when the attempt ended: its keepPods setting is none, or the pod "
            "was still running and had to be stopped (a timeout, a terminate, a sidecar that never exits)."
        )
    if log.succeeded:
        return (
            "The attempt succeeded, and the operator deletes a succeeded attempt's pod when it ends "
            "unless its keepPods setting is all."
        )
    return (
        "The attempt has ended and its pod was deleted (the operator's keepPods setting: all, failed "
        "or none, decides which ended attempts keep theirs until the job expires)."
    )


def gone_message(ref: JobRef, log: AttemptLog) -> str:
    """Why the log can no longer be read, and what the status kept of the attempt."""
    lines = [f"The log of {ref} attempt {log.attempt} is gone: its pod {log.pod} no longer exists."]
    lines.append(gone_reason(log))
    kept = {
        k: v for k, v in log.detail.items() if k not in ("attempt", "podName", "logStreamName", "logRetained")
    }
    if kept:
        lines.append("What the job's status kept of this attempt:")
        lines += [f"  {k}: {v}" for k, v in kept.items()]
    return "\n".join(lines)


def cmd_logs(args: argparse.Namespace) -> int:
    ref = parse_job_ref(args.job, allow_node=True)
    kube = Kubectl.of(args)
    body = kube.get_or_none("batchjob", ref.name)
    if body is None:
        raise CommandError(
            f'batchjob "{ref.name}" not found: it was never submitted here, was deleted, or expired '
            "(finished jobs go after the operator's finished-job TTL, with the pods kept for their logs)"
        )
    log = resolve(BatchJob.from_body(body), ref, args.attempt)
    pod = kube.get_or_none("pod", log.pod)
    if pod is None:
        print(gone_message(ref, log), file=sys.stderr)
        return 1
    cmd = [args.kubectl, "logs", log.pod, *kube.ns_args(), f"--tail={args.tail}"]
    if args.follow:
        cmd.append("--follow")
    proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        node = (pod.get("spec") or {}).get("nodeName") or "no node yet"
        phase = (pod.get("status") or {}).get("phase") or "Unknown"
        raise CommandError(
            f"pod {log.pod} ({phase}, on {node}) exists but its log can't be read: {proc.stderr.strip()}"
        )
    return 0
