"""Why a job FAILED, as a short bounded category (for metrics and dashboards).

Why this exists: a statusReason is free text (AWS's own strings, users' reasons, Kubernetes
messages), unusable as a metric label. The lifecycle decides the category when a job moves to
FAILED (``lifecycle.transition`` stores it on the ``Step``), next to the reason strings it
classifies (``core.jobstate.Reason``), so the loop never parses reasons itself.
"""

from __future__ import annotations

from enum import StrEnum

from batchyard.api.batchjob import BatchJobStatus
from batchyard.core.jobstate import Reason

# lifecycle.POD_LOST_REASON and POD_STUCK_REASON: "Pod {pod} was deleted before ...", "Pod {pod}
# did not stop ...".
POD_LOST_PREFIX = "Pod "


class FailureCategory(StrEnum):
    CANCELLED = "Cancelled"
    TERMINATED = "Terminated"
    TIMEOUT = "Timeout"
    NON_ZERO_EXIT = "NonZeroExit"
    INVALID_JOB_DEFINITION = "InvalidJobDefinition"
    DEPENDENCY_FAILED = "DependencyFailed"
    POD_LOST = "PodLost"
    JOB_QUEUE = "JobQueue"
    OTHER = "Other"


def classify(status: BatchJobStatus) -> FailureCategory:
    """The category of a FAILED status (cancel/terminate flags first, then the reason)."""
    reason = status.statusReason or ""
    if status.isCancelled:
        return FailureCategory.CANCELLED
    if status.isTerminated:
        return FailureCategory.TERMINATED
    if reason == Reason.TIMEOUT:
        return FailureCategory.TIMEOUT
    if reason == Reason.ESSENTIAL_CONTAINER_EXITED:
        return FailureCategory.NON_ZERO_EXIT
    if reason.startswith(Reason.INVALID_JOB_DEFINITION_PREFIX):
        return FailureCategory.INVALID_JOB_DEFINITION
    if reason == Reason.DEPENDENT_JOB_FAILED or reason.startswith(
        (Reason.DEPENDENCY_CYCLE_PREFIX, Reason.DEPENDENCY_NOT_FOUND_PREFIX, Reason.INVALID_DEPENDENCY_PREFIX)
    ):
        return FailureCategory.DEPENDENCY_FAILED
    if reason.startswith(POD_LOST_PREFIX) or Reason.is_host_failure(reason):
        # The pod, or its node ("Host EC2 (node ...) terminated."), went away under the attempt.
        return FailureCategory.POD_LOST
    # Queue refusals and the queue's deletion (lifecycle.queue_refusal, QUEUE_DELETED_REASON).
    if reason.startswith(("JobQueue", "Job queue")):
        return FailureCategory.JOB_QUEUE
    last = status.attempts[-1] if status.attempts else None
    if last is not None and last.exitCode not in (None, 0):
        return (
            FailureCategory.NON_ZERO_EXIT
        )  # an evaluateOnExit EXIT or exhausted attempts with a custom reason
    return FailureCategory.OTHER
