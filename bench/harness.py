"""Shared setup for the cluster benchmarks: a fresh local control plane, CRDs, nodes for one
compute environment and a queue, and the real operator in-process (so its API calls can be
counted from `Kube.calls`)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))

from batchyard.devcluster import DevCluster, node_manifest  # noqa: E402
from batchyard.devcluster.operator import OperatorThread  # noqa: E402

CE_LABEL = "batchyard.io/compute-environment"
WRITE_VERBS = ("create", "patch", "patch_status", "delete", "update")


def machine() -> str:
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return f"{cores} cores, Python {sys.version.split()[0]}, load {open('/proc/loadavg').read().split()[0]}"


@contextmanager
def bench_cluster(
    ce: str, queue: str, nodes: int, cpu: str, max_vcpus: int
) -> Iterator[tuple[DevCluster, OperatorThread]]:
    cluster = DevCluster(workdir=Path(tempfile.mkdtemp(prefix="batchyard-bench-")))
    cluster.start()
    try:
        cluster.install_crds(REPO / "crds")
        taints = [{"key": CE_LABEL, "value": ce, "effect": e} for e in ("NoSchedule", "NoExecute")]
        cluster.add_nodes(
            [
                node_manifest(
                    f"{ce}-{i}", cpu=cpu, memory="1Ti", pods="1000", labels={CE_LABEL: ce}, taints=taints
                )
                for i in range(nodes)
            ]
        )
        objs: list[dict[str, Any]] = [
            {"apiVersion": "batchyard.io/v1alpha1", "kind": "ComputeEnvironment", "metadata": {"name": ce},
             "spec": {"type": "UNMANAGED", "unmanagedvCpus": max_vcpus, "provider": {"type": "unmanaged"}}},
            {"apiVersion": "batchyard.io/v1alpha1", "kind": "JobQueue", "metadata": {"name": queue},
             "spec": {"priority": 1, "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": ce}]}},
            {"apiVersion": "batchyard.io/v1alpha1", "kind": "JobDefinition",
             "metadata": {"name": "bench", "namespace": "default"},
             "spec": {"type": "container", "containerProperties": {
                 "image": "busybox", "command": ["true"],
                 "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "256"}]}}},
        ]  # fmt: skip
        cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objs))
        op = OperatorThread(cluster.kubeconfig, env={"BATCHYARD_LEADER_ELECTION": "false"}).start()
        try:
            yield cluster, op
        finally:
            op.stop()
    finally:
        cluster.stop()


def writes(calls: Counter[str]) -> int:
    return sum(v for k, v in calls.items() if k in WRITE_VERBS)


def wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(what)
