"""Consumable resources (AWS resource-aware scheduling): all-or-nothing, held until the end."""

from __future__ import annotations

import pytest
from sched_builders import (
    a_ce,
    a_consumable,
    a_job,
    a_queue,
    blocks,
    dispatched,
    of_type,
    scheduler_with,
    world,
)

from batchyard.core.consumables import (
    NON_REPLENISHABLE,
    ConsumableUsage,
    ConsumableView,
    requirement_problems,
)
from batchyard.core.scheduler import WAITING_CONSUMABLE, Cancel, Dispatch


@pytest.mark.parametrize(
    ("resources", "needs", "runs"),
    [
        pytest.param([a_consumable("lic", 2)], {"lic": 2}, True, id="enough of the one resource"),
        pytest.param([a_consumable("lic", 1)], {"lic": 2}, False, id="not enough: waits in RUNNABLE"),
        pytest.param(
            [a_consumable("lic", 5), a_consumable("db", 0)], {"lic": 1, "db": 1}, False, id="all or nothing"
        ),
        pytest.param([], {"lic": 1}, False, id="a resource that does not exist is not available"),
    ],
)
def test_job_starts_only_when_all_resources_are_available(resources, needs, runs):
    w = world([a_ce()], [a_queue()], resources)
    s = scheduler_with(w, a_job("j").needs(**needs))
    r = s.cycle(w, 1.0)
    assert dispatched(r) == (["j"] if runs else [])
    if not runs:
        (b,) = blocks(r)
        assert b.reason_code == WAITING_CONSUMABLE and not b.queue_blocked
        assert b.status_reason.startswith("Waiting for consumable resource(s): ")
        # nothing is held by a job that did not start
        assert all(u.in_use_quantity == 0 for u in r.consumables.values())


def test_resources_are_held_from_starting_until_the_attempt_ends():
    w = world([a_ce()], [a_queue()], [a_consumable("lic", 3)])
    s = scheduler_with(w, *(a_job(f"j{i}").submitted(i).needs(lic=2) for i in range(2)))
    r = s.cycle(w, 1.0)
    assert dispatched(r) == ["j0"]
    assert r.consumables["lic"] == ConsumableUsage("lic", 3, 2, 1, 0)
    s.mark_running("j0")
    assert dispatched(s.cycle(w, 2.0)) == []  # RUNNING still holds them
    s.attempt_ended("j0", 3.0)
    r = s.cycle(w, 4.0)
    assert dispatched(r) == ["j1"]
    assert r.consumables["lic"] == ConsumableUsage("lic", 3, 2, 1, 0)


def test_one_cycle_does_not_hand_out_the_same_units_twice():
    w = world([a_ce()], [a_queue("a").priority(2), a_queue("b").priority(1)], [a_consumable("lic", 3)])
    s = scheduler_with(w, a_job("a1").in_queue("a").needs(lic=2), a_job("b1").in_queue("b").needs(lic=2))
    assert dispatched(s.cycle(w, 1.0)) == ["a1"]


def test_non_replenishable_units_are_consumed_for_good():
    w = world([a_ce()], [a_queue()], [a_consumable("credits", 3, non_replenishable=True)])
    s = scheduler_with(w, *(a_job(f"j{i}").submitted(i).needs(credits=2) for i in range(2)))
    assert dispatched(s.cycle(w, 1.0)) == ["j0"]
    assert s.attempt_ended("j0", 2.0) == {"credits": 2}
    r = s.cycle(w, 3.0)
    assert dispatched(r) == []
    assert r.consumables["credits"] == ConsumableUsage("credits", 1, 0, 1, 2)
    # the caller persisted consumed=2 in status; the view it passes back does not double-count
    w2 = world([a_ce()], [a_queue()], [ConsumableView("credits", 3, "NON_REPLENISHABLE", consumed=2)])
    assert s.cycle(w2, 4.0).consumables["credits"].available_quantity == 1


def test_lowering_the_total_below_what_is_in_use():
    w = world([a_ce()], [a_queue()], [a_consumable("lic", 4)])
    s = scheduler_with(w, a_job("j0").needs(lic=3))
    s.cycle(w, 1.0)
    shrunk = world([a_ce()], [a_queue()], [a_consumable("lic", 2)])
    assert s.cycle(shrunk, 2.0).consumables["lic"] == ConsumableUsage("lic", 2, 3, 0, 0)


def test_undo_returns_units_without_consuming_them():
    w = world([a_ce()], [a_queue()], [a_consumable("credits", 2, non_replenishable=True)])
    s = scheduler_with(w, a_job("j").needs(credits=2))
    (d,) = of_type(s.cycle(w, 1.0), Dispatch)
    s.undo(d, 1.0)
    r = s.cycle(w, 2.0)
    assert dispatched(r) == ["j"]
    assert r.consumables["credits"].consumed == 0


def test_time_limit_action_on_a_consumable_wait():
    w = world([a_ce()], [a_queue().cancel_after(WAITING_CONSUMABLE, 600)], [a_consumable("lic", 0)])
    s = scheduler_with(w, a_job("j").needs(lic=1))
    s.cycle(w, 0.0)
    (c,) = of_type(s.cycle(w, 600.0), Cancel)
    assert c.status_reason == f"Canceled by JobStateTimeLimit action due to reason: {WAITING_CONSUMABLE}"


@pytest.mark.parametrize(
    ("needs", "expected"),
    [
        pytest.param({"lic": 2}, [], id="within the total: fine"),
        pytest.param({"lic": 3}, [], id="exactly the total: fine"),
        pytest.param(
            {"lic": 4}, ["the job needs 4 of consumable resource lic, whose total quantity is 3"],
            id="more than the total can never run",
        ),
        pytest.param({"nope": 1}, ["consumable resource nope does not exist"], id="missing resource"),
        pytest.param(
            {"tokens": 3}, ["the job needs 3 of consumable resource tokens, whose total quantity is 2"],
            id="NON_REPLENISHABLE: what is left of the total counts",
        ),
    ],
)  # fmt: skip
def test_requirement_problems(needs: dict[str, int], expected: list[str]) -> None:
    views = {
        "lic": ConsumableView("lic", 3),
        "tokens": ConsumableView("tokens", 5, NON_REPLENISHABLE, consumed=3),
    }
    assert requirement_problems(needs, views) == expected
