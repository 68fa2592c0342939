"""ComputeEnvironment: the CreateComputeEnvironment request (EKS flavour) as a cluster-scoped custom resource.

Why this module exists: a compute environment is a pool of nodes the scheduler places jobs on and
scales between minvCpus and maxvCpus. On Kubernetes the nodes come from a node-pool provider
(kwok for local runs, Karpenter, Cluster API, or an unmanaged set of existing nodes), selected by
labels and taints the operator manages.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from batchyard.api.common import (
    DNS_LABEL_PATTERN,
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

AllocationStrategy = Literal[
    "BEST_FIT", "BEST_FIT_PROGRESSIVE", "SPOT_CAPACITY_OPTIMIZED", "SPOT_PRICE_CAPACITY_OPTIMIZED"
]


class Ec2Configuration(Spec):
    """Node image settings (AWS Ec2Configuration); passed to providers that build nodes from images."""

    imageType: Annotated[str, Field(min_length=1, max_length=256)]
    """Image family, e.g. EKS_AL2023 or EKS_AL2023_NVIDIA."""
    imageIdOverride: Annotated[str, Field(max_length=256)] | None = None
    """A specific image id."""
    imageKubernetesVersion: Annotated[str, Field(max_length=32)] | None = None
    """Kubernetes version of the node image."""


class ComputeScalingPolicy(Spec):
    """Scale-in behaviour (AWS ComputeScalingPolicy)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "!has(self.minScaleDownDelayMinutes) || self.minScaleDownDelayMinutes == 0 || "
                "(self.minScaleDownDelayMinutes >= 20 && self.minScaleDownDelayMinutes <= 10080)",
                "spec.computeResources.scalingPolicy.minScaleDownDelayMinutes must be 0 (unset) "
                "or between 20 "
                "and 10080",
                field_path=".minScaleDownDelayMinutes",
            ),
        )
    )

    minScaleDownDelayMinutes: Annotated[int, Field(ge=0, le=10080)] | None = None
    """Minutes an idle node is kept after its last job, 20 to 10,080; 0 unsets it."""


