"""The ECS-style container shapes of AWS Batch: `containerProperties`, `ecsProperties` and their overrides.

Why this module exists: most published AWS Batch job definitions (and the user guide's examples)
use `containerProperties`, so a user must be able to paste them. Batchyard runs every job as a
pod; the renderer maps these fields onto a pod (image, command, environment, resources, user,
privileged, readonlyRootFilesystem, host volumes, linuxParameters where a pod has an equivalent).
Fields that only make sense on ECS/Fargate (jobRoleArn, logConfiguration, fargate settings, ...)
are accepted so that pasted JSON validates, and are documented as ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from batchyard.api.common import Environment, Spec, cel, rule

# AWS: "The vCPU value must be entered in whole numbers or in increments of 0.25. The smallest
# valid vCPU value is 0.25." and "vCPU values can't be specified in milliCPU form".
VCPU_PATTERN = r"^([1-9][0-9]{0,4}(\.(0|00|25|5|50|75))?|0\.(25|5|50|75))$"
# AWS: MEMORY "You must specify at least 4 MiB of memory for a job." (value in MiB, an integer)
MEMORY_MIB_PATTERN = r"^([4-9]|[1-9][0-9]{1,8})$"
# AWS: GPU "The number of physical GPUs to reserve"; "You can't use fractions of GPU."
GPU_PATTERN = r"^[1-9][0-9]{0,3}$"


class ResourceRequirement(Spec):
    """One resource of a container (AWS ResourceRequirement): VCPU, MEMORY (MiB) or GPU."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                f"self.type != 'VCPU' || self.value.matches(r'{VCPU_PATTERN}')",
                "resourceRequirements VCPU value must be at least 0.25 and a whole number or a multiple "
                "of 0.25 (e.g. 0.25, 1, 1.5); millicores are not allowed",
            ),
            rule(
                f"self.type != 'MEMORY' || self.value.matches(r'{MEMORY_MIB_PATTERN}')",
                "resourceRequirements MEMORY value must be a whole number of MiB, at least 4",
            ),
            rule(
                f"self.type != 'GPU' || self.value.matches(r'{GPU_PATTERN}')",
                "resourceRequirements GPU value must be a whole number of GPUs, at least 1",
            ),
        )
    )

    type: Literal["GPU", "MEMORY", "VCPU"]
    """VCPU (whole or multiple of 0.25, at least 0.25), MEMORY (MiB, at least 4) or GPU (whole number)."""
    value: Annotated[str, Field(min_length=1, max_length=32)]
    """The quantity, as a string (AWS shape): e.g. "2", "0.5", "2048"."""


ResourceRequirements = Annotated[
    list[ResourceRequirement],
    Field(
        max_length=3,
        json_schema_extra=cel(
            rule(
                "self.all(a, self.exists_one(b, b.type == a.type))",
                "resourceRequirements must list each type (VCPU, MEMORY, GPU) at most once",
            )
        ),
    ),
]


class Host(Spec):
    """A host path volume source (AWS Host)."""

    sourcePath: Annotated[str, Field(max_length=4096)] | None = None
    """Path on the node; becomes a hostPath volume."""


class AuthorizationConfig(Spec):
    """EFS authorization (AWS EFSAuthorizationConfig). Accepted for compatibility; not used on Kubernetes."""

    accessPointId: str | None = None
    iam: Literal["ENABLED", "DISABLED"] | None = None


class EfsVolumeConfiguration(Spec):
    """An EFS volume (AWS EFSVolumeConfiguration). Accepted for compatibility; jobs using it fail with a
    statusReason unless the cluster provides an equivalent (use eksProperties with a PVC instead)."""

    fileSystemId: str
    rootDirectory: str | None = None
    transitEncryption: Literal["ENABLED", "DISABLED"] | None = None
    transitEncryptionPort: Annotated[int, Field(ge=0, le=65535)] | None = None
    authorizationConfig: AuthorizationConfig | None = None


class Volume(Spec):
    """A task volume (AWS Volume)."""

    name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    """Volume name, referenced by mountPoints[].sourceVolume."""
    host: Host | None = None
    """Host path source; without it (and without EFS) the volume is an empty directory."""
    efsVolumeConfiguration: EfsVolumeConfiguration | None = None
    """EFS source (ECS only)."""


