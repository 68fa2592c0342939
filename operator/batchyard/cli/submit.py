"""`batchyard submit`: AWS SubmitJob from the command line, as a BatchJob.

The flags are SubmitJob's fields (`aws batch submit-job` names where they exist), and
`--cli-input-json` takes a SubmitJob request as AWS documents it, so a user can paste the JSON
they already have; flags win over it. The spec is checked with the same model the CRD is
generated from before anything is sent, so a bad field is reported by name with exit code 2
instead of as an API server rejection.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from batchyard.api.batchjob import BatchJobSpec
from batchyard.cli.common import CommandError, Kubectl, UsageError, add_kube_args, parse_job_ref

# SubmitJob request fields that are not spec fields here: ARNs and the client token have no meaning.
_IGNORED_AWS_FIELDS = ("clientToken",)
TERMINAL = ("SUCCEEDED", "FAILED")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "submit",
        help="SubmitJob: create a BatchJob",
        description="Submit a job (AWS SubmitJob). Prints the BatchJob's name.",
    )
    p.add_argument("name", nargs="?", help="BatchJob name (default: generated from the definition)")
    p.add_argument("--job-queue", "--queue", "-q", dest="job_queue", help="JobQueue (required)")
    p.add_argument("--job-definition", "--definition", "-d", dest="job_definition",
                   help="JobDefinition, as name or name:revision (required)")  # fmt: skip
    p.add_argument("--job-name", help="AWS jobName (default: the object name)")
    p.add_argument("--parameters", "-p", action="append", default=[], metavar="KEY=VALUE",
                   help="a Ref:: parameter (repeatable)")  # fmt: skip
    p.add_argument("--array-size", type=int, help="array job of 2 to 10,000 children")
    p.add_argument("--depends-on", action="append", default=[], metavar="JOB[:INDEX][=N_TO_N]",
                   help="a dependency (repeatable); JOB=N_TO_N for an N_TO_N array dependency")  # fmt: skip
    p.add_argument("--sequential", action="store_true", help="array children run in index order (SEQUENTIAL)")
    p.add_argument(
        "--command",
        dest="container_command",
        help="containerOverrides.command, split as a shell would: 'sh -c \"exit 3\"'",
    )
    p.add_argument("--env", "-e", action="append", default=[], metavar="NAME=VALUE",
                   help="containerOverrides.environment (repeatable)")  # fmt: skip
    p.add_argument("--vcpus", help="containerOverrides VCPU requirement, e.g. 2 or 0.5")
    p.add_argument("--memory", help="containerOverrides MEMORY requirement in MiB")
    p.add_argument("--gpus", help="containerOverrides GPU requirement")
    p.add_argument("--retry-attempts", type=int, help="retryStrategy.attempts (1-10)")
    p.add_argument("--timeout", type=int, metavar="SECONDS", help="timeout.attemptDurationSeconds (>= 60)")
    p.add_argument("--share-identifier", help="fair-share identifier (queues with a scheduling policy)")
    p.add_argument("--scheduling-priority-override", type=int, help="0-9999, higher first (fair share)")
    p.add_argument("--tags", action="append", default=[], metavar="KEY=VALUE", help="a tag (repeatable)")
    p.add_argument("--propagate-tags", action="store_true", help="copy tags to the pods")
    p.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE",
                   help="metadata annotation on the BatchJob (repeatable)")  # fmt: skip
    p.add_argument("--cli-input-json", metavar="JSON|@FILE", help="a SubmitJob request (AWS JSON)")
    p.add_argument("--dry-run", action="store_true", help="print the BatchJob instead of creating it")
    p.add_argument("--wait", action="store_true", help="show state changes until the job ends")
    p.add_argument("--wait-timeout", type=float, default=0, help="give up waiting after this many seconds")
    add_kube_args(p)
    p.set_defaults(func=cmd_submit)


def pairs(values: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {v!r}: expected KEY=VALUE")
        out[key] = value
    return out


def load_input_json(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        raw = Path(text[1:]).read_text() if text.startswith("@") else text
        data = json.loads(raw)
    except (OSError, json.JSONDecodeError) as err:
        raise UsageError(f"--cli-input-json: {err}") from None
    if not isinstance(data, dict):
        raise UsageError("--cli-input-json: expected a JSON object (a SubmitJob request)")
    return {k: v for k, v in data.items() if k not in _IGNORED_AWS_FIELDS}


def dependency(text: str) -> dict[str, Any]:
    ref_text, _, kind = text.partition("=")
    if kind and kind != "N_TO_N":
        raise UsageError(f"--depends-on {text!r}: the only dependency type after '=' is N_TO_N")
    ref = parse_job_ref(ref_text)
    return {"jobId": str(ref), **({"type": "N_TO_N"} if kind else {})}


def build_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The BatchJob spec from the flags over --cli-input-json (pure; raises UsageError)."""
    spec = load_input_json(args.cli_input_json)
    if args.job_queue:
        spec["jobQueue"] = args.job_queue
    if args.job_definition:
        spec["jobDefinition"] = args.job_definition
    for field, flag in (("jobQueue", "--job-queue"), ("jobDefinition", "--job-definition")):
        if not spec.get(field):
            raise UsageError(f"{flag} is required (SubmitJob {field})")
    if args.job_name:
        spec["jobName"] = args.job_name
    if args.parameters:
        spec["parameters"] = {**spec.get("parameters", {}), **pairs(args.parameters, "--parameters")}
    if args.array_size is not None:
        spec["arrayProperties"] = {"size": args.array_size}
    deps = [dependency(d) for d in args.depends_on]
    if args.sequential:
        deps.append({"type": "SEQUENTIAL"})
    if deps:
        spec["dependsOn"] = [*spec.get("dependsOn", []), *deps]
    overrides: dict[str, Any] = dict(spec.get("containerOverrides") or {})
    if args.container_command:
        try:
            overrides["command"] = shlex.split(args.container_command)
        except ValueError as err:
            raise UsageError(f"--command: {err}") from None
    if args.env:
        overrides["environment"] = [{"name": k, "value": v} for k, v in pairs(args.env, "--env").items()]
    requirements = [
        {"type": kind, "value": value}
        for kind, value in (("VCPU", args.vcpus), ("MEMORY", args.memory), ("GPU", args.gpus))
        if value is not None
    ]
    if requirements:
        kept = [
            r
            for r in overrides.get("resourceRequirements", [])
            if r.get("type") not in {r["type"] for r in requirements}
        ]
        overrides["resourceRequirements"] = [*kept, *requirements]
    if overrides:
        spec["containerOverrides"] = overrides
    if args.retry_attempts is not None:
        spec["retryStrategy"] = {**spec.get("retryStrategy", {}), "attempts": args.retry_attempts}
    if args.timeout is not None:
        spec["timeout"] = {"attemptDurationSeconds": args.timeout}
    if args.share_identifier:
        spec["shareIdentifier"] = args.share_identifier
    if args.scheduling_priority_override is not None:
        spec["schedulingPriorityOverride"] = args.scheduling_priority_override
    if args.tags:
        spec["tags"] = {**spec.get("tags", {}), **pairs(args.tags, "--tags")}
    if args.propagate_tags:
        spec["propagateTags"] = True
    check_spec(spec)
    return spec


