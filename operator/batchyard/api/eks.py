"""The EKS pod shapes of AWS Batch: `eksProperties.podProperties` and `eksPropertiesOverride`.

Why this module exists: on Kubernetes the EKS flavour of a job definition is the natural one, a
pod template with AWS Batch's restrictions (vCPU in steps of 0.25, memory in MiB, whole GPUs with
requests equal to limits, reserved label prefixes, at most 10 containers). The renderer turns it
into the attempt's pod almost one to one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from batchyard.api.common import DNS_LABEL_PATTERN, Spec, cel, rule
from batchyard.api.ecs import GPU_PATTERN, VCPU_PATTERN

# AWS: "Memory values must be in mebibytes (MiBs)" ("using whole integers, with a "Mi" suffix"),
# and at least 4 MiB.
EKS_MEMORY_PATTERN = r"^([4-9]|[1-9][0-9]{1,8})Mi$"
GPU_KEY = "nvidia.com/gpu"

ResourceMap = Annotated[dict[str, Annotated[str, Field(min_length=1, max_length=256)]], Field(max_length=16)]


def _side_rules(side: str) -> list[dict[str, object]]:
    """Per-value format rules for resources.limits or resources.requests."""
    m = f"self.{side}"
    return [
        rule(
            f"!has({m}) || !('cpu' in {m}) || {m}['cpu'].matches(r'{VCPU_PATTERN}')",
            f"resources.{side}.cpu must be at least 0.25 vCPU, a whole number or a multiple of 0.25 "
            "(e.g. 0.25, 1, 1.5); millicores such as 100m are not allowed",
        ),
        rule(
            f"!has({m}) || !('memory' in {m}) || {m}['memory'].matches(r'{EKS_MEMORY_PATTERN}')",
            f"resources.{side}.memory must be a whole number of MiB with the Mi suffix, at least 4Mi "
            "(e.g. 1024Mi)",
        ),
        rule(
            f"!has({m}) || !('{GPU_KEY}' in {m}) || {m}['{GPU_KEY}'].matches(r'{GPU_PATTERN}')",
            f"resources.{side}.{GPU_KEY} must be a whole number of GPUs, at least 1 (no fractions)",
        ),
    ]


def _both(key: str) -> str:
    return (
        f"!has(self.limits) || !has(self.requests) || "
        f"!('{key}' in self.limits) || !('{key}' in self.requests)"
    )


class EksContainerResourceRequirements(Spec):
    """Container resources (AWS EksContainerResourceRequirements).

    Keys: `cpu` (vCPUs, at least 0.25, whole or in steps of 0.25, no millicores), `memory` (MiB with
    the Mi suffix, at least 4Mi) and `nvidia.com/gpu` (whole GPUs). If only limits are given they
    are copied to requests. Memory and GPU requests must equal limits when both are given; cpu
    requests must not exceed cpu limits. Other extended resources pass through unchanged.
    """

    model_config = ConfigDict(
        json_schema_extra=cel(
            *_side_rules("limits"),
            *_side_rules("requests"),
            rule(
                f"{_both('memory')} || self.limits['memory'] == self.requests['memory']",
                "resources.requests.memory must equal resources.limits.memory when both are specified",
            ),
            rule(
                f"{_both(GPU_KEY)} || self.limits['{GPU_KEY}'] == self.requests['{GPU_KEY}']",
                f"resources.requests.{GPU_KEY} must equal resources.limits.{GPU_KEY} when both are specified",
            ),
            rule(
                f"{_both('cpu')} || !self.limits['cpu'].matches(r'{VCPU_PATTERN}') || "
                f"!self.requests['cpu'].matches(r'{VCPU_PATTERN}') || "
                "double(self.requests['cpu']) <= double(self.limits['cpu'])",
                "resources.requests.cpu must be less than or equal to resources.limits.cpu",
            ),
        )
    )

    limits: ResourceMap | None = None
    """Hard limits: cpu, memory, nvidia.com/gpu (copied to requests when requests are absent)."""
    requests: ResourceMap | None = None
    """Requests used for scheduling and scaling decisions."""


class EksContainerEnvironmentVariable(Spec):
    """An environment variable (AWS EksContainerEnvironmentVariable)."""

    name: Annotated[str, Field(min_length=1, max_length=256)]
    """Name; must not start with AWS_BATCH (reserved)."""
    value: Annotated[str, Field(max_length=32768)] | None = None
    """Value."""


EksEnv = Annotated[
    list[EksContainerEnvironmentVariable],
    Field(
        max_length=256,
        json_schema_extra=cel(
            rule(
                "self.all(e, !e.name.startsWith('AWS_BATCH'))",
                "env names must not start with AWS_BATCH (reserved for variables AWS Batch sets)",
            )
        ),
    ),
]


class EksContainerVolumeMount(Spec):
    """A volume mount (AWS EksContainerVolumeMount)."""

    name: Annotated[str, Field(min_length=1, max_length=63)]
    """Name of a volume in podProperties.volumes."""
    mountPath: Annotated[str, Field(min_length=1, max_length=4096)]
    """Path in the container."""
    subPath: Annotated[str, Field(max_length=4096)] | None = None
    """Sub-path of the volume to mount."""
    readOnly: bool | None = None
    """Mount read-only (default false)."""


class EksContainerSecurityContext(Spec):
    """Container security context (AWS EksContainerSecurityContext)."""

    runAsUser: Annotated[int, Field(ge=0)] | None = None
    runAsGroup: Annotated[int, Field(ge=0)] | None = None
    privileged: bool | None = None
    """Default false."""
    allowPrivilegeEscalation: bool | None = None
    """Default false."""
    readOnlyRootFilesystem: bool | None = None
    """Default false."""
    runAsNonRoot: bool | None = None
    """The kubelet refuses to start an image that runs as UID 0."""


ContainerName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
StringList = Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=256)]


class EksContainer(Spec):
    """A container of the job's pod (AWS EksContainer)."""

    name: ContainerName | None = None
    """Container name, up to 63 lower-case letters, digits and hyphens, starting and ending with a
    letter or digit. Optional for a single container (it is then named `default`: of AWS's
    "Default"/"default" contradiction, Kubernetes only accepts the lower-case one); required when
    the pod has several containers, and unique across containers and initContainers."""
    image: Annotated[str, Field(min_length=1, max_length=255)]
    """Container image (up to 255 characters)."""
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """Default IfNotPresent, or Always for the :latest tag (Kubernetes default)."""
    command: StringList | None = None
    """Entrypoint (not run in a shell); `Ref::name` elements are replaced by parameters."""
    args: StringList | None = None
    """Arguments; `Ref::name` elements are replaced by parameters."""
    env: EksEnv | None = None
    """Environment variables; names starting with AWS_BATCH are reserved."""
    resources: EksContainerResourceRequirements | None = None
    """cpu, memory and nvidia.com/gpu limits and requests."""
    volumeMounts: Annotated[list[EksContainerVolumeMount], Field(max_length=32)] | None = None
    """Mounts of podProperties.volumes."""
    securityContext: EksContainerSecurityContext | None = None
    """Security context."""


