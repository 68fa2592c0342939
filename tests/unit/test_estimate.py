"""core.estimate: the estimated start of RUNNABLE jobs (issue 15), as tables."""

from __future__ import annotations

import pytest

from batchyard.core.capacity import CEView, NodeView, Resources
from batchyard.core.estimate import (
    HISTORY_BASIS,
    MIXED_BASIS,
    NOW,
    TIMEOUT_BASIS,
    Estimate,
    Running,
    RunTimes,
    Waiting,
    ce_capacity,
    estimate_starts,
    expected_run,
    queue_capacity,
    worth_writing,
)

T = 1_000_000.0
H = (60.0, HISTORY_BASIS)  # a job expected to run 60 s, from its definition's history
TO = (100.0, TIMEOUT_BASIS)  # ... 100 s, from its timeout


def w(name: str, vcpus: float = 1, expected: tuple[float, str] | None = H) -> Waiting:
    return Waiting(name, vcpus, expected)


def r(vcpus: float = 1, started: float | None = T - 30, expected: tuple[float, str] | None = H) -> Running:
    return Running(vcpus, started, expected)


def at(offset: float, basis: str = HISTORY_BASIS) -> Estimate:
    return Estimate(T + offset, basis if offset > 0 else NOW)


P = pytest.param
ROWS = [
    P([], [], 2, {}, id="empty queue: nothing to estimate"),
    P([w("a")], [], 2, {"a": at(0)}, id="capacity free: starts now"),
    P([w("a"), w("b")], [], 2, {"a": at(0), "b": at(0)}, id="two slots free: both now"),
    P([w("a")], [r(), r()], 2, {"a": at(30)}, id="full: starts when the first running job ends (60 s after its start 30 s ago)"),
    P([w("a")], [r(started=T - 10), r(started=T - 50)], 2, {"a": at(10)},
      id="full: the running job that ends first frees the slot"),
    P([w("a"), w("b"), w("c")], [r(started=T - 30), r(started=T - 30)], 2,
      {"a": at(30), "b": at(30), "c": at(90)}, id="many ahead, two slots: in waves of the run time"),
    P([w("a"), w("b"), w("c"), w("d")], [], 2, {"a": at(0), "b": at(0), "c": at(60), "d": at(60)},
      id="four waiting, two slots free: the second pair after the first"),
    P([w("a")], [r(started=T - 600)], 1, {"a": at(0)},
      id="a running job past its expected run time is counted as ending now"),
    P([w("a")], [r(started=None)], 1, {"a": at(60)}, id="a STARTING job counts as starting now"),
    P([w("a")], [r(expected=None)], 1, {"a": None}, id="unknown run time of the job ahead: no estimate"),
    P([w("a"), w("b")], [r(expected=None)], 2, {"a": at(0), "b": at(60)},
      id="room for one beside a job of unknown run time: the next one waits for the first"),
    P([w("a"), w("b", vcpus=2)], [r(expected=None)], 2, {"a": at(0), "b": None},
      id="a job needing the slot of a job of unknown run time: no estimate"),
    P([w("a", expected=None), w("b")], [], 1, {"a": at(0), "b": None},
      id="the job ahead has no expected run time: the one behind has no estimate"),
    P([w("a")], [r(expected=TO)], 1, {"a": at(70, TIMEOUT_BASIS)}, id="timeout-based: says so"),
    P([w("a"), w("b")], [r(expected=TO)], 1, {"a": at(70, TIMEOUT_BASIS), "b": at(130, MIXED_BASIS)},
      id="timeouts and history: both named"),
    P([w("big", vcpus=4), w("b")], [], 2, {"big": None, "b": None},
      id="a head larger than the capacity: nobody behind it starts (no backfill)"),
    P([w("a", vcpus=2), w("b")], [r(started=T - 30)], 2, {"a": at(30), "b": at(90)},
      id="a 2-vCPU job waits for both slots; the next one after it (no backfill)"),
    P([w("a")], [], 0, {"a": None}, id="no capacity at all (DISABLED compute environments): no estimate"),
    P([w("a", vcpus=0.5), w("b", vcpus=0.5)], [r(vcpus=0.5)], 1, {"a": at(0), "b": at(30)},
      id="fractional vCPUs"),
]  # fmt: skip


