"""The job's effective pod template: job definition revision + SubmitJob overrides + parameters.

Why this module exists: `job_demand`, `render_problems` and `render_pod` must agree exactly on what
the job runs (which image, which command, how much vCPU/memory/GPU), so all three read one
`PodPlan` built here. The plan applies the AWS override and substitution rules once:

* Parameters: SubmitJob `parameters` over the definition's defaults; `Ref::` tokens in `command`
  (and EKS `args`) are replaced by `core.params.substitute`; unknown tokens stay literal as on AWS.
* `command` of containerProperties/ecsProperties is Docker's CMD (the image's ENTRYPOINT stays):
  it becomes the container's `args`. eksProperties keep Kubernetes' own `command`/`args`.
* `containerOverrides` (containerProperties): `command` replaces; `environment` adds or replaces
  by name; `resourceRequirements` replace per type; deprecated `vcpus`/`memory` replace the
  deprecated fields only (AWS: they "can't override the memory and vCPU requirements that are
  specified in the resourceRequirements structure" -> a problem).
* `eksPropertiesOverride.podProperties`: each container override names the container it changes
  (AWS: "The name must match a unique container name"; may be omitted when there is exactly one);
  `image`, `command`, `args` replace; `env` adds or replaces by name; `resources` replace, per
  resource key (an override of memory replaces the definition's memory requests and limits and
  keeps its cpu); `metadata.labels/annotations` are added over the definition's.
* `ecsPropertiesOverride.taskProperties[0].containers`: like containerOverrides, by name.
* Multi-node parallel jobs: the same rules, applied to the node range and node property override
  that `mnp.py` picks for the node.

Problems (anything that makes the job unrunnable) are collected, not raised, so the operator can
fail the job with all of them in its statusReason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from batchyard.api.batchjob import BatchJob
from batchyard.api.common import KeyValuePair
from batchyard.api.ecs import (
    ContainerOverrides,
    ContainerProperties,
    EcsProperties,
    EcsPropertiesOverride,
    LinuxParameters,
    MountPoint,
    ResourceRequirement,
    Secret,
    TaskContainerOverrides,
    TaskContainerProperties,
    Volume,
)
from batchyard.api.eks import (
    EksContainer,
    EksContainerEnvironmentVariable,
    EksContainerOverride,
    EksContainerResourceRequirements,
    EksProperties,
    EksPropertiesOverride,
)
from batchyard.api.jobdefinition import JobDefinitionSpec
from batchyard.core.capacity import parse_cpu, parse_memory_mib
from batchyard.core.params import merged_parameters, reserved_env_message, reserved_env_violations, substitute
from batchyard.render.mnp import node_template
from batchyard.render.model import ContainerPlan, PodPlan, Template
from batchyard.render.names import GPU_RESOURCE, dns_label, is_label_key, is_label_value
from batchyard.render.resources import (
    DEFAULT_MEMORY_MIB,
    DEFAULT_VCPUS,
    cpu_quantity,
    eks_resources,
    gpu_count,
    memory_quantity,
)

# AWS: "If the name isn't specified, the default name ... is used" — "default" (the lower-case form
# is the one a real EKS pod shows, and the only one Kubernetes accepts). ECS-style single
# containers get the same name.
DEFAULT_CONTAINER: Final = "default"

_ARCH: Final = {"X86_64": "amd64", "ARM64": "arm64"}
_NUMERIC_USER: Final = re.compile(r"^([0-9]+)(?::([0-9]+))?$")


# --- entry point ---------------------------------------------------------------------------------


def plan_pod(job: BatchJob, definition: JobDefinitionSpec, node_index: int | None = None) -> PodPlan:
    """The effective pod template of `job` run with the `definition` revision it pinned.

    For a multi-node parallel job, `node_index` picks the node (see `mnp.py`); without it the
    main node's template is planned.
    """
    plan = PodPlan()
    params = merged_parameters(definition.parameters, job.spec.parameters)
    spec = job.spec
    if definition.type == "multinode" or definition.nodeProperties is not None:
        if definition.nodeProperties is None:
            plan.problems.append(
                "jobDefinition.nodeProperties is required when the job definition type is multinode"
            )
            return plan
        template = node_template(plan, job, definition, node_index)
        if template is None:
            return plan
    else:
        if spec.nodeOverrides is not None:
            plan.problems.append("spec.nodeOverrides is only for multi-node parallel job definitions")
        template = Template(
            where="jobDefinition",
            container=definition.containerProperties,
            ecs=definition.ecsProperties,
            eks=definition.eksProperties,
            container_overrides=spec.containerOverrides,
            ecs_override=spec.ecsPropertiesOverride,
            eks_override=spec.eksPropertiesOverride,
            override_where="spec",
        )
    _plan_template(plan, template, params)
    return plan


def _plan_template(plan: PodPlan, t: Template, params: Mapping[str, str]) -> None:
    given = [
        n
        for n, v in (("containerProperties", t.container), ("ecsProperties", t.ecs), ("eksProperties", t.eks))
        if v is not None
    ]
    if len(given) != 1:
        plan.problems.append(
            f"{t.where} needs exactly one of containerProperties, ecsProperties or eksProperties "
            f"(has {', '.join(given) or 'none'})"
        )
        return
    overrides = {
        "containerOverrides": t.container_overrides,
        "ecsPropertiesOverride": t.ecs_override,
        "eksPropertiesOverride": t.eks_override,
    }
    allowed = {
        "containerProperties": "containerOverrides",
        "ecsProperties": "ecsPropertiesOverride",
        "eksProperties": "eksPropertiesOverride",
    }[given[0]]
    for name, value in overrides.items():
        if value is not None and name != allowed:
            plan.problems.append(
                f"{t.override_where}.{name} can't be used with a job definition that uses {given[0]}"
            )
    if t.container is not None:
        _plan_container_properties(plan, t, t.container, t.container_overrides, params)
    elif t.ecs is not None:
        _plan_ecs(plan, t, t.ecs, t.ecs_override, params)
    elif t.eks is not None:
        _plan_eks(plan, t, t.eks, t.eks_override, params)
    if t.instance_type:
        # AWS instanceType/instanceTypes pin a node range to one instance type; on Kubernetes that
        # is the well-known instance-type node label.
        plan.node_selector["node.kubernetes.io/instance-type"] = t.instance_type
    _apply_defaults(plan)


# --- shared helpers ------------------------------------------------------------------------------


def _merge_env(
    plan: PodPlan,
    where: str,
    base: Sequence[KeyValuePair | EksContainerEnvironmentVariable] | None,
    override_where: str,
    override: Sequence[KeyValuePair | EksContainerEnvironmentVariable] | None,
) -> list[tuple[str, str | None]]:
    """Definition env then override env (AWS: overrides add or replace by name); AWS_BATCH* refused."""
    for label, items in ((where, base), (override_where, override)):
        bad = reserved_env_violations(e.name for e in items or ())
        if bad:
            plan.problems.append(f"{label}: {reserved_env_message(bad)}")
    merged: dict[str, str | None] = {}
    for e in [*(base or ()), *(override or ())]:
        if not reserved_env_violations([e.name]):
            merged[e.name] = e.value
    return list(merged.items())


# A Kubernetes Secret name (DNS-1123 subdomain) and a Secret data key.
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def _secret_env(plan: PodPlan, where: str, secrets: Sequence[Secret] | None) -> list[tuple[str, str, str]]:
    """ECS `secrets` -> (variable, Secret name, key). AWS valueFrom is a Secrets Manager or SSM
    ARN, which means nothing on Kubernetes: here it is `<secret-name>:<key>` of a Secret in the
    job's namespace; any other form is a problem naming the variable."""
    out: list[tuple[str, str, str]] = []
    bad = reserved_env_violations(s.name for s in secrets or ())
    if bad:
        plan.problems.append(f"{where}: {reserved_env_message(bad)}")
    for i, secret in enumerate(secrets or ()):
        name, sep, key = secret.valueFrom.partition(":")
        if not sep or not _SECRET_NAME.match(name) or len(name) > 253 or not _SECRET_KEY.match(key):
            plan.problems.append(
                f"{where}[{i}] ({secret.name}): valueFrom {secret.valueFrom[:80]!r} must be "
                "<secret-name>:<key> of a Kubernetes Secret in the job's namespace (Secrets Manager "
                "and SSM ARNs are not supported)"
            )
            continue
        if not reserved_env_violations([secret.name]):
            out.append((secret.name, name, key))
    return out