class MountPoint(Spec):
    """A volume mount (AWS MountPoint)."""

    containerPath: Annotated[str, Field(max_length=4096)] | None = None
    """Where the volume is mounted in the container."""
    readOnly: bool | None = None
    """Mount read-only (default false)."""
    sourceVolume: Annotated[str, Field(max_length=255)] | None = None
    """Name of a volume in volumes[]."""


class Ulimit(Spec):
    """A ulimit (AWS Ulimit). Kubernetes pods have no per-container ulimits; accepted and ignored."""

    hardLimit: int
    name: str
    softLimit: int


class Device(Spec):
    """A host device (AWS Device); rendered as a hostPath volume of type CharDevice (needs privileged)."""

    hostPath: Annotated[str, Field(max_length=4096)]
    containerPath: Annotated[str, Field(max_length=4096)] | None = None
    permissions: Annotated[list[Literal["READ", "WRITE", "MKNOD"]], Field(max_length=3)] | None = None


class Tmpfs(Spec):
    """A tmpfs mount (AWS Tmpfs); rendered as an emptyDir with medium Memory."""

    containerPath: Annotated[str, Field(max_length=4096)]
    size: Annotated[int, Field(ge=1)]
    """Size in MiB."""
    mountOptions: Annotated[list[str], Field(max_length=32)] | None = None


class LinuxParameters(Spec):
    """Linux-specific settings (AWS LinuxParameters)."""

    devices: Annotated[list[Device], Field(max_length=64)] | None = None
    """Host devices exposed to the container."""
    initProcessEnabled: bool | None = None
    """Run an init process (ECS only; a pod can use shareProcessNamespace instead). Ignored."""
    sharedMemorySize: Annotated[int, Field(ge=0)] | None = None
    """Size of /dev/shm in MiB; rendered as a memory-backed emptyDir at /dev/shm."""
    tmpfs: Annotated[list[Tmpfs], Field(max_length=32)] | None = None
    """tmpfs mounts."""
    maxSwap: Annotated[int, Field(ge=0)] | None = None
    """ECS only; ignored."""
    swappiness: Annotated[int, Field(ge=0, le=100)] | None = None
    """ECS only; ignored."""


class Secret(Spec):
    """An environment variable from a secret (AWS Secret). On Kubernetes `valueFrom` is
    `<secret-name>:<key>`: a key of a Secret in the job's namespace (a secretKeyRef). A Secrets
    Manager or SSM ARN has no meaning here and fails the job with a reason naming the variable."""

    name: str
    """The environment variable's name."""
    valueFrom: str
    """`<secret-name>:<key>` of a Kubernetes Secret in the job's namespace."""


class LogConfiguration(Spec):
    """Log driver settings (AWS LogConfiguration). ECS only; ignored (pod logs go to the node)."""

    logDriver: str
    options: dict[str, str] | None = None
    secretOptions: list[Secret] | None = None


class NetworkConfiguration(Spec):
    """Fargate network settings (AWS NetworkConfiguration). Ignored."""

    assignPublicIp: Literal["ENABLED", "DISABLED"] | None = None


class FargatePlatformConfiguration(Spec):
    """Fargate platform version (AWS FargatePlatformConfiguration). Ignored."""

    platformVersion: str | None = None


class EphemeralStorage(Spec):
    """Ephemeral storage size (AWS EphemeralStorage); rendered as an ephemeral-storage request."""

    sizeInGiB: Annotated[int, Field(ge=21, le=200)]
    """GiB of ephemeral storage, 21 to 200 (AWS Fargate range)."""


class RuntimePlatform(Spec):
    """OS and CPU architecture (AWS RuntimePlatform); rendered as a kubernetes.io/arch node selector."""

    operatingSystemFamily: str | None = None
    cpuArchitecture: Literal["X86_64", "ARM64"] | None = None


class RepositoryCredentials(Spec):
    """Private registry credentials (AWS RepositoryCredentials). Ignored; use imagePullSecrets on EKS."""

    credentialsParameter: str


