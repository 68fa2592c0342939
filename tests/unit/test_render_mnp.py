"""render/ for multi-node parallel jobs: node ranges, node overrides, MNP variables, total demand."""

from __future__ import annotations

import re
from typing import Any

import pytest
from test_render import UID, a_job, batch_vars, container, env_of, render

from batchyard.api.jobdefinition import JobDefinitionSpec
from batchyard.core.capacity import Resources
from batchyard.render import (
    job_demand,
    main_node,
    main_service,
    main_service_name,
    num_nodes,
    pod_name,
    render_problems,
)


def an_mnp(*ranges: dict[str, Any], nodes: int = 4, main: int = 0) -> JobDefinitionSpec:
    return JobDefinitionSpec.model_validate(
        {
            "type": "multinode",
            "nodeProperties": {"numNodes": nodes, "mainNode": main, "nodeRangeProperties": list(ranges)},
        }
    )


def a_range(target: str, image: str, vcpu: str = "1", memory: str = "1024", **props: Any) -> dict[str, Any]:
    rr = [{"type": "VCPU", "value": vcpu}, {"type": "MEMORY", "value": memory}]
    return {"targetNodes": target, "container": {"image": image, "resourceRequirements": rr, **props}}


MAIN_AND_WORKERS = an_mnp(a_range("0", "main:1", vcpu="2", memory="4096"), a_range("1:", "worker:1"))


def test_main_node_gets_its_range_and_the_mnp_variables() -> None:
    pod = render(a_job(), MAIN_AND_WORKERS)  # node_index defaults to the main node
    c = container(pod)
    assert c["image"] == "main:1"
    assert batch_vars(c) == {
        "AWS_BATCH_CE_NAME": "ce-1",
        "AWS_BATCH_JQ_NAME": "q",
        "AWS_BATCH_JOB_ATTEMPT": "1",
        "AWS_BATCH_JOB_ID": f"{UID}#0",
        "AWS_BATCH_JOB_MAIN_NODE_INDEX": "0",
        "AWS_BATCH_JOB_NODE_INDEX": "0",
        "AWS_BATCH_JOB_NUM_NODES": "4",
    }
    assert pod["metadata"]["name"] == "j1-n0-a1"
    assert pod["metadata"]["labels"]["batchyard.io/node-index"] == "0"
    assert pod["metadata"]["annotations"]["batchyard.io/job-id"] == f"{UID}#0"


