"""Warm start time and memory of the local control plane (binaries already built).

python bench/bench_devcluster.py [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

from harness import machine

from batchyard.devcluster import DevCluster, node_manifest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    starts, readies, rss = [], [], []
    for _ in range(args.runs):
        cluster = DevCluster(workdir=Path(tempfile.mkdtemp(prefix="batchyard-bench-dev-")))
        t0 = time.monotonic()
        cluster.start()
        t1 = time.monotonic()
        cluster.add_nodes([node_manifest("n0"), node_manifest("n1")])
        t2 = time.monotonic()
        time.sleep(2)
        rss.append(cluster.rss_mib())
        cluster.stop()
        starts.append(t1 - t0)
        readies.append(t2 - t0)
    print(f"machine: {machine()}; date {dt.date.today()}; runs {args.runs}")
    print(f"control plane ready (default ServiceAccount exists): median {statistics.median(starts):.1f}s")
    print(f"... plus 2 kwok nodes Ready: median {statistics.median(readies):.1f}s")
    last = rss[-1]
    print(
        "resident memory (MiB): "
        + ", ".join(f"{k} {v:.0f}" for k, v in last.items())
        + f"; total {sum(last.values()):.0f}"
    )


if __name__ == "__main__":
    main()
