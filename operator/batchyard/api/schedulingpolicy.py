"""SchedulingPolicy: the CreateSchedulingPolicy request (fair share) as a cluster-scoped custom resource.

Why this module exists: a queue with a scheduling policy orders its RUNNABLE jobs by decayed,
weighted usage per share identifier instead of FIFO; the policy holds the weights, the decay
window and the compute reservation for inactive shares.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import ConfigDict, Field

from batchyard.api.common import Conditions, KubeObject, Loose, Spec, Tags, cel, rule

# AWS: share identifiers are up to 255 alphanumerics, optionally followed by "*" (a prefix).
SHARE_PATTERN = r"^[A-Za-z0-9]{1,255}\*?$"


class ShareAttributes(Spec):
    """The weight of one share identifier or prefix (AWS ShareAttributes)."""

    shareIdentifier: Annotated[str, Field(min_length=1, max_length=256, pattern=SHARE_PATTERN)]
    """A share identifier (up to 255 letters and digits), or a prefix ending in `*` whose matching
    identifiers share one weight."""
    weightFactor: (
        Annotated[
            float,
            Field(
                ge=0.0001,
                le=999.9999,
                # The API server compares an integer value (e.g. 0) against the truncated minimum (0),
                # so the lower bound is also a CEL rule, evaluated on doubles.
                json_schema_extra=cel(
                    rule(
                        "self >= 0.0001",
                        "spec.fairsharePolicy.shareDistribution[].weightFactor must be between 0.0001 "
                        "and 999.9999",
                    )
                ),
            ),
        ]
        | None
    ) = None
    """Weight, 0.0001 to 999.9999 (default 1.0). Lower gets more: 0.125 gets eight times the compute of
    1.0. Identifiers not listed get 1.0."""


class FairsharePolicy(Spec):
    """Fair-share parameters (AWS FairsharePolicy)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "!has(self.shareDistribution) || self.shareDistribution.all(a, "
                "self.shareDistribution.exists_one(b, b.shareIdentifier == a.shareIdentifier))",
                "spec.fairsharePolicy.shareDistribution[].shareIdentifier values must be unique",
                field_path=".shareDistribution",
            ),
            rule(
                "!has(self.shareDistribution) || self.shareDistribution.all(a, "
                "!a.shareIdentifier.endsWith('*') || self.shareDistribution.all(b, "
                "b.shareIdentifier == a.shareIdentifier || !b.shareIdentifier.startsWith("
                "a.shareIdentifier.substring(0, size(a.shareIdentifier) - 1))))",
                "spec.fairsharePolicy.shareDistribution[].shareIdentifier values must not overlap "
                "(a prefix such as UserA* can't be combined with UserA1 or UserAB*)",
                field_path=".shareDistribution",
            ),
        )
    )

    shareDecaySeconds: Annotated[int, Field(ge=0, le=604800)] | None = None
    """Window (seconds) over which past usage counts, 0 to 604,800 (one week). 0 (or unset) means only
    current usage is measured, as the AWS User Guide ("Fair-share scheduling policies") says; the API
    reference's "default minimum time window (600 seconds)" for 0 is not followed."""
    computeReservation: Annotated[int, Field(ge=0, le=99)] | None = None
    """Percentage 0 to 99 of the queue's maximum vCPUs held back for inactive share identifiers: the
    reserved fraction is (computeReservation/100)^activeShares."""
    shareDistribution: Annotated[list[ShareAttributes], Field(max_length=100)] | None = None
    """Weights per share identifier or prefix; unique and non-overlapping (up to 100 entries, a
    Batchyard bound that keeps validation cheap)."""


class SchedulingPolicySpec(Spec):
    """CreateSchedulingPolicy (AWS). The name is metadata.name."""

    fairsharePolicy: FairsharePolicy | None = None
    """The fair-share policy (all defaults when omitted)."""
    tags: Tags | None = None
    """Up to 50 tags; keys 1-128 characters (not starting with aws:), values up to 256."""


class SchedulingPolicyStatus(Loose):
    """Written by the operator."""

    observedGeneration: int | None = None
    """The metadata.generation the status reflects."""
    conditions: Conditions | None = None
    """Standard conditions."""


class SchedulingPolicy(KubeObject):
    """An AWS Batch fair-share scheduling policy, referenced by JobQueue spec.schedulingPolicy."""

    KIND: ClassVar[str] = "SchedulingPolicy"
    PLURAL: ClassVar[str] = "schedulingpolicies"
    SINGULAR: ClassVar[str] = "schedulingpolicy"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("sp",)
    NAMESPACED: ClassVar[bool] = False
    PRINTER_COLUMNS: ClassVar[tuple[tuple[str, str, str, str, int], ...]] = (
        ("Decay", ".spec.fairsharePolicy.shareDecaySeconds", "integer", "shareDecaySeconds", 0),
        ("Reservation", ".spec.fairsharePolicy.computeReservation", "integer", "computeReservation (%)", 0),
        ("Age", ".metadata.creationTimestamp", "date", "Age", 0),
    )
    OBJECT_RULES: ClassVar[tuple[dict[str, Any], ...]] = (
        rule(
            "size(self.metadata.name) <= 128",
            "metadata.name (the policy name) must be at most 128 characters",
        ),
    )

    spec: SchedulingPolicySpec = SchedulingPolicySpec()
    status: SchedulingPolicyStatus | None = None
