"""The Helm chart, the plain manifest, the Dockerfile and the dashboard stay in step with the code.

What each test guards: the chart's CRDs are the generator's output (the same files as crds/;
no kopf peering CRDs: replicas elect a leader with a Lease); deploy/batchyard.yaml is exactly
`helm template` of the chart; the ClusterRole grants exactly the verbs the operator uses, per
node-pool toggle, and nothing with a wildcard; the leader Lease is a Role in the release namespace;
the Deployment wires kopf's liveness port to both probes and runs non-root and read-only; the
image uses the package's Python and installs the package itself (so its dependencies are
pyproject's); every series the Grafana dashboard queries exists in the metrics registry.

These need the Helm binary; it is built from its Go module on first use (about a minute) and
cached, like the control-plane binaries. Without Go they are skipped.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchyard.adapters import metrics
from batchyard.api.crdgen import all_crds
from batchyard.devcluster.helm import ensure_helm, render_deploy_manifest, render_gateway_manifest

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "batchyard"


@pytest.fixture(scope="module")
def helm() -> Path:
    try:
        return ensure_helm(log=lambda _msg: None)
    except RuntimeError as err:  # no Go on this machine: nothing to build helm with
        pytest.skip(str(err))


def template(helm: Path, *sets: str, namespace: str = "batchyard") -> list[dict[str, Any]]:
    args = [str(helm), "template", "by", str(CHART), "--namespace", namespace]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """Flatten RBAC rules into (group, resource, verb, resourceName or '') tuples."""
    return {
        (group, resource, verb, name)
        for r in rules
        for group in r["apiGroups"]
        for resource in r["resources"]
        for verb in r["verbs"]
        for name in r.get("resourceNames", [""])
    }


def g(group: str, resources: str, verbs: str, name: str = "") -> set[tuple[str, str, str, str]]:
    return {(group, r, v, name) for r in resources.split() for v in verbs.split()}


CLUSTER_KINDS = "computeenvironments jobqueues schedulingpolicies consumableresources"
BASE_CLUSTER = (
    g("batchyard.io", CLUSTER_KINDS, "get list watch")
    | g("batchyard.io", " ".join(f"{k}/status" for k in CLUSTER_KINDS.split()), "patch")
    | g("", "nodes", "get list watch patch")
    | g("", "namespaces", "get list watch")
    | g("apiextensions.k8s.io", "customresourcedefinitions", "list watch")
)
# Leader election: a Role in the release namespace (the ClusterRole has no lease grants).
LEASE = g("coordination.k8s.io", "leases", "create") | g(
    "coordination.k8s.io", "leases", "get update", "batchyard"
)
NAMESPACED = (
    g("batchyard.io", "batchjobs", "get list watch patch delete")
    | g("batchyard.io", "batchjobs/status", "patch")
    | g("batchyard.io", "jobdefinitions", "get list watch")
    | g("batchyard.io", "jobdefinitions/status", "patch")
    | g("", "pods", "get list watch create delete")
    | g("", "services", "create delete")  # multi-node jobs: the main node's headless Service
    | g("", "events", "create patch")
    | g("events.k8s.io", "events", "create patch")
)
KWOK = g("", "nodes", "create delete")
KARPENTER = g("karpenter.sh", "nodepools", "get list create patch delete")
CAPI = (
    g("cluster.x-k8s.io", "machinedeployments", "create")
    | g("cluster.x-k8s.io", "machinedeployments/scale", "get patch")
    | g("cluster.x-k8s.io", "machines", "list patch")
)


# --- CRDs and the plain manifest -----------------------------------------------------------------


def test_chart_crds_are_the_generators_output_and_the_same_files_as_crds_dir() -> None:
    chart = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    repo = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    generated = all_crds()
    stale = sorted(name for name, text in generated.items() if chart.get(name) != text)
    assert stale == [], f"helm/batchyard/crds is out of date for {stale}: run `make chart-crds`"
    assert sorted(chart) == sorted(repo), "helm/batchyard/crds and crds/ hold different files"
    assert sorted(chart) == sorted(generated), "a CRD file the generator does not make"


def test_deploy_manifest_is_the_charts_output(helm: Path) -> None:
    committed = (REPO / "deploy" / "batchyard.yaml").read_text()
    assert committed == render_deploy_manifest(helm, CHART), (
        "deploy/batchyard.yaml differs from the chart: run `make deploy-manifest`"
    )
    docs = [d for d in yaml.safe_load_all(committed) if d]
    assert docs[0]["kind"] == "Namespace"
    assert not any(d["kind"] == "CustomResourceDefinition" for d in docs)  # those are in crds/


def test_gateway_manifest_is_the_charts_gateway_objects_only(helm: Path) -> None:
    committed = (REPO / "deploy" / "batchyard-gateway.yaml").read_text()
    assert committed == render_gateway_manifest(helm, CHART), (
        "deploy/batchyard-gateway.yaml differs from the chart: run `make deploy-manifest`"
    )
    docs = [d for d in yaml.safe_load_all(committed) if d]
    assert sorted(d["kind"] for d in docs) == [
        "ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount",
    ]  # fmt: skip
    assert all(d["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway" for d in docs)
    assert all(d["metadata"].get("namespace", "batchyard-system") == "batchyard-system" for d in docs)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == ["gateway"]
    operator = [d for d in yaml.safe_load_all((REPO / "deploy" / "batchyard.yaml").read_text()) if d]
    names = {(d["kind"], d["metadata"]["name"]) for d in operator}
    assert not names & {(d["kind"], d["metadata"]["name"]) for d in docs}, "an object in both manifests"


def test_helm_lint_is_clean_for_defaults_and_every_toggle(helm: Path) -> None:
    for sets in (
        [],
        [
            "nodePools.kwok.enabled=true,nodePools.karpenter.enabled=true,nodePools.clusterAPI.enabled=true",
            "metrics.serviceMonitor.enabled=true,grafanaDashboard.enabled=true,replicaCount=2",
            "operator.watchNamespaces={team-a,team-b}",
            "console.enabled=true",
            "admissionWebhook.enabled=false",
        ],
    ):
        args = [str(helm), "lint", "--strict", str(CHART)] + [a for s in sets for a in ("--set", s)]
        proc = subprocess.run(args, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        pytest.param("operator.logLevel=LOUD", "value must be one of", id="an unknown log level"),
        pytest.param(
            "operator.watchNamespaces={Team_A}", "does not match pattern", id="an invalid namespace"
        ),
        pytest.param("operator.finishedJobTTLSeconds=-1", "minimum", id="a negative TTL"),
        pytest.param(
            "admissionWebhook.failurePolicy=Sometimes", "value must be one of", id="a bad failurePolicy"
        ),
        pytest.param(
            "admissionWebhook.timeoutSeconds=31", "maximum", id="a webhook timeout the API server refuses"
        ),
    ],
)
def test_values_schema_rejects_bad_settings_with_a_clear_message(
    helm: Path, setting: str, message: str
) -> None:
    args = [str(helm), "template", "by", str(CHART), "--set", setting]
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


# --- RBAC --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        pytest.param([], BASE_CLUSTER | NAMESPACED, id="defaults: all namespaces, no node pools"),
        pytest.param(
            ["nodePools.kwok.enabled=true"],
            BASE_CLUSTER | NAMESPACED | KWOK,
            id="kwok provider adds node create and delete",
        ),
        pytest.param(
            ["nodePools.karpenter.enabled=true"],
            BASE_CLUSTER | NAMESPACED | KARPENTER,
            id="karpenter provider adds nodepools",
        ),
        pytest.param(
            ["nodePools.clusterAPI.enabled=true"],
            BASE_CLUSTER | NAMESPACED | CAPI,
            id="cluster API provider adds machinedeployments and their scale",
        ),
        pytest.param(
            ["operator.watchNamespaces={team-a}"],
            BASE_CLUSTER,
            id="limited to namespaces: the ClusterRole keeps only cluster-scoped grants",
        ),
        pytest.param(
            ["operator.watchNamespaces={team-a}", "nodePools.kwok.enabled=true"],
            BASE_CLUSTER | KWOK | g("", "pods", "list"),
            id="limited to namespaces with kwok: listing pods on a node before removing it",
        ),
    ],
)
def test_cluster_role_grants_exactly_what_the_operator_uses(
    helm: Path, sets: list[str], expected: set[tuple[str, str, str, str]]
) -> None:
    role = one(template(helm, *sets), "ClusterRole", "by-batchyard")
    assert grants(role["rules"]) == expected


TENANT = g("batchyard.io", "jobdefinitions batchjobs", "get list watch create update patch delete") | g(
    "", "pods pods/log events", "get list watch"
)


def test_tenant_roles_let_a_tenant_submit_jobs_and_nothing_of_the_operators(helm: Path) -> None:
    """The ready ClusterRoles a tenant binds (README "Security"): jobs and definitions, never their
    status (the operator's), never pod create (a tenant runs pods only through a JobDefinition)."""
    docs = template(helm)
    assert grants(one(docs, "ClusterRole", "by-batchyard-tenant")["rules"]) == TENANT
    assert grants(one(docs, "ClusterRole", "by-batchyard-queue-reader")["rules"]) == g(
        "batchyard.io", CLUSTER_KINDS, "get list watch"
    )
    aggregated = template(helm, "tenantRoles.aggregateToEdit=true")
    labels = one(aggregated, "ClusterRole", "by-batchyard-tenant")["metadata"]["labels"]
    assert labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    off = template(helm, "tenantRoles.create=false")
    assert [d["metadata"]["name"] for d in off if d["kind"] == "ClusterRole"] == ["by-batchyard"]


def test_namespace_limited_install_grants_jobs_and_pods_per_namespace(helm: Path) -> None:
    docs = template(helm, "operator.watchNamespaces={team-a,team-b}", namespace="ops")
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs if d["kind"] == "Role"}
    for ns in ("team-a", "team-b"):
        assert grants(roles[(ns, "by-batchyard")]["rules"]) == NAMESPACED
    # events about cluster-scoped objects land in the operator's own namespace
    assert grants(roles[("ops", "by-batchyard-events")]["rules"]) == g("", "events", "create patch") | g(
        "events.k8s.io", "events", "create patch"
    )
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert {b["metadata"]["namespace"] for b in bindings} == {"team-a", "team-b", "ops"}
    assert all(
        b["subjects"] == [{"kind": "ServiceAccount", "name": "by-batchyard", "namespace": "ops"}]
        for b in bindings
    )
    assert grants(roles[("ops", "by-batchyard-leader")]["rules"]) == LEASE
    assert not any(d["kind"] in ("KopfPeering", "ClusterKopfPeering") for d in docs)


