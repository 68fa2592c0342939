"""Benchmark of the admission webhook's rule (batchyard.core.limits.admission_problem).

What it shows: what one admission request costs the operator's event loop (the kopf handler
only hands the object to this function), for a typical small BatchJob and JobDefinition and for
objects at AWS's limits (30 KiB, 24 KiB), on CREATE (no old object) and on UPDATE (old and new
compared; a metadata-only update). The loop shares its thread with the webhook, so this is the
pause a burst of submissions adds to it.

Run: ``PYTHONPATH=operator python bench/bench_admission.py`` (plain script, prints figures).
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))

from batchyard.core.limits import MAX_DEFINITION_BYTES, MAX_SUBMISSION_BYTES, admission_problem, json_size

ROUNDS = 7
CALLS = 2000


def obj(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": "x", "namespace": "team"}, "spec": spec}


def at_limit(base: dict[str, Any], size: int) -> dict[str, Any]:
    params: dict[str, str] = {}
    while True:
        key = f"p{len(params):03d}"
        room = size - json_size({**base, "parameters": {**params, key: ""}})
        if room <= 1000:
            params[key] = "x" * room
            return {**base, "parameters": params}
        params[key] = "x" * 1000


SMALL_JOB = {
    "jobQueue": "q",
    "jobDefinition": "d",
    "parameters": {"input": "s3://bucket/key"},
    "containerOverrides": {"command": ["python", "run.py"], "environment": [{"name": "A", "value": "1"}]},
}
SMALL_DEF = {
    "type": "container",
    "containerProperties": {
        "image": "busybox:1.36",
        "command": ["echo", "Ref::input"],
        "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
    },
}
CASES = [
    ("BatchJob", "small", SMALL_JOB),
    ("BatchJob", "30 KiB", at_limit({"jobQueue": "q", "jobDefinition": "d"}, MAX_SUBMISSION_BYTES)),
    ("JobDefinition", "small", SMALL_DEF),
    ("JobDefinition", "24 KiB", at_limit(SMALL_DEF, MAX_DEFINITION_BYTES)),
]


def per_call(fn: Any) -> float:
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(CALLS):
            fn()
        rounds.append((time.perf_counter() - start) / CALLS)
    return statistics.median(rounds)


def main() -> None:
    print(f"python {platform.python_version()} on {platform.machine()}, median of {ROUNDS} x {CALLS} calls")
    print(f"{'kind':<14} {'size':<7} {'bytes':>7} {'CREATE':>9} {'UPDATE':>9}")
    for kind, label, spec in CASES:
        new = obj(kind, spec)
        old = obj(kind, dict(spec))  # an equal copy: a metadata-only update
        assert admission_problem(kind, new) is None
        create = per_call(lambda: admission_problem(kind, new))  # noqa: B023
        update = per_call(lambda: admission_problem(kind, new, old))  # noqa: B023
        size = json_size(spec)
        print(f"{kind:<14} {label:<7} {size:>7,} {create * 1e6:>7.1f}us {update * 1e6:>7.1f}us")


if __name__ == "__main__":
    main()
