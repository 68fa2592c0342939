"""Benchmark of the pure scheduler (batchyard.core.scheduler) with a deep backlog.

Shape (the issue's): 100,000 RUNNABLE jobs in 50 queues (40 fair-share queues with 25 share
identifiers each = 1,000 shares, 10 FIFO queues), 20 compute environments of 50 nodes each
(16 vCPU / 64 GiB per node, maxvCpus 800), each queue ordered over 3 CEs.

What it shows: the cluster is full of running attempts; each round ends 100 of them and runs one
cycle, which dispatches the next 100 jobs while every other queue's head is found blocked. The
cost of that cycle must not depend on the backlog: it is measured with 1,000 and with 100,000
RUNNABLE jobs in the same run, and the ratio printed (required: at most 2).

Run: ``PYTHONPATH=operator python bench/bench_scheduler.py`` (plain script, prints figures).
"""

from __future__ import annotations

import gc
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))

from batchyard.core.capacity import CEView, NodeView, Resources
from batchyard.core.fairshare import PolicyView
from batchyard.core.scheduler import Dispatch, JobView, QueueView, Scheduler, World

N_CES = 20
NODES_PER_CE = 50
NODE = Resources.of(16, "64Gi")
N_QUEUES = 50
N_FAIR_QUEUES = 40
SHARES_PER_QUEUE = 25  # 40 * 25 = 1,000 share identifiers
JOB = Resources.of(1, "2Gi")
ROUNDS = 25
FREED_PER_ROUND = 100


def make_world() -> World:
    ces = [
        CEView(
            name=f"ce{c:02d}",
            max_vcpus=NODES_PER_CE * NODE.milli_cpu // 1000,
            nodes=tuple(NodeView(f"ce{c:02d}-n{n:02d}", NODE) for n in range(NODES_PER_CE)),
        )
        for c in range(N_CES)
    ]
    queues = []
    for q in range(N_QUEUES):
        order = tuple(f"ce{(q + k) % N_CES:02d}" for k in range(3))
        policy = None
        if q < N_FAIR_QUEUES:
            weights = {f"q{q:02d}-s{s:02d}": 1.0 + (s % 4) for s in range(SHARES_PER_QUEUE)}
            policy = PolicyView(share_decay_seconds=3600, compute_reservation=10, weights=weights)
        queues.append(QueueView(f"q{q:02d}", priority=q % 5, compute_environment_order=order, policy=policy))
    return World.of(ces, queues)


def job(i: int, now: float) -> JobView:
    q = i % N_QUEUES
    share = f"q{q:02d}-s{(i // N_QUEUES) % SHARES_PER_QUEUE:02d}" if q < N_FAIR_QUEUES else None
    return JobView(
        ("bench", "job", i), f"q{q:02d}", submitted_at=now + i * 1e-6, demand=JOB, share_identifier=share
    )


