"""Submit -> RUNNING latency for 200 jobs on an idle cluster, and API writes per job.

Jobs are created one by one through the API (the submit time is taken when the create returns);
a watch on BatchJobs timestamps the first event that shows each job RUNNING and SUCCEEDED, on
the same clock. The operator runs in-process, so every request it makes is counted by verb.

    python bench/bench_lifecycle.py [--jobs 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import threading
import time
from collections import Counter
from typing import Any

from harness import bench_cluster, machine, wait, writes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    from kubernetes import client, config, watch

    with bench_cluster("bench-ce", "bench-q", nodes=4, cpu="64", max_vcpus=256) as (cluster, op):
        api = client.CustomObjectsApi(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
        submitted: dict[str, float] = {}
        running: dict[str, float] = {}
        finished: dict[str, float] = {}
        stop = threading.Event()

        def watcher() -> None:
            w = watch.Watch()
            for ev in w.stream(api.list_namespaced_custom_object, "batchyard.io", "v1alpha1", "default",
                               "batchjobs", timeout_seconds=600):  # fmt: skip
                now = time.monotonic()
                obj: dict[str, Any] = ev["object"]
                name, state = obj["metadata"]["name"], (obj.get("status") or {}).get("status")
                if state in ("RUNNING", "SUCCEEDED", "FAILED"):
                    running.setdefault(name, now)
                if state in ("SUCCEEDED", "FAILED"):
                    finished.setdefault(name, now)
                if stop.is_set():
                    w.stop()

        thread = threading.Thread(target=watcher, daemon=True)
        thread.start()
        time.sleep(1)
        calls_before = Counter(op.controller.kube.calls)
        started = time.monotonic()
        for i in range(args.jobs):
            name = f"job-{i:04d}"
            body = {"apiVersion": "batchyard.io/v1alpha1", "kind": "BatchJob",
                    "metadata": {"name": name, "annotations": {"kwok.batchyard.io/exit-code": "0",
                                                               "kwok.batchyard.io/delay": "1s"}},
                    "spec": {"jobQueue": "bench-q", "jobDefinition": "bench"}}  # fmt: skip
            api.create_namespaced_custom_object("batchyard.io", "v1alpha1", "default", "batchjobs", body)
            submitted[name] = time.monotonic()
        wait(lambda: len(finished) >= args.jobs, 600, "all jobs to finish")
        # Let the last pod deletions and status writes land before counting.
        time.sleep(3)
        stop.set()
        total = time.monotonic() - started
        calls = Counter(op.controller.kube.calls)
        calls.subtract(calls_before)
        lat = sorted(running[n] - submitted[n] for n in submitted)
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        per_verb = {k: round(v / args.jobs, 2) for k, v in sorted(calls.items()) if v}
        print(f"machine: {machine()}; date {dt.date.today()}")
        print(f"jobs: {args.jobs}; wall time submit-to-all-finished: {total:.1f}s")
        print(
            f"submit -> RUNNING latency: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms"
        )
        print(f"API writes per job: {writes(calls) / args.jobs:.2f}  (requests per job by verb: {per_verb})")


if __name__ == "__main__":
    main()
