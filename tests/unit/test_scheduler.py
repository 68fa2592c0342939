"""Unit tables for the scheduling cycle: queue order, FIFO, CE placement, capacity, states."""

from __future__ import annotations

import pytest
from sched_builders import (
    a_ce,
    a_job,
    a_queue,
    blocks,
    dispatched,
    of_type,
    placements,
    scheduler_with,
    world,
)

from batchyard.core.capacity import Resources, parse_cpu, parse_memory_mib
from batchyard.core.scheduler import (
    RUNNABLE,
    RUNNING,
    STARTING,
    WAITING_CAPACITY,
    WAITING_CE,
    Cancel,
    Dispatch,
    Scheduler,
    Unblock,
    count_jobs_by_state,
)

# --- queue order -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queues", "expected_first"),
    [
        pytest.param(
            [a_queue("lo").priority(1), a_queue("hi").priority(10)],
            "hi",
            id="higher priority queue drains first",
        ),
        pytest.param(
            [a_queue("b").priority(5), a_queue("a").priority(5)],
            "a",
            id="equal priority: queue name breaks the tie",
        ),
        pytest.param([a_queue("z").priority(7), a_queue("a").priority(3)], "z", id="priority beats name"),
    ],
)
def test_queue_order(queues, expected_first):
    w = world([a_ce().max_vcpus(1)], queues)
    jobs = [a_job(q.view.name).in_queue(q.view.name) for q in queues]
    s = scheduler_with(w, *jobs)
    assert dispatched(s.cycle(w, 1.0)) == [expected_first]


def test_blocked_higher_priority_queue_does_not_stop_lower_queues():
    # AWS: "If there are insufficient resources available at that time, the cycle proceeds to the next queue"
    w = world([a_ce().max_vcpus(4)], [a_queue("hi").priority(10), a_queue("lo").priority(1)])
    s = scheduler_with(w, a_job("big").in_queue("hi").requesting(cpu=8), a_job("small").in_queue("lo"))
    r = s.cycle(w, 1.0)
    assert dispatched(r) == ["small"]
    assert r.queues["hi"].blocked is not None and r.queues["hi"].blocked.job_key == "big"


# --- order within a queue ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        pytest.param(
            [a_job("late").submitted(30), a_job("early").submitted(10), a_job("mid").submitted(20)],
            ["early", "mid", "late"],
            id="FIFO by submission time, not by arrival at the scheduler",
        ),
        pytest.param(
            [a_job("fresh").submitted(1), a_job("retry").submitted(50).retried()],
            ["retry", "fresh"],
            id="a retried job goes to the front of the queue",
        ),
        pytest.param(
            [
                a_job("r2").submitted(20).retried(),
                a_job("r1").submitted(10).retried(),
                a_job("f").submitted(0),
            ],
            ["r1", "r2", "f"],
            id="retried jobs keep their submission order among themselves",
        ),
        pytest.param(
            [a_job("a").submitted(5), a_job("b").submitted(5)],
            ["a", "b"],
            id="same submission time: arrival order",
        ),
        pytest.param(
            [a_job("low").submitted(1), a_job("high").submitted(2).priority(9)],
            ["low", "high"],
            id="schedulingPriority is ignored in a FIFO queue",
        ),
        pytest.param(
            [a_job("old").submitted(1), a_job("tagged").submitted(2).share("A", priority=100)],
            ["old", "tagged"],
            id="AWS: a shareIdentifier with priority does not jump ahead in a FIFO queue",
        ),
        pytest.param(
            [
                a_job("a1").submitted(1).share("A", 1),
                a_job("b").submitted(2).share("B", 50),
                a_job("a2").submitted(3).share("A", 99),
            ],
            ["a1", "b", "a2"],
            id="FIFO across share identifiers, whatever their priorities",
        ),
    ],
)
def test_order_within_a_fifo_queue(jobs, expected):
    w = world([a_ce().max_vcpus(1)], [a_queue()])
    s = scheduler_with(w, *jobs)
    out = []
    for t in range(len(jobs)):
        r = s.cycle(w, float(t))
        (key,) = dispatched(r)
        out.append(key)
        s.attempt_ended(key, float(t))
    assert out == expected