def _apply_defaults(plan: PodPlan) -> None:
    """DEFAULT_VCPUS / DEFAULT_MEMORY_MIB on the first container when the pod names none at all."""
    if not plan.containers:
        return
    first = plan.containers[0]
    everything = [*plan.containers, *plan.init_containers]
    if not any("cpu" in c.requests or "cpu" in c.limits for c in everything):
        first.requests["cpu"] = cpu_quantity(DEFAULT_VCPUS)
    if not any("memory" in c.requests or "memory" in c.limits for c in everything):
        first.requests["memory"] = first.limits["memory"] = memory_quantity(DEFAULT_MEMORY_MIB)


def _security_context_from_ecs(
    user: str | None, privileged: bool | None, read_only: bool | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if user:
        # A numeric "uid" or "uid:gid" maps to runAsUser/runAsGroup; a user *name* has no pod
        # equivalent (the kubelet only takes ids) and is left to the image.
        m = _NUMERIC_USER.match(user)
        if m:
            out["runAsUser"] = int(m.group(1))
            if m.group(2) is not None:
                out["runAsGroup"] = int(m.group(2))
    if privileged is not None:
        out["privileged"] = privileged
    if read_only is not None:
        out["readOnlyRootFilesystem"] = read_only
    return out


# --- containerProperties / ecsProperties ---------------------------------------------------------


def _rr(items: Sequence[ResourceRequirement] | None) -> dict[str, str]:
    return {r.type: r.value for r in items or ()}


def _ecs_resources(
    plan: PodPlan,
    where: str,
    definition_rr: Sequence[ResourceRequirement] | None,
    override_rr: Sequence[ResourceRequirement] | None,
    vcpus: int | None = None,
    memory: int | None = None,
    override_vcpus: int | None = None,
    override_memory: int | None = None,
    override_where: str = "spec.containerOverrides",
) -> tuple[dict[str, str], dict[str, str]]:
    """(requests, limits) of an ECS-style container (see resources.py for the mapping)."""
    base, over = _rr(definition_rr), _rr(override_rr)
    # AWS "Can't override job definition resource requirements": the deprecated override keys
    # can't replace a value the definition set in resourceRequirements.
    for kind, deprecated, name in (("VCPU", override_vcpus, "vcpus"), ("MEMORY", override_memory, "memory")):
        if deprecated is not None and kind in base and kind not in over:
            plan.problems.append(
                f"{override_where}.{name}: This value was submitted in a deprecated key and may "
                f"conflict with the value provided by the job definition's resource requirements; "
                f"use {override_where}.resourceRequirements ({kind}) instead"
            )
    vcpu = over.get("VCPU") or base.get("VCPU")
    if vcpu is None:
        v = override_vcpus if override_vcpus is not None else vcpus
        vcpu = str(v) if v is not None else None
    mem = over.get("MEMORY") or base.get("MEMORY")
    if mem is None:
        m = override_memory if override_memory is not None else memory
        mem = str(m) if m is not None else None
    gpu = over.get("GPU") or base.get("GPU")
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    try:
        if vcpu is not None:
            # AWS: a vCPU is a reservation ("Each vCPU is equivalent to 1,024 CPU shares"), not a cap.
            requests["cpu"] = cpu_quantity(vcpu)
        if mem is not None:
            # AWS: MEMORY is "the hard limit (in MiB) of memory to present to the container".
            requests["memory"] = limits["memory"] = memory_quantity(mem)
        if gpu is not None:
            # AWS: "The number of physical GPUs to reserve"; Kubernetes: requests == limits.
            n = gpu_count(gpu)
            if n > 0:
                requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(n)
    except ValueError as exc:
        plan.problems.append(f"{where}.resourceRequirements: {exc}")
    return requests, limits


def _ecs_volumes(plan: PodPlan, where: str, volumes: Sequence[Volume] | None) -> dict[str, str]:
    """Task volumes -> pod volumes; returns {AWS volume name: pod volume name}."""
    names: dict[str, str] = {}
    for i, vol in enumerate(volumes or ()):
        aws_name = vol.name or f"volume-{i}"
        pod_name = dns_label(aws_name)
        names[aws_name] = pod_name
        if vol.efsVolumeConfiguration is not None:
            plan.problems.append(
                f"{where}.volumes[{i}] ({aws_name}): EFS volumes are not supported on Kubernetes; "
                "mount the file system on the nodes and use a host volume, or use eksProperties "
                "with a persistentVolumeClaim"
            )
            continue
        if vol.host is not None and vol.host.sourcePath:
            plan.volumes.append({"name": pod_name, "hostPath": {"path": vol.host.sourcePath}})
        else:
            # AWS: a volume without a host source path is an empty directory on the host whose
            # lifetime is the job's.
            plan.volumes.append({"name": pod_name, "emptyDir": {}})
    return names


def _ecs_mounts(
    plan: PodPlan,
    where: str,
    container: str,
    mounts: Sequence[MountPoint] | None,
    linux: LinuxParameters | None,
    volume_names: Mapping[str, str],
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, mp in enumerate(mounts or ()):
        source = mp.sourceVolume
        if source is None or source not in volume_names or not mp.containerPath:
            plan.problems.append(
                f"{where}.mountPoints[{i}]: needs a containerPath and a sourceVolume naming one of "
                f"the volumes ({', '.join(volume_names) or 'none defined'})"
            )
            continue
        mount: dict[str, Any] = {"name": volume_names[source], "mountPath": mp.containerPath}
        if mp.readOnly:
            mount["readOnly"] = True
        out.append(mount)
    if linux is None:
        return out
    prefix = "" if container == DEFAULT_CONTAINER else f"{container}-"
    if linux.sharedMemorySize:
        # AWS sharedMemorySize: "The value for the size (in MiB) of the /dev/shm volume".
        name = dns_label(f"{prefix}dshm")
        plan.volumes.append(
            {"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": f"{linux.sharedMemorySize}Mi"}}
        )
        out.append({"name": name, "mountPath": "/dev/shm"})
    for i, tmpfs in enumerate(linux.tmpfs or ()):
        name = dns_label(f"{prefix}tmpfs-{i}")
        plan.volumes.append({"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": f"{tmpfs.size}Mi"}})
        out.append({"name": name, "mountPath": tmpfs.containerPath})
    for i, dev in enumerate(linux.devices or ()):
        # A host device as a hostPath volume; the container usually needs privileged to use it.
        name = dns_label(f"{prefix}device-{i}")
        plan.volumes.append({"name": name, "hostPath": {"path": dev.hostPath}})
        out.append({"name": name, "mountPath": dev.containerPath or dev.hostPath})
    return out


