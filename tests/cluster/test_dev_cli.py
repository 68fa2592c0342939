"""`batchyard dev up|status|down`, as a user runs them: Ready fake nodes, then nothing left running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchyard.devcluster.cluster import pid_alive

pytestmark = pytest.mark.cluster


def dev(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchyard.cli.main", "dev", "--dir", str(workdir), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ},
    )


def test_dev_up_status_down(tmp_path: Path) -> None:
    workdir = tmp_path / "dev"
    up = dev(workdir, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"export KUBECONFIG={workdir / 'kubeconfig'}" in up.stdout
        state = json.loads((workdir / "state.json").read_text())
        pids = list(state["pids"].values())
        assert len(pids) == 5 and all(pid_alive(p) for p in pids)

        kubectl = state["binaries"]["kubectl"]
        nodes = json.loads(
            subprocess.run(
                [kubectl, f"--kubeconfig={workdir / 'kubeconfig'}", "get", "nodes", "-o", "json"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )["items"]
        ready = [
            n["metadata"]["name"]
            for n in nodes
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
        ]
        assert sorted(ready) == ["kwok-node-0", "kwok-node-1"]

        status = dev(workdir, "status")
        assert status.returncode == 0
        assert status.stdout.count("running") == 5
    finally:
        down = dev(workdir, "down")
    assert down.returncode == 0
    assert not any(pid_alive(p) for p in pids)
    assert not workdir.exists()
    assert dev(workdir, "status").returncode == 1