class ContainerProperties(Spec):
    """A single-container job (AWS ContainerProperties), run as a pod with one container named `default`.

    Either resourceRequirements (preferred) or the deprecated vcpus/memory may be used; vCPU is at
    least 0.25 in steps of 0.25 and memory is in MiB (at least 4).
    """

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "!has(self.vcpus) || !has(self.resourceRequirements) || "
                "!self.resourceRequirements.exists(r, r.type == 'VCPU')",
                "containerProperties.vcpus and a VCPU entry in containerProperties.resourceRequirements "
                "are mutually exclusive",
            ),
            rule(
                "!has(self.memory) || !has(self.resourceRequirements) || "
                "!self.resourceRequirements.exists(r, r.type == 'MEMORY')",
                "containerProperties.memory and a MEMORY entry in containerProperties.resourceRequirements "
                "are mutually exclusive",
            ),
            rule(
                "!has(self.mountPoints) || self.mountPoints.all(m, !has(m.sourceVolume) || "
                "(has(self.volumes) && self.volumes.exists(v, has(v.name) && v.name == m.sourceVolume)))",
                "containerProperties.mountPoints[].sourceVolume must name a volume in "
                "containerProperties.volumes",
            ),
        )
    )

    image: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    """Container image (up to 255 characters). Required in spec.containerProperties; in a node range
    it may be omitted only where a wider range supplies it."""
    command: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=256)] | None = None
    """Command (entrypoint and arguments); elements `Ref::name` are replaced by parameters."""
    vcpus: Annotated[int, Field(ge=1)] | None = None
    """Deprecated AWS field: whole vCPUs. Use resourceRequirements (VCPU) instead."""
    memory: Annotated[int, Field(ge=4)] | None = None
    """Deprecated AWS field: hard memory limit in MiB (at least 4). Use resourceRequirements (MEMORY)."""
    resourceRequirements: ResourceRequirements | None = None
    """VCPU, MEMORY and GPU for the container; each type at most once."""
    environment: Environment | None = None
    """Environment variables; names starting with AWS_BATCH are reserved."""
    volumes: Annotated[list[Volume], Field(max_length=32)] | None = None
    """Volumes (host paths become hostPath volumes; a volume without a source is an emptyDir)."""
    mountPoints: Annotated[list[MountPoint], Field(max_length=32)] | None = None
    """Where volumes are mounted."""
    user: Annotated[str, Field(max_length=255)] | None = None
    """User to run as: a numeric uid (or uid:gid) becomes securityContext.runAsUser; a user name is
    passed as-is to images that resolve it and otherwise ignored."""
    privileged: bool | None = None
    """Run privileged (default false)."""
    readonlyRootFilesystem: bool | None = None
    """Mount the root filesystem read-only (default false)."""
    linuxParameters: LinuxParameters | None = None
    """Devices, shared memory and tmpfs mounts."""
    ulimits: Annotated[list[Ulimit], Field(max_length=32)] | None = None
    """ECS only; accepted and ignored."""
    instanceType: Annotated[str, Field(max_length=64)] | None = None
    """Instance type for multi-node parallel jobs (node selector on node.kubernetes.io/instance-type)."""
    jobRoleArn: str | None = None
    """ECS only; accepted and ignored (use eksProperties.podProperties.serviceAccountName)."""
    executionRoleArn: str | None = None
    """ECS only; accepted and ignored."""
    logConfiguration: LogConfiguration | None = None
    """ECS only; accepted and ignored."""
    secrets: Annotated[list[Secret], Field(max_length=64)] | None = None
    """Environment variables from Kubernetes Secrets: valueFrom is `<secret-name>:<key>`."""
    networkConfiguration: NetworkConfiguration | None = None
    """Fargate only; accepted and ignored."""
    fargatePlatformConfiguration: FargatePlatformConfiguration | None = None
    """Fargate only; accepted and ignored."""
    ephemeralStorage: EphemeralStorage | None = None
    """Ephemeral storage request."""
    runtimePlatform: RuntimePlatform | None = None
    """CPU architecture (node selector)."""
    repositoryCredentials: RepositoryCredentials | None = None
    """ECS only; accepted and ignored."""
    enableExecuteCommand: bool | None = None
    """ECS only; accepted and ignored."""


class ContainerOverrides(Spec):
    """Overrides of containerProperties at submission (AWS ContainerOverrides)."""

    command: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=4096)]], Field(max_length=256)] | None
    ) = None
    """Replaces the command; elements can't be empty strings (AWS)."""
    environment: Environment | None = None
    """Adds or replaces environment variables; names starting with AWS_BATCH are reserved."""
    instanceType: Annotated[str, Field(max_length=64)] | None = None
    """Instance type (multi-node parallel jobs only)."""
    vcpus: Annotated[int, Field(ge=1)] | None = None
    """Deprecated; use resourceRequirements. Can't override a VCPU set in resourceRequirements (AWS)."""
    memory: Annotated[int, Field(ge=4)] | None = None
    """Deprecated; use resourceRequirements. Can't override a MEMORY set in resourceRequirements (AWS)."""
    resourceRequirements: ResourceRequirements | None = None
    """Replaces VCPU, MEMORY or GPU."""