def test_snapshot_and_positions_follow_dispatch_order():
    w = world([a_ce().max_vcpus(0)], [a_queue()])
    s = scheduler_with(
        w, *(a_job(f"j{i}").submitted(100 - i) for i in range(10)), a_job("r").retried().submitted(500)
    )
    assert s.snapshot("q", 4) == ["r", "j9", "j8", "j7"]
    assert s.position("j9") == 2
    assert s.position("j0") == 11
    assert s.position("nope") is None


# --- compute environment placement ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("ces", "job", "expected_ce"),
    [
        pytest.param([a_ce("a"), a_ce("b")], a_job("j"), "a", id="first CE in computeEnvironmentOrder"),
        pytest.param([a_ce("a").disabled(), a_ce("b")], a_job("j"), "b", id="DISABLED CE is skipped"),
        pytest.param([a_ce("a").invalid("bad role"), a_ce("b")], a_job("j"), "b", id="INVALID CE is skipped"),
        pytest.param(
            [a_ce("a").updating(), a_ce("b")], a_job("j"), "b", id="CE not VALID (UPDATING) is skipped"
        ),
        pytest.param(
            [a_ce("a").max_vcpus(2), a_ce("b")], a_job("j").requesting(cpu=4), "b", id="maxvCpus too small"
        ),
        pytest.param(
            [a_ce("a").nodes((8, "4Gi", 0)), a_ce("b").nodes((8, "64Gi", 0))],
            a_job("j").requesting(cpu=2, memory="16Gi"),
            "b",
            id="node memory too small",
        ),
        pytest.param(
            [a_ce("a").nodes((2, "64Gi", 0)), a_ce("b").nodes((16, "64Gi", 0))],
            a_job("j").requesting(cpu=4),
            "b",
            id="node vCPU too small",
        ),
        pytest.param(
            [a_ce("a").nodes((16, "64Gi", 0)), a_ce("b").nodes((16, "64Gi", 4))],
            a_job("j").requesting(cpu=1, gpus=1),
            "b",
            id="GPU job goes to the CE with GPU nodes",
        ),
        pytest.param(
            [a_ce("a").nodes((2, "4Gi", 0), (2, "4Gi", 0)), a_ce("b")],
            a_job("j").requesting(cpu=3),
            "b",
            id="a pod never spans nodes: two 2-vCPU nodes don't hold a 3-vCPU job",
        ),
    ],
)
def test_compute_environment_choice(ces, job, expected_ce):
    w = world(ces, [a_queue().ces(*(c.view.name for c in ces))])
    s = scheduler_with(w, job)
    assert placements(s.cycle(w, 1.0)) == {job.view.key: expected_ce}


@pytest.mark.parametrize(
    ("ce", "jobs", "expected"),
    [
        pytest.param(a_ce().max_vcpus(3), ["2", "2"], ["j0"], id="maxvCpus is charged before the next job"),
        pytest.param(
            a_ce().nodes((3, "8Gi", 0)), ["2", "2"], ["j0"], id="node room is charged before the next job"
        ),
        pytest.param(
            a_ce().nodes((2, "8Gi", 0), (2, "8Gi", 0)),
            ["2", "2", "2"],
            ["j0", "j1"],
            id="first fit across nodes",
        ),
        pytest.param(
            a_ce().max_vcpus(4), ["0.5"] * 9, [f"j{i}" for i in range(8)], id="millicpu arithmetic is exact"
        ),
    ],
)
def test_capacity_is_charged_within_a_cycle(ce, jobs, expected):
    w = world([ce], [a_queue()])
    s = scheduler_with(w, *(a_job(f"j{i}").submitted(i).requesting(cpu=c) for i, c in enumerate(jobs)))
    assert dispatched(s.cycle(w, 1.0)) == expected