class EksHostPath(Spec):
    """A host path volume source."""

    path: Annotated[str, Field(min_length=1, max_length=4096)]


class EksEmptyDir(Spec):
    """An emptyDir volume source."""

    medium: Literal["", "Memory"] | None = None
    """"" (node disk, default) or "Memory" (tmpfs)."""
    sizeLimit: Annotated[str, Field(max_length=256)] | None = None
    """Maximum size, e.g. 1Gi."""


class EksSecret(Spec):
    """A secret volume source."""

    secretName: Annotated[str, Field(min_length=1, max_length=253)]
    optional: bool | None = None


class EksPersistentVolumeClaim(Spec):
    """A PersistentVolumeClaim volume source."""

    claimName: Annotated[str, Field(min_length=1, max_length=253)]
    readOnly: bool | None = None


class EksVolume(Spec):
    """A pod volume (AWS EksVolume): exactly one of hostPath, emptyDir, secret, persistentVolumeClaim."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "(has(self.hostPath) ? 1 : 0) + (has(self.emptyDir) ? 1 : 0) + (has(self.secret) ? 1 : 0)"
                " + (has(self.persistentVolumeClaim) ? 1 : 0) == 1",
                "podProperties.volumes entries must set exactly one of hostPath, emptyDir, secret or "
                "persistentVolumeClaim",
            )
        )
    )

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
    """Volume name (a DNS label)."""
    hostPath: EksHostPath | None = None
    emptyDir: EksEmptyDir | None = None
    secret: EksSecret | None = None
    persistentVolumeClaim: EksPersistentVolumeClaim | None = None


# AWS: "The prefix for a pod label can't contain kubernetes.io/, k8s.io/, or batch.amazonaws.com/."
# batchyard.io/ is reserved the same way for the labels the operator sets.
_RESERVED = ("kubernetes.io/", "k8s.io/", "batch.amazonaws.com/", "batchyard.io/")
_NOT_RESERVED = " && ".join(f"!k.contains('{p}')" for p in _RESERVED)

NamespaceName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
# Refused, not ignored: a job's pods run in the BatchJob's own namespace (the pod's owner
# reference to its BatchJob can't cross namespaces, and without it a deleted job would leak pods).
_NAMESPACE_RULE = rule(
    "false",
    "metadata.namespace is not supported: a job's pods run in the BatchJob's namespace; submit the "
    "BatchJob in the namespace the pods should run in",
)


class EksMetadata(Spec):
    """Pod metadata (AWS EksMetadata)."""

    labels: (
        Annotated[
            dict[str, Annotated[str, Field(max_length=63)]],
            Field(
                max_length=64,
                json_schema_extra=cel(
                    rule(
                        f"self.all(k, {_NOT_RESERVED})",
                        "metadata.labels keys must not use the reserved prefixes kubernetes.io/, k8s.io/, "
                        "batch.amazonaws.com/ or batchyard.io/",
                    )
                ),
            ),
        ]
        | None
    ) = None
    """Labels added to the pod. Prefixes kubernetes.io/, k8s.io/, batch.amazonaws.com/ and
    batchyard.io/ are reserved."""
    annotations: (
        Annotated[
            dict[str, Annotated[str, Field(max_length=65536)]],
            Field(
                max_length=64,
                json_schema_extra=cel(
                    rule(
                        f"self.all(k, {_NOT_RESERVED})",
                        "metadata.annotations keys must not use the reserved prefixes "
                        "kubernetes.io/, k8s.io/, "
                        "batch.amazonaws.com/ or batchyard.io/",
                    )
                ),
            ),
        ]
        | None
    ) = None
    """Annotations added to the pod (same reserved prefixes as labels)."""
    namespace: Annotated[NamespaceName, Field(json_schema_extra=cel(_NAMESPACE_RULE))] | None = None
    """Not supported, refused (AWS EksMetadata.namespace): a job's pods run in the BatchJob's own
    namespace; submit the BatchJob in the namespace the pods should run in."""


class ImagePullSecret(Spec):
    """A reference to an image pull secret in the pod's namespace."""

    name: Annotated[str, Field(min_length=1, max_length=253)]