class TaskContainerDependency(Spec):
    """Start ordering between containers of one task (AWS TaskContainerDependency)."""

    containerName: str | None = None
    condition: Literal["START", "COMPLETE", "SUCCESS", "HEALTHY"] | None = None


class FirelensConfiguration(Spec):
    """ECS log router settings (AWS FirelensConfiguration). Accepted and ignored."""

    type: Literal["fluentd", "fluentbit"]
    options: dict[str, str] | None = None


class TaskContainerProperties(Spec):
    """One container of an ECS multi-container task (AWS TaskContainerProperties); becomes a pod container."""

    name: Annotated[str, Field(min_length=1, max_length=63)] | None = None
    """Container name, unique within the task."""
    image: Annotated[str, Field(min_length=1, max_length=255)]
    """Container image."""
    command: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=256)] | None = None
    """Command; `Ref::name` elements are replaced by parameters."""
    essential: bool | None = None
    """ECS: when an essential container exits, the task stops (default true). A non-essential
    container runs as a Kubernetes native sidecar: it is stopped once the essential containers
    ended and its exit code does not decide the job."""
    dependsOn: Annotated[list[TaskContainerDependency], Field(max_length=10)] | None = None
    """ECS start ordering; accepted and ignored."""
    environment: Environment | None = None
    """Environment variables."""
    resourceRequirements: ResourceRequirements | None = None
    """VCPU, MEMORY, GPU."""
    mountPoints: Annotated[list[MountPoint], Field(max_length=32)] | None = None
    linuxParameters: LinuxParameters | None = None
    logConfiguration: LogConfiguration | None = None
    firelensConfiguration: FirelensConfiguration | None = None
    privileged: bool | None = None
    readonlyRootFilesystem: bool | None = None
    repositoryCredentials: RepositoryCredentials | None = None
    secrets: Annotated[list[Secret], Field(max_length=64)] | None = None
    ulimits: Annotated[list[Ulimit], Field(max_length=32)] | None = None
    user: Annotated[str, Field(max_length=255)] | None = None


class EcsTaskProperties(Spec):
    """An ECS task (AWS EcsTaskProperties), run as one pod."""

    containers: Annotated[list[TaskContainerProperties], Field(min_length=1, max_length=10)]
    """The task's containers (up to 10)."""
    ephemeralStorage: EphemeralStorage | None = None
    executionRoleArn: str | None = None
    platformVersion: str | None = None
    ipcMode: str | None = None
    taskRoleArn: str | None = None
    pidMode: str | None = None
    networkConfiguration: NetworkConfiguration | None = None
    runtimePlatform: RuntimePlatform | None = None
    volumes: Annotated[list[Volume], Field(max_length=32)] | None = None
    enableExecuteCommand: bool | None = None


class EcsProperties(Spec):
    """ECS multi-container properties (AWS EcsProperties)."""

    taskProperties: Annotated[list[EcsTaskProperties], Field(min_length=1, max_length=1)]
    """Exactly one task (AWS: "This object is currently limited to one element")."""


class TaskContainerOverrides(Spec):
    """Overrides for one ECS task container (AWS TaskContainerOverrides)."""

    name: Annotated[str, Field(max_length=63)] | None = None
    """The container to override."""
    command: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=4096)]], Field(max_length=256)] | None
    ) = None
    """Replaces the command; elements can't be empty strings (AWS)."""
    environment: Environment | None = None
    """Adds or replaces environment variables."""
    resourceRequirements: ResourceRequirements | None = None
    """Replaces VCPU, MEMORY or GPU."""


class TaskPropertiesOverride(Spec):
    """Overrides for an ECS task (AWS TaskPropertiesOverride)."""

    containers: Annotated[list[TaskContainerOverrides], Field(max_length=10)] | None = None
    """Container overrides, matched by name."""


class EcsPropertiesOverride(Spec):
    """Overrides of ecsProperties at submission (AWS EcsPropertiesOverride)."""

    taskProperties: Annotated[list[TaskPropertiesOverride], Field(max_length=1)] | None = None
    """Overrides for the task (one element)."""
