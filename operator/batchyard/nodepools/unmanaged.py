"""The unmanaged provider: existing nodes that carry the compute environment's label; no scaling.

Why this exists: AWS UNMANAGED compute environments are instances the user launches; on
Kubernetes that is a node group someone else runs. Its nodes are selected by
``batchyard.io/compute-environment=<ce>`` plus ``spec.nodeLabels``; the operator only schedules.
"""

from __future__ import annotations

from typing import ClassVar

from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.nodepools.base import CLIENT_ERROR, ProviderBase, selector


class UnmanagedProvider(ProviderBase):
    kind: ClassVar[str] = "unmanaged"
    scales_nodes: ClassVar[bool] = False

    def node_selector(self, ce: ComputeEnvironment) -> dict[str, str]:
        return {**(ce.spec.nodeLabels or {}), **super().node_selector(ce)}

    async def validate(self, ce: ComputeEnvironment) -> str | None:
        if not await self.observed_nodes(ce):
            return f"{CLIENT_ERROR}no node carries the labels {selector(self.node_selector(ce))}"
        return None