class ComputeResources(Spec):
    """Capacity of a MANAGED compute environment (AWS ComputeResource, EKS subset)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "!has(self.minvCpus) || self.minvCpus <= self.maxvCpus",
                "spec.computeResources.minvCpus must be less than or equal to spec.computeResources.maxvCpus",
                field_path=".minvCpus",
            ),
            rule(
                "!has(self.desiredvCpus) || ((!has(self.minvCpus) || self.minvCpus <= self.desiredvCpus) && "
                "self.desiredvCpus <= self.maxvCpus)",
                "spec.computeResources.desiredvCpus must be between spec.computeResources.minvCpus and "
                "spec.computeResources.maxvCpus",
                field_path=".desiredvCpus",
            ),
            rule(
                "!has(self.allocationStrategy) || !self.allocationStrategy.startsWith('SPOT_') || "
                "self.type == 'SPOT'",
                "spec.computeResources.allocationStrategy SPOT_CAPACITY_OPTIMIZED and "
                "SPOT_PRICE_CAPACITY_OPTIMIZED require spec.computeResources.type SPOT",
                field_path=".allocationStrategy",
            ),
            rule(
                "!has(self.bidPercentage) || self.type == 'SPOT'",
                "spec.computeResources.bidPercentage requires spec.computeResources.type SPOT",
                field_path=".bidPercentage",
            ),
        )
    )

    type: Literal["EC2", "SPOT"] = "EC2"
    """EC2 (on-demand nodes) or SPOT (spot/preemptible nodes, where the provider supports them)."""
    allocationStrategy: AllocationStrategy | None = None
    """How node types are picked (default BEST_FIT): BEST_FIT, BEST_FIT_PROGRESSIVE, or for SPOT
    SPOT_CAPACITY_OPTIMIZED / SPOT_PRICE_CAPACITY_OPTIMIZED. A hint to the node-pool provider."""
    minvCpus: Annotated[int, Field(ge=0)] | None = None
    """vCPUs kept even without jobs (default 0), at most maxvCpus."""
    maxvCpus: Annotated[int, Field(ge=0)]
    """vCPUs the environment may scale out to (it may exceed this by at most one node)."""
    desiredvCpus: (
        Annotated[
            int,
            Field(
                ge=0,
                json_schema_extra=cel(
                    rule(
                        "self >= oldSelf",
                        "spec.computeResources.desiredvCpus can't be lowered (AWS: the updated value must be "
                        "greater than or equal to the current one; scale-in is automatic)",
                    )
                ),
            ),
        ]
        | None
    ) = None
    """Initial vCPUs, between minvCpus and maxvCpus; can only be raised. The operator then adjusts
    status.desiredvCpus to demand."""
    instanceTypes: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]],
            Field(max_length=64),
        ]
        | None
    ) = None
    """Instance types or families (e.g. m5, c5.2xlarge, optimal). The provider's catalogue (plus
    instanceCatalog) gives their vCPUs, memory and GPUs. GPU jobs need GPU types."""
    ec2Configuration: Annotated[list[Ec2Configuration], Field(max_length=2)] | None = None
    """One or two node image settings (AWS)."""
    bidPercentage: Annotated[int, Field(ge=0, le=100)] | None = None
    """SPOT only: maximum percentage of the on-demand price (default 100)."""
    scalingPolicy: ComputeScalingPolicy | None = None
    """Scale-in delay."""
    tags: Tags | None = None
    """Tags for the nodes (providers that support it)."""


class EksConfiguration(Spec):
    """Where job pods run (AWS EksConfiguration, without eksClusterArn: the cluster is this one)."""

    kubernetesNamespace: (
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=63,
                pattern=DNS_LABEL_PATTERN,
                json_schema_extra=cel(
                    rule(
                        "self != 'default' && !self.startsWith('kube-')",
                        "spec.eksConfiguration.kubernetesNamespace must not be 'default' "
                        "and must not start with "
                        "'kube-'",
                    ),
                    # Refused, not ignored: pods run in their BatchJob's namespace (an owner
                    # reference can't cross namespaces; without it a deleted job leaks pods).
                    rule(
                        "false",
                        "spec.eksConfiguration.kubernetesNamespace is not supported: each job's pods run "
                        "in its BatchJob's namespace (JobQueue allowedNamespaces chooses which "
                        "namespaces may submit); remove it",
                    ),
                ),
            ),
        ]
        | None
    ) = None
    """Not supported, refused (AWS requires it on EKS): each job's pods run in its BatchJob's own
    namespace, and JobQueue `allowedNamespaces` chooses which namespaces may submit."""


class ObjectRef(Spec):
    """A reference to another Kubernetes object."""

    apiVersion: Annotated[str, Field(max_length=253)] | None = None
    group: Annotated[str, Field(max_length=253)] | None = None
    kind: Annotated[str, Field(min_length=1, max_length=63)]
    name: Annotated[str, Field(min_length=1, max_length=253)]
    namespace: Annotated[str, Field(max_length=63)] | None = None


ProviderOptions = Annotated[dict[str, Annotated[str, Field(max_length=4096)]], Field(max_length=64)]


class KwokProvider(Spec):
    """Fake nodes managed by kwok (local runs, tests, demos)."""

    nodeNamePrefix: Annotated[str, Field(max_length=40, pattern=DNS_LABEL_PATTERN)] | None = None
    """Prefix of the fake node names (default: the compute environment's name)."""
    options: ProviderOptions | None = None
    """Provider-specific settings."""


class KarpenterProvider(Spec):
    """Nodes from a Karpenter NodePool that the operator writes for this environment."""

    nodeClassRef: ObjectRef
    """The NodeClass (e.g. EC2NodeClass) for the NodePool."""
    options: ProviderOptions | None = None
    """Provider-specific settings."""


class ClusterApiProvider(Spec):
    """Nodes from a Cluster API MachineDeployment that the operator scales."""

    clusterName: Annotated[str, Field(min_length=1, max_length=253)]
    """The Cluster API cluster."""
    namespace: Annotated[str, Field(min_length=1, max_length=63)]
    """Namespace of the Cluster API objects."""
    infrastructureRef: ObjectRef
    """The infrastructure machine template."""
    bootstrapConfigRef: ObjectRef | None = None
    """The bootstrap config template."""
    version: Annotated[str, Field(max_length=32)] | None = None
    """Kubernetes version of the machines."""
    options: ProviderOptions | None = None
    """Provider-specific settings."""


class UnmanagedProvider(Spec):
    """Existing nodes, selected by nodeLabels; the operator only schedules onto them."""

    options: ProviderOptions | None = None
    """Provider-specific settings."""


class Provider(Spec):
    """The node-pool provider and its settings (a Batchyard extension: what AWS does with EC2)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "(has(self.kwok) ? 1 : 0) + (has(self.karpenter) ? 1 : 0) + (has(self.clusterapi) ? 1 : 0) + "
                "(has(self.unmanaged) ? 1 : 0) <= 1 && "
                "(!has(self.kwok) || self.type == 'kwok') && "
                "(!has(self.karpenter) || self.type == 'karpenter') && "
                "(!has(self.clusterapi) || self.type == 'clusterapi') && "
                "(!has(self.unmanaged) || self.type == 'unmanaged')",
                "spec.provider may only carry the settings object named by spec.provider.type",
            ),
            rule(
                "self.type != 'karpenter' || has(self.karpenter)",
                "spec.provider.karpenter is required when spec.provider.type is karpenter",
            ),
            rule(
                "self.type != 'clusterapi' || has(self.clusterapi)",
                "spec.provider.clusterapi is required when spec.provider.type is clusterapi",
            ),
        )
    )

    type: Literal["kwok", "karpenter", "clusterapi", "unmanaged"]
    """kwok, karpenter, clusterapi or unmanaged."""
    kwok: KwokProvider | None = None
    karpenter: KarpenterProvider | None = None
    clusterapi: ClusterApiProvider | None = None
    unmanaged: UnmanagedProvider | None = None


class NodeTaint(Spec):
    """A taint on the environment's nodes; job pods get the matching toleration."""

    key: Annotated[str, Field(min_length=1, max_length=316)]
    value: Annotated[str, Field(max_length=63)] | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class InstanceTypeInfo(Spec):
    """An instance type the built-in catalogue doesn't know (or overrides)."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
    """Instance type name, e.g. gpu.large."""
    vcpus: Annotated[float, Field(gt=0, le=4096)]
    """vCPUs of one node."""
    memoryMiB: Annotated[int, Field(ge=4)]
    """Memory of one node in MiB."""
    gpus: Annotated[int, Field(ge=0, le=64)] | None = None
    """NVIDIA GPUs of one node (default 0)."""


class UpdatePolicy(Spec):
    """What happens to running jobs on an infrastructure update (AWS UpdatePolicy)."""

    terminateJobsOnUpdate: bool | None = None
    """Terminate running jobs when nodes are replaced (default false)."""
    jobExecutionTimeoutMinutes: Annotated[int, Field(ge=1, le=360)] | None = None
    """Minutes old nodes stay for running jobs, 1 to 360 (default 30)."""


class ComputeEnvironmentSpec(Spec):
    """CreateComputeEnvironment (AWS, EKS flavour). The name is metadata.name."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "self.type != 'MANAGED' || (has(self.computeResources) && has(self.provider) && "
                "self.provider.type != 'unmanaged')",
                "spec.computeResources and a managed spec.provider (kwok, karpenter or clusterapi) "
                "are required "
                "when spec.type is MANAGED",
            ),
            rule(
                "self.type != 'UNMANAGED' || (!has(self.computeResources) && "
                "(!has(self.provider) || self.provider.type == 'unmanaged'))",
                "spec.computeResources must not be set and spec.provider.type must be unmanaged "
                "when spec.type "
                "is UNMANAGED",
            ),
            rule(
                "!has(self.unmanagedvCpus) || self.type == 'UNMANAGED'",
                "spec.unmanagedvCpus is only allowed when spec.type is UNMANAGED",
            ),
            rule(
                "self.type == oldSelf.type",
                "spec.type is immutable",
            ),
            rule(
                "!has(self.instanceCatalog) || "
                "self.instanceCatalog.all(a, self.instanceCatalog.exists_one(b, "
                "b.name == a.name))",
                "spec.instanceCatalog[].name values must be unique",
            ),
        )
    )

    type: Literal["MANAGED", "UNMANAGED"] = "MANAGED"
    """MANAGED: the operator scales nodes through spec.provider. UNMANAGED: you provide the nodes
    (selected by nodeLabels); the operator only schedules. Immutable."""
    state: CellState = "ENABLED"
    """ENABLED: jobs are placed here and a managed environment scales. DISABLED: no new placements and
    no scale-out; STARTING and RUNNING jobs continue; idle nodes scale in to minvCpus."""
    computeResources: ComputeResources | None = None
    """Capacity (MANAGED only)."""
    eksConfiguration: EksConfiguration | None = None
    """AWS EksConfiguration; its kubernetesNamespace is refused (pods run in the job's namespace)."""
    unmanagedvCpus: Annotated[int, Field(ge=0)] | None = None
    """UNMANAGED only: vCPUs counted for fair-share compute reservation."""
    provider: Provider | None = None
    """Where nodes come from (required for MANAGED)."""
    nodeLabels: Annotated[dict[str, Annotated[str, Field(max_length=63)]], Field(max_length=32)] | None = None
    """Extra labels the environment's nodes carry (for UNMANAGED: the labels that select its nodes)."""
    nodeTaints: Annotated[list[NodeTaint], Field(max_length=16)] | None = None
    """Extra taints on the environment's nodes; job pods tolerate them."""
    instanceCatalog: Annotated[list[InstanceTypeInfo], Field(max_length=64)] | None = None
    """Extra instance types (name, vcpus, memoryMiB, gpus) for sizing nodes."""
    updatePolicy: UpdatePolicy | None = None
    """Running jobs during infrastructure updates."""
    tags: Tags | None = None
    """Up to 50 tags; keys 1-128 characters (not starting with aws:), values up to 256."""


