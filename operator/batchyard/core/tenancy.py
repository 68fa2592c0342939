"""What a job may not reach: the operator's own identity.

The operator's ServiceAccount may create and delete pods in every namespace it serves (and,
with the node-pool providers, patch nodes). A job that ran as that ServiceAccount, or in the
namespace that holds its token, could act as the operator. So, unless an administrator lists
them explicitly among the served namespaces (``BATCHYARD_NAMESPACES``, Helm
``operator.watchNamespaces``):

* a job in the operator's own namespace or in ``kube-system`` is refused at submission;
* a job can never run as the operator's ServiceAccount
  (``eksProperties.podProperties.serviceAccountName``), even in a listed namespace.

A ServiceAccount name is local to its namespace, so only a job in the operator's namespace can
name the operator's ServiceAccount. Pure: names in, a reason (or None) out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Namespaces whose ServiceAccounts hold the cluster's own controllers' power.
PROTECTED_NAMESPACES: Final = ("kube-system",)


@dataclass(frozen=True, slots=True)
class OperatorIdentity:
    """Where the operator runs and as whom (the chart passes both through the downward API)."""

    namespace: str | None = None
    service_account: str | None = None
    listed_namespaces: tuple[str, ...] = ()  # namespaces the administrator listed to serve


def namespace_refusal(namespace: str, identity: OperatorIdentity) -> str | None:
    """Why a job in ``namespace`` is refused, or None."""
    if namespace in identity.listed_namespaces:
        return None  # the administrator chose to serve it
    if namespace in PROTECTED_NAMESPACES or (identity.namespace and namespace == identity.namespace):
        whose = "kube-system" if namespace in PROTECTED_NAMESPACES else "the operator's own namespace"
        return (
            f"Namespace {namespace} is not served: it is {whose}, where a job could act with the "
            "operator's or the cluster's identity; list it in BATCHYARD_NAMESPACES (Helm "
            "operator.watchNamespaces) to run jobs there"
        )
    return None


def service_account_refusal(
    namespace: str, service_account: str | None, identity: OperatorIdentity
) -> str | None:
    """Why a pod in ``namespace`` may not run as ``service_account``, or None."""
    if (
        service_account
        and identity.service_account
        and identity.namespace
        and namespace == identity.namespace
        and service_account == identity.service_account
    ):
        return (
            f"eksProperties.podProperties.serviceAccountName: {service_account} is the operator's "
            "own ServiceAccount; a job can't run as it"
        )
    return None
