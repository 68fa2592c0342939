"""When will a RUNNABLE job start? An estimate from the queue order, the capacity and the
expected run times (issue 15, "explainable pending").

In the shape of AWS GetJobQueueSnapshot's front of queue (the first 100 RUNNABLE jobs), but a
forecast: for each job with a ``queuePosition``, the earliest time it could start if everything
ahead of it runs as expected. (AWS's ``earliestTimeAtPosition`` is, per its API model, "when the
job transitioned to its current position", a past time, so the gateway does not put this
estimate there.) The model, deliberately simple and stated:

* capacity is counted in vCPUs: the sum of the queue's usable compute environments' capacity
  (``ce_capacity``), shared with whatever already runs there (every queue's attempts);
* the jobs ahead start in queue order, none passes another (AWS: no backfill behind the head);
* a running attempt ends at its start plus its expected run time (or now, if it already ran
  longer than expected); a STARTING one counts as starting now;
* a job's expected run time is the median of the recent successful run times of its job
  definition (``RunTimes``: the last ``HISTORY`` per definition, in memory, so empty after an
  operator restart), never more than its ``attemptDurationSeconds`` (it is stopped then), or
  that timeout alone when there is no history yet. Without either it is unknown, and so is the
  start of every job that must wait for its capacity;
* higher-priority queues sharing the compute environments, new arrivals, retries and fair-share
  reordering are not foreseen: it is an estimate, written as one (``status.estimatedStartAt``
  with ``status.estimatedStartBasis``).

Pure and synchronous; time is an argument.
"""

from __future__ import annotations

import heapq
import statistics
from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from batchyard.core.capacity import CEView

HISTORY = 16  # successful run times remembered per job definition
HISTORY_DEFINITIONS = 4096  # definitions remembered at most (the least recently fed go first)

# What an estimate rests on (status.estimatedStartBasis).
NOW = "capacity is free"
HISTORY_BASIS = "recent run times"
TIMEOUT_BASIS = "attempt timeouts"
MIXED_BASIS = "recent run times and attempt timeouts"


@dataclass
class RunTimes:
    """Recent successful run times (seconds, startedAt to stoppedAt) per job definition key,
    bounded: ``HISTORY`` per definition, ``HISTORY_DEFINITIONS`` definitions."""

    per_definition: int = HISTORY
    max_definitions: int = HISTORY_DEFINITIONS
    _times: dict[Hashable, deque[float]] = field(default_factory=dict)

    def record(self, definition: Hashable, seconds: float) -> None:
        if seconds < 0:
            return
        times = self._times.pop(definition, None)  # re-inserted last: most recently fed
        if times is None:
            times = deque(maxlen=self.per_definition)
            if len(self._times) >= self.max_definitions:
                del self._times[next(iter(self._times))]
        times.append(seconds)
        self._times[definition] = times

    def typical(self, definition: Hashable) -> float | None:
        """The median of the recent run times, None without any."""
        times = self._times.get(definition)
        return statistics.median(times) if times else None

    def __len__(self) -> int:
        return len(self._times)


def expected_run(history: float | None, timeout: float | None) -> tuple[float, str] | None:
    """(expected seconds, basis) of one attempt: the recent typical run time (capped by the
    attempt timeout, which stops it), else the timeout, else unknown (None)."""
    if history is not None:
        if timeout is not None and timeout < history:
            return float(timeout), TIMEOUT_BASIS
        return history, HISTORY_BASIS
    if timeout is not None:
        return float(timeout), TIMEOUT_BASIS
    return None


def ce_capacity(ce: CEView) -> float:
    """vCPUs a compute environment can run at once: an UNMANAGED one's nodes, a MANAGED one's
    maxvCpus (its node pool grows to it). 0 when it is not usable (DISABLED or INVALID)."""
    if not ce.usable:
        return 0.0
    if not ce.managed and ce.nodes is not None:
        return min(float(ce.max_vcpus), sum(n.allocatable.vcpus for n in ce.nodes))
    return float(ce.max_vcpus)


@dataclass(frozen=True, slots=True)
class Running:
    """An attempt holding capacity where the queue runs its jobs."""

    vcpus: float
    started_at: float | None  # None: STARTING (counted as starting now)
    expected: tuple[float, str] | None  # (seconds, basis), None: unknown


@dataclass(frozen=True, slots=True)
class Waiting:
    """A RUNNABLE job of the queue, in queue order."""

    key: Hashable
    vcpus: float
    expected: tuple[float, str] | None


@dataclass(frozen=True, slots=True)
class Estimate:
    at: float  # epoch seconds
    basis: str


def estimate_starts(
    waiting: Sequence[Waiting], running: Iterable[Running], capacity: float, now: float
) -> dict[Hashable, Estimate | None]:
    """The estimated start of each waiting job (in queue order), None where it can't be told:
    a job larger than the capacity (it blocks the queue, and everyone behind waits with it), or
    one that needs capacity held by attempts whose run time is unknown."""
    free = capacity
    # (end time, sequence, vCPUs freed, basis): ends in time order; unknown ends never come.
    ends: list[tuple[float, int, float, str]] = []
    seq = 0
    for r in running:
        free -= r.vcpus
        if r.expected is not None:
            seconds, basis = r.expected
            end = max(now, (r.started_at if r.started_at is not None else now) + seconds)
            heapq.heappush(ends, (end, seq, r.vcpus, basis))
            seq += 1
    out: dict[Hashable, Estimate | None] = {}
    t = now
    bases: set[str] = set()
    blocked = False
    epsilon = 1e-9
    for job in waiting:
        if blocked or job.vcpus > capacity + epsilon:
            blocked = True  # no backfill: nobody passes a job that can't start
            out[job.key] = None
            continue
        while free + epsilon < job.vcpus and ends:
            end, _, vcpus, basis = heapq.heappop(ends)
            t = max(t, end)
            free += vcpus
            bases.add(basis)
        if free + epsilon < job.vcpus:
            blocked = True  # waits for capacity whose release can't be foreseen
            out[job.key] = None
            continue
        out[job.key] = Estimate(t, _basis(bases) if t > now else NOW)
        free -= job.vcpus
        if job.expected is not None:
            seconds, basis = job.expected
            heapq.heappush(ends, (t + seconds, seq, job.vcpus, basis))
            seq += 1
    return out


def _basis(bases: set[str]) -> str:
    if bases == {HISTORY_BASIS}:
        return HISTORY_BASIS
    if bases == {TIMEOUT_BASIS}:
        return TIMEOUT_BASIS
    return MIXED_BASIS


# An estimate is rewritten only when its position is written, or when it moved by more than
# this share of the wait it announces (and at least MIN_SHIFT_SECONDS): so estimates cost no
# more writes than positions (at most one per positioned job per refresh), and in practice far
# fewer.
SHIFT_SHARE = 0.25
MIN_SHIFT_SECONDS = 10.0


def worth_writing(old: float | None, new: float | None, now: float) -> bool:
    """Whether an estimate changed enough to be written (positions unchanged)."""
    if old is None or new is None:
        return old != new
    if old <= now and new <= now + MIN_SHIFT_SECONDS:
        return False  # "could start now" a while ago still reads "now": not rewritten each time
    wait = max(old - now, new - now, 0.0)
    return abs(new - old) > max(MIN_SHIFT_SECONDS, SHIFT_SHARE * wait)


def queue_capacity(order: Sequence[str], ces: Mapping[str, CEView]) -> float:
    """The vCPUs of the queue's compute environments together (see ``ce_capacity``)."""
    return sum(ce_capacity(ces[name]) for name in order if name in ces)
