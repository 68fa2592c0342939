"""BatchJob: the SubmitJob request as a namespaced custom resource, with DescribeJobs as its status.

Why this module exists: a BatchJob is what users create (`kubectl apply`) and watch
(`kubectl get batchjobs`). Its spec is the SubmitJob request, field for field, plus the requests
a user can make later (cancel, terminate, per-child cancel/terminate), because the operator never
writes a spec. Its status mirrors DescribeJobs' JobDetail, with RFC 3339 timestamps.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field

from batchyard.api.common import (
    JOB_STATES,
    K8S_NAME_PATTERN,
    Conditions,
    ConsumableResourceProperties,
    JobStatus,
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
from batchyard.api.ecs import ContainerOverrides, EcsPropertiesOverride
from batchyard.api.eks import EksPropertiesOverride

# AWS: jobName "can be up to 128 letters long. The first character must be alphanumeric, can contain
# uppercase and lowercase letters, numbers, hyphens (-), and underscores (_)."
JOB_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
# AWS: jobDefinition is "definition-name" or "definition-name:revision" (ARNs are not objects here).
JOB_DEFINITION_REF_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[1-9][0-9]{0,8})?$"
# AWS: shareIdentifier "is limited to 255 alphanumeric characters, and can be followed by an asterisk".
SHARE_IDENTIFIER_PATTERN = r"^[A-Za-z0-9]{1,255}\*?$"
# A BatchJob uid or name, optionally followed by ":<array index>" (AWS child job id "jobId:index").
JOB_ID_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9._]*[A-Za-z0-9])?(:[0-9]{1,4})?$"


class ArrayProperties(Spec):
    """Makes the job an array job (AWS ArrayProperties)."""

    size: Annotated[int, Field(ge=2, le=10000)]
    """Number of child jobs, 2 to 10,000. Children get AWS_BATCH_JOB_ARRAY_INDEX 0..size-1."""


class JobDependency(Spec):
    """A job this job waits for (AWS JobDependency)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "has(self.type) && self.type == 'SEQUENTIAL' ? !has(self.jobId) : has(self.jobId)",
                "spec.dependsOn: a SEQUENTIAL dependency must not name a jobId; N_TO_N and plain "
                "dependencies require a jobId",
            )
        )
    )

    jobId: Annotated[str, Field(min_length=1, max_length=260, pattern=JOB_ID_PATTERN)] | None = None
    """The job depended on: the uid (status.jobId) or the metadata.name of a BatchJob in the same
    namespace, optionally followed by `:<index>` to depend on one array child. Required unless
    type is SEQUENTIAL."""
    type: Literal["N_TO_N", "SEQUENTIAL"] | None = None
    """Array jobs only. N_TO_N (with jobId): child i waits for child i of that job. SEQUENTIAL
    (without jobId): child i waits for child i-1 of this job. Omit for a plain dependency."""


class NodePropertyOverride(Spec):
    """Overrides for one node range at submission (AWS NodePropertyOverride)."""

    targetNodes: Annotated[
        str, Field(min_length=1, max_length=9, pattern=r"^([0-9]{0,4}:[0-9]{0,4}|[0-9]{1,4})$")
    ]
    """The node range to override, e.g. "0:" or "1:3"."""
    containerOverrides: ContainerOverrides | None = None
    ecsPropertiesOverride: EcsPropertiesOverride | None = None
    eksPropertiesOverride: EksPropertiesOverride | None = None
    instanceTypes: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=1)] | None = None
    """Instance type for the range (one element)."""
    consumableResourcePropertiesOverride: ConsumableResourceProperties | None = None


class NodeOverrides(Spec):
    """Overrides for a multi-node parallel job (AWS NodeOverrides)."""

    numNodes: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Number of nodes. The job definition needs an open-ended node range ("n:") whose lower bound,
    and its mainNode, are below this number (AWS)."""
    nodePropertyOverrides: Annotated[list[NodePropertyOverride], Field(max_length=5)] | None = None
    """Per-range overrides."""


class StopRequest(Spec):
    """A user's request to stop the job, with the reason shown in status.statusReason."""

    reason: Annotated[str, Field(min_length=1, max_length=1024)]
    """Why (up to 1,024 characters); becomes status.statusReason."""


