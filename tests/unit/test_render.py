"""render/: a dispatched job -> the Pod of one attempt (names, overrides, env, resources, placement)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from batchyard.api.batchjob import BatchJob
from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.api.jobdefinition import JobDefinitionSpec
from batchyard.core.capacity import Resources
from batchyard.render import (
    DEFAULT_MEMORY_MIB,
    DEFAULT_VCPUS,
    job_demand,
    pod_name,
    render_pod,
    render_problems,
)

UID = "0b6f2a4c-5d1e-4c7a-9e0f-1a2b3c4d5e6f"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# --- builders ------------------------------------------------------------------------------------


def a_job(
    name: str = "j1",
    *,
    namespace: str = "team-a",
    uid: str = UID,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> BatchJob:
    body: dict[str, Any] = {
        "apiVersion": "batchyard.io/v1alpha1",
        "kind": "BatchJob",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "annotations": annotations or {}},
        "spec": {"jobQueue": "q", "jobDefinition": "def", **spec},
    }
    return BatchJob.model_validate(body)


def a_definition(**spec: Any) -> JobDefinitionSpec:
    return JobDefinitionSpec.model_validate({"type": "container", **spec})


def ecs(image: str | None = "busybox", **props: Any) -> dict[str, Any]:
    """containerProperties of a job definition."""
    return {"containerProperties": ({"image": image} if image else {}) | props}


def eks(*containers: dict[str, Any], **pod: Any) -> dict[str, Any]:
    """eksProperties of a job definition."""
    return {"eksProperties": {"podProperties": {"containers": list(containers), **pod}}}


def ctr(name: str | None = None, image: str = "busybox", **fields: Any) -> dict[str, Any]:
    """One EKS container (AWS: an EKS job needs a vCPU and a memory value; ``resources=None`` for none)."""
    fields.setdefault("resources", {"limits": {"cpu": "1", "memory": "1024Mi"}})
    if fields["resources"] is None:
        del fields["resources"]
    return ({"name": name} if name else {}) | {"image": image} | fields


def rr(vcpu: str | None = None, memory: str | None = None, gpu: str | None = None) -> list[dict[str, str]]:
    """ECS resourceRequirements."""
    pairs = (("VCPU", vcpu), ("MEMORY", memory), ("GPU", gpu))
    return [{"type": t, "value": v} for t, v in pairs if v is not None]


def render(job: BatchJob, definition: JobDefinitionSpec, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"revision": 1, "attempt": 1, "queue": "q", "compute_environment": "ce-1"} | kw
    return render_pod(job, definition, **args)


def container(pod: dict[str, Any], name: str = "default") -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in pod["spec"]["containers"] if c["name"] == name]
    assert len(found) == 1, [c["name"] for c in pod["spec"]["containers"]]
    return found[0]


def env_of(c: dict[str, Any]) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in c["env"]}


def batch_vars(c: dict[str, Any]) -> dict[str, str | None]:
    return {k: v for k, v in env_of(c).items() if k.startswith("AWS_BATCH")}


# --- pod_name --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "attempt", "index", "expected"),
    [
        pytest.param("train", 1, None, "train-a1", id="single job, first attempt"),
        pytest.param("train", 3, None, "train-a3", id="retry gets a new name"),
        pytest.param("train", 2, 17, "train-17-a2", id="array child carries its index"),
        pytest.param("train", 1, 0, "train-0-a1", id="array index 0 is not mistaken for no index"),
    ],
)
def test_pod_name_readable_forms(job: str, attempt: int, index: int | None, expected: str) -> None:
    assert pod_name(job, attempt, index) == expected


@pytest.mark.parametrize(
    "job",
    [
        pytest.param("x" * 63, id="job name already 63 chars"),
        pytest.param("a" * 253, id="longest Kubernetes object name"),
        pytest.param("nightly.etl.v2", id="dots are valid in object names but not in hostnames"),
        pytest.param("Upper_Case-job", id="invalid characters"),
        pytest.param("-", id="nothing usable left after sanitising"),
        pytest.param("x-1", id="ends in -digits, could clash with a child's suffix"),
    ],
)
@pytest.mark.parametrize("index", [None, 9999])
def test_pod_name_is_always_a_dns_label_of_at_most_63(job: str, index: int | None) -> None:
    name = pod_name(job, 100, index)
    assert len(name) <= 63
    assert DNS_LABEL.match(name), name
    assert name.endswith("-a100")
    assert pod_name(job, 100, index) == name  # deterministic


def test_pod_names_are_unique_per_job_index_and_attempt() -> None:
    jobs = ["x", "x-1", "x-1-2", "x-a1", "X", "x.1", "a" * 100, "a" * 101, "a" * 100 + "b"]
    names = [pod_name(j, a, i) for j in jobs for a in (1, 2, 12) for i in (None, 0, 1, 2, 12)]
    assert len(set(names)) == len(names)


def test_pod_name_refuses_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        pod_name("j", 0, None)


# --- Ref:: substitution ----------------------------------------------------------------------------

FFMPEG = ["ffmpeg", "-i", "Ref::inputfile", "-c", "Ref::codec", "-o", "Ref::outputfile"]


@pytest.mark.parametrize(
    ("defaults", "submitted", "expected"),
    [
        pytest.param(
            {"codec": "mp4"},
            {"inputfile": "in.mov", "outputfile": "out.mp4"},
            ["ffmpeg", "-i", "in.mov", "-c", "mp4", "-o", "out.mp4"],
            id="definition default fills what the job leaves out",
        ),
        pytest.param(
            {"codec": "mp4"},
            {"inputfile": "a", "outputfile": "b", "codec": "mkv"},
            ["ffmpeg", "-i", "a", "-c", "mkv", "-o", "b"],
            id="job parameters take precedence over defaults",
        ),
        pytest.param(
            None,
            {"inputfile": "a"},
            ["ffmpeg", "-i", "a", "-c", "Ref::codec", "-o", "Ref::outputfile"],
            id="unknown placeholders stay literal as on AWS",
        ),
    ],
)
def test_command_parameters(
    defaults: dict[str, str] | None, submitted: dict[str, str], expected: list[str]
) -> None:
    d = a_definition(parameters=defaults, **ecs(command=FFMPEG))
    pod = render(a_job(parameters=submitted), d)
    # AWS: containerProperties.command is Docker's CMD: args, the image's ENTRYPOINT stays.
    assert container(pod)["args"] == expected
    assert "command" not in container(pod)
    assert render_problems(a_job(parameters=submitted), d) == []


def test_eks_command_and_args_are_substituted_and_so_is_an_override_command() -> None:
    d = a_definition(
        parameters={"n": "60"},
        **eks(ctr("main", command=["sleep"], args=["Ref::n"]), ctr("side", command=["echo", "Ref::n"])),
    )
    job = a_job(
        parameters={"n": "5"},
        eksPropertiesOverride={
            "podProperties": {"containers": [{"name": "side", "command": ["printf", "--n=Ref::n"]}]}
        },
    )
    pod = render(job, d)
    assert container(pod, "main")["command"] == ["sleep"]
    assert container(pod, "main")["args"] == ["5"]
    assert container(pod, "side")["command"] == ["printf", "--n=5"]


# --- overrides ---------------------------------------------------------------------------------------


def test_container_overrides_replace_command_and_merge_environment() -> None:
    d = a_definition(
        **ecs(
            command=["echo", "definition"],
            environment=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        )
    )
    job = a_job(
        containerOverrides={
            "command": ["echo", "override"],
            "environment": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
        }
    )
    c = container(render(job, d))
    assert c["args"] == ["echo", "override"]
    assert "command" not in c
    user_env = [(e["name"], e.get("value")) for e in c["env"] if not e["name"].startswith("AWS_BATCH")]
    assert user_env == [("A", "1"), ("B", "20"), ("C", "3")]


def test_resource_requirements_override_replaces_per_type() -> None:
    d = a_definition(**ecs(resourceRequirements=rr(vcpu="1", memory="1024")))
    job = a_job(containerOverrides={"resourceRequirements": rr(memory="8192")})
    c = container(render(job, d))
    assert c["resources"]["requests"] == {"cpu": "1", "memory": "8192Mi"}
    assert job_demand(job, d) == Resources(1000, 8192, 0)


def test_deprecated_vcpus_override_replaces_deprecated_vcpus() -> None:
    d = a_definition(**ecs(vcpus=1, memory=512))
    job = a_job(containerOverrides={"vcpus": 4, "memory": 4096})
    assert job_demand(job, d) == Resources(4000, 4096, 0)
    assert render_problems(job, d) == []


def test_deprecated_override_cannot_replace_resource_requirements() -> None:
    d = a_definition(**ecs(resourceRequirements=rr(vcpu="1", memory="1024")))
    job = a_job(containerOverrides={"vcpus": 4})
    problems = render_problems(job, d)
    assert len(problems) == 1
    assert "spec.containerOverrides.vcpus" in problems[0] and "deprecated key" in problems[0]
    assert job_demand(job, d).milli_cpu == 1000  # the definition's resourceRequirements stand


def test_eks_overrides_are_matched_to_containers_by_name() -> None:
    d = a_definition(
        **eks(
            ctr("main", image="app:1", env=[{"name": "MODE", "value": "a"}]),
            ctr("sidecar", image="proxy:1", resources={"limits": {"cpu": "0.5", "memory": "64Mi"}}),
        )
    )
    job = a_job(
        eksPropertiesOverride={
            "podProperties": {
                "containers": [
                    {"name": "main", "image": "app:2", "env": [{"name": "MODE", "value": "b"}]},
                    {"name": "sidecar", "resources": {"limits": {"memory": "128Mi"}}},
                ],
                "metadata": {"labels": {"team": "ml"}},
            }
        }
    )
    pod = render(job, d)
    main, side = container(pod, "main"), container(pod, "sidecar")
    assert main["image"] == "app:2"
    assert env_of(main)["MODE"] == "b"
    assert side["image"] == "proxy:1"
    # The memory override replaces memory only; the definition's cpu stays.
    assert side["resources"]["limits"] == {"cpu": "0.5", "memory": "128Mi"}
    assert side["resources"]["requests"] == {"cpu": "0.5", "memory": "128Mi"}
    assert pod["metadata"]["labels"]["team"] == "ml"
    assert render_problems(job, d) == []


def test_unnamed_eks_override_applies_to_the_only_container() -> None:
    d = a_definition(**eks(ctr(command=["sleep", "60"])))
    job = a_job(eksPropertiesOverride={"podProperties": {"containers": [{"command": ["sleep", "1"]}]}})
    pod = render(job, d)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["default"]
    assert container(pod)["command"] == ["sleep", "1"]


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        pytest.param({"name": "nope", "image": "x"}, "'nope' matches no container", id="unknown name"),
        pytest.param({"image": "x"}, "name is required", id="no name with several containers"),
    ],
)
def test_eks_override_that_targets_no_unique_container_is_a_problem(
    override: dict[str, Any], fragment: str
) -> None:
    d = a_definition(**eks(ctr("a"), ctr("b")))
    job = a_job(eksPropertiesOverride={"podProperties": {"containers": [override]}})
    problems = render_problems(job, d)
    assert len(problems) == 1
    assert "spec.eksPropertiesOverride.podProperties.containers[0].name" in problems[0]
    assert fragment in problems[0]


# --- AWS_BATCH_* -------------------------------------------------------------------------------------


def test_single_job_sees_exactly_the_aws_batch_variables() -> None:
    pod = render(a_job(), a_definition(**ecs()), attempt=2, queue="high", compute_environment="spot-ce")
    assert batch_vars(container(pod)) == {
        "AWS_BATCH_CE_NAME": "spot-ce",
        "AWS_BATCH_JQ_NAME": "high",
        "AWS_BATCH_JOB_ATTEMPT": "2",
        "AWS_BATCH_JOB_ID": UID,
    }


def test_array_child_sees_its_index_size_and_child_job_id() -> None:
    job = a_job(arrayProperties={"size": 100})
    pod = render(job, a_definition(**ecs()), array_index=42)
    assert batch_vars(container(pod)) == {
        "AWS_BATCH_CE_NAME": "ce-1",
        "AWS_BATCH_JQ_NAME": "q",
        "AWS_BATCH_JOB_ATTEMPT": "1",
        "AWS_BATCH_JOB_ID": f"{UID}:42",
        "AWS_BATCH_JOB_ARRAY_INDEX": "42",
        "AWS_BATCH_JOB_ARRAY_SIZE": "100",
    }
    assert pod["metadata"]["annotations"]["batchyard.io/job-id"] == f"{UID}:42"


def test_every_container_and_init_container_gets_the_variables_first() -> None:
    d = a_definition(
        **eks(
            ctr("a", env=[{"name": "X", "value": "$(AWS_BATCH_JOB_ID)"}]), ctr("b"), initContainers=[ctr("i")]
        )
    )
    pod = render(a_job(), d)
    for c in [*pod["spec"]["containers"], *pod["spec"]["initContainers"]]:
        assert batch_vars(c)["AWS_BATCH_JOB_ID"] == UID
    names = [e["name"] for e in container(pod, "a")["env"]]
    # User variables come after AWS_BATCH_*, so Kubernetes expands $(AWS_BATCH_JOB_ID) in them.
    assert names[-1] == "X" and all(n.startswith("AWS_BATCH") for n in names[:-1])


@pytest.mark.parametrize(
    ("definition", "job", "field"),
    [
        pytest.param(
            ecs(environment=[{"name": "AWS_BATCH_JOB_ID", "value": "spoof"}]),
            {},
            "jobDefinition.containerProperties.environment",
            id="in the definition's environment",
        ),
        pytest.param(
            ecs(),
            {"containerOverrides": {"environment": [{"name": "AWS_BATCHX", "value": "1"}]}},
            "spec.containerOverrides.environment",
            id="in containerOverrides (prefix without underscore too)",
        ),
        pytest.param(
            eks(ctr("main", env=[{"name": "AWS_BATCH_CE_NAME", "value": "x"}])),
            {},
            "jobDefinition.eksProperties.podProperties.containers[0].env",
            id="in an EKS container env",
        ),
        pytest.param(
            eks(ctr("main")),
            {
                "eksPropertiesOverride": {
                    "podProperties": {"containers": [{"name": "main", "env": [{"name": "AWS_BATCH_Q"}]}]}
                }
            },
            "spec.eksPropertiesOverride.podProperties.containers (main).env",
            id="in an EKS override",
        ),
    ],
)
def test_reserved_environment_names_are_refused(
    definition: dict[str, Any], job: dict[str, Any], field: str
) -> None:
    d, j = a_definition(**definition), a_job(**job)
    problems = render_problems(j, d)
    assert len(problems) == 1
    assert problems[0].startswith(field)
    assert "AWS_BATCH" in problems[0]
    # Even when rendered anyway, the user's value never shadows the real one.
    for c in render(j, d)["spec"]["containers"]:
        names = [e["name"] for e in c["env"]]
        assert len(names) == len(set(names))
        assert env_of(c).get("AWS_BATCH_JOB_ID") == UID


# --- vCPU / memory / GPU -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("definition", "requests", "limits", "demand"),
    [
        pytest.param(
            ecs(resourceRequirements=rr(vcpu="0.25", memory="512")),
            {"cpu": "250m", "memory": "512Mi"},
            {"memory": "512Mi"},
            Resources(250, 512, 0),
            id="ECS: fractional vCPU is a request, memory is the hard limit",
        ),
        pytest.param(
            ecs(vcpus=2, memory=2000),
            {"cpu": "2", "memory": "2000Mi"},
            {"memory": "2000Mi"},
            Resources(2000, 2000, 0),
            id="ECS: deprecated vcpus/memory",
        ),
        pytest.param(
            ecs(resourceRequirements=rr(vcpu="4", memory="16384", gpu="2")),
            {"cpu": "4", "memory": "16384Mi", "nvidia.com/gpu": "2"},
            {"memory": "16384Mi", "nvidia.com/gpu": "2"},
            Resources(4000, 16384, 2),
            id="ECS: GPUs are requested and limited equally",
        ),
        pytest.param(
            eks(ctr(resources={"limits": {"cpu": "1", "memory": "1024Mi"}})),
            {"cpu": "1", "memory": "1024Mi"},
            {"cpu": "1", "memory": "1024Mi"},
            Resources(1000, 1024, 0),
            id="EKS: limits are copied to requests (AWS example pod spec)",
        ),
        pytest.param(
            eks(ctr(resources={"requests": {"cpu": "1"}, "limits": {"cpu": "4", "memory": "2048Mi"}})),
            {"cpu": "1", "memory": "2048Mi"},
            {"cpu": "4", "memory": "2048Mi"},
            Resources(1000, 2048, 0),
            id="EKS: soft vCPU, request 1 limit 4, demand is the request",
        ),
        pytest.param(
            eks(ctr(resources={"requests": {"cpu": "0.5", "memory": "256Mi", "nvidia.com/gpu": "1"}})),
            {"cpu": "0.5", "memory": "256Mi", "nvidia.com/gpu": "1"},
            {"memory": "256Mi", "nvidia.com/gpu": "1"},
            Resources(500, 256, 1),
            id="EKS: requests-only memory and GPU become limits too",
        ),
        pytest.param(
            ecs(),
            {"cpu": str(DEFAULT_VCPUS), "memory": f"{DEFAULT_MEMORY_MIB}Mi"},
            {"memory": f"{DEFAULT_MEMORY_MIB}Mi"},
            Resources(DEFAULT_VCPUS * 1000, DEFAULT_MEMORY_MIB, 0),
            id="nothing given: the documented defaults",
        ),
        pytest.param(
            eks(ctr(resources={"limits": {"memory": "64Mi"}})),
            {"cpu": str(DEFAULT_VCPUS), "memory": "64Mi"},
            {"memory": "64Mi"},
            Resources(DEFAULT_VCPUS * 1000, 64, 0),
            id="only the missing dimension is defaulted",
        ),
    ],
)
def test_resources_follow_aws_rules(
    definition: dict[str, Any], requests: dict[str, str], limits: dict[str, str], demand: Resources
) -> None:
    d = a_definition(**definition)
    c = container(render(a_job(), d))
    assert c["resources"] == {"requests": requests, "limits": limits}
    assert job_demand(a_job(), d) == demand


def test_multi_container_demand_is_the_sum_and_init_containers_the_peak() -> None:
    def res(cpu: str, mem: str) -> dict[str, Any]:
        return {"requests": {"cpu": cpu, "memory": mem}}

    d = a_definition(
        **eks(
            ctr("a", resources=res("1", "512Mi")),
            ctr("b", resources=res("0.25", "256Mi")),
            initContainers=[ctr("i", resources=res("2", "128Mi"))],
        )
    )
    # cpu: max(1 + 0.25, 2) = 2; memory: max(512 + 256, 128) = 768.
    assert job_demand(a_job(), d) == Resources(2000, 768, 0)


def test_gpu_pod_tolerates_the_gpu_taint_and_cpu_pod_does_not() -> None:
    gpu = render(a_job(), a_definition(**ecs(resourceRequirements=rr(vcpu="1", memory="8", gpu="1"))))
    cpu = render(a_job(), a_definition(**ecs(resourceRequirements=rr(vcpu="1", memory="8"))))
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert toleration in gpu["spec"]["tolerations"]
    assert toleration not in cpu["spec"]["tolerations"]


@pytest.mark.parametrize(
    ("resources", "override", "fragment"),
    [
        pytest.param(
            {"limits": {"nvidia.com/gpu": "2", "memory": "8Mi", "cpu": "1"}},
            {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "2"}},
            "requests.nvidia.com/gpu (1) must equal limits.nvidia.com/gpu (2)",
            id="GPU requests differ from limits after the override",
        ),
        pytest.param(
            {"limits": {"memory": "8Mi", "cpu": "1"}},
            {"requests": {"memory": "16Mi"}, "limits": {"memory": "8Mi"}},
            "requests.memory (16Mi) must equal limits.memory (8Mi)",
            id="memory requests differ from limits",
        ),
        pytest.param(
            {"limits": {"memory": "8Mi"}},
            {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
            "requests.cpu (2) must be less than or equal to limits.cpu (1)",
            id="cpu request above its limit",
        ),
    ],
)
def test_eks_resource_rules_are_checked_after_overrides(
    resources: dict[str, Any], override: dict[str, Any], fragment: str
) -> None:
    d = a_definition(**eks(ctr("main", resources=resources)))
    job = a_job(
        eksPropertiesOverride={"podProperties": {"containers": [{"name": "main", "resources": override}]}}
    )
    problems = render_problems(job, d)
    assert len(problems) == 1
    assert problems[0].startswith("jobDefinition.eksProperties.podProperties.containers[0]")
    assert fragment in problems[0]


# --- placement -------------------------------------------------------------------------------------

CE_TOLERATIONS = [
    {"key": "batchyard.io/compute-environment", "operator": "Equal", "value": "ce-1", "effect": "NoSchedule"},
    {"key": "batchyard.io/compute-environment", "operator": "Equal", "value": "ce-1", "effect": "NoExecute"},
]


def a_ce(**spec: Any) -> ComputeEnvironment:
    return ComputeEnvironment.model_validate(
        {"metadata": {"name": "ce-1", "uid": "ce-uid-1"}, "spec": {"type": "UNMANAGED"} | spec}
    )


@pytest.mark.parametrize(
    ("ce", "selector", "extra_tolerations"),
    [
        pytest.param("ce-1", {"batchyard.io/compute-environment": "ce-1"}, [], id="CE given by name"),
        pytest.param(
            a_ce(),
            {"batchyard.io/compute-environment": "ce-1"},
            [],
            id="CE object without extra labels or taints",
        ),
        pytest.param(
            a_ce(
                type="MANAGED",
                computeResources={"maxvCpus": 8},
                provider={"type": "kwok"},
                nodeLabels={"pool": "gpu"},
                nodeTaints=[
                    {"key": "dedicated", "value": "batch", "effect": "NoSchedule"},
                    {"key": "spot", "effect": "NoExecute"},
                ],
            ),
            {"batchyard.io/compute-environment": "ce-1", "pool": "gpu"},
            [
                {"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"},
                {"key": "spot", "operator": "Exists", "effect": "NoExecute"},
            ],
            id="managed CE: its own label plus nodeLabels, its taints tolerated",
        ),
        pytest.param(
            a_ce(nodeLabels={"node-role": "batch"}),
            {"node-role": "batch"},
            [],
            id="unmanaged CE with nodeLabels selects the user's nodes by them alone",
        ),
    ],
)
def test_compute_environment_placement(
    ce: ComputeEnvironment | str, selector: dict[str, str], extra_tolerations: list[dict[str, str]]
) -> None:
    pod = render(a_job(), a_definition(**ecs()), compute_environment=ce)
    assert pod["spec"]["nodeSelector"] == selector
    assert pod["spec"]["tolerations"] == CE_TOLERATIONS + extra_tolerations
    assert env_of(container(pod))["AWS_BATCH_CE_NAME"] == "ce-1"


# --- metadata ----------------------------------------------------------------------------------------


def test_pod_is_owned_by_its_batchjob_in_the_jobs_namespace() -> None:
    pod = render(a_job("train", namespace="ml"), a_definition(**ecs()), attempt=2)
    assert pod["apiVersion"] == "v1" and pod["kind"] == "Pod"
    assert pod["metadata"]["name"] == "train-a2"
    assert pod["metadata"]["namespace"] == "ml"
    assert pod["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "batchyard.io/v1alpha1",
            "kind": "BatchJob",
            "name": "train",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 30
    assert "priorityClassName" not in pod["spec"]


def test_labels_identify_job_attempt_and_child_and_are_all_valid() -> None:
    long_name = "a" * 200
    job = a_job(long_name, arrayProperties={"size": 3})
    pod = render(job, a_definition(**ecs()), attempt=4, array_index=2, queue="q" * 100)
    labels = pod["metadata"]["labels"]
    assert labels["batchyard.io/job-uid"] == UID
    assert labels["batchyard.io/attempt"] == "4"
    assert labels["batchyard.io/array-index"] == "2"
    assert labels["batchyard.io/compute-environment"] == "ce-1"
    assert labels["app.kubernetes.io/managed-by"] == "batchyard"
    assert labels["batch.amazonaws.com/job-id"] == UID
    for key, value in labels.items():
        assert len(value) <= 63 and LABEL_VALUE.match(value), (key, value)
    # Long values are shortened, not dropped, and stay distinguishable.
    assert labels["batchyard.io/job-name"].startswith("aaaa")
    other = render(a_job("a" * 201, arrayProperties={"size": 3}), a_definition(**ecs()), array_index=2)
    assert other["metadata"]["labels"]["batchyard.io/job-name"] != labels["batchyard.io/job-name"]


def test_single_job_has_no_array_index_label() -> None:
    assert "batchyard.io/array-index" not in render(a_job(), a_definition(**ecs()))["metadata"]["labels"]


def test_kwok_annotations_are_copied_and_nothing_else() -> None:
    job = a_job(
        annotations={
            "kwok.batchyard.io/exit-code": "3",
            "kwok.batchyard.io/delay": "2s",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "team": "a",
        }
    )
    annotations = render(job, a_definition(**ecs()))["metadata"]["annotations"]
    assert annotations["kwok.batchyard.io/exit-code"] == "3"
    assert annotations["kwok.batchyard.io/delay"] == "2s"
    assert "kubectl.kubernetes.io/last-applied-configuration" not in annotations
    assert "team" not in annotations
    assert annotations["batchyard.io/job-id"] == UID
    assert annotations["batchyard.io/job-definition"] == "def:1"


def test_pod_metadata_from_definition_and_override_cannot_replace_operator_labels() -> None:
    d = a_definition(
        **eks(ctr(), metadata={"labels": {"env": "test", "tier": "a"}, "annotations": {"x/y": "1"}})
    )
    job = a_job(eksPropertiesOverride={"podProperties": {"metadata": {"labels": {"tier": "b"}}}})
    md = render(job, d)["metadata"]
    assert md["labels"]["env"] == "test"
    assert md["labels"]["tier"] == "b"
    assert md["annotations"]["x/y"] == "1"


def test_rendering_is_deterministic() -> None:
    d = a_definition(**eks(ctr("a"), ctr("b"), volumes=[{"name": "scratch", "emptyDir": {}}]))
    assert render(a_job(), d) == render(a_job(), d)


# --- other problems ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("definition", "job", "fragment"),
    [
        pytest.param(
            ecs(image=None), {}, "jobDefinition.containerProperties.image is required", id="no image"
        ),
        pytest.param(
            {"type": "multinode"},
            {},
            "jobDefinition.nodeProperties is required",
            id="multinode without nodes",
        ),
        pytest.param({}, {}, "exactly one of", id="container type without any properties"),
        pytest.param(
            ecs(),
            {"eksPropertiesOverride": {"podProperties": {}}},
            "spec.eksPropertiesOverride can't be used",
            id="EKS override on a containerProperties definition",
        ),
        pytest.param(
            ecs(volumes=[{"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}]),
            {},
            "EFS volumes are not supported",
            id="EFS volume",
        ),
        pytest.param(
            eks(ctr(), metadata={"labels": {"bad": "has space"}}),
            {},
            "metadata.labels['bad']",
            id="label value Kubernetes would refuse",
        ),
    ],
)
def test_unrunnable_jobs_have_problems_naming_the_field(
    definition: dict[str, Any], job: dict[str, Any], fragment: str
) -> None:
    d = (
        a_definition(**definition)
        if "type" not in definition
        else JobDefinitionSpec.model_validate(definition)
    )
    problems = render_problems(a_job(**job), d)
    assert any(fragment in p for p in problems), problems


# --- ECS-style details -------------------------------------------------------------------------------


def test_containerproperties_security_volumes_and_linux_parameters() -> None:
    d = a_definition(
        **ecs(
            user="1000:100",
            privileged=True,
            readonlyRootFilesystem=True,
            volumes=[{"name": "Data_Dir", "host": {"sourcePath": "/mnt/data"}}, {"name": "scratch"}],
            mountPoints=[
                {"sourceVolume": "Data_Dir", "containerPath": "/data", "readOnly": True},
                {"sourceVolume": "scratch", "containerPath": "/scratch"},
            ],
            linuxParameters={"sharedMemorySize": 256, "tmpfs": [{"containerPath": "/tmp", "size": 64}]},
        )
    )
    pod = render(a_job(), d)
    c = container(pod)
    assert c["securityContext"] == {
        "runAsUser": 1000,
        "runAsGroup": 100,
        "privileged": True,
        "readOnlyRootFilesystem": True,
    }
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert volumes[mounts["/data"]["name"]]["hostPath"] == {"path": "/mnt/data"}
    assert mounts["/data"]["readOnly"] is True
    assert volumes[mounts["/scratch"]["name"]] == {"name": "scratch", "emptyDir": {}}
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "256Mi"}
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Mi"}
    assert all(DNS_LABEL.match(name) for name in volumes)


def test_containerproperties_pods_use_pod_networking_and_eks_pods_default_to_host() -> None:
    ecs_pod = render(a_job(), a_definition(**ecs()))
    eks_pod = render(a_job(), a_definition(**eks(ctr())))
    eks_pod_net = render(a_job(), a_definition(**eks(ctr(), hostNetwork=False)))
    configured = render(a_job(), a_definition(**eks(ctr())), default_host_network=False)
    assert "hostNetwork" not in ecs_pod["spec"]
    # AWS: unset hostNetwork -> hostNetwork=true and dnsPolicy=ClusterFirstWithHostNet.
    assert eks_pod["spec"]["hostNetwork"] is True
    assert eks_pod["spec"]["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert eks_pod_net["spec"]["hostNetwork"] is False
    assert "dnsPolicy" not in eks_pod_net["spec"]
    assert "hostNetwork" not in configured["spec"]


# --- pasted from the AWS user guide ------------------------------------------------------------------

FETCH_AND_RUN = {
    "jobDefinitionName": "fetch_and_run",
    "type": "container",
    "containerProperties": {
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/fetch_and_run",
        "resourceRequirements": [{"type": "MEMORY", "value": "2000"}, {"type": "VCPU", "value": "2"}],
        "command": ["myjob.sh", "60"],
        "jobRoleArn": "arn:aws:iam::123456789012:role/AWSBatchS3ReadOnly",
        "environment": [
            {"name": "BATCH_FILE_S3_URL", "value": "s3://amzn-s3-demo-source-bucket/myjob.sh"},
            {"name": "BATCH_FILE_TYPE", "value": "script"},
        ],
        "user": "nobody",
    },
}

EKS_SLEEP = {
    "jobDefinitionName": "MyJobOnEks_Sleep",
    "type": "container",
    "eksProperties": {
        "podProperties": {
            "hostNetwork": True,
            "containers": [
                {
                    "image": "public.ecr.aws/amazonlinux/amazonlinux:2",
                    "command": ["sleep", "60"],
                    "resources": {"limits": {"cpu": "1", "memory": "1024Mi"}},
                }
            ],
            "metadata": {"labels": {"environment": "test"}},
        }
    },
}


def test_user_guide_fetch_and_run_definition_renders() -> None:
    _, d = JobDefinitionSpec.from_aws(FETCH_AND_RUN)
    job = a_job(containerOverrides={"environment": [{"name": "BATCH_FILE_TYPE", "value": "zip"}]})
    assert render_problems(job, d) == []
    c = container(render(job, d))
    assert c["image"] == "123456789012.dkr.ecr.us-east-1.amazonaws.com/fetch_and_run"
    # AWS: the image's ENTRYPOINT (fetch_and_run.sh) runs with CMD ["myjob.sh", "60"].
    assert c["args"] == ["myjob.sh", "60"]
    assert "command" not in c
    assert env_of(c)["BATCH_FILE_TYPE"] == "zip"
    assert c["resources"]["requests"] == {"cpu": "2", "memory": "2000Mi"}
    assert "securityContext" not in c  # "nobody" is a user name, not a uid
    assert job_demand(job, d) == Resources(2000, 2000, 0)


def test_user_guide_eks_sleep_definition_renders_like_the_aws_pod_spec() -> None:
    _, d = JobDefinitionSpec.from_aws(EKS_SLEEP)
    job = a_job()
    assert render_problems(job, d) == []
    pod = render(job, d)
    c = container(pod)  # AWS: an unnamed single container is called "default"
    assert c["command"] == ["sleep", "60"]
    # AWS "Memory and vCPU considerations": limits {cpu: 1, memory: 1024Mi} -> same requests.
    assert c["resources"] == {
        "limits": {"cpu": "1", "memory": "1024Mi"},
        "requests": {"cpu": "1", "memory": "1024Mi"},
    }
    assert pod["metadata"]["labels"]["environment"] == "test"
    assert pod["spec"]["hostNetwork"] is True


# --- ecsProperties (ECS multi-container) -------------------------------------------------------------


def test_ecs_task_containers_become_pod_containers_with_overrides_by_name() -> None:
    d = a_definition(
        ecsProperties={
            "taskProperties": [
                {
                    "containers": [
                        {"name": "app", "image": "app:1", "resourceRequirements": rr(vcpu="1", memory="512")},
                        {"name": "Log_Router", "image": "fluent:1", "resourceRequirements": rr(vcpu="0.25")},
                    ],
                    "pidMode": "task",
                }
            ]
        }
    )
    job = a_job(
        ecsPropertiesOverride={
            "taskProperties": [{"containers": [{"name": "app", "command": ["run", "--fast"]}]}]
        }
    )
    assert render_problems(job, d) == []
    pod = render(job, d)
    names = [c["name"] for c in pod["spec"]["containers"]]
    assert names[0] == "app" and DNS_LABEL.match(names[1])  # "Log_Router" made a valid name
    assert container(pod, "app")["args"] == ["run", "--fast"]
    assert pod["spec"]["shareProcessNamespace"] is True
    assert job_demand(job, d) == Resources(1250, 512, 0)


# --- tag propagation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("definition_propagates", "job_propagates", "expected"),
    [
        pytest.param(
            True, None, {"team": "job-team", "cost": "1"}, id="definition turns it on; job tags win"
        ),
        pytest.param(True, False, {}, id="the job's setting overrides the definition's"),
        pytest.param(None, True, {"team": "job-team", "cost": "1"}, id="the job alone turns it on"),
        pytest.param(None, None, {}, id="off unless asked for"),
    ],
)
def test_propagated_tags_become_annotations(
    definition_propagates: bool | None, job_propagates: bool | None, expected: dict[str, str]
) -> None:
    d = a_definition(propagateTags=definition_propagates, tags={"team": "def-team", "cost": "1"}, **ecs())
    job = a_job(propagateTags=job_propagates, tags={"team": "job-team", "Bad Key": "x"})
    annotations = render(job, d)["metadata"]["annotations"]
    copied = {k: v for k, v in annotations.items() if k in ("team", "cost", "Bad Key")}
    assert copied == expected


def test_more_than_50_combined_tags_fail_the_job() -> None:
    d = a_definition(tags={f"d{i}": "x" for i in range(30)}, **ecs())
    job = a_job(propagateTags=True, tags={f"j{i}": "x" for i in range(21)})
    problems = render_problems(job, d)
    assert problems == [
        "propagateTags: the job and job definition have 51 tags combined; at most 50 can be propagated"
    ]
    assert render_problems(a_job(tags={f"j{i}": "x" for i in range(21)}), d) == []


@pytest.mark.parametrize(
    ("containers", "missing"),
    [
        pytest.param(
            [ctr(resources=None)], ["vCPU", "memory"], id="AWS: no cpu and no memory at all: refused"
        ),
        pytest.param([ctr(resources={"limits": {"cpu": "1"}})], ["memory"], id="cpu only: memory missing"),
        pytest.param(
            [ctr(resources={"requests": {"memory": "64Mi"}})], ["vCPU"], id="memory only: vCPU missing"
        ),
        pytest.param(
            [
                ctr("a", resources={"limits": {"cpu": "1"}}),
                ctr("b", resources={"limits": {"memory": "64Mi"}}),
            ],
            [],
            id="one value each, on different containers: accepted",
        ),
    ],
)
def test_an_eks_job_needs_a_vcpu_and_a_memory_value(
    containers: list[dict[str, Any]], missing: list[str]
) -> None:
    problems = render_problems(a_job(), a_definition(**eks(*containers)))

    assert [p for p in problems if "at least one" in p] == [
        f"jobDefinition.eksProperties.podProperties.containers: at least one {name} requests or limits value "
        f"({'cpu' if name == 'vCPU' else 'memory'}) must be specified (AWS: EKS jobs get no default)"
        for name in missing
    ]


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("definition", id="podProperties.metadata.namespace"),
        pytest.param("override", id="eksPropertiesOverride metadata.namespace"),
    ],
)
def test_a_pod_namespace_is_refused_not_ignored(where: str) -> None:
    if where == "definition":
        job, d = a_job(), a_definition(**eks(ctr(), metadata={"namespace": "elsewhere"}))
    else:
        job = a_job(eksPropertiesOverride={"podProperties": {"metadata": {"namespace": "elsewhere"}}})
        d = a_definition(**eks(ctr()))

    assert any("namespace is not supported" in p for p in render_problems(job, d))


def test_a_non_essential_ecs_container_becomes_a_native_sidecar() -> None:
    d = a_definition(
        ecsProperties={
            "taskProperties": [
                {
                    "containers": [
                        {"name": "app", "image": "app:1", "resourceRequirements": rr(vcpu="1", memory="512")},
                        {
                            "name": "proxy",
                            "image": "envoy:1",
                            "essential": False,
                            "resourceRequirements": rr(vcpu="0.5"),
                        },
                    ]
                }
            ]
        }
    )
    pod = render(a_job(), d)

    assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]
    sidecar = pod["spec"]["initContainers"][0]
    # K8s native sidecar: stopped by the kubelet once the essential containers ended, so it
    # never keeps the job RUNNING, and its requests add to the pod's.
    assert (sidecar["name"], sidecar["restartPolicy"]) == ("proxy", "Always")
    assert job_demand(a_job(), d) == Resources(1500, 512, 0)


def test_a_task_without_an_essential_container_is_refused() -> None:
    d = a_definition(
        ecsProperties={"taskProperties": [{"containers": [{"name": "a", "image": "a", "essential": False}]}]}
    )

    assert any("at least one container must be essential" in p for p in render_problems(a_job(), d))


def test_ecs_secrets_become_secret_key_references() -> None:
    d = a_definition(**ecs(secrets=[{"name": "DB_PASSWORD", "valueFrom": "db-credentials:password"}]))
    c = container(render(a_job(), d))

    assert {
        "name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "password"}},
    } in c["env"]
    assert render_problems(a_job(), d) == []


@pytest.mark.parametrize(
    "value_from",
    [
        pytest.param(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf", id="a Secrets Manager ARN"
        ),
        pytest.param("arn:aws:ssm:us-east-1:123456789012:parameter/db", id="an SSM parameter ARN"),
        pytest.param("db-credentials", id="no key"),
        pytest.param("Bad_Name:key", id="not a Secret name"),
    ],
)
def test_ecs_secrets_of_another_form_are_refused_naming_the_variable(value_from: str) -> None:
    d = a_definition(**ecs(secrets=[{"name": "DB_PASSWORD", "valueFrom": value_from}]))

    problems = render_problems(a_job(), d)
    assert any("secrets[0] (DB_PASSWORD)" in p and "<secret-name>:<key>" in p for p in problems), problems


# --- Pod Security restricted: the operator's restricted_defaults -----------------------------------

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
}


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        pytest.param(
            ecs(), RESTRICTED_CONTAINER, id="a silent containerProperties definition gets all of it"
        ),
        pytest.param(
            ecs(user="1000"),
            RESTRICTED_CONTAINER | {"runAsUser": 1000},
            id="a numeric user is kept, non-root",
        ),
        pytest.param(
            eks(ctr(securityContext={"runAsUser": 0})),
            {"runAsUser": 0, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            id="runAsUser 0 stays as asked (restricted refuses it; the job fails saying so)",
        ),
        pytest.param(
            eks(ctr(securityContext={"privileged": True})),
            {"privileged": True},
            id="a privileged container stays as asked",
        ),
        pytest.param(
            eks(ctr(securityContext={"allowPrivilegeEscalation": True, "runAsNonRoot": False})),
            {"allowPrivilegeEscalation": True, "runAsNonRoot": False, "capabilities": {"drop": ["ALL"]}},
            id="what the definition says wins",
        ),
    ],
)
def test_restricted_defaults_fill_what_pod_security_restricted_needs_where_the_definition_is_silent(
    definition: dict[str, Any], expected: dict[str, Any]
) -> None:
    pod = render(a_job(), a_definition(**definition), restricted_defaults=True)
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["spec"]["containers"][0]["securityContext"] == expected
    plain = render(a_job(), a_definition(**definition))
    assert "seccompProfile" not in (plain["spec"].get("securityContext") or {})  # off: as AWS runs it