def _plan_container_properties(
    plan: PodPlan,
    t: Template,
    props: ContainerProperties,
    overrides: ContainerOverrides | None,
    params: Mapping[str, str],
) -> None:
    where = f"{t.where}.containerProperties"
    ow = f"{t.override_where}.containerOverrides"
    ov = overrides or ContainerOverrides()
    if not props.image:
        plan.problems.append(f"{where}.image is required")
    command = ov.command if ov.command is not None else props.command
    requests, limits = _ecs_resources(
        plan,
        where,
        props.resourceRequirements,
        ov.resourceRequirements,
        vcpus=props.vcpus,
        memory=props.memory,
        override_vcpus=ov.vcpus,
        override_memory=ov.memory,
        override_where=ow,
    )
    if props.ephemeralStorage is not None:
        requests["ephemeral-storage"] = f"{props.ephemeralStorage.sizeInGiB}Gi"
    volume_names = _ecs_volumes(plan, where, props.volumes)
    plan.containers.append(
        ContainerPlan(
            name=DEFAULT_CONTAINER,
            image=props.image,
            # AWS: containerProperties.command "maps to Cmd in the Create a container section of
            # the Docker Remote API and the COMMAND parameter to docker run": the image's
            # ENTRYPOINT stays, so it is the container's args, not its command.
            args=substitute(command, params),
            env=_merge_env(
                plan,
                f"{where}.environment",
                props.environment,
                f"{ow}.environment",
                ov.environment,
            ),
            secret_env=_secret_env(plan, f"{where}.secrets", props.secrets),
            requests=requests,
            limits=limits,
            security_context=_security_context_from_ecs(
                props.user, props.privileged, props.readonlyRootFilesystem
            ),
            volume_mounts=_ecs_mounts(
                plan, where, DEFAULT_CONTAINER, props.mountPoints, props.linuxParameters, volume_names
            ),
        )
    )
    if props.runtimePlatform is not None and props.runtimePlatform.cpuArchitecture:
        plan.node_selector["kubernetes.io/arch"] = _ARCH[props.runtimePlatform.cpuArchitecture]


