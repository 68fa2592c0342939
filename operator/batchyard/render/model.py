"""The intermediate shapes of rendering: a job's effective pod template before it becomes a manifest.

Why this module exists: `plan.py` (overrides, parameters, resources) and `mnp.py` (node ranges)
both produce and read these; keeping them apart avoids an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batchyard.api.ecs import ContainerOverrides, ContainerProperties, EcsProperties, EcsPropertiesOverride
from batchyard.api.eks import EksProperties, EksPropertiesOverride


@dataclass
class ContainerPlan:
    """One container of the pod, after overrides and substitution (Kubernetes shapes)."""

    name: str
    image: str | None
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[tuple[str, str | None]] = field(default_factory=list)
    # Environment variables from Secrets: (variable, secret name, key) -> secretKeyRef.
    secret_env: list[tuple[str, str, str]] = field(default_factory=list)
    requests: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)
    security_context: dict[str, Any] = field(default_factory=dict)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    image_pull_policy: str | None = None
    # A non-essential ECS container: rendered as a Kubernetes native sidecar (an init container
    # with restartPolicy Always), stopped by the kubelet once the essential containers ended.
    sidecar: bool = False


@dataclass
class PodPlan:
    """The whole pod template of one job (or array child, or node)."""

    containers: list[ContainerPlan] = field(default_factory=list)
    init_containers: list[ContainerPlan] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    pod_spec: dict[str, Any] = field(default_factory=dict)
    """Extra pod spec fields (serviceAccountName, dnsPolicy, imagePullSecrets, ...)."""
    host_network: bool | None = None
    """None: not set by the job definition (the caller's default applies)."""
    eks: bool = False
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Template:
    """Which pod template applies (top level, or one node range) and which overrides go with it."""

    where: str
    container: ContainerProperties | None
    ecs: EcsProperties | None
    eks: EksProperties | None
    container_overrides: ContainerOverrides | None
    ecs_override: EcsPropertiesOverride | None
    eks_override: EksPropertiesOverride | None
    override_where: str
    instance_type: str | None = None
