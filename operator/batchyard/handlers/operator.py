"""kopf handlers: they only parse events into the cluster state and wake the scheduler loop.

The engine (``start_engine``) lists every kind once (so the loop never decides on a half-known
cluster: a job must not fail for a missing queue that simply has not been listed yet), starts
the BatchJob watches, then the pod watches (with a server-side label selector), both our own
``adapters.watch.list_watch``, and the loop. kopf's event handlers keep the other kinds current
afterwards; they write nothing, so kopf adds no annotations or finalizers of its own. BatchJobs,
the one kind with several events per job, skip kopf's per-event pipeline (cause detection and a
deep copy of every body as its diff base: a fifth of the operator's CPU under load, issue 14):
``BatchJobEvents`` hands each event of our own watch to the state.

High availability: with leader election on (``batchyard run``'s default), the engine runs only
while this replica holds the Lease (``adapters.leader``); a standby runs kopf's watches of the
other kinds but its handlers drop the events (``memo.engine.state`` is None), and runs no
BatchJob or pod watch at all; each leader term starts from a fresh list of everything, because
a BatchJob's status in the state is the loop's own. kopf peering is off (``standalone``): it
would only pause kopf's streams, never our own tasks, and it pauses every replica of equal
priority.

One writer: every handler here is ``async def``, so kopf runs it on the event loop (a plain
``def`` would run on kopf's thread pool and change the maps while the loop iterates them). The
handlers do no blocking I/O; ``login`` stays a plain ``def`` because it reads files and touches
no state.

Admission: ``_size_handler`` refuses a BatchJob or JobDefinition over AWS's size quotas
(``core.limits``) when the API server asks (the chart's ValidatingWebhookConfiguration). kopf
serves it on every replica, leader or standby, from the first seconds after start; it reads no
state. Its failurePolicy is Ignore, so the operator's own check in the loop stays the backstop.

Liveness: ``loop_liveness`` (a kopf probe, served on ``--liveness``, the chart's probe) fails
when the scheduler loop has not gone round for ``BATCHYARD_LIVENESS_STALL_SECONDS`` or when an
engine task (the loop, a BatchJob or pod watch, the node-pool reconciler, the leader elector) has ended,
with leader election or without (``--standalone``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from batchyard import GROUP, VERSION
from batchyard.adapters import health, metrics
from batchyard.adapters.controller import Controller
from batchyard.adapters.instrumentation import Instrumentation
from batchyard.adapters.kube import Kube
from batchyard.adapters.leader import LeaderElector
from batchyard.adapters.objectstatus import ConsumableStatusWriter, QueueStatusWriter
from batchyard.adapters.observe import CapacityBoard
from batchyard.adapters.scaler import NOT_RECONCILED, NodePoolReconciler
from batchyard.adapters.settings import Settings
from batchyard.adapters.state import ClusterState
from batchyard.adapters.watch import list_objects, list_watch
from batchyard.core import limits
from batchyard.core.jobref import JobRef
from batchyard.core.retention import parse_retention
from batchyard.core.scheduler import Scheduler
from batchyard.core.tenancy import OperatorIdentity
from batchyard.render.names import LABEL_JOB_UID

CLUSTER_PLURALS = ("jobqueues", "computeenvironments", "schedulingpolicies", "consumableresources")


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Options:
    """How this process runs (the chart's BATCHYARD_* variables; ``batchyard run`` flags)."""

    namespaces: tuple[str, ...] = ()  # served namespaces; empty: all (cluster-wide)
    leader_election: bool = False
    lease_name: str = "batchyard"
    lease_namespace: str = "default"
    metrics_port: int | None = None  # None: no /metrics server
    # The admission webhook (core.limits: AWS's size quotas), served on every replica, leader or
    # not. None: off. The certificate comes from outside (the chart's Secret, cert-manager):
    # kopf re-reads the files when they change; it never generates one here.
    webhook_port: int | None = None
    webhook_address: str = "0.0.0.0"
    webhook_cert: str = ""
    webhook_key: str = ""

    @classmethod
    def from_env(cls, leader_election_default: bool = False) -> Options:
        """In-process operators (tests) default to no leader election; `batchyard run` to on."""
        env = os.environ.get
        port = env("BATCHYARD_METRICS_PORT", "").strip()
        webhook_port = env("BATCHYARD_WEBHOOK_PORT", "").strip()
        return cls(
            namespaces=tuple(n.strip() for n in env("BATCHYARD_NAMESPACES", "").split(",") if n.strip()),
            leader_election=_flag("BATCHYARD_LEADER_ELECTION", leader_election_default),
            lease_name=env("BATCHYARD_LEASE_NAME") or "batchyard",
            lease_namespace=env("BATCHYARD_LEASE_NAMESPACE") or env("POD_NAMESPACE") or "default",
            metrics_port=int(port) if port else None,
            webhook_port=int(webhook_port) if webhook_port else None,
            webhook_address=env("BATCHYARD_WEBHOOK_ADDRESS") or "0.0.0.0",
            webhook_cert=env("BATCHYARD_WEBHOOK_CERT", ""),
            webhook_key=env("BATCHYARD_WEBHOOK_KEY", ""),
        )

    def webhook_server(self) -> Any:
        """kopf's admission server for ``settings.admission.server``: a TLS server on the port,
        or, when the webhook is off, one that never listens (kopf insists on a server as soon as
        a validating handler is registered)."""
        if self.webhook_port is None:
            return _no_webhook_server
        if not (self.webhook_cert and self.webhook_key):
            raise ValueError(
                "the admission webhook (BATCHYARD_WEBHOOK_PORT / --webhook-port) needs a certificate: "
                "set BATCHYARD_WEBHOOK_CERT and BATCHYARD_WEBHOOK_KEY (--webhook-cert, --webhook-key)"
            )
        return kopf.WebhookServer(
            addr=self.webhook_address,
            port=self.webhook_port,
            certfile=self.webhook_cert,
            pkeyfile=self.webhook_key,
        )


async def _no_webhook_server(fn: Any) -> AsyncIterator[Any]:
    """The webhook is off: listen nowhere, forever (failurePolicy Ignore lets the API server
    admit; the operator's own size check is the backstop)."""
    await asyncio.Event().wait()
    yield  # never reached: makes this an async generator, as kopf expects


@dataclass
class Engine:
    """What one leader term runs; shared by reference, so kopf's per-object memo copies see it."""

    state: ClusterState | None = None
    controller: Controller | None = None
    instrumentation: Instrumentation | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


def settings_from_env(served_namespaces: tuple[str, ...] = ()) -> Settings:
    # The chart documents 0 as "keep finished jobs forever".
    ttl = float(os.environ.get("BATCHYARD_FINISHED_JOB_TTL_SECONDS") or 7 * 24 * 3600)
    env = os.environ.get
    return Settings(
        eks_host_network=_flag("BATCHYARD_EKS_HOST_NETWORK", False),
        restricted_pod_defaults=_flag("BATCHYARD_RESTRICTED_POD_DEFAULTS", False),
        # The chart sets both through the downward API (core.tenancy keeps jobs away from them).
        identity=OperatorIdentity(
            namespace=env("BATCHYARD_OPERATOR_NAMESPACE") or env("POD_NAMESPACE") or None,
            service_account=env("BATCHYARD_SERVICE_ACCOUNT") or None,
            listed_namespaces=served_namespaces,
        ),
        pod_retention=parse_retention(os.environ.get("BATCHYARD_KEEP_PODS")),
        finished_job_ttl_seconds=ttl if ttl > 0 else math.inf,
        time_limit_scale=float(os.environ.get("BATCHYARD_TIME_LIMIT_SCALE", 1.0)),
        routine_events=os.environ.get("BATCHYARD_ROUTINE_EVENTS", "").lower() in ("1", "true", "yes"),
        starting_write_delay_seconds=float(
            env("BATCHYARD_STARTING_WRITE_DELAY_SECONDS") or Settings.starting_write_delay_seconds
        ),
        detail_write_delay_seconds=float(
            env("BATCHYARD_DETAIL_WRITE_DELAY_SECONDS") or Settings.detail_write_delay_seconds
        ),
        max_dispatches_per_cycle=int(
            env("BATCHYARD_MAX_DISPATCHES_PER_CYCLE") or Settings.max_dispatches_per_cycle
        ),
        create_concurrency=int(env("BATCHYARD_API_CONCURRENCY") or Settings.create_concurrency),
        max_steps_per_cycle=int(env("BATCHYARD_MAX_STEPS_PER_CYCLE") or Settings.max_steps_per_cycle),
    )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.scanning.disabled = True
    options: Options = getattr(memo, "options", None) or Options.from_env()
    memo.options = options
    # Every replica answers admission requests (kopf runs its server outside our leader term);
    # the chart owns the ValidatingWebhookConfiguration, so kopf manages none.
    settings.admission.server = options.webhook_server()
    settings.admission.managed = None
    memo.engine = Engine()
    kube = memo.kube = await Kube.connect()
    if options.metrics_port is not None:
        memo.metrics_server, _thread = metrics.start_metrics_server(options.metrics_port)
    if not options.leader_election:
        memo.tasks = await start_engine(memo, kube, options)
        return
    elector = memo.elector = LeaderElector(kube, options.lease_namespace, options.lease_name)

    memo.tasks = [
        asyncio.create_task(
            elector.run(lambda: lead_term(memo, kube, options)), name="batchyard-leader-election"
        )
    ]
    health.log_if_it_dies(memo.tasks[0])


async def lead_term(memo: kopf.Memo, kube: Kube, options: Options) -> None:
    """One leader term: the engine, until a task of it dies or the term is cancelled."""
    try:
        # Inside the try: a term lost while listing must stop the watches already started.
        tasks = await start_engine(memo, kube, options)
        await asyncio.gather(*tasks)  # forever; a task that dies ends the term
    finally:
        await stop_engine(memo)


async def start_engine(memo: kopf.Memo, kube: Kube, options: Options) -> list[asyncio.Task[Any]]:
    """List everything, start the BatchJob and pod watches and the loop; returns once the
    BatchJobs, then the pods, are listed (the old order: a pod listed finds its job known)."""
    state = ClusterState()
    settings = settings_from_env(options.namespaces)
    # Every collaborator is wired here, once, by constructor arguments.
    scheduler = Scheduler(max_dispatches_per_cycle=settings.max_dispatches_per_cycle)
    capacity = CapacityBoard(unseen=NOT_RECONCILED)
    scaler = NodePoolReconciler(kube, state, scheduler, capacity)  # owns ComputeEnvironment status and nodes
    instrumentation = Instrumentation(state)
    controller = Controller(
        kube,
        state,
        settings,
        scheduler=scheduler,
        capacity=capacity,
        status_writers=[
            QueueStatusWriter(state, kube),
            ConsumableStatusWriter(state, kube),
            instrumentation.write,
            scaler.on_cycle,
        ],
        on_cycle=[metrics.observe_cycle],
        on_transition=[instrumentation.on_transition],
    )
    engine: Engine = memo.engine
    engine.state, engine.controller, engine.instrumentation = state, controller, instrumentation
    # Namespaced kinds per served namespace (a namespace-limited install has only Roles there).
    scopes = [f"/namespaces/{ns}" for ns in options.namespaces] or [""]
    # kopf's watches deliver events meanwhile (on this thread: the handlers are async); a
    # listed copy older than one they delivered is ignored (ClusterState compares
    # resourceVersions), and an object the models refuse is reported and skipped, never fatal.
    for plural in CLUSTER_PLURALS:
        items, _rv = await list_objects(kube, f"/apis/{GROUP}/{VERSION}/{plural}")
        for item in items:
            state.upsert_cluster_object(plural, item)
    for scope in scopes:
        for item in (await list_objects(kube, f"/apis/{GROUP}/{VERSION}{scope}/jobdefinitions"))[0]:
            state.upsert_definition(item)
    await health.report_rejections(kube, state)
    # BatchJobs: our own list-then-watch (not kopf's per-event pipeline, which cost a fifth of
    # the operator's CPU under load, issue 14), listed before the pods as before.
    on_job = BatchJobEvents(state, kube)
    jobs_synced = [asyncio.Event() for _ in scopes]
    job_watches = [
        asyncio.create_task(
            list_watch(kube, f"/apis/{GROUP}/{VERSION}{scope}/batchjobs", "", on_job, event),
            name=f"batchyard-batchjob-watch{scope or ' (all namespaces)'}",
        )
        for scope, event in zip(scopes, jobs_synced, strict=True)
    ]
    for task in job_watches:
        health.log_if_it_dies(task)
    engine.tasks = list(job_watches)  # a term that ends while listing cancels them
    for event in jobs_synced:
        await event.wait()

    def on_pod(kind: str, body: Any) -> None:
        if kind == "DELETED":
            state.forget_pod(body)
        else:
            state.upsert_pod(body)
        state.wake()

    memo.state = state
    memo.controller = controller
    memo.scaler = scaler
    synced = [asyncio.Event() for _ in scopes]
    pod_and_loop_tasks = [
        *(
            asyncio.create_task(
                list_watch(kube, f"/api/v1{scope}/pods", LABEL_JOB_UID, on_pod, event),
                name=f"batchyard-pod-watch{scope or ' (all namespaces)'}",
            )
            for scope, event in zip(scopes, synced, strict=True)
        ),
        asyncio.create_task(controller.run(), name="batchyard-scheduler-loop"),
        asyncio.create_task(scaler.run(), name="batchyard-node-pools"),
    ]
    for task in pod_and_loop_tasks:
        health.log_if_it_dies(task)
    engine.tasks = [*job_watches, *pod_and_loop_tasks]
    for event in synced:
        await event.wait()
    state.synced = True
    state.wake()
    metrics.set_leader(True)
    return engine.tasks


async def stop_engine(memo: kopf.Memo) -> None:
    """End a leader term: stop our tasks and drop the state (the next term lists afresh)."""
    engine: Engine = memo.engine
    for task in engine.tasks:
        task.cancel()
    await asyncio.gather(*engine.tasks, return_exceptions=True)
    if engine.instrumentation is not None:
        engine.instrumentation.close()
    engine.state = engine.controller = engine.instrumentation = None
    engine.tasks = []
    metrics.set_leader(False)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    tasks = getattr(memo, "tasks", [])
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if getattr(memo, "engine", None) is not None and memo.engine.tasks:
        await stop_engine(memo)
    if getattr(memo, "metrics_server", None) is not None:
        memo.metrics_server.shutdown()
        memo.metrics_server.server_close()
    if hasattr(memo, "kube"):
        await memo.kube.close()


def _state(memo: kopf.Memo, namespace: str | None = None) -> ClusterState | None:
    """The current term's state; None on a standby replica (its events are dropped), and for a
    namespace this operator does not serve (an in-process operator may watch cluster-wide)."""
    engine: Engine | None = getattr(memo, "engine", None)
    options: Options | None = getattr(memo, "options", None)
    if (
        namespace is not None
        and options is not None
        and options.namespaces
        and namespace not in options.namespaces
    ):
        return None
    return engine.state if engine is not None else None


async def _reported(memo: kopf.Memo, state: ClusterState) -> None:
    """Wake the loop, and report any object the models just refused (a Warning Event on it)."""
    state.wake()
    if state.rejections and hasattr(memo, "kube"):
        await health.report_rejections(memo.kube, state)


class BatchJobEvents:
    """The BatchJob watch's handler (``adapters.watch.list_watch``, one per served scope, run
    only while this replica leads): each event goes into the state and wakes the loop. It runs
    on the event loop, synchronously, so the state keeps one writer. A BatchJob the models
    refuse is reported by a Warning Event from a task of its own (one at a time; it drains
    ``state.rejections``), never awaited here, so the watch never waits on a write."""

    def __init__(self, state: ClusterState, kube: Kube | None) -> None:
        self.state = state
        self.kube = kube
        self.reporter: asyncio.Task[None] | None = None

    def __call__(self, kind: str, body: Mapping[str, Any]) -> None:
        state = self.state
        if kind == "DELETED":
            meta = body.get("metadata") or {}
            state.forget_job(JobRef(meta.get("namespace", ""), meta.get("name", "")), uid=meta.get("uid"))
        else:
            state.upsert_job(body)
        state.wake()
        if state.rejections and self.kube is not None and (self.reporter is None or self.reporter.done()):
            self.reporter = asyncio.create_task(
                health.report_rejections(self.kube, state), name="batchyard-report-rejections"
            )


@kopf.on.event(GROUP, VERSION, "jobdefinitions")
async def jobdefinition_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    meta = body.get("metadata") or {}
    state = _state(memo, meta.get("namespace", ""))
    if state is None:
        return
    if type == "DELETED":
        state.forget_definition(meta.get("namespace", ""), meta.get("name", ""))
    else:
        state.upsert_definition(body)
    await _reported(memo, state)


def _cluster_handler(plural: str) -> None:
    @kopf.on.event(GROUP, VERSION, plural, id=f"{plural}-event")
    async def handler(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        state = _state(memo)
        if state is None:
            return
        if type == "DELETED":
            state.forget_cluster_object(plural, (body.get("metadata") or {}).get("name", ""))
        else:
            state.upsert_cluster_object(plural, body)
        await _reported(memo, state)


for _plural in CLUSTER_PLURALS:
    _cluster_handler(_plural)


# --- admission: AWS's size quotas (core.limits), before the API server stores the object -------
# The chart's ValidatingWebhookConfiguration calls /<handler id> for CREATE and UPDATE of the
# main resource only (status is a subresource). The check costs tens of microseconds on the
# event loop (about 10 us for a small job, 50 us at 30 KiB, on a 2-core EPYC); it touches no
# state, so a standby replica answers as the leader does.
WEBHOOK_IDS = {"batchjobs": "size-batchjobs", "jobdefinitions": "size-jobdefinitions"}


def _size_handler(plural: str, kind: str) -> None:
    @kopf.on.validate(GROUP, VERSION, plural, id=WEBHOOK_IDS[plural], operations=["CREATE", "UPDATE"])
    async def handler(body: kopf.Body, **kwargs: Any) -> None:
        # kopf passes the stored object of an UPDATE as ``old`` (not in its WebhookFn type).
        problem = limits.admission_problem(kind, body, kwargs.get("old"))
        if problem is not None:
            raise kopf.AdmissionError(problem, code=422)


_size_handler("batchjobs", "BatchJob")
_size_handler("jobdefinitions", "JobDefinition")


@kopf.on.probe(id="scheduler-loop")
async def loop_liveness(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """Fails (kopf answers 500, so the liveness probe fails) when the engine is stuck or dead."""
    engine: Engine | None = getattr(memo, "engine", None)
    controller = engine.controller if engine is not None else None
    heartbeat = controller.heartbeat if controller is not None else None
    now = health.monotonic()
    if heartbeat is not None:
        metrics.set_loop_heartbeat_age(now - heartbeat)
    # Standalone, memo.tasks are the engine's tasks: each counted once.
    tasks = list(dict.fromkeys([*getattr(memo, "tasks", []), *(engine.tasks if engine is not None else [])]))
    found = health.problems(heartbeat=heartbeat, now=now, stall=health.stall_seconds(), tasks=tasks)
    if found:
        # Permanent: kopf must not retry the probe handler (the answer is the failure).
        raise kopf.PermanentError("; ".join(found))
    return {
        "leading": controller is not None,
        "loop_heartbeat_age_seconds": None if heartbeat is None else round(now - heartbeat, 3),
        "cycles": controller.cycles if controller is not None else 0,
    }


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere: $KUBECONFIG read now (not at import time)."""
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(
        **kwargs
    ) or kopf.login_with_kubeconfig(**kwargs)
    return info
