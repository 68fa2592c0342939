"""Scheduling against the real control plane: queue priority, maxvCpus, blocked jobs and job
state time limit actions, fair share, consumable resources -- as a user sees them with kubectl.

Tests sample `kubectl get batchjobs` while jobs run and assert on what those samples show
(states, shares, queue positions), never on the operator's internals. Job state time limits use
the operator's BATCHYARD_TIME_LIMIT_SCALE test knob (conftest: 600 s act after 6 s).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest
from batch import (
    apply,
    batch_job,
    ce_nodes,
    compute_environment,
    consumable_resource,
    environment,
    events,
    get,
    job_definition,
    job_queue,
    job_rows,
    job_status,
    pods,
    scheduling_policy,
    wait_status,
)
from waiting import sample_until, wait_for

from batchyard.devcluster import DevCluster

pytestmark = pytest.mark.cluster

ACTIVE = ("STARTING", "RUNNING")
DONE = ("SUCCEEDED", "FAILED")
CE_MAX_RESOURCE = "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE"


def run_and_sample(
    cluster: DevCluster, namespace: str, total: int, timeout: float = 120, extra: Any = None
) -> list[tuple[list[tuple[str, str, str]], Any]]:
    """Sample `kubectl get batchjobs` (and ``extra()``) until all ``total`` jobs are done."""

    def sample() -> tuple[list[tuple[str, str, str]], Any]:
        return job_rows(cluster, namespace), extra() if extra else None

    def all_done(s: tuple[list[tuple[str, str, str]], Any]) -> bool:
        rows = s[0]
        return len(rows) == total and all(state in DONE for _, state, _ in rows)

    return sample_until(sample, all_done, timeout=timeout, what=f"all {total} jobs to be done")


def set_ce_state(cluster: DevCluster, ce: str, state: str) -> None:
    cluster.kubectl(
        "patch", "computeenvironment", ce, "--type", "merge", "-p", json.dumps({"spec": {"state": state}})
    )


def queue_positions(cluster: DevCluster, namespace: str) -> dict[str, str]:
    out = cluster.kubectl(
        "get", "batchjobs", "-n", namespace, "--no-headers",
        "-o", "custom-columns=N:.metadata.name,P:.status.queuePosition",
    ).stdout  # fmt: skip
    return dict(line.split() for line in out.splitlines() if line.strip())


def blocked_condition(cluster: DevCluster, queue: str) -> dict[str, Any]:
    conditions = (get(cluster, "jobqueue", queue).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Blocked"), {})


def test_higher_priority_queue_drains_first(devcluster: DevCluster, operator: object, namespace: str) -> None:
    ce, hi, lo = f"{namespace}-ce", f"{namespace}-hi", f"{namespace}-lo"
    # One vCPU: jobs run one at a time, so the order is the scheduler's, not a race.
    apply(
        devcluster,
        compute_environment(ce, max_vcpus=1, state="DISABLED"),
        job_queue(hi, [ce], priority=10),
        job_queue(lo, [ce], priority=1),
        job_definition("one", namespace),
    )
    ce_nodes(devcluster, ce, 1)
    # The low-priority jobs are submitted first: FIFO across queues would run them first.
    apply(devcluster, *[batch_job(f"lo-{i}", namespace, lo, "one", delay="200ms") for i in range(4)])
    wait_for(
        lambda: all(s == "RUNNABLE" for _, s, _ in job_rows(devcluster, namespace)), what="lo jobs RUNNABLE"
    )
    apply(devcluster, *[batch_job(f"hi-{i}", namespace, hi, "one", delay="200ms") for i in range(4)])

    # While the compute environment is DISABLED every job waits, showing its place in its queue.
    expected = {f"{p}-{i}": str(i) for p in ("lo", "hi") for i in range(4)}
    try:
        wait_for(
            lambda: queue_positions(devcluster, namespace) == expected, timeout=30, what="queue positions"
        )
    except AssertionError as err:
        raise AssertionError(f"{err}: {queue_positions(devcluster, namespace)}") from None

    set_ce_state(devcluster, ce, "ENABLED")
    samples = run_and_sample(devcluster, namespace, total=8)

    for rows, _ in samples:
        state = {name: s for name, s, _ in rows}
        if any(state[f"hi-{i}"] == "RUNNABLE" for i in range(4)):
            started_lo = [n for n, s in state.items() if n.startswith("lo-") and s != "RUNNABLE"]
            assert not started_lo, f"low-priority jobs started while high-priority jobs waited: {state}"
    assert {s for _, s, _ in samples[-1][0]} == {"SUCCEEDED"}
    # Finished jobs show no position.
    assert set(queue_positions(devcluster, namespace).values()) == {"<none>"}


def test_max_vcpus_four_runs_at_most_four_one_vcpu_jobs(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    ce, queue = environment(devcluster, namespace, max_vcpus=4, nodes=0)
    ce_nodes(devcluster, ce, 1, cpu="16")  # the node has room for 16: only the CE's cap limits
    apply(devcluster, job_definition("one", namespace))
    apply(devcluster, *[batch_job(f"j{i}", namespace, queue, "one", delay="1s") for i in range(12)])

    def live_pods() -> int:
        return sum(p["status"].get("phase") in ("Pending", "Running") for p in pods(devcluster, namespace))

    samples = run_and_sample(devcluster, namespace, total=12, extra=live_pods)

    active = [sum(s in ACTIVE for _, s, _ in rows) for rows, _ in samples]
    running_pods = [n for _, n in samples]
    assert max(active) <= 4, active
    assert max(running_pods) <= 4, running_pods
    assert max(active) == 4, f"the cap was never reached, the test proves nothing: {active}"
    assert {s for _, s, _ in samples[-1][0]} == {"SUCCEEDED"}


def test_job_larger_than_any_ce_is_blocked_then_cancelled_by_time_limit(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    ce, queue = f"{namespace}-ce", f"{namespace}-q"
    action = {"reason": CE_MAX_RESOURCE, "state": "RUNNABLE", "maxTimeSeconds": 600, "action": "CANCEL"}
    apply(
        devcluster,
        compute_environment(ce, max_vcpus=4),
        job_queue(queue, [ce], jobStateTimeLimitActions=[action]),
        job_definition("big", namespace, container={"resourceRequirements": [
            {"type": "VCPU", "value": "8"}, {"type": "MEMORY", "value": "512"}]}),
        job_definition("small", namespace),
    )  # fmt: skip
    ce_nodes(devcluster, ce, 1, cpu="16")
    apply(devcluster, batch_job("big", namespace, queue, "big"))
    wait_status(devcluster, namespace, "big", "RUNNABLE")
    apply(devcluster, batch_job("after", namespace, queue, "small"))

    blocked = wait_for(
        lambda: (
            (s := job_status(devcluster, namespace, "big"))
            .get("statusReason", "")
            .startswith(CE_MAX_RESOURCE)
            and s
        ),
        what="the AWS blocked reason on the big job",
    )
    blocked_at = time.monotonic()
    assert blocked["status"] == "RUNNABLE"
    assert blocked["statusReason"] == (
        "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE - CE(s) associated with the job queue cannot "
        "meet the CPU requirement of the job."
    )
    condition = wait_for(
        lambda: (c := blocked_condition(devcluster, queue)).get("status") == "True" and c,
        what="the JobQueue Blocked condition",
    )
    assert condition["reason"] == "MISCONFIGURATION_COMPUTE_ENVIRONMENT_MAX_RESOURCE"
    # One Blocked event per block, not one per cycle. Only this block's: under load the operator
    # can see the queue and the job before the compute environment, and a head whose CE is not
    # found blocks the queue too (CE_INVALID, its own event) until the CE arrives.
    event = wait_for(
        lambda: [
            e
            for e in events(devcluster, "default", queue)
            if e["reason"] == "Blocked" and CE_MAX_RESOURCE in e["message"]
        ],
        what="the JobQueue Blocked event",
    )
    assert len(event) == 1, [e["message"] for e in event]
    assert event[0]["involvedObject"]["kind"] == "JobQueue"
    assert CE_MAX_RESOURCE in event[0]["message"] and f"{namespace}/big" in event[0]["message"]
    # No backfill: the small job behind the blocked head waits.
    assert job_status(devcluster, namespace, "after")["status"] == "RUNNABLE"

    final = wait_status(devcluster, namespace, "big", "FAILED", "SUCCEEDED", timeout=60)
    assert final["status"] == "FAILED"
    assert final["statusReason"] == f"Canceled by JobStateTimeLimit action due to reason: {CE_MAX_RESOURCE}"
    assert final.get("isCancelled") is True
    assert time.monotonic() - blocked_at > 2  # 600 s scaled to 6 s, counted from the block
    assert not pods(
        devcluster,
        namespace,
        f"batchyard.io/job-uid={get(devcluster, 'batchjob', 'big', namespace)['metadata']['uid']}",
    )

    # AWS: cancelling the blocked head lets the next job move to the head -- and it runs.
    assert wait_status(devcluster, namespace, "after", "SUCCEEDED", "FAILED")["status"] == "SUCCEEDED"
    wait_for(
        lambda: blocked_condition(devcluster, queue).get("status") == "False", what="the queue unblocked"
    )


def test_fair_share_weights_one_and_three_get_capacity_three_to_one(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    """AWS: a lower weightFactor gets more: weight 1 gets three times the compute of weight 3.

    Measured as the allocation the scheduler settles on, not by sampling a stream of short jobs:
    the jobs run until terminated, so what `kubectl get` shows once the 16 vCPUs are taken is the
    scheduler's decision, whatever the machine's load (sampling 1 s jobs under load measured the
    operator's lag, and failed at 1.5-2.0 on a busy 2-core machine). Freeing one share's capacity
    must give it back to that share: the allocation is held, not just reached once.
    """
    ce, queue, policy = f"{namespace}-ce", f"{namespace}-q", f"{namespace}-fs"
    apply(
        devcluster,
        compute_environment(ce, max_vcpus=16, state="DISABLED"),
        scheduling_policy(policy, {"a": 1, "b": 3}, decay_seconds=600),
        job_queue(queue, [ce], schedulingPolicy=policy),
        job_definition("one", namespace),
    )
    ce_nodes(devcluster, ce, 1, cpu="32")
    jobs = [batch_job(f"{s}-{i:03d}", namespace, queue, "one", exit_code=None, shareIdentifier=s)
            for i in range(30) for s in ("b", "a")]  # fmt: skip
    apply(devcluster, *jobs)
    wait_for(
        lambda: [s for _, s, _ in job_rows(devcluster, namespace)] == ["RUNNABLE"] * 60,
        timeout=120,
        what="all 60 jobs RUNNABLE",
    )
    set_ce_state(devcluster, ce, "ENABLED")

    def settled(stopped: set[str]) -> Counter[str] | None:
        rows = job_rows(devcluster, namespace)
        if any(s != "FAILED" for name, s, _ in rows if name in stopped):
            return None
        held = Counter(share for _, s, share in rows if s in ACTIVE)
        return held if sum(held.values()) == 16 else None

    def terminate(names: list[str]) -> None:
        for name in names:
            devcluster.kubectl("patch", "batchjob", name, "-n", namespace, "--type", "merge",
                               "-p", json.dumps({"spec": {"terminate": {"reason": "free capacity"}}}))  # fmt: skip

    def running(share: str) -> list[str]:
        return [n for n, s, sh in job_rows(devcluster, namespace) if sh == share and s in ACTIVE]

    held = wait_for(lambda: settled(set()), timeout=120, what="16 vCPUs held")
    assert held == Counter({"a": 12, "b": 4}), f"first allocation {dict(held)}, expected a:b = 12:4"

    # b's four end: its next four take their place (its usage is now the lowest), not a's.
    stopped = running("b")
    terminate(stopped)
    held = wait_for(lambda: settled(set(stopped)), timeout=120, what="b's capacity handed back")
    assert held == Counter({"a": 12, "b": 4}), f"after freeing b: {dict(held)}, expected 12:4"

    # a's twelve end: a gets its twelve back.
    stopped = running("a")
    terminate(stopped)
    held = wait_for(lambda: settled(set(stopped)), timeout=120, what="a's capacity handed back")
    assert held == Counter({"a": 12, "b": 4}), f"after freeing a: {dict(held)}, expected 12:4"


def test_consumable_resource_of_two_runs_at_most_two_jobs(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    ce, queue = environment(devcluster, namespace, max_vcpus=8, nodes=0)
    ce_nodes(devcluster, ce, 1, cpu="8")
    licence = f"{namespace}-licence"
    needs = {"consumableResourceList": [{"consumableResource": licence, "quantity": 1}]}
    apply(
        devcluster,
        consumable_resource(licence, 2),
        job_definition("licensed", namespace, consumableResourceProperties=needs),
    )
    apply(devcluster, *[batch_job(f"j{i}", namespace, queue, "licensed", delay="1500ms") for i in range(6)])

    def usage() -> tuple[int | None, int | None, str]:
        status = get(devcluster, "consumableresource", licence).get("status") or {}
        jobs = json.loads(devcluster.kubectl("get", "batchjobs", "-n", namespace, "-o", "json").stdout)[
            "items"
        ]
        reasons = " | ".join((j.get("status") or {}).get("statusReason") or "" for j in jobs)
        return status.get("inUseQuantity"), status.get("availableQuantity"), reasons

    samples = run_and_sample(devcluster, namespace, total=6, extra=usage)

    active = [sum(s in ACTIVE for _, s, _ in rows) for rows, _ in samples]
    assert max(active) == 2, active
    seen = {u[:2] for _, u in samples}
    assert (2, 0) in seen, f"the ConsumableResource never showed 2 in use, 0 available: {seen}"
    assert seen <= {(None, None), (0, 2), (1, 1), (2, 0)}, seen
    assert any(
        f"Waiting for consumable resource(s): {licence} (needs 1, available 0)" in u[2] for _, u in samples
    )
    assert {s for _, s, _ in samples[-1][0]} == {"SUCCEEDED"}
    final = wait_for(
        lambda: (
            (s := get(devcluster, "consumableresource", licence).get("status") or {}).get("inUseQuantity")
            == 0
            and s
        ),
        what="the licences released",
    )
    assert final["availableQuantity"] == 2 and final["totalQuantity"] == 2


def test_share_identifiers_are_refused_where_aws_refuses_them(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    """AWS SubmitJob shareIdentifier: "Don't specify this parameter if the job queue doesn't have
    a scheduling policy. If the job queue has a scheduling policy, then this parameter must be
    specified." Both refusals fail the job at admission, naming the rule; the good ones run."""
    ce, fifo = environment(devcluster, namespace)
    fair, policy = f"{namespace}-fair", f"{namespace}-fs"
    apply(
        devcluster,
        scheduling_policy(policy, {"a": 1}),
        job_queue(fair, [ce], schedulingPolicy=policy),
        job_definition("one", namespace),
        batch_job("tagged-in-fifo", namespace, fifo, "one", shareIdentifier="a"),
        batch_job("untagged-in-fair", namespace, fair, "one"),
        batch_job("plain-in-fifo", namespace, fifo, "one"),
        batch_job("tagged-in-fair", namespace, fair, "one", shareIdentifier="a"),
    )

    refused = wait_status(devcluster, namespace, "tagged-in-fifo", *DONE)
    assert refused["status"] == "FAILED"
    assert refused["statusReason"].startswith(
        f"shareIdentifier a is not allowed: JobQueue {fifo} has no scheduling"
    )
    missing = wait_status(devcluster, namespace, "untagged-in-fair", *DONE)
    assert missing["status"] == "FAILED"
    assert missing["statusReason"].startswith(
        f"shareIdentifier is required: JobQueue {fair} has the scheduling"
    )
    for name in ("plain-in-fifo", "tagged-in-fair"):
        assert wait_status(devcluster, namespace, name, *DONE)["status"] == "SUCCEEDED"


def test_kubectl_get_jq_shows_job_counts_and_an_invalid_queue_s_reason(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    ce = f"{namespace}-ce"
    queue, broken = f"{namespace}-q", f"{namespace}-broken"
    apply(
        devcluster,
        compute_environment(ce, max_vcpus=1, state="DISABLED"),  # nothing starts: the jobs stay RUNNABLE
        job_queue(queue, [ce]),
        job_queue(broken, [ce, f"{namespace}-no-such-ce"], schedulingPolicy=f"{namespace}-no-such-policy"),
        job_definition("one", namespace),
        *(batch_job(f"j{i}", namespace, queue, "one") for i in range(3)),
    )

    def columns(name: str) -> list[str]:
        out = devcluster.kubectl("get", "jq", name, "--no-headers").stdout.split()
        return out  # NAME STATE STATUS PRIORITY RUNNABLE RUNNING AGE

    row = wait_for(
        lambda: (c := columns(queue))[4] == "3" and c, what="kubectl get jq to show 3 RUNNABLE jobs"
    )
    assert row[2] == "VALID" and row[5] == "0"
    assert get(devcluster, "jobqueue", queue)["status"]["statusReason"] == "JobQueue Healthy"
    status = wait_for(
        lambda: (
            (s := get(devcluster, "jobqueue", broken).get("status") or {}).get("status") == "INVALID" and s
        ),
        what="the queue naming missing objects to be INVALID",
    )
    assert status["statusReason"] == (
        f"ComputeEnvironment {namespace}-no-such-ce does not exist; "
        f"SchedulingPolicy {namespace}-no-such-policy does not exist"
    )
    assert columns(broken)[2] == "INVALID"


def test_an_impossible_consumable_requirement_fails_and_does_not_block_the_queue(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    _, queue = environment(devcluster, namespace)
    licence = f"{namespace}-lic"

    def needing(name: str, quantity: int) -> dict[str, Any]:
        override = {"consumableResourceList": [{"consumableResource": name, "quantity": quantity}]}
        return {"consumableResourcePropertiesOverride": override}

    apply(
        devcluster,
        consumable_resource(licence, 2),
        job_definition("one", namespace),
        batch_job("needs-missing", namespace, queue, "one", **needing(f"{namespace}-nope", 1)),
        batch_job("needs-too-many", namespace, queue, "one", **needing(licence, 3)),
        batch_job("behind", namespace, queue, "one"),
    )

    missing = wait_status(devcluster, namespace, "needs-missing", *DONE)
    assert (missing["status"], missing["statusReason"]) == (
        "FAILED",
        f"Invalid consumable resource requirement: consumable resource {namespace}-nope does not exist",
    )
    too_many = wait_status(devcluster, namespace, "needs-too-many", *DONE)
    assert (too_many["status"], too_many["statusReason"]) == (
        "FAILED",
        f"Invalid consumable resource requirement: the job needs 3 of consumable resource {licence}, "
        "whose total quantity is 2",
    )
    assert wait_status(devcluster, namespace, "behind", *DONE)["status"] == "SUCCEEDED"


def _epoch(stamp: str) -> float:
    from batchyard.core.lifecycle import epoch

    value = epoch(stamp)
    assert value is not None
    return value


def test_estimated_start_of_a_queued_job_is_within_a_factor_of_2_of_its_actual_start(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    """Issue 15: room for two 1-vCPU jobs; a warm-up run of the definition gives the run-time
    history; then six fixed-length jobs at once: the sixth waits for two waves. Its estimate,
    read while it is RUNNABLE, against when it really started, both measured from its
    submission (status.createdAt): within a factor of 2 of the waiting time."""
    _, queue = environment(devcluster, namespace, max_vcpus=2, nodes=1)
    run = "8s"
    apply(devcluster, job_definition("fixed", namespace))
    apply(devcluster, *(batch_job(f"warm-{i}", namespace, queue, "fixed", delay=run) for i in range(2)))
    for i in range(2):
        wait_status(devcluster, namespace, f"warm-{i}", "SUCCEEDED", timeout=90)

    names = [f"job-{k}" for k in range(6)]
    apply(devcluster, *(batch_job(n, namespace, queue, "fixed", delay=run) for n in names))
    last = names[-1]
    estimated = wait_for(
        lambda: (s := job_status(devcluster, namespace, last)).get("estimatedStartAt") and s,
        timeout=60,
        interval=0.2,
        what=f"{last} to get an estimated start while RUNNABLE",
    )
    assert estimated["status"] == "RUNNABLE", estimated
    assert estimated["estimatedStartBasis"] == "recent run times"
    assert estimated["queuePosition"] is not None
    started = wait_for(
        lambda: (s := job_status(devcluster, namespace, last)).get("startedAt") and s,
        timeout=120,
        what=f"{last} to start",
    )
    # Dispatched: the estimate and the position are gone with RUNNABLE.
    assert "estimatedStartAt" not in started and "queuePosition" not in started
    submitted = _epoch(started["createdAt"])
    expected_wait = _epoch(estimated["estimatedStartAt"]) - submitted
    actual_wait = _epoch(started["startedAt"]) - submitted
    assert actual_wait > 8, "the sixth job waits for two waves of 8 s"
    assert actual_wait / 2 <= expected_wait <= actual_wait * 2, (expected_wait, actual_wait)
