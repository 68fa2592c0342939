"""What users see of a queue besides its jobs' states: the Blocked condition and queue positions.

Why this exists: both are policies, not I/O -- when a queue counts as blocked and what its
condition says; which RUNNABLE jobs get a ``status.queuePosition``, how often, and when a
position is taken away. The loop writes what these say (``adapters.objectstatus`` the condition,
``adapters.controller`` the positions, within each job's status patch).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from batchyard.core.lifecycle import iso
from batchyard.core.scheduler import BlockInfo, QueueStatus


def blocked_condition(queue: QueueStatus | None, now: float) -> tuple[BlockInfo | None, dict[str, Any]]:
    """The queue's blocking head (None: not blocked) and the JobQueue's Blocked condition.

    AWS: a queue is blocked when its head job can't start for a reason that won't go away on its
    own (``BlockInfo.queue_blocked``: e.g. MISCONFIGURATION:*, CAPACITY:INSUFFICIENT_*); a head
    that merely waits for room does not block it."""
    blocked = queue.blocked if queue is not None and queue.blocked and queue.blocked.queue_blocked else None
    return blocked, {
        "type": "Blocked",
        "status": "True" if blocked else "False",
        "reason": blocked.reason_code.replace(":", "_") if blocked else "NotBlocked",
        "message": blocked.status_reason if blocked else "the queue's head job can start",
        "lastTransitionTime": iso(blocked.since if blocked else now),
    }


@dataclass
class QueuePositions:
    """``status.queuePosition`` (0 = head) of RUNNABLE jobs, cheaply.

    Writing every RUNNABLE job's position every cycle would flood the API server (each dispatch
    from the head shifts every position behind it). The rule:

    * only the first ``limit`` (100) jobs of each queue get a position -- the AWS "job queue
      snapshot" shows the first 100 too; jobs further back have none;
    * positions are recomputed at most every ``interval_seconds`` (5 s), from
      ``Scheduler.snapshot`` (O(100 log 100) per queue, after the cycle's dispatches);
    * a job's position is written only when it differs from its status, and always within the
      job's one merge patch of that cycle;
    * a job that leaves RUNNABLE, or falls out of the first ``limit``, loses its position at once.

    Worst case: ``limit`` writes per queue per interval (the head dispatching continuously).
    """

    limit: int = 100
    interval_seconds: float = 5.0
    due: float = 0.0
    positioned: set[Hashable] | None = field(default=None)  # None: not yet swept after (re)start
    # The first ``limit`` jobs of each queue in order, as of the last refresh (core.estimate).
    order: dict[str, list[Hashable]] = field(default_factory=dict)

    def refresh(
        self,
        now: float,
        queues: Iterable[str],
        snapshot: Callable[[str, int], list[Hashable]],
        position_of: Callable[[Hashable], tuple[bool, int | None] | None],
        previously_positioned: Callable[[], Iterable[Hashable]],
        dispatched: set[Hashable],
    ) -> Mapping[Hashable, int | None]:
        """The positions to write now: job -> new position (None: remove it).

        ``position_of(job)``: (is RUNNABLE, its current position), None for a job that is gone;
        ``previously_positioned()``: jobs holding a position in status (read once after a restart).
        """
        if now < self.due or self.limit <= 0:
            return {}
        self.due = now + self.interval_seconds
        fresh: dict[Hashable, int] = {}
        self.order = {}
        for queue in queues:
            ordered = self.order[queue] = snapshot(queue, self.limit)
            for index, key in enumerate(ordered):
                fresh[key] = index
        if self.positioned is None:  # after a restart: positions left in status by the last run
            self.positioned = set(previously_positioned())
        changes: dict[Hashable, int | None] = {}
        for key in (self.positioned - fresh.keys()) | fresh.keys():
            current = position_of(key)
            if current is None or key in dispatched:
                continue
            runnable, position = current
            wanted = fresh.get(key) if runnable else None
            if position != wanted:
                changes[key] = wanted
        self.positioned = set(fresh)
        return changes
