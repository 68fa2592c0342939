"""Fair-share scheduling (AWS Batch SchedulingPolicy), written down as an algorithm.

Why this exists: a job queue with a scheduling policy does not run FIFO; AWS Batch shares the
queue's compute between share identifiers. AWS describes the behaviour but not the formulas, so
this module chooses them and states them here.

AWS rules (User Guide "Fair-share scheduling policies"):

* "The AWS Batch scheduler tracks usage for each share identifier by using the (T * weightFactor)
  formula, where T is the vCPU usage over time. The scheduler picks jobs with the lowest usage
  from the share identifier."
* weightFactor: default 1; "A lower value ... gives additional runtime to the share identifier":
  weight 0.125 gets 8x the compute of weight 1.
* shareDecaySeconds: "The period of time ... used to calculate a fair-share percentage ... A value
  of zero indicates that only current usage is measured. A longer decay time gives more weight to
  time." (The API model says 0 means a 600 s window; the User Guide is the original and wins.
  The guide's "+ OrderMinutes" term is undefined and ignored.)
* computeReservation: "The reserved ratio is (computeReservation/100)^ActiveFairShares where
  ActiveFairShares is the number of active share identifiers" -- capacity held back for share
  identifiers that are not active yet.
* Active: a share identifier with jobs in SUBMITTED..RUNNING; "After the period of time for decay
  expires, a share identifier is considered inactive." At most 500 active identifiers per queue;
  "submissions of any jobs that add a new share identifier fail".
* Within a share, "Jobs with a higher scheduling priority are scheduled first"
  (schedulingPriorityOverride on the job overrides the definition's schedulingPriority).
* Share identifier prefixes (``UserA*``): "jobs with share identifiers that start with the prefix
  will share the weight factor" -- they form one bucket that accumulates usage together.

The algorithm (Batchyard's choice):

1. Bucket: the policy entry that matches the job's shareIdentifier -- exact identifier first,
   then a ``prefix*`` entry; an identifier the policy does not list is its own bucket with
   weight 1.0 (AWS: identifiers not listed get 1.0).
2. Usage of a bucket, in vCPUs: ``u`` is an exponentially weighted average of the vCPUs its
   running jobs hold, with half-life ``shareDecaySeconds`` -- i.e. the decayed vCPU-seconds
   divided by the decay time constant. Between two instants with constant allocation ``r``:
   ``u(t+dt) = r + (u(t) - r) * 2**(-dt/H)``. With H = 0, ``u = r`` (only current usage).
3. Score = ``weightFactor * (u + r)``, where ``r`` is the vCPUs held right now (charged at
   dispatch). ``r`` makes a dispatch count at once, so one cycle interleaves shares instead of
   giving every free slot to whichever share was lowest when the cycle began; ``u`` carries the
   history that decays. In steady state u = r, so the scores equalise when
   ``w_a * r_a == w_b * r_b``: allocations are inversely proportional to the weights
   (weights 1 and 3 -> 3:1), as AWS describes.
4. The next job of a fair-share queue comes from the bucket with the lowest score among buckets
   with RUNNABLE jobs (ties: bucket name), and within it the job with the highest
   schedulingPriority, then retried before fresh, then oldest submission.
5. computeReservation: with A active share identifiers, jobs of the queue together may hold at
   most ``capacity * (1 - (computeReservation/100) ** A)`` vCPUs, where capacity is the sum of
   maxvCpus of the queue's usable compute environments. A job that would cross that line waits.
   When a new share identifier becomes active, A grows, the reserve shrinks, and the new share
   (usage 0) has the lowest score, so it gets the capacity that was held back for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

MAX_ACTIVE_SHARES: Final = 500  # AWS: "limited to 500 active fair share identifiers at a time"
DEFAULT_WEIGHT: Final = 1.0  # AWS: "The default value is 1."
NO_SHARE: Final = ""  # the bucket of jobs without a shareIdentifier in a fair-share queue


@dataclass(frozen=True, slots=True)
class PolicyView:
    """A SchedulingPolicy's fairsharePolicy."""

    share_decay_seconds: int = 0
    compute_reservation: int = 0  # 0..99, percent
    weights: Mapping[str, float] = field(default_factory=dict)  # identifier or "prefix*" -> weight

    def bucket_of(self, share_identifier: str | None) -> tuple[str, float]:
        """(bucket name, weight) for a job's share identifier. See step 1 of the module docstring."""
        ident = share_identifier or NO_SHARE
        w = self.weights.get(ident)
        if w is not None and not ident.endswith("*"):
            return ident, w
        best: str | None = None
        for entry in self.weights:
            # AWS: prefixes can't overlap, so at most one matches; longest wins if they do.
            if (
                entry.endswith("*")
                and ident.startswith(entry[:-1])
                and (best is None or len(entry) > len(best))
            ):
                best = entry
        if best is not None:
            return best, self.weights[best]
        return ident, DEFAULT_WEIGHT

    def reserved_fraction(self, active_shares: int) -> float:
        """AWS: reserved ratio = (computeReservation/100) ** ActiveFairShares."""
        if self.compute_reservation <= 0:
            return 0.0
        return float((self.compute_reservation / 100) ** max(active_shares, 1))


