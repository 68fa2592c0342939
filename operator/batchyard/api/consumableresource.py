"""ConsumableResource: the CreateConsumableResource request as a cluster-scoped custom resource.

Why this module exists: jobs can need countable things that are not node resources (licences,
API tokens); the scheduler starts a job only when every resource it needs is available and holds
the units from STARTING until the attempt ends.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from batchyard.api.common import Conditions, KubeObject, Loose, Spec, Tags


class ConsumableResourceSpec(Spec):
    """CreateConsumableResource (AWS). The name is metadata.name."""

    resourceType: Literal["REPLENISHABLE", "NON_REPLENISHABLE"] = "REPLENISHABLE"
    """REPLENISHABLE (default): units come back when a job ends. NON_REPLENISHABLE: used units are gone."""
    totalQuantity: Annotated[int, Field(ge=0)]
    """Total units (non-negative). Lowering it below the units in use reduces availability at once and
    the total as jobs finish."""
    tags: Tags | None = None
    """Up to 50 tags; keys 1-128 characters (not starting with aws:), values up to 256."""


class ConsumableResourceStatus(Loose):
    """Usage, written by the operator (AWS DescribeConsumableResource)."""

    totalQuantity: int | None = None
    """Effective total (for NON_REPLENISHABLE: spec.totalQuantity minus units consumed)."""
    inUseQuantity: int | None = None
    """Units held by STARTING and RUNNING jobs."""
    availableQuantity: int | None = None
    """Units free for new jobs."""
    observedGeneration: int | None = None
    """The metadata.generation the status reflects."""
    conditions: Conditions | None = None
    """Standard conditions."""


class ConsumableResource(KubeObject):
    """An AWS Batch consumable resource (licences, tokens) that jobs hold while they run."""

    KIND: ClassVar[str] = "ConsumableResource"
    PLURAL: ClassVar[str] = "consumableresources"
    SINGULAR: ClassVar[str] = "consumableresource"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("cres",)
    NAMESPACED: ClassVar[bool] = False
    PRINTER_COLUMNS: ClassVar[tuple[tuple[str, str, str, str, int], ...]] = (
        ("Type", ".spec.resourceType", "string", "REPLENISHABLE or NON_REPLENISHABLE", 0),
        ("Total", ".spec.totalQuantity", "integer", "Total quantity", 0),
        ("In-Use", ".status.inUseQuantity", "integer", "Units in use", 0),
        ("Available", ".status.availableQuantity", "integer", "Units available", 0),
        ("Age", ".metadata.creationTimestamp", "date", "Age", 0),
    )

    spec: ConsumableResourceSpec
    status: ConsumableResourceStatus | None = None