@pytest.mark.parametrize(("waiting", "running", "capacity", "expected"), ROWS)
def test_estimate_starts(
    waiting: list[Waiting], running: list[Running], capacity: float, expected: dict[str, Estimate | None]
) -> None:
    assert estimate_starts(waiting, running, capacity, T) == expected


@pytest.mark.parametrize(("waiting", "running", "capacity", "expected"), ROWS)
def test_estimates_never_go_backwards_in_queue_order(
    waiting: list[Waiting], running: list[Running], capacity: float, expected: dict[str, Estimate | None]
) -> None:
    got = estimate_starts(waiting, running, capacity, T)
    times = [e.at for e in got.values() if e is not None]
    assert times == sorted(times) and all(t >= T for t in times)


@pytest.mark.parametrize(
    ("history", "timeout", "expected"),
    [
        (None, None, None),
        (50.0, None, (50.0, HISTORY_BASIS)),
        (None, 300, (300.0, TIMEOUT_BASIS)),
        (50.0, 300, (50.0, HISTORY_BASIS)),
        (500.0, 300, (300.0, TIMEOUT_BASIS)),
    ],
    ids=["neither", "history", "timeout", "history under the timeout", "history over the timeout: capped"],
)
def test_expected_run(history: float | None, timeout: int | None, expected: tuple[float, str] | None) -> None:
    assert expected_run(history, timeout) == expected


def test_run_times_keep_the_median_of_the_last_n_per_definition() -> None:
    times = RunTimes(per_definition=3, max_definitions=2)
    assert times.typical("d") is None
    for seconds in (100, 10, 12, 14):
        times.record("d", seconds)
    assert times.typical("d") == 12  # 100 fell out of the window
    times.record("d", -1)  # a clock step backwards is ignored
    assert times.typical("d") == 12
    times.record("e", 5)
    times.record("d", 16)  # d fed again: the most recent
    times.record("f", 7)  # a third definition: the least recently fed (e) goes
    assert (len(times), times.typical("e"), times.typical("f")) == (2, None, 7)


def node(name: str, vcpus: int) -> NodeView:
    return NodeView(name, Resources.of(vcpus, 4096))


@pytest.mark.parametrize(
    ("ce", "vcpus"),
    [
        (CEView("m", 16), 16.0),
        (CEView("m", 16, nodes=(node("n", 4),)), 16.0),
        (CEView("u", 16, managed=False, nodes=(node("a", 4), node("b", 2))), 6.0),
        (CEView("u", 4, managed=False, nodes=(node("a", 8),)), 4.0),
        (CEView("d", 16, state="DISABLED"), 0.0),
        (CEView("i", 16, status="INVALID"), 0.0),
    ],
    ids=["managed: maxvCpus", "managed with fewer nodes: grows to maxvCpus", "unmanaged: its nodes",
         "unmanaged: at most maxvCpus", "DISABLED", "INVALID"],
)  # fmt: skip
def test_ce_capacity(ce: CEView, vcpus: float) -> None:
    assert ce_capacity(ce) == vcpus
    assert queue_capacity([ce.name, "missing"], {ce.name: ce}) == vcpus


@pytest.mark.parametrize(
    ("old", "new", "write"),
    [
        (None, None, False),
        (None, T + 60, True),
        (T + 60, None, True),
        (T + 60, T + 65, False),
        (T + 600, T + 700, False),
        (T + 600, T + 810, True),
        (T + 20, T + 35, True),
        (T - 60, T, False),
        (T - 60, T + 30, True),
    ],
    ids=["still none", "a first estimate", "no longer told", "5 s: kept", "100 s of a 700 s wait: kept",
         "210 s of an 810 s wait: written", "15 s of a short wait: written",
         "'now' a minute ago is still now: kept", "'now' became 30 s from now: written"],
)  # fmt: skip
def test_worth_writing(old: float | None, new: float | None, write: bool) -> None:
    assert worth_writing(old, new, T) is write
