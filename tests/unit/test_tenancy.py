"""core.tenancy: a job can't reach the operator's identity (its namespace, its ServiceAccount)."""

from __future__ import annotations

import pytest

from batchyard.core.tenancy import OperatorIdentity, namespace_refusal, service_account_refusal

OPERATOR = OperatorIdentity(namespace="batchyard-system", service_account="batchyard")
LISTED = OperatorIdentity(
    namespace="batchyard-system",
    service_account="batchyard",
    listed_namespaces=("batchyard-system", "kube-system", "team-a"),
)


@pytest.mark.parametrize(
    ("namespace", "identity", "refused"),
    [
        pytest.param("team-a", OPERATOR, False, id="an ordinary namespace is served"),
        pytest.param(
            "batchyard-system", OPERATOR, True, id="the operator's namespace is not served by default"
        ),
        pytest.param("kube-system", OPERATOR, True, id="kube-system is not served by default"),
        pytest.param(
            "kube-system", OperatorIdentity(), True, id="kube-system even when the operator runs outside"
        ),
        pytest.param(
            "batchyard-system", LISTED, False, id="listed explicitly: the operator's namespace served"
        ),
        pytest.param("kube-system", LISTED, False, id="listed explicitly: kube-system served"),
    ],
)
def test_namespace_refusal(namespace: str, identity: OperatorIdentity, refused: bool) -> None:
    reason = namespace_refusal(namespace, identity)
    assert (reason is not None) == refused
    if reason:
        assert reason.startswith(f"Namespace {namespace} is not served") and "BATCHYARD_NAMESPACES" in reason


@pytest.mark.parametrize(
    ("namespace", "service_account", "identity", "refused"),
    [
        pytest.param("batchyard-system", "batchyard", LISTED, True, id="the operator's own ServiceAccount"),
        pytest.param(
            "team-a", "batchyard", LISTED, False, id="a namesake in another namespace is another account"
        ),
        pytest.param(
            "batchyard-system", "jobs", LISTED, False, id="another account of the operator's namespace"
        ),
        pytest.param("batchyard-system", None, LISTED, False, id="no account named: the namespace's default"),
        pytest.param(
            "batchyard-system",
            "batchyard",
            OperatorIdentity(),
            False,
            id="identity unknown: nothing to guard",
        ),
    ],
)
def test_service_account_refusal(
    namespace: str, service_account: str | None, identity: OperatorIdentity, refused: bool
) -> None:
    reason = service_account_refusal(namespace, service_account, identity)
    assert (reason is not None) == refused
    if reason:
        assert "serviceAccountName" in reason and "operator's own ServiceAccount" in reason