def test_capacity_is_released_when_the_attempt_ends():
    w = world([a_ce().max_vcpus(2)], [a_queue()])
    s = scheduler_with(
        w, a_job("a").submitted(1).requesting(cpu=2), a_job("b").submitted(2).requesting(cpu=2)
    )
    r = s.cycle(w, 1.0)
    assert dispatched(r) == ["a"]
    assert r.compute_environments["ce"].vcpus_in_use == 2
    assert dispatched(s.cycle(w, 2.0)) == []
    s.attempt_ended("a", 3.0)
    r = s.cycle(w, 4.0)
    assert dispatched(r) == ["b"]
    assert r.compute_environments["ce"].vcpus_in_use == 2


def test_capacity_is_shared_by_queues_using_the_same_ce():
    w = world([a_ce().max_vcpus(3)], [a_queue("a").priority(2), a_queue("b").priority(1)])
    s = scheduler_with(
        w, a_job("a1").in_queue("a").requesting(cpu=2), a_job("b1").in_queue("b").requesting(cpu=2)
    )
    r = s.cycle(w, 1.0)
    assert dispatched(r) == ["a1"]
    assert r.compute_environments["ce"].in_use == Resources.of(2)


def test_undo_releases_capacity_and_restores_the_position():
    w = world([a_ce().max_vcpus(1)], [a_queue()])
    s = scheduler_with(w, a_job("first").submitted(1), a_job("second").submitted(2))
    r = s.cycle(w, 1.0)
    (d,) = of_type(r, Dispatch)
    s.undo(d, 1.5)
    assert s.state_of("first") == RUNNABLE
    assert s.snapshot("q") == ["first", "second"]
    r = s.cycle(w, 2.0)
    assert dispatched(r) == ["first"]
    assert r.compute_environments["ce"].jobs == 1


def test_restored_running_attempts_hold_capacity():
    w = world([a_ce().nodes((4, "8Gi", 0))], [a_queue()])
    s = Scheduler()
    s.set_world(w)
    s.add_running(a_job("old").requesting(cpu=3).view, "ce", "ce-n0", 0.0, state=RUNNING)
    s.add_runnable(a_job("new").requesting(cpu=2).view, 0.0)
    r = s.cycle(w, 1.0)
    assert dispatched(r) == []
    assert r.queues["q"].counts == {RUNNABLE: 1, STARTING: 0, RUNNING: 1}


def test_bind_moves_the_node_charge():
    w = world([a_ce().nodes((2, "8Gi", 0), (2, "8Gi", 0))], [a_queue()])
    s = scheduler_with(w, a_job("a").submitted(1).requesting(cpu=2))
    (d,) = of_type(s.cycle(w, 1.0), Dispatch)
    assert d.node == "ce-n0"
    s.bind("a", "ce-n1")  # kube-scheduler chose the other node
    s.add_runnable(a_job("b").submitted(2).requesting(cpu=2).view, 2.0)
    (d2,) = of_type(s.cycle(w, 3.0), Dispatch)
    assert d2.node == "ce-n0"


# --- states --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strict", "expected"),
    [
        pytest.param(
            False,
            ["queued"],
            id="DISABLED queue finishes what it has (AWS: jobs already in the queue can finish)",
        ),
        pytest.param(True, [], id="strict mode: DISABLED queue dispatches nothing"),
    ],
)
def test_disabled_queue(strict, expected):
    w = world([a_ce()], [a_queue().disabled()])
    s = scheduler_with(w, a_job("queued"))
    s.dispatch_from_disabled_queues = not strict
    assert dispatched(s.cycle(w, 1.0)) == expected


