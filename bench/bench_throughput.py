"""Jobs per second against what the API server allows (issue 14).

Two rows (three with ``--kueue``), each on its own fresh local control plane, interleaved and
rotated run by run:

(a) the plain-client ceiling: N bare pods (1 vCPU, the kwok exit stage ends them after 1 s)
    created at concurrency 32, awaited to completion (a pod watch) and deleted;
(b) Batchyard: N one-vCPU BatchJobs that each run 1 s, created at concurrency 32 by the same
    client, with the operator as its own process (`batchyard run`, as tests/cluster/
    test_operations.py starts it), from the first create to all SUCCEEDED (a BatchJob watch);
(c) with ``--kueue``, Kueue (its manager built from the Go module, `batchyard.devcluster.kueue`,
    run as its own process with its webhooks registered): one ResourceFlavor, a ClusterQueue
    with quota for all of the kwok nodes, one LocalQueue; N batch/v1 Jobs (1 vCPU, 1 pod, the
    same kwok annotations on the pod template, created suspended with the queue-name label as
    Kueue's docs say) created at concurrency 32 by the same client, each deleted (propagation
    Background) once its Complete condition is seen on a Job watch, and counted when that delete
    returned (as row (a) counts a pod); the writes are counted after the Jobs' pods and
    Workloads are gone.

For each row the script prints jobs/s, the time at which half the jobs had finished, the API
server's own write counts per job by verb and resource (deltas of ``apiserver_request_total``
from kube-apiserver's /metrics), the operator's own writes per job (its
``batchyard_api_requests_total``), and CPU seconds per job by process (/proc). The ratio b/a is
computed within each run; with more than one run (3 by default: ceiling and Batchyard rounds
interleaved, the order rotated run by run) the summary gives the medians, the median of the
per-run ratios and the ratio of the medians.

    python bench/bench_throughput.py [--jobs 2000] [--runs 3] [--concurrency 32] [--before-src DIR]
        [--py-spy out.txt]   # record the operator's stacks (py-spy, raw collapsed format)
        [--kueue]            # add row (c); builds Kueue once (cached) if it is not built yet

The client is aiohttp (as the operator's), so its own CPU use is small and the same for both rows.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import datetime as dt
import itertools
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from harness import CE_LABEL, REPO, machine
from prometheus_client.parser import text_string_to_metric_families

from batchyard.devcluster import DevCluster, node_manifest
from batchyard.devcluster.cluster import free_port
from batchyard.devcluster.kueue import KUEUE_VERSION, KueueManager, ensure_kueue

CE, QUEUE, NS = "tp-ce", "tp-q", "default"
KUEUE_MODULE_NOTE = "manager built from sigs.k8s.io/kueue, its own process, webhooks registered by url"
NODES, NODE_CPU = (
    4,
    999,
)  # 999, not 1000: the API server writes 1000 as "1k", which the operator before this branch could not parse
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY")
BATCHYARD = Path(sys.executable).parent / "batchyard"
KWOK_ANN = {"kwok.batchyard.io/exit-code": "0", "kwok.batchyard.io/delay": "1s"}


# -- the control plane ------------------------------------------------------------------------
@contextmanager
def fresh_cluster(crds: Path | None = None) -> Iterator[DevCluster]:
    """A fresh control plane with the CRDs of ``crds`` (this checkout's by default; the 'before'
    row uses its own checkout's, whose CRD rules cost the API server differently)."""
    cluster = DevCluster(workdir=Path(tempfile.mkdtemp(prefix="batchyard-tp-")))
    cluster.start()
    try:
        cluster.install_crds(crds or REPO / "crds")
        taints = [{"key": CE_LABEL, "value": CE, "effect": e} for e in ("NoSchedule", "NoExecute")]
        cluster.add_nodes(
            [
                node_manifest(
                    f"{CE}-{i}",
                    cpu=str(NODE_CPU),
                    memory="4Ti",
                    pods="5000",
                    labels={CE_LABEL: CE},
                    taints=taints,
                )
                for i in range(NODES)
            ]
        )
        yield cluster
    finally:
        cluster.stop()


def apiserver_writes(cluster: DevCluster) -> Counter[str]:
    """kube-apiserver's own count of write requests, keyed "VERB resource[/subresource]"."""
    ctx = ssl.create_default_context(cafile=str(cluster.ca_file))
    req = urllib.request.Request(
        f"{cluster.server}/metrics", headers={"Authorization": f"Bearer {cluster.token}"}
    )
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        text = resp.read().decode()
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for s in family.samples:
            if s.name != "apiserver_request_total" or s.labels.get("verb") not in WRITE_VERBS:
                continue
            res = s.labels.get("resource", "")
            if s.labels.get("subresource"):
                res += "/" + s.labels["subresource"]
            out[f"{s.labels['verb']} {res}"] += int(s.value)
    return out


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_process(cluster: DevCluster, extra: dict[str, int]) -> dict[str, float]:
    pids = {**cluster.pids, **extra}
    out = {name: cpu_seconds(pid) for name, pid in pids.items()}
    ru = os.times()
    out["bench-client"] = ru.user + ru.system
    return out


# -- the client -------------------------------------------------------------------------------
class Client:
    def __init__(self, cluster: DevCluster, concurrency: int) -> None:
        self.base = cluster.server
        self.headers = {"Authorization": f"Bearer {cluster.token}"}
        self.ssl = ssl.create_default_context(cafile=str(cluster.ca_file))
        self.sem = asyncio.Semaphore(concurrency)
        self.session = aiohttp.ClientSession(
            headers=self.headers, connector=aiohttp.TCPConnector(ssl=self.ssl, limit=concurrency + 4)
        )

    async def close(self) -> None:
        await self.session.close()

    async def send(self, method: str, path: str, body: Any = None) -> int:
        async with self.sem:
            for attempt in range(20):
                try:
                    async with self.session.request(method, self.base + path, json=body) as resp:
                        await resp.read()
                        if resp.status in (429, 500, 503, 504):
                            await asyncio.sleep(0.1 * (attempt + 1))
                            continue
                        return resp.status
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1 * (attempt + 1))
            return 599

    async def pods_gone(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until no pod is left in the namespace."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with self.session.get(f"{self.base}/api/v1/namespaces/{NS}/pods?limit=1") as resp:
                if not (await resp.json()).get("items"):
                    return
            await asyncio.sleep(0.5)

    async def watch(self, path: str, on_event: Any, stop: asyncio.Event) -> None:
        """List, then watch from the list's resourceVersion; on any break, list again (a
        missed event can't leave the count short)."""
        sep = "&" if "?" in path else "?"
        while not stop.is_set():
            try:
                async with self.session.get(self.base + path) as resp:
                    listed = await resp.json()
                for obj in listed.get("items") or []:
                    on_event("ADDED", obj)
                rv = listed["metadata"]["resourceVersion"]
                params = f"watch=true&allowWatchBookmarks=true&timeoutSeconds=600&resourceVersion={rv}"
                timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
                async with self.session.get(f"{self.base}{path}{sep}{params}", timeout=timeout) as resp:
                    while not stop.is_set():
                        line = await resp.content.readuntil(b"\n")
                        if not line:
                            break
                        ev = json.loads(line)
                        if ev.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                            on_event(ev["type"], ev["object"])
                        elif ev.get("type") == "ERROR":
                            break
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a broken stream: list and watch again
                print(f"watch {path} broke: {err!r}; listing again", file=sys.stderr)
                await asyncio.sleep(0.2)


class Progress:
    """Finished count over time, on one monotonic clock."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done: dict[str, float] = {}
        self.all_done = asyncio.Event()
        self.start = 0.0

    def finish(self, name: str) -> None:
        if name not in self.done:
            self.done[name] = time.monotonic()
            if len(self.done) >= self.total:
                self.all_done.set()

    def summary(self) -> dict[str, float]:
        times = sorted(t - self.start for t in self.done.values())
        wall = times[-1] if times else float("nan")
        # The longest stretch (from 10 % to 90 %) in which the finished count did not move.
        lo, hi = times[len(times) // 10], times[(len(times) * 9) // 10]
        gaps = [b - a for a, b in itertools.pairwise(times) if lo <= a <= hi]
        flat = max(gaps, default=0.0)
        return {
            "wall_s": wall,
            "jobs_per_s": len(times) / wall if wall else 0.0,
            "half_s": times[len(times) // 2 - 1] if times else float("nan"),
            "longest_flat_s": flat,
            # where the longest flat stretch began (s after the first create), and the finished
            # count at each whole second (in --json: the shape of the run, not only its end)
            "longest_flat_at_s": next(
                (a for a, b in itertools.pairwise(times) if lo <= a <= hi and b - a == flat), 0.0
            ),
            "finished_by_second": [bisect.bisect_right(times, s) for s in range(int(wall) + 2)]
            if times
            else [],
        }


# -- row (a): bare pods -------------------------------------------------------------------------
def bare_pod(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"bare-{i:06d}", "labels": {"bench": "bare"}, "annotations": dict(KWOK_ANN)},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {CE_LABEL: CE},
            "tolerations": [
                {"key": CE_LABEL, "operator": "Equal", "value": CE, "effect": e}
                for e in ("NoSchedule", "NoExecute")
            ],
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": ["true"],
                    "resources": {
                        "requests": {"cpu": "1", "memory": "256Mi"},
                        "limits": {"cpu": "1", "memory": "256Mi"},
                    },
                }
            ],
        },
    }


async def run_ceiling(cluster: DevCluster, jobs: int, concurrency: int) -> dict[str, Any]:
    client = Client(cluster, concurrency)
    progress = Progress(jobs)
    stop = asyncio.Event()
    deleting: set[str] = set()
    tasks: set[asyncio.Task[Any]] = set()

    async def delete(name: str) -> None:
        await client.send("DELETE", f"/api/v1/namespaces/{NS}/pods/{name}")
        progress.finish(name)

    def on_pod(kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        phase = (obj.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") and name not in deleting:
            deleting.add(name)
            t = asyncio.get_running_loop().create_task(delete(name))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    watcher = asyncio.create_task(
        client.watch(f"/api/v1/namespaces/{NS}/pods?labelSelector=bench%3Dbare", on_pod, stop)
    )
    await asyncio.sleep(1)
    before_w, before_cpu = apiserver_writes(cluster), cpu_by_process(cluster, {})
    progress.start = time.monotonic()
    await asyncio.gather(
        *(client.send("POST", f"/api/v1/namespaces/{NS}/pods", bare_pod(i)) for i in range(jobs))
    )
    await asyncio.wait_for(progress.all_done.wait(), timeout=1800)
    result = progress.summary()
    await asyncio.sleep(2)
    after_w, after_cpu = apiserver_writes(cluster), cpu_by_process(cluster, {})
    stop.set()
    watcher.cancel()
    await client.close()
    return {**result, "writes": _delta(after_w, before_w), "cpu": _cpu_delta(after_cpu, before_cpu)}


# -- row (b): Batchyard ----------------------------------------------------------------------
def operator_writes(port: int) -> Counter[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "batchyard_api_requests_total":
                out[s.labels.get("verb", "")] += int(s.value)
    return out


def apply_bench_objects(cluster: DevCluster, ce_state: str = "ENABLED") -> None:
    """The benches' world: an UNMANAGED compute environment over the kwok nodes (``ce_state``),
    queue ``QUEUE`` on it and the 1-vCPU definition ``tp`` in ``NS``."""
    objs: list[dict[str, Any]] = [
        {"apiVersion": "batchyard.io/v1alpha1", "kind": "ComputeEnvironment", "metadata": {"name": CE},
         "spec": {"type": "UNMANAGED", "state": ce_state, "unmanagedvCpus": NODES * NODE_CPU,
                  "provider": {"type": "unmanaged"}}},
        {"apiVersion": "batchyard.io/v1alpha1", "kind": "JobQueue", "metadata": {"name": QUEUE},
         "spec": {"priority": 1, "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": CE}]}},
        {"apiVersion": "batchyard.io/v1alpha1", "kind": "JobDefinition",
         "metadata": {"name": "tp", "namespace": NS},
         "spec": {"type": "container", "containerProperties": {
             "image": "busybox", "command": ["true"],
             "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "256"}]}}},
    ]  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objs))


def operator_environment(
    cluster: DevCluster,
    metrics_port: int,
    operator_src: str | None = None,
    operator_env: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of `batchyard run` as the benches start it: this cluster, /metrics on
    ``metrics_port``, no leader election, ``operator_env`` on top; with ``operator_src``, the
    operator of that other checkout (e.g. the commit before a change)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHYARD_", "KUBERNETES_"))}
    env.update(
        KUBECONFIG=str(cluster.kubeconfig),
        BATCHYARD_METRICS_PORT=str(metrics_port),
        BATCHYARD_LEADER_ELECTION="false",
    )
    env.update(operator_env or {})
    if operator_src:
        env["PYTHONPATH"] = str(Path(operator_src).resolve() / "operator")
    return env


async def run_batchyard(
    cluster: DevCluster,
    jobs: int,
    concurrency: int,
    py_spy: str | None,
    operator_src: str | None = None,
    operator_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    apply_bench_objects(cluster)
    port = free_port()
    env = operator_environment(cluster, port, operator_src, operator_env)
    log = cluster.workdir / "operator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(BATCHYARD), "run"], env=env, stdout=out, stderr=subprocess.STDOUT)
    spy: subprocess.Popen[bytes] | None = None
    client = Client(cluster, concurrency)
    progress = Progress(jobs)
    stop = asyncio.Event()
    warm = "warm-0"

    def job(name: str) -> dict[str, Any]:
        return {"apiVersion": "batchyard.io/v1alpha1", "kind": "BatchJob",
                "metadata": {"name": name, "annotations": dict(KWOK_ANN)},
                "spec": {"jobQueue": QUEUE, "jobDefinition": "tp"}}  # fmt: skip

    def on_job(kind: str, obj: dict[str, Any]) -> None:
        if (obj.get("status") or {}).get("status") in ("SUCCEEDED", "FAILED"):
            progress.finish(obj["metadata"]["name"])

    try:
        watcher = asyncio.create_task(
            client.watch(f"/apis/batchyard.io/v1alpha1/namespaces/{NS}/batchjobs", on_job, stop)
        )
        # Warm-up: one job end to end proves the operator is up; it is not counted.
        progress.total = 1
        await client.send("POST", f"/apis/batchyard.io/v1alpha1/namespaces/{NS}/batchjobs", job(warm))
        await asyncio.wait_for(progress.all_done.wait(), timeout=120)
        progress.done.clear()
        progress.all_done.clear()
        progress.total = jobs
        await asyncio.sleep(3)  # the warm-up's pod deletion and events land before counting
        if py_spy:
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(proc.pid), "--format", "raw",
                                    "--rate", "50", "--output", py_spy, "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        before_w, before_op = apiserver_writes(cluster), operator_writes(port)
        before_cpu = cpu_by_process(cluster, {"operator": proc.pid})
        progress.start = time.monotonic()
        await asyncio.gather(
            *(client.send("POST", f"/apis/batchyard.io/v1alpha1/namespaces/{NS}/batchjobs", job(f"job-{i:06d}"))
              for i in range(jobs))
        )  # fmt: skip
        await asyncio.wait_for(progress.all_done.wait(), timeout=3600)
        result = progress.summary()
        # Let the operator's last pod deletions (after the status writes) and events land.
        await client.pods_gone(120)
        await asyncio.sleep(2)
        after_w, after_op = apiserver_writes(cluster), operator_writes(port)
        after_cpu = cpu_by_process(cluster, {"operator": proc.pid})
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        stop.set()
        watcher.cancel()
    finally:
        await client.close()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if spy is not None and spy.poll() is None:
            spy.kill()
    op = Counter(after_op)
    op.subtract(before_op)
    return {
        **result,
        "writes": _delta(after_w, before_w),
        "operator": {k: v for k, v in op.items() if v},
        "cpu": _cpu_delta(after_cpu, before_cpu),
    }


# -- row (c): Kueue ---------------------------------------------------------------------------
KQ_LABEL = "kueue.x-k8s.io/queue-name"
KQ_LOCAL = "tp-lq"


def kueue_objects() -> list[dict[str, Any]]:
    quota = [
        {"name": "cpu", "nominalQuota": str(NODES * NODE_CPU)},
        {"name": "memory", "nominalQuota": f"{NODES * 4}Ti"},
        {"name": "pods", "nominalQuota": str(NODES * 5000)},
    ]
    return [
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": "tp-flavor"}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": "tp-cq"},
         "spec": {"namespaceSelector": {},
                  "resourceGroups": [{"coveredResources": ["cpu", "memory", "pods"],
                                      "flavors": [{"name": "tp-flavor", "resources": quota}]}]}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
         "metadata": {"name": KQ_LOCAL, "namespace": NS}, "spec": {"clusterQueue": "tp-cq"}},
    ]  # fmt: skip


def kueue_job(name: str) -> dict[str, Any]:
    pod = bare_pod(0)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {KQ_LABEL: KQ_LOCAL, "bench": "kueue"}},
        "spec": {
            "suspend": True,
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": 0,
            "template": {"metadata": {"annotations": dict(KWOK_ANN)}, "spec": pod["spec"]},
        },
    }


async def run_kueue(cluster: DevCluster, jobs: int, concurrency: int) -> dict[str, Any]:
    kueue = KueueManager(cluster)
    kueue.start()
    client = Client(cluster, concurrency)
    progress = Progress(jobs)
    stop = asyncio.Event()
    deleting: set[str] = set()
    tasks: set[asyncio.Task[Any]] = set()
    jobs_path = f"/apis/batch/v1/namespaces/{NS}/jobs"

    async def delete(name: str) -> None:
        await client.send("DELETE", f"{jobs_path}/{name}", {"propagationPolicy": "Background"})
        progress.finish(name)

    def on_job(kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        conds = (obj.get("status") or {}).get("conditions") or []
        if name in deleting or not any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conds
        ):
            return
        deleting.add(name)
        t = asyncio.get_running_loop().create_task(delete(name))
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    try:
        cluster.apply(kueue_objects())
        watcher = asyncio.create_task(client.watch(f"{jobs_path}?labelSelector=bench%3Dkueue", on_job, stop))
        # Warm-up: one Job end to end proves Kueue admits; it is not counted.
        progress.total = 1
        status = await client.send("POST", jobs_path, kueue_job("warm-0"))
        if status >= 300:
            raise RuntimeError(f"creating the warm-up Job answered {status}:\n{kueue.log_tail()}")
        await asyncio.wait_for(progress.all_done.wait(), timeout=120)
        progress.done.clear()
        progress.all_done.clear()
        progress.total = jobs
        await client.pods_gone(60)
        await asyncio.sleep(3)  # the warm-up's Workload deletion and events land before counting
        before_w, before_cpu = apiserver_writes(cluster), cpu_by_process(cluster, {"kueue": kueue.pid})
        progress.start = time.monotonic()
        statuses = await asyncio.gather(
            *(client.send("POST", jobs_path, kueue_job(f"job-{i:06d}")) for i in range(jobs))
        )
        if bad := [s for s in statuses if s >= 300]:
            raise RuntimeError(f"{len(bad)} Job creates failed (e.g. {bad[0]})")
        await asyncio.wait_for(progress.all_done.wait(), timeout=3600)
        result = progress.summary()
        # The garbage collector deletes the pods and Kueue's Workloads after the Jobs.
        await client.pods_gone(120)
        await _workloads_gone(client, 120)
        await asyncio.sleep(2)
        after_w, after_cpu = apiserver_writes(cluster), cpu_by_process(cluster, {"kueue": kueue.pid})
        stop.set()
        watcher.cancel()
    finally:
        await client.close()
        kueue.stop()
    return {**result, "writes": _delta(after_w, before_w), "cpu": _cpu_delta(after_cpu, before_cpu)}


async def _workloads_gone(client: Client, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    url = f"{client.base}/apis/kueue.x-k8s.io/v1beta2/namespaces/{NS}/workloads?limit=1"
    while time.monotonic() < deadline:
        async with client.session.get(url) as resp:
            if not (await resp.json()).get("items"):
                return
        await asyncio.sleep(0.5)


# -- report -------------------------------------------------------------------------------
def _delta(after: Counter[str], before: Counter[str]) -> dict[str, int]:
    d = Counter(after)
    d.subtract(before)
    return {k: v for k, v in sorted(d.items()) if v > 0}


def _cpu_delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def per_job(counts: dict[str, int], jobs: int) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{k} {v / jobs:.2f}" for k, v in counts.items() if v / jobs >= 0.005)
    return f"{total / jobs:.2f}  ({parts})"


def report(name: str, r: dict[str, Any], jobs: int) -> None:
    print(f"  {name}: {r['jobs_per_s']:.1f} jobs/s; wall {r['wall_s']:.1f} s; half finished at {r['half_s']:.1f} s; "
          f"longest flat stretch (10-90 %) {r['longest_flat_s']:.1f} s at {r['longest_flat_at_s']:.1f} s")  # fmt: skip
    print(f"    API server writes per job: {per_job(r['writes'], jobs)}")
    if "operator" in r:
        op_writes = {
            k: v
            for k, v in r["operator"].items()
            if k in ("create", "patch", "patch_status", "delete", "update")
        }
        print(f"    operator's own writes per job: {per_job(op_writes, jobs)}; all its requests: "
              f"{ {k: round(v / jobs, 2) for k, v in sorted(r['operator'].items())} }")  # fmt: skip
    cpu = r["cpu"]
    print(
        f"    CPU ms per job: total {sum(cpu.values()) * 1000 / jobs:.1f}; "
        + ", ".join(
            f"{k} {v * 1000 / jobs:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v > 0.01
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument(
        "--runs", type=int, default=3, help="interleaved rounds of every row (medians over them)"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--py-spy", default=None, help="record the operator with py-spy (raw) into this file")
    parser.add_argument("--only", choices=("ceiling", "batchyard", "kueue"), default=None)
    parser.add_argument(
        "--kueue",
        action="store_true",
        help="add row (c): Kueue with batch/v1 Jobs (builds it once if missing)",
    )
    parser.add_argument(
        "--before-src",
        default=None,
        help="a third row, 'before': the operator and CRDs of this other checkout (e.g. the commit before a change)",
    )
    parser.add_argument("--json", default=None, help="also write all figures to this file")
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the operator of the batchyard and before rows (repeatable), "
        "e.g. BATCHYARD_MAX_DISPATCHES_PER_CYCLE=64",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}; date {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; jobs {args.jobs}, "
          f"concurrency {args.concurrency}, {NODES} kwok nodes x {NODE_CPU} vCPU")  # fmt: skip
    rows = ["ceiling", "batchyard"] if args.only is None else [args.only]
    if args.before_src:
        rows.append("before")
    if args.kueue and "kueue" not in rows:
        rows.append("kueue")
    if "kueue" in rows:
        ensure_kueue()
        print(f"Kueue: v{KUEUE_VERSION} ({KUEUE_MODULE_NOTE})")
    else:
        print("Kueue: not run (pass --kueue for row c)")
    results: list[dict[str, Any]] = []
    for run in range(args.runs):
        row: dict[str, Any] = {}
        # Rotate the order run by run, so no row always gets the quieter machine.
        order = rows[run % len(rows) :] + rows[: run % len(rows)]
        for which in order:
            crds = Path(args.before_src) / "crds" if which == "before" and args.before_src else None
            with fresh_cluster(crds) as cluster:
                if which == "ceiling":
                    row[which] = asyncio.run(run_ceiling(cluster, args.jobs, args.concurrency))
                elif which == "kueue":
                    row[which] = asyncio.run(run_kueue(cluster, args.jobs, args.concurrency))
                else:
                    spy = f"{args.py_spy}.{which}.{run}" if args.py_spy else None
                    src = args.before_src if which == "before" else None
                    row[which] = asyncio.run(
                        run_batchyard(
                            cluster,
                            args.jobs,
                            args.concurrency,
                            spy,
                            src,
                            dict(e.split("=", 1) for e in args.operator_env),
                        )
                    )
        print(f"run {run + 1} (load {Path('/proc/loadavg').read_text().split()[0]}):")
        for which in rows:
            report(which, row[which], args.jobs)
        for which in ("batchyard", "before", "kueue"):
            if "ceiling" in row and which in row:
                row[f"ratio_{which}"] = row[which]["jobs_per_s"] / row["ceiling"]["jobs_per_s"]
                print(f"  ratio {which} / ceiling: {row[f'ratio_{which}']:.2f}")
        results.append(row)
    if len(results) > 1:
        for which in rows:
            rates = [r[which]["jobs_per_s"] for r in results]
            print(
                f"median {which}: {statistics.median(rates):.1f} jobs/s ({', '.join(f'{x:.1f}' for x in rates)})"
            )
        for which in ("batchyard", "before", "kueue"):
            ratios = [r[f"ratio_{which}"] for r in results if f"ratio_{which}" in r]
            if ratios:
                medians = [statistics.median(r[w]["jobs_per_s"] for r in results) for w in (which, "ceiling")]
                print(f"ratio of the medians, {which} / ceiling: {medians[0] / medians[1]:.2f}")
                print(
                    f"median ratio {which} / ceiling: {statistics.median(ratios):.2f} "
                    f"({', '.join(f'{x:.2f}' for x in ratios)})"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
