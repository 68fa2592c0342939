"""Pydantic models: the single source of truth for every Batchyard CRD and its validation.

Import the kinds from here: `from batchyard.api import BatchJob, JobDefinition, ...`.
"""

from batchyard.api.batchjob import (
    ArrayProperties,
    AttemptDetail,
    BatchJob,
    BatchJobSpec,
    BatchJobStatus,
    ChildRequest,
    JobDependency,
    JobStateCounts,
    StopRequest,
)
from batchyard.api.common import (
    JOB_STATES,
    Condition,
    ConsumableResourceProperties,
    EvaluateOnExit,
    JobStatus,
    JobTimeout,
    KubeObject,
    ObjectMeta,
    RetryStrategy,
)
from batchyard.api.computeenvironment import (
    ComputeEnvironment,
    ComputeEnvironmentSpec,
    ComputeEnvironmentStatus,
    ComputeResources,
    InstanceTypeInfo,
    Provider,
)
from batchyard.api.consumableresource import (
    ConsumableResource,
    ConsumableResourceSpec,
    ConsumableResourceStatus,
)
from batchyard.api.ecs import ContainerOverrides, ContainerProperties, EcsProperties, ResourceRequirement
from batchyard.api.eks import EksContainer, EksPodProperties, EksProperties, EksPropertiesOverride
from batchyard.api.jobdefinition import (
    JobDefinition,
    JobDefinitionRevision,
    JobDefinitionSpec,
    JobDefinitionStatus,
    NodeProperties,
    NodeRangeProperty,
)
from batchyard.api.jobqueue import (
    ComputeEnvironmentOrder,
    JobQueue,
    JobQueueSpec,
    JobQueueStatus,
    JobStateTimeLimitAction,
)
from batchyard.api.schedulingpolicy import (
    FairsharePolicy,
    SchedulingPolicy,
    SchedulingPolicySpec,
    ShareAttributes,
)

ALL_KINDS: tuple[type[KubeObject], ...] = (
    ComputeEnvironment,
    JobQueue,
    SchedulingPolicy,
    ConsumableResource,
    JobDefinition,
    BatchJob,
)

__all__ = [
    "ALL_KINDS",
    "JOB_STATES",
    "ArrayProperties",
    "AttemptDetail",
    "BatchJob",
    "BatchJobSpec",
    "BatchJobStatus",
    "ChildRequest",
    "ComputeEnvironment",
    "ComputeEnvironmentOrder",
    "ComputeEnvironmentSpec",
    "ComputeEnvironmentStatus",
    "ComputeResources",
    "Condition",
    "ConsumableResource",
    "ConsumableResourceProperties",
    "ConsumableResourceSpec",
    "ConsumableResourceStatus",
    "ContainerOverrides",
    "ContainerProperties",
    "EcsProperties",
    "EksContainer",
    "EksPodProperties",
    "EksProperties",
    "EksPropertiesOverride",
    "EvaluateOnExit",
    "FairsharePolicy",
    "InstanceTypeInfo",
    "JobDefinition",
    "JobDefinitionRevision",
    "JobDefinitionSpec",
    "JobDefinitionStatus",
    "JobDependency",
    "JobQueue",
    "JobQueueSpec",
    "JobQueueStatus",
    "JobStateCounts",
    "JobStateTimeLimitAction",
    "JobStatus",
    "JobTimeout",
    "KubeObject",
    "NodeProperties",
    "NodeRangeProperty",
    "ObjectMeta",
    "Provider",
    "ResourceRequirement",
    "RetryStrategy",
    "SchedulingPolicy",
    "SchedulingPolicySpec",
    "ShareAttributes",
    "StopRequest",
]