def _plan_ecs(
    plan: PodPlan,
    t: Template,
    props: EcsProperties,
    override: EcsPropertiesOverride | None,
    params: Mapping[str, str],
) -> None:
    where = f"{t.where}.ecsProperties.taskProperties[0]"
    ow = f"{t.override_where}.ecsPropertiesOverride.taskProperties[0]"
    task = props.taskProperties[0]
    overrides: list[TaskContainerOverrides] = []
    if override is not None and override.taskProperties:
        overrides = list(override.taskProperties[0].containers or ())
    names = _ecs_container_names(task.containers)
    by_name: dict[str, TaskContainerOverrides] = {}
    for i, o in enumerate(overrides):
        target = _match(plan, f"{ow}.containers[{i}]", o.name, names)
        if target is not None:
            by_name[target] = o
    volume_names = _ecs_volumes(plan, where, task.volumes)
    for i, (c, name) in enumerate(zip(task.containers, names, strict=True)):
        cw = f"{where}.containers[{i}]"
        o = by_name.get(name, TaskContainerOverrides())
        requests, limits = _ecs_resources(plan, cw, c.resourceRequirements, o.resourceRequirements)
        # ECS: when an essential container exits, the task stops; a non-essential one (a log
        # router, a proxy) must not keep the job RUNNING: it becomes a native sidecar.
        sidecar = c.essential is False
        (plan.init_containers if sidecar else plan.containers).append(
            ContainerPlan(
                sidecar=sidecar,
                name=name,
                image=c.image,
                # ECS container definitions' command is Docker's CMD too: the container's args.
                args=substitute(o.command if o.command is not None else c.command, params),
                env=_merge_env(
                    plan,
                    f"{cw}.environment",
                    c.environment,
                    f"{ow}.containers ({name}).environment",
                    o.environment,
                ),
                secret_env=_secret_env(plan, f"{cw}.secrets", c.secrets),
                requests=requests,
                limits=limits,
                security_context=_security_context_from_ecs(c.user, c.privileged, c.readonlyRootFilesystem),
                volume_mounts=_ecs_mounts(plan, cw, name, c.mountPoints, c.linuxParameters, volume_names),
            )
        )
    if not plan.containers:
        # ECS: "at least one container in a task must be essential".
        plan.problems.append(f"{where}.containers: at least one container must be essential")
    if task.ephemeralStorage is not None and plan.containers:
        plan.containers[0].requests["ephemeral-storage"] = f"{task.ephemeralStorage.sizeInGiB}Gi"
    if task.pidMode == "task":
        plan.pod_spec["shareProcessNamespace"] = True
    if task.runtimePlatform is not None and task.runtimePlatform.cpuArchitecture:
        plan.node_selector["kubernetes.io/arch"] = _ARCH[task.runtimePlatform.cpuArchitecture]


