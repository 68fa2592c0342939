"""The Helm chart and the plain manifest install into a real control plane, with exact permissions.

What a user would check after `helm install`: every object the chart renders is accepted by the
API server (the Deployment's pod can't pull an image here, which is fine), the CRDs are served,
and `kubectl auth can-i --list` for the operator's ServiceAccount shows only what the operator
uses. The baseline every authenticated ServiceAccount has (self-reviews, discovery URLs) is
measured on a ServiceAccount without bindings and subtracted. The admission webhook's generated
certificate is kept across `helm upgrade` and is the CA in the webhook configuration.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from batchyard.devcluster import DevCluster
from batchyard.devcluster.helm import DEPLOY_NAMESPACE, ensure_helm

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "batchyard"

# (resource as can-i prints it: "<resource>[.<group>][/<subresource>]", resource name, verb)
Grant = tuple[str, str, str]


@dataclass
class Release:
    name: str
    namespace: str
    service_account: str
    manifest: str


def helm(cluster: DevCluster, *args: str) -> str:
    cmd = [str(ensure_helm()), f"--kubeconfig={cluster.kubeconfig}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def install(cluster: DevCluster, *sets: str) -> Iterator[Release]:
    name = f"by-{uuid.uuid4().hex[:6]}"
    namespace = f"{name}-system"
    # Each release elects its leader with a Lease in its own namespace: releases never collide.
    args = ["install", name, str(CHART), "--namespace", namespace, "--create-namespace"]
    for s in sets:
        args += ["--set", s]
    helm(cluster, *args)
    manifest = helm(cluster, "get", "manifest", name, "--namespace", namespace)
    try:
        yield Release(name, namespace, f"{name}-batchyard", manifest)
    finally:
        helm(cluster, "uninstall", name, "--namespace", namespace, "--wait")
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def release(crds_installed: DevCluster) -> Iterator[Release]:
    # The session's CRDs come first (server-side applied from crds/): Helm then leaves the
    # existing CRDs alone, as it does on any cluster where they were installed with kubectl.
    # The other way round, kubectl's server-side apply would conflict with Helm's field manager.
    yield from install(crds_installed)


def can_i_list(cluster: DevCluster, namespace: str, sa_namespace: str, sa: str) -> set[Grant]:
    out = cluster.kubectl(
        "auth", "can-i", "--list", "-n", namespace, f"--as=system:serviceaccount:{sa_namespace}:{sa}"
    ).stdout
    grants: set[Grant] = set()
    for line in out.splitlines()[1:]:
        # Resources   Non-Resource URLs   Resource Names   Verbs
        m = re.match(r"^(\S*)\s+\[([^\]]*)\]\s+\[([^\]]*)\]\s+\[([^\]]*)\]\s*$", line)
        assert m, f"unexpected can-i line: {line!r}"
        resource, urls, names, verbs = m.groups()
        if urls:
            resource = urls  # non-resource URLs (discovery): part of the baseline
        for verb in verbs.split():
            for rname in names.split() or [""]:
                grants.add((resource, rname, verb))
    return grants


def baseline(cluster: DevCluster, namespace: str) -> set[Grant]:
    """What any ServiceAccount may do without bindings (self reviews, discovery)."""
    sa = f"nobody-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "serviceaccount", sa, "-n", namespace)
    return can_i_list(cluster, namespace, namespace, sa)


def grant(resources: str, verbs: str, name: str = "") -> set[Grant]:
    return {(r, name, v) for r in resources.split() for v in verbs.split()}


CLUSTER_KINDS = [
    f"{k}.batchyard.io"
    for k in ("computeenvironments", "jobqueues", "schedulingpolicies", "consumableresources")
]
CLUSTER = (
    grant(" ".join(CLUSTER_KINDS), "get list watch")
    | grant(" ".join(f"{k}/status" for k in CLUSTER_KINDS), "patch")
    | grant("nodes", "get list watch patch")
    | grant("namespaces", "get list watch")
    | grant("customresourcedefinitions.apiextensions.k8s.io", "list watch")
)
NAMESPACED = (
    grant("batchjobs.batchyard.io", "get list watch patch delete")
    | grant("batchjobs.batchyard.io/status", "patch")
    | grant("jobdefinitions.batchyard.io", "get list watch")
    | grant("jobdefinitions.batchyard.io/status", "patch")
    | grant("pods", "get list watch create delete")
    | grant("services", "create delete")  # multi-node jobs: the main node's headless Service
    | grant("events events.events.k8s.io", "create patch")
)


# Leader election, only in the operator's own namespace.
LEASE = grant("leases.coordination.k8s.io", "create") | grant(
    "leases.coordination.k8s.io", "get update", "batchyard"
)


def test_chart_installs_and_every_object_is_accepted(devcluster: DevCluster, release: Release) -> None:
    docs = [d for d in yaml.safe_load_all(release.manifest) if d]
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Role",  # the leader Lease
        "RoleBinding",
        "Secret",  # the admission webhook's certificate
        "Service",
        "ServiceAccount",
        "ValidatingWebhookConfiguration",
    ]
    for d in docs:
        ns = d["metadata"].get("namespace")
        args = ["get", f"{d['kind']}/{d['metadata']['name']}", "-o", "name"] + (["-n", ns] if ns else [])
        assert devcluster.kubectl(*args).stdout.strip()
    deploy = devcluster.kubectl(
        "get", "deploy", release.service_account, "-n", release.namespace, "-o", "yaml"
    )
    spec = yaml.safe_load(deploy.stdout)["spec"]["template"]["spec"]
    assert spec["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_the_webhook_certificate_survives_an_upgrade_and_matches_the_ca_bundle(
    devcluster: DevCluster, release: Release
) -> None:
    """Helm's `lookup` keeps the generated CA and certificate across `helm upgrade` (a new CA
    on every upgrade would leave running pods with a certificate the new caBundle rejects)."""

    def current() -> tuple[dict[str, str], list[str]]:
        secret = json.loads(
            devcluster.kubectl(
                "get",
                "secret",
                f"{release.service_account}-webhook-tls",
                "-n",
                release.namespace,
                "-o",
                "json",
            ).stdout
        )
        vwc = json.loads(
            devcluster.kubectl(
                "get",
                "validatingwebhookconfiguration",
                f"{release.service_account}-{release.namespace}",
                "-o",
                "json",
            ).stdout
        )
        return secret["data"], [w["clientConfig"]["caBundle"] for w in vwc["webhooks"]]

    data, bundles = current()
    assert set(data) == {"ca.crt", "tls.crt", "tls.key"}
    assert bundles == [data["ca.crt"]] * 2
    helm(devcluster, "upgrade", release.name, str(CHART), "--namespace", release.namespace, "--reuse-values")
    assert current() == (data, bundles)


def test_chart_crds_are_served(devcluster: DevCluster, release: Release) -> None:
    docs = [yaml.safe_load(p.read_text()) for p in sorted((CHART / "crds").glob("*.yaml"))]
    names = [d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert "batchjobs.batchyard.io" in names
    policies = {d["kind"] for d in docs if d["metadata"]["name"] == "batchjobs.batchyard.io"}
    assert policies == {
        "CustomResourceDefinition",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    assert not any(n.endswith(".kopf.dev") for n in names)  # no kopf peering: a Lease elects the leader
    devcluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names])


def test_service_account_can_do_exactly_what_the_operator_uses(
    devcluster: DevCluster, release: Release, namespace: str
) -> None:
    extra = can_i_list(devcluster, namespace, release.namespace, release.service_account) - baseline(
        devcluster, namespace
    )
    assert extra == CLUSTER | NAMESPACED
    own = can_i_list(devcluster, release.namespace, release.namespace, release.service_account)
    assert own - baseline(devcluster, release.namespace) == CLUSTER | NAMESPACED | LEASE


def test_namespace_limited_install_grants_jobs_only_in_its_namespaces(
    crds_installed: DevCluster, namespace: str
) -> None:
    devcluster = crds_installed
    other = f"t-{uuid.uuid4().hex[:10]}"
    devcluster.kubectl("create", "namespace", other)
    try:
        for rel in install(
            devcluster,
            f"operator.watchNamespaces={{{namespace}}}",
            "nodePools.kwok.enabled=true,nodePools.karpenter.enabled=true,nodePools.clusterAPI.enabled=true",
        ):
            toggles = (
                grant("nodes", "create delete")
                | grant("pods", "list")  # kwok: any pod left on a node it removes
                | grant("nodepools.karpenter.sh", "get list create patch delete")
                | grant("machinedeployments.cluster.x-k8s.io", "create")
                | grant("machinedeployments.cluster.x-k8s.io/scale", "get patch")
                | grant("machines.cluster.x-k8s.io", "list patch")
            )
            served = can_i_list(devcluster, namespace, rel.namespace, rel.service_account)
            assert served - baseline(devcluster, namespace) == CLUSTER | toggles | NAMESPACED
            unserved = can_i_list(devcluster, other, rel.namespace, rel.service_account)
            assert unserved - baseline(devcluster, other) == CLUSTER | toggles
            own = can_i_list(devcluster, rel.namespace, rel.namespace, rel.service_account)
            assert own - baseline(devcluster, rel.namespace) == CLUSTER | toggles | LEASE | grant(
                "events events.events.k8s.io", "create patch"
            )
    finally:
        devcluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_plain_manifest_applies_after_the_crds(crds_installed: DevCluster) -> None:
    """The README's path without Helm: `kubectl apply -f crds/` (the fixture) then `deploy/`."""
    devcluster = crds_installed
    manifest = REPO / "deploy" / "batchyard.yaml"
    try:
        out = devcluster.kubectl("apply", "-f", str(manifest)).stdout
        assert "deployment.apps/batchyard created" in out
        sa = can_i_list(devcluster, "default", DEPLOY_NAMESPACE, "batchyard") - baseline(
            devcluster, DEPLOY_NAMESPACE
        )
        assert sa == CLUSTER | NAMESPACED
        own = can_i_list(devcluster, DEPLOY_NAMESPACE, DEPLOY_NAMESPACE, "batchyard") - baseline(
            devcluster, DEPLOY_NAMESPACE
        )
        assert own == CLUSTER | NAMESPACED | LEASE
    finally:
        devcluster.kubectl("delete", "-f", str(manifest), "--wait=false", check=False)