def test_disabled_ce_gets_no_new_jobs_but_running_ones_continue():
    enabled = world([a_ce().max_vcpus(4)], [a_queue()])
    s = scheduler_with(enabled, a_job("running").submitted(1))
    assert dispatched(s.cycle(enabled, 1.0)) == ["running"]
    disabled = world([a_ce().max_vcpus(4).disabled()], [a_queue()])
    s.add_runnable(a_job("new").submitted(2).view, 2.0)
    r = s.cycle(disabled, 3.0)
    assert dispatched(r) == []
    assert r.compute_environments["ce"].jobs == 1
    assert s.state_of("running") == STARTING
    (b,) = blocks(r)
    assert b.reason_code == WAITING_CE and not b.queue_blocked


def test_invalid_ce_says_why():
    w = world([a_ce("a").invalid("CLIENT_ERROR - node role not found")], [a_queue().ces("a")])
    s = scheduler_with(w, a_job("j"))
    r = s.cycle(w, 1.0)
    blocked = r.queues["q"].blocked
    assert blocked is not None
    assert blocked.status_reason == "ACTION_REQUIRED CE(s) associated with the job queue are invalid."
    assert "CLIENT_ERROR - node role not found" in blocked.detail


# --- blocked reasons (AWS "Jobs stuck in a RUNNABLE status", digest §2.5) --------------------------


@pytest.mark.parametrize(
    ("ces", "job", "code", "status_reason", "queue_blocked"),
    [
        pytest.param(
            [a_ce("a").max_vcpus(4), a_ce("b").max_vcpus(8)],
            a_job("j").requesting(cpu=16),
            "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
            "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE - CE(s) associated with the job queue "
            "cannot meet the CPU requirement of the job.",
            True,
            id="job vCPUs above every CE's maxvCpus",
        ),
        pytest.param(
            [a_ce("a").nodes((8, "16Gi", 0)), a_ce("b").launching(8, "16Gi")],
            a_job("j").requesting(cpu=2, memory="32Gi"),
            "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
            "MISCONFIGURATION: JOB_RESOURCE_REQUIREMENT - The job resource requirement (vCPU/memory/GPU) "
            "is higher than that can be met by the CE(s) attached to the job queue.",
            True,
            id="no node of any CE has enough memory",
        ),
        pytest.param(
            [a_ce("a").nodes((8, "16Gi", 0))],
            a_job("j").requesting(cpu=1, gpus=1),
            "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
            "MISCONFIGURATION: JOB_RESOURCE_REQUIREMENT - The job resource requirement (vCPU/memory/GPU) "
            "is higher than that can be met by the CE(s) attached to the job queue.",
            True,
            id="GPU job on a CE without GPU nodes",
        ),
        pytest.param(
            [a_ce("a").instance_types("m5.large").nodes((2, "8Gi", 0))],
            a_job("j").requesting(cpu=1),
            "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
            "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - Service cannot fulfill the capacity requested for "
            "instance type m5.large",
            True,
            id="managed CE below maxvCpus whose nodes are full",
        ),
        pytest.param(
            [a_ce("a").invalid("x"), a_ce("b").invalid("y")],
            a_job("j"),
            "ACTION_REQUIRED",
            "ACTION_REQUIRED CE(s) associated with the job queue are invalid.",
            True,
            id="all CEs INVALID",
        ),
        pytest.param(
            [a_ce("a").unmanaged().nodes((2, "8Gi", 0))],
            a_job("j").requesting(cpu=1),
            WAITING_CAPACITY,
            "Waiting for capacity: running jobs hold the capacity of compute environment(s) a",
            False,
            id="unmanaged CE full of running jobs: waiting for its turn, not blocked",
        ),
        pytest.param(
            [a_ce("a").max_vcpus(2)],
            a_job("j").requesting(cpu=1),
            WAITING_CAPACITY,
            "Waiting for capacity: running jobs hold the capacity of compute environment(s) a",
            False,
            id="CE at maxvCpus: waiting for its turn, not blocked",
        ),
        pytest.param(
            [a_ce("a").disabled()],
            a_job("j"),
            WAITING_CE,
            "Waiting: no compute environment of the job queue is ENABLED and VALID (a: DISABLED/VALID)",
            False,
            id="all CEs DISABLED",
        ),
    ],
)
def test_blocked_reasons(ces, job, code, status_reason, queue_blocked):
    w = world(ces, [a_queue().ces(*(c.view.name for c in ces))])
    s = scheduler_with(w)
    # fill the capacity first, with a 2-vCPU job that fits everywhere that has room
    if code in (WAITING_CAPACITY, "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"):
        s.add_running(a_job("filler").requesting(cpu=2).view, ces[0].view.name, "a-n0", 0.0)
    s.add_runnable(job.view, 0.0)
    r = s.cycle(w, 1.0)
    (b,) = blocks(r)
    assert (b.job_key, b.reason_code, b.status_reason, b.queue_blocked) == (
        "j",
        code,
        status_reason,
        queue_blocked,
    )
    info = r.queues["q"].blocked
    assert info is not None and info.new and info.queue_blocked == queue_blocked


