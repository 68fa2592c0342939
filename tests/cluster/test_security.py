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
  the quota is raised;
* with the chart's ValidatingWebhookConfiguration pointed at a standby replica, the API server
  refuses a BatchJob over 30 KiB and a JobDefinition over 24 KiB (kubectl fails naming the limit,
  nothing is stored), admits and runs objects exactly at the limits, and still lets metadata
  writes reach an oversized object admitted earlier (which the operator's own check FAILED).

These start `batchyard run` processes of their own, so they use a control plane of their own
(test_operations' fixtures).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_operations as ops
import yaml
from batch import apply, batch_job, environment, get, job_definition, job_status, wait_status
from waiting import wait_for

from batchyard.devcluster import DevCluster
from batchyard.devcluster.cluster import free_port

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
    # The chart's webhook Service is unreachable here (no service network, the operators run as
    # processes): test_the_api_server_refuses_oversized_objects registers the chart's webhooks
    # with a URL instead.
    helm(cluster, "install", name, str(CHART), "--namespace", system, "--create-namespace",
         "--set", "admissionWebhook.enabled=false")  # fmt: skip
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


# --- AWS's size quotas: the admission webhook (core.limits) --------------------------------------


def make_certificate(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a serving certificate for 127.0.0.1 signed by it (ca.crt, tls.crt, tls.key)."""
    ca_key, ca, key, csr, cert, ext = (
        tmp / n for n in ("ca.key", "ca.crt", "tls.key", "tls.csr", "tls.crt", "ext")
    )
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for args in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "1",
         "-subj", "/CN=batchyard-test-ca"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "1", "-extfile", ext],
    ):  # fmt: skip
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    return ca, cert, key


def charts_webhooks(cluster: DevCluster, ca: Path, port: int, name: str, ns: str) -> dict[str, Any]:
    """The chart's own ValidatingWebhookConfiguration (served namespace: ``ns``), its Service
    reference swapped for a URL on 127.0.0.1 (the API server runs on this machine)."""
    out = helm(
        cluster, "template", "by", str(CHART), "--namespace", "sys",
        "--set", f"operator.watchNamespaces={{{ns}}}",
        "--set", "admissionWebhook.certificate.existingSecret=unused",
        "--set", f"admissionWebhook.certificate.caBundle={base64.b64encode(ca.read_bytes()).decode()}",
        "--show-only", "templates/admission-webhook.yaml",
    )  # fmt: skip
    (vwc,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "ValidatingWebhookConfiguration"]
    vwc["metadata"] = {"name": name}
    for webhook in vwc["webhooks"]:
        path = webhook["clientConfig"].pop("service")["path"]
        webhook["clientConfig"]["url"] = f"https://127.0.0.1:{port}{path}"
    return dict(vwc)


def kubectl_as_tenant(cluster: DevCluster, ns: str, *args: str, obj: dict[str, Any]) -> Any:
    return cluster.kubectl(
        *args, f"--as=system:serviceaccount:{ns}:tenant", "-f", "-", input=json.dumps(obj), check=False
    )


def fill_to(obj: dict[str, Any], size: int, measure: Any) -> dict[str, Any]:
    """``obj`` with parameters that make ``measure(spec)`` exactly ``size`` bytes."""
    spec = dict(obj["spec"])
    params: dict[str, str] = {}
    while True:
        key = f"p{len(params):03d}"
        room = size - measure({**spec, "parameters": {**params, key: ""}})
        if room <= 1000:
            params[key] = "x" * room
            break
        params[key] = "x" * 1000
    spec["parameters"] = params
    assert measure(spec) == size
    return {**obj, "spec": spec}


def test_the_api_server_refuses_oversized_objects_and_runs_those_at_the_limit(
    cluster: DevCluster,
    operators: Any,
    release: tuple[str, str, str],
    tenant_ns: str,
    tmp_path: Path,
) -> None:
    from batchyard.api.batchjob import BatchJobSpec
    from batchyard.api.jobdefinition import JobDefinitionSpec
    from batchyard.core import limits

    def job_bytes(spec: dict[str, Any]) -> int:
        return limits.submission_bytes(BatchJobSpec.model_validate(spec))

    def definition_bytes(spec: dict[str, Any]) -> int:
        return limits.definition_bytes(JobDefinitionSpec.model_validate(spec))

    ns = tenant_ns
    _name, system, sa = release
    _ce, queue = environment(cluster, ns)
    as_tenant(cluster, ns, job_definition("d", ns))
    ca, cert, key = make_certificate(tmp_path)
    # Two replicas under the chart's ServiceAccount, electing a leader; each serves the webhook.
    kubeconfig = token_kubeconfig(cluster, system, sa, tmp_path / "sa.kubeconfig")
    ports = [free_port(), free_port()]
    webhook_env = {
        "BATCHYARD_WEBHOOK_ADDRESS": "127.0.0.1",
        "BATCHYARD_WEBHOOK_CERT": str(cert),
        "BATCHYARD_WEBHOOK_KEY": str(key),
    }
    replicas = [
        operators(
            kubeconfig,
            POD_NAMESPACE=system,
            BATCHYARD_SERVICE_ACCOUNT=sa,
            BATCHYARD_LEADER_ELECTION="true",
            BATCHYARD_WEBHOOK_PORT=str(port),
            **webhook_env,
        )
        for port in ports
    ]
    leader = wait_for(
        lambda: next((op for op in replicas if ops.leads(cluster, op, system, "batchyard")), None),
        timeout=60,
        what="a leader among the two replicas",
    )
    standby = next(op for op in replicas if op is not leader)
    port = ports[replicas.index(standby)]

    # Before the webhook is registered, an oversized job is stored: the operator's own check
    # (the backstop while no webhook answers) fails it, naming the limit.
    early = fill_to(batch_job("early", ns, queue, "d"), limits.MAX_SUBMISSION_BYTES + 1, job_bytes)
    as_tenant(cluster, ns, early)
    status = wait_status(cluster, ns, "early", "FAILED", "SUCCEEDED", timeout=60)
    assert (
        "Job payload of 30,721 bytes is over the maximum job payload size of 30 KiB" in status["statusReason"]
    ), (
        status,
        leader.tail(),
    )

    vwc = charts_webhooks(cluster, ca, port, f"sizes-{ns}", ns)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(vwc))
    try:
        big_job = fill_to(batch_job("big-job", ns, queue, "d"), limits.MAX_SUBMISSION_BYTES + 1, job_bytes)
        # The API server calls the standby as soon as the configuration is live.
        refused = wait_for(
            lambda: (
                (r := kubectl_as_tenant(cluster, ns, "create", "--dry-run=server", obj=big_job)).returncode
                and r
            ),
            timeout=60,
            what=f"the webhook to refuse\n{standby.tail()}",
        )
        assert "30 KiB" in refused.stderr, refused.stderr

        # Over the limits: kubectl fails naming the limit, and nothing is stored.
        big_def = fill_to(job_definition("big-def", ns), limits.MAX_DEFINITION_BYTES + 1, definition_bytes)
        for obj, message in (
            (big_job, f"BatchJob {ns}/big-job: job payload of 30,721 bytes is over the maximum job payload "
                      "size of 30 KiB (30,720 bytes, AWS Batch SubmitJob quota)"),
            (big_def, f"JobDefinition {ns}/big-def: job definition of 24,577 bytes is over the maximum job "
                      "definition size of 24 KiB (24,576 bytes, AWS Batch RegisterJobDefinition quota)"),
        ):  # fmt: skip
            result = kubectl_as_tenant(cluster, ns, "create", obj=obj)
            assert result.returncode != 0 and message in result.stderr, result.stderr
            kind, name = obj["kind"].lower(), obj["metadata"]["name"]
            gone = cluster.kubectl("get", kind, name, "-n", ns, check=False)
            assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stdout

        # Exactly at the limits: admitted, registered, run; the operator's status writes on them work.
        at_def = fill_to(job_definition("at-limit", ns), limits.MAX_DEFINITION_BYTES, definition_bytes)
        at_job = fill_to(batch_job("at-limit", ns, queue, "at-limit"), limits.MAX_SUBMISSION_BYTES, job_bytes)
        for obj in (at_def, at_job):
            result = kubectl_as_tenant(cluster, ns, "create", obj=obj)
            assert result.returncode == 0, result.stderr
        stored = get(cluster, "batchjob", "at-limit", ns)
        assert (
            job_bytes(stored["spec"]) == limits.MAX_SUBMISSION_BYTES
        )  # the API server added nothing counted
        final = wait_status(cluster, ns, "at-limit", "SUCCEEDED", "FAILED", timeout=90)
        assert final["status"] == "SUCCEEDED", (final, leader.tail())
        definition = get(cluster, "jobdefinition", "at-limit", ns)
        assert [r["revision"] for r in definition["status"]["revisions"]] == [1]

        # An edit that takes the definition one byte over is refused as a registration would be.
        # (no resourceVersion: an unconditional update, so only admission can refuse it)
        grown = fill_to(at_def, limits.MAX_DEFINITION_BYTES + 1, definition_bytes)
        result = kubectl_as_tenant(cluster, ns, "replace", obj=grown)
        assert result.returncode != 0 and "24 KiB" in result.stderr, result.stderr
        assert get(cluster, "jobdefinition", "at-limit", ns)["metadata"]["generation"] == 1

        # The object admitted before the webhook: metadata writes and deletion still go through.
        cluster.kubectl("label", "batchjob", "early", "-n", ns, "checked=yes")
        cluster.kubectl("delete", "batchjob", "early", "-n", ns)
        assert standby.proc.poll() is None and leader.proc.poll() is None
    finally:
        cluster.kubectl("delete", "validatingwebhookconfiguration", vwc["metadata"]["name"], check=False)