def test_child_node_gets_the_worker_range_and_the_main_nodes_address() -> None:
    pod = render(a_job(), MAIN_AND_WORKERS, node_index=3, main_node_ip="10.0.0.7", attempt=2)
    c = container(pod)
    assert c["image"] == "worker:1"
    assert batch_vars(c)["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] == "10.0.0.7"
    assert batch_vars(c)["AWS_BATCH_JOB_NODE_INDEX"] == "3"
    assert pod["metadata"]["name"] == "j1-n3-a2"


def test_child_node_cannot_be_rendered_before_the_main_node_has_an_address() -> None:
    with pytest.raises(ValueError, match="main node's IP"):
        render(a_job(), MAIN_AND_WORKERS, node_index=1)


def test_nested_range_overrides_the_wider_one() -> None:
    # AWS: "You can nest node ranges, for example 0:10 and 4:5 ... the 4:5 range properties override".
    d = an_mnp(a_range("0:9", "wide"), a_range("4:5", "narrow"), nodes=10)
    images = [
        container(render(a_job(), d, node_index=i, main_node_ip="10.0.0.1"))["image"] for i in range(10)
    ]
    assert images == ["wide"] * 4 + ["narrow"] * 2 + ["wide"] * 4
    assert render_problems(a_job(), d) == []


def test_node_overrides_change_the_node_count_and_the_targeted_nodes() -> None:
    job = a_job(
        nodeOverrides={
            "numNodes": 6,
            "nodePropertyOverrides": [
                {"targetNodes": "1:", "containerOverrides": {"command": ["train", "--worker"]}},
            ],
        }
    )
    assert render_problems(job, MAIN_AND_WORKERS) == []
    assert num_nodes(job, MAIN_AND_WORKERS) == 6
    main = container(render(job, MAIN_AND_WORKERS))
    worker = container(render(job, MAIN_AND_WORKERS, node_index=5, main_node_ip="10.0.0.1"))
    assert "args" not in main
    assert worker["args"] == ["train", "--worker"]  # ECS-style command is Docker's CMD
    assert batch_vars(worker)["AWS_BATCH_JOB_NUM_NODES"] == "6"


def test_whole_job_demand_is_the_sum_over_nodes() -> None:
    # main: 2 vCPU / 4096 MiB; three workers: 1 vCPU / 1024 MiB each.
    assert job_demand(a_job(), MAIN_AND_WORKERS) == Resources(5000, 7168, 0)
    assert job_demand(a_job(), MAIN_AND_WORKERS, node_index=2) == Resources(1000, 1024, 0)


def test_instance_type_pins_the_node_range() -> None:
    d = an_mnp({**a_range(":", "x"), "instanceTypes": ["c5.large"]}, nodes=2)
    pod = render(a_job(), d)
    assert pod["spec"]["nodeSelector"]["node.kubernetes.io/instance-type"] == "c5.large"


@pytest.mark.parametrize(
    ("definition", "job", "fragment"),
    [
        pytest.param(
            an_mnp(a_range("0:1", "x")),
            {},
            "must account for all nodes (0:3); not covered: 2:3",
            id="ranges leave nodes uncovered",
        ),
        pytest.param(
            an_mnp(a_range("0:3", "x")),
            {"nodeOverrides": {"numNodes": 8}},
            "needs a node range with an open upper boundary",
            id="numNodes override without an open-ended range",
        ),
        pytest.param(
            an_mnp(a_range("0:", "x")),
            {"containerOverrides": {"command": ["x"]}},
            "spec.containerOverrides can't be used with a multi-node parallel job",
            id="single-node overrides on an MNP job",
        ),
        pytest.param(
            an_mnp(a_range("0:", "x", environment=[{"name": "AWS_BATCH_JOB_NODE_INDEX", "value": "9"}])),
            {},
            "jobDefinition.nodeProperties.nodeRangeProperties[0].containerProperties.environment",
            id="reserved variable in a node range",
        ),
        pytest.param(
            an_mnp(a_range("0:", "x")),
            {
                "nodeOverrides": {
                    "nodePropertyOverrides": [{"targetNodes": "0:", "eksPropertiesOverride": {}}]
                }
            },
            "spec.nodeOverrides.nodePropertyOverrides[0].eksPropertiesOverride can't be used",
            id="EKS override on a container node range",
        ),
        pytest.param(
            an_mnp(
                {**a_range("0", "x"), "instanceTypes": ["c5.large"]},
                {**a_range("1:", "x"), "instanceTypes": ["c5.xlarge"]},
            ),
            {},
            "must use the same instance type (found c5.large, c5.xlarge)",
            id="node groups on different instance types",
        ),
    ],
)
def test_mnp_problems_name_the_field(
    definition: JobDefinitionSpec, job: dict[str, Any], fragment: str
) -> None:
    problems = render_problems(a_job(**job), definition)
    assert any(fragment in p for p in problems), problems


EKS_MNP = {
    "jobDefinitionName": "MyEksMnpJobDefinition",
    "type": "multinode",
    "nodeProperties": {
        "numNodes": 2,
        "mainNode": 0,
        "nodeRangeProperties": [
            {
                "targetNodes": "0:",
                "eksProperties": {
                    "podProperties": {
                        "containers": [
                            {
                                "name": "test-eks-container-1",
                                "image": "public.ecr.aws/amazonlinux/amazonlinux:2",
                                "command": ["sleep", "60"],
                                "resources": {"limits": {"cpu": "1", "memory": "1024Mi"}},
                                "securityContext": {
                                    "runAsUser": 1000,
                                    "runAsGroup": 3000,
                                    "privileged": True,
                                    "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True,
                                },
                            }
                        ],
                        "initContainers": [
                            {
                                "name": "init-ekscontainer",
                                "image": "public.ecr.aws/amazonlinux/amazonlinux:2",
                                "command": ["echo", "helloWorld"],
                                "resources": {"limits": {"cpu": "1", "memory": "1024Mi"}},
                            }
                        ],
                        "metadata": {"labels": {"environment": "test"}},
                    }
                },
            }
        ],
    },
}


def test_user_guide_eks_mnp_definition_with_its_override_example_renders() -> None:
    _, d = JobDefinitionSpec.from_aws(EKS_MNP)
    # AWS "Override an Amazon EKS MNP job definition": numNodes 5, new command for "0:".
    job = a_job(
        nodeOverrides={
            "numNodes": 5,
            "nodePropertyOverrides": [
                {
                    "targetNodes": "0:",
                    "eksPropertiesOverride": {
                        "podProperties": {
                            "containers": [{"name": "test-eks-container-1", "command": ["sleep", "15"]}]
                        }
                    },
                }
            ],
        }
    )
    assert render_problems(job, d) == []
    assert (num_nodes(job, d), main_node(d)) == (5, 0)
    pod = render(job, d, node_index=4, main_node_ip="10.1.2.3")
    c = container(pod, "test-eks-container-1")
    assert c["command"] == ["sleep", "15"]
    assert c["securityContext"]["runAsUser"] == 1000
    assert pod["spec"]["initContainers"][0]["name"] == "init-ekscontainer"
    assert pod["metadata"]["labels"]["environment"] == "test"
    # Each node: max(1 container, 1 init container) = 1 vCPU / 1024 MiB; five nodes.
    assert job_demand(job, d) == Resources(5000, 5120, 0)


def test_node_pod_names_do_not_clash_with_other_jobs() -> None:
    assert pod_name("x", 1, None, node_index=1) != pod_name("x-n1", 1, None)
    assert pod_name("x", 1, None, node_index=1) != pod_name("x", 1, 1)
    with pytest.raises(ValueError, match="array"):
        pod_name("x", 1, 0, node_index=0)


def test_node_groups_on_one_instance_type_are_fine() -> None:
    d = an_mnp(
        {**a_range("0", "x"), "instanceTypes": ["c5.large"]},
        {**a_range("1:", "x"), "instanceTypes": ["c5.large"]},
    )
    assert not any("instance type" in p for p in render_problems(a_job(), d))


def test_node_pods_are_single_tenant_by_anti_affinity() -> None:
    # AWS: "Multi-node parallel job nodes are single-tenant" -- enforced in the pod spec
    pod = render(a_job(), MAIN_AND_WORKERS, node_index=1, main_node_ip="10.0.0.7")
    terms = pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms == [
        {
            "labelSelector": {"matchExpressions": [{"key": "batchyard.io/job-uid", "operator": "Exists"}]},
            "namespaceSelector": {},
            "topologyKey": "kubernetes.io/hostname",
        }
    ]


def test_single_job_pods_carry_no_anti_affinity() -> None:
    from test_render import a_definition

    d = a_definition(
        containerProperties={"image": "x", "resourceRequirements": [{"type": "VCPU", "value": "1"}]}
    )
    assert "affinity" not in render(a_job(), d)["spec"]


def test_per_node_kwok_delay_becomes_that_pods_delay() -> None:
    job = a_job(annotations={"kwok.batchyard.io/delay": "1s", "kwok.batchyard.io/delay-node-2": "30s"})
    main = render(job, MAIN_AND_WORKERS)
    node2 = render(job, MAIN_AND_WORKERS, node_index=2, main_node_ip="10.0.0.7")
    assert main["metadata"]["annotations"]["kwok.batchyard.io/delay"] == "1s"
    assert node2["metadata"]["annotations"]["kwok.batchyard.io/delay"] == "30s"


# --- the main node's headless Service (a Batchyard extra) ---------------------------------------
@pytest.mark.parametrize(
    ("job_name", "expected"),
    [
        pytest.param("mpi", "mpi-main", id="<job>-main"),
        pytest.param("7zip", None, id="a Service name starts with a letter"),
        pytest.param("x" * 80, None, id="shortened to 63 with a hash"),
        pytest.param("Upper.Case", None, id="sanitised with a hash"),
    ],
)
def test_main_service_name_is_a_dns_1035_label(job_name: str, expected: str | None) -> None:
    name = main_service_name(job_name)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63, name
    if expected is not None:
        assert name == expected
    assert main_service_name(job_name + "x") != name


def test_main_service_selects_the_main_node_of_any_attempt_and_is_owned_by_the_job() -> None:
    svc = main_service(a_job(), an_mnp(a_range("0:", "x:1"), main=2))
    assert svc["metadata"]["name"] == "j1-main" and svc["metadata"]["namespace"] == "team-a"
    assert svc["spec"] == {
        "clusterIP": "None",
        "selector": {"batchyard.io/job-uid": UID, "batchyard.io/node-index": "2"},
        "publishNotReadyAddresses": True,
    }
    [owner] = svc["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("BatchJob", UID, True)


def test_every_node_carries_the_main_nodes_stable_name() -> None:
    main = container(render(a_job(), MAIN_AND_WORKERS))
    child = container(render(a_job(), MAIN_AND_WORKERS, node_index=1, main_node_ip="10.0.0.7"))
    for c in (main, child):
        assert env_of(c)["BATCHYARD_MAIN_NODE_HOST"] == "j1-main.team-a.svc"
