"""Node-pool providers behind one small interface (kwok, Karpenter, Cluster API, unmanaged).

Why this exists: the operator loop handles every compute environment the same way, whatever
launches its nodes. Per ComputeEnvironment and cycle it calls:

1. ``provider_for(kube, ce)`` (keep one provider per kind: karpenter caches what it wrote);
2. ``await validate(kube, ce, provider)`` -> INVALID statusReason or None (VALID);
3. ``await provider.observed_nodes(ce)`` -> ``ObservedNode``s, turned into ``core.nodepool.PoolNode``
   with ``ObservedNode.pool_node(used, running_jobs, idle_since, other_pods)``;
4. ``core.nodepool.plan_scale(pool_spec(ce), nodes, demand, now)`` (pure);
5. ``await provider.apply(ce, plan)``; on CE deletion ``await provider.forget(ce)``.
"""

from __future__ import annotations

from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.nodepools.base import (
    CLIENT_ERROR,
    KubeClient,
    NodePoolProvider,
    ObservedNode,
    parse_node,
    validate_common,
)
from batchyard.nodepools.clusterapi import ClusterApiProvider
from batchyard.nodepools.karpenter import KarpenterProvider
from batchyard.nodepools.kwok import KwokProvider
from batchyard.nodepools.unmanaged import UnmanagedProvider

PROVIDERS: dict[str, type[KwokProvider | KarpenterProvider | ClusterApiProvider | UnmanagedProvider]] = {
    "kwok": KwokProvider,
    "karpenter": KarpenterProvider,
    "clusterapi": ClusterApiProvider,
    "unmanaged": UnmanagedProvider,
}


def provider_kind(ce: ComputeEnvironment) -> str:
    """spec.provider.type; an UNMANAGED CE without a provider is ``unmanaged``."""
    return ce.spec.provider.type if ce.spec.provider else "unmanaged"


def provider_for(kube: KubeClient, ce: ComputeEnvironment) -> NodePoolProvider:
    """A new provider of the CE's kind (callers keep one per kind and reuse it)."""
    return PROVIDERS[provider_kind(ce)](kube)


async def validate(
    kube: KubeClient, ce: ComputeEnvironment, provider: NodePoolProvider | None = None
) -> str | None:
    """The CE's INVALID statusReason (common checks first, then the provider's), or None when VALID."""
    reason = await validate_common(kube, ce)
    if reason is None:
        reason = await (provider or provider_for(kube, ce)).validate(ce)
    return reason


__all__ = [
    "CLIENT_ERROR",
    "PROVIDERS",
    "ClusterApiProvider",
    "KarpenterProvider",
    "KubeClient",
    "KwokProvider",
    "NodePoolProvider",
    "ObservedNode",
    "UnmanagedProvider",
    "parse_node",
    "provider_for",
    "provider_kind",
    "validate",
]
