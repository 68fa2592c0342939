"""The in-memory cluster state the scheduler loop reads, fed by watch events.

Handlers (kopf) and the pod watch call ``upsert_*``/``forget_*``; the loop reads the maps and
the dirty set. Nothing here decides anything. Four rules keep it correct:

* The operator is the only writer of BatchJob status. After the first sight of a job (which
  restores its status after a restart), the status kept here is the one the loop last decided;
  a watch event only refreshes spec and metadata, so a stale event can never roll status back.
* Objects are kept small: parsed models for our kinds, and a few fields per pod.
* One writer: every caller runs on the event loop's thread (the kopf handlers are ``async``, the
  pod watch and the loop are tasks), so the loop never sees a map change while it iterates.
* One bad object never stops the engine: an object the models refuse (a pydantic
  ValidationError, e.g. stored before a CRD upgrade tightened the schema) is logged, counted,
  queued in ``rejections`` for a Warning Event on it, and skipped; a copy older than the one held
  (the startup LIST racing kopf's watch) is ignored by resourceVersion.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from batchyard.adapters import metrics
from batchyard.api.batchjob import BatchJob, BatchJobStatus
from batchyard.api.common import KubeObject
from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.api.consumableresource import ConsumableResource
from batchyard.api.jobdefinition import JobDefinition, JobDefinitionSpec
from batchyard.api.jobqueue import JobQueue
from batchyard.api.schedulingpolicy import SchedulingPolicy
from batchyard.core.arrays import ArrayChildren
from batchyard.core.capacity import ZERO, Resources, parse_cpu, parse_memory_mib
from batchyard.core.jobref import JobRef
from batchyard.core.jobstate import TERMINAL_STATES
from batchyard.core.lifecycle import ContainerExit, PodObs, epoch
from batchyard.core.views import SharedView
from batchyard.render.names import (
    GPU_RESOURCE,
    LABEL_ARRAY_INDEX,
    LABEL_ATTEMPT,
    LABEL_COMPUTE_ENVIRONMENT,
    LABEL_JOB_UID,
    LABEL_NODE_INDEX,
)

JobKey = JobRef  # a BatchJob (index None): the maps here never hold array children

log = logging.getLogger("batchyard.state")
M = TypeVar("M", bound=KubeObject)

KINDS = {
    "batchjobs": "BatchJob",
    "jobdefinitions": "JobDefinition",
    "jobqueues": "JobQueue",
    "computeenvironments": "ComputeEnvironment",
    "schedulingpolicies": "SchedulingPolicy",
    "consumableresources": "ConsumableResource",
}


@dataclass(frozen=True, slots=True)
class Rejection:
    """An object the models refused: reported on the object (a Warning Event) and skipped."""

    plural: str
    namespace: str
    name: str
    uid: str | None
    message: str

    @property
    def kind(self) -> str:
        return KINDS.get(self.plural, self.plural)


def _older(new: KubeObject, old: KubeObject) -> bool:
    """True when ``new`` is an older copy of the same object than ``old`` (by resourceVersion).

    resourceVersions are opaque strings by contract; the API server's are etcd revisions, so they
    are compared as integers when both are, and otherwise the newcomer wins (as before)."""
    if new.metadata.uid != old.metadata.uid:
        return False
    try:
        return int(new.metadata.resourceVersion or "") < int(old.metadata.resourceVersion or "")
    except ValueError:
        return False


@dataclass(slots=True)
class JobEntry:
    job: BatchJob
    status: BatchJobStatus  # authoritative: what the loop decided last
    written: dict[str, Any]  # the status as last written to the API server (for diffs)
    pods_seen: set[str] = field(default_factory=set)
    # The pinned job definition revision (revision, spec), once resolved: see JobReader.definition.
    definition: tuple[int, JobDefinitionSpec] | None = None
    # Array parents only (core.arrayjob): the children, the ones to step next cycle, and the
    # running ones with a timeout (stepped again when wake_at comes).
    children: ArrayChildren | None = None
    dirty_children: set[int] = field(default_factory=set)
    timed_children: set[int] = field(default_factory=set)
    # When this job's latest attempt was dispatched (its pod created) by this operator; None for
    # array parents and gangs (see core.lifecycle.starting_write_hold).
    dispatched_at: float | None = None
    # Array parents only: the scheduler's view its children share (see JobReader.job_view).
    shared_view: SharedView | None = None
    # Order of first sight (watch order = creation order): the loop steps jobs in this order, so
    # jobs created within one second (createdAt's precision) queue FIFO, not in set order.
    arrival: int = 0
    # The next time the loop must step this job without an event (see ``wake_at``).
    _wake_at: float | None = field(default=None, repr=False)
    _wakes: WakeQueue | None = field(default=None, repr=False, compare=False)

    @property
    def wake_at(self) -> float | None:
        return self._wake_at

    @wake_at.setter
    def wake_at(self, value: float | None) -> None:
        self._wake_at = value
        if value is not None and self._wakes is not None:
            self._wakes.push(value, _key_of(self))


class WakeQueue:
    """The jobs' wake times as a heap, so the loop's soonest wake and its due set cost
    O(log jobs) per change instead of a scan of every job on every pass.

    Setting ``JobEntry.wake_at`` pushes; nothing is ever removed in place. An item is live while
    its job still exists with that very wake time; stale items are dropped when they surface,
    and the heap is rebuilt when stale items outnumber the jobs.
    """

    def __init__(self, jobs: Mapping[JobKey, JobEntry]) -> None:
        self._jobs = jobs
        # (time, sequence, key): the sequence breaks ties, so keys are never compared.
        self._heap: list[tuple[float, int, JobKey]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, at: float, key: JobKey) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), key))
        if len(self._heap) > 2 * len(self._jobs) + 1024:
            self._heap = [item for item in self._heap if self._live(item[0], item[2])]
            heapq.heapify(self._heap)

    def _live(self, at: float, key: JobKey) -> bool:
        entry = self._jobs.get(key)
        return entry is not None and entry.wake_at == at

    def soonest(self) -> float | None:
        heap = self._heap
        while heap and not self._live(heap[0][0], heap[0][2]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> set[JobKey]:
        """The jobs whose wake time has come (their items leave the heap; ``wake_at`` stays
        until the loop steps them and sets the next one)."""
        due: set[JobKey] = set()
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, key = heapq.heappop(heap)
            if self._live(at, key):
                due.add(key)
        return due


@dataclass(slots=True)
class PodEntry:
    namespace: str
    job_uid: str
    attempt: int
    array_index: int | None
    obs: PodObs
    # For node-pool sizing (adapters.scaler): what the pod requests and the compute environment
    # it was placed in (the pod's CE label value).
    requests: Resources = ZERO
    compute_environment: str | None = None
    # A multi-node parallel job's node index (pod label), None for other pods.
    node_index: int | None = None


def pod_requests(spec: Mapping[str, Any]) -> Resources:
    """The pod's effective requests: the sum over containers, at least the largest init container."""

    def of(c: Mapping[str, Any]) -> Resources:
        r = (c.get("resources") or {}).get("requests") or {}
        cpu, memory = parse_cpu(str(r.get("cpu", "0"))), parse_memory_mib(str(r.get("memory", "0")))
        return Resources(cpu, memory, int(r.get(GPU_RESOURCE, 0)))

    total = ZERO
    for c in spec.get("containers") or ():
        total = total + of(c)
    inits = spec.get("initContainers") or ()
    # K8s native sidecars (restartPolicy Always) run beside the containers: their requests add.
    for c in inits:
        if c.get("restartPolicy") == "Always":
            total = total + of(c)
    for c in inits:
        if c.get("restartPolicy") == "Always":
            continue
        i = of(c)
        total = Resources(
            max(total.milli_cpu, i.milli_cpu), max(total.memory_mib, i.memory_mib), max(total.gpus, i.gpus)
        )
    return total


