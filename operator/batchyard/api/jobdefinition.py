"""JobDefinition: the RegisterJobDefinition request as a namespaced custom resource.

Why this module exists: a job definition is the template every BatchJob points at. AWS keeps an
immutable, numbered revision per registration; Batchyard keeps one object per definition name
whose spec is the latest registration, and the operator records every spec change (every new
metadata.generation) as a numbered revision in `status.revisions` (a job pins one revision at
submission).
`jobDefinitionName` is the object's metadata.name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from batchyard.api.common import (
    Conditions,
    ConsumableResourceProperties,
    JobTimeout,
    KubeObject,
    Loose,
    Parameters,
    RetryStrategy,
    Spec,
    Tags,
    Timestamp,
    cel,
    rule,
)
from batchyard.api.ecs import ContainerProperties, EcsProperties
from batchyard.api.eks import EksProperties

# AWS: "You can have up to 1,000 nodes in a single job."; targetNodes "0:3", ":3", "3:", "3".
TARGET_NODES_PATTERN = r"^([0-9]{0,4}:[0-9]{0,4}|[0-9]{1,4})$"


class NodeRangeProperty(Spec):
    """The properties of one node range of a multi-node parallel job (AWS NodeRangeProperty)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "(has(self.container) ? 1 : 0) + (has(self.ecsProperties) ? 1 : 0) + "
                "(has(self.eksProperties) ? 1 : 0) == 1",
                "spec.nodeProperties.nodeRangeProperties entries must set exactly one of container, "
                "ecsProperties or eksProperties",
            )
        )
    )

    targetNodes: Annotated[str, Field(min_length=1, max_length=9, pattern=TARGET_NODES_PATTERN)]
    """Node index range, inclusive: "0:3", ":3" (from 0), "3:" (to the last node) or "3". The ranges
    together must cover 0..numNodes-1; a later, narrower range overrides a wider one."""
    container: ContainerProperties | None = None
    """ECS-style container for these nodes."""
    ecsProperties: EcsProperties | None = None
    """ECS multi-container task for these nodes."""
    eksProperties: EksProperties | None = None
    """EKS pod for these nodes. AWS documents disagree on EKS multi-node jobs ("you must not specify
    nodeProperties" vs the "Multi-node parallel jobs on Amazon EKS" section); Batchyard follows the
    newer MNP section and supports them."""
    instanceTypes: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=1)] | None = None
    """Instance type for these nodes (AWS: "currently limited to one element")."""
    consumableResourceProperties: ConsumableResourceProperties | None = None
    """Consumable resources each node holds."""


class NodeProperties(Spec):
    """Multi-node parallel job layout (AWS NodeProperties)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "self.mainNode < self.numNodes",
                "spec.nodeProperties.mainNode must be smaller than spec.nodeProperties.numNodes",
                field_path=".mainNode",
            )
        )
    )

    numNodes: Annotated[int, Field(ge=1, le=1000)]
    """Number of nodes (pods), 1 to 1,000 (AWS: up to 1,000 nodes in a single job)."""
    mainNode: Annotated[int, Field(ge=0, le=999)]
    """Index of the main node; must be smaller than numNodes."""
    nodeRangeProperties: Annotated[list[NodeRangeProperty], Field(min_length=1, max_length=5)]
    """1 to 5 node ranges (AWS: "up to five distinct node groups for each job")."""


class JobDefinitionSpec(Spec):
    """RegisterJobDefinition (AWS). The name is metadata.name; every spec change becomes a revision."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "self.type != 'container' || ((has(self.containerProperties) ? 1 : 0) + "
                "(has(self.ecsProperties) ? 1 : 0) + (has(self.eksProperties) ? 1 : 0) == 1 && "
                "!has(self.nodeProperties))",
                "spec.type container requires exactly one of spec.containerProperties, spec.ecsProperties or "
                "spec.eksProperties, and no spec.nodeProperties",
            ),
            rule(
                "self.type != 'multinode' || (has(self.nodeProperties) && !has(self.containerProperties) && "
                "!has(self.ecsProperties) && !has(self.eksProperties))",
                "spec.type multinode requires spec.nodeProperties and no spec.containerProperties, "
                "spec.ecsProperties or spec.eksProperties",
            ),
            rule(
                "!has(self.containerProperties) || has(self.containerProperties.image)",
                "spec.containerProperties.image is required",
                field_path=".containerProperties",
            ),
            rule(
                "!has(self.eksProperties) || (!has(self.platformCapabilities) && !has(self.propagateTags))",
                "spec.platformCapabilities and spec.propagateTags must not be set with spec.eksProperties",
            ),
            rule(
                "self.type != 'multinode' || !has(self.platformCapabilities) || "
                "!self.platformCapabilities.exists(p, p == 'FARGATE')",
                "spec.platformCapabilities FARGATE does not support spec.type multinode",
            ),
        )
    )

    type: Literal["container", "multinode"]
    """container (one pod per job or array child: exactly one of containerProperties, ecsProperties,
    eksProperties) or multinode (a multi-node parallel job: nodeProperties)."""
    parameters: Parameters | None = None
    """Defaults for `Ref::name` placeholders in command/args; SubmitJob parameters take precedence."""
    schedulingPriority: Annotated[int, Field(ge=0, le=9999)] | None = None
    """Scheduling priority within a share identifier on fair-share queues, 0 to 9999; higher runs
    first. (The AWS console says 0-100; Batchyard follows the API reference: 0-9999.)"""
    containerProperties: ContainerProperties | None = None
    """ECS-style single container."""
    ecsProperties: EcsProperties | None = None
    """ECS multi-container task, run as one pod."""
    eksProperties: EksProperties | None = None
    """EKS pod template (the natural shape on Kubernetes)."""
    nodeProperties: NodeProperties | None = None
    """Multi-node parallel layout (type multinode)."""
    retryStrategy: RetryStrategy | None = None
    """Default retry strategy for jobs; a job's own retryStrategy replaces it."""
    timeout: JobTimeout | None = None
    """Default attempt timeout for jobs; a job's own timeout replaces it."""
    propagateTags: bool | None = None
    """Copy tags to the pods (as annotations). Must not be set with eksProperties (AWS)."""
    tags: Tags | None = None
    """Up to 50 tags; keys 1-128 characters (not starting with aws:), values up to 256."""
    platformCapabilities: Annotated[list[Literal["EC2", "FARGATE"]], Field(max_length=2)] | None = None
    """EC2 or FARGATE. Accepted for compatibility (all jobs run as pods); must not be set with
    eksProperties, and FARGATE excludes multinode (AWS)."""
    consumableResourceProperties: ConsumableResourceProperties | None = None
    """Consumable resources each job (each array child, each node) holds while it runs."""
    inactiveRevisions: (
        Annotated[
            list[Annotated[int, Field(ge=1)]],
            Field(max_length=1000, json_schema_extra={"x-kubernetes-list-type": "set"}),
        ]
        | None
    ) = None
    """Batchyard extension (DeregisterJobDefinition): revision numbers to mark INACTIVE. An
    INACTIVE revision is never chosen for `name` (latest ACTIVE revision); `name:revision` still
    resolves it for jobs already submitted. Example: `kubectl patch jobdefinition sleep --type merge
    -p '{"spec":{"inactiveRevisions":[1]}}'`."""
    registrationId: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    """Batchyard extension: an opaque id of the registration that wrote this spec. A new value
    records a new revision even when the rest of the spec is unchanged (AWS makes a revision per
    RegisterJobDefinition; the gateway sets a fresh id per call). Not copied into revisions."""

    @classmethod
    def from_aws(cls, request: Mapping[str, Any]) -> tuple[str | None, JobDefinitionSpec]:
        """Parse a RegisterJobDefinition request (or a DescribeJobDefinitions entry).

        Returns (jobDefinitionName, spec). Response-only keys (jobDefinitionArn, revision, status,
        containerOrchestrationType) are dropped: the operator owns revisions.
        """
        body = dict(request)
        name = body.pop("jobDefinitionName", None)
        for key in ("jobDefinitionArn", "revision", "status", "containerOrchestrationType"):
            body.pop(key, None)
        return name, cls.model_validate(body)


