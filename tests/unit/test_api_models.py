"""The API models as the operator uses them: parsing Kubernetes bodies, strict specs, helpers."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from batchyard import API_VERSION
from batchyard.api import (
    BatchJob,
    ComputeEnvironment,
    EvaluateOnExit,
    JobDefinition,
    JobQueue,
    JobStateCounts,
)

# --- builders ----------------------------------------------------------------------------------


def a_job_body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "BatchJob",
        "metadata": {
            "name": "render",
            "namespace": "team-a",
            "uid": "7c1e0f9a-0000-4000-8000-000000000001",
            "generation": 2,
            "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            "finalizers": ["batchyard.io/job"],
        },
        "spec": {"jobQueue": "default-fifo", "jobDefinition": "sleep", **spec},
    }


def a_job_definition_body(revisions: list[tuple[int, str]]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "JobDefinition",
        "metadata": {"name": "sleep", "namespace": "team-a"},
        "spec": {
            "type": "container",
            "eksProperties": {"podProperties": {"containers": [{"image": "busybox"}]}},
        },
        "status": {
            "latestRevision": max((r for r, _ in revisions), default=None),
            "revisions": [{"revision": r, "specHash": f"h{r}", "state": s} for r, s in revisions],
        },
    }


# --- parsing -----------------------------------------------------------------------------------


def test_a_job_without_status_parses_and_drops_what_the_operator_never_reads() -> None:
    job = BatchJob.from_body(a_job_body())
    assert job.status is None
    assert job.metadata.uid == "7c1e0f9a-0000-4000-8000-000000000001"
    dumped = job.to_body()
    assert "managedFields" not in dumped["metadata"] and "finalizers" not in dumped["metadata"]


def test_unknown_status_fields_from_a_newer_operator_are_ignored() -> None:
    body = a_job_body()
    body["status"] = {
        "status": "RUNNING",
        "somethingNew": {"x": 1},
        "attempts": [{"attempt": 1, "podName": "p"}],
    }
    job = BatchJob.from_body(body)
    assert job.status is not None and job.status.status == "RUNNING"
    assert job.status.attempts is not None and job.status.attempts[0].podName == "p"


@pytest.mark.parametrize(
    "spec",
    [
        {"jobQeue": "typo"},
        {"retryStrategy": {"attempts": 11}},
        {"retryStrategy": {"attempts": 2, "evaluateOnExit": [{"onExitCode": "1a", "action": "EXIT"}]}},
        {"arrayProperties": {"size": 10001}},
        {"timeout": {"attemptDurationSeconds": 59}},
        {"shareIdentifier": "team-a"},
        {"dependsOn": [{"jobId": f"j{i}"} for i in range(21)]},
        {"cancel": {"reason": ""}},
    ],
    ids=[
        "a misspelt spec field is an error, not silently dropped",
        "eleven attempts",
        "exit code glob with a letter",
        "array of 10,001 children",
        "timeout below 60 seconds",
        "share identifier with a hyphen",
        "21 dependencies",
        "cancel without a reason",
    ],
)
def test_invalid_specs_are_rejected_by_the_model_too(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        BatchJob.from_body(a_job_body(**spec))


# --- helpers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("sleep", ("sleep", None)), ("sleep:3", ("sleep", 3))],
    ids=["name means the latest ACTIVE revision", "name:revision pins one"],
)
def test_job_definition_reference(ref: str, expected: tuple[str, int | None]) -> None:
    assert BatchJob.from_body(a_job_body(jobDefinition=ref)).spec.job_definition_ref() == expected


def test_job_name_defaults_to_the_object_name() -> None:
    assert BatchJob.from_body(a_job_body()).job_name == "render"
    assert BatchJob.from_body(a_job_body(jobName="Render_1")).job_name == "Render_1"


@pytest.mark.parametrize(
    ("revisions", "latest_active"),
    [
        ([(1, "ACTIVE"), (2, "ACTIVE")], 2),
        ([(1, "ACTIVE"), (2, "INACTIVE")], 1),
        ([(1, "INACTIVE")], None),
        ([], None),
    ],
    ids=["newest active wins", "an inactive newest is skipped", "nothing active", "no revisions yet"],
)
def test_latest_active_revision(revisions: list[tuple[int, str]], latest_active: int | None) -> None:
    jd = JobDefinition.from_body(a_job_definition_body(revisions))
    got = jd.latest_active()
    assert (got.revision if got else None) == latest_active


def test_a_pinned_revision_resolves_even_when_inactive() -> None:
    jd = JobDefinition.from_body(a_job_definition_body([(1, "INACTIVE"), (2, "ACTIVE")]))
    rev = jd.revision(1)
    assert rev is not None and rev.state == "INACTIVE"
    assert jd.revision(3) is None


@pytest.mark.parametrize("action", ["RETRY", "retry", "Retry", "EXIT", "exit"])
def test_evaluate_on_exit_action_is_not_case_sensitive(action: str) -> None:
    entry = EvaluateOnExit(onReason="x", action=action)
    assert entry.normalized_action() == action.upper()


def test_queue_tries_compute_environments_in_ascending_order() -> None:
    queue = JobQueue.from_body(
        {
            "metadata": {"name": "q"},
            "spec": {
                "priority": 1,
                "computeEnvironmentOrder": [
                    {"order": 5, "computeEnvironment": "spot"},
                    {"order": 1, "computeEnvironment": "ondemand"},
                ],
            },
        }
    )
    assert queue.compute_environments_in_order() == ["ondemand", "spot"]
    assert queue.spec.state == "ENABLED"


def test_compute_environment_defaults() -> None:
    ce = ComputeEnvironment.from_body(
        {
            "metadata": {"name": "ce"},
            "spec": {"computeResources": {"maxvCpus": 4}, "provider": {"type": "kwok"}},
        }
    )
    assert (ce.spec.type, ce.spec.state, ce.spec.computeResources and ce.spec.computeResources.type) == (
        "MANAGED",
        "ENABLED",
        "EC2",
    )


def test_state_counts_default_to_zero() -> None:
    counts = JobStateCounts.of({"RUNNING": 3})
    assert counts.get("RUNNING") == 3 and counts.get("FAILED") == 0


def test_kwok_startup_seconds_is_refused_not_silently_ignored() -> None:
    # It was documented as a simulated boot time but never honoured: removed, so a manifest that
    # sets it is refused (by the model here, by strict field validation at the API server).
    body = {
        "metadata": {"name": "ce"},
        "spec": {"type": "MANAGED", "provider": {"type": "kwok", "kwok": {"startupSeconds": 5}}},
    }
    with pytest.raises(ValidationError, match="startupSeconds"):
        ComputeEnvironment.model_validate(body)