class ChildRequest(Spec):
    """A user's cancel/terminate request for one child of an array job."""

    index: Annotated[int, Field(ge=0, le=9999)]
    """The child's array index."""
    action: Literal["CANCEL", "TERMINATE"]
    """CANCEL (CancelJob: only before STARTING) or TERMINATE (TerminateJob: any state)."""
    reason: Annotated[str, Field(min_length=1, max_length=1024)]
    """Why; becomes the child's statusReason."""


# Fields fixed at submission: AWS has no API to change a submitted job.
_IMMUTABLE = (
    "jobName",
    "jobQueue",
    "jobDefinition",
    "arrayProperties",
    "dependsOn",
    "parameters",
    "containerOverrides",
    "ecsPropertiesOverride",
    "eksPropertiesOverride",
    "nodeOverrides",
    "retryStrategy",
    "timeout",
    "schedulingPriorityOverride",
    "shareIdentifier",
    "propagateTags",
    "tags",
    "consumableResourcePropertiesOverride",
)


def _admission_rules() -> tuple[tuple[str, ...], ...]:
    """The BatchJob's cross-field and immutability rules, for its ValidatingAdmissionPolicy.

    They read several fields of spec (or metadata.name), so as CRD rules they would sit at the
    spec or root node, where the API server evaluates them on every status write too: about 30 %
    of its CPU per status patch (bench/RESULTS.md). The policy matches the object, not its status
    subresource. Each message names the field.
    """
    cross_field = (
        (
            "!has(object.spec.dependsOn) || !object.spec.dependsOn.exists(d, has(d.type)) || "
            "has(object.spec.arrayProperties)",
            "spec.dependsOn entries of type N_TO_N or SEQUENTIAL require spec.arrayProperties (array jobs only)",
        ),
        (
            "!has(object.spec.childRequests) || (has(object.spec.arrayProperties) && "
            "object.spec.childRequests.all(c, c.index < object.spec.arrayProperties.size))",
            "spec.childRequests requires spec.arrayProperties and each index must be below "
            "spec.arrayProperties.size",
        ),
        (
            "!has(object.spec.arrayProperties) || !has(object.spec.nodeOverrides)",
            "spec.arrayProperties and spec.nodeOverrides are mutually exclusive (multi-node parallel "
            "jobs can't be array jobs)",
        ),
        (
            "has(object.spec.jobName) || size(object.metadata.name) <= 128",
            "metadata.name must be at most 128 characters when spec.jobName is not set (AWS job name limit)",
        ),
        # AWS rejects a SubmitJob whose dependsOn names an id that does not exist yet, which is
        # always the case for the job itself. (Its own uid or one of its own children, "name:3",
        # can only be caught later: the operator fails such a job with "Invalid dependsOn: job X
        # cannot depend on itself".)
        (
            "!has(object.spec.dependsOn) || "
            "!object.spec.dependsOn.exists(d, has(d.jobId) && d.jobId == object.metadata.name)",
            "spec.dependsOn: a job cannot depend on itself (a jobId names this job)",
        ),
    )
    return (*cross_field, _immutability_rule())


def immutable_message(field: str) -> str:
    return f"spec.{field} is immutable: it can't be set, changed or removed after submission"


def _immutability_rule() -> tuple[str, str, str]:
    """One rule for all of _IMMUTABLE: the API server pays a fixed cost per rule it evaluates
    (CEL's cost tracker, built per expression: a third of the policy's CPU per CREATE with one
    rule per field, bench/RESULTS.md), and a CREATE needs none of them (oldObject is null).
    Its messageExpression names the first field that changed."""
    unchanged = {
        f: f"(has(object.spec.{f}) == has(oldObject.spec.{f}) && "
        f"(!has(object.spec.{f}) || object.spec.{f} == oldObject.spec.{f}))"
        for f in _IMMUTABLE
    }
    expression = "oldObject == null || (" + " && ".join(unchanged.values()) + ")"
    message = "spec: only cancel, terminate and childRequests can change after submission"
    message_expression = "".join(f'!{c} ? "{immutable_message(f)}" : ' for f, c in unchanged.items())
    return expression, message, message_expression + f'"{message}"'


