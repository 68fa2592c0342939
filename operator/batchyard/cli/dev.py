"""`batchyard dev up|status|down`: a local control plane for trying Batchyard without a cluster."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from batchyard.devcluster import DevCluster, node_manifest
from batchyard.devcluster.build import cache_root


def default_dir() -> Path:
    return Path(os.environ.get("BATCHYARD_DEV_DIR") or cache_root() / "dev")


def register(sub: Any) -> None:
    dev = sub.add_parser(
        "dev", help="run a local Kubernetes control plane (etcd, apiserver, scheduler, kwok)"
    )
    dev.add_argument(
        "--dir", type=Path, default=None, help="state directory (default ~/.cache/batchyard/dev)"
    )
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)
    up = dev_sub.add_parser("up", help="start the control plane and two fake nodes")
    up.add_argument("--nodes", type=int, default=2, help="kwok nodes to create (4 cpu, 16Gi each)")
    up.set_defaults(func=cmd_up)
    dev_sub.add_parser("status", help="show whether the processes run").set_defaults(func=cmd_status)
    dev_sub.add_parser("down", help="stop every process and remove the state").set_defaults(func=cmd_down)


def _dir(args: argparse.Namespace) -> Path:
    return Path(args.dir) if args.dir else default_dir()


def cmd_up(args: argparse.Namespace) -> int:
    workdir = _dir(args)
    if (workdir / "state.json").exists():
        existing = DevCluster.load(workdir)
        if all(existing.status().values()):
            print(f"already running; export KUBECONFIG={existing.kubeconfig}")
            return 0
        existing.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    cluster = DevCluster(workdir=workdir, die_with_parent=False)
    cluster.start()
    if args.nodes:
        cluster.add_nodes([node_manifest(f"kwok-node-{i}") for i in range(args.nodes)])
    assert cluster.binaries is not None
    print(f"control plane up at {cluster.server} (logs in {cluster.logs})")
    print(f"  export KUBECONFIG={cluster.kubeconfig}")
    print(f"  alias kubectl={cluster.binaries.kubectl}")
    print("  batchyard dev down   # stops it")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    workdir = _dir(args)
    if not (workdir / "state.json").exists():
        print("not running")
        return 1
    cluster = DevCluster.load(workdir)
    alive = cluster.status()
    for name, ok in alive.items():
        print(f"{name:26} pid {cluster.pids[name]:>7}  {'running' if ok else 'DEAD'}")
    print(f"KUBECONFIG={cluster.kubeconfig}")
    return 0 if all(alive.values()) else 1


def cmd_down(args: argparse.Namespace) -> int:
    workdir = _dir(args)
    if not (workdir / "state.json").exists():
        print("not running", file=sys.stderr)
        return 0
    DevCluster.load(workdir).stop()
    shutil.rmtree(workdir, ignore_errors=True)
    print("stopped")
    return 0
