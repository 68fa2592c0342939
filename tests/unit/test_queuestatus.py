"""What users see of a queue (core.queuestatus): the Blocked condition, and which RUNNABLE jobs
get a queue position and when (the first N, at most once per interval, only on change)."""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from batchyard.core.capacity import ZERO
from batchyard.core.jobref import JobRef
from batchyard.core.lifecycle import iso
from batchyard.core.queuestatus import QueuePositions, blocked_condition
from batchyard.core.scheduler import BlockInfo, QueueStatus

NOW = 1_800_000_000.0


def a_queue(blocked: BlockInfo | None) -> QueueStatus:
    return QueueStatus(name="q", counts={}, head=None, blocked=blocked, runnable_demand=ZERO)


def a_block(queue_blocked: bool) -> BlockInfo:
    return BlockInfo(
        job_key=JobRef("ns", "j"),
        reason_code="MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
        status_reason="MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - too big",
        since=NOW - 30,
        queue_blocked=queue_blocked,
        new=True,
        detail="",
    )


@pytest.mark.parametrize(
    ("queue", "status", "reason"),
    [
        pytest.param(None, "False", "NotBlocked", id="a queue the cycle did not report"),
        pytest.param(a_queue(None), "False", "NotBlocked", id="a head that can start"),
        pytest.param(
            a_queue(a_block(False)), "False", "NotBlocked", id="a head that waits for room does not block"
        ),
        pytest.param(
            a_queue(a_block(True)),
            "True",
            "MISCONFIGURATION_JOB_RESOURCE_REQUIREMENT",
            id="an AWS blocked reason",
        ),
    ],
)
def test_blocked_condition(queue: QueueStatus | None, status: str, reason: str) -> None:
    _, condition = blocked_condition(queue, NOW)
    assert (condition["status"], condition["reason"]) == (status, reason)
    assert condition["lastTransitionTime"] == iso(NOW - 30 if status == "True" else NOW)


class Jobs:
    """RUNNABLE jobs j0.. of queue q, in order, with the positions their status shows."""

    def __init__(self, n: int) -> None:
        self.order: list[Hashable] = [JobRef("ns", f"j{i}") for i in range(n)]
        self.shown: dict[Hashable, int | None] = dict.fromkeys(self.order)

    def snapshot(self, queue: str, limit: int) -> list[Hashable]:
        return self.order[:limit]

    def position_of(self, key: Hashable) -> tuple[bool, int | None] | None:
        return (key in self.order, self.shown[key]) if key in self.shown else None

    def refresh(self, positions: QueuePositions, now: float) -> dict[str, int | None]:
        changes = positions.refresh(now, ["q"], self.snapshot, self.position_of, lambda: [], set())
        self.shown.update(changes)
        return {k.name: v for k, v in changes.items() if isinstance(k, JobRef)}


def test_the_first_n_get_a_position_at_most_once_per_interval_and_only_on_change() -> None:
    jobs, positions = Jobs(3), QueuePositions(limit=2, interval_seconds=5)
    assert jobs.refresh(positions, NOW) == {"j0": 0, "j1": 1}
    jobs.order.pop(0)  # the head was dispatched
    assert jobs.refresh(positions, NOW + 1) == {}  # not before the interval
    assert jobs.refresh(positions, NOW + 5) == {"j0": None, "j1": 0, "j2": 1}
    assert jobs.refresh(positions, NOW + 10) == {}  # nothing changed: nothing written
