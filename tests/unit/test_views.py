"""From API objects to the core's views (core.views): SubmitJob overrides against the job
definition, the scheduler's world (fair-share defaults, UNMANAGED capacity, CE order), and
dependency facts. AWS rules: SubmitJob (004_*: "overrides"), User Guide "Fair-share scheduling
policies", "Compute environments"."""

from __future__ import annotations

from typing import Any

import pytest

from batchyard.api.batchjob import BatchJob, BatchJobStatus
from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.api.consumableresource import ConsumableResource
from batchyard.api.jobdefinition import JobDefinitionSpec
from batchyard.api.jobqueue import JobQueue
from batchyard.api.schedulingpolicy import SchedulingPolicy
from batchyard.core import deps, views
from batchyard.core.capacity import Resources
from batchyard.core.jobref import JobRef
from batchyard.core.jobstate import JobState
from batchyard.core.retry import Action
from batchyard.core.views import CECapacity

NOW = 1_800_000_000.0


def a_job(**spec: Any) -> BatchJob:
    return BatchJob.from_body(
        {
            "metadata": {"name": "j", "namespace": "ns", "uid": "u-j"},
            "spec": {"jobQueue": "q", "jobDefinition": "d", **spec},
        }
    )


def a_definition(**spec: Any) -> JobDefinitionSpec:
    return JobDefinitionSpec.model_validate(
        {"type": "container", "containerProperties": {"image": "busybox"}, **spec}
    )


RETRY_3 = {"attempts": 3, "evaluateOnExit": [{"onExitCode": "1", "action": "RETRY"}]}
RETRY_5 = {"attempts": 5}


@pytest.mark.parametrize(
    ("job", "definition", "attempts", "rules", "timeout"),
    [
        pytest.param({}, {}, 1, 0, None, id="neither sets a retry strategy: one attempt, no timeout"),
        pytest.param({}, {"retryStrategy": RETRY_3}, 3, 1, None, id="the definition's strategy applies"),
        pytest.param(
            {"retryStrategy": RETRY_5},
            {"retryStrategy": RETRY_3},
            5,
            0,
            None,
            id="the submission's strategy replaces the definition's whole (its rules too)",
        ),
        pytest.param(
            {"timeout": {"attemptDurationSeconds": 90}},
            {"timeout": {"attemptDurationSeconds": 600}},
            1,
            0,
            90,
            id="the submission's timeout overrides the definition's",
        ),
        pytest.param(
            {}, {"timeout": {"attemptDurationSeconds": 600}}, 1, 0, 600, id="the definition's timeout"
        ),
    ],
)
def test_retry_strategy_and_timeout_from_submission_override_the_definition(
    job: dict[str, Any], definition: dict[str, Any], attempts: int, rules: int, timeout: int | None
) -> None:
    resolved = views.resolved(a_job(**job), 4, a_definition(**definition))
    assert (resolved.revision, resolved.attempts, len(resolved.rules)) == (4, attempts, rules)
    assert resolved.attempt_duration_seconds == timeout
    if rules:
        assert resolved.rules[0].action is Action.RETRY


def test_a_multinode_definition_is_no_longer_refused() -> None:
    spec = JobDefinitionSpec.model_validate(
        {
            "type": "multinode",
            "nodeProperties": {
                "numNodes": 2,
                "mainNode": 0,
                "nodeRangeProperties": [{"targetNodes": "0:", "container": {"image": "busybox"}}],
            },
        }
    )
    # multi-node parallel jobs run as a gang (adapters.mnp): only real problems remain
    assert views.resolved(a_job(), 1, spec, ["a render problem"]).problems == ("a render problem",)


@pytest.mark.parametrize(
    ("job", "definition", "priority", "consumables"),
    [
        pytest.param({}, {}, 0, {}, id="no priority anywhere: 0"),
        pytest.param({}, {"schedulingPriority": 7}, 7, {}, id="the definition's priority"),
        pytest.param(
            {"schedulingPriorityOverride": 2}, {"schedulingPriority": 7}, 2, {}, id="the override wins"
        ),
        pytest.param(
            {"schedulingPriorityOverride": 0},
            {"schedulingPriority": 7},
            0,
            {},
            id="an override of 0 still wins",
        ),
        pytest.param(
            {},
            {
                "consumableResourceProperties": {
                    "consumableResourceList": [{"consumableResource": "lic", "quantity": 2}]
                }
            },
            0,
            {"lic": 2},
            id="the definition's consumables",
        ),
        pytest.param(
            {
                "consumableResourcePropertiesOverride": {
                    "consumableResourceList": [{"consumableResource": "tok", "quantity": 1}]
                }
            },
            {
                "consumableResourceProperties": {
                    "consumableResourceList": [{"consumableResource": "lic", "quantity": 2}]
                }
            },
            0,
            {"tok": 1},
            id="the submission's consumables replace the definition's list",
        ),
    ],
)
def test_scheduling_priority_and_consumables_from_submission_override_the_definition(
    job: dict[str, Any], definition: dict[str, Any], priority: int, consumables: dict[str, int]
) -> None:
    view = views.job_view(
        JobRef("ns", "j"), a_job(**job), BatchJobStatus(), a_definition(**definition), Resources.of(1, 512),
        retried=False, now=NOW,
    )  # fmt: skip
    assert (view.scheduling_priority, dict(view.consumables)) == (priority, consumables)
    assert view.key == JobRef("ns", "j") and view.queue == "q"


