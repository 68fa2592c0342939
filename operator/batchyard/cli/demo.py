"""`batchyard demo`: the local control plane, the operator and example jobs, shown live.

Starts everything from scratch in a temporary directory (the control-plane binaries are built
once and cached), applies examples/demo/demo.yaml, shows the jobs' states as they change, and
prints a summary when all are done. Everything it started is stopped on the way out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batchyard.cli import demo_gateway
from batchyard.core.jobstate import TERMINAL_STATES
from batchyard.devcluster import DevCluster

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "examples" / "demo" / "demo.yaml"
SHORT = {
    "SUBMITTED": "submitted",
    "PENDING": "pending",
    "RUNNABLE": "runnable",
    "STARTING": "starting",
    "RUNNING": "running",
    "SUCCEEDED": "ok",
    "FAILED": "failed",
}


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the demo: local control plane, operator, example jobs")
    p.add_argument("--timeout", type=float, default=300, help="give up after this many seconds")
    p.add_argument("--keep", action="store_true", help="leave the control plane running at the end")
    p.add_argument("--plain", action="store_true", help="print changes line by line (no live table)")
    p.set_defaults(func=cmd_demo)


def _jobs(cluster: DevCluster) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "batchjobs", "-n", "default", "-o", "json", check=False)
    return json.loads(out.stdout)["items"] if out.returncode == 0 else []


def _row(job: dict[str, Any]) -> tuple[str, str, str, str, str]:
    st = job.get("status") or {}
    summary = (st.get("arrayProperties") or {}).get("statusSummary") or {}
    kind = (
        f"array x{job['spec']['arrayProperties']['size']}" if job["spec"].get("arrayProperties") else "single"
    )
    progress = " ".join(f"{SHORT.get(k, k.lower())}={v}" for k, v in summary.items() if v) if summary else ""
    attempts = str(len(st.get("attempts") or [])) if not summary else ""
    return (
        job["metadata"]["name"],
        kind,
        st.get("status", "-"),
        attempts,
        progress or (st.get("statusReason") or ""),
    )


def _table(rows: Sequence[tuple[str, ...]], nodes: int, elapsed: float) -> str:
    head = ("JOB", "KIND", "STATUS", "ATTEMPTS", "PROGRESS / REASON")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *rows]]
    return "\n".join([f"batchyard demo  t={elapsed:5.1f}s  kwok nodes={nodes}", *lines])


def cmd_demo(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="batchyard-demo-"))
    print(f"starting the local control plane in {workdir} (first run builds it: see README)", flush=True)
    cluster = DevCluster(workdir=workdir, die_with_parent=not args.keep)
    cluster.start()
    operator: subprocess.Popen[bytes] | None = None
    gateway: subprocess.Popen[bytes] | None = None
    endpoint: list[str] = []
    try:
        cluster.install_crds(REPO / "crds")
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "BATCHYARD_LEADER_ELECTION": "false"}
        log = open(workdir / "operator.log", "wb")  # noqa: SIM115 - handed to the child
        operator = subprocess.Popen(
            [sys.executable, "-m", "batchyard.cli.main", "run", "--standalone"],
            env=env,
            stdout=log,
            stderr=log,
        )
        cluster.kubectl("apply", "-f", str(DEMO))
        gateway, endpoint = demo_gateway.start(cluster, workdir)
        print("\n".join(endpoint))
        print(
            f"operator running (log: {workdir / 'operator.log'}); jobs applied from {DEMO.relative_to(REPO)}\n"
        )
        started = time.monotonic()
        live = sys.stdout.isatty() and not args.plain
        last: dict[str, tuple[str, ...]] = {}
        jobs: list[dict[str, Any]] = []
        while time.monotonic() - started < args.timeout:
            if operator.poll() is not None:
                print(f"the operator exited with {operator.returncode}; see {workdir / 'operator.log'}")
                return 1
            jobs = _jobs(cluster)
            rows = sorted(_row(j) for j in jobs)
            nodes = len(json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"])
            if live:
                print("\033[H\033[J" + _table(rows, nodes, time.monotonic() - started), flush=True)
            else:
                for r in rows:
                    if last.get(r[0]) != r:
                        print(
                            f"t={time.monotonic() - started:5.1f}s  " + "  ".join(x for x in r if x),
                            flush=True,
                        )
                        last[r[0]] = r
            if jobs and all((j.get("status") or {}).get("status") in TERMINAL_STATES for j in jobs):
                break
            time.sleep(0.5)
        else:
            print(f"timed out after {args.timeout:.0f}s")
            return 1
        elapsed = time.monotonic() - started
        done = {j["metadata"]["name"]: (j.get("status") or {}) for j in jobs}
        ok = sum(1 for s in done.values() if s.get("status") == "SUCCEEDED")
        print(f"\nall {len(done)} jobs finished in {elapsed:.1f}s: {ok} SUCCEEDED, {len(done) - ok} FAILED")
        for name, s in sorted(done.items()):
            reason = f" ({s['statusReason']})" if s.get("statusReason") else ""
            attempts = len(s.get("attempts") or [])
            tries = f" after {attempts} attempts" if attempts > 1 else ""
            print(f"  {name:14} {s.get('status')}{tries}{reason}")
        print("\n".join(endpoint))
        expected_failures = {"broken"}
        failed = {n for n, s in done.items() if s.get("status") == "FAILED"}
        return 0 if failed == expected_failures else 1
    finally:
        if gateway is not None and not args.keep:
            gateway.terminate()  # with --keep it stays up beside the control plane, for the aws line
        if operator is not None:
            operator.terminate()
            try:
                operator.wait(15)
            except subprocess.TimeoutExpired:
                operator.kill()
        if args.keep:
            print(f"control plane left running: export KUBECONFIG={cluster.kubeconfig}")
            if gateway is not None:
                print(f"AWS Batch gateway left running (pid {gateway.pid}); stop it with: kill {gateway.pid}")
        else:
            cluster.stop()