def _ecs_container_names(containers: Sequence[TaskContainerProperties]) -> list[str]:
    if len(containers) == 1 and not containers[0].name:
        return [DEFAULT_CONTAINER]
    return [dns_label(c.name) if c.name else f"container-{i}" for i, c in enumerate(containers)]


def _match(plan: PodPlan, where: str, name: str | None, names: Sequence[str]) -> str | None:
    """The container an override targets. AWS: "The name must match a unique container name"."""
    if name is None:
        if len(names) == 1:
            return names[0]
        plan.problems.append(
            f"{where}.name is required: the job definition has {len(names)} containers ({', '.join(names)})"
        )
        return None
    for candidate in names:
        if candidate == name or candidate == dns_label(name):
            return candidate
    plan.problems.append(
        f"{where}.name {name!r} matches no container of the job definition ({', '.join(names) or 'none'})"
    )
    return None


# --- eksProperties -------------------------------------------------------------------------------


def _merge_eks_resources(
    base: EksContainerResourceRequirements | None, over: EksContainerResourceRequirements | None
) -> tuple[dict[str, str], dict[str, str]]:
    """Per resource key, the override's requests/limits replace the definition's (both sides)."""
    limits = dict(base.limits or {}) if base else {}
    requests = dict(base.requests or {}) if base else {}
    if over is not None:
        for key in {*(over.limits or {}), *(over.requests or {})}:
            limits.pop(key, None)
            requests.pop(key, None)
        limits.update(over.limits or {})
        requests.update(over.requests or {})
    return limits, requests


