"""One array of 10,000 short children on kwok nodes with 500 vCPUs: wall time, API writes per
child, and the parent's object size at the end.

    python bench/bench_array.py [--size 10000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections import Counter

from harness import bench_cluster, machine, wait, writes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--delay", default="1s")
    args = parser.parse_args()
    with bench_cluster("array-ce", "array-q", nodes=5, cpu="100", max_vcpus=500) as (cluster, op):
        job = {"apiVersion": "batchyard.io/v1alpha1", "kind": "BatchJob",
               "metadata": {"name": "big", "namespace": "default",
                            "annotations": {"kwok.batchyard.io/exit-code": "0", "kwok.batchyard.io/delay": args.delay}},
               "spec": {"jobQueue": "array-q", "jobDefinition": "bench", "arrayProperties": {"size": args.size}}}  # fmt: skip
        calls_before = Counter(op.controller.kube.calls)
        started = time.monotonic()
        cluster.kubectl("create", "-f", "-", input=json.dumps(job))

        def done() -> bool:
            out = cluster.kubectl("get", "batchjob", "big", "-o", "jsonpath={.status.status}", check=False)
            return out.stdout in ("SUCCEEDED", "FAILED")

        wait(done, 3600, "the array to finish")
        total = time.monotonic() - started
        time.sleep(3)
        calls = Counter(op.controller.kube.calls)
        calls.subtract(calls_before)
        body = cluster.kubectl("get", "batchjob", "big", "-o", "json").stdout
        status = json.loads(body)["status"]
        print(f"machine: {machine()}; date {dt.date.today()}")
        print(f"array size {args.size}, child run time {args.delay}, 500 vCPUs (5 kwok nodes x 100)")
        print(f"final state {status['status']}; summary {status['arrayProperties']['statusSummary']}")
        print(
            f"wall time submit -> parent {status['status']}: {total:.1f}s ({args.size / total:.1f} children/s)"
        )
        per_verb = {k: round(v / args.size, 3) for k, v in sorted(calls.items()) if v}
        print(
            f"API writes per child: {writes(calls) / args.size:.3f}  (requests per child by verb: {per_verb})"
        )
        obj = json.loads(body)
        parts = {k: len(json.dumps(obj.get(k))) for k in ("metadata", "spec", "status")}
        parts.update({f"status.{k}": len(json.dumps(v)) for k, v in status.items()})
        print(
            "largest parts (bytes): "
            + ", ".join(f"{k} {v}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])[:6])
        )
        print(f"parent object size at the end: {len(body)} bytes of JSON "
              f"(status.arrayProperties: {len(json.dumps(status['arrayProperties']))} bytes)")  # fmt: skip


if __name__ == "__main__":
    main()