class BatchJobSpec(Spec):
    """SubmitJob (AWS), plus the user's later cancel/terminate requests.

    Everything except cancel, terminate and childRequests is immutable after creation.
    """

    jobName: Annotated[str, Field(min_length=1, max_length=128, pattern=JOB_NAME_PATTERN)] | None = None
    """The AWS job name: up to 128 letters, numbers, hyphens and underscores, starting with a letter
    or number. Optional: defaults to metadata.name. Names need not be unique; status.jobId is."""
    jobQueue: Annotated[str, Field(min_length=1, max_length=253, pattern=K8S_NAME_PATTERN)]
    """Name of the cluster-scoped JobQueue (an object name, not an ARN). The queue must be ENABLED and
    allow this namespace, or the job fails with a statusReason saying why."""
    jobDefinition: Annotated[
        str,
        Field(
            min_length=1,
            max_length=263,
            pattern=JOB_DEFINITION_REF_PATTERN,
        ),
    ]
    """A JobDefinition in the job's namespace: `name` (its latest ACTIVE revision at submission) or
    `name:revision`. The revision used is recorded in status.jobDefinitionRevision."""
    arrayProperties: ArrayProperties | None = None
    """Makes this an array job of 2 to 10,000 children."""
    dependsOn: Annotated[list[JobDependency], Field(max_length=20)] | None = None
    """Up to 20 dependencies. The job stays PENDING until they succeed, and fails if one fails."""
    parameters: Parameters | None = None
    """Values for `Ref::name` placeholders; they take precedence over the job definition's defaults."""
    containerOverrides: ContainerOverrides | None = None
    """Overrides for containerProperties job definitions."""
    ecsPropertiesOverride: EcsPropertiesOverride | None = None
    """Overrides for ecsProperties job definitions."""
    eksPropertiesOverride: EksPropertiesOverride | None = None
    """Overrides for eksProperties job definitions (containers by name, pod labels/annotations/namespace)."""
    nodeOverrides: NodeOverrides | None = None
    """Overrides for multi-node parallel job definitions."""
    retryStrategy: RetryStrategy | None = None
    """Replaces the job definition's retry strategy."""
    timeout: JobTimeout | None = None
    """Replaces the job definition's timeout."""
    schedulingPriorityOverride: Annotated[int, Field(ge=0, le=9999)] | None = None
    """Scheduling priority within the share identifier on fair-share queues, 0 to 9999 (higher first);
    overrides the job definition's schedulingPriority. (AWS console text says 0-100; Batchyard follows
    the API reference.)"""
    shareIdentifier: (
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=256,
                pattern=SHARE_IDENTIFIER_PATTERN,
            ),
        ]
        | None
    ) = None
    """Fair-share identifier: up to 255 letters and digits, optionally followed by `*`. Required on a
    queue with a scheduling policy and forbidden on a queue without one (AWS SubmitJob): such a job
    is FAILED at admission with a statusReason naming the rule. The user guide says a share
    identifier can't be given at submission; Batchyard follows the SubmitJob API reference."""
    propagateTags: bool | None = None
    """Copy job and job definition tags to the pods as annotations (job tags win). More than 50
    combined tags fail the job (AWS)."""
    tags: Tags | None = None
    """Up to 50 tags; keys 1-128 characters (not starting with aws:), values up to 256."""
    consumableResourcePropertiesOverride: (
        Annotated[
            ConsumableResourceProperties,
            Field(),
        ]
        | None
    ) = None
    """Overrides the quantity of consumable resources each instance of the job needs."""
    cancel: StopRequest | None = None
    """Set to request CancelJob: a SUBMITTED, PENDING or RUNNABLE job becomes FAILED with this reason.
    As in AWS, a SUBMITTED or PENDING job with outstanding dependencies stays PENDING and is cancelled
    once all its dependencies have completed; an array parent cancels its children. A STARTING or
    RUNNING job is not affected; use terminate. Example:
    `kubectl patch batchjob my-job --type merge -p '{"spec":{"cancel":{"reason":"not needed"}}}'`."""
    terminate: StopRequest | None = None
    """Set to request TerminateJob: the job becomes FAILED with this reason in any state; running pods
    are deleted and the job is not retried. Example:
    `kubectl patch batchjob my-job --type merge -p '{"spec":{"terminate":{"reason":"stop now"}}}'`."""
    childRequests: (
        Annotated[
            list[ChildRequest],
            Field(
                max_length=10000,
                json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["index"]},
            ),
        ]
        | None
    ) = None
    """Cancel or terminate individual children of an array job, one entry per index (a list map keyed
    by index, so `kubectl patch --type merge` or server-side apply can add entries)."""

    def effective_job_name(self, metadata_name: str) -> str:
        """AWS jobName, defaulting to the object name."""
        return self.jobName or metadata_name

    def job_definition_ref(self) -> tuple[str, int | None]:
        """(definition name, revision or None for the latest ACTIVE revision)."""
        name, _, rev = self.jobDefinition.partition(":")
        return name, int(rev) if rev else None


