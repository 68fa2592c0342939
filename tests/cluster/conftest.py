"""Fixtures for cluster tests: one real control plane per session, a fresh namespace per test.

The control plane is real (etcd, kube-apiserver, kube-scheduler, kube-controller-manager, kwok
as processes on 127.0.0.1); its processes are always stopped at the end of the session, and
they die with the test process even if it is killed. A failing test shows the tail of every
component's log.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchyard.devcluster import DevCluster

REPO = Path(__file__).resolve().parents[2]

_cluster: DevCluster | None = None


@pytest.fixture(scope="session")
def devcluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    global _cluster
    cluster = DevCluster(workdir=tmp_path_factory.mktemp("devcluster"))
    cluster.start()
    _cluster = cluster
    try:
        yield cluster
    finally:
        _cluster = None
        cluster.stop()


@pytest.fixture(scope="session")
def crds_installed(devcluster: DevCluster) -> DevCluster:
    """Apply the generated CRDs in crds/ and wait until the API server serves them."""
    crds = sorted((REPO / "crds").glob("*.yaml"))
    if not crds:
        raise RuntimeError("crds/ is empty: run `make generate`")
    devcluster.install_crds(REPO / "crds")
    return devcluster


@pytest.fixture
def namespace(devcluster: DevCluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    devcluster.kubectl("create", "namespace", name)
    yield name
    devcluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def k8s(devcluster: DevCluster) -> Any:
    """A synchronous `kubernetes` ApiClient for assertions that kubectl output makes awkward."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(devcluster.kubeconfig))


def get_json(cluster: DevCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and _cluster is not None:
        report.sections.append(("control-plane logs (tails)", _cluster.log_tails(25)))


@pytest.fixture(scope="session")
def operator(crds_installed: DevCluster) -> Iterator[Any]:
    """The real operator, in-process, against the session's control plane (started once).

    BATCHYARD_TIME_LIMIT_SCALE: the JobQueue CRD keeps AWS's 600 s minimum for
    jobStateTimeLimitActions maxTimeSeconds; the operator's test knob scales those times (600 s
    act after 6 s) so a test can watch a blocked job get cancelled. Nothing else reads it."""
    from batchyard.devcluster.operator import OperatorThread

    op = OperatorThread(crds_installed.kubeconfig, env={"BATCHYARD_TIME_LIMIT_SCALE": "0.01"}).start()
    try:
        yield op
    finally:
        op.stop()