class ComputeEnvironmentStatus(Loose):
    """Health and capacity, written by the operator (AWS ComputeEnvironmentDetail)."""

    status: ResourceStatus | None = None
    """CREATING, UPDATING, DELETING, DELETED, VALID or INVALID."""
    statusReason: str | None = None
    """Why (e.g. the INVALID reason)."""
    desiredvCpus: int | None = None
    """vCPUs the environment is currently scaled to."""
    vcpusInUse: float | None = None
    """vCPUs requested by STARTING and RUNNING job pods."""
    nodes: int | None = None
    """Number of nodes in the environment."""
    observedGeneration: int | None = None
    """The metadata.generation the status reflects."""
    conditions: Conditions | None = None
    """Standard conditions (Ready)."""


class ComputeEnvironment(KubeObject):
    """An AWS Batch compute environment: a pool of nodes with min/max/desired vCPUs."""

    KIND: ClassVar[str] = "ComputeEnvironment"
    PLURAL: ClassVar[str] = "computeenvironments"
    SINGULAR: ClassVar[str] = "computeenvironment"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("ce",)
    NAMESPACED: ClassVar[bool] = False
    PRINTER_COLUMNS: ClassVar[tuple[tuple[str, str, str, str, int], ...]] = (
        ("State", ".spec.state", "string", "ENABLED or DISABLED", 0),
        ("Status", ".status.status", "string", "Health", 0),
        ("Desired", ".status.desiredvCpus", "integer", "Desired vCPUs", 0),
        ("In-Use", ".status.vcpusInUse", "number", "vCPUs in use", 0),
        ("Max", ".spec.computeResources.maxvCpus", "integer", "Maximum vCPUs", 1),
        ("Provider", ".spec.provider.type", "string", "Node-pool provider", 1),
        ("Age", ".metadata.creationTimestamp", "date", "Age", 0),
    )
    OBJECT_RULES: ClassVar[tuple[dict[str, Any], ...]] = (
        rule(
            "size(self.metadata.name) <= 128",
            "metadata.name (the computeEnvironmentName) must be at most 128 characters",
        ),
    )

    spec: ComputeEnvironmentSpec
    status: ComputeEnvironmentStatus | None = None
