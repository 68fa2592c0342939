"""A job can do no more than its namespace allows (README "Security").

With the operator running under the Helm chart's ServiceAccount token (as the chart's Deployment
would: POD_NAMESPACE and BATCHYARD_SERVICE_ACCOUNT from the downward API) and jobs submitted by a
tenant bound to the chart's ready ``<release>-tenant`` ClusterRole:

* in a namespace labelled ``pod-security.kubernetes.io/enforce=baseline`` an ordinary
  ``eksProperties`` job and a ``containerProperties`` job SUCCEED (eksProperties pods no longer
  ask for the host network by default), and a privileged definition's job is FAILED at its first
  refusal with the Pod Security message -- exactly one pod create, counted by the API server;
* in a namespace enforcing ``restricted``, with the operator's restricted pod defaults, jobs of
  non-root images SUCCEED and a root one is FAILED with the Pod Security message;
* a job in the operator's namespace or in ``kube-system`` is refused with a reason, and so is a
  job asking for the operator's ServiceAccount when the operator's namespace is listed;
* a job whose pod a full ResourceQuota refuses waits RUNNABLE with the reason, then runs once
  the quota is raised.

These start `batchyard run` processes of their own, so they use a control plane of their own
(test_operations' fixtures).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_operations as ops
from batch import apply, batch_job, environment, job_definition, job_status, wait_status
from waiting import wait_for

from batchyard.devcluster import DevCluster

pytestmark = pytest.mark.cluster

# A control plane and `batchyard run` processes of our own (test_operations' fixtures).
cluster = ops.cluster
operators = ops.operators
helm = ops.helm
token_kubeconfig = ops.token_kubeconfig

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "batchyard"


@pytest.fixture(scope="module")
def release(cluster: DevCluster) -> Iterator[tuple[str, str, str]]:
    """The chart installed with its defaults (cluster-wide): (release, its namespace, its ServiceAccount)."""
    name = f"by-{uuid.uuid4().hex[:6]}"
    system = f"{name}-system"
    helm(cluster, "install", name, str(CHART), "--namespace", system, "--create-namespace")
    try:
        yield name, system, f"{name}-batchyard"
    finally:
        helm(cluster, "uninstall", name, "--namespace", system, "--wait")
        cluster.kubectl("delete", "namespace", system, "--wait=false", check=False)


@pytest.fixture
def tenant_ns(cluster: DevCluster, release: tuple[str, str, str]) -> Iterator[str]:
    """A namespace enforcing Pod Security baseline, with a tenant bound to the chart's tenant role."""
    ns = f"sec-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=baseline")
    cluster.kubectl("create", "serviceaccount", "tenant", "-n", ns)
    cluster.kubectl(
        "create", "rolebinding", "tenant", "-n", ns, f"--clusterrole={release[0]}-batchyard-tenant",
        f"--serviceaccount={ns}:tenant",
    )  # fmt: skip
    yield ns
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def as_tenant(cluster: DevCluster, ns: str, *objs: dict[str, Any]) -> None:
    """Submit as the tenant (impersonated): only what the chart's tenant ClusterRole grants."""
    cluster.kubectl(
        "apply", f"--as=system:serviceaccount:{ns}:tenant", "-f", "-",
        input="\n---\n".join(json.dumps(o) for o in objs),
    )  # fmt: skip


def start_operator(
    cluster: DevCluster,
    operators: Any,
    release: tuple[str, str, str],
    tmp_path: Path,
    namespaces: str = "",
    **env: str,
) -> Any:
    _name, system, sa = release
    kubeconfig = token_kubeconfig(cluster, system, sa, tmp_path / "sa.kubeconfig")
    return operators(
        kubeconfig,
        # What the chart's Deployment sets; one operator per test, so no Lease.
        POD_NAMESPACE=system,
        BATCHYARD_SERVICE_ACCOUNT=sa,
        BATCHYARD_NAMESPACES=namespaces,
        BATCHYARD_LEADER_ELECTION="false",
        **env,
    )


