"""Feeds the Prometheus metrics (``adapters.metrics``) from the scheduler loop's hooks.

Why a module of its own: the loop (``adapters.controller``) exposes hooks and knows nothing of
Prometheus; this module turns what the loop reports into series an AWS Batch user recognises:

* ``on_transition`` (once per job state change that reached the API server): submissions,
  dispatches per compute environment, retries, failures by a short reason category, and the
  time an attempt waited RUNNABLE and ran RUNNING;
* ``on_cycle``: the scheduler cycle's duration;
* an object status writer (after each cycle): jobs by queue and state, compute-environment
  vCPUs (in use from the cycle; desired from the CE status the node-pool reconciler writes) and
  consumable resources.

Counters only move on transitions the API server accepted, and a job first seen with a status
(an operator restart or a new leader) counts nothing again: its written status is its old state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from batchyard.adapters import metrics
from batchyard.adapters.state import ClusterState, JobEntry, JobKey
from batchyard.api.batchjob import BatchJobStatus
from batchyard.core.failures import FailureCategory, classify
from batchyard.core.jobstate import TERMINAL_STATES
from batchyard.core.lifecycle import epoch
from batchyard.core.scheduler import CycleResult

ACTIVE = ("STARTING", "RUNNING")


def _runnable_fallback(status: BatchJobStatus, index: int, now: float) -> float:
    """When attempt ``index`` became RUNNABLE, from the status (a new leader never saw it): the
    end of the attempt before it, or the submission."""
    previous = status.attempts[index - 1] if status.attempts and index > 0 else None
    since = epoch(previous.stoppedAt) if previous is not None else epoch(status.createdAt)
    return since if since is not None else now


@dataclass
class Instrumentation:
    """Hooks for the loop (``on_transition``, and ``write`` as an object status writer,
    wired by handlers.operator); one per leader term (``close`` clears its gauges)."""

    state: ClusterState
    runnable_since: dict[JobKey, float] = field(default_factory=dict)  # became RUNNABLE (seen here)
    attempts_seen: dict[JobKey, int] = field(default_factory=dict)  # attempts at the last transition
    _queues: set[str] = field(default_factory=set)
    _ces: set[str] = field(default_factory=set)
    _consumables: set[str] = field(default_factory=set)

    # -- per job --------------------------------------------------------------------------------
    def on_transition(
        self, entry: JobEntry, old: str | None, new: str | None, failure: FailureCategory | None = None
    ) -> None:
        queue = entry.job.spec.jobQueue
        key = JobKey(entry.job.metadata.namespace or "", entry.job.metadata.name or "")
        now = time.time()
        status = entry.status
        attempts = status.attempts or []
        if old is None and new is not None:
            metrics.count_submission(queue)
        # Attempts, not states, tell dispatches and retries apart: a failed attempt can be retried
        # and re-dispatched within one cycle (RUNNING -> STARTING, never written as RUNNABLE).
        n = len(attempts)
        seen = self.attempts_seen.pop(key, None)
        if seen is None:  # first transition we see (a new leader): trust the states
            seen = n - 1 if new in ACTIVE and old not in ACTIVE else n
        if old in ACTIVE and 0 < seen <= n and (new not in ACTIVE or n > seen):
            ended = attempts[seen - 1]
            started = epoch(ended.startedAt)
            if started is not None:
                metrics.observe_running_seconds(queue, (epoch(ended.stoppedAt) or now) - started)
            if new not in TERMINAL_STATES:
                metrics.count_retry(queue)
        for index in range(max(seen, 0), n):
            attempt = attempts[index]
            metrics.count_dispatch(queue, attempt.computeEnvironment or status.computeEnvironment or "")
            since = self.runnable_since.pop(key, None) or _runnable_fallback(status, index, now)
            metrics.observe_runnable_seconds(queue, now - since)
        if new == "RUNNABLE":
            self.runnable_since[key] = now
        if new == "FAILED":
            # The lifecycle decided the category with the transition (Step.failure).
            metrics.count_failure(queue, failure or classify(status))
        if new in TERMINAL_STATES:
            self.runnable_since.pop(key, None)
        else:
            self.attempts_seen[key] = n

    # -- per cycle ------------------------------------------------------------------------------
    async def write(self, result: CycleResult) -> None:
        st = self.state
        # Jobs by queue and state as the API server has them (the JobQueue status's jobCounts
        # too): ClusterState keeps these counts as jobs arrive, are written and go, so this is
        # O(queues); a scan of every job here cost a third of the loop's CPU with 100,000 queued.
        counts: dict[str, dict[str, int]] = {name: {} for name in st.queues}
        for queue, held in st.queue_counts.items():
            by_state = counts.setdefault(queue, {})
            for state, n in held.items():
                name = state or "SUBMITTED"  # not written yet: SUBMITTED
                by_state[name] = by_state.get(name, 0) + n
        for queue, by_state in counts.items():
            metrics.set_queue_job_states(queue, by_state)
        for gone in self._queues - counts.keys():
            metrics.forget_queue(gone)
        self._queues = set(counts)

        ces = set(st.compute_environments) | set(result.compute_environments)
        for name in ces:
            usage = result.compute_environments.get(name)
            ce = st.compute_environments.get(name)
            # Desired vCPUs are the node-pool reconciler's (adapters.scaler) to decide; it
            # publishes them in the CE status, which reaches us through the watch.
            desired = ce.status.desiredvCpus if ce is not None and ce.status is not None else None
            metrics.set_ce_vcpus(name, float(desired or 0), usage.vcpus_in_use if usage else 0.0)
        for gone in self._ces - ces:
            metrics.forget_compute_environment(gone)
        self._ces = ces

        for name, c in result.consumables.items():
            metrics.set_consumable(name, float(c.in_use_quantity), float(c.available_quantity))
        for gone in self._consumables - result.consumables.keys():
            metrics.forget_consumable(gone)
        self._consumables = set(result.consumables)

    def close(self) -> None:
        """A replica that stops leading must not export its last gauges as if current."""
        for queue in self._queues:
            metrics.forget_queue(queue)
        for ce in self._ces:
            metrics.forget_compute_environment(ce)
        for name in self._consumables:
            metrics.forget_consumable(name)
        self._queues, self._ces, self._consumables = set(), set(), set()
