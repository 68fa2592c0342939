"""What the operator reads from an attempt's pod (adapters.state.observe_pod): the exit, the
container times, and why the system ended a pod (eviction, node loss, preemption), so the
lifecycle can report "Host EC2 (node ...) terminated." instead of an ordinary container exit."""

from __future__ import annotations

from typing import Any

import pytest

from batchyard.adapters.state import observe_pod
from batchyard.core.lifecycle import PodObs, epoch

T = "2026-12-01T04:00:00Z"
T_END = "2026-12-01T04:00:07Z"


def a_pod(phase: str = "Running", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "j-1", "namespace": "ns", "labels": {"batchyard.io/job-uid": "u1"}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "default"}]},
        "status": {"phase": phase, **status},
    }


def terminated(code: int, name: str = "default", reason: str = "Error") -> dict[str, Any]:
    return {
        "name": name,
        "state": {"terminated": {"exitCode": code, "reason": reason, "startedAt": T, "finishedAt": T_END}},
    }


def running(name: str = "default") -> dict[str, Any]:
    return {"name": name, "state": {"running": {"startedAt": T}}}


def obs(body: dict[str, Any]) -> PodObs:
    entry = observe_pod(body)
    assert entry is not None
    return entry.obs


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            a_pod("Failed", reason="Evicted", message="low on memory"), "Evicted", id="kubelet eviction"
        ),
        pytest.param(a_pod("Failed", reason="NodeLost"), "NodeLost", id="node lost"),
        pytest.param(a_pod("Failed", reason="Shutdown"), "Shutdown", id="graceful node shutdown"),
        pytest.param(
            a_pod(
                "Running",
                conditions=[
                    {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
                ],
            ),
            "PreemptionByScheduler",
            id="preempted (DisruptionTarget condition)",
        ),
        pytest.param(
            a_pod(
                "Running",
                conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC"}],
            ),
            "DeletionByPodGC",
            id="garbage-collected after its node vanished",
        ),
        pytest.param(
            a_pod("Failed", containerStatuses=[terminated(1)]), None, id="an ordinary exit is no disruption"
        ),
    ],
)
def test_disruption(body: dict[str, Any], expected: str | None) -> None:
    assert obs(body).disruption == expected


def test_a_container_seen_only_once_terminated_still_gives_its_start_and_finish() -> None:
    o = obs(a_pod("Succeeded", containerStatuses=[terminated(0, reason="Completed")]))

    assert (o.running_since, o.finished_at) == (epoch(T), epoch(T_END))


def test_a_failed_init_container_is_named_with_its_exit() -> None:
    body = a_pod(
        "Failed",
        initContainerStatuses=[terminated(2, name="setup")],
        containerStatuses=[{"name": "default", "state": {"waiting": {"reason": "PodInitializing"}}}],
    )
    o = obs(body)

    assert (o.failed_init_container, o.exit_code) == ("setup", 2)


def test_a_running_sidecar_does_not_hide_that_the_essential_containers_ended() -> None:
    # Non-essential containers are native sidecars (init containers with restartPolicy Always):
    # containerStatuses hold only the essential ones.
    body = a_pod(
        "Running",
        containerStatuses=[terminated(0, reason="Completed")],
        initContainerStatuses=[running("log")],
    )
    o = obs(body)

    assert (o.finished, o.succeeded, o.finished_at) == (True, True, epoch(T_END))


def test_one_essential_container_still_running_keeps_the_attempt_running() -> None:
    o = obs(a_pod("Running", containerStatuses=[terminated(0, name="a"), running("b")]))

    assert (o.finished, o.finished_at) == (False, None)


def test_a_container_that_cannot_start_and_since_when_the_pod_is_scheduled() -> None:
    body = a_pod(
        "Pending",
        conditions=[{"type": "PodScheduled", "status": "True", "lastTransitionTime": T}],
        containerStatuses=[
            {
                "name": "default",
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}},
            }
        ],
    )
    o = obs(body)

    assert (o.waiting_reason, o.waiting_message, o.scheduled_at) == (
        "ImagePullBackOff",
        "no such image",
        epoch(T),
    )


def test_a_sidecar_stopped_with_the_pod_is_not_a_failed_init_container() -> None:
    body = a_pod(
        "Succeeded",
        containerStatuses=[terminated(0, reason="Completed")],
        initContainerStatuses=[terminated(143, name="log")],
    )
    body["spec"]["initContainers"] = [{"name": "log", "restartPolicy": "Always"}]
    o = obs(body)

    assert (o.failed_init_container, o.exit_code, o.succeeded) == (None, 0, True)
