"""Scale (issue 14): a large backlog released at once, and a million queued array children.

Each part on its own fresh local control plane (4 kwok nodes x 999 vCPU), the operator as its
own process (`batchyard run`, as bench_throughput starts it):

(a) backlog: N one-vCPU BatchJobs (created by an aiohttp client at concurrency 64) wait RUNNABLE
    behind a DISABLED compute environment (a DISABLED JobQueue refuses new jobs, AWS); once all
    N are RUNNABLE the compute environment is patched ENABLED and the time to the first 1,000
    pods created is taken on a pod watch (from the patch's response). One control plane per N;
    the ratio of the largest N's time to the smallest's is printed (target: within 2x).
(b) arrays: A array jobs of S children each (default 100 x 10,000) queued behind the DISABLED
    compute environment. Once every child is RUNNABLE (the parents' statusSummary), the
    operator's resident memory (VmRSS, /proc) is read; then the operator is stopped and started
    again and the time from the new process's start to ready (its state listed and its first
    scheduler cycle done: ``batchyard_scheduler_cycle_seconds_count`` >= 1 on its /metrics,
    which a thread serves while a cycle runs) and its resident memory then are taken.
    Targets: RSS < 1 GiB, ready < 60 s.

    python bench/bench_scale.py [--backlog 1000,100000] [--arrays 100 --array-size 10000]
        [--only backlog|arrays] [--py-spy out]   # record the restarted operator (raw format)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench_throughput import (
    BATCHYARD,
    CE,
    NODE_CPU,
    NODES,
    NS,
    QUEUE,
    Client,
    apply_bench_objects,
    cpu_seconds,
    fresh_cluster,
    operator_environment,
)
from harness import machine
from prometheus_client.parser import text_string_to_metric_families

from batchyard.devcluster import DevCluster
from batchyard.devcluster.cluster import free_port

API = f"/apis/batchyard.io/v1alpha1/namespaces/{NS}/batchjobs"
RUN_LONG = {"kwok.batchyard.io/exit-code": "0", "kwok.batchyard.io/delay": "1h"}
FIRST = 1000  # dispatches timed


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def setup(cluster: DevCluster) -> None:
    """The throughput bench's world, its compute environment DISABLED: jobs wait RUNNABLE."""
    apply_bench_objects(cluster, ce_state="DISABLED")


class Operator:
    """`batchyard run` as its own process, with /metrics on a free port."""

    def __init__(
        self, cluster: DevCluster, tag: str, src: str | None = None, extra_env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        # A million-child first cycle must not count as a stuck loop.
        env = operator_environment(
            cluster, self.port, src, {"BATCHYARD_LIVENESS_STALL_SECONDS": "3600", **(extra_env or {})}
        )
        with (cluster.workdir / f"operator-{tag}.log").open("wb") as out:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                [str(BATCHYARD), "run"], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def _scrape(self) -> dict[str, float] | None:
        """Every sample on the operator's /metrics by name; None when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        return {s.name: float(s.value) for f in text_string_to_metric_families(text) for s in f.samples}

    def metric(self, name: str) -> float | None:
        return (self._scrape() or {}).get(name)

    def metrics(self, *names: str) -> list[float]:
        """Several metrics from one scrape (0 for any not there)."""
        found = self._scrape() or {}
        return [found.get(n, 0.0) for n in names]

    async def ready(self, timeout: float) -> float:
        """Seconds from process start to the end of the first scheduler cycle."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (await asyncio.to_thread(self.metric, "batchyard_scheduler_cycle_seconds_count") or 0) >= 1:
                return time.monotonic() - self.started
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}")
            await asyncio.sleep(0.1)
        raise TimeoutError(f"operator not ready after {timeout} s")

    async def quiet(self, window: float = 3.0, busy: float = 0.1, timeout: float = 600) -> float:
        """Wait until the loop spent under ``busy`` seconds in cycles over ``window`` seconds,
        in which it ran at least two cycles (it ticks every second when idle): a cycle's time
        is counted when it ends, so one long cycle spanning the window would look quiet."""
        started = time.monotonic()
        count, total = "batchyard_scheduler_cycle_seconds_count", "batchyard_scheduler_cycle_seconds_sum"
        while time.monotonic() - started < timeout:
            n0, s0 = await asyncio.to_thread(self.metrics, count, total)
            await asyncio.sleep(window)
            n1, s1 = await asyncio.to_thread(self.metrics, count, total)
            if n1 - n0 >= 2 and s1 - s0 < busy:
                break
        return time.monotonic() - started

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def create_all(client: Client, bodies: list[dict[str, Any]]) -> float:
    started = time.monotonic()
    codes = await asyncio.gather(*(client.send("POST", API, b) for b in bodies))
    bad = [c for c in codes if c != 201]
    if bad:
        raise RuntimeError(f"{len(bad)} creates failed, e.g. HTTP {bad[0]}")
    return time.monotonic() - started