def test_fifo_order_is_by_created_at_and_a_job_without_one_is_submitted_now() -> None:
    created = BatchJobStatus(createdAt="2027-01-15T08:00:00.250Z")
    view = views.job_view(
        JobRef("ns", "j"), a_job(), created, a_definition(), Resources.of(1, 1), retried=False, now=NOW
    )
    assert view.submitted_at % 1 == 0.25  # createdAt, to the millisecond
    bare = views.job_view(
        JobRef("ns", "j"),
        a_job(),
        BatchJobStatus(),
        a_definition(),
        Resources.of(1, 1),
        retried=True,
        now=NOW,
    )
    assert bare.submitted_at == NOW and bare.retried


# --- the world ---------------------------------------------------------------------------------


def a_ce(name: str, **spec: Any) -> ComputeEnvironment:
    return ComputeEnvironment.from_body({"metadata": {"name": name}, "spec": spec})


@pytest.mark.parametrize(
    ("spec", "max_vcpus", "managed"),
    [
        pytest.param(
            {"type": "UNMANAGED", "unmanagedvCpus": 12}, 12, False, id="UNMANAGED: unmanagedvCpus caps it"
        ),
        pytest.param(
            {"type": "UNMANAGED"},
            views.UNBOUNDED_VCPUS,
            False,
            id="UNMANAGED without unmanagedvCpus: its nodes are the limit",
        ),
        pytest.param(
            {"type": "MANAGED", "computeResources": {"maxvCpus": 32, "instanceTypes": ["m5.large"]}},
            32,
            True,
            id="MANAGED: maxvCpus",
        ),
    ],
)
def test_compute_environment_capacity(spec: dict[str, Any], max_vcpus: int, managed: bool) -> None:
    view = views.ce_view(a_ce("ce", **spec), CECapacity(status="CREATING", status_reason="not yet"))
    assert (view.max_vcpus, view.managed, view.status, view.status_reason) == (
        max_vcpus,
        managed,
        "CREATING",
        "not yet",
    )


def a_queue(**spec: Any) -> JobQueue:
    base = {"priority": 1, "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}]}
    return JobQueue.from_body({"metadata": {"name": "q"}, "spec": {**base, **spec}})


def a_policy(**fairshare: Any) -> SchedulingPolicy:
    return SchedulingPolicy.from_body({"metadata": {"name": "fs"}, "spec": {"fairsharePolicy": fairshare}})


def test_compute_environments_are_tried_in_ascending_order_not_listed_order() -> None:
    q = a_queue(
        computeEnvironmentOrder=[
            {"order": 3, "computeEnvironment": "c"},
            {"order": 1, "computeEnvironment": "a"},
            {"order": 2, "computeEnvironment": "b"},
        ]
    )
    assert views.queue_view(q, {}).compute_environment_order == ("a", "b", "c")


@pytest.mark.parametrize(
    ("fairshare", "decay", "weights"),
    [
        pytest.param({}, 0, {}, id="no decay set: only current usage"),
        pytest.param({"shareDecaySeconds": 3600}, 3600, {}, id="decay as set"),
        pytest.param(
            {"shareDistribution": [{"shareIdentifier": "a"}, {"shareIdentifier": "b", "weightFactor": 0.5}]},
            0,
            {"a": 1.0, "b": 0.5},
            id="weightFactor defaults to 1.0",
        ),
    ],
)
def test_fair_share_policy_defaults(fairshare: dict[str, Any], decay: int, weights: dict[str, float]) -> None:
    policy = views.queue_view(a_queue(schedulingPolicy="fs"), {"fs": a_policy(**fairshare)}).policy
    assert policy is not None
    assert (policy.share_decay_seconds, dict(policy.weights)) == (decay, weights)


def test_a_queue_without_a_known_policy_is_fifo_and_time_limits_are_scaled() -> None:
    q = a_queue(
        schedulingPolicy="missing",
        jobStateTimeLimitActions=[
            {
                "reason": "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
                "state": "RUNNABLE",
                "maxTimeSeconds": 600,
                "action": "CANCEL",
            }
        ],
    )
    view = views.queue_view(q, {}, time_limit_scale=0.01)
    assert view.policy is None
    assert view.time_limit_actions[0].max_time_seconds == 6


def test_the_world_reads_each_ce_through_the_capacity_report() -> None:
    reports = {"ce": CECapacity(status="INVALID", status_reason="bad")}
    world = views.world(
        [a_ce("ce", type="UNMANAGED"), a_ce("other", type="UNMANAGED")],
        [a_queue()],
        {},
        [ConsumableResource.from_body({"metadata": {"name": "lic"}, "spec": {"totalQuantity": 3}})],
        lambda name: reports.get(name, CECapacity()),
    )
    assert world.compute_environments["ce"].status == "INVALID"
    assert world.compute_environments["other"].status == "VALID"
    assert world.consumables["lic"].total_quantity == 3 and world.queues["q"].name == "q"


# --- dependencies ------------------------------------------------------------------------------


def test_facts_and_lookup_stay_in_the_namespace() -> None:
    job = a_job(dependsOn=[{"jobId": "a"}, {"type": "SEQUENTIAL"}], arrayProperties={"size": 3})
    facts = views.facts(job, BatchJobStatus(), None)
    assert facts.state is JobState.SUBMITTED and facts.array_size == 3
    assert facts.depends_on == (
        deps.Dependency("a", deps.DependencyType.JOB),
        deps.Dependency(None, deps.DependencyType.SEQUENTIAL),
    )
    known = {JobRef("ns", "a"): facts, JobRef("other", "b"): facts}
    uids = {"uid-b": JobRef("other", "b")}
    find = views.lookup("ns", uids.get, known.get)
    assert find("a") is facts
    assert find("uid-b") is None  # another namespace's job, even by uid
    assert find("nope") is None
