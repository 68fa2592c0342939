"""`batchyard cancel|terminate <job>`: the AWS CancelJob / TerminateJob requests, as spec patches.

The operator acts on spec.cancel / spec.terminate, so these are exactly
`kubectl patch batchjob <job> --type merge -p '{"spec":{"cancel":{"reason":"..."}}}'`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from typing import Any


def register(sub: Any) -> None:
    for verb, help_ in (
        ("cancel", "CancelJob: fail a SUBMITTED, PENDING or RUNNABLE job (no effect once STARTING)"),
        ("terminate", "TerminateJob: fail the job in any state, stopping its pod"),
    ):
        p = sub.add_parser(verb, help=help_)
        p.add_argument("job", help="BatchJob name, or <name>:<index> for one array child")
        p.add_argument("--reason", "-r", required=True, help="becomes the job's statusReason")
        p.add_argument("--namespace", "-n", default=None)
        p.add_argument("--kubectl", default=shutil.which("kubectl") or "kubectl")
        p.set_defaults(func=cmd_stop, verb=verb)


def stop_patch(verb: str, reason: str, index: int | None) -> dict[str, Any]:
    if index is None:
        return {"spec": {verb: {"reason": reason}}}
    return {"spec": {"childRequests": [{"index": index, "action": verb.upper(), "reason": reason}]}}


def cmd_stop(args: argparse.Namespace) -> int:
    name, _, index = args.job.partition(":")
    ns = ["-n", args.namespace] if args.namespace else []
    patch_type, patch = "merge", json.dumps(stop_patch(args.verb, args.reason, int(index) if index else None))
    if index:
        # A merge patch would replace earlier child requests: append when the list exists.
        got = subprocess.run(
            [args.kubectl, "get", "batchjob", name, "-o", "json", *ns], capture_output=True, text=True
        )
        if got.returncode != 0:
            print(got.stderr.strip())
            return 1
        if json.loads(got.stdout)["spec"].get("childRequests"):
            entry = {"index": int(index), "action": args.verb.upper(), "reason": args.reason}
            patch_type, patch = (
                "json",
                json.dumps([{"op": "add", "path": "/spec/childRequests/-", "value": entry}]),
            )
    return subprocess.run(
        [args.kubectl, "patch", "batchjob", name, "--type", patch_type, "-p", patch, *ns]
    ).returncode
