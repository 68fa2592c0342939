"""Compact bookkeeping of an array job's children (up to 10,000), and the parent's state.

Why this module exists: AWS array jobs have up to 10,000 children, but Batchyard keeps one
BatchJob object per array (children are not objects of their own), so every child's state
lives in the parent's status. A Kubernetes object must stay below ~1.5 MiB, and the status is
rewritten often, so child states are kept as sorted, merged index ranges per state — the
encoding Kubernetes Indexed Jobs use for `completedIndexes` ("0-6,8-49"). Typical arrays
(children advance roughly in index order) need a handful of ranges per state; even the worst
case (states alternating index by index) stays in tens of KiB.

Per-child attempt information:
* attempt numbers are needed for correctness (pod names and AWS_BATCH_JOB_ATTEMPT), so they
  are exact and compact: one range set per attempt number >= 2 (attempt 1 is implied);
* the last exit (code, reason) is diagnostics only, so it is bounded: at most
  MAX_EXIT_DETAILS entries, reasons cut to MAX_REASON_LENGTH characters. Entries already
  present are always updated; a new entry when the table is full is dropped and counted in
  `exits_omitted` (first come, first kept — early failures are usually the informative ones,
  and the table never churns).

Parent rules (AWS "Array jobs", ListJobs; digest §2.4):
* "The parent array job can enter a SUBMITTED, PENDING, FAILED, or SUCCEEDED status."
* "An array parent job is updated to PENDING when any child job is updated to RUNNABLE" and
  stays PENDING "while child jobs are running".
* "if a child array job fails ... the parent job also fails ... the parent job transitions to
  FAILED when all child jobs complete"; otherwise it SUCCEEDS when all children succeed.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from batchyard.core.jobstate import CANCELLABLE_STATES, POD_STATES, JobState, StopKind

MIN_ARRAY_SIZE = 2  # AWS: "The array size can be between 2 and 10,000."
MAX_ARRAY_SIZE = 10_000
MAX_EXIT_DETAILS = 500
MAX_REASON_LENGTH = 128
# Per-child start/stop times, bounded like the exits (first come, first kept): epoch
# milliseconds as "started-stopped" strings, about 30 bytes a child.
MAX_TIME_DETAILS = 500


class RangeSet:
    """A set of non-negative ints stored as sorted, disjoint, non-adjacent inclusive ranges.

    Membership is O(log r) for r ranges; adding or removing a range is O(log r) plus the list
    splice (a memmove of at most r entries, small for r <= 5,000).
    """

    __slots__ = ("_count", "_ends", "_starts")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._count = 0

    @classmethod
    def of_range(cls, start: int, end: int) -> RangeSet:
        rs = cls()
        rs.add_range(start, end)
        return rs

    def __len__(self) -> int:
        return self._count

    def __contains__(self, x: object) -> bool:
        if not isinstance(x, int):
            return False
        k = bisect_right(self._starts, x) - 1
        return k >= 0 and self._ends[k] >= x

    def __iter__(self) -> Iterator[int]:
        for s, e in zip(self._starts, self._ends, strict=True):
            yield from range(s, e + 1)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and self.ranges() == other.ranges()

    def __repr__(self) -> str:
        return f"RangeSet({self.to_str()!r})"

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    def first(self) -> int | None:
        return self._starts[0] if self._starts else None

    def add(self, x: int) -> None:
        self.add_range(x, x)

    def remove(self, x: int) -> None:
        self.remove_range(x, x)

    def add_range(self, start: int, end: int) -> None:
        if start < 0 or end < start:
            raise ValueError(f"bad range {start}-{end}")
        # Ranges touching or overlapping [start-1, end+1] merge with the new one.
        i = bisect_left(self._ends, start - 1)
        j = bisect_right(self._starts, end + 1)
        if i < j:
            removed = sum(e - s + 1 for s, e in zip(self._starts[i:j], self._ends[i:j], strict=True))
            start = min(start, self._starts[i])
            end = max(end, self._ends[j - 1])
        else:
            removed = 0
        self._starts[i:j] = [start]
        self._ends[i:j] = [end]
        self._count += (end - start + 1) - removed

    def remove_range(self, start: int, end: int) -> None:
        i = bisect_left(self._ends, start)
        j = bisect_right(self._starts, end)
        if i >= j:
            return
        removed = sum(e - s + 1 for s, e in zip(self._starts[i:j], self._ends[i:j], strict=True))
        starts: list[int] = []
        ends: list[int] = []
        if self._starts[i] < start:  # keep the left stub
            starts.append(self._starts[i])
            ends.append(start - 1)
        if self._ends[j - 1] > end:  # keep the right stub
            starts.append(end + 1)
            ends.append(self._ends[j - 1])
        self._starts[i:j] = starts
        self._ends[i:j] = ends
        self._count -= removed - sum(e - s + 1 for s, e in zip(starts, ends, strict=True))

    def to_str(self) -> str:
        """Kubernetes completedIndexes form: "0-6,8,10-49"; "" when empty."""
        return ",".join(
            str(s) if s == e else f"{s}-{e}" for s, e in zip(self._starts, self._ends, strict=True)
        )

    @classmethod
    def parse(cls, text: str) -> RangeSet:
        rs = cls()
        if not text:
            return rs
        for part in text.split(","):
            lo, sep, hi = part.partition("-")
            try:
                start = int(lo)
                end = int(hi) if sep else start
            except ValueError:
                raise ValueError(f"bad range {part!r} in {text!r}") from None
            rs.add_range(start, end)
        return rs


@dataclass(frozen=True, slots=True)
class ChildExit:
    """Last finished attempt of a child: diagnostics for the user (bounded, see module doc)."""

    exit_code: int | None
    reason: str | None
    status_reason: str | None = None  # the child's last statusReason (AWS DescribeJobs statusReason)


@dataclass(frozen=True, slots=True)
class ChildTimes:
    """A child's startedAt/stoppedAt (epoch seconds) of its current or last attempt."""

    started: float | None
    stopped: float | None = None

    def to_str(self) -> str:
        def ms(t: float | None) -> str:
            return "" if t is None else str(round(t * 1000))

        return f"{ms(self.started)}-{ms(self.stopped)}"

    @classmethod
    def parse(cls, text: str) -> ChildTimes:
        started, _, stopped = text.partition("-")
        return cls(int(started) / 1000 if started else None, int(stopped) / 1000 if stopped else None)