def _check_eks_resources(
    plan: PodPlan, where: str, requests: Mapping[str, str], limits: Mapping[str, str]
) -> None:
    """AWS §5.3: memory and GPU requests equal limits; cpu requests <= limits; whole GPUs."""
    try:
        if "cpu" in requests and "cpu" in limits and parse_cpu(requests["cpu"]) > parse_cpu(limits["cpu"]):
            plan.problems.append(
                f"{where}.resources: requests.cpu ({requests['cpu']}) must be less than or equal to "
                f"limits.cpu ({limits['cpu']})"
            )
        if (
            "memory" in requests
            and "memory" in limits
            and (parse_memory_mib(requests["memory"]) != parse_memory_mib(limits["memory"]))
        ):
            plan.problems.append(
                f"{where}.resources: requests.memory ({requests['memory']}) must equal limits.memory "
                f"({limits['memory']})"
            )
        if GPU_RESOURCE in requests or GPU_RESOURCE in limits:
            req = gpu_count(requests.get(GPU_RESOURCE, limits.get(GPU_RESOURCE, "0")))
            lim = gpu_count(limits.get(GPU_RESOURCE, requests.get(GPU_RESOURCE, "0")))
            if req != lim:
                plan.problems.append(
                    f"{where}.resources: requests.{GPU_RESOURCE} ({req}) must equal limits.{GPU_RESOURCE} "
                    f"({lim}); GPUs can't be overcommitted"
                )
    except ValueError as exc:
        plan.problems.append(f"{where}.resources: {exc}")


def _eks_names(containers: Sequence[EksContainer], total: int) -> list[str]:
    return [
        c.name or (DEFAULT_CONTAINER if total == 1 else f"container-{i}") for i, c in enumerate(containers)
    ]