def test_head_of_line_blocking_no_backfill():
    w = world([a_ce().max_vcpus(4)], [a_queue()])
    s = scheduler_with(w, a_job("big").submitted(1).requesting(cpu=8), a_job("small").submitted(2))
    r = s.cycle(w, 1.0)
    assert dispatched(r) == []
    assert [b.job_key for b in blocks(r)] == ["big"]


def test_block_is_reported_once_and_cleared_when_the_head_changes():
    w = world([a_ce().max_vcpus(4)], [a_queue()])
    s = scheduler_with(w, a_job("big").submitted(1).requesting(cpu=8))
    assert len(blocks(s.cycle(w, 1.0))) == 1
    r = s.cycle(w, 2.0)
    assert blocks(r) == [] and r.queues["q"].blocked is not None and not r.queues["q"].blocked.new
    s.add_runnable(a_job("retry").submitted(5).retried().view, 3.0)  # jumps to the front and runs
    r = s.cycle(w, 4.0)
    assert dispatched(r) == ["retry"]
    assert len(blocks(r)) == 0 and of_type(r, Unblock) == []  # 'big' is the blocked head again, same reason
    s.add_runnable(a_job("retry2").submitted(6).retried().requesting(cpu=6).view, 5.0)
    r = s.cycle(w, 6.0)
    assert [d.job_key for d in of_type(r, Unblock)] == ["big"]
    assert [b.job_key for b in blocks(r)] == ["retry2"]


# --- jobStateTimeLimitActions --------------------------------------------------------------------

MAX_RESOURCE = "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE"


@pytest.mark.parametrize(
    ("action_reason", "elapsed", "cancelled"),
    [
        pytest.param(MAX_RESOURCE, 599, False, id="not before maxTimeSeconds"),
        pytest.param(MAX_RESOURCE, 600, True, id="cancelled once maxTimeSeconds have elapsed at the head"),
        pytest.param(
            "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY", 10_000, False, id="another reason: no action"
        ),
    ],
)
def test_time_limit_action(action_reason, elapsed, cancelled):
    w = world([a_ce().max_vcpus(4)], [a_queue().cancel_after(action_reason, 600)])
    s = scheduler_with(w, a_job("big").submitted(1).requesting(cpu=8), a_job("next").submitted(2))
    s.cycle(w, 100.0)  # blocked from t=100
    r = s.cycle(w, 100.0 + elapsed)
    if cancelled:
        assert of_type(r, Cancel) == [
            Cancel("big", "q", f"Canceled by JobStateTimeLimit action due to reason: {MAX_RESOURCE}")
        ]
        assert dispatched(r) == ["next"]  # AWS: "allows the subsequent job to move to the head"
        assert s.state_of("big") is None
    else:
        assert of_type(r, Cancel) == [] and dispatched(r) == []