def check_spec(spec: dict[str, Any]) -> None:
    """The CRD's own model: report the first bad field by its spec path (exit code 2)."""
    try:
        BatchJobSpec.model_validate(spec)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"spec.{where}: {first['msg']}") from None


def manifest(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if args.name:
        meta["name"] = args.name
    else:
        base = spec["jobDefinition"].partition(":")[0][:50]
        meta["generateName"] = f"{base}-"
    if args.namespace:
        meta["namespace"] = args.namespace
    if args.annotation:
        meta["annotations"] = pairs(args.annotation, "--annotation")
    return {"apiVersion": "batchyard.io/v1alpha1", "kind": "BatchJob", "metadata": meta, "spec": spec}


def cmd_submit(args: argparse.Namespace) -> int:
    if args.name is not None:
        parse_job_ref(args.name)  # a plain object name
        if ":" in args.name:
            raise UsageError(f"job name {args.name!r}: ':' is not allowed in a name")
    body = manifest(args, build_spec(args))
    if args.dry_run:
        print(json.dumps(body, indent=2))
        return 0
    kube = Kubectl.of(args)
    created = json.loads(
        kube.run("create", "-f", "-", "-o", "json", input=json.dumps(body), namespaced=False)
    )
    name = created["metadata"]["name"]
    print(f"batchjob/{name} submitted (jobId {created['metadata']['uid']})")
    if args.wait:
        return wait(kube, name, args.wait_timeout)
    return 0


def wait(kube: Kubectl, name: str, timeout: float) -> int:
    """Print each state change (and array progress) until the job ends; exit 0 only on SUCCEEDED."""
    deadline = time.monotonic() + timeout if timeout else None
    last = None
    while deadline is None or time.monotonic() < deadline:
        status = kube.get("batchjob", name).get("status") or {}
        state = status.get("status") or "SUBMITTED"
        shown = (state, status.get("statusReason"), (status.get("arrayProperties") or {}).get("progress"))
        if shown != last:
            parts = [p for p in shown[1:] if p]
            print(
                f"{time.strftime('%H:%M:%S')} {state}" + (f"  {' | '.join(parts)}" if parts else ""),
                flush=True,
            )
            last = shown
        if state in TERMINAL:
            return 0 if state == "SUCCEEDED" else 1
        time.sleep(1)
    print(f"still {last[0] if last else 'SUBMITTED'} after {timeout:g}s", file=sys.stderr)
    raise CommandError(f"timed out waiting for {name}")
