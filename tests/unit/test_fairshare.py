"""Fair-share scheduling: weights, decay, computeReservation, priorities, prefixes, 500 shares."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from sched_builders import a_ce, a_job, a_queue, dispatched, of_type, scheduler_with, world

from batchyard.core.fairshare import BucketUsage, PolicyView
from batchyard.core.scheduler import WAITING_RESERVATION, Block, Cancel, Dispatch, Scheduler, World


def simulate(
    s: Scheduler,
    w: World,
    backlog: dict[str, int],
    seconds: int,
    start: float = 0.0,
    seed: int = 7,
    durations: tuple[int, int] = (30, 90),
) -> dict[str, float]:
    """Run cycles every second on a deterministic clock, keeping each share's backlog topped up
    to ``backlog[share]`` RUNNABLE jobs. Returns vCPU-seconds received per share."""
    rng = random.Random(seed)
    ends: dict[object, float] = {}
    share_of: dict[object, str] = {}
    runnable = defaultdict(int)
    waiting: set[object] = set()
    used: dict[str, float] = defaultdict(float)
    n = 0
    for step in range(seconds):
        now = start + step
        for key, end in list(ends.items()):
            if end <= now:
                s.attempt_ended(key, now)
                del ends[key]
        for share, depth in backlog.items():
            while runnable[share] < depth:
                key = (share, start, n)
                n += 1
                s.add_runnable(a_job(key).share(share).submitted(now).view, now)
                share_of[key] = share
                runnable[share] += 1
                waiting.add(key)
        r = s.cycle(w, now)
        for d in r.decisions:
            if isinstance(d, Dispatch):
                ends[d.job_key] = now + rng.randint(*durations)
                runnable[share_of[d.job_key]] -= 1
                waiting.discard(d.job_key)
        for key in ends:
            used[share_of[key]] += 1.0  # 1-vCPU jobs, one second
    for key in [*ends, *waiting]:
        s.remove(key, start + seconds)
    return dict(used)


@pytest.mark.parametrize(
    ("weights", "expected_ratio"),
    [
        pytest.param({"a": 1.0, "b": 3.0}, 3.0, id="weights 1 and 3: share a gets 3x the capacity of b"),
        pytest.param({"a": 0.125, "b": 1.0}, 8.0, id="AWS example: weight 0.125 gets 8x weight 1"),
        pytest.param({"a": 1.0, "b": 1.0}, 1.0, id="equal weights: equal capacity"),
    ],
)
@pytest.mark.parametrize("decay", [0, 600, 3600], ids=["decay 0", "decay 600 s", "decay 1 h"])
def test_long_run_capacity_follows_the_weights(weights, expected_ratio, decay):
    # 36 vCPUs split exactly 27:9, 32:4 and 18:18
    w = world([a_ce().max_vcpus(36)], [a_queue().fair_share(decay=decay, **weights)])
    s = scheduler_with(w)
    used = simulate(s, w, {"a": 60, "b": 60}, seconds=6000)
    ratio = used["a"] / used["b"]
    assert abs(ratio / expected_ratio - 1) <= 0.05, (ratio, used)


def test_one_cycle_interleaves_shares_by_weight():
    w = world([a_ce().max_vcpus(8)], [a_queue().fair_share(a=1.0, b=3.0)])
    s = scheduler_with(w, *(a_job(f"{x}{i}").share(x).submitted(i) for x in "ab" for i in range(10)))
    keys = dispatched(s.cycle(w, 0.0))
    assert sum(k.startswith("a") for k in keys) == 6 and sum(k.startswith("b") for k in keys) == 2


@pytest.mark.parametrize(
    ("decay", "b_share_first_minute"),
    [
        pytest.param(0, (0.45, 0.55), id="decay 0: only current usage counts, b gets half at once"),
        # a's decayed usage is 10 vCPUs after an hour at 20 with a 1 h half-life; scores
        # 10 + r_a == 0 + r_b with r_a + r_b == 20 give b 15 of the 20 vCPUs.
        pytest.param(3600, (0.7, 0.8), id="decay 1 h: a's past usage counts, b gets 3/4 first"),
    ],
)
def test_decay_gives_weight_to_past_usage(decay, b_share_first_minute):
    w = world([a_ce().max_vcpus(20)], [a_queue().fair_share(decay=decay)])
    s = scheduler_with(w)
    simulate(s, w, {"a": 40}, seconds=3600, durations=(1, 1))  # a alone for an hour
    used = simulate(s, w, {"a": 40, "b": 40}, seconds=60, start=3600, durations=(1, 1))
    lo, hi = b_share_first_minute
    assert lo <= used["b"] / (used["a"] + used["b"]) <= hi, used


def test_usage_decays_with_the_half_life():
    u = BucketUsage(avg_vcpus=8.0, held_milli=0, updated_at=0.0)
    u.advance(100.0, half_life=100)
    assert u.avg_vcpus == pytest.approx(4.0)
    u.held_milli = 2000
    u.advance(1e6, half_life=100)
    assert u.avg_vcpus == pytest.approx(2.0)  # converges to the held vCPUs


@pytest.mark.parametrize(
    ("reservation", "shares", "max_dispatched"),
    [
        pytest.param(50, "a", 50, id="computeReservation 50, one active share: 50% held back"),
        pytest.param(50, "ab", 75, id="two active shares: 25% held back"),
        pytest.param(25, "a", 75, id="computeReservation 25, one share: 25% held back"),
        pytest.param(0, "a", 100, id="no reservation"),
    ],
)
def test_compute_reservation(reservation, shares, max_dispatched):
    w = world([a_ce().max_vcpus(100)], [a_queue().fair_share(reservation=reservation)])
    s = scheduler_with(w, *(a_job(f"{x}{i}").share(x).submitted(i) for x in shares for i in range(100)))
    r = s.cycle(w, 0.0)
    assert len(dispatched(r)) == max_dispatched
    if reservation:
        (b,) = of_type(r, Block)
        assert b.reason_code == WAITING_RESERVATION and not b.queue_blocked


def test_reserved_capacity_goes_to_a_newly_active_share():
    w = world([a_ce().max_vcpus(100)], [a_queue().fair_share(reservation=50)])
    s = scheduler_with(w, *(a_job(f"a{i}").share("a").submitted(i) for i in range(100)))
    assert len(dispatched(s.cycle(w, 0.0))) == 50
    for i in range(100):
        s.add_runnable(a_job(f"b{i}").share("b").submitted(i).view, 1.0)
    keys = dispatched(s.cycle(w, 1.0))
    assert keys and all(k.startswith("b") for k in keys) and len(keys) == 25


def test_scheduling_priority_orders_jobs_within_a_share():
    w = world([a_ce().max_vcpus(1)], [a_queue().fair_share()])
    s = scheduler_with(
        w,
        a_job("old-low").share("a", priority=1).submitted(1),
        a_job("new-high").share("a", priority=9).submitted(5),
        a_job("mid").share("a", priority=5).submitted(3),
    )
    order = []
    for t in range(3):
        (k,) = dispatched(s.cycle(w, float(t)))
        order.append(k)
        s.attempt_ended(k, float(t))
    assert order == ["new-high", "mid", "old-low"]


def test_share_with_lowest_weighted_usage_goes_first():
    w = world([a_ce().max_vcpus(1)], [a_queue().fair_share(decay=600, a=1.0, b=1.0)])
    s = scheduler_with(w, a_job("busy-run").share("a").submitted(0))
    s.cycle(w, 0.0)  # a holds the only vCPU
    s.add_runnable(a_job("a2").share("a").submitted(1).view, 1.0)
    s.add_runnable(a_job("b1").share("b").submitted(2).view, 1.0)
    s.attempt_ended("busy-run", 10.0)
    assert dispatched(s.cycle(w, 10.0)) == ["b1"]
    assert s.snapshot("q") == ["a2"]


def test_prefix_entries_pool_usage_of_matching_identifiers():
    policy = PolicyView(weights={"team*": 1.0, "solo": 1.0})
    assert policy.bucket_of("team-x") == ("team*", 1.0)
    assert policy.bucket_of("solo") == ("solo", 1.0)
    assert policy.bucket_of("other") == ("other", 1.0)  # not listed: its own share, weight 1
    w = world([a_ce().max_vcpus(40)], [a_queue().fair_share(**{"team*": 1.0, "solo": 1.0})])
    s = scheduler_with(w)
    used = simulate(s, w, {"team-x": 40, "team-y": 40, "solo": 40}, seconds=3000)
    team = used["team-x"] + used["team-y"]
    assert abs(team / used["solo"] - 1) <= 0.05, used


def test_fair_share_snapshot_interleaves_by_score():
    w = world([a_ce().max_vcpus(0)], [a_queue().fair_share(a=1.0, b=1.0)])
    s = scheduler_with(w, *(a_job(f"{x}{i}").share(x).submitted(i) for x in "ab" for i in range(3)))
    assert s.snapshot("q") == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert s.position("b1") == 4


def test_500_active_share_identifiers_per_queue():
    w = world([a_ce().max_vcpus(0)], [a_queue().fair_share(decay=600)])
    s = scheduler_with(w, *(a_job(f"j{i}").share(f"s{i}") for i in range(500)))
    assert s.add_runnable(a_job("more-of-s1").share("s1").view, 1.0) is None  # existing share: fine
    rejected = s.add_runnable(a_job("new").share("s500").view, 1.0)
    assert isinstance(rejected, Cancel) and "500 active share identifiers" in rejected.status_reason
    assert s.share_admission("q", "s500", 1.0) is not None
    s.remove("j0", 2.0)  # s0 has no job left, but stays active for shareDecaySeconds
    assert s.share_admission("q", "s500", 601.0) is not None
    assert s.share_admission("q", "s500", 602.0) is None
    assert s.add_runnable(a_job("new").share("s500").view, 602.0) is None


# --- SUBMITTED and PENDING jobs make a share identifier active (issue 11 item 8) -----------------


def test_a_pending_job_s_share_counts_for_the_compute_reservation():
    """AWS: "If a share identifier has jobs in a SUBMITTED, PENDING, RUNNABLE, STARTING, or
    RUNNING state, it's considered an active share identifier": a share whose only job waits on
    a dependency shrinks the reserve like a RUNNABLE one (two shares at 50%: 25% held back)."""
    w = world([a_ce().max_vcpus(100)], [a_queue().fair_share(reservation=50)])
    s = scheduler_with(w, *(a_job(f"a{i}").share("a").submitted(i) for i in range(100)))
    assert s.note_waiting("pending-b", "q", "b", 0.0) is None
    assert len(dispatched(s.cycle(w, 0.0))) == 75


def test_a_waiting_job_that_becomes_runnable_or_leaves_stops_counting_once():
    w = world([a_ce().max_vcpus(100)], [a_queue().fair_share(reservation=50)])
    s = scheduler_with(w)
    s.note_waiting("b1", "q", "b", 0.0)
    s.note_waiting("b1", "q", "b", 0.0)  # idempotent: one live job, not two
    s.add_runnable(a_job("b1").share("b").view, 1.0)  # admitted: no 500-limit check, still one job
    assert s._fs("q").live_jobs == {"b": 1}
    s.note_waiting("c1", "q", "c", 1.0)
    s.forget_waiting("c1", 2.0)
    s.remove("b1", 2.0)
    assert s._fs("q").live_jobs == {}


def test_the_501st_share_identifier_is_refused_already_at_pending():
    w = world([a_ce().max_vcpus(0)], [a_queue().fair_share()])
    s = scheduler_with(w)
    for i in range(500):
        assert s.note_waiting(f"j{i}", "q", f"s{i}", 0.0) is None
    refused = s.note_waiting("new", "q", "s500", 0.0)
    assert isinstance(refused, Cancel) and "500 active share identifiers" in refused.status_reason
    assert s.note_waiting("same-share", "q", "s7", 0.0) is None  # an active identifier is fine