def _deleting_since(meta: Mapping[str, Any]) -> float | None:
    ends = epoch(meta.get("deletionTimestamp"))
    return None if ends is None else ends - float(meta.get("deletionGracePeriodSeconds") or 0)


# Pod-level reasons the kubelet or the control plane set when the system, not the container,
# ended the pod (node pressure eviction, node lost, graceful node shutdown).
_DISRUPTION_POD_REASONS = frozenset(
    {"Evicted", "NodeLost", "Shutdown", "Terminated", "NodeShutdown", "UnexpectedAdmissionError"}
)


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for c in status.get("conditions") or ():
        if c.get("type") == type_:
            return c  # type: ignore[no-any-return]
    return None


def observe_pod(body: Mapping[str, Any]) -> PodEntry | None:
    """Reduce a pod to what the lifecycle reads; None if it is not one of ours.

    Containers: ``containerStatuses`` are the essential containers (a non-essential ECS
    container is rendered as a native sidecar, an init container with restartPolicy Always).
    """
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    uid = labels.get(LABEL_JOB_UID)
    if not uid:
        return None
    status = body.get("status") or {}
    exit_code = reason = message = None
    running_since: float | None = None
    finished_at: float | None = None
    waiting_reason = waiting_message = None
    containers: list[ContainerExit] = []
    statuses = status.get("containerStatuses") or []
    for cs in statuses:
        state = cs.get("state") or {}
        term = state.get("terminated")
        # AWS (EKS): the job fails if any container fails; report the first non-zero exit.
        if term is not None and (exit_code is None or (exit_code == 0 and term.get("exitCode", 0) != 0)):
            exit_code = term.get("exitCode")
            reason = term.get("reason")
            message = term.get("message")
        started = state.get("running") or term
        if started is not None:
            # running.startedAt, or terminated.startedAt for a container seen only once it ended.
            since = epoch(started.get("startedAt"))
            if since is not None and (running_since is None or since < running_since):
                running_since = since
        if term is not None:
            containers.append(ContainerExit(cs.get("name", ""), term.get("exitCode"), term.get("reason")))
            done = epoch(term.get("finishedAt"))
            if done is not None and (finished_at is None or done > finished_at):
                finished_at = done
        waiting = state.get("waiting")
        if waiting is not None and waiting_reason is None and waiting.get("reason"):
            waiting_reason, waiting_message = waiting.get("reason"), waiting.get("message")
    failed_init = None
    # Native sidecars (restartPolicy Always) end with SIGTERM when the pod stops: not a failure.
    sidecars = {
        c.get("name")
        for c in (body.get("spec") or {}).get("initContainers") or ()
        if c.get("restartPolicy") == "Always"
    }
    for cs in status.get("initContainerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if (
            term is not None
            and term.get("exitCode", 0) != 0
            and failed_init is None
            and cs.get("name") not in sidecars
        ):
            failed_init = cs.get("name", "")
            exit_code, reason, message = term.get("exitCode"), term.get("reason"), term.get("message")
        waiting = (cs.get("state") or {}).get("waiting")
        if (
            waiting is not None
            and waiting_reason is None
            and waiting.get("reason") not in (None, "PodInitializing")
        ):
            waiting_reason, waiting_message = waiting.get("reason"), waiting.get("message")
    # The system ended the pod: a pod-level reason (Evicted, NodeLost, Shutdown), or the
    # DisruptionTarget condition (preemption, taint eviction, garbage collection of a lost node).
    disruption = status.get("reason") if status.get("reason") in _DISRUPTION_POD_REASONS else None
    target = _condition(status, "DisruptionTarget")
    if disruption is None and target is not None and target.get("status") == "True":
        disruption = target.get("reason") or "DisruptionTarget"
    scheduled = _condition(status, "PodScheduled")
    scheduled_at = (
        epoch(scheduled.get("lastTransitionTime"))
        if scheduled and scheduled.get("status") == "True"
        else None
    )
    phase = status.get("phase", "Pending")
    essentials_done = phase == "Running" and bool(statuses) and len(containers) == len(statuses)
    index = labels.get(LABEL_ARRAY_INDEX)
    return PodEntry(
        namespace=meta.get("namespace", ""),
        job_uid=uid,
        attempt=int(labels.get(LABEL_ATTEMPT, "1")),
        array_index=int(index) if index is not None else None,
        obs=PodObs(
            name=meta["name"],
            phase=phase,
            node=(body.get("spec") or {}).get("nodeName"),
            exit_code=exit_code,
            reason=reason,
            message=message,
            running_since=running_since,
            deleting=bool(meta.get("deletionTimestamp")),
            # deletionTimestamp is when the grace period ends: the request came that much earlier.
            deleting_since=_deleting_since(meta),
            finished_at=finished_at if len(containers) == len(statuses) else None,
            disruption=disruption,
            failed_init_container=failed_init,
            waiting_reason=waiting_reason,
            waiting_message=waiting_message,
            scheduled_at=scheduled_at,
            containers=tuple(containers),
            essentials_done=essentials_done,
            pod_ip=status.get("podIP") or None,
            host_ip=status.get("hostIP") or None,
        ),
        requests=pod_requests(body.get("spec") or {}),
        compute_environment=labels.get(LABEL_COMPUTE_ENVIRONMENT),
        node_index=int(node)
        if (node := labels.get(LABEL_NODE_INDEX)) is not None and node.isdigit()
        else None,
    )


