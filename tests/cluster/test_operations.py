"""Operating Batchyard: /metrics after a run, two replicas with a leader, the chart's own permissions.

What an operator of Batchyard checks before trusting it in production:

* `/metrics` (scraped over HTTP, as Prometheus does) counts exactly the jobs that ran: their
  submissions, dispatches per compute environment, the retry, the failure by reason, jobs by
  queue and state, waiting and running times, consumable resources and the API calls made;
* two `batchyard run` processes against one control plane: only the Lease holder creates pods;
  SIGKILL it and the other takes over within 30 s, and every job still finishes exactly once,
  with no attempt started twice (each attempt's pod is kept and counted);
* the operator running with the Helm chart's ServiceAccount token (not an admin) takes jobs
  through success, retry and failure, cluster-wide and limited to one namespace.

These tests start their own operators as processes (`batchyard run`, so one can be killed), so
they use a control plane of their own: the session's shared in-process operator serves every
namespace of the session's cluster and would race them for the jobs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from batch import (
    apply,
    batch_job,
    ce_nodes,
    compute_environment,
    consumable_resource,
    job_definition,
    job_queue,
)
from prometheus_client.parser import text_string_to_metric_families
from waiting import wait_for

from batchyard.devcluster import DevCluster
from batchyard.devcluster.cluster import free_port
from batchyard.devcluster.helm import ensure_helm

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "batchyard"
BATCHYARD = Path(sys.executable).parent / "batchyard"
TERMINAL = ("SUCCEEDED", "FAILED")


# --- a control plane and operator processes of our own -------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    own = DevCluster(workdir=tmp_path_factory.mktemp("ops-cluster"))
    own.start()
    try:
        own.install_crds(REPO / "crds")
        yield own
    finally:
        own.stop()


@pytest.fixture
def ns(cluster: DevCluster) -> Iterator[str]:
    name = f"ops-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@dataclass
class Operator:
    """One `batchyard run` process; its output goes to a log file shown when a test fails."""

    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int | None = None
    _closed: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, frozenset(labels.items())), 0.0)

    def polled_lease(self) -> bool:
        """Up, serving /metrics, and has read the Lease at least once."""
        try:
            return self.value("batchyard_api_requests_total", verb="get") > 0
        except OSError:  # the metrics server is not listening yet
            return False

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def operators(tmp_path: Path) -> Iterator[Any]:
    """Start `batchyard run` processes (`start(kubeconfig, **env)`); all are stopped afterwards."""
    started: list[Operator] = []

    def start(kubeconfig: Path, metrics: bool = True, **env: str) -> Operator:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHYARD_", "KUBERNETES_"))}
        port = free_port() if metrics else None
        clean.update(KUBECONFIG=str(kubeconfig), **env)
        if port is not None:
            clean["BATCHYARD_METRICS_PORT"] = str(port)
        log = tmp_path / f"operator-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([str(BATCHYARD), "run"], env=clean, stdout=out, stderr=subprocess.STDOUT)
        op = Operator(proc, log, port)
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()


def lease_holder(cluster: DevCluster, namespace: str, name: str) -> str:
    out = cluster.kubectl(
        "get", "lease", name, "-n", namespace, "-o", "jsonpath={.spec.holderIdentity}", check=False
    )
    return out.stdout.strip() if out.returncode == 0 else ""


def leads(cluster: DevCluster, op: Operator, namespace: str, lease: str) -> bool:
    # The identity is "<host>-<pid>_<suffix>" outside a pod.
    return f"-{op.pid}_" in lease_holder(cluster, namespace, lease)


def jobs(cluster: DevCluster, namespace: str) -> dict[str, dict[str, Any]]:
    items = json.loads(cluster.kubectl("get", "batchjobs", "-n", namespace, "-o", "json").stdout)["items"]
    return {j["metadata"]["name"]: j for j in items}


def wait_all_terminal(
    cluster: DevCluster, namespace: str, count: int, timeout: float, why: Any = ""
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        found = jobs(cluster, namespace)
        finished = {n: j for n, j in found.items() if (j.get("status") or {}).get("status") in TERMINAL}
        return found if len(finished) == count else None

    try:
        return wait_for(done, timeout=timeout, interval=0.5, what=f"{count} jobs to finish")
    except AssertionError as err:
        states = {n: (j.get("status") or {}).get("status") for n, j in jobs(cluster, namespace).items()}
        raise AssertionError(f"{err}\nstates: {states}\n{why() if callable(why) else why}") from None


def job_pods(cluster: DevCluster, namespace: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", "batchyard.io/job-uid", "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def setup_queue(cluster: DevCluster, namespace: str, max_vcpus: int = 16, **jd: Any) -> tuple[str, str, str]:
    """A compute environment with one node, a queue and a job definition; returns (ce, queue, jd)."""
    ce, queue, definition = f"{namespace}-ce", f"{namespace}-q", "work"
    apply(
        cluster,
        compute_environment(ce, max_vcpus),
        job_queue(queue, [ce]),
        job_definition(definition, namespace, **jd),
    )
    ce_nodes(cluster, ce, 1)
    return ce, queue, definition


# --- (a) /metrics after a small run ---------------------------------------------------------------


def test_metrics_count_the_jobs_that_ran(cluster: DevCluster, ns: str, operators: Any) -> None:
    licence = f"{ns}-licence"
    apply(cluster, consumable_resource(licence, 3))
    ce, queue, jd = setup_queue(
        cluster,
        ns,
        consumableResourceProperties={
            "consumableResourceList": [{"consumableResource": licence, "quantity": 1}]
        },
    )
    op = operators(
        cluster.kubeconfig,
        BATCHYARD_NAMESPACES=ns,
        BATCHYARD_LEASE_NAMESPACE=ns,
        BATCHYARD_LEASE_NAME="metrics",
    )
    wait_for(lambda: leads(cluster, op, ns, "metrics"), timeout=30, what=f"the operator to lead\n{op.tail()}")
    apply(
        cluster,
        *(batch_job(f"ok-{i}", ns, queue, jd) for i in range(3)),
        # fails twice: one retry, then FAILED ("Essential container in task exited")
        batch_job("bad", ns, queue, jd, exit_code="3", retryStrategy={"attempts": 2}),
    )
    final = wait_all_terminal(cluster, ns, 4, timeout=90, why=op.tail)
    assert {n: j["status"]["status"] for n, j in final.items()} == {
        "ok-0": "SUCCEEDED", "ok-1": "SUCCEEDED", "ok-2": "SUCCEEDED", "bad": "FAILED",
    }  # fmt: skip
    attempts = sum(len(j["status"]["attempts"]) for j in final.values())
    assert attempts == 5
    ran = sum(1 for j in final.values() for a in j["status"]["attempts"] if a.get("startedAt"))

    def settled() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        # The gauges follow the cycle after the last status write.
        m = op.metrics()
        # The whole end state: the failed job may be counted a cycle after the others.
        done = m.get(("batchyard_jobs", frozenset({("queue", queue), ("state", "SUCCEEDED")})))
        failed = m.get(("batchyard_jobs", frozenset({("queue", queue), ("state", "FAILED")})))
        return m if done == 3 and failed == 1 else None

    m = wait_for(settled, timeout=15, what="the jobs gauge to show the run")

    def v(name: str, **labels: str) -> float:
        return m.get((name, frozenset(labels.items())), 0.0)

    assert v("batchyard_leader") == 1
    assert v("batchyard_job_submissions_total", queue=queue) == 4
    assert v("batchyard_job_dispatches_total", queue=queue, compute_environment=ce) == 5
    assert v("batchyard_job_retries_total", queue=queue) == 1
    assert v("batchyard_job_failures_total", queue=queue, reason="NonZeroExit") == 1
    states = {
        s: v("batchyard_jobs", queue=queue, state=s) for s in ("RUNNABLE", "RUNNING", "SUCCEEDED", "FAILED")
    }
    assert states == {"RUNNABLE": 0, "RUNNING": 0, "SUCCEEDED": 3, "FAILED": 1}
    assert v("batchyard_job_runnable_seconds_count", queue=queue) == 5
    assert v("batchyard_job_running_seconds_count", queue=queue) == ran >= 1
    assert 0 < v("batchyard_job_running_seconds_sum", queue=queue) < 60
    assert v("batchyard_compute_environment_in_use_vcpus", compute_environment=ce) == 0
    assert (("batchyard_compute_environment_desired_vcpus", frozenset({("compute_environment", ce)}))) in m
    assert v("batchyard_consumable_resource_in_use", consumable_resource=licence) == 0
    assert v("batchyard_consumable_resource_available", consumable_resource=licence) == 3
    assert v("batchyard_scheduler_cycle_seconds_count") > 0
    assert v("batchyard_api_requests_total", verb="create") >= 5  # the pods, at least
    assert v("batchyard_api_requests_total", verb="patch_status") >= 4
    assert v("batchyard_api_requests_total", verb="watch") >= 1


# --- (b) two replicas, one leader ------------------------------------------------------------------


def test_standby_takes_over_within_30s_and_every_job_runs_exactly_once(
    cluster: DevCluster, ns: str, operators: Any
) -> None:
    # Two vCPUs for 1-vCPU jobs of 4 s: the run outlasts the kill, so the standby has work left.
    _ce, queue, jd = setup_queue(cluster, ns, max_vcpus=2)
    env = {
        "BATCHYARD_NAMESPACES": ns,
        "BATCHYARD_LEASE_NAMESPACE": ns,
        "BATCHYARD_LEASE_NAME": "ha",
        "BATCHYARD_KEEP_PODS": "true",  # every attempt's pod stays, to be counted
    }
    first = operators(cluster.kubeconfig, **env)
    wait_for(
        lambda: leads(cluster, first, ns, "ha"),
        timeout=30,
        what=f"the first operator to lead\n{first.tail()}",
    )
    second = operators(cluster.kubeconfig, **env)
    wait_for(second.polled_lease, timeout=30, what=f"the second operator to poll the lease\n{second.tail()}")

    names = [f"ok-{i}" for i in range(4)] + ["retry-0", "retry-1"]
    apply(
        cluster,
        *(batch_job(n, ns, queue, jd, delay="4s") for n in names[:4]),
        *(
            batch_job(n, ns, queue, jd, exit_code="1,0", delay="4s", retryStrategy={"attempts": 2})
            for n in names[4:]
        ),
    )
    wait_for(
        lambda: any((j.get("status") or {}).get("status") == "SUCCEEDED" for j in jobs(cluster, ns).values()),
        timeout=60,
        what=f"a first job to finish\n{first.tail()}",
    )
    # Only the leader writes: the standby has created nothing and does not lead.
    assert second.value("batchyard_leader") == 0
    assert second.value("batchyard_api_requests_total", verb="create") == 0
    assert second.value("batchyard_api_requests_total", verb="patch_status") == 0
    assert first.value("batchyard_leader") == 1
    unfinished = [
        n for n, j in jobs(cluster, ns).items() if (j.get("status") or {}).get("status") not in TERMINAL
    ]
    assert unfinished, "every job finished before the kill: nothing left to take over"

    first.kill()
    killed = time.monotonic()
    wait_for(lambda: leads(cluster, second, ns, "ha"), timeout=30, interval=0.5,
             what=f"the standby to take the lease\n{second.tail()}")  # fmt: skip
    takeover = time.monotonic() - killed
    assert takeover < 30

    final = wait_all_terminal(cluster, ns, len(names), timeout=120, why=second.tail)
    assert {n: j["status"]["status"] for n, j in final.items()} == dict.fromkeys(names, "SUCCEEDED")
    pods = job_pods(cluster, ns)
    by_uid: dict[str, list[str]] = {}
    for p in pods:
        by_uid.setdefault(p["metadata"]["labels"]["batchyard.io/job-uid"], []).append(p["metadata"]["name"])
    for name, job in final.items():
        attempts = job["status"]["attempts"]
        assert [a["attempt"] for a in attempts] == list(
            range(1, (2 if name.startswith("retry") else 1) + 1)
        ), name
        assert sorted(a["podName"] for a in attempts) == sorted(by_uid[job["metadata"]["uid"]]), name
    assert len(pods) == len({p["metadata"]["name"] for p in pods}) == 4 + 2 * 2
    assert second.value("batchyard_leader") == 1
    print(
        f"takeover after SIGKILL: {takeover:.1f} s; unfinished at the kill: {len(unfinished)} of {len(names)}"
    )


# --- (c) the chart's ServiceAccount is enough -------------------------------------------------------


def helm(cluster: DevCluster, *args: str) -> str:
    cmd = [str(ensure_helm()), f"--kubeconfig={cluster.kubeconfig}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def token_kubeconfig(cluster: DevCluster, namespace: str, sa: str, path: Path) -> Path:
    token = cluster.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {"server": cluster.server, "certificate-authority": str(cluster.ca_file)},
            }
        ],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": sa, "namespace": namespace}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("limited", [False, True], ids=["cluster-wide", "namespace-limited"])
def test_operator_runs_a_lifecycle_with_the_charts_service_account(
    cluster: DevCluster, ns: str, operators: Any, tmp_path: Path, limited: bool
) -> None:
    release = f"by-{uuid.uuid4().hex[:6]}"
    system = f"{release}-system"
    sets = ["--set", f"operator.watchNamespaces={{{ns}}}"] if limited else []
    # No admission webhook: its Service is unreachable here (the operators run as processes).
    sets += ["--set", "admissionWebhook.enabled=false"]
    helm(cluster, "install", release, str(CHART), "--namespace", system, "--create-namespace", *sets)
    try:
        sa = f"{release}-batchyard"
        kubeconfig = token_kubeconfig(cluster, system, sa, tmp_path / "sa.kubeconfig")
        who = cluster.kubectl(
            "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", f"--kubeconfig={kubeconfig}"
        )
        assert who.stdout == f"system:serviceaccount:{system}:{sa}"
        _ce, queue, jd = setup_queue(cluster, ns)
        # What the chart's Deployment sets (POD_NAMESPACE: the Lease lives in the release namespace).
        env = {"BATCHYARD_LEASE_NAMESPACE": system}
        if limited:
            env["BATCHYARD_NAMESPACES"] = ns
        op = operators(kubeconfig, **env)
        wait_for(
            lambda: leads(cluster, op, system, "batchyard"),
            timeout=30,
            what=f"the operator to lead\n{op.tail()}",
        )
        apply(
            cluster,
            batch_job("ok", ns, queue, jd),
            batch_job("retried", ns, queue, jd, exit_code="1,0", retryStrategy={"attempts": 2}),
            batch_job("failed", ns, queue, jd, exit_code="2"),
        )
        final = wait_all_terminal(cluster, ns, 3, timeout=90, why=op.tail)
        assert {n: j["status"]["status"] for n, j in final.items()} == {
            "ok": "SUCCEEDED", "retried": "SUCCEEDED", "failed": "FAILED",
        }  # fmt: skip
        assert len(final["retried"]["status"]["attempts"]) == 2
        # keepPods=failed (the chart's default): the failed attempts' pods stay for their logs.
        wait_for(
            lambda: (
                sorted(p["metadata"]["name"] for p in job_pods(cluster, ns)) == ["failed-a1", "retried-a1"]
            ),
            timeout=30,
            what="the succeeded attempts' pods to be deleted",
        )
        events = json.loads(cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
        assert any(e["involvedObject"].get("name") == "failed" and e["reason"] == "Failed" for e in events)
        log = op.log.read_text(errors="replace")
        assert "is forbidden: User" not in log, op.tail(80)  # an RBAC refusal, in kopf's or our log
        assert op.value("batchyard_api_errors_total", verb="create") == 0
    finally:
        helm(cluster, "uninstall", release, "--namespace", system, "--wait")
        cluster.kubectl("delete", "namespace", system, "--wait=false", check=False)


# --- finished jobs are deleted after the TTL; a failed attempt's pod is kept until then -----------


def test_finished_jobs_expire_after_the_ttl_with_the_pods_kept_for_their_logs(
    cluster: DevCluster, ns: str, operators: Any
) -> None:
    _, queue, jd = setup_queue(cluster, ns)
    op = operators(
        cluster.kubeconfig,
        metrics=False,
        BATCHYARD_NAMESPACES=ns,
        BATCHYARD_LEASE_NAMESPACE=ns,
        BATCHYARD_LEASE_NAME="ttl",
        BATCHYARD_FINISHED_JOB_TTL_SECONDS="8",
        # BATCHYARD_KEEP_PODS unset: failed (the default)
    )
    apply(cluster, batch_job("short-lived", ns, queue, jd), batch_job("broken", ns, queue, jd, exit_code="3"))
    final = wait_all_terminal(cluster, ns, 2, timeout=60, why=op.tail)
    assert final["short-lived"]["status"]["status"] == "SUCCEEDED"
    assert final["broken"]["status"]["status"] == "FAILED"
    kept = final["broken"]["status"]["attempts"][0]
    assert (kept["logRetained"], kept["logStreamName"]) == (True, "pod/broken-a1")
    assert final["short-lived"]["status"]["attempts"][0]["logRetained"] is False
    # keepPods=failed: the failed attempt's pod stays for its log (until its job goes), the
    # succeeded one's goes.
    wait_for(
        lambda: [p["metadata"]["name"] for p in job_pods(cluster, ns)] == ["broken-a1"],
        timeout=30,
        what="the succeeded attempt's pod to go and the failed one's to stay",
    )

    for name in ("short-lived", "broken"):
        wait_for(
            lambda n=name: cluster.kubectl("get", "batchjob", n, "-n", ns, check=False).returncode != 0,
            timeout=60,
            what=f"the finished job {name} to be deleted after its 8 s TTL\n{op.tail()}",
        )
    # The kept pod goes with its job (deleted by the operator; the owner reference as a fallback).
    wait_for(lambda: not job_pods(cluster, ns), timeout=60, what="the expired job's kept pod to go")
