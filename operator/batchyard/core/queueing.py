"""The RUNNABLE backlog of a job queue, kept ordered incrementally.

Why this exists: with 100,000 RUNNABLE jobs a scheduling cycle must not sort or scan the whole
backlog. Each queue keeps one binary heap per share identifier (one heap in total for a FIFO
queue), so a cycle touches only the heads it needs: O(log n) per dispatched job, O(1) to look
at a head.

Order within a heap (smallest first) -- the AWS rules it encodes:

1. higher ``schedulingPriority`` first -- only for jobs with a shareIdentifier, i.e. in
   fair-share queues (AWS: "This only affects jobs in job queues with a fair share policy");
2. retried jobs before fresh ones (AWS: "if you set the retry parameter, the job is placed at
   the front of the job queue. That is, the job is given priority."); retried jobs among
   themselves keep their original submission order;
3. submission time (AWS: FIFO), then an insertion sequence number so the order is total and
   deterministic.

Removal is lazy: an entry that left RUNNABLE (dispatched, cancelled, deleted) stays in its heap
until it surfaces at the top, where the validity check drops it; heaps are compacted when more
than half of their items are stale. Undo re-inserts an item with its original sequence number,
so the job returns to exactly the position it had.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

# (neg_priority, retry_rank, submitted_at, seq, job_key) -- seq is unique, so job keys are
# never compared (they are opaque and need not be orderable).
HeapItem = tuple[int, int, float, int, Hashable]


def order_key(
    scheduling_priority: int, has_share: bool, retried: bool, submitted_at: float, seq: int, key: Hashable
) -> HeapItem:
    neg_priority = -scheduling_priority if has_share else 0
    return (neg_priority, 0 if retried else 1, submitted_at, seq, key)


@dataclass(slots=True)
class ShareHeap:
    items: list[HeapItem] = field(default_factory=list)
    live: int = 0
    stale: int = 0


Valid = Callable[[HeapItem], bool]


@dataclass(slots=True)
class QueueBacklog:
    """All RUNNABLE jobs of one queue, by share identifier ("" for none)."""

    name: str
    shares: dict[str, ShareHeap] = field(default_factory=dict)
    live: int = 0

    def push(self, share: str, item: HeapItem) -> None:
        h = self.shares.get(share)
        if h is None:
            h = self.shares[share] = ShareHeap()
        heapq.heappush(h.items, item)
        h.live += 1
        self.live += 1

    def push_many(self, share: str, items: list[HeapItem]) -> None:
        """``push`` of each item: heapified once when they outnumber the heap, else pushed."""
        h = self.shares.get(share)
        if h is None:
            h = self.shares[share] = ShareHeap()
        if len(items) > len(h.items):
            h.items.extend(items)
            heapq.heapify(h.items)
        else:
            for item in items:
                heapq.heappush(h.items, item)
        h.live += len(items)
        self.live += len(items)

    def discard(self, share: str, valid: Valid) -> None:
        """One live item of ``share`` became stale (it stays in the heap until it surfaces)."""
        h = self.shares[share]
        h.live -= 1
        h.stale += 1
        self.live -= 1
        if h.live == 0:
            del self.shares[share]
        elif h.stale > 32 and h.stale > h.live:
            h.items = [it for it in h.items if valid(it)]
            heapq.heapify(h.items)
            h.stale = 0

    def head(self, share: str, valid: Valid) -> HeapItem | None:
        h = self.shares.get(share)
        if h is None:
            return None
        items = h.items
        while items and not valid(items[0]):
            heapq.heappop(items)
            h.stale -= 1
        return items[0] if items else None

    def pop_head(self, share: str) -> None:
        """Remove the (valid) head of ``share`` -- the job was dispatched or cancelled."""
        h = self.shares[share]
        heapq.heappop(h.items)
        h.live -= 1
        self.live -= 1
        if h.live == 0:
            del self.shares[share]

    def ordered(self, share: str, valid: Valid) -> Iterator[HeapItem]:
        """Valid items of one share in order, lazily: O(k log k) for the first k, no full sort."""
        h = self.shares.get(share)
        if h is None:
            return
        items = h.items
        if not items:
            return
        frontier: list[tuple[HeapItem, int]] = [(items[0], 0)]
        n = len(items)
        while frontier:
            item, i = heapq.heappop(frontier)
            if valid(item):
                yield item
            for c in (2 * i + 1, 2 * i + 2):
                if c < n:
                    heapq.heappush(frontier, (items[c], c))


class Merge:
    """The next job among several share heaps of one queue (a FIFO queue, or one fair-share
    bucket that groups the identifiers matching a ``prefix*``): a small heap of heads."""

    __slots__ = ("_backlog", "_heads", "_valid")

    def __init__(self, backlog: QueueBacklog, shares: list[str], valid: Valid) -> None:
        self._backlog = backlog
        self._valid = valid
        self._heads: list[tuple[HeapItem, str]] = []
        for s in shares:
            item = backlog.head(s, valid)
            if item is not None:
                self._heads.append((item, s))
        heapq.heapify(self._heads)

    def peek(self) -> tuple[HeapItem, str] | None:
        heads = self._heads
        while heads:
            item, share = heads[0]
            if self._valid(item):
                return heads[0]
            # the head left RUNNABLE since (e.g. cancelled by a time-limit action): refresh it
            fresh = self._backlog.head(share, self._valid)
            if fresh is None:
                heapq.heappop(heads)
            else:
                heapq.heapreplace(heads, (fresh, share))
        return None

    def advance(self) -> None:
        """The top job was taken (popped from its share heap); bring that share's next job forward."""
        heads = self._heads
        share = heads[0][1]
        fresh = self._backlog.head(share, self._valid)
        if fresh is None:
            heapq.heappop(heads)
        else:
            heapq.heapreplace(heads, (fresh, share))

    def ordered(self) -> Iterator[HeapItem]:
        """All valid items of the merged shares in order (lazy; for queue snapshots)."""
        return heapq.merge(*(self._backlog.ordered(s, self._valid) for _, s in self._heads))

    def __bool__(self) -> bool:
        return self.peek() is not None


QUEUE_HEALTHY: Final = "JobQueue Healthy"  # AWS DescribeJobQueues statusReason of a VALID queue


def queue_health(
    compute_environments: Sequence[str],
    known_compute_environments: Collection[str],
    scheduling_policy: str | None,
    known_policies: Collection[str],
) -> tuple[str, str]:
    """(status, statusReason) of a job queue: VALID with AWS's "JobQueue Healthy", or INVALID
    naming every compute environment and scheduling policy it refers to that does not exist
    (AWS refuses such a queue at CreateJobQueue; Kubernetes admits the object first)."""
    problems = [
        f"ComputeEnvironment {ce} does not exist"
        for ce in compute_environments
        if ce not in known_compute_environments
    ]
    if scheduling_policy and scheduling_policy not in known_policies:
        problems.append(f"SchedulingPolicy {scheduling_policy} does not exist")
    return ("INVALID", "; ".join(problems)) if problems else ("VALID", QUEUE_HEALTHY)