@pytest.mark.parametrize(
    ("sets", "lease_role"),
    [
        pytest.param([], True, id="leader election on by default: a lease Role in the release namespace"),
        pytest.param(["leaderElection.leaseName=other"], True, id="the Role names the configured Lease"),
        pytest.param(["leaderElection.enabled=false"], False, id="off: no lease permissions at all"),
    ],
)
def test_leader_election_grants_one_lease_in_the_release_namespace(
    helm: Path, sets: list[str], lease_role: bool
) -> None:
    docs = template(helm, *sets, namespace="ops")
    roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "by-batchyard-leader"]
    env = {
        e["name"]: e.get("value")
        for e in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["BATCHYARD_LEADER_ELECTION"] == ("true" if lease_role else "false")
    if not lease_role:
        assert roles == []
        return
    name = env["BATCHYARD_LEASE_NAME"]
    assert roles[0]["metadata"]["namespace"] == "ops"
    assert grants(roles[0]["rules"]) == g("coordination.k8s.io", "leases", "create") | g(
        "coordination.k8s.io", "leases", "get update", name
    )
    binding = one(docs, "RoleBinding", "by-batchyard-leader")
    assert binding["roleRef"]["name"] == "by-batchyard-leader"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "by-batchyard", "namespace": "ops"}]