def run(backlog: int) -> dict[str, float]:
    w = make_world()
    s = Scheduler(max_dispatches_per_cycle=10_000)
    s.set_world(w)
    now = 0.0
    # the cluster is full: every node holds 16 one-vCPU attempts
    fillers = []
    for c, ce in enumerate(w.compute_environments.values()):
        assert ce.nodes is not None
        for node in ce.nodes:
            for k in range(NODE.milli_cpu // JOB.milli_cpu):
                key = ("filler", c, node.name, k)
                q = f"q{c:02d}"  # any queue that uses this CE
                s.add_running(JobView(key, q, 0.0, JOB), ce.name, node.name, now)
                fillers.append(key)
    # interleave fillers across CEs so each round frees capacity in many CEs
    per_ce = NODES_PER_CE * (NODE.milli_cpu // JOB.milli_cpu)
    fillers = [fillers[c * per_ce + i] for i in range(per_ce) for c in range(N_CES)]

    gc.collect()
    t0 = time.perf_counter()
    for i in range(backlog):
        s.add_runnable(job(i, now), now)
    load = time.perf_counter() - t0
    next_base = (backlog // N_QUEUES + 1) * N_QUEUES

    # an idle cycle: nothing free, every queue head is examined and found waiting
    t0 = time.perf_counter()
    r = s.cycle(w, 1.0)
    first_cycle = time.perf_counter() - t0
    assert not any(isinstance(d, Dispatch) for d in r.decisions)
    idle = []
    for k in range(5):
        t0 = time.perf_counter()
        s.cycle(w, 2.0 + k)
        idle.append(time.perf_counter() - t0)

    busy = []
    running: list[object] = []
    for rnd in range(ROUNDS):
        now = 10.0 + rnd
        for _ in range(FREED_PER_ROUND):
            key = fillers.pop() if fillers else running.pop(0)
            s.attempt_ended(key, now)
        gc.disable()
        t0 = time.perf_counter()
        r = s.cycle(w, now)
        busy.append(time.perf_counter() - t0)
        gc.enable()
        got = [d for d in r.decisions if isinstance(d, Dispatch)]
        assert len(got) == FREED_PER_ROUND, len(got)
        running.extend(d.job_key for d in got)
        for d in got:  # keep every queue's backlog at its size
            s.add_runnable(job(next_base + int(d.queue[1:]), now), now)
            next_base += N_QUEUES

    t0 = time.perf_counter()
    snap = s.snapshot("q00", 100)
    snapshot = time.perf_counter() - t0
    assert len(snap) == 100 or backlog < 100 * N_QUEUES
    return {
        "load_per_job_us": load / backlog * 1e6,
        "first_cycle_ms": first_cycle * 1e3,
        "idle_cycle_ms": statistics.median(idle) * 1e3,
        "dispatch100_cycle_ms": statistics.median(busy) * 1e3,
        "dispatch100_cycle_min_ms": min(busy) * 1e3,
        "snapshot100_ms": snapshot * 1e3,
    }


def run_empty_cluster(backlog: int) -> dict[str, float]:
    """One cycle on an empty cluster: fills all 16,000 vCPUs from the backlog in one go."""
    w = make_world()
    s = Scheduler(max_dispatches_per_cycle=100_000)
    s.set_world(w)
    for i in range(backlog):
        s.add_runnable(job(i, 0.0), 0.0)
    gc.collect()
    t0 = time.perf_counter()
    r = s.cycle(w, 1.0)
    took = time.perf_counter() - t0
    n = sum(isinstance(d, Dispatch) for d in r.decisions)
    return {"dispatched": n, "cycle_ms": took * 1e3, "per_dispatch_us": took / max(n, 1) * 1e6}


def main() -> None:
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.system()}")
    print(
        f"{N_QUEUES} queues ({N_FAIR_QUEUES} fair-share x {SHARES_PER_QUEUE} shares), {N_CES} CEs x "
        f"{NODES_PER_CE} nodes, {ROUNDS} rounds of {FREED_PER_ROUND} dispatches"
    )
    results = {}
    for backlog in (1_000, 100_000, 1_000):  # small again last: a warm-up effect would show
        res = run(backlog)
        results.setdefault(backlog, []).append(res)
        print(f"backlog {backlog:>7,}: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items()))
    cold = run_empty_cluster(100_000)
    print("empty cluster, backlog 100,000: " + ", ".join(f"{k} {v:.3f}" for k, v in cold.items()))
    small = min(r["dispatch100_cycle_ms"] for r in results[1_000])
    big = results[100_000][0]["dispatch100_cycle_ms"]
    ratio = big / small
    print(f"cycle dispatching 100 jobs: backlog 100,000 / backlog 1,000 = {ratio:.2f} (required <= 2)")
    if ratio > 2:
        raise SystemExit("FAIL: the cycle cost grows with the backlog")


if __name__ == "__main__":
    main()
