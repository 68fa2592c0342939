"""What users see of the scheduler: JobQueue status (job counts, Blocked condition and event),
ConsumableResource status (in-use and available units) and RUNNABLE jobs' queue positions.

Object status is written after each scheduler cycle, only when it changes, one merge patch per
object. Queue positions are folded into the jobs' own status patches (``QueuePositions``).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, cast

from batchyard import API_VERSION
from batchyard.adapters.kube import ApiError
from batchyard.core import lifecycle
from batchyard.core.queueing import queue_health
from batchyard.core.scheduler import BlockInfo, CycleResult

if TYPE_CHECKING:
    from batchyard.adapters.controller import Controller, Plan
    from batchyard.adapters.state import JobKey

log = logging.getLogger("batchyard.status")

COUNTED = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")


class QueueStatusWriter:
    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.written: dict[str, dict[str, Any]] = {}

    async def __call__(self, result: CycleResult) -> None:
        st = self.controller.state
        counts: dict[str, dict[str, int]] = {name: dict.fromkeys(COUNTED, 0) for name in st.queues}
        for entry in st.jobs.values():
            per_queue = counts.get(entry.job.spec.jobQueue)
            if per_queue is not None and entry.status.status in per_queue:
                per_queue[entry.status.status] += 1
        for name, q in st.queues.items():
            qs = result.queues.get(name)
            blocked = qs.blocked if qs is not None and qs.blocked and qs.blocked.queue_blocked else None
            condition = {
                "type": "Blocked",
                "status": "True" if blocked else "False",
                "reason": blocked.reason_code.replace(":", "_") if blocked else "NotBlocked",
                "message": blocked.status_reason if blocked else "the queue's head job can start",
                "lastTransitionTime": lifecycle.iso(blocked.since if blocked else time.time()),
            }
            health, reason = queue_health(
                [o.computeEnvironment for o in sorted(q.spec.computeEnvironmentOrder, key=lambda o: o.order)],
                st.compute_environments.keys(),
                q.spec.schedulingPolicy,
                st.policies.keys(),
            )
            status = {
                "status": health,
                "statusReason": reason,
                # The CRD schema's keys (JobStateCounts: the AWS state names): any other key would
                # be pruned by the API server.
                "jobCounts": counts[name],
                "observedGeneration": q.metadata.generation,
            }
            if blocked is not None and blocked.new:
                await self._blocked_event(q.metadata.name or name, q.metadata.uid, blocked)
            comparable = {**status, "blocked": condition["status"], "reason": condition["reason"]}
            if self.written.get(name) == comparable:
                continue
            if await self.controller.patch_status(
                "jobqueues", name, None, {**status, "conditions": [condition]}
            ):
                self.written[name] = comparable

    async def _blocked_event(self, queue: str, uid: str | None, blocked: BlockInfo) -> None:
        """AWS emits a "Batch Job Queue Blocked" event when a queue's head job blocks it; here a
        Kubernetes Event on the JobQueue, once per block (``BlockInfo.new``). The JobQueue is
        cluster-scoped, so its events live in the ``default`` namespace (as Node events do);
        ``kubectl describe jobqueue`` finds them there."""
        namespace, job = cast("JobKey", blocked.job_key)
        message = f"{blocked.status_reason} (head job {namespace}/{job}" + (
            f"; {blocked.detail})" if blocked.detail else ")"
        )
        stamp = lifecycle.iso(time.time())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{queue}.{uuid.uuid4().hex[:12]}", "namespace": "default"},
            "involvedObject": {"apiVersion": API_VERSION, "kind": "JobQueue", "name": queue, "uid": uid},
            "reason": "Blocked",
            "message": message[:1024],
            "type": "Warning",
            "source": {"component": "batchyard"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self.controller.kube.create("/api/v1/namespaces/default/events", body)
        except ApiError as err:
            log.debug("blocked event for queue %s not recorded: %s", queue, err)


class ConsumableStatusWriter:
    """ConsumableResource status as AWS DescribeConsumableResource shows it: totalQuantity (for
    NON_REPLENISHABLE, the spec's total minus the units used up -- the controller reads the
    consumed count back from it after a restart), inUseQuantity (held by STARTING and RUNNING
    jobs), availableQuantity."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.written: dict[str, dict[str, Any]] = {}

    async def __call__(self, result: CycleResult) -> None:
        for name, resource in self.controller.state.consumables.items():
            usage = result.consumables.get(name)
            if usage is None:
                continue
            status = {
                "totalQuantity": usage.total_quantity,
                "inUseQuantity": usage.in_use_quantity,
                "availableQuantity": usage.available_quantity,
                "observedGeneration": resource.metadata.generation,
            }
            if self.written.get(name) == status:
                continue
            if await self.controller.patch_status("consumableresources", name, None, status):
                self.written[name] = status
        for gone in self.written.keys() - self.controller.state.consumables.keys():
            del self.written[gone]


class QueuePositions:
    """``status.queuePosition`` (0 = head) of RUNNABLE jobs, cheaply.

    Writing every RUNNABLE job's position every cycle would flood the API server (each dispatch
    from the head shifts every position behind it). The rule:

    * only the first ``Settings.queue_positions`` (100) jobs of each queue get a position -- the
      AWS "job queue snapshot" shows the first 100 too; jobs further back have none;
    * positions are recomputed at most every ``Settings.queue_position_interval_seconds`` (5 s),
      from ``Scheduler.snapshot`` (O(100 log 100) per queue, after the cycle's dispatches);
    * a job's position is written only when it differs from its status, and always within the
      job's one merge patch of that cycle (it becomes part of the job's step);
    * a job that leaves RUNNABLE, or falls out of the first 100, loses its position at once.

    Worst case: 100 writes per queue per interval (the head dispatching continuously).
    """

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.due = 0.0
        self.positioned: set[JobKey] | None = None  # None: not yet swept after (re)start

    def refresh(self, plan: Plan, now: float) -> None:
        st = self.controller.state
        for step in plan.steps.values():
            if step.status.status != "RUNNABLE":
                step.status.queuePosition = None
        for _, key in plan.dispatches:
            entry = st.jobs.get(key)
            if entry is not None:
                entry.status.queuePosition = None  # start_attempt copies it; the pod may not exist yet
        settings = self.controller.settings
        if now < self.due or settings.queue_positions <= 0:
            return
        self.due = now + settings.queue_position_interval_seconds
        dispatched = {key for _, key in plan.dispatches}
        fresh: dict[JobKey, int] = {}
        for queue in st.queues:
            ordered = self.controller.scheduler.snapshot(queue, settings.queue_positions)
            for index, job_key in enumerate(ordered):
                fresh[cast("JobKey", job_key)] = index
        if self.positioned is None:  # after a restart: positions left in status by the last run
            self.positioned = {k for k, e in st.jobs.items() if e.status.queuePosition is not None}
        for key in (self.positioned - fresh.keys()) | fresh.keys():
            entry = st.jobs.get(key)
            if entry is None or key in dispatched:
                continue
            position = fresh.get(key) if entry.status.status == "RUNNABLE" else None
            if entry.status.queuePosition == position:
                continue
            step = plan.steps.get(key) or lifecycle.Step(status=entry.status.model_copy(deep=True), now=now)
            step.status.queuePosition = position
            entry.status = step.status
            plan.steps[key] = step
        self.positioned = set(fresh)
