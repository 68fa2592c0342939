"""What users see of the scheduler: JobQueue status (job counts, Blocked condition and event)
and ConsumableResource status (in-use and available units).

Object status is written after each scheduler cycle, only when it changes, one merge patch per
object. The Blocked condition is ``core.queuestatus.blocked_condition``'s; queue positions are
decided in the cycle (``core.queuestatus.QueuePositions``) and folded into the jobs' own patches.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from batchyard.adapters.kube import Kube
from batchyard.adapters.state import ClusterState
from batchyard.adapters.writes import involved_object, patch_status, post_event
from batchyard.core.jobref import JobRef
from batchyard.core.jobstate import ACTIVE_STATES
from batchyard.core.queueing import queue_health
from batchyard.core.queuestatus import blocked_condition
from batchyard.core.scheduler import BlockInfo, CycleResult

log = logging.getLogger("batchyard.status")


class QueueStatusWriter:
    def __init__(self, state: ClusterState, kube: Kube) -> None:
        self.state = state
        self.kube = kube
        self.written: dict[str, dict[str, Any]] = {}

    async def __call__(self, result: CycleResult) -> None:
        st = self.state
        counts: dict[str, dict[str, int]] = {name: dict.fromkeys(ACTIVE_STATES, 0) for name in st.queues}
        for entry in st.jobs.values():
            per_queue = counts.get(entry.job.spec.jobQueue)
            if per_queue is not None and entry.status.status in per_queue:
                per_queue[entry.status.status] += 1
        for name, q in st.queues.items():
            blocked, condition = blocked_condition(result.queues.get(name), time.time())
            health, reason = queue_health(
                q.compute_environments_in_order(),
                st.compute_environments.keys(),
                q.spec.schedulingPolicy,
                st.policies.keys(),
            )
            status = {
                "status": health,
                "statusReason": reason,
                # The CRD schema's keys (JobStateCounts: the AWS state names): any other key would
                # be pruned by the API server.
                "jobCounts": {str(k): v for k, v in counts[name].items()},
                "observedGeneration": q.metadata.generation,
            }
            if blocked is not None and blocked.new:
                await self._blocked_event(q.metadata.name or name, q.metadata.uid, blocked)
            comparable = {**status, "blocked": condition["status"], "reason": condition["reason"]}
            if self.written.get(name) == comparable:
                continue
            if await patch_status(self.kube, "jobqueues", name, None, {**status, "conditions": [condition]}):
                self.written[name] = comparable

    async def _blocked_event(self, queue: str, uid: str | None, blocked: BlockInfo) -> None:
        """AWS emits a "Batch Job Queue Blocked" event when a queue's head job blocks it; here a
        Kubernetes Event on the JobQueue, once per block (``BlockInfo.new``). The JobQueue is
        cluster-scoped, so its events live in the ``default`` namespace (as Node events do);
        ``kubectl describe jobqueue`` finds them there."""
        head = blocked.job_key
        assert isinstance(head, JobRef)
        message = f"{blocked.status_reason} (head job {head}" + (
            f"; {blocked.detail})" if blocked.detail else ")"
        )
        await post_event(
            self.kube, involved_object("JobQueue", queue, uid), "default", "Blocked", message, "Warning"
        )


class ConsumableStatusWriter:
    """ConsumableResource status as AWS DescribeConsumableResource shows it: totalQuantity (for
    NON_REPLENISHABLE, the spec's total minus the units used up -- the loop reads the consumed
    count back from it after a restart, core.views.consumed), inUseQuantity (held by STARTING
    and RUNNING jobs), availableQuantity."""

    def __init__(self, state: ClusterState, kube: Kube) -> None:
        self.state = state
        self.kube = kube
        self.written: dict[str, dict[str, Any]] = {}

    async def __call__(self, result: CycleResult) -> None:
        for name, resource in self.state.consumables.items():
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
            if await patch_status(self.kube, "consumableresources", name, None, status):
                self.written[name] = status
        for gone in self.written.keys() - self.state.consumables.keys():
            del self.written[gone]