class JobDefinitionRevision(Loose):
    """One immutable revision, recorded by the operator (AWS: revision 1, 2, 3, ...)."""

    revision: int
    """Revision number, from 1."""
    specHash: str
    """Hash of the spec (without inactiveRevisions, with registrationId), used to detect a new
    registration."""
    state: Literal["ACTIVE", "INACTIVE"] = "ACTIVE"
    """ACTIVE, or INACTIVE once listed in spec.inactiveRevisions."""
    createdAt: Timestamp | None = None
    """When the operator recorded this revision (RFC 3339)."""
    spec: Annotated[JobDefinitionSpec, Field(json_schema_extra={"x-batchyard-opaque": True})] | None = None
    """A full copy of the spec of this revision."""


class JobDefinitionStatus(Loose):
    """Revisions and health of the job definition, written by the operator."""

    latestRevision: int | None = None
    """The highest revision number recorded."""
    revisions: list[JobDefinitionRevision] | None = None
    """Every revision, oldest first."""
    observedGeneration: int | None = None
    """The metadata.generation the status reflects."""
    conditions: Conditions | None = None
    """Standard conditions (Ready)."""


class JobDefinition(KubeObject):
    """An AWS Batch job definition: a pod or container template, parameters, retry strategy, timeout."""

    KIND: ClassVar[str] = "JobDefinition"
    PLURAL: ClassVar[str] = "jobdefinitions"
    SINGULAR: ClassVar[str] = "jobdefinition"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("jd",)
    NAMESPACED: ClassVar[bool] = True
    PRINTER_COLUMNS: ClassVar[tuple[tuple[str, str, str, str, int], ...]] = (
        ("Type", ".spec.type", "string", "container or multinode", 0),
        ("Revision", ".status.latestRevision", "integer", "Latest revision", 0),
        ("Age", ".metadata.creationTimestamp", "date", "Age", 0),
    )
    OBJECT_RULES: ClassVar[tuple[dict[str, Any], ...]] = (
        rule(
            "size(self.metadata.name) <= 128",
            "metadata.name (the jobDefinitionName) must be at most 128 characters",
        ),
    )

    spec: JobDefinitionSpec
    status: JobDefinitionStatus | None = None

    def revision(self, number: int) -> JobDefinitionRevision | None:
        """The recorded revision with that number, if any."""
        for rev in (self.status.revisions if self.status else None) or ():
            if rev.revision == number:
                return rev
        return None

    def latest_active(self) -> JobDefinitionRevision | None:
        """AWS: "If the revision is not specified, then the latest active revision is used." """
        best: JobDefinitionRevision | None = None
        for rev in (self.status.revisions if self.status else None) or ():
            if rev.state == "ACTIVE" and (best is None or rev.revision > best.revision):
                best = rev
        return best
