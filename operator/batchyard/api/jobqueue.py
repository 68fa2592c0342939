"""JobQueue: the CreateJobQueue request as a cluster-scoped custom resource.

Why this module exists: a queue orders jobs (FIFO, or fair share with a SchedulingPolicy), picks
compute environments in order, and cancels jobs stuck at its head (jobStateTimeLimitActions).
Its status shows state, health and per-state job counts for `kubectl get jobqueues`.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from batchyard.api.batchjob import JobStateCounts
from batchyard.api.common import (
    K8S_NAME_PATTERN,
    CellState,
    Conditions,
    KubeObject,
    Loose,
    ResourceStatus,
    Spec,
    Tags,
    cel,
    rule,
)


class ComputeEnvironmentOrder(Spec):
    """One compute environment of the queue (AWS ComputeEnvironmentOrder)."""

    order: Annotated[int, Field(ge=0, le=1000)]
    """Preference: environments are tried in ascending order. Unique within the queue."""
    computeEnvironment: Annotated[str, Field(min_length=1, max_length=253, pattern=K8S_NAME_PATTERN)]
    """Name of a ComputeEnvironment."""


class JobStateTimeLimitAction(Spec):
    """Cancel the head job after it waited too long for a reason (AWS JobStateTimeLimitAction)."""

    reason: Annotated[str, Field(min_length=1, max_length=256)]
    """The blocked reason to act on, as it appears in the job's statusReason, e.g.
    CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY, MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE or
    MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT. Also logged as the cancel reason."""
    state: Literal["RUNNABLE"]
    """The only state supported: RUNNABLE."""
    maxTimeSeconds: Annotated[int, Field(ge=600, le=86400)]
    """Seconds at the head of the queue before acting, 600 (10 minutes) to 86,400 (24 hours). (The
    user guide's "4 hours = 144000" example is a typo for 14400.)"""
    action: Literal["CANCEL"]
    """The only action for Kubernetes queues: CANCEL (TERMINATE is SageMaker-only)."""


class JobQueueSpec(Spec):
    """CreateJobQueue (AWS). The name is metadata.name."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "self.computeEnvironmentOrder.all(a, "
                "self.computeEnvironmentOrder.exists_one(b, b.order == a.order))",
                "spec.computeEnvironmentOrder[].order values must be unique",
                field_path=".computeEnvironmentOrder",
            ),
            rule(
                "self.computeEnvironmentOrder.all(a, self.computeEnvironmentOrder.exists_one(b, "
                "b.computeEnvironment == a.computeEnvironment))",
                "spec.computeEnvironmentOrder[].computeEnvironment values must be unique",
                field_path=".computeEnvironmentOrder",
            ),
            rule(
                "has(self.schedulingPolicy) == has(oldSelf.schedulingPolicy)",
                "spec.schedulingPolicy can be replaced but not added to a FIFO queue or removed from a "
                "fair-share queue (AWS: the scheduling mode is fixed at creation)",
            ),
            rule(
                "!has(self.jobStateTimeLimitActions) || self.jobStateTimeLimitActions.all(a, "
                "self.jobStateTimeLimitActions.exists_one(b, b.reason == a.reason))",
                "spec.jobStateTimeLimitActions[].reason values must be unique",
                field_path=".jobStateTimeLimitActions",
            ),
        )
    )

    state: CellState = "ENABLED"
    """ENABLED: accepts new jobs. DISABLED: new jobs are rejected (fail), jobs already in the queue
    still run to completion."""
    priority: Annotated[int, Field(ge=0, le=1000)]
    """Queues with a higher priority are evaluated first among queues sharing compute environments,
    0 to 1000 (the only range the AWS documents state). Not preemptive: a lower-priority queue still
    dispatches when the higher one's head job can't fit."""
    computeEnvironmentOrder: Annotated[list[ComputeEnvironmentOrder], Field(min_length=1, max_length=3)]
    """1 to 3 compute environments (AWS quota; the EKS MNP section's "up to 5" is not followed), tried
    in ascending order; the first ENABLED and VALID one with room gets the job."""
    schedulingPolicy: Annotated[str, Field(min_length=1, max_length=253, pattern=K8S_NAME_PATTERN)] | None = (
        None
    )
    """Name of a SchedulingPolicy (AWS schedulingPolicyArn; Batchyard takes the object name, not an
    ARN). With a policy the queue is fair-share, without one FIFO; the mode is fixed at creation:
    the policy can be replaced but not added or removed."""
    jobStateTimeLimitActions: Annotated[list[JobStateTimeLimitAction], Field(max_length=10)] | None = None
    """Cancel the head job when it stayed RUNNABLE with a given reason too long (up to 10 entries, a
    Batchyard bound; one per reason)."""
    allowedNamespaces: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=63)]],
            Field(max_length=256, json_schema_extra={"x-kubernetes-list-type": "set"}),
        ]
        | None
    ) = None
    """Batchyard extension: namespaces whose BatchJobs may use this queue. Empty or unset: all."""
    tags: Tags | None = None
    """Up to 50 tags; keys 1-128 characters (not starting with aws:), values up to 256."""


class JobQueueStatus(Loose):
    """Health and job counts, written by the operator (AWS JobQueueDetail)."""

    status: ResourceStatus | None = None
    """CREATING, UPDATING, DELETING, DELETED, VALID or INVALID."""
    statusReason: str | None = None
    """Why ("JobQueue Healthy" when VALID)."""
    jobCounts: JobStateCounts | None = None
    """Jobs per state in this queue."""
    observedGeneration: int | None = None
    """The metadata.generation the status reflects."""
    conditions: Conditions | None = None
    """Standard conditions: Ready, and Blocked when the head job can't run (reason = the blocked reason)."""


class JobQueue(KubeObject):
    """An AWS Batch job queue: priority, compute environments in order, FIFO or fair share."""

    KIND: ClassVar[str] = "JobQueue"
    PLURAL: ClassVar[str] = "jobqueues"
    SINGULAR: ClassVar[str] = "jobqueue"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("jq",)
    NAMESPACED: ClassVar[bool] = False
    PRINTER_COLUMNS: ClassVar[tuple[tuple[str, str, str, str, int], ...]] = (
        ("State", ".spec.state", "string", "ENABLED or DISABLED", 0),
        ("Status", ".status.status", "string", "Health", 0),
        ("Priority", ".spec.priority", "integer", "Priority (higher first)", 0),
        ("Runnable", ".status.jobCounts.RUNNABLE", "integer", "RUNNABLE jobs", 0),
        ("Running", ".status.jobCounts.RUNNING", "integer", "RUNNING jobs", 0),
        ("Policy", ".spec.schedulingPolicy", "string", "Scheduling policy (fair share)", 1),
        ("Age", ".metadata.creationTimestamp", "date", "Age", 0),
    )
    OBJECT_RULES: ClassVar[tuple[dict[str, Any], ...]] = (
        rule(
            "size(self.metadata.name) <= 128",
            "metadata.name (the jobQueueName) must be at most 128 characters",
        ),
    )

    spec: JobQueueSpec
    status: JobQueueStatus | None = None

    def compute_environments_in_order(self) -> list[str]:
        """AWS: "Compute environments are tried in ascending order"."""
        return [
            o.computeEnvironment for o in sorted(self.spec.computeEnvironmentOrder, key=lambda o: o.order)
        ]