def test_no_rbac_rule_uses_a_wildcard(helm: Path) -> None:
    docs = template(
        helm,
        "nodePools.kwok.enabled=true,nodePools.karpenter.enabled=true,nodePools.clusterAPI.enabled=true",
    ) + template(helm, "operator.watchNamespaces={a,b}")
    for d in docs:
        for rule in d.get("rules", []):
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(key, []), (d["kind"], rule)


# --- Deployment --------------------------------------------------------------------------------


def test_deployment_runs_the_operator_non_root_read_only_with_kopf_probes(helm: Path) -> None:
    docs = template(
        helm, "operator.watchNamespaces={a,b}", "operator.logLevel=DEBUG", "operator.keepPods=true"
    )
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    assert c["args"][:2] == ["run", "--liveness=http://0.0.0.0:8081/healthz"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": metrics.DEFAULT_PORT, "health": 8081, "webhook": 9443}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["BATCHYARD_NAMESPACES"] == "a,b"
    assert env["BATCHYARD_KEEP_PODS"] == "true"
    assert env["BATCHYARD_FINISHED_JOB_TTL_SECONDS"] == "604800"
    assert env["BATCHYARD_LOG_LEVEL"] == "DEBUG"
    assert env["BATCHYARD_METRICS_PORT"] == "8080"
    assert env["BATCHYARD_LEADER_ELECTION"] == "true"
    assert env["BATCHYARD_LEASE_NAME"] == "batchyard"
    assert "POD_NAMESPACE" in env  # the Lease lives in the operator's namespace
    # core.tenancy: the operator knows its ServiceAccount, which no job may run as
    by_name = {e["name"]: e for e in c["env"]}
    assert (
        by_name["BATCHYARD_SERVICE_ACCOUNT"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "spec.serviceAccountName"
    )
    assert env["BATCHYARD_EKS_HOST_NETWORK"] == "false"  # Pod Security baseline refuses hostNetwork
    assert env["BATCHYARD_RESTRICTED_POD_DEFAULTS"] == "false"
    assert c["resources"]["requests"].keys() == {"cpu", "memory"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsUser"] == _dockerfile_uid()


def test_metrics_service_targets_the_metrics_port_and_service_monitor_is_optional(helm: Path) -> None:
    docs = template(helm)
    svc = one(docs, "Service", "by-batchyard-metrics")
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    assert not any(d["kind"] in ("ServiceMonitor", "PodDisruptionBudget", "ConfigMap") for d in docs)
    docs = template(helm, "metrics.serviceMonitor.enabled=true,grafanaDashboard.enabled=true,replicaCount=2")
    sm = one(docs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert sm["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    cm = one(docs, "ConfigMap")
    assert json.loads(cm["data"]["batchyard.json"])["uid"] == "batchyard-overview"


def test_console_is_off_by_default_and_has_no_rights_of_its_own(helm: Path) -> None:
    assert not any("console" in d["metadata"]["name"] for d in template(helm))
    docs = template(helm, "console.enabled=true")
    console = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-console")
    )
    pod = console["spec"]["template"]["spec"]
    # It reads with the viewer's token only: no ServiceAccount token, not the operator's account.
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod
    assert "--server=https://kubernetes.default.svc" in pod["containers"][0]["args"]
    operator = next(d for d in docs if d["kind"] == "Deployment" and d is not console)
    selects = operator["spec"]["selector"]["matchLabels"].items()
    assert not selects <= console["spec"]["template"]["metadata"]["labels"].items()
    svc = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("-console"))
    assert svc["spec"]["selector"].items() <= console["spec"]["template"]["metadata"]["labels"].items()


# --- the admission webhook (AWS's size quotas) ---------------------------------------------------


def _openssl(*args: str, stdin: bytes | None = None) -> str:
    return subprocess.run(["openssl", *args], input=stdin, check=True, capture_output=True).stdout.decode()


def test_webhook_is_on_by_default_with_a_generated_certificate_the_api_server_can_verify(
    helm: Path, tmp_path: Path
) -> None:
    import base64

    from batchyard.handlers.operator import WEBHOOK_IDS

    docs = template(helm, namespace="sys")
    vwc = one(docs, "ValidatingWebhookConfiguration", "by-batchyard-sys")
    svc = one(docs, "Service", "by-batchyard-webhook")
    secret = one(docs, "Secret", "by-batchyard-webhook-tls")
    deployment = one(docs, "Deployment", "by-batchyard")
    pod = deployment["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    # Only CREATE and UPDATE of the two kinds' main resource: never status, never deletes.
    assert [w["rules"] for w in vwc["webhooks"]] == [
        [
            {
                "apiGroups": ["batchyard.io"],
                "apiVersions": ["v1alpha1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": [plural],
                "scope": "Namespaced",
            }
        ]
        for plural in WEBHOOK_IDS
    ]
    for w, plural in zip(vwc["webhooks"], WEBHOOK_IDS, strict=True):
        assert (w["sideEffects"], w["failurePolicy"], w["timeoutSeconds"]) == ("None", "Ignore", 5)
        assert w["admissionReviewVersions"] == ["v1"]
        assert "namespaceSelector" not in w  # all namespaces, like the operator's default
        ref = w["clientConfig"]["service"]
        # kopf serves each handler at /<its id>
        assert ref == {
            "name": "by-batchyard-webhook",
            "namespace": "sys",
            "path": f"/{WEBHOOK_IDS[plural]}",
            "port": 443,
        }
        assert w["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    # The Service reaches the operator's webhook port; the pod serves it with the mounted files.
    assert svc["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"] == [
        {"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["BATCHYARD_WEBHOOK_PORT"] == "9443"
    mount = next(m for m in c["volumeMounts"] if m["name"] == "webhook-tls")
    assert mount["readOnly"] is True
    assert {env["BATCHYARD_WEBHOOK_CERT"], env["BATCHYARD_WEBHOOK_KEY"]} == {
        f"{mount['mountPath']}/tls.crt",
        f"{mount['mountPath']}/tls.key",
    }
    volume = next(v for v in pod["volumes"] if v["name"] == "webhook-tls")
    assert volume["secret"]["secretName"] == "by-batchyard-webhook-tls"
    # The certificate is signed by the caBundle's CA and names the Service as the API server dials it.
    ca, cert, key = (tmp_path / "ca.crt", tmp_path / "tls.crt", tmp_path / "tls.key")
    for path in (ca, cert, key):
        path.write_bytes(base64.b64decode(secret["data"][path.name]))
    assert _openssl("verify", "-CAfile", str(ca), str(cert)).strip().endswith(": OK")
    sans = _openssl("x509", "-in", str(cert), "-noout", "-ext", "subjectAltName")
    assert "DNS:by-batchyard-webhook.sys.svc" in sans
    assert _openssl("pkey", "-in", str(key), "-pubout") == _openssl(
        "x509", "-in", str(cert), "-noout", "-pubkey"
    )


def test_webhook_follows_served_namespaces_a_users_certificate_and_can_be_off(helm: Path) -> None:
    docs = template(
        helm,
        "operator.watchNamespaces={team-a,team-b}",
        "admissionWebhook.certificate.existingSecret=mine",
        "admissionWebhook.certificate.caBundle=Q0E=",
        "admissionWebhook.annotations.cert-manager\\.io/inject-ca-from=batchyard/webhook",
        "admissionWebhook.failurePolicy=Fail",
    )
    vwc = one(docs, "ValidatingWebhookConfiguration")
    assert vwc["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": "batchyard/webhook"}
    for w in vwc["webhooks"]:
        assert w["namespaceSelector"]["matchExpressions"] == [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}
        ]
        assert (w["clientConfig"]["caBundle"], w["failurePolicy"]) == ("Q0E=", "Fail")
    assert not any(d["kind"] == "Secret" for d in docs)  # the user's own Secret is mounted
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "webhook-tls")["secret"]["secretName"] == "mine"

    off = template(helm, "admissionWebhook.enabled=false")
    assert not any(d["kind"] in ("ValidatingWebhookConfiguration", "Secret") for d in off)
    assert [d["metadata"]["name"] for d in off if d["kind"] == "Service"] == ["by-batchyard-metrics"]
    (c,) = one(off, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert not any(e["name"].startswith("BATCHYARD_WEBHOOK") for e in c["env"])
    assert "webhook" not in {p["name"] for p in c["ports"]}
    # The plain manifest carries no private key: it is rendered with the webhook off.
    committed = [d for d in yaml.safe_load_all((REPO / "deploy" / "batchyard.yaml").read_text()) if d]
    assert not any(d["kind"] in ("ValidatingWebhookConfiguration", "Secret") for d in committed)


# --- Dockerfile --------------------------------------------------------------------------------


def _dockerfile_uid() -> int:
    m = re.search(r"^USER (\d+):(\d+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert m, "Dockerfile must switch to a numeric non-root USER uid:gid"
    return int(m.group(1))


def test_dockerfile_uses_the_packages_python_and_installs_the_package_itself() -> None:
    text = (REPO / "Dockerfile").read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    m = re.search(r"^ARG PYTHON_VERSION=(\S+)$", text, re.M)
    assert m
    assert project["project"]["requires-python"] == f">={m.group(1)}"
    assert project["tool"]["ruff"]["target-version"] == "py" + m.group(1).replace(".", "")
    assert len(re.findall(r"^FROM python:\$\{PYTHON_VERSION\}-slim AS \w+$", text, re.M)) == 2
    # Dependencies come from pyproject.toml only: every pip install is pip itself or the package.
    installs = re.findall(r"pip install (.+?)(?:\s*\\?$|\s*&&)", text, re.M)
    assert sorted(installs) == ["--upgrade pip", "."], installs
    assert _dockerfile_uid() != 0
    assert 'ENTRYPOINT ["batchyard"]' in text
    assert text.rstrip().endswith('CMD ["run", "--liveness=http://0.0.0.0:8081/healthz"]')


def test_dockerignore_keeps_what_the_build_copies() -> None:
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()]
    assert lines[lines.index("*") + 1 :].count("!operator/") == 1
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (REPO / "Dockerfile").read_text(), re.M)
    for path in " ".join(copied).split():
        assert f"!{path}" in lines, f".dockerignore excludes {path}, which the Dockerfile copies"


# --- Grafana dashboard -------------------------------------------------------------------------


def test_dashboard_queries_every_batchyard_family_and_nothing_unknown() -> None:
    dash = json.loads((CHART / "dashboards" / "batchyard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = {
        re.sub(r"_(total|bucket|count|sum)$", "", m) for e in exprs for m in re.findall(r"\bbatchyard_\w+", e)
    }
    families = {fam.name for fam in metrics.REGISTRY.collect() if fam.name.startswith("batchyard_")}
    assert used == families, f"unknown: {sorted(used - families)}, not shown: {sorted(families - used)}"