def eks_definition(name: str, ns: str, **pod: Any) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": "busybox:1.36",
        "command": ["echo", "hello"],
        "resources": {"requests": {"cpu": "1", "memory": "256Mi"}},
    }
    container.update(pod.pop("container", {}))
    return {
        "apiVersion": "batchyard.io/v1alpha1",
        "kind": "JobDefinition",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "container", "eksProperties": {"podProperties": {"containers": [container], **pod}}},
    }


def refused_pod_creates(cluster: DevCluster) -> float:
    """Pod creates the API server answered 403 (its own request counter)."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    total = 0.0
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        if all(f in line for f in ('resource="pods"', 'code="403"', 'verb="POST"', 'subresource=""')):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_baseline_namespace_runs_ordinary_jobs_and_fails_a_privileged_one_at_once(
    cluster: DevCluster,
    operators: Any,
    release: tuple[str, str, str],
    tenant_ns: str,
    tmp_path: Path,
) -> None:
    ns = tenant_ns
    _ce, queue = environment(cluster, ns)
    as_tenant(
        cluster, ns,
        job_definition("ecs", ns),
        eks_definition("eks", ns),
        job_definition("privileged", ns, container={"privileged": True}),
    )  # fmt: skip
    op = start_operator(cluster, operators, release, tmp_path)
    before = refused_pod_creates(cluster)
    as_tenant(
        cluster, ns,
        batch_job("ecs", ns, queue, "ecs"),
        batch_job("eks", ns, queue, "eks"),
        batch_job("privileged", ns, queue, "privileged", retryStrategy={"attempts": 3}),
        batch_job("privileged-array", ns, queue, "privileged", arrayProperties={"size": 2}),
    )  # fmt: skip
    failed = wait_status(cluster, ns, "privileged", "FAILED", "SUCCEEDED", timeout=60)
    refused_at = time.monotonic()
    assert failed["status"] == "FAILED", op.tail()
    reason = failed.get("statusReason") or ""
    assert reason.startswith("Invalid job definition: pod rejected:"), reason
    assert 'violates PodSecurity "baseline' in reason and "privileged" in reason, reason
    assert not failed.get("attempts")  # AWS: an invalid definition fails without retrying
    for name in ("ecs", "eks"):
        assert wait_status(cluster, ns, name, "SUCCEEDED", "FAILED", timeout=90)["status"] == "SUCCEEDED", (
            job_status(cluster, ns, name),
            op.tail(),
        )
    # Array children: the same rule per child, each FAILED at its one refused create.
    array = wait_status(cluster, ns, "privileged-array", "FAILED", "SUCCEEDED", timeout=60)
    assert array["status"] == "FAILED", (array, op.tail())
    assert array["arrayProperties"]["statusSummary"]["FAILED"] == 2
    # The refusal is final: the operator never asks again (its loop goes round every second;
    # a few seconds is many cycles).
    time.sleep(max(0.0, 3.0 - (time.monotonic() - refused_at)))
    assert refused_pod_creates(cluster) - before == 1 + 2  # the job, and each array child once


def test_a_restricted_namespace_runs_non_root_jobs_with_the_restricted_pod_defaults(
    cluster: DevCluster,
    operators: Any,
    release: tuple[str, str, str],
    tenant_ns: str,
    tmp_path: Path,
) -> None:
    ns = tenant_ns
    cluster.kubectl("label", "--overwrite", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    _ce, queue = environment(cluster, ns)
    as_tenant(
        cluster, ns,
        job_definition("ecs", ns, container={"user": "1000"}),
        eks_definition("eks", ns, container={"securityContext": {"runAsUser": 1000}}),
        job_definition("root", ns, container={"user": "0"}),
    )  # fmt: skip
    op = start_operator(cluster, operators, release, tmp_path, BATCHYARD_RESTRICTED_POD_DEFAULTS="true")
    as_tenant(
        cluster, ns,
        batch_job("ecs", ns, queue, "ecs"),
        batch_job("eks", ns, queue, "eks"),
        batch_job("root", ns, queue, "root"),
    )  # fmt: skip
    root = wait_status(cluster, ns, "root", "FAILED", "SUCCEEDED", timeout=60)
    assert root["status"] == "FAILED" and 'violates PodSecurity "restricted' in root["statusReason"], (
        op.tail()
    )
    for name in ("ecs", "eks"):
        assert wait_status(cluster, ns, name, "SUCCEEDED", "FAILED", timeout=90)["status"] == "SUCCEEDED", (
            job_status(cluster, ns, name),
            op.tail(),
        )


def test_a_job_cant_run_in_the_operators_namespace_or_kube_system(
    cluster: DevCluster,
    operators: Any,
    release: tuple[str, str, str],
    tmp_path: Path,
) -> None:
    _name, system, _sa = release
    _ce, queue = environment(cluster, f"ids-{uuid.uuid4().hex[:6]}")
    job = f"j-{uuid.uuid4().hex[:6]}"
    apply(
        cluster,
        job_definition("d", system),
        batch_job(job, system, queue, "d"),
        job_definition(job, "kube-system"),
        batch_job(job, "kube-system", queue, job),
    )
    op = start_operator(cluster, operators, release, tmp_path)
    try:
        for ns, whose in ((system, "the operator's own namespace"), ("kube-system", "kube-system")):
            status = wait_status(cluster, ns, job, "FAILED", "SUCCEEDED", timeout=60)
            assert status["status"] == "FAILED", op.tail()
            assert status["statusReason"].startswith(f"Namespace {ns} is not served: it is {whose}")
        assert not json.loads(
            cluster.kubectl(
                "get", "pods", "-n", "kube-system", "-l", "batchyard.io/job-uid", "-o", "json"
            ).stdout
        )["items"]
    finally:
        cluster.kubectl("delete", "batchjob,jobdefinition", job, "-n", "kube-system", check=False)


def test_a_job_cant_run_as_the_operators_service_account_even_where_it_is_served(
    cluster: DevCluster,
    operators: Any,
    release: tuple[str, str, str],
    tmp_path: Path,
) -> None:
    _name, system, sa = release
    _ce, queue = environment(cluster, f"sa-{uuid.uuid4().hex[:6]}")
    tag = uuid.uuid4().hex[:6]
    apply(
        cluster,
        eks_definition(f"as-operator-{tag}", system, serviceAccountName=sa),
        eks_definition(f"plain-{tag}", system),
        batch_job(f"as-operator-{tag}", system, queue, f"as-operator-{tag}"),
        batch_job(f"plain-{tag}", system, queue, f"plain-{tag}"),
    )
    # The administrator lists the operator's namespace explicitly: jobs run there, but never as
    # the operator.
    op = start_operator(cluster, operators, release, tmp_path, namespaces=system)
    status = wait_status(cluster, system, f"as-operator-{tag}", "FAILED", "SUCCEEDED", timeout=60)
    assert status["status"] == "FAILED", op.tail()
    assert f"serviceAccountName: {sa} is the operator's own ServiceAccount" in status["statusReason"]
    assert (
        wait_status(cluster, system, f"plain-{tag}", "SUCCEEDED", "FAILED", timeout=90)["status"]
        == "SUCCEEDED"
    )


def test_a_full_resource_quota_makes_the_job_wait_with_the_reason_then_it_runs(
    cluster: DevCluster,
    operators: Any,
    release: tuple[str, str, str],
    tenant_ns: str,
    tmp_path: Path,
) -> None:
    ns = tenant_ns
    _ce, queue = environment(cluster, ns)
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "pods", "namespace": ns},
             "spec": {"hard": {"pods": "0"}}}  # fmt: skip
    apply(cluster, quota)
    as_tenant(cluster, ns, job_definition("d", ns), batch_job("j", ns, queue, "d"))
    op = start_operator(cluster, operators, release, tmp_path)

    def waiting() -> dict[str, Any] | None:
        s = job_status(cluster, ns, "j")
        return s if re.match(r"WAITING:RESOURCE_QUOTA - .*(exceeded quota|status unknown for quota)",
                             s.get("statusReason") or "") else None  # fmt: skip

    status = wait_for(waiting, timeout=60, what=f"the job to wait for the quota\n{op.tail()}")
    assert status["status"] == "RUNNABLE"
    quota["spec"]["hard"]["pods"] = "10"
    apply(cluster, quota)
    final = wait_status(cluster, ns, "j", "SUCCEEDED", "FAILED", timeout=120)
    assert final["status"] == "SUCCEEDED", (final, op.tail())
    assert len(final["attempts"]) == 1  # the refusals were no attempts
