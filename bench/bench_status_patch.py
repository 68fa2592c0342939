"""API server CPU per BatchJob status merge patch, for the CRDs (and admission policy) of a directory.

Why: every status write of the operator is a merge patch on the BatchJob's status subresource, and
the API server's CPU per write decides the jobs per second on one machine (issue 14). This bench
isolates that cost: a fresh local control plane, the CRD directory installed, 50 BatchJobs, then N
status patches alternating two realistic statuses (RUNNING with an attempt, SUCCEEDED with its exit
code), 16 at a time. No operator runs. kube-apiserver's CPU is read from /proc.

    python bench/bench_status_patch.py [--patches 3000] [--crds crds/] [--crds OTHER_DIR ...] [--rounds 2]

With several --crds directories the rounds interleave them, so each figure is compared with the
others measured in the same minutes on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_throughput as bt

from batchyard.devcluster import DevCluster

STARTED = "2026-12-02T00:55:23.597Z"
RUNNING = {"status": {"status": "RUNNING", "startedAt": STARTED,
                      "attempts": [{"attempt": 1, "podName": "p", "nodeName": "n", "startedAt": STARTED}]}}  # fmt: skip
SUCCEEDED = {"status": {"status": "SUCCEEDED", "stoppedAt": "2026-12-02T00:55:24.606Z",
                        "attempts": [{"attempt": 1, "podName": "p", "nodeName": "n", "exitCode": 0,
                                      "startedAt": STARTED, "stoppedAt": "2026-12-02T00:55:24.606Z"}]}}  # fmt: skip
JOBS = 50


async def patches(cluster: DevCluster, n: int) -> float:
    """ms of kube-apiserver CPU per status patch."""
    client = bt.Client(cluster, 16)
    base = f"/apis/batchyard.io/v1alpha1/namespaces/{bt.NS}/batchjobs"
    try:
        for i in range(JOBS):
            body = {"apiVersion": "batchyard.io/v1alpha1", "kind": "BatchJob", "metadata": {"name": f"j{i}"},
                    "spec": {"jobQueue": "q", "jobDefinition": "d"}}  # fmt: skip
            assert await client.send("POST", base, body) == 201
        pid = cluster.pids["kube-apiserver"]
        before = bt.cpu_seconds(pid)
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            body = RUNNING if (i // JOBS) % 2 == 0 else SUCCEEDED
            async with (
                sem,
                client.session.patch(
                    f"{client.base}{base}/j{i % JOBS}/status",
                    data=json.dumps(body),
                    headers={"Content-Type": "application/merge-patch+json"},
                ) as resp,
            ):
                assert resp.status == 200, (resp.status, await resp.text())

        await asyncio.gather(*(one(i) for i in range(n)))
        return 1000 * (bt.cpu_seconds(pid) - before) / n
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patches", type=int, default=3000)
    parser.add_argument("--crds", action="append", type=Path, help="a directory of CRDs (repeatable)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    dirs: list[Path] = args.crds or [bt.REPO / "crds"]
    print(f"machine: {bt.machine()}; {args.patches} status patches per round, 16 concurrent")
    got: dict[Path, list[float]] = {d: [] for d in dirs}
    for _ in range(args.rounds):
        for d in dirs:
            cluster = DevCluster(workdir=Path(tempfile.mkdtemp(prefix="batchyard-sp-")))
            cluster.start()
            try:
                cluster.install_crds(d)
                got[d].append(asyncio.run(patches(cluster, args.patches)))
            finally:
                cluster.stop()
            load = Path("/proc/loadavg").read_text().split()[0]
            print(f"  {d}: {got[d][-1]:.2f} ms kube-apiserver CPU per status patch (load {load})", flush=True)
    for d, ms in got.items():
        print(f"median {d}: {statistics.median(ms):.2f} ms per patch ({', '.join(f'{x:.2f}' for x in ms)})")


if __name__ == "__main__":
    main()
