"""``Scheduler.add_runnables`` (an array's RUNNABLE children handed over at once after a
restart, issue 14) leaves the scheduler exactly as one ``add_runnable`` per job in the same
order: the same counts, demand, fair-share membership, refusals and dispatch order."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from sched_builders import JobB, a_ce, a_job, a_queue, dispatched, world

from batchyard.core.capacity import Resources
from batchyard.core.queueing import QueueBacklog
from batchyard.core.scheduler import Cancel, JobView, Scheduler

W = world(
    [a_ce().max_vcpus(40)],
    [a_queue("q"), a_queue("fs").fair_share(a=1.0, b=3.0).priority(5), a_queue("other").priority(2)],
)


def mixed_jobs(seed: int) -> list[JobView]:
    """Children of several arrays in several queues and shares, retries, duplicates."""
    rng = random.Random(seed)
    out: list[JobView] = []
    for n in range(120):
        queue = rng.choice(["q", "fs", "other"])
        job: JobB = a_job(("ns", f"p{n % 7}", n % 40)).submitted(float(n % 5)).requesting(cpu=1, memory=256)
        if queue == "fs":
            job = job.share(rng.choice(["a", "b", "c"]), priority=rng.randint(0, 3))
        out.append(JobView(**{**_fields(job.view), "queue": queue, "retried": rng.random() < 0.2}))
    return out + out[3:9]  # the same children again (a re-queued retry, say)


def _fields(view: JobView) -> dict[str, Any]:
    return {f: getattr(view, f) for f in JobView.__dataclass_fields__}


def state_of(s: Scheduler) -> tuple[Any, ...]:
    return (
        {k: (e.seq, e.share, e.state) for k, e in s._jobs.items()},
        {q: dict(c) for q, c in s._counts.items()},
        dict(s._demand),
        {q: dict(fs.live_jobs) for q, fs in s._fairshare.items()},
        {q: {sh: (sorted(h.items), h.live) for sh, h in b.shares.items()} for q, b in s._backlogs.items()},
    )


def run_both(jobs: list[JobView], before: Callable[[Scheduler], None] = lambda s: None) -> None:
    one, many = Scheduler(), Scheduler()
    for s in (one, many):
        s.set_world(W)
        before(s)
    cancels_one = [c for j in jobs if (c := one.add_runnable(j, 1.0)) is not None]
    cancels_many = many.add_runnables(jobs, 1.0)
    assert cancels_many == cancels_one
    assert state_of(many) == state_of(one)
    for now in (2.0, 3.0, 4.0):
        assert dispatched(many.cycle(W, now)) == dispatched(one.cycle(W, now))


def test_mixed_queues_shares_retries_and_duplicates_end_as_one_by_one() -> None:
    for seed in range(5):
        run_both(mixed_jobs(seed))


def test_into_a_scheduler_that_already_holds_and_waits_for_some() -> None:
    jobs = mixed_jobs(7)

    def before(s: Scheduler) -> None:
        for j in jobs[:10]:
            s.add_runnable(j, 0.5)
        s.note_waiting(jobs[20].key, "fs", "a", 0.5)

    run_both(jobs, before)


def test_the_501st_share_identifier_is_refused_as_one_by_one() -> None:
    jobs = [a_job(("ns", "p", i)).share(f"s{i}").view for i in range(505)]
    jobs = [JobView(**{**_fields(j), "queue": "fs"}) for j in jobs]
    one = Scheduler()
    one.set_world(W)
    many = Scheduler()
    many.set_world(W)
    expected = [c for j in jobs if (c := one.add_runnable(j, 1.0)) is not None]
    got = many.add_runnables(jobs, 1.0)
    assert len(got) == 5 and all(isinstance(c, Cancel) for c in got) and got == expected


def test_one_array_of_many_children_is_one_run() -> None:
    s = Scheduler()
    s.set_world(W)
    views = [
        JobView(key=("ns", "arr", i), queue="q", submitted_at=1.0, demand=Resources.of(1))
        for i in range(1000)
    ]
    assert s.add_runnables(views, 1.0) == []
    assert s.counts("q")["RUNNABLE"] == 1000
    assert dispatched(s.cycle(W, 2.0))[:3] == [("ns", "arr", 0), ("ns", "arr", 1), ("ns", "arr", 2)]


def test_push_many_heapifies_or_pushes_and_counts() -> None:
    b = QueueBacklog("q")
    b.push("", (0, 1, 1.0, 5, "x"))
    b.push_many("", [(0, 1, 1.0, i, i) for i in range(4)])  # more than held: heapify
    b.push_many("", [(0, 1, 0.5, 9, "y")])  # fewer: pushed
    assert b.live == 6 and b.shares[""].live == 6
    assert b.head("", lambda it: True) == (0, 1, 0.5, 9, "y")
