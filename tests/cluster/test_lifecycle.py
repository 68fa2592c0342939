"""Job lifecycle against the real control plane: what a user sees with kubectl."""

from __future__ import annotations

import pytest
from batch import apply, batch_job, environment, events, job_definition, pods, wait_status
from waiting import wait_for

from batchyard.devcluster import DevCluster

pytestmark = pytest.mark.cluster


def test_exit_zero_succeeds_with_one_attempt(devcluster: DevCluster, operator: object, namespace: str) -> None:
    _, queue = environment(devcluster, namespace)
    apply(devcluster, job_definition("hello", namespace), batch_job("j", namespace, queue, "hello"))

    status = wait_status(devcluster, namespace, "j", "SUCCEEDED", "FAILED")

    assert status["status"] == "SUCCEEDED"
    assert len(status["attempts"]) == 1
    attempt = status["attempts"][0]
    assert attempt["exitCode"] == 0
    assert status["createdAt"] <= status["startedAt"] <= status["stoppedAt"]
    assert attempt["startedAt"] <= attempt["stoppedAt"]
    assert status["jobDefinitionRevision"] == 1
    wait_for(lambda: not pods(devcluster, namespace), what="the finished pod to be deleted")
    reasons = {e["reason"] for e in events(devcluster, namespace, "j")}
    assert {"Runnable", "Starting", "Running", "Succeeded"} <= reasons