async def merge_patch(client: Client, path: str, body: dict[str, Any]) -> int:
    headers = {"Content-Type": "application/merge-patch+json"}
    async with client.session.patch(client.base + path, data=json.dumps(body), headers=headers) as resp:
        await resp.read()
        return resp.status


# -- (a) backlog ---------------------------------------------------------------------------------
async def backlog(
    cluster: DevCluster,
    n: int,
    concurrency: int,
    src: str | None,
    py_spy: str | None = None,
    operator_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    setup(cluster)
    op = Operator(cluster, f"backlog-{n}", src, operator_env)
    client = Client(cluster, concurrency)
    stop = asyncio.Event()
    runnable: set[str] = set()
    all_runnable = asyncio.Event()
    pods: dict[str, float] = {}
    first = asyncio.Event()

    def on_job(kind: str, obj: dict[str, Any]) -> None:
        if (obj.get("status") or {}).get("status") == "RUNNABLE":
            runnable.add(obj["metadata"]["name"])
            if len(runnable) >= n:
                all_runnable.set()

    def on_pod(kind: str, obj: dict[str, Any]) -> None:
        pods.setdefault(obj["metadata"]["name"], time.monotonic())
        if len(pods) >= FIRST:
            first.set()

    tasks: list[asyncio.Task[Any]] = []
    spy: subprocess.Popen[bytes] | None = None
    try:
        await op.ready(300)
        tasks.append(asyncio.create_task(client.watch(API, on_job, stop)))
        bodies = [
            {"apiVersion": "batchyard.io/v1alpha1", "kind": "BatchJob",
             "metadata": {"name": f"job-{i:06d}", "annotations": dict(RUN_LONG)},
             "spec": {"jobQueue": QUEUE, "jobDefinition": "tp"}}
            for i in range(n)
        ]  # fmt: skip
        t0 = time.monotonic()
        create_s = await create_all(client, bodies)
        del bodies
        await asyncio.wait_for(all_runnable.wait(), timeout=7200)
        queued_s = time.monotonic() - t0
        stop.set()
        for t in tasks:
            t.cancel()
        tasks.clear()
        # The operator steps the echoes of its last status writes (and writes queue positions):
        # enable only once its loop is quiet, so the time measured is the dispatch's alone.
        quiet_s = await op.quiet()
        stop.clear()
        cpu_before, rss_before, load_before = cpu_seconds(op.proc.pid), rss_mib(op.proc.pid), load()
        tasks.append(asyncio.create_task(client.watch(f"/api/v1/namespaces/{NS}/pods", on_pod, stop)))
        await asyncio.sleep(1)
        assert not pods, "pods exist before the compute environment is enabled"
        if py_spy:  # the operator from the release to the FIRST-th pod
            spy = start_py_spy(op.proc.pid, f"{py_spy}.backlog-{n}")
            await asyncio.sleep(0.3)
        status = await merge_patch(
            client, f"/apis/batchyard.io/v1alpha1/computeenvironments/{CE}", {"spec": {"state": "ENABLED"}}
        )
        if status != 200:
            raise RuntimeError(f"enabling the compute environment: HTTP {status}")
        enabled = time.monotonic()
        await asyncio.wait_for(first.wait(), timeout=3600)
        stop_py_spy(spy)
        spy = None
        times = sorted(t - enabled for t in pods.values())
        return {
            "n": n,
            "create_s": create_s,
            "all_runnable_s": queued_s,
            "quiet_after_s": quiet_s,
            "first_pod_s": times[0],
            "first_1000_s": times[FIRST - 1],
            "operator_rss_mib_queued": rss_before,
            "operator_cpu_s_during": cpu_seconds(op.proc.pid) - cpu_before,
            "load": f"{load_before} -> {load()}",
        }
    finally:
        stop_py_spy(spy)
        stop.set()
        for t in tasks:
            t.cancel()
        await client.close()
        op.stop()


def start_py_spy(pid: int, output: str) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` (raw collapsed stacks, 50 Hz) into ``output`` until stopped."""
    return subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--format", "raw",
                             "--rate", "50", "--output", output, "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def stop_py_spy(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is None:
        return
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(60)
    except subprocess.TimeoutExpired:
        spy.kill()


# -- (b) arrays ----------------------------------------------------------------------------------
async def arrays(
    cluster: DevCluster, count: int, size: int, concurrency: int, py_spy: str | None, src: str | None
) -> dict[str, Any]:
    setup(cluster)
    op = Operator(cluster, "arrays-1", src)
    client = Client(cluster, concurrency)
    stop = asyncio.Event()
    summary: dict[str, int] = {}
    queued = asyncio.Event()

    def on_job(kind: str, obj: dict[str, Any]) -> None:
        props = (obj.get("status") or {}).get("arrayProperties") or {}
        summary[obj["metadata"]["name"]] = int((props.get("statusSummary") or {}).get("RUNNABLE") or 0)
        if sum(summary.values()) >= count * size:
            queued.set()

    watcher: asyncio.Task[Any] | None = None
    spy: subprocess.Popen[bytes] | None = None
    try:
        await op.ready(300)
        watcher = asyncio.create_task(client.watch(API, on_job, stop))
        bodies = [
            {"apiVersion": "batchyard.io/v1alpha1", "kind": "BatchJob",
             "metadata": {"name": f"array-{i:03d}", "annotations": dict(RUN_LONG)},
             "spec": {"jobQueue": QUEUE, "jobDefinition": "tp", "arrayProperties": {"size": size}}}
            for i in range(count)
        ]  # fmt: skip
        t0 = time.monotonic()
        await create_all(client, bodies)
        await asyncio.wait_for(queued.wait(), timeout=3600)
        queued_s = time.monotonic() - t0
        await asyncio.sleep(5)
        first_rss = rss_mib(op.proc.pid)
        op.stop()
        load_restart = load()
        op = Operator(cluster, "arrays-2", src)
        if py_spy:
            await asyncio.sleep(0.3)
            spy = start_py_spy(op.proc.pid, py_spy)
        ready_s = await op.ready(1800)
        ready_rss = rss_mib(op.proc.pid)
        cycle_s = op.metric("batchyard_scheduler_cycle_seconds_sum")
        await asyncio.sleep(10)
        later_rss = rss_mib(op.proc.pid)
        return {
            "arrays": count,
            "size": size,
            "children": count * size,
            "all_runnable_s": queued_s,
            "rss_mib_first_operator_queued": first_rss,
            "restart_ready_s": ready_s,
            "restart_first_cycle_s": cycle_s,
            "rss_mib_restarted_at_ready": ready_rss,
            "rss_mib_restarted_10s_later": later_rss,
            "load_at_restart": f"{load_restart} -> {load()}",
        }
    finally:
        stop_py_spy(spy)
        stop.set()
        if watcher is not None:
            watcher.cancel()
        await client.close()
        op.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backlog", default="1000,100000", help="comma-separated backlog sizes N")
    parser.add_argument("--arrays", type=int, default=100)
    parser.add_argument("--array-size", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--only", choices=("backlog", "arrays"), default=None)
    parser.add_argument(
        "--py-spy",
        default=None,
        help="record the operator with py-spy: the restarted one (arrays) into this file, the release "
        "(backlog) into FILE.backlog-N",
    )
    parser.add_argument("--operator-src", default=None, help="run the operator of this other checkout")
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the operator (repeatable), e.g. BATCHYARD_MAX_DISPATCHES_PER_CYCLE=64",
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    operator_env = dict(e.split("=", 1) for e in args.operator_env)
    print(f"machine: {machine()}; date {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; "
          f"{NODES} kwok nodes x {NODE_CPU} vCPU; concurrency {args.concurrency}", flush=True)  # fmt: skip
    out: dict[str, Any] = {}
    if args.only in (None, "backlog"):
        rows = []
        sizes = [int(x) for x in args.backlog.split(",")]
        if min(sizes) < FIRST:
            parser.error(f"--backlog: every N must be at least {FIRST:,} (the dispatches timed)")
        for n in sizes:
            with fresh_cluster() as cluster:
                r = asyncio.run(
                    backlog(cluster, n, args.concurrency, args.operator_src, args.py_spy, operator_env)
                )
            rows.append(r)
            print(f"backlog N={n:,}: created in {r['create_s']:.1f} s, all RUNNABLE at {r['all_runnable_s']:.1f} s, "
                  f"operator quiet {r['quiet_after_s']:.0f} s later; after enabling: first pod {r['first_pod_s']:.2f} s, {FIRST:,} pods {r['first_1000_s']:.2f} s; "
                  f"operator RSS {r['operator_rss_mib_queued']:.0f} MiB, CPU {r['operator_cpu_s_during']:.1f} s "
                  f"meanwhile; load {r['load']}", flush=True)  # fmt: skip
        if len(rows) > 1:
            ratio = rows[-1]["first_1000_s"] / rows[0]["first_1000_s"]
            print(f"ratio, first {FIRST:,} dispatches, N={rows[-1]['n']:,} / N={rows[0]['n']:,}: {ratio:.2f} "
                  f"(target <= 2)")  # fmt: skip
        out["backlog"] = rows
    if args.only in (None, "arrays"):
        with fresh_cluster() as cluster:
            r = asyncio.run(
                arrays(
                    cluster, args.arrays, args.array_size, args.concurrency, args.py_spy, args.operator_src
                )
            )
        print(f"arrays {r['arrays']} x {r['size']:,} = {r['children']:,} children: all RUNNABLE at "
              f"{r['all_runnable_s']:.1f} s; operator RSS {r['rss_mib_first_operator_queued']:.0f} MiB; restart: "
              f"ready {r['restart_ready_s']:.1f} s (first cycle {r['restart_first_cycle_s']:.1f} s), RSS "
              f"{r['rss_mib_restarted_at_ready']:.0f} MiB at ready, {r['rss_mib_restarted_10s_later']:.0f} MiB "
              f"10 s later; load {r['load_at_restart']}", flush=True)  # fmt: skip
        out["arrays"] = r
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.exit(main())