class JobStateCounts(Loose):
    """Number of jobs per state (AWS ArrayPropertiesDetail.statusSummary keys)."""

    SUBMITTED: int | None = None
    PENDING: int | None = None
    RUNNABLE: int | None = None
    STARTING: int | None = None
    RUNNING: int | None = None
    SUCCEEDED: int | None = None
    FAILED: int | None = None

    def get(self, state: JobStatus) -> int:
        """Count for one state (0 when unset)."""
        value: int | None = getattr(self, state)
        return value or 0

    @classmethod
    def of(cls, counts: dict[str, int]) -> JobStateCounts:
        """Build from a state -> count mapping."""
        return cls(**{s: counts.get(s, 0) for s in JOB_STATES})


class AttemptContainerDetail(Loose):
    """One container's end in an attempt (AWS EksAttemptContainerDetail)."""

    name: str | None = None
    """The container's name."""
    exitCode: int | None = None
    """Its exit code."""
    reason: str | None = None
    """Its terminated reason (e.g. OOMKilled, Error, Completed)."""


class AttemptDetail(Loose):
    """One attempt (AWS AttemptDetail/EksAttemptDetail, flattened to the pod's main container)."""

    attempt: int
    """Attempt number, from 1."""
    podName: str | None = None
    """The attempt's pod."""
    nodeName: str | None = None
    """The node the pod ran on."""
    computeEnvironment: str | None = None
    """The ComputeEnvironment the attempt was placed in."""
    exitCode: int | None = None
    """Exit code of the failing (or last) container."""
    reason: str | None = None
    """Container termination reason (e.g. OOMKilled, Error, Completed)."""
    statusReason: str | None = None
    """Why the attempt ended: "Essential container in task exited", "Host EC2 (node <node>)
    terminated." (node lost, eviction, preemption, shutdown), "Init container <name> exited", a
    CannotPullContainerError/CannotCreateContainerError, a timeout or a termination reason."""
    startedAt: Timestamp | None = None
    """When the attempt entered RUNNING: its container's start time (RFC 3339)."""
    stoppedAt: Timestamp | None = None
    """When the attempt ended: its containers' finish time (RFC 3339)."""
    containers: Annotated[list[AttemptContainerDetail], Field(max_length=64)] | None = None
    """Each container's exit, when the pod has more than one (AWS eksAttempts[].containers)."""
    terminationMessage: Annotated[str, Field(max_length=2048)] | None = None
    """A failed attempt's container termination message (Kubernetes
    ``state.terminated.message``; with ``terminationMessagePolicy: FallbackToLogsOnError`` the
    last lines of its log), at most the last 2,048 characters."""
    logStreamName: str | None = None
    """Where the attempt's log lives, as AWS's ``container.logStreamName``: ``pod/<podName>``,
    readable with ``kubectl logs`` or ``batchyard logs`` while the pod exists."""
    logRetained: bool | None = None
    """Set when the attempt ends: true when its pod (and log) is kept until the job expires
    (the operator's keepPods setting: all, failed, none), false when it was deleted."""