def _plan_eks(
    plan: PodPlan,
    t: Template,
    props: EksProperties,
    override: EksPropertiesOverride | None,
    params: Mapping[str, str],
) -> None:
    plan.eks = True
    pod = props.podProperties
    where = f"{t.where}.eksProperties.podProperties"
    ow = f"{t.override_where}.eksPropertiesOverride.podProperties"
    pod_over = override.podProperties if override is not None else None
    total = len(pod.containers) + len(pod.initContainers or ())
    for kind, defs, overs, out in (
        ("containers", pod.containers, pod_over.containers if pod_over else None, plan.containers),
        (
            "initContainers",
            pod.initContainers or [],
            pod_over.initContainers if pod_over else None,
            plan.init_containers,
        ),
    ):
        names = _eks_names(defs, total)
        by_name: dict[str, EksContainerOverride] = {}
        for i, o in enumerate(overs or ()):
            target = _match(plan, f"{ow}.{kind}[{i}]", o.name, names)
            if target is not None:
                by_name[target] = o
        for i, (c, name) in enumerate(zip(defs, names, strict=True)):
            cw = f"{where}.{kind}[{i}]"
            o = by_name.get(name, EksContainerOverride())
            limits, requests = _merge_eks_resources(c.resources, o.resources)
            _check_eks_resources(
                plan, cw if o.resources is None else f"{cw} (with overrides)", requests, limits
            )
            requests, limits = eks_resources(limits, requests)
            out.append(
                ContainerPlan(
                    name=name,
                    image=o.image or c.image,
                    command=substitute(o.command if o.command is not None else c.command, params),
                    args=substitute(o.args if o.args is not None else c.args, params),
                    env=_merge_env(
                        plan,
                        f"{cw}.env",
                        c.env,
                        f"{ow}.{kind} ({name}).env",
                        o.env,
                    ),
                    requests=requests,
                    limits=limits,
                    security_context=c.securityContext.model_dump(exclude_none=True)
                    if c.securityContext
                    else {},
                    volume_mounts=[m.model_dump(exclude_none=True) for m in c.volumeMounts or ()],
                    image_pull_policy=c.imagePullPolicy,
                )
            )
    everything = [*plan.containers, *plan.init_containers]
    for resource, name in (("cpu", "vCPU"), ("memory", "memory")):
        if everything and not any(resource in c.requests or resource in c.limits for c in everything):
            # AWS "Memory and vCPU considerations for AWS Batch on Amazon EKS": "At least one
            # vCPU requests or limits value must be specified" (and one memory value).
            plan.problems.append(
                f"{where}.containers: at least one {name} requests or limits value ({resource}) must be "
                "specified (AWS: EKS jobs get no default)"
            )
    plan.volumes.extend(v.model_dump(exclude_none=True) for v in pod.volumes or ())
    # Labels and annotations: the definition's, then the submission's (AWS: overrides add/replace).
    for source, md in (
        (f"{where}.metadata", pod.metadata),
        (
            f"{ow}.metadata",
            pod_over.metadata if pod_over else None,
        ),
    ):
        if md is None:
            continue
        if md.namespace is not None:
            # Refused by the CRD too; here for objects stored before that rule.
            plan.problems.append(
                f"{source}.namespace is not supported: a job's pods run in the BatchJob's namespace"
            )
        for key, value in (md.labels or {}).items():
            if not is_label_key(key) or not is_label_value(value):
                plan.problems.append(
                    f"{source}.labels[{key!r}]: {value!r} is not a valid Kubernetes label (keys: optional "
                    "DNS prefix and a name of up to 63 characters; values: up to 63 letters, digits, "
                    "'-', '_' or '.', starting and ending with a letter or digit)"
                )
            else:
                plan.labels[key] = value
        for key, value in (md.annotations or {}).items():
            if not is_label_key(key):
                plan.problems.append(f"{source}.annotations[{key!r}]: not a valid annotation key")
            else:
                plan.annotations[key] = value
    if pod.serviceAccountName:
        plan.pod_spec["serviceAccountName"] = pod.serviceAccountName
    if pod.dnsPolicy:
        plan.pod_spec["dnsPolicy"] = pod.dnsPolicy
    if pod.imagePullSecrets:
        plan.pod_spec["imagePullSecrets"] = [{"name": s.name} for s in pod.imagePullSecrets]
    if pod.shareProcessNamespace is not None:
        plan.pod_spec["shareProcessNamespace"] = pod.shareProcessNamespace
    plan.host_network = pod.hostNetwork
