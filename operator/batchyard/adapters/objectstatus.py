"""Status of JobQueues (job counts, Blocked condition) after each scheduler cycle.

Written only when it changes, one merge patch per object.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from batchyard.core import lifecycle
from batchyard.core.scheduler import CycleResult

if TYPE_CHECKING:
    from batchyard.adapters.controller import Controller

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
            status = {
                "status": "VALID",
                "jobCounts": {k.lower(): v for k, v in counts[name].items()},
                "observedGeneration": q.metadata.generation,
            }
            comparable = {**status, "blocked": condition["status"], "reason": condition["reason"]}
            if self.written.get(name) == comparable:
                continue
            if await self.controller.patch_status("jobqueues", name, None, {**status, "conditions": [condition]}):
                self.written[name] = comparable