class ChildExitDetail(Loose):
    """The last finished attempt of one array child."""

    exitCode: int | None = None
    """The container exit code."""
    reason: str | None = None
    """The container's terminated reason (or the attempt's statusReason), cut to 128 characters."""
    statusReason: str | None = None
    """The child's last statusReason, cut to 128 characters."""


class ArrayChildrenDetail(Loose):
    """Every child's state, kept compactly in the parent: children are not objects of their own.

    Index sets use the Kubernetes Indexed Job notation ("0-6,8-49"). `batchyard describe
    <job>:<index>` reads one child from here (and from its pod while it exists).
    """

    states: dict[str, str] | None = None
    """Child indexes per state, e.g. {"SUCCEEDED": "0-6,8-49", "FAILED": "7"}."""
    attempts: dict[str, str] | None = None
    """Child indexes per current attempt number, for attempts 2 and up (attempt 1 is implied)."""
    lastExits: dict[str, ChildExitDetail] | None = None
    """Last exit per child index, for at most 500 children (first come, first kept)."""
    lastExitsOmitted: int | None = None
    """Exits not kept because lastExits was full."""
    times: dict[str, str] | None = None
    """startedAt-stoppedAt per child index, in epoch milliseconds ("1764560000123-1764560004567";
    stoppedAt empty while it runs), for at most 500 children (first come, first kept). A child's
    createdAt is the parent's (AWS: when the parent spawned it)."""
    timesOmitted: int | None = None
    """Children whose times were not kept because times was full."""


class ArrayPropertiesDetail(Loose):
    """Array job progress (AWS ArrayPropertiesDetail)."""

    size: int | None = None
    """Number of children (parent only)."""
    index: int | None = None
    """This child's index (children only, if children are ever materialized as objects)."""
    statusSummary: JobStateCounts | None = None
    """Children per state (parent only)."""
    children: ArrayChildrenDetail | None = None
    """Each child's state, attempt and last exit, compactly (parent only)."""
    progress: str | None = None
    """statusSummary as one line for the Progress column, e.g. "SUCCEEDED 91/10000, FAILED 438"
    (parent only; other states appear when they have children)."""


class NodeDetail(Loose):
    """One node of a multi-node parallel job's current attempt (AWS NodeDetails, plus where its
    pod runs). AWS addresses node N as ``<jobId>#N``."""

    nodeIndex: int
    """The node's index (0 .. numNodes-1)."""
    isMainNode: bool | None = None
    """True for the main node, whose exit decides the job's outcome."""
    status: JobStatus | None = None
    """The node's state: RUNNABLE/PENDING before its pod exists, then STARTING, RUNNING, SUCCEEDED
    or FAILED."""
    podName: str | None = None
    """The node's pod in the current attempt."""
    nodeName: str | None = None
    """The Kubernetes node the pod runs on."""
    privateIpv4Address: str | None = None
    """The pod's address (the node's under hostNetwork)."""
    exitCode: int | None = None
    """The node's exit code, once it ended."""
    reason: str | None = None
    """Why the node's container ended."""


class NodePropertiesDetail(Loose):
    """A multi-node parallel job's nodes (AWS JobDetail nodeProperties, with each node's state)."""

    numNodes: int | None = None
    """Number of nodes (after nodeOverrides)."""
    mainNode: int | None = None
    """Index of the main node."""
    nodes: list[NodeDetail] | None = None
    """Every node of the current attempt, in index order."""