def test_time_limit_clock_starts_when_the_job_becomes_the_blocked_head():
    w = world([a_ce().max_vcpus(4)], [a_queue().cancel_after(MAX_RESOURCE, 600)])
    s = scheduler_with(
        w, a_job("first").submitted(1).requesting(cpu=8), a_job("second").submitted(2).requesting(cpu=8)
    )
    s.cycle(w, 0.0)
    r = s.cycle(w, 600.0)
    assert [c.job_key for c in of_type(r, Cancel)] == ["first"]
    assert [b.job_key for b in blocks(r)] == ["second"]  # 'second' waited 600 s too, but not at the head
    assert of_type(s.cycle(w, 1199.0), Cancel) == []
    assert [c.job_key for c in of_type(s.cycle(w, 1200.0), Cancel)] == ["second"]


def test_time_limit_clock_restarts_when_the_reason_changes():
    capacity = "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
    full = world([a_ce().nodes((2, "8Gi", 0))], [a_queue().cancel_after(capacity, 600)])
    s = scheduler_with(full)
    s.add_running(a_job("filler").requesting(cpu=2).view, "ce", "ce-n0", 0.0)
    s.add_runnable(a_job("j").requesting(cpu=1).view, 0.0)
    assert blocks(s.cycle(full, 0.0))[0].reason_code == capacity
    at_max = world([a_ce().max_vcpus(2).nodes((2, "8Gi", 0))], [a_queue().cancel_after(capacity, 600)])
    assert blocks(s.cycle(at_max, 300.0))[0].reason_code == WAITING_CAPACITY
    assert blocks(s.cycle(full, 500.0))[0].reason_code == capacity
    assert of_type(s.cycle(full, 1000.0), Cancel) == []
    assert [c.job_key for c in of_type(s.cycle(full, 1100.0), Cancel)] == ["j"]


def test_undo_of_a_cancel_puts_the_job_back():
    w = world([a_ce().max_vcpus(4)], [a_queue().cancel_after(MAX_RESOURCE, 600)])
    s = scheduler_with(w, a_job("big").requesting(cpu=8))
    s.cycle(w, 0.0)
    (c,) = of_type(s.cycle(w, 700.0), Cancel)
    s.undo(c, 700.0)
    assert s.state_of("big") == RUNNABLE
    assert [x.job_key for x in of_type(s.cycle(w, 701.0), Cancel)] == ["big"]  # still overdue: retried


# --- status for users ----------------------------------------------------------------------------


def test_queue_counts_ce_usage_and_demand():
    w = world([a_ce().max_vcpus(3)], [a_queue()])
    s = scheduler_with(w, *(a_job(f"j{i}").submitted(i).requesting(cpu=1, memory=512) for i in range(5)))
    r = s.cycle(w, 1.0)
    s.mark_running("j0")
    r = s.cycle(w, 2.0)
    assert r.queues["q"].counts == {RUNNABLE: 2, STARTING: 2, RUNNING: 1}
    assert r.queues["q"].runnable_demand == Resources(2000, 1024, 0)
    assert r.compute_environments["ce"].vcpus_in_use == 3.0
    assert r.compute_environments["ce"].in_use.memory_mib == 1536
    s.remove("j1", 3.0)  # e.g. terminated while STARTING
    assert s.counts("q") == {RUNNABLE: 2, STARTING: 1, RUNNING: 1}


def test_dispatch_budget_truncates_the_cycle():
    w = world([a_ce()], [a_queue()])
    s = scheduler_with(w, *(a_job(i).submitted(i) for i in range(10)))
    s.max_dispatches_per_cycle = 4
    r = s.cycle(w, 1.0)
    assert dispatched(r) == [0, 1, 2, 3] and r.truncated
    r = s.cycle(w, 2.0)
    assert dispatched(r) == [4, 5, 6, 7]


def test_removed_runnable_job_is_skipped():
    w = world([a_ce()], [a_queue()])
    s = scheduler_with(w, *(a_job(i).submitted(i) for i in range(3)))
    assert s.remove(0, 0.5)
    assert not s.remove(0, 0.5)
    assert dispatched(s.cycle(w, 1.0)) == [1, 2]


