"""`batchyard cancel|terminate <job>`: the AWS CancelJob / TerminateJob requests, as spec patches.

The operator acts on spec.cancel / spec.terminate, so these are exactly
`kubectl patch batchjob <job> --type merge -p '{"spec":{"cancel":{"reason":"..."}}}'`.
`<job>:<index>` stops one array child (spec.childRequests).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from batchyard.cli.common import CommandError, Kubectl, UsageError, add_kube_args, parse_job_ref


def register(sub: Any) -> None:
    for verb, help_ in (
        ("cancel", "CancelJob: fail a SUBMITTED, PENDING or RUNNABLE job (no effect once STARTING)"),
        ("terminate", "TerminateJob: fail the job in any state, stopping its pod"),
    ):
        p = sub.add_parser(verb, help=help_)
        p.add_argument("job", help="BatchJob name, or <name>:<index> for one array child")
        # AWS: reason is required by CancelJob and TerminateJob.
        p.add_argument("--reason", "-r", required=True, help="becomes the job's statusReason")
        add_kube_args(p)
        p.set_defaults(func=cmd_stop, verb=verb)


def stop_patch(verb: str, reason: str, index: int | None) -> dict[str, Any]:
    if index is None:
        return {"spec": {verb: {"reason": reason}}}
    return {"spec": {"childRequests": [{"index": index, "action": verb.upper(), "reason": reason}]}}


def cmd_stop(args: argparse.Namespace) -> int:
    ref = parse_job_ref(args.job)
    if not args.reason.strip():
        raise UsageError("--reason must not be empty (AWS requires a reason)")
    kube = Kubectl.of(args)
    job = kube.get_or_none("batchjob", ref.name)
    if job is None:
        raise CommandError(f'batchjob "{ref.name}" not found')
    patch_type, patch = "merge", json.dumps(stop_patch(args.verb, args.reason, ref.index))
    if ref.index is not None:
        size = (job["spec"].get("arrayProperties") or {}).get("size")
        if not size:
            raise UsageError(f"{ref}: {ref.name} is not an array job")
        if ref.index >= size:
            raise UsageError(f"{ref}: the index must be below the array size {size}")
        if job["spec"].get("childRequests"):
            # A merge patch would replace earlier child requests: append when the list exists.
            entry = {"index": ref.index, "action": args.verb.upper(), "reason": args.reason}
            patch_type = "json"
            patch = json.dumps([{"op": "add", "path": "/spec/childRequests/-", "value": entry}])
    kube.run("patch", "batchjob", ref.name, "--type", patch_type, "-p", patch)
    print(f"batchjob/{ref} {args.verb} requested")
    return 0
