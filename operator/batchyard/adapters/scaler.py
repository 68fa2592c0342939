"""Compute environments as node pools: validate them, size them with demand, report their status.

Why this exists: a MANAGED compute environment scales its nodes with the RUNNABLE demand routed
to it, between minvCpus and maxvCpus (AWS "desiredvCpus"), and every compute environment shows
VALID or INVALID with a reason. The sizing decision is pure (``core.nodepool``), the launching is
the provider's (``batchyard.nodepools``); this module is the loop between them. It runs beside the
scheduler loop (``adapters.controller``) and talks to it only through what it is given:

* it publishes on the ``CapacityBoard`` (the nodes the scheduler may bind to, the largest
  launchable node, VALID/INVALID) and wakes the scheduler when that changes;
* it reads the scheduler's RUNNABLE jobs (``Scheduler.snapshot``/``demand_of``), the job pods
  (``ClusterState.pods``: node, requests, compute environment) and the last cycle's usage.

A pass, every ``LOOP_SECONDS`` and whenever a node or the scheduler's demand changes:

1. one provider per compute environment (``nodepools.provider_for``); a deleted compute
   environment's provider is asked to ``forget`` it (kwok: its idle nodes go, busy ones later);
2. ``nodepools.validate`` -> INVALID statusReason or VALID (re-checked when the spec changes,
   when the CE gains or loses its first node, every ``VALIDATE_SECONDS`` when VALID and every
   pass when INVALID);
3. the CE's nodes from the node cache (a server-side label-selected watch of
   ``batchyard.io/compute-environment`` nodes) or, for Cluster API, from the provider; each
   node's use is the requests of the job pods bound to it;
4. idle time per node (``IdleTracker``); no node is idle while a dispatch of this CE has no pod
   yet (the scheduler charged a job whose pod the watch has not shown), so a node the scheduler
   just chose is never removed under it;
5. RUNNABLE demand routed to compute environments (``route_demand``: queues by priority, jobs in
   queue order, first ENABLED CE with room) plus the CE's unbound job pods (dispatched, waiting
   for a node: demand that already chose this CE);
6. ``plan_scale`` -> the scheduler's view first (without the nodes about to be removed, so it
   sends nothing there), then ``provider.apply``;
7. status: status, statusReason, desiredvCpus, nodes, vcpusInUse, observedGeneration and a Ready
   condition, written with one merge patch when something changed.

What the scheduler sees per provider: kwok and Cluster API create the nodes from the plan, so
their nodes bind (``CEView.nodes``: CPU nodes first, then GPU nodes, see below); Karpenter
launches from pending pods, so only maxvCpus and the largest launchable node bound it
(``nodes=None``, ``max_node``); an unmanaged CE's nodes bind and never scale. A kwok or Cluster
API pool whose provider carries out its plans is ``scaling``: a job waiting for room there waits
(WAITING:CAPACITY) while nodes come or running jobs end, as on AWS; when the provider fails (an
API error, a node NotReady for ``LAUNCH_SECONDS``) it shows CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY.

A compute environment the loop has not reconciled yet shows as CREATING (AWS's status while a
compute environment is being created), so the scheduler waits for it instead of dispatching
into nodes it knows nothing about (``NOT_RECONCILED``, the board's ``unseen`` value).

Known limits: the requests of non-job pods (DaemonSets) on a node are not watched (only job pods
are), so a node's room is its allocatable; a job pod that then does not fit stays Pending and
counts as demand, which adds a node. In a compute environment that mixes CPU and GPU types the
scheduler's first fit may charge a CPU job to a GPU node when every CPU node is full (the taint
keeps the pod off it); the pod then waits Pending as demand for a CPU node. CPU nodes come first
in the scheduler's node order so this happens only when CPU room is exhausted (AWS advises
against mixing CPU and GPU types in one compute environment).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from batchyard.adapters.kube import Kube
from batchyard.adapters.observe import CapacityBoard
from batchyard.adapters.state import ClusterState
from batchyard.adapters.watch import list_watch
from batchyard.adapters.writes import patch_status
from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.core import lifecycle
from batchyard.core.capacity import ZERO, NodeView, Resources
from batchyard.core.nodepool import (
    CE_LABEL,
    IdleTracker,
    PoolNode,
    PoolSpec,
    QueueDemand,
    ScalePlan,
    node_views,
    plan_scale,
    pool_spec,
    route_demand,
)
from batchyard.core.scheduler import CycleResult, Scheduler
from batchyard.core.views import CECapacity
from batchyard.nodepools import (
    NodePoolProvider,
    ObservedNode,
    parse_node,
    provider_for,
    provider_kind,
    validate,
)
from batchyard.nodepools.base import ProviderBase
from batchyard.render.names import label_value

log = logging.getLogger("batchyard.scaler")

LOOP_SECONDS = 1.0  # a pass at least this often (idle nodes age without any event)
MIN_PASS_SECONDS = 0.2  # and at most this often (node events come in bursts)
VALIDATE_SECONDS = 30.0  # a VALID compute environment is re-validated this often
# A node not Ready this long after its creation means the provider is not delivering: jobs that
# wait for room then show CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY.
LAUNCH_SECONDS = 600.0
DEMAND_LIMIT = 2000  # RUNNABLE jobs per queue looked at for sizing
HEALTHY = "ComputeEnvironment Healthy"  # AWS statusReason of a VALID compute environment
CREATING = "CREATING"
FINISHED = ("Succeeded", "Failed")


# What the scheduler sees of a compute environment this loop has not reconciled yet: CREATING
# (AWS's status while a compute environment is being created), so jobs wait for it.
NOT_RECONCILED = CECapacity(
    nodes=(),
    status=CREATING,
    status_reason="the node-pool reconciler has not seen this compute environment yet",
)


class NodeCache:
    """The nodes that carry the compute-environment label, kept small (no annotations, no status)."""

    def __init__(self) -> None:
        self.nodes: dict[str, ObservedNode] = {}
        self.synced = asyncio.Event()
        self.changed = asyncio.Event()

    def handle(self, kind: str, body: Mapping[str, Any]) -> None:
        name = (body.get("metadata") or {}).get("name", "")
        if kind == "DELETED":
            self.nodes.pop(name, None)
        else:
            node = dataclasses.replace(parse_node(body), annotations={})
            if self.nodes.get(name) == node:
                return  # a heartbeat: nothing sizing reads changed
            self.nodes[name] = node
        self.changed.set()

    def matching(self, selector: Mapping[str, str]) -> list[ObservedNode]:
        return [n for n in self.nodes.values() if all(n.labels.get(k) == v for k, v in selector.items())]

    def of_ce(self, ce: str) -> list[ObservedNode]:
        return self.matching({CE_LABEL: ce})


@dataclass
class _Pool:
    """What the loop remembers per compute environment."""

    provider: NodePoolProvider
    kind: str
    tracker: IdleTracker
    ce: ComputeEnvironment
    reason: str | None = None  # INVALID statusReason; None: VALID
    validated_key: tuple[Any, ...] | None = None
    validated_at: float = 0.0
    written: dict[str, Any] | None = None  # comparable status last written
    ready_since: float = field(default_factory=time.time)
    apply_failed: bool = False  # the last provider.apply raised


@dataclass
class _PodUse:
    """Job pods per node and per compute environment."""

    used: dict[str, Resources] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    running: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    pending: dict[str, list[Resources]] = field(default_factory=lambda: defaultdict(list))
    jobs: dict[str, set[tuple[str, int | None]]] = field(default_factory=lambda: defaultdict(set))


class NodePoolReconciler:
    def __init__(
        self, kube: Kube, state: ClusterState, scheduler: Scheduler, capacity: CapacityBoard
    ) -> None:
        self.kube = kube
        self.state = state
        self.scheduler = scheduler
        self.capacity = capacity  # what the scheduler sees of each CE (the board's unseen: NOT_RECONCILED)
        self.last_result: CycleResult | None = None
        self.cache = NodeCache()
        self.pools: dict[str, _Pool] = {}
        self.forgetting: dict[str, _Pool] = {}  # deleted CEs whose nodes are still there
        self.wake_event = asyncio.Event()
        self._signature: Any = None
        self.passes = 0

    # -- the loop ------------------------------------------------------------------------------
    def wake(self) -> None:
        self.wake_event.set()

    async def on_cycle(self, result: CycleResult) -> None:
        """After each scheduler cycle: run a pass soon when demand or usage changed."""
        self.last_result = result
        signature = (
            tuple(sorted(result.compute_environments.items())),
            tuple(sorted((n, q.runnable_demand) for n, q in result.queues.items())),
        )
        if signature != self._signature:
            self._signature = signature
            self.wake()

    async def run(self) -> None:
        def on_node(kind: str, body: Mapping[str, Any]) -> None:
            self.cache.handle(kind, body)
            if self.cache.changed.is_set():
                self.cache.changed.clear()
                self.wake()

        watch = asyncio.create_task(
            list_watch(self.kube, "/api/v1/nodes", CE_LABEL, on_node, self.cache.synced)
        )
        try:
            while True:
                # asyncio.timeout, not wait_for (3.11's wait_for can swallow a cancel).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LOOP_SECONDS):
                        await self.wake_event.wait()
                self.wake_event.clear()
                if not (self.state.synced and self.cache.synced.is_set()):
                    continue
                try:
                    await self.reconcile_once(time.time())
                except Exception:  # the loop must survive anything one pass does
                    log.exception("node-pool pass failed; retrying")
                    await asyncio.sleep(1)
                await asyncio.sleep(MIN_PASS_SECONDS)
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)

    async def reconcile_once(self, now: float) -> None:
        st = self.state
        ces = dict(st.compute_environments)
        # 1. providers; deleted compute environments are forgotten
        for name in [n for n in self.pools if n not in ces]:
            self.forgetting[name] = self.pools.pop(name)
            self.capacity.reports.pop(name, None)
        for name in list(self.forgetting):
            if name in ces:
                del self.forgetting[name]  # re-created under the same name
            else:
                await self._forget(name, self.forgetting[name])
        pools = {name: self._pool(ce, now) for name, ce in ces.items()}

        # 2. VALID / INVALID
        for pool in pools.values():
            await self._validate(pool, now)

        # 3.-4. nodes and their use
        use = self._pod_use(ces)
        held = self.scheduler.whole_nodes()  # gang nodes: busy before their pods exist
        result = self.last_result
        observed: dict[str, list[ObservedNode]] = {}
        pool_nodes: dict[str, list[PoolNode]] = {}
        for name, pool in pools.items():
            if pool.reason is not None:
                continue
            try:
                observed[name] = await self._observed(pool)
            except Exception as err:
                log.warning("reading the nodes of compute environment %s failed: %s", name, err)
                continue
            usage = result.compute_environments.get(name) if result is not None else None
            in_flight = usage is not None and usage.jobs > len(use.jobs.get(name, ()))
            whole = held.get(name, set())
            idle = pool.tracker.observe(
                {n.name: n.created_at for n in observed[name]},
                [n.name for n in observed[name] if use.running.get(n.name) or n.name in whole],
                now,
            )
            pool_nodes[name] = [
                n.pool_node(
                    used=use.used.get(n.name, ZERO),
                    running_jobs=use.running.get(n.name, 0),
                    idle_since=None if in_flight else idle.get(n.name),
                )
                for n in observed[name]
            ]
            pool_nodes[name] = [
                dataclasses.replace(
                    p, used=p.allocatable, running_jobs=max(1, p.running_jobs), idle_since=None
                )
                if p.name in whole
                else p
                for p in pool_nodes[name]
            ]

        # 5. demand, routed to the usable managed compute environments
        specs: dict[str, PoolSpec] = {}
        for name in pool_nodes:
            ce = pools[name].ce
            if ce.spec.type == "MANAGED":
                specs[name] = pool_spec(ce)  # validate_common has checked the instance types
        routed = route_demand(self._queue_demand(), specs, self._in_use(result, specs))

        # 6.-7. plan, scheduler view, provider
        changed = False
        plans: dict[str, ScalePlan] = {}
        for name, pool in pools.items():
            plan = None
            if name in specs:
                demand = [*use.pending.get(name, ()), *routed.get(name, ())]
                plan = plans[name] = plan_scale(specs[name], pool_nodes[name], demand, now)
            capacity = self._capacity(
                pool, specs.get(name), pool_nodes.get(name), observed.get(name), plan, now
            )
            if self.capacity.reports.get(name) != capacity:
                self.capacity.reports[name] = capacity
                changed = True
        if changed:
            self.state.wake()
        for name, plan in plans.items():
            pool = pools[name]
            try:
                await pool.provider.apply(pool.ce, plan)
            except Exception as err:
                log.warning("scaling compute environment %s failed: %s", name, err)
                pool.apply_failed = True
            else:
                pool.apply_failed = False
                if plan.changes:
                    log.info(
                        "compute environment %s: +%s -%s nodes (desired %s vCPUs)",
                        name,
                        [a.name for a in plan.add],
                        list(plan.remove),
                        plan.desired_vcpus,
                    )

        # 8. status
        for name, pool in pools.items():
            await self._write_status(pool, plans.get(name), observed.get(name), result, now)
        self.passes += 1

    # -- the steps -----------------------------------------------------------------------------
    def _pool(self, ce: ComputeEnvironment, now: float) -> _Pool:
        name = ce.metadata.name or ""
        kind = provider_kind(ce)
        pool = self.pools.get(name)
        if pool is None or pool.kind != kind:
            pool = self.pools[name] = _Pool(provider_for(self.kube, ce), kind, IdleTracker(started=now), ce)
            if ce.status is not None:
                pool.written = _comparable(ce.status.model_dump(mode="json", exclude_none=True))
        pool.ce = ce
        return pool

    async def _validate(self, pool: _Pool, now: float) -> None:
        name = pool.ce.metadata.name or ""
        key = (pool.ce.metadata.generation, pool.kind, bool(self.cache.of_ce(name)))
        due = (
            key != pool.validated_key
            or pool.reason is not None
            or now - pool.validated_at >= VALIDATE_SECONDS
        )
        if not due:
            return
        try:
            pool.reason = await validate(self.kube, pool.ce, pool.provider)
        except Exception as err:
            log.warning("validating compute environment %s failed: %s", name, err)
            return
        pool.validated_key = key
        pool.validated_at = now

    async def _observed(self, pool: _Pool) -> list[ObservedNode]:
        """From the node cache when the provider selects nodes by label (kwok, karpenter, unmanaged)."""
        provider = pool.provider
        if (
            isinstance(provider, ProviderBase)
            and type(provider).observed_nodes is ProviderBase.observed_nodes
        ):
            return sorted(self.cache.matching(provider.node_selector(pool.ce)), key=lambda n: n.name)
        return await provider.observed_nodes(pool.ce)

    def _pod_use(self, ces: Iterable[str]) -> _PodUse:
        by_label = {label_value(name): name for name in ces}
        use = _PodUse()
        for pod in self.state.pods.values():
            if pod.obs.phase in FINISHED:
                continue  # ended: it holds nothing (a pod kept for its log stays this way)
            ce = by_label.get(pod.compute_environment or "")
            if ce is not None:
                use.jobs[ce].add((pod.job_uid, pod.array_index))
            node = pod.obs.node
            if node:
                use.used[node] = use.used[node] + pod.requests
                use.running[node] += 1
            elif ce is not None and not pod.obs.deleting and pod.node_index is None:
                # (a gang's pod waits for a node the scheduler holds whole: not new demand)
                use.pending[ce].append(pod.requests)
        return use

    def _queue_demand(self) -> list[QueueDemand]:
        sched = self.scheduler
        out = []
        for q in sorted(self.state.queues.values(), key=lambda q: (-q.spec.priority, q.metadata.name or "")):
            name = q.metadata.name or ""
            # a multi-node parallel job is one Gang: numNodes whole nodes of one type
            jobs = [
                d for key in sched.snapshot(name, DEMAND_LIMIT) if (d := sched.sizing_demand(key)) is not None
            ]
            if jobs:
                out.append(QueueDemand(tuple(q.compute_environments_in_order()), jobs))
        return out

    @staticmethod
    def _in_use(result: CycleResult | None, specs: Mapping[str, PoolSpec]) -> dict[str, Resources]:
        if result is None:
            return {}
        return {n: u.in_use for n, u in result.compute_environments.items() if n in specs}

    def _capacity(
        self,
        pool: _Pool,
        spec: PoolSpec | None,
        nodes: list[PoolNode] | None,
        observed: list[ObservedNode] | None,
        plan: ScalePlan | None,
        now: float,
    ) -> CECapacity:
        """What the scheduler sees of the CE (module docstring: per provider)."""
        cls = CECapacity
        if pool.reason is not None:
            return cls(nodes=(), status="INVALID", status_reason=pool.reason)
        max_node = spec.max_node if spec is not None else None
        types = spec.node_types if spec is not None else ()
        if nodes is None:  # VALID, but its nodes could not be read: keep what the scheduler had
            previous = self.capacity.reports.get(pool.ce.metadata.name or "")
            return (
                previous
                if previous is not None and previous.status == "VALID"
                else cls(nodes=(), max_node=max_node, node_types=types)
            )
        if spec is not None and not pool.provider.scales_nodes:
            # karpenter: nodes come from pending pods
            return cls(nodes=None, max_node=max_node, node_types=types)
        removing = set(plan.remove) if plan is not None else set()
        views = node_views(n for n in nodes if n.name not in removing)
        # Scaling (jobs wait for room rather than the provider "failing to deliver"): the provider
        # carried out the last plan and no node has been stuck NotReady for LAUNCH_SECONDS.
        stuck = any(
            not n.ready and not n.deleting and now - n.created_at >= LAUNCH_SECONDS for n in observed or ()
        )
        scaling = spec is not None and not pool.apply_failed and not stuck
        return cls(nodes=_cpu_first(views), max_node=max_node, scaling=scaling, node_types=types)

    async def _forget(self, name: str, pool: _Pool) -> None:
        try:
            await pool.provider.forget(pool.ce)
        except Exception as err:
            log.warning("releasing the nodes of deleted compute environment %s failed: %s", name, err)
            return
        if not (pool.provider.scales_nodes and self.cache.of_ce(name)):
            del self.forgetting[name]

    async def _write_status(
        self,
        pool: _Pool,
        plan: ScalePlan | None,
        nodes: list[ObservedNode] | None,
        result: CycleResult | None,
        now: float,
    ) -> None:
        ce = pool.ce
        name = ce.metadata.name or ""
        valid = pool.reason is None
        status: dict[str, Any] = {
            "status": "VALID" if valid else "INVALID",
            "statusReason": HEALTHY if valid else pool.reason,
            "observedGeneration": ce.metadata.generation,
        }
        if plan is not None:
            status["desiredvCpus"] = plan.desired_vcpus
            status["nodes"] = plan.nodes if pool.provider.scales_nodes else len(nodes or ())
        elif nodes is not None:
            status["nodes"] = len(nodes)
        usage = result.compute_environments.get(name) if result is not None else None
        status["vcpusInUse"] = round(usage.vcpus_in_use, 3) if usage is not None else 0
        comparable = _comparable(status)
        if comparable == pool.written:
            return
        if pool.written is None or pool.written.get("status") != status["status"]:
            pool.ready_since = now
        status["conditions"] = [
            {
                "type": "Ready",
                "status": "True" if valid else "False",
                "reason": "Valid" if valid else "Invalid",
                "message": status["statusReason"],
                "lastTransitionTime": lifecycle.iso(pool.ready_since),
                "observedGeneration": ce.metadata.generation,
            }
        ]
        # Keys gone from the new status are removed by the merge patch (None).
        patch = {**{k: None for k in (pool.written or {}) if k not in status}, **status}
        if await patch_status(self.kube, "computeenvironments", name, None, patch):
            pool.written = comparable


def _comparable(status: Mapping[str, Any]) -> dict[str, Any]:
    """The status without its conditions (their times change with every write)."""
    return {k: v for k, v in status.items() if k != "conditions"}


def _cpu_first(views: Iterable[NodeView]) -> tuple[NodeView, ...]:
    """CPU nodes before GPU nodes: the scheduler's first fit puts CPU jobs on GPU nodes last."""
    return tuple(sorted(views, key=lambda v: (v.allocatable.gpus > 0, v.name)))
