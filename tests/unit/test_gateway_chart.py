"""The gateway in the Helm chart: off by default, least-privilege RBAC when on."""

from __future__ import annotations

from pathlib import Path

from test_packaging import g, grants, helm, template  # noqa: F401 - helm is a fixture

SERVED = [
    "gateway.enabled=true",
    "gateway.serviceAccounts[0].namespace=team-a,gateway.serviceAccounts[0].name=batch-user",
    "gateway.serviceAccounts[1].namespace=team-a,gateway.serviceAccounts[1].name=etl",
    "gateway.serviceAccounts[2].namespace=team-b,gateway.serviceAccounts[2].name=batch-user",
]


def test_the_gateway_is_off_by_default(helm: Path) -> None:  # noqa: F811
    assert not [d for d in template(helm) if "gateway" in d["metadata"]["name"]]


def test_the_gateway_impersonates_only_the_served_service_accounts(helm: Path) -> None:  # noqa: F811
    docs = [d for d in template(helm, *SERVED, namespace="ops") if "gateway" in d["metadata"]["name"]]
    roles = {(d["metadata"].get("namespace"), d["kind"], d["metadata"]["name"]): d for d in docs}
    assert grants(roles[("team-a", "Role", "by-batchyard-gateway-impersonate")]["rules"]) == g(
        "", "serviceaccounts", "impersonate", "batch-user"
    ) | g("", "serviceaccounts", "impersonate", "etl")
    assert grants(roles[("team-b", "Role", "by-batchyard-gateway-impersonate")]["rules"]) == g(
        "", "serviceaccounts", "impersonate", "batch-user"
    )
    # Its credential Secrets: read in its own namespace only; BatchJobs: list and watch (the cache).
    assert grants(roles[("ops", "Role", "by-batchyard-gateway-credentials")]["rules"]) == g(
        "", "secrets", "list watch"
    )
    assert grants(roles[(None, "ClusterRole", "by-batchyard-gateway-jobs")]["rules"]) == g(
        "batchyard.io", "batchjobs", "list watch"
    )
    assert {k[1] for k in roles} == {
        "ServiceAccount", "Deployment", "Service", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
    }  # fmt: skip


def test_the_gateway_deployment_is_not_selected_by_the_operators_selectors(helm: Path) -> None:  # noqa: F811
    docs = template(helm, *SERVED, namespace="ops")
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    gw, op = deployments["by-batchyard-gateway"], deployments["by-batchyard"]
    gw_labels = gw["spec"]["template"]["metadata"]["labels"]
    assert not set(op["spec"]["selector"]["matchLabels"].items()) <= set(gw_labels.items())
    (c,) = gw["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["gateway"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["BATCHYARD_GATEWAY_SECRETS_NAMESPACE"] == "ops"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