class EksPodProperties(Spec):
    """The pod template of an EKS job definition (AWS EksPodProperties)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "(size(self.containers) + "
                "(has(self.initContainers) ? size(self.initContainers) : 0)) == 1 || "
                "(self.containers.all(c, has(c.name)) && "
                "(!has(self.initContainers) || self.initContainers.all(c, has(c.name))))",
                "podProperties.containers[].name and podProperties.initContainers[].name are required "
                "when the "
                "pod has more than one container",
            ),
            rule(
                "self.containers.all(c, !has(c.name) || self.containers.exists_one(d, has(d.name) && "
                "d.name == c.name)) && (!has(self.initContainers) || self.initContainers.all(c, "
                "!has(c.name) || (self.initContainers.exists_one(d, has(d.name) && d.name == c.name) && "
                "!self.containers.exists(d, has(d.name) && d.name == c.name))))",
                "podProperties container names must be unique across containers and initContainers",
            ),
            rule(
                "self.containers.all(c, !has(c.volumeMounts) || c.volumeMounts.all(m, has(self.volumes) && "
                "self.volumes.exists(v, v.name == m.name))) && (!has(self.initContainers) || "
                "self.initContainers.all(c, !has(c.volumeMounts) || c.volumeMounts.all(m, "
                "has(self.volumes) && self.volumes.exists(v, v.name == m.name))))",
                "podProperties volumeMounts[].name must name a volume in podProperties.volumes",
            ),
            rule(
                "!has(self.volumes) || self.volumes.all(a, self.volumes.exists_one(b, b.name == a.name))",
                "podProperties.volumes names must be unique",
            ),
        )
    )

    serviceAccountName: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    """Service account the pod runs as (in the pod's namespace)."""
    hostNetwork: bool | None = None
    """Use the node's network namespace. AWS Batch defaults to true; Batchyard's default is set by the
    operator configuration (AWS-compatible true unless configured otherwise)."""
    dnsPolicy: Literal["Default", "ClusterFirst", "ClusterFirstWithHostNet"] | None = None
    """DNS policy. When unset: ClusterFirstWithHostNet with host networking, else ClusterFirst (the
    AWS API rule; the console's "no value" option is not supported)."""
    imagePullSecrets: Annotated[list[ImagePullSecret], Field(max_length=16)] | None = None
    """Image pull secrets."""
    containers: Annotated[list[EksContainer], Field(min_length=1, max_length=10)]
    """1 to 10 containers. The job succeeds only if every container exits 0."""
    initContainers: Annotated[list[EksContainer], Field(max_length=10)] | None = None
    """Up to 10 init containers, run in order before the containers (time counts as STARTING)."""
    volumes: Annotated[list[EksVolume], Field(max_length=32)] | None = None
    """Pod volumes."""
    metadata: EksMetadata | None = None
    """Labels and annotations of the pod (a namespace is refused: pods run in the BatchJob's namespace)."""
    shareProcessNamespace: bool | None = None
    """Share one process namespace between the containers (default false)."""


class EksProperties(Spec):
    """EKS properties of a job definition (AWS EksProperties)."""

    podProperties: EksPodProperties
    """The pod template."""


class EksContainerOverride(Spec):
    """Overrides for one container (AWS EksContainerOverride)."""

    name: ContainerName | None = None
    """The container to override (must match a container name of the job definition; may be omitted
    when the pod has a single container)."""
    image: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    """Replaces the image."""
    command: StringList | None = None
    """Replaces the command."""
    args: StringList | None = None
    """Replaces the arguments."""
    env: EksEnv | None = None
    """Adds or replaces environment variables; names starting with AWS_BATCH are reserved."""
    resources: EksContainerResourceRequirements | None = None
    """Replaces limits and requests (same rules as the job definition)."""


class EksPodPropertiesOverride(Spec):
    """Overrides of the pod template (AWS EksPodPropertiesOverride)."""

    containers: Annotated[list[EksContainerOverride], Field(max_length=10)] | None = None
    """Container overrides."""
    initContainers: Annotated[list[EksContainerOverride], Field(max_length=10)] | None = None
    """Init container overrides."""
    metadata: EksMetadata | None = None
    """Adds labels/annotations (a namespace is refused: pods run in the BatchJob's namespace)."""


class EksPropertiesOverride(Spec):
    """Overrides of eksProperties at submission (AWS EksPropertiesOverride)."""

    podProperties: EksPodPropertiesOverride | None = None
    """Pod overrides."""
