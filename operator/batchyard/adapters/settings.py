"""How the scheduler loop is configured (handlers.operator reads them from the environment)."""

from __future__ import annotations

from dataclasses import dataclass, field

from batchyard.core.retention import PodRetention
from batchyard.core.tenancy import OperatorIdentity


@dataclass(frozen=True)
class Settings:
    # Which ended attempts keep their pod, and so their log, until the job expires
    # (core.retention): all | failed | none; env BATCHYARD_KEEP_PODS, Helm operator.keepPods.
    pod_retention: PodRetention = PodRetention.FAILED
    finished_job_ttl_seconds: float = 7 * 24 * 3600  # AWS keeps finished jobs at least 7 days
    tick_seconds: float = 1.0  # the loop wakes at least this often (timeouts, time limits)
    # API requests a cycle has in flight at once (pod creates, status writes, deletions); env
    # BATCHYARD_API_CONCURRENCY. The operator's client keeps up to 32 connections.
    create_concurrency: int = 16
    # Test knob (env BATCHYARD_TIME_LIMIT_SCALE): multiplies every jobStateTimeLimitActions
    # maxTimeSeconds. The CRD keeps AWS's 600 s minimum; cluster tests run with a small scale.
    time_limit_scale: float = 1.0
    # status.queuePosition: the first N RUNNABLE jobs of each queue, refreshed at most this often
    # (see core.queuestatus.QueuePositions).
    queue_positions: int = 100
    queue_position_interval_seconds: float = 5.0
    # Post Events for the routine state changes too (core.lifecycle.ROUTINE_REASONS); off by
    # default, env BATCHYARD_ROUTINE_EVENTS, Helm operator.routineEvents.
    routine_events: bool = False
    # Pods created per cycle at most (the core scheduler's dispatch budget); the loop goes round
    # again at once when it ran out. A cycle does not act on new events while it creates pods,
    # writes statuses and deletes pods, so a short cycle keeps finished jobs from waiting behind
    # a burst of thousands of creates (issue 14: the flat stretches). Env
    # BATCHYARD_MAX_DISPATCHES_PER_CYCLE. 64: against 256 it halves the flat stretches of a
    # 1,000-job burst on kwok (2-3 s against 5-7 s) and half the jobs finish 4-9 s sooner, at
    # the same rate within the noise. It was 256 while each cycle had a cost that grew with the
    # backlog (a scan of every job): then 64 failed issue 14's released-backlog bound (2.34x);
    # with that cost gone the ratio is 0.97 (bench/RESULTS.md, "Scale").
    max_dispatches_per_cycle: int = 64
    # Jobs one cycle steps at most, oldest first; the others wait for the next cycle, which
    # starts at once. Without it, 100,000 submissions at once made cycles of 72,000 jobs that
    # wrote statuses for four minutes without reading an event. Env BATCHYARD_MAX_STEPS_PER_CYCLE
    # (0: no limit).
    max_steps_per_cycle: int = 2000
    # A just-dispatched job's STARTING status waits this long for its pod to run, so a pod that
    # runs by then is written once, as RUNNING (one status patch per job fewer; issue 14). Env
    # BATCHYARD_STARTING_WRITE_DELAY_SECONDS; 0 writes STARTING at once (core.lifecycle.starting_write_hold).
    # Default 2 s, not longer: while held, the job reads RUNNABLE though its pod exists (and a
    # CancelJob then finds it STARTING, too late to cancel, as in AWS once a job left RUNNABLE).
    starting_write_delay_seconds: float = 2.0
    # A status write that would only add a detail (the attempt's nodeName when its pod is bound,
    # core.lifecycle.DETAIL_ATTEMPT_FIELDS) waits for the job's next change, at most this long
    # after the dispatch (core.lifecycle.detail_write_hold); 0 writes it at once. Env
    # BATCHYARD_DETAIL_WRITE_DELAY_SECONDS. 30 s: in a 2,000-job burst on kwok pods were bound
    # 14 s and ran 28 s after their dispatch (bench/RESULTS.md); a pod that binds in a quiet
    # cluster shows its node with RUNNING, or 30 s after the dispatch if it is still pending.
    detail_write_delay_seconds: float = 30.0
    # hostNetwork of an eksProperties job that does not set it. AWS defaults it to true, but Pod
    # Security baseline and restricted refuse host networking, so Batchyard defaults to false;
    # BATCHYARD_EKS_HOST_NETWORK=true (Helm operator.eksHostNetworkDefault) restores AWS's default.
    eks_host_network: bool = False
    # BATCHYARD_RESTRICTED_POD_DEFAULTS (Helm operator.restrictedPodDefaults): fill what Pod
    # Security restricted requires where the definition is silent (render.pod._restricted_defaults).
    restricted_pod_defaults: bool = False
    # The operator's namespace and ServiceAccount, out of a job's reach (core.tenancy).
    identity: OperatorIdentity = field(default_factory=OperatorIdentity)