@dataclass(slots=True)
class BucketUsage:
    """Decayed usage of one bucket (see steps 2-3 of the module docstring)."""

    avg_vcpus: float = 0.0  # u: decayed average of held vCPUs
    held_milli: int = 0  # r in millicpu: what running jobs of the bucket hold now
    updated_at: float | None = None

    def advance(self, now: float, half_life: float) -> None:
        r = self.held_milli / 1000
        if self.updated_at is None or half_life <= 0:
            self.avg_vcpus = r if half_life <= 0 else self.avg_vcpus
            self.updated_at = now
            return
        dt = now - self.updated_at
        if dt > 0:
            self.avg_vcpus = r + (self.avg_vcpus - r) * 2.0 ** (-dt / half_life)
            self.updated_at = now

    def score(self, weight: float) -> float:
        return weight * (self.avg_vcpus + self.held_milli / 1000)


@dataclass(slots=True)
class FairShareState:
    """Per-queue fair-share memory: bucket usage and share-identifier activity."""

    buckets: dict[str, BucketUsage] = field(default_factory=dict)
    # live jobs (RUNNABLE or holding capacity) per share identifier, and when each was last live
    live_jobs: dict[str, int] = field(default_factory=dict)
    last_live: dict[str, float] = field(default_factory=dict)

    def bucket(self, name: str) -> BucketUsage:
        b = self.buckets.get(name)
        if b is None:
            b = self.buckets[name] = BucketUsage()
        return b

    def advance_all(self, now: float, half_life: float) -> None:
        for b in self.buckets.values():
            b.advance(now, half_life)

    def charge(self, bucket: str, milli: int, now: float, half_life: float) -> None:
        b = self.bucket(bucket)
        b.advance(now, half_life)  # usage so far at the old rate, then the new rate
        b.held_milli += milli
        if half_life <= 0:
            b.avg_vcpus = b.held_milli / 1000

    def job_joined(self, share: str) -> None:
        self.live_jobs[share] = self.live_jobs.get(share, 0) + 1

    def job_left(self, share: str, now: float) -> None:
        n = self.live_jobs.get(share, 0) - 1
        if n <= 0:
            self.live_jobs.pop(share, None)
            self.last_live[share] = now
        else:
            self.live_jobs[share] = n

    def is_active(self, share: str, now: float, decay_seconds: float) -> bool:
        if share in self.live_jobs:
            return True
        # AWS: "After the period of time for decay expires, a share identifier is considered inactive."
        last = self.last_live.get(share)
        return last is not None and now - last < decay_seconds

    def active_count(self, now: float, decay_seconds: float) -> int:
        n = len(self.live_jobs)
        if decay_seconds > 0:
            n += sum(
                1 for s, t in self.last_live.items() if s not in self.live_jobs and now - t < decay_seconds
            )
        return n

    def forget_idle(self, now: float, decay_seconds: float) -> None:
        """Drop share identifiers that are no longer active (keeps the maps small)."""
        stale = [s for s, t in self.last_live.items() if s not in self.live_jobs and now - t >= decay_seconds]
        for s in stale:
            del self.last_live[s]
