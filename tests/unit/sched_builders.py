"""Small builders for the scheduler's unit tables: ``a_job("j1").in_queue("q").requesting(cpu=2)``."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, replace

from batchyard.core.capacity import DISABLED, INVALID, CEView, NodeView, Resources, total
from batchyard.core.consumables import NON_REPLENISHABLE, ConsumableView
from batchyard.core.fairshare import PolicyView
from batchyard.core.scheduler import (
    Block,
    Cancel,
    CycleResult,
    Decision,
    Dispatch,
    JobView,
    QueueView,
    Scheduler,
    TimeLimitAction,
    World,
)


@dataclass(frozen=True)
class JobB:
    view: JobView

    def in_queue(self, queue: str) -> JobB:
        return JobB(replace(self.view, queue=queue))

    def requesting(self, cpu: str | float = 1, memory: str | int = 0, gpus: int = 0) -> JobB:
        return JobB(replace(self.view, demand=Resources.of(cpu, memory, gpus)))

    def submitted(self, at: float) -> JobB:
        return JobB(replace(self.view, submitted_at=at))

    def share(self, identifier: str, priority: int = 0) -> JobB:
        return JobB(replace(self.view, share_identifier=identifier, scheduling_priority=priority))

    def priority(self, p: int) -> JobB:
        return JobB(replace(self.view, scheduling_priority=p))

    def retried(self) -> JobB:
        return JobB(replace(self.view, retried=True))

    def needs(self, **consumables: int) -> JobB:
        return JobB(replace(self.view, consumables=consumables))

    def gang(self, nodes: int, cpu: str | float = 1, memory: str | int = 0, gpus: int = 0) -> JobB:
        """A multi-node parallel job of ``nodes`` identical nodes (demand = their sum)."""
        per = Resources.of(cpu, memory, gpus)
        demands = (per,) * nodes
        return JobB(replace(self.view, node_demands=demands, demand=total(demands)))


def a_job(key: Hashable) -> JobB:
    return JobB(JobView(key=key, queue="q", submitted_at=0.0, demand=Resources.of(1)))


@dataclass(frozen=True)
class CEB:
    view: CEView

    def max_vcpus(self, n: int) -> CEB:
        return CEB(replace(self.view, max_vcpus=n))

    def nodes(self, *shapes: tuple[str | float, str | int, int]) -> CEB:
        nodes = tuple(NodeView(f"{self.view.name}-n{i}", Resources.of(*s)) for i, s in enumerate(shapes))
        return CEB(replace(self.view, nodes=nodes))

    def launching(self, cpu: str | float, memory: str | int = "1Ti", gpus: int = 0) -> CEB:
        return CEB(replace(self.view, max_node=Resources.of(cpu, memory, gpus)))

    def disabled(self) -> CEB:
        return CEB(replace(self.view, state=DISABLED))

    def invalid(self, reason: str) -> CEB:
        return CEB(replace(self.view, status=INVALID, status_reason=reason))

    def updating(self) -> CEB:
        return CEB(replace(self.view, status="UPDATING"))

    def spot(self) -> CEB:
        return CEB(replace(self.view, spot=True))

    def scaling(self) -> CEB:
        return CEB(replace(self.view, scaling=True))

    def unmanaged(self) -> CEB:
        return CEB(replace(self.view, managed=False))

    def node_types(self, *types: tuple[float, str | float]) -> CEB:
        """Launchable types as (instance vCPUs, job room in vCPUs; memory 1Ti)."""
        return CEB(
            replace(
                self.view, node_types=tuple((int(v * 1000), Resources.of(room, "1Ti")) for v, room in types)
            )
        )

    def instance_types(self, *types: str) -> CEB:
        return CEB(replace(self.view, instance_types=types))


def a_ce(name: str = "ce") -> CEB:
    return CEB(CEView(name=name, max_vcpus=1000))


@dataclass(frozen=True)
class QueueB:
    view: QueueView

    def priority(self, p: int) -> QueueB:
        return QueueB(replace(self.view, priority=p))

    def ces(self, *names: str) -> QueueB:
        return QueueB(replace(self.view, compute_environment_order=names))

    def disabled(self) -> QueueB:
        return QueueB(replace(self.view, state=DISABLED))

    def fair_share(self, decay: int = 0, reservation: int = 0, **weights: float) -> QueueB:
        return QueueB(replace(self.view, policy=PolicyView(decay, reservation, weights)))

    def cancel_after(self, reason: str, seconds: int) -> QueueB:
        actions = (*self.view.time_limit_actions, TimeLimitAction(reason, seconds))
        return QueueB(replace(self.view, time_limit_actions=actions))


def a_queue(name: str = "q") -> QueueB:
    return QueueB(QueueView(name=name, priority=1, compute_environment_order=("ce",)))


def a_consumable(name: str, total: int, non_replenishable: bool = False) -> ConsumableView:
    return ConsumableView(name, total, NON_REPLENISHABLE if non_replenishable else "REPLENISHABLE")


def world(
    ces: Iterable[CEB] = (),
    queues: Iterable[QueueB] = (),
    consumables: Iterable[ConsumableView] = (),
) -> World:
    return World.of([c.view for c in ces], [q.view for q in queues], consumables)


def scheduler_with(w: World, *jobs: JobB, now: float = 0.0) -> Scheduler:
    s = Scheduler()
    s.set_world(w)
    for j in jobs:
        assert s.add_runnable(j.view, now) is None
    return s


def dispatched(result: CycleResult) -> list[Hashable]:
    return [d.job_key for d in result.decisions if isinstance(d, Dispatch)]


def placements(result: CycleResult) -> dict[Hashable, str]:
    return {d.job_key: d.compute_environment for d in result.decisions if isinstance(d, Dispatch)}


def blocks(result: CycleResult) -> list[Block]:
    return [d for d in result.decisions if isinstance(d, Block)]


def cancels(result: CycleResult) -> list[Cancel]:
    return [d for d in result.decisions if isinstance(d, Cancel)]


def of_type(result: CycleResult, kind: type[Decision]) -> list[Decision]:
    return [d for d in result.decisions if isinstance(d, kind)]