class BatchJobStatus(Loose):
    """DescribeJobs' JobDetail for this job, written by the operator.

    Timestamps are RFC 3339 strings (Kubernetes convention), not AWS epoch milliseconds.
    """

    status: JobStatus | None = None
    """SUBMITTED, PENDING, RUNNABLE, STARTING, RUNNING, SUCCEEDED or FAILED."""
    statusReason: str | None = None
    """Why the job is in its state (e.g. why it waits in RUNNABLE, or why it failed)."""
    jobId: str | None = None
    """The job's id (the object's uid)."""
    jobDefinitionRevision: int | None = None
    """The job definition revision pinned at submission."""
    computeEnvironment: str | None = None
    """The ComputeEnvironment of the current or last attempt."""
    createdAt: Timestamp | None = None
    """When the job was submitted (RFC 3339, milliseconds: the operator's clock at first sight when
    within the creationTimestamp's second, recorded once)."""
    startedAt: Timestamp | None = None
    """When the job entered RUNNING: its first attempt's container start (RFC 3339)."""
    stoppedAt: Timestamp | None = None
    """When the job reached SUCCEEDED or FAILED: the last attempt's container finish time, or when
    the operator stopped or failed it (RFC 3339)."""
    attempts: list[AttemptDetail] | None = None
    """Completed and current attempts, in order."""
    schedulingPriority: int | None = None
    """The effective scheduling priority (schedulingPriorityOverride, else the definition's)."""
    retryStrategy: RetryStrategy | None = None
    """The effective retry strategy (the job's, else the definition's), recorded at admission."""
    timeout: JobTimeout | None = None
    """The effective timeout (the job's, else the definition's), recorded at admission."""
    parameters: Parameters | None = None
    """The effective parameters (the definition's defaults, replaced by name by the job's)."""
    isCancelled: bool | None = None
    """The job was cancelled (spec.cancel or a queue's jobStateTimeLimitAction)."""
    isTerminated: bool | None = None
    """The job was terminated (spec.terminate)."""
    arrayProperties: ArrayPropertiesDetail | None = None
    """Array job size and per-state child counts."""
    nodeProperties: NodePropertiesDetail | None = None
    """Multi-node parallel jobs: node count, main node and each node's state."""
    queuePosition: int | None = None
    """Position among the queue's RUNNABLE jobs (0 = head), while RUNNABLE."""
    estimatedStartAt: Timestamp | None = None
    """An estimate, not a promise: when this RUNNABLE job may start if the jobs ahead of it run
    as long as expected (core.estimate; as AWS GetJobQueueSnapshot's earliestTimeAtPosition).
    Kept with queuePosition, absent when it can't be told."""
    estimatedStartBasis: str | None = None
    """What estimatedStartAt rests on: "capacity is free", "recent run times" (of the same job
    definition), "attempt timeouts", or both."""
    observedGeneration: int | None = None
    """The metadata.generation the status reflects."""
    conditions: Conditions | None = None
    """Standard conditions."""


class BatchJob(KubeObject):
    """An AWS Batch job: a single, array or multi-node parallel job submitted to a JobQueue."""

    KIND: ClassVar[str] = "BatchJob"
    PLURAL: ClassVar[str] = "batchjobs"
    SINGULAR: ClassVar[str] = "batchjob"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("bj",)
    NAMESPACED: ClassVar[bool] = True
    PRINTER_COLUMNS: ClassVar[tuple[tuple[str, str, str, str, int], ...]] = (
        ("Status", ".status.status", "string", "Job state", 0),
        ("Queue", ".spec.jobQueue", "string", "Job queue", 0),
        ("Attempts", ".status.attempts[-1:].attempt", "integer", "Current attempt number", 0),
        ("Progress", ".status.arrayProperties.progress", "string", "Array children per state", 0),
        ("Reason", ".status.statusReason", "string", "Status reason", 0),
        ("Age", ".metadata.creationTimestamp", "date", "Age", 0),
    )
    # ListJobs without a client-side filter: AWS lists by queue and status and filters by
    # JOB_NAME, JOB_DEFINITION and SHARE_IDENTIFIER; the API server does the same with
    # `kubectl get bj --field-selector status.status=FAILED,spec.jobQueue=gpu`.
    SELECTABLE_FIELDS: ClassVar[tuple[str, ...]] = (
        ".status.status",
        ".spec.jobQueue",
        ".spec.jobDefinition",
        ".spec.shareIdentifier",
        ".spec.jobName",
    )
    ADMISSION_RULES: ClassVar[tuple[tuple[str, ...], ...]] = _admission_rules()

    spec: BatchJobSpec
    status: BatchJobStatus | None = None

    @property
    def job_name(self) -> str:
        """spec.jobName, defaulting to metadata.name."""
        return self.spec.jobName or self.metadata.name or ""
