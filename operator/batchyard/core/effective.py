"""The job's effective settings after merging its job definition revision and its submission.

Why this exists: DescribeJobs reports what a job really runs with (schedulingPriority,
retryStrategy, timeout, parameters), not what either object says on its own, and the lifecycle
records it in status once, at admission, so a user sees the merge the operator decided.

AWS rules (SubmitJob; User Guide "Job definition parameters"):
* parameters: "Parameters in job submission requests take precedence over the defaults in a job
  definition" (per name).
* retryStrategy and timeout: the submission's "overrides the ... in the job definition" (whole).
* schedulingPriorityOverride: "overrides the scheduling priority in the job definition".
"""

from __future__ import annotations

from dataclasses import dataclass

from batchyard.api.batchjob import BatchJobSpec
from batchyard.api.common import JobTimeout, RetryStrategy
from batchyard.api.jobdefinition import JobDefinitionSpec
from batchyard.core.params import merged_parameters


@dataclass(frozen=True, slots=True)
class Effective:
    scheduling_priority: int | None
    retry_strategy: RetryStrategy | None
    timeout: JobTimeout | None
    parameters: dict[str, str]


def effective(job: BatchJobSpec, definition: JobDefinitionSpec) -> Effective:
    priority = job.schedulingPriorityOverride
    if priority is None:
        priority = definition.schedulingPriority
    return Effective(
        scheduling_priority=priority,
        retry_strategy=job.retryStrategy or definition.retryStrategy,
        timeout=job.timeout or definition.timeout,
        parameters=merged_parameters(definition.parameters, job.parameters),
    )