@pytest.mark.parametrize(
    ("value", "milli"),
    [
        pytest.param("500m", 500, id="millicores"),
        pytest.param("2", 2000, id="whole vCPUs as a string"),
        pytest.param(0.25, 250, id="fractional vCPUs as a number"),
    ],
)
def test_parse_cpu(value, milli):
    assert parse_cpu(value) == milli


@pytest.mark.parametrize(
    ("value", "mib"),
    [
        pytest.param("2Gi", 2048, id="Gi"),
        pytest.param(512, 512, id="a bare int is MiB (AWS unit)"),
        pytest.param("1G", 954, id="decimal G rounds up to MiB"),
    ],
)
def test_parse_memory(value, mib):
    assert parse_memory_mib(value) == mib


def test_cycle_can_report_positions():
    w = world([a_ce().max_vcpus(1)], [a_queue()])
    s = scheduler_with(w, *(a_job(f"j{i}").submitted(i) for i in range(5)))
    r = s.cycle(w, 1.0, positions=3)
    assert r.positions == {"q": ["j1", "j2", "j3"]}  # j0 was dispatched in this cycle


def test_queue_counts_every_job_state():
    counts = count_jobs_by_state([("q", "RUNNABLE"), ("q", "PENDING"), ("q", "RUNNABLE"), ("p", "FAILED")])
    assert counts["q"]["RUNNABLE"] == 2 and counts["q"]["PENDING"] == 1 and counts["q"]["SUCCEEDED"] == 0
    assert counts["p"]["FAILED"] == 1


# --- a pod the API server refused for now (core.refusals) ---------------------------------------

QUOTA = "WAITING:RESOURCE_QUOTA"


def test_a_held_job_waits_at_the_head_with_its_refusal_until_the_backoff_ends():
    w = world([a_ce().max_vcpus(4)], [a_queue()])
    s = scheduler_with(w, a_job("j").submitted(1), a_job("next").submitted(2))
    s.hold("j", QUOTA, "WAITING:RESOURCE_QUOTA - exceeded quota: pods", until=10.0, now=0.0)
    r = s.cycle(w, 1.0)
    assert dispatched(r) == []  # the head blocks its queue: no backfill (AWS head-of-queue rule)
    assert [(b.job_key, b.reason_code) for b in blocks(r)] == [("j", QUOTA)]
    assert r.queues["q"].blocked is not None and not r.queues["q"].blocked.queue_blocked
    assert dispatched(s.cycle(w, 10.0)) == ["j", "next"]  # tried again once the backoff ended


def test_the_time_limit_clock_of_a_refused_job_runs_from_the_first_refusal_across_retries():
    # One vCPU: while j's create is in flight, 'next' can't start behind it.
    w = world([a_ce().max_vcpus(1)], [a_queue().cancel_after(QUOTA, 600)])
    s = scheduler_with(w, a_job("j").submitted(1), a_job("next").submitted(2))
    s.hold("j", QUOTA, "quota", until=60.0, now=0.0)  # the first refusal, at t=0
    t = 0.0
    while t <= 600.0:  # refused at every retry, every 60 s (the last one at t=600)
        r = s.cycle(w, t)
        for d in r.decisions:
            if isinstance(d, Dispatch) and d.job_key == "j":
                s.undo(d, t)
                s.hold("j", QUOTA, "quota", until=t + 60.0, now=t)
        assert of_type(r, Cancel) == []
        t += 30.0
    r = s.cycle(w, 615.0)
    assert of_type(r, Cancel) == [
        Cancel("j", "q", f"Canceled by JobStateTimeLimit action due to reason: {QUOTA}")
    ]
    assert dispatched(r) == ["next"]


def test_a_created_pod_releases_the_hold():
    w = world([a_ce().max_vcpus(4)], [a_queue()])
    s = scheduler_with(w, a_job("j"))
    s.hold("j", QUOTA, "quota", until=100.0, now=0.0)
    assert s.held("j")
    s.release_hold("j")
    assert not s.held("j") and dispatched(s.cycle(w, 1.0)) == ["j"]