class ClusterState:
    """Maps of the objects the loop reads, a dirty set of jobs, and the loop's wake-up event."""

    def __init__(self) -> None:
        self.jobs: dict[JobKey, JobEntry] = {}
        self.wakes = WakeQueue(self.jobs)
        # Jobs per queue by their status as written to the API server (JobQueue status counts),
        # kept as jobs come, go and are written, instead of counted over every job each cycle.
        self.queue_counts: dict[str, Counter[str]] = {}
        self._arrivals = itertools.count()
        self.uids: dict[str, JobKey] = {}
        self.definitions: dict[tuple[str, str], JobDefinition] = {}
        self.queues: dict[str, JobQueue] = {}
        self.compute_environments: dict[str, ComputeEnvironment] = {}
        self.policies: dict[str, SchedulingPolicy] = {}
        self.consumables: dict[str, ConsumableResource] = {}
        self.pods: dict[tuple[str, str], PodEntry] = {}
        self.dirty_jobs: set[JobKey] = set()
        self.dirty_definitions: set[tuple[str, str]] = set()
        self.forgotten_jobs: set[JobKey] = set()
        self.event = asyncio.Event()
        self.synced = False
        # Objects the models refused, to be reported on the object (a Warning Event) and the
        # ones refused right now (so a fixed object is reported again if it breaks again).
        self.rejections: list[Rejection] = []
        self.rejected: set[tuple[str, str, str]] = set()

    def wake(self) -> None:
        self.event.set()

    def take_changes(self) -> tuple[set[tuple[str, str]], set[JobKey], set[JobKey]]:
        """What changed since the last call, emptied: (definitions, forgotten jobs, dirty jobs)."""
        out = (self.dirty_definitions, self.forgotten_jobs, self.dirty_jobs)
        self.dirty_definitions, self.forgotten_jobs, self.dirty_jobs = set(), set(), set()
        return out

    def _parse(self, model: type[M], plural: str, body: Mapping[str, Any]) -> M | None:
        """The object as ``model``, or None (reported and skipped) if the model refuses it."""
        meta = body.get("metadata") or {}
        ident = (plural, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        try:
            parsed = model.from_body(body)
        except ValidationError as err:
            if ident not in self.rejected:
                self.rejected.add(ident)
                first = err.errors()[0] if err.errors() else None
                where = ".".join(str(p) for p in first["loc"]) if first else ""
                message = f"{where}: {first['msg']}" if first else str(err)
                message = f"ignored by Batchyard, the operator's model refuses it: {message}"[:1024]
                rejection = Rejection(plural, ident[1], ident[2], meta.get("uid"), message)
                log.warning("%s %s/%s %s", rejection.kind, ident[1], ident[2], message)
                metrics.count_rejected_object(rejection.kind)
                self.rejections.append(rejection)
            return None
        self.rejected.discard(ident)
        return parsed

    # -- BatchJobs --------------------------------------------------------------------------
    def upsert_job(self, body: Mapping[str, Any]) -> None:
        job = self._parse(BatchJob, "batchjobs", body)
        if job is None:
            return
        key = JobRef(job.metadata.namespace or "", job.metadata.name or "")
        entry = self.jobs.get(key)
        if entry is not None and _older(job, entry.job):
            return  # a stale copy (the startup LIST after a newer watch event)
        if entry is not None and entry.job.metadata.uid != job.metadata.uid:
            self.forget_job(key)  # deleted and re-created under the same name
            entry = None
        if entry is None:
            status = job.status or BatchJobStatus()
            written = status.model_dump(exclude_none=True, mode="json")
            self.jobs[key] = JobEntry(
                job=job, status=status, written=written, arrival=next(self._arrivals), _wakes=self.wakes
            )
            self._count(job.spec.jobQueue, written.get("status"), 1)
            if job.metadata.uid:
                self.uids[job.metadata.uid] = key
        else:
            entry.job = job
        self.dirty_jobs.add(key)

    def record_written(self, entry: JobEntry, written: dict[str, Any]) -> None:
        """The job's status as the API server now has it (after a successful patch)."""
        old, new = entry.written.get("status"), written.get("status")
        entry.written = written
        if old != new and self.jobs.get(_key_of(entry)) is entry:
            self._count(entry.job.spec.jobQueue, old, -1)
            self._count(entry.job.spec.jobQueue, new, 1)

    def _count(self, queue: str, status: str | None, delta: int) -> None:
        counts = self.queue_counts.setdefault(queue, Counter())
        state = status or ""  # "": not written yet
        counts[state] += delta
        if counts[state] <= 0:
            del counts[state]
            if not counts:
                del self.queue_counts[queue]

    def forget_job(self, key: JobKey, uid: str | None = None) -> None:
        """Drop a job; with ``uid``, only that incarnation (a stale DELETED of an older job of
        the same name must not drop its successor)."""
        current = self.jobs.get(key)
        if uid is not None and current is not None and current.job.metadata.uid != uid:
            return
        entry = self.jobs.pop(key, None)
        if entry is not None:
            self._count(entry.job.spec.jobQueue, entry.written.get("status"), -1)
            self.uids.pop(entry.job.metadata.uid or "", None)
            self.forgotten_jobs.add(key)
        self.dirty_jobs.discard(key)

    # -- pods -------------------------------------------------------------------------------
    def upsert_pod(self, body: Mapping[str, Any]) -> None:
        pod = observe_pod(body)
        if pod is None:
            return
        self.pods[(pod.namespace, pod.obs.name)] = pod
        self._touch_pod_owner(pod)

    def forget_pod(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        pod = self.pods.pop((meta.get("namespace", ""), meta.get("name", "")), None)
        if pod is not None:
            self._touch_pod_owner(pod)

    def _touch_pod_owner(self, pod: PodEntry) -> None:
        key = self.uids.get(pod.job_uid)
        if key is not None:
            entry = self.jobs[key]
            entry.pods_seen.add(pod.obs.name)
            if pod.array_index is not None:
                entry.dirty_children.add(pod.array_index)
            self.dirty_jobs.add(key)

    # -- definitions and cluster-scoped kinds -------------------------------------------------
    def upsert_definition(self, body: Mapping[str, Any]) -> None:
        parsed = self._parse(JobDefinition, "jobdefinitions", body)
        if parsed is None:
            return
        jd = parsed
        key = (jd.metadata.namespace or "", jd.metadata.name or "")
        old = self.definitions.get(key)
        if old is not None and _older(jd, old):
            return
        if old is not None and old.status is not None and jd.status is not None:
            # Our own status writes are authoritative, as for jobs.
            jd = jd.model_copy(update={"status": old.status})
        self.definitions[key] = jd
        if old is not None and old.metadata.generation == jd.metadata.generation:
            return  # the echo of our own status write: nothing to decide
        self.dirty_definitions.add(key)
        # Jobs not yet admitted that name this definition may proceed (admitted jobs have
        # pinned their revision: an edit changes nothing for them).
        name = key[1]
        self.dirty_jobs.update(
            k
            for k, e in self.jobs.items()
            if k.namespace == key[0]
            and e.status.status in (None, "SUBMITTED")
            and e.job.spec.jobDefinition.partition(":")[0] == name
        )

    def forget_definition(self, namespace: str, name: str) -> None:
        self.definitions.pop((namespace, name), None)

    def upsert_cluster_object(self, plural: str, body: Mapping[str, Any]) -> None:
        name = (body.get("metadata") or {}).get("name", "")
        if plural == "jobqueues":
            queue = self._parse(JobQueue, plural, body)
            if queue is None or not self._newer(self.queues, name, queue):
                return
            arrived = name not in self.queues
            self.queues[name] = queue
            # Jobs that arrived before their queue may proceed. Only when the queue is new: a
            # known queue's events (the echoes of its status writes, every cycle that changes its
            # counts) find no job waiting for it, and the scan is over every job held.
            if arrived:
                self.dirty_jobs.update(
                    k for k, e in self.jobs.items() if e.job.spec.jobQueue == name and e.status.status is None
                )
        elif plural == "computeenvironments":
            ce = self._parse(ComputeEnvironment, plural, body)
            if ce is None or not self._newer(self.compute_environments, name, ce):
                return
            self.compute_environments[name] = ce
        elif plural == "schedulingpolicies":
            policy = self._parse(SchedulingPolicy, plural, body)
            if policy is None or not self._newer(self.policies, name, policy):
                return
            self.policies[name] = policy
        elif plural == "consumableresources":
            consumable = self._parse(ConsumableResource, plural, body)
            if consumable is None or not self._newer(self.consumables, name, consumable):
                return
            self.consumables[name] = consumable

    @staticmethod
    def _newer(held: Mapping[str, KubeObject], name: str, obj: KubeObject) -> bool:
        old = held.get(name)
        return old is None or not _older(obj, old)

    def forget_cluster_object(self, plural: str, name: str) -> None:
        maps: dict[str, dict[str, Any]] = {
            "jobqueues": self.queues,
            "computeenvironments": self.compute_environments,
            "schedulingpolicies": self.policies,
            "consumableresources": self.consumables,
        }
        maps[plural].pop(name, None)
        if plural == "jobqueues":
            # Its jobs must learn that it is gone (AWS: they are terminated).
            self.dirty_jobs.update(
                k for k, e in self.jobs.items() if e.job.spec.jobQueue == name and not _terminal(e)
            )


def _key_of(entry: JobEntry) -> JobKey:
    return JobRef(entry.job.metadata.namespace or "", entry.job.metadata.name or "")


def _terminal(entry: JobEntry) -> bool:
    return entry.status.status in TERMINAL_STATES
