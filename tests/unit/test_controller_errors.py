"""The adapter's error paths: Controller.decide + execute against a typed fake API (fake_kube)
that answers 409, 404, 422, 403, 500 or times out where a test says so.

One job ``ns/j`` on queue ``q`` (an ENABLED UNMANAGED compute environment of 4 vCPUs) with
definition ``d``; on a healthy API the first cycle creates pod ``j-a1`` and writes STARTING.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from fake_kube import FakeKube, one_job_state

from batchyard.adapters.apply import POD_CONFLICT_RETRY_SECONDS
from batchyard.adapters.controller import Controller, Settings
from batchyard.adapters.state import ClusterState, JobEntry
from batchyard.apierrors import RequestTimeout
from batchyard.core.backoff import KeyedBackoff
from batchyard.core.jobref import JobRef
from batchyard.core.retention import PodRetention
from batchyard.render.names import LABEL_JOB_UID

KEY = JobRef("ns", "j")
POD = "/api/v1/namespaces/ns/pods/j-a1"
PODS = "/api/v1/namespaces/ns/pods"
JOB_STATUS = "/namespaces/ns/batchjobs/j/status"


def a_world(
    kube: FakeKube | None = None, backoff: KeyedBackoff | None = None, settings: Settings | None = None
) -> tuple[Controller, FakeKube]:
    kube = kube or FakeKube()
    # STARTING written at once (no hold for the pod to run): these tests are about that write.
    settings = settings or Settings(starting_write_delay_seconds=0)
    return Controller(kube, one_job_state(), settings, write_backoff=backoff), kube  # type: ignore[arg-type]


def job(controller: Controller) -> JobEntry:
    return controller.state.jobs[KEY]


def cycles(controller: Controller, n: int = 1) -> None:
    async def run() -> None:
        for _ in range(n):
            await controller.reconcile_once()
            await controller.executor.events_posted()

    asyncio.run(run())


def a_pod_of(uid: str) -> dict[str, Any]:
    return {"metadata": {"name": "j-a1", "namespace": "ns", "labels": {LABEL_JOB_UID: uid}}}


def test_a_healthy_api_starts_the_job() -> None:
    controller, kube = a_world()
    cycles(controller)
    assert job(controller).status.status == "STARTING"
    assert POD in kube.objects


def test_409_for_this_jobs_own_pod_adopts_it() -> None:
    # A repeated decision (e.g. after a restart): the pod of this attempt exists already.
    kube = FakeKube(objects={POD: a_pod_of("u1")})
    controller, _ = a_world(kube)
    cycles(controller)
    assert job(controller).status.status == "STARTING"
    assert kube.count("get", POD) == 1  # read to check the owner


def test_409_for_a_pod_of_an_older_job_of_the_same_name_retries_shortly() -> None:
    kube = FakeKube(objects={POD: a_pod_of("an-older-job")})
    controller, _ = a_world(kube)
    before = time.time()
    cycles(controller)
    entry = job(controller)
    assert entry.status.status == "RUNNABLE"
    assert entry.wake_at is not None and entry.wake_at >= before + POD_CONFLICT_RETRY_SECONDS
    assert controller.scheduler.state_of(KEY) not in ("STARTING", "RUNNING")  # dispatch undone


@pytest.mark.parametrize("status", [400, 422], ids=["400 BadRequest", "422 Invalid"])
def test_a_pod_the_api_server_refuses_fails_the_job_naming_the_refusal(status: int) -> None:
    controller, kube = a_world()
    kube.fail("create", PODS, status, message="spec.volumes[0].hostPath.path: must be absolute")
    cycles(controller)
    entry = job(controller)
    assert entry.status.status == "FAILED"
    assert entry.status.statusReason is not None
    assert entry.status.statusReason.startswith("Invalid job definition: pod rejected")
    assert "hostPath.path: must be absolute" in entry.status.statusReason
    assert entry.written.get("status") == "FAILED"  # and it reached the API server


def test_a_pod_security_refusal_fails_the_job_at_once_without_a_second_create() -> None:
    controller, kube = a_world()
    message = (
        'pods "j-a1" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true)'
    )
    kube.fail("create", PODS, 403, times=100, message=message)
    cycles(controller, 3)
    entry = job(controller)
    assert entry.status.status == "FAILED"
    assert entry.status.statusReason == f"Invalid job definition: pod rejected: {message}"
    assert not entry.status.attempts  # AWS: an invalid definition fails, no retry
    assert kube.count("create", PODS) == 1


@pytest.mark.parametrize(
    ("status", "message", "reason"),
    [
        (
            403,
            "exceeded quota: pods, requested: pods=1, used: pods=1, limited: pods=1",
            "WAITING:RESOURCE_QUOTA",
        ),
        (403, 'User "x" cannot create resource "pods"', "MISCONFIGURATION:SERVICE_ROLE_PERMISSIONS"),
        (429, "", "WAITING:POD_CREATE"),
        (500, "", "WAITING:POD_CREATE"),
        (0, "", "WAITING:POD_CREATE"),
    ],
    ids=["403 quota", "403 RBAC", "429 throttled", "500 server error", "timeout"],
)
def test_a_transient_pod_creation_failure_keeps_the_job_runnable_with_a_reason_and_backs_off(
    status: int, message: str, reason: str
) -> None:
    controller, kube = a_world()
    controller.executor.create_backoff = KeyedBackoff(base_seconds=0.3, rand=lambda: 0.0)
    if status == 0:
        kube.fail_with("create", PODS, RequestTimeout(0, "no answer within 30 s", "POST", PODS))
    else:
        kube.fail("create", PODS, status, message=message)
    cycles(controller)
    entry = job(controller)
    assert entry.status.status == "RUNNABLE"
    assert (entry.status.statusReason or "").startswith(reason)
    retry_at = controller.executor.create_backoff.retry_at(KEY)
    assert retry_at is not None and entry.wake_at is not None and entry.wake_at <= retry_at
    cycles(controller, 3)  # within the backoff: no second create, the reason stays
    assert kube.count("create", PODS) == 1
    assert (job(controller).status.statusReason or "").startswith(reason)
    deadline = time.monotonic() + 10
    while time.time() < retry_at and time.monotonic() < deadline:
        time.sleep(0.02)
    cycles(controller)  # the failure was one-off: the retry after the backoff starts it
    assert job(controller).status.status == "STARTING"
    assert not controller.scheduler.held(KEY)


def test_404_on_the_status_write_forgets_the_deleted_job() -> None:
    controller, kube = a_world()
    kube.fail("patch_status", JOB_STATUS, 404)
    cycles(controller)
    assert KEY not in controller.state.jobs


def test_a_failing_status_write_backs_off_per_job_instead_of_every_cycle() -> None:
    controller, kube = a_world(backoff=KeyedBackoff(base_seconds=0.3, rand=lambda: 0.0))
    kube.fail("patch_status", JOB_STATUS, 500, times=1)
    cycles(controller)
    entry = job(controller)
    assert kube.count("patch_status", JOB_STATUS) == 1
    assert entry.written.get("status") is None  # not written
    retry_at = controller.executor.write_backoff.retry_at(KEY)
    assert retry_at is not None and entry.wake_at == retry_at  # the loop wakes for it

    controller.state.dirty_jobs.add(KEY)  # an event for the job within the backoff
    cycles(controller, 3)
    assert kube.count("patch_status", JOB_STATUS) == 1  # no request while backing off

    deadline = time.monotonic() + 10
    while time.time() < retry_at and time.monotonic() < deadline:
        time.sleep(0.02)  # the backoff is wall-clock (the loop reads time.time())
    cycles(controller)
    assert kube.count("patch_status", JOB_STATUS) == 2
    assert job(controller).written.get("status") == "STARTING"
    assert controller.executor.write_backoff.failures(KEY) == 0  # success resets the backoff


def test_consecutive_status_write_failures_wait_longer_each_time() -> None:
    controller, kube = a_world(backoff=KeyedBackoff(base_seconds=0.05, rand=lambda: 0.0))
    kube.fail("patch_status", JOB_STATUS, 503, times=3)
    delays = []
    for _ in range(3):
        started = time.time()
        cycles(controller)
        at = controller.executor.write_backoff.retry_at(KEY)
        assert at is not None
        delays.append(at - started)
        while time.time() < at:
            time.sleep(0.01)
    # 0.05 s, 0.1 s, 0.2 s after each failure (plus the cycle's own time before the write).
    assert delays[0] >= 0.05 and delays[1] >= 0.1 and delays[2] >= 0.2
    assert delays[0] < delays[2]
    assert controller.executor.write_backoff.failures(KEY) == 3


def finished_world(ttl: float) -> tuple[Controller, FakeKube]:
    """Job ns/old SUCCEEDED an hour ago, ns/new a second ago; both BatchJobs exist."""
    kube = FakeKube()
    st = ClusterState()
    now = time.time()
    for name, stopped in (("old", now - 3600), ("new", now - 1)):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(stopped))
        body = {
            "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}"},
            "spec": {"jobQueue": "q", "jobDefinition": "d"},
            "status": {"status": "SUCCEEDED", "stoppedAt": stamp},
        }
        st.upsert_job(body)
        kube.objects[f"/apis/batchyard.io/v1alpha1/namespaces/ns/batchjobs/{name}"] = body
    st.synced = True
    return Controller(kube, st, Settings(finished_job_ttl_seconds=ttl)), kube  # type: ignore[arg-type]


def test_the_expiry_scan_deletes_finished_jobs_past_their_ttl_only() -> None:
    controller, kube = finished_world(ttl=600)
    asyncio.run(controller.executor._expire(time.time()))
    assert set(controller.state.jobs) == {JobRef("ns", "new")}
    assert kube.count("delete", "/batchjobs/old") == 1 and kube.count("delete", "/batchjobs/new") == 0


def test_an_expired_job_already_deleted_is_forgotten_and_a_failed_delete_is_kept() -> None:
    controller, kube = finished_world(ttl=0.5)
    kube.objects.pop("/apis/batchyard.io/v1alpha1/namespaces/ns/batchjobs/old")  # someone deleted it: 404
    kube.fail("delete", "/batchjobs/new", 500)
    asyncio.run(controller.executor._expire(time.time()))
    assert set(controller.state.jobs) == {JobRef("ns", "new")}  # kept: tried again at the next scan


def test_an_expired_job_takes_the_pods_kept_for_its_logs_with_it() -> None:
    controller, kube = finished_world(ttl=600)
    for job_name in ("old", "new"):
        path = f"/api/v1/namespaces/ns/pods/{job_name}-a1"
        body = {
            "metadata": {
                "name": f"{job_name}-a1",
                "namespace": "ns",
                "labels": {LABEL_JOB_UID: f"u-{job_name}"},
            },
            "status": {"phase": "Failed"},
        }
        kube.objects[path] = body
        controller.state.upsert_pod(body)
    asyncio.run(controller.executor._expire(time.time()))
    assert kube.count("delete", "/pods/old-a1") == 1 and kube.count("delete", "/pods/new-a1") == 0
    assert kube.count("delete", "/batchjobs/old") == 1


def event_reasons(kube: FakeKube) -> list[str]:
    return [str(o.get("reason")) for p, o in kube.objects.items() if "/events/" in p]


@pytest.mark.parametrize(
    ("routine_events", "expected"),
    [
        pytest.param(False, [], id="by default no Event for the routine RUNNABLE and STARTING"),
        pytest.param(True, ["Runnable", "Starting"], id="BATCHYARD_ROUTINE_EVENTS posts them"),
    ],
)
def test_routine_state_changes_post_events_only_when_asked(routine_events: bool, expected: list[str]) -> None:
    # Issue 14: status, conditions and metrics carry the routine changes; an Event each was a
    # third of a short job's API writes.
    controller, kube = a_world()
    controller.executor.settings = Settings(routine_events=routine_events, starting_write_delay_seconds=0)
    cycles(controller)
    assert job(controller).status.status == "STARTING"
    assert sorted(event_reasons(kube)) == expected
    assert kube.count("patch_status", JOB_STATUS) == 1  # SUBMITTED -> RUNNABLE -> STARTING: one write


def test_a_failure_still_posts_its_event_by_default() -> None:
    controller, kube = a_world()
    kube.fail("create", PODS, 422, message="spec.volumes[0].hostPath.path: must be absolute")
    cycles(controller)
    assert job(controller).status.status == "FAILED"
    assert "Failed" in event_reasons(kube)


@pytest.mark.parametrize(
    ("retention", "deleted"),
    [
        pytest.param(PodRetention.NONE, True, id="keepPods=none: the failed attempt's pod goes"),
        pytest.param(PodRetention.FAILED, False, id="keepPods=failed (default): it stays for its log"),
    ],
)
def test_a_retry_dispatched_in_the_same_cycle_still_deletes_the_failed_attempts_pod(
    retention: PodRetention, deleted: bool
) -> None:
    # The new attempt's dispatch replaces the job's step in the plan; the pod of the attempt
    # that failed must go all the same (issue 14 moved pod deletions next to each job's write),
    # unless it is kept for its log (issue 15).
    controller, kube = a_world(settings=Settings(pod_retention=retention, starting_write_delay_seconds=0))
    controller.state.upsert_job(
        {
            "metadata": {"name": "j", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": {"jobQueue": "q", "jobDefinition": "d", "retryStrategy": {"attempts": 2}},
        }
    )
    cycles(controller)
    assert job(controller).status.status == "STARTING"
    pod = dict(kube.objects[POD])
    container = pod["spec"]["containers"][0]["name"]
    pod["status"] = {
        "phase": "Failed",
        "containerStatuses": [
            {"name": container, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}
        ],
    }
    controller.state.upsert_pod(pod)
    cycles(controller)
    entry = job(controller)
    assert len(entry.status.attempts or []) == 2  # retried and dispatched again in one cycle
    assert kube.count("delete", POD) == (1 if deleted else 0)
    assert (POD not in kube.objects) is deleted
    assert (entry.status.attempts or [])[0].logRetained is not deleted
    assert "/api/v1/namespaces/ns/pods/j-a2" in kube.objects
