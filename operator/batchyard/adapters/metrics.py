"""Prometheus metrics for the operator, served on `/metrics` by prometheus-client.

Why this module exists: an operator of Batchyard needs to see what an AWS Batch console shows
(jobs by queue and state, how long jobs wait in RUNNABLE, compute-environment vCPUs) and what
the operator itself costs (scheduler cycle time, API calls and errors by verb). The metric
objects live here, at module level, in one registry of our own (`REGISTRY`), so that tests and
an embedding process never collide with the default registry; the scheduler loop and the API
client call the small typed helpers below and never touch prometheus-client directly.

No kopf here (adapters may not import it): the Helm chart scrapes this server through the
metrics Service, and kopf's liveness endpoint is a separate port.

Label values must stay bounded: queue, compute environment and consumable resource names are
objects the cluster admin creates; `reason` is a short category (e.g. "Timeout",
"EvaluateOnExit", "DependencyFailed", "PodFailed"), never a free-text statusReason.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

from batchyard.core.jobstate import JOB_STATES

DEFAULT_PORT = 8080


# Waiting and running times go from sub-second (kwok) to AWS Batch's 14-day RUNNABLE limit.
_JOB_SECONDS_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400, 604800)
# A scheduler cycle should take milliseconds; the tail shows a loop that has fallen behind.
_CYCLE_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_MAX_LABEL_LEN = 63  # a Kubernetes name's length: enough for every bounded label we use

REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    # The default collectors describe this process (memory, CPU, fds, GC); register them in
    # our registry too, since the default one isn't served.
    REGISTRY.register(_collector)

JOBS = Gauge(
    "batchyard_jobs",
    "Jobs known to the operator, by job queue and AWS Batch state.",
    ["queue", "state"],
    registry=REGISTRY,
)
SUBMISSIONS = Counter(
    "batchyard_job_submissions",
    "Jobs accepted into a job queue (SubmitJob).",
    ["queue"],
    registry=REGISTRY,
)
DISPATCHES = Counter(
    "batchyard_job_dispatches",
    "Job attempts placed on a compute environment (RUNNABLE -> STARTING).",
    ["queue", "compute_environment"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "batchyard_job_retries",
    "Failed attempts that the retry strategy sent back to RUNNABLE.",
    ["queue"],
    registry=REGISTRY,
)
FAILURES = Counter(
    "batchyard_job_failures",
    "Jobs that ended FAILED, by reason category.",
    ["queue", "reason"],
    registry=REGISTRY,
)
RUNNABLE_SECONDS = Histogram(
    "batchyard_job_runnable_seconds",
    "Time a job attempt spent RUNNABLE before it was dispatched.",
    ["queue"],
    buckets=_JOB_SECONDS_BUCKETS,
    registry=REGISTRY,
)
RUNNING_SECONDS = Histogram(
    "batchyard_job_running_seconds",
    "Time a job attempt spent RUNNING (startedAt to stoppedAt).",
    ["queue"],
    buckets=_JOB_SECONDS_BUCKETS,
    registry=REGISTRY,
)
CYCLE_SECONDS = Histogram(
    "batchyard_scheduler_cycle_seconds",
    "Duration of one scheduler cycle (decisions only, not the API calls that apply them).",
    buckets=_CYCLE_SECONDS_BUCKETS,
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "batchyard_api_requests",
    "Kubernetes API requests made by the operator, by verb.",
    ["verb"],
    registry=REGISTRY,
)
API_ERRORS = Counter(
    "batchyard_api_errors",
    "Kubernetes API requests that failed (non-2xx or transport error), by verb.",
    ["verb"],
    registry=REGISTRY,
)
CE_DESIRED_VCPUS = Gauge(
    "batchyard_compute_environment_desired_vcpus",
    "vCPUs the compute environment's node pool is asked to provide.",
    ["compute_environment"],
    registry=REGISTRY,
)
CE_IN_USE_VCPUS = Gauge(
    "batchyard_compute_environment_in_use_vcpus",
    "vCPUs held by job pods placed on the compute environment.",
    ["compute_environment"],
    registry=REGISTRY,
)
CONSUMABLE_IN_USE = Gauge(
    "batchyard_consumable_resource_in_use",
    "Units of a consumable resource held by running jobs.",
    ["consumable_resource"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "batchyard_leader",
    "1 while this replica holds the leader Lease and runs the scheduler loop, else 0.",
    registry=REGISTRY,
)
REJECTED_OBJECTS = Counter(
    "batchyard_rejected_objects",
    "Stored objects the operator's models refused (skipped, with a Warning Event on the object), by kind.",
    ["kind"],
    registry=REGISTRY,
)
LOOP_HEARTBEAT_AGE = Gauge(
    "batchyard_scheduler_loop_heartbeat_age_seconds",
    "Seconds since the scheduler loop last went round (read when the liveness probe runs).",
    registry=REGISTRY,
)
CONSUMABLE_AVAILABLE = Gauge(
    "batchyard_consumable_resource_available",
    "Units of a consumable resource still available to jobs.",
    ["consumable_resource"],
    registry=REGISTRY,
)


def _label(value: str) -> str:
    # A caller passing free text by mistake must not blow up the series count or the scrape.
    return value[:_MAX_LABEL_LEN] if value else "unknown"


def observe_cycle(seconds: float) -> None:
    CYCLE_SECONDS.observe(seconds)


def job_state_gauge(queue: str, state: str, n: int) -> None:
    JOBS.labels(queue=_label(queue), state=state).set(n)


def set_queue_job_states(queue: str, counts: Mapping[str, int]) -> None:
    """Set every AWS state of one queue at once; states missing from `counts` read 0."""
    for state in JOB_STATES:
        job_state_gauge(queue, state, counts.get(state, 0))


def count_submission(queue: str) -> None:
    SUBMISSIONS.labels(queue=_label(queue)).inc()


def count_dispatch(queue: str, ce: str) -> None:
    DISPATCHES.labels(queue=_label(queue), compute_environment=_label(ce)).inc()


def count_retry(queue: str) -> None:
    RETRIES.labels(queue=_label(queue)).inc()


def count_failure(queue: str, reason: str) -> None:
    FAILURES.labels(queue=_label(queue), reason=_label(reason)).inc()


def observe_runnable_seconds(queue: str, seconds: float) -> None:
    RUNNABLE_SECONDS.labels(queue=_label(queue)).observe(max(seconds, 0.0))


def observe_running_seconds(queue: str, seconds: float) -> None:
    RUNNING_SECONDS.labels(queue=_label(queue)).observe(max(seconds, 0.0))


def set_ce_vcpus(ce: str, desired: float, in_use: float) -> None:
    CE_DESIRED_VCPUS.labels(compute_environment=_label(ce)).set(desired)
    CE_IN_USE_VCPUS.labels(compute_environment=_label(ce)).set(in_use)


def set_consumable(name: str, in_use: float, available: float) -> None:
    CONSUMABLE_IN_USE.labels(consumable_resource=_label(name)).set(in_use)
    CONSUMABLE_AVAILABLE.labels(consumable_resource=_label(name)).set(available)


def set_leader(leading: bool) -> None:
    LEADER.set(1 if leading else 0)


def count_rejected_object(kind: str) -> None:
    REJECTED_OBJECTS.labels(kind=_label(kind)).inc()


def set_loop_heartbeat_age(seconds: float) -> None:
    LOOP_HEARTBEAT_AGE.set(seconds)


_api_requests: dict[str, Any] = {}  # verb -> its labelled counter


def count_api_call(verb: str, error: bool = False) -> None:
    # Once per API request: the labelled child is looked up once per verb (labels() takes a lock
    # and builds the label tuple on every call).
    child = _api_requests.get(verb)
    if child is None:
        child = _api_requests[verb] = API_REQUESTS.labels(verb=_label(verb))
    child.inc()
    if error:
        API_ERRORS.labels(verb=_label(verb)).inc()


def forget_queue(queue: str) -> None:
    """A deleted queue's gauges must disappear, not freeze at their last value."""
    for state in JOB_STATES:
        _remove(JOBS, _label(queue), state)


def forget_compute_environment(ce: str) -> None:
    _remove(CE_DESIRED_VCPUS, _label(ce))
    _remove(CE_IN_USE_VCPUS, _label(ce))


def forget_consumable(name: str) -> None:
    _remove(CONSUMABLE_IN_USE, _label(name))
    _remove(CONSUMABLE_AVAILABLE, _label(name))


def _remove(gauge: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never set: nothing to forget
        gauge.remove(*labels)


def exposition() -> bytes:
    """The text a scrape of `/metrics` returns (for tests and `batchyard` debugging)."""
    return generate_latest(REGISTRY)


def start_metrics_server(
    port: int = DEFAULT_PORT, addr: str = "0.0.0.0"
) -> tuple[WSGIServer, threading.Thread]:
    """Serve `REGISTRY` on http://addr:port/metrics from a daemon thread; returns it for shutdown.

    `port=0` binds a free port (read it from `server.server_port`).
    """
    server, thread = start_http_server(port, addr=addr, registry=REGISTRY)
    return server, thread