@dataclass(frozen=True, slots=True)
class ChildStop:
    """Which children a cancel/terminate of the parent affects (AWS: children stop with the parent)."""

    fail_now: RangeSet  # move to FAILED
    stop_pods: RangeSet  # delete their attempt's pod (subset of fail_now)


@dataclass(slots=True)
class ArrayChildren:
    """The states, attempt numbers and last exits of children 0..size-1 of one array job."""

    size: int
    states: dict[JobState, RangeSet] = field(default_factory=dict)
    attempts: dict[int, RangeSet] = field(default_factory=dict)  # attempt number (>=2) -> children
    exits: dict[int, ChildExit] = field(default_factory=dict)
    exits_omitted: int = 0
    times: dict[int, ChildTimes] = field(default_factory=dict)
    times_omitted: int = 0

    @classmethod
    def new(cls, size: int, initial: JobState = JobState.PENDING) -> ArrayChildren:
        """AWS: a child's createdAt is "when the child job was spawned by its parent and entered
        the PENDING state" — children start PENDING."""
        if not MIN_ARRAY_SIZE <= size <= MAX_ARRAY_SIZE:
            raise ValueError(f"array size must be between {MIN_ARRAY_SIZE} and {MAX_ARRAY_SIZE}, got {size}")
        return cls(size=size, states={initial: RangeSet.of_range(0, size - 1)})

    def _check(self, index: int) -> None:
        if not 0 <= index < self.size:
            raise IndexError(f"child index {index} outside 0..{self.size - 1}")

    # --- states -------------------------------------------------------------------------

    def state_of(self, index: int) -> JobState:
        self._check(index)
        for state, members in self.states.items():
            if index in members:
                return state
        raise AssertionError(f"child {index} has no state")  # invariant: states partition 0..size-1

    def set_state(self, index: int, state: JobState) -> JobState:
        """Move one child to `state`; returns its previous state. Legality is the caller's (jobstate)."""
        previous = self.state_of(index)
        if previous is not state:
            self.states[previous].remove(index)
            if not self.states[previous]:
                del self.states[previous]
            self.states.setdefault(state, RangeSet()).add(index)
        return previous

    def set_range_state(self, start: int, end: int, state: JobState) -> None:
        """Move children start..end (inclusive) to `state` in one step."""
        self._check(start)
        self._check(end)
        for other in list(self.states):
            if other is not state:
                self.states[other].remove_range(start, end)
                if not self.states[other]:
                    del self.states[other]
        self.states.setdefault(state, RangeSet()).add_range(start, end)

    def in_state(self, state: JobState) -> RangeSet:
        return self.states.get(state, RangeSet())

    def status_summary(self) -> dict[str, int]:
        """DescribeJobs arrayProperties.statusSummary: count per state, every state present."""
        return {state.value: len(self.in_state(state)) for state in JobState}

    @property
    def all_terminal(self) -> bool:
        return sum(len(self.in_state(s)) for s in (JobState.SUCCEEDED, JobState.FAILED)) == self.size

    # --- attempts and exits -------------------------------------------------------------

    def attempt_of(self, index: int) -> int:
        """Current (or last) attempt number of a child; 1 until it is retried."""
        self._check(index)
        for number, members in self.attempts.items():
            if index in members:
                return number
        return 1

    def set_attempt(self, index: int, number: int) -> None:
        if number < 1:
            raise ValueError(f"attempt numbers start at 1, got {number}")
        previous = self.attempt_of(index)
        if previous == number:
            return
        if previous > 1:
            self.attempts[previous].remove(index)
            if not self.attempts[previous]:
                del self.attempts[previous]
        if number > 1:
            self.attempts.setdefault(number, RangeSet()).add(index)

    def record_exit(
        self, index: int, exit_code: int | None, reason: str | None, status_reason: str | None = None
    ) -> bool:
        """Remember the last exit of a child; False when dropped because the table is full."""
        self._check(index)
        if index not in self.exits and len(self.exits) >= MAX_EXIT_DETAILS:
            self.exits_omitted += 1
            return False
        self.exits[index] = ChildExit(
            exit_code,
            None if reason is None else reason[:MAX_REASON_LENGTH],
            None if status_reason is None else status_reason[:MAX_REASON_LENGTH],
        )
        return True

    def record_times(self, index: int, started: float | None, stopped: float | None = None) -> bool:
        """Remember a child's startedAt/stoppedAt (AWS reports them per child); a later attempt
        replaces an earlier one. False when dropped because the table is full."""
        self._check(index)
        if index not in self.times and len(self.times) >= MAX_TIME_DETAILS:
            self.times_omitted += 1
            return False
        self.times[index] = ChildTimes(started, stopped)
        return True

    # --- parent -------------------------------------------------------------------------

    def parent_state(self, current: JobState) -> JobState:
        """The parent's state given its children (AWS rules in the module docstring)."""
        if current.is_terminal:
            return current
        if self.all_terminal:
            # AWS: any child FAILED -> parent FAILED, once all children are complete.
            return JobState.FAILED if self.in_state(JobState.FAILED) else JobState.SUCCEEDED
        waiting = len(self.in_state(JobState.SUBMITTED)) + len(self.in_state(JobState.PENDING))
        if current is JobState.SUBMITTED and waiting == self.size:
            return JobState.SUBMITTED  # no child has reached RUNNABLE yet
        # AWS: "updated to PENDING when any child job is updated to RUNNABLE" and stays PENDING.
        return JobState.PENDING

    def children_to_stop(self, kind: StopKind) -> ChildStop:
        """AWS: "If you cancel or terminate a parent array job, all the child jobs are cancelled
        or terminated with it." A cancel leaves STARTING/RUNNING children running (CancelJob is a
        no-op for them), so the parent fails only when they finish; a terminate stops them too."""
        affected = CANCELLABLE_STATES | (POD_STATES if kind is StopKind.TERMINATE else frozenset())
        fail_now, stop_pods = RangeSet(), RangeSet()
        for state, members in self.states.items():
            if state in affected:
                for s, e in members.ranges():
                    fail_now.add_range(s, e)
                    if state in POD_STATES:
                        stop_pods.add_range(s, e)
        return ChildStop(fail_now, stop_pods)

    # --- serialization ------------------------------------------------------------------

    def to_status(self) -> dict[str, object]:
        """JSON-ready form for the parent's status (keys camelCase, states in enum order)."""
        status: dict[str, object] = {
            "size": self.size,
            "states": {s.value: self.states[s].to_str() for s in JobState if s in self.states},
        }
        if self.attempts:
            status["attempts"] = {str(n): self.attempts[n].to_str() for n in sorted(self.attempts)}
        if self.exits:
            status["lastExits"] = {
                str(i): [e.exit_code, e.reason, e.status_reason] for i, e in sorted(self.exits.items())
            }
        if self.exits_omitted:
            status["lastExitsOmitted"] = self.exits_omitted
        if self.times:
            status["times"] = {str(i): t.to_str() for i, t in sorted(self.times.items())}
        if self.times_omitted:
            status["timesOmitted"] = self.times_omitted
        return status

    @classmethod
    def from_status(cls, status: Mapping[str, object]) -> ArrayChildren:
        """Inverse of to_status; raises ValueError if the states do not partition 0..size-1."""
        size = status["size"]
        if not isinstance(size, int):
            raise ValueError("size must be an int")
        children = cls(size=size)
        seen = RangeSet()
        for name, text in _str_map(status.get("states")).items():
            members = RangeSet.parse(text)
            for s, e in members.ranges():
                before = len(seen)
                seen.add_range(s, e)
                if e >= size or len(seen) - before != e - s + 1:
                    raise ValueError(f"child states overlap or exceed the array size at {s}-{e}")
            if members:
                children.states[JobState(name)] = members
        if len(seen) != size:
            raise ValueError(f"child states cover {len(seen)} of {size} children")
        for number, text in _str_map(status.get("attempts")).items():
            children.attempts[int(number)] = RangeSet.parse(text)
        exits = status.get("lastExits") or {}
        if not isinstance(exits, Mapping):
            raise ValueError("lastExits must be a mapping")
        for index, entry in exits.items():
            code, reason, *rest = entry  # [code, reason] before statusReason was kept
            children.exits[int(index)] = ChildExit(code, reason, rest[0] if rest else None)
        omitted = status.get("lastExitsOmitted", 0)
        children.exits_omitted = omitted if isinstance(omitted, int) else 0
        for index, text in _str_map(status.get("times")).items():
            children.times[int(index)] = ChildTimes.parse(text)
        omitted = status.get("timesOmitted", 0)
        children.times_omitted = omitted if isinstance(omitted, int) else 0
        return children


def _str_map(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("expected a mapping of strings")
    return {str(k): v for k, v in value.items()}


# The order in which non-zero child counts follow "SUCCEEDED n/size" in the progress text: the
# outcome a user looks for first (failures), then work under way, then work still waiting.
_PROGRESS_ORDER = ("FAILED", "RUNNING", "STARTING", "RUNNABLE", "PENDING", "SUBMITTED")


def progress_text(summary: Mapping[str, int], size: int) -> str:
    """One line of array progress for `kubectl get` and `batchyard list`.

    A printer column takes a JSONPath, not an expression, so the parent carries this text in
    status (`arrayProperties.progress`), e.g. "SUCCEEDED 91/10000, FAILED 438, RUNNING 12".
    SUCCEEDED is always shown against the size (the array's completion); every other state
    only when it has children. It is derived from AWS's statusSummary, so it changes exactly
    when the summary does and adds no status writes of its own.
    """
    parts = [f"SUCCEEDED {summary.get('SUCCEEDED', 0)}/{size}"]
    parts += [f"{state} {summary[state]}" for state in _PROGRESS_ORDER if summary.get(state)]
    return ", ".join(parts)
