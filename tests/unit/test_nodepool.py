"""Unit tables for node-pool sizing: scale-out with demand, min/max, GPU, scale-in, strategies."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import pytest

from batchyard.core.capacity import ZERO, Resources
from batchyard.core.instances import BUILTIN_CATALOGUE, InstanceType, job_capacity_estimate
from batchyard.core.nodepool import (
    BEST_FIT_PROGRESSIVE,
    Demand,
    Gang,
    IdleTracker,
    PoolNode,
    PoolSpec,
    QueueDemand,
    ScalePlan,
    plan_scale,
    route_demand,
)

NOW = 10_000.0
T4 = InstanceType("c4v", 4000, 16384, max_pods=58, price=0.2)  # a 4-vCPU type
T8 = InstanceType("c8v", 8000, 32768, max_pods=58, price=0.4)
T2 = InstanceType("c2v", 2000, 8192, max_pods=29, price=0.1)
G1 = InstanceType("g1v", 4000, 16384, gpus=1, max_pods=29, price=0.5)


# --- builders ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PoolB:
    spec: PoolSpec

    def vcpus(self, min: int = 0, max: int = 8) -> PoolB:
        return PoolB(replace(self.spec, min_vcpus=min, max_vcpus=max))

    def types(self, *types: InstanceType | str) -> PoolB:
        resolved = tuple(BUILTIN_CATALOGUE[t] if isinstance(t, str) else t for t in types)
        return PoolB(replace(self.spec, instance_types=resolved))

    def progressive(self) -> PoolB:
        return PoolB(replace(self.spec, allocation_strategy=BEST_FIT_PROGRESSIVE))

    def disabled(self) -> PoolB:
        return PoolB(replace(self.spec, enabled=False))

    def delay(self, seconds: float) -> PoolB:
        return PoolB(replace(self.spec, scale_down_delay_seconds=seconds))

    def unavailable(self, *names: str) -> PoolB:
        return PoolB(replace(self.spec, unavailable=frozenset(names)))


def a_pool(name: str = "ce") -> PoolB:
    return PoolB(PoolSpec(name=name, max_vcpus=8, instance_types=(T4,), scale_down_delay_seconds=60))


def a_node(
    name: str, t: InstanceType = T4, *, jobs: int = 0, used: float = 0, idle_for: float | None = None
) -> PoolNode:
    return PoolNode(
        name=name,
        instance_type=t.name,
        milli_cpu=t.milli_cpu,
        allocatable=job_capacity_estimate(t, ZERO),
        used=Resources.of(used),
        running_jobs=jobs,
        idle_since=None if idle_for is None else NOW - idle_for,
    )


def jobs(n: int, cpu: float = 1, memory: int = 1024, gpus: int = 0) -> list[Resources]:
    return [Resources.of(cpu, memory, gpus)] * n


def gang(n: int, cpu: float = 1, memory: int = 1024, gpus: int = 0, *, main_cpu: float | None = None) -> Gang:
    """A multi-node parallel job of ``n`` nodes; ``main_cpu``: node 0 asks for a different size."""
    nodes = [Resources.of(cpu, memory, gpus)] * n
    if main_cpu is not None:
        nodes[0] = Resources.of(main_cpu, memory, gpus)
    return Gang(tuple(nodes))


def added(plan: ScalePlan) -> Counter[str]:
    return Counter(a.instance_type.name for a in plan.add)


# --- scale-out ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pool", "nodes", "demand", "expect_added", "expect_desired", "expect_waiting"),
    [
        pytest.param(
            a_pool().vcpus(0, 8).types(T4),
            [],
            jobs(20),
            {"c4v": 2},
            8,
            14,
            id="20 one-vCPU jobs, max 8, a 4-vCPU type: exactly 2 nodes, the rest wait",
        ),
        pytest.param(
            a_pool().vcpus(0, 8).types(T4).progressive(),
            [],
            jobs(20),
            {"c4v": 2},
            8,
            14,
            id="the same with BEST_FIT_PROGRESSIVE",
        ),
        pytest.param(
            a_pool().vcpus(0, 64).types(T4),
            [],
            jobs(5),
            {"c4v": 2},
            8,
            0,
            id="estimate keeps 3 one-vCPU jobs per 4-vCPU node (kube-reserved + DaemonSet allowance)",
        ),
        pytest.param(
            a_pool().vcpus(0, 8),
            [],
            [],
            {},
            0,
            0,
            id="no demand, min 0: nothing added",
        ),
        pytest.param(
            a_pool().vcpus(4, 16),
            [],
            [],
            {"c4v": 1},
            4,
            0,
            id="minvCpus is kept without demand",
        ),
        pytest.param(
            a_pool().vcpus(6, 6),
            [],
            [],
            {"c4v": 1},
            6,
            0,
            id="min not reachable in whole nodes under max: one node, never pass max; desired is clamped",
        ),
        pytest.param(
            a_pool().vcpus(0, 3).types(T4),
            [],
            jobs(1),
            {},
            0,
            1,
            id="max below one node: the job waits, max is never exceeded",
        ),
        pytest.param(
            a_pool().vcpus(0, 8),
            [a_node("ce-0")],
            jobs(3),
            {},
            4,
            0,
            id="room on an existing node is used first",
        ),
        pytest.param(
            a_pool().vcpus(0, 8),
            [a_node("ce-0", jobs=4, used=4)],
            jobs(3),
            {"c4v": 1},
            8,
            0,
            id="a full node: one more node",
        ),
        pytest.param(
            a_pool().vcpus(0, 64).disabled(),
            [],
            jobs(3),
            {},
            0,
            3,
            id="DISABLED: no scale-out, the demand waits",
        ),
        pytest.param(
            a_pool().vcpus(4, 64).disabled(),
            [],
            [],
            {"c4v": 1},
            4,
            0,
            id="DISABLED still keeps minvCpus",
        ),
        pytest.param(
            a_pool().vcpus(0, 64).types(T4),
            [],
            jobs(1, cpu=4),
            {},
            0,
            0,
            id="a job larger than any node's estimate adds nothing (unplaceable)",
        ),
    ],
)
def test_scale_out(
    pool: PoolB,
    nodes: list[PoolNode],
    demand: list[Resources],
    expect_added: dict[str, int],
    expect_desired: int,
    expect_waiting: int,
) -> None:
    plan = plan_scale(pool.spec, nodes, demand, NOW)
    assert dict(added(plan)) == expect_added
    assert plan.desired_vcpus == expect_desired
    assert plan.waiting_jobs == expect_waiting
    assert plan.milli_cpu <= pool.spec.max_vcpus * 1000


def test_unplaceable_jobs_are_counted() -> None:
    plan = plan_scale(a_pool().vcpus(0, 64).spec, [], jobs(2, cpu=4), NOW)
    assert plan.unplaceable_jobs == 2 and not plan.add


def test_new_nodes_get_deterministic_names_after_existing_ones() -> None:
    plan = plan_scale(a_pool().vcpus(0, 16).spec, [a_node("ce-0", jobs=3, used=3)], jobs(6), NOW)
    assert [a.name for a in plan.add] == ["ce-1", "ce-2"]


# --- GPU ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("types", "nodes", "demand", "expect_added"),
    [
        pytest.param(
            (T4, G1), [], jobs(1, gpus=1), {"g1v": 1}, id="a GPU job brings a GPU node and no CPU node"
        ),
        pytest.param((T4, G1), [], jobs(2), {"c4v": 1}, id="CPU jobs in a mixed pool get CPU nodes"),
        pytest.param(
            (T4, G1),
            [a_node("ce-0", G1)],
            jobs(1),
            {"c4v": 1},
            id="CPU jobs stay off an idle GPU node in a mixed pool",
        ),
        pytest.param((G1,), [], jobs(1), {"g1v": 1}, id="a GPU-only pool takes CPU jobs the queue sends"),
        pytest.param((T4,), [], jobs(1, gpus=1), {}, id="a GPU job never brings a CPU node"),
        pytest.param(
            ("m5.xlarge", "g4dn.xlarge", "g5.xlarge"),
            [],
            jobs(1, gpus=1),
            {"g4dn.xlarge": 1},
            id="BEST_FIT picks the cheapest GPU type",
        ),
    ],
)
def test_gpu(
    types: tuple[InstanceType | str, ...],
    nodes: list[PoolNode],
    demand: list[Resources],
    expect_added: dict[str, int],
) -> None:
    plan = plan_scale(a_pool().vcpus(0, 64).types(*types).spec, nodes, demand, NOW)
    assert dict(added(plan)) == expect_added


# --- allocation strategies ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pool", "demand", "expect_added"),
    [
        pytest.param(
            a_pool().vcpus(0, 64).types(T2, T4, T8),
            jobs(12),
            {"c2v": 12},
            id="BEST_FIT: the cheapest type that holds each job, even if many small nodes",
        ),
        pytest.param(
            a_pool().vcpus(0, 64).types(T2, T4, T8).progressive(),
            jobs(12),
            {"c8v": 1, "c4v": 1, "c2v": 2},
            id="BEST_FIT_PROGRESSIVE: lowest price per held vCPU packs the backlog into bigger nodes",
        ),
        pytest.param(
            a_pool().vcpus(0, 64).types(T2, T4).unavailable("c2v"),
            jobs(2),
            {},
            id="BEST_FIT waits when its type is unavailable",
        ),
        pytest.param(
            a_pool().vcpus(0, 64).types(T2, T4).unavailable("c2v").progressive(),
            jobs(2),
            {"c4v": 1},
            id="BEST_FIT_PROGRESSIVE moves on to another type when one is unavailable",
        ),
        pytest.param(
            a_pool().vcpus(0, 10).types(T2, T8).progressive(),
            jobs(12),
            {"c8v": 1, "c2v": 1},
            id="BEST_FIT_PROGRESSIVE falls back to a smaller type within the max headroom",
        ),
        pytest.param(
            a_pool().vcpus(0, 10).types(T2, T8),
            jobs(1, cpu=3),
            {"c8v": 1},
            id="BEST_FIT: a job too big for the cheapest type gets the cheapest type that holds it",
        ),
    ],
)
def test_allocation_strategy(pool: PoolB, demand: list[Resources], expect_added: dict[str, int]) -> None:
    assert dict(added(plan_scale(pool.spec, [], demand, NOW))) == expect_added


# --- scale-in ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pool", "nodes", "demand", "expect_removed"),
    [
        pytest.param(
            a_pool().delay(60), [a_node("ce-0", idle_for=61)], [], ["ce-0"], id="idle past the delay: removed"
        ),
        pytest.param(
            a_pool().delay(60), [a_node("ce-0", idle_for=30)], [], [], id="idle within the delay: kept"
        ),
        pytest.param(
            a_pool().delay(60),
            [a_node("ce-0", jobs=1, used=1, idle_for=600)],
            [],
            [],
            id="a node running a job is never removed",
        ),
        pytest.param(
            a_pool().delay(60), [a_node("ce-0")], [], [], id="a busy node (idle_since None) is kept"
        ),
        pytest.param(
            a_pool().vcpus(4, 16).delay(60),
            [a_node("ce-0", idle_for=600), a_node("ce-1", idle_for=900)],
            [],
            ["ce-1"],
            id="never below minvCpus; the longest idle goes first",
        ),
        pytest.param(
            a_pool().delay(60),
            [a_node("ce-0", idle_for=600)],
            jobs(1),
            [],
            id="an idle node the pending demand fits into is kept",
        ),
        pytest.param(
            a_pool().delay(60).disabled(),
            [a_node("ce-0", idle_for=600)],
            [],
            ["ce-0"],
            id="DISABLED pools scale in to minvCpus",
        ),
    ],
)
def test_scale_in(
    pool: PoolB, nodes: list[PoolNode], demand: list[Resources], expect_removed: list[str]
) -> None:
    plan = plan_scale(pool.spec, nodes, demand, NOW)
    assert list(plan.remove) == expect_removed
    assert plan.nodes == len(nodes) + len(plan.add) - len(plan.remove)


def test_deleting_nodes_do_not_count() -> None:
    gone = replace(a_node("ce-0"), deleting=True)
    plan = plan_scale(a_pool().spec, [gone], jobs(1), NOW)
    assert [a.name for a in plan.add] == ["ce-1"]


# --- idle tracking -----------------------------------------------------------------------------
def test_idle_tracker_follows_busy_and_idle() -> None:
    t = IdleTracker(started=100.0)
    assert t.observe({"n": 50.0}, busy=[], now=100.0) == {"n": 100.0}  # seen first: idle since start
    assert t.observe({"n": 50.0}, busy=["n"], now=200.0) == {"n": None}
    assert t.observe({"n": 50.0}, busy=[], now=300.0) == {"n": 300.0}  # last job ended
    assert t.observe({"n": 50.0}, busy=[], now=400.0) == {"n": 300.0}
    assert t.observe({"m": 500.0}, busy=[], now=500.0) == {"m": 500.0}
    assert "n" not in t.since


# --- routing -----------------------------------------------------------------------------------
def test_route_demand_spills_to_the_next_pool_at_max_and_sends_gpu_jobs_to_gpu_pools() -> None:
    cpu = a_pool("cpu").vcpus(0, 4).types(T4).spec
    gpu = a_pool("gpu").vcpus(0, 8).types(G1).spec
    off = a_pool("off").vcpus(0, 64).types(T4).disabled().spec
    q = QueueDemand(("off", "cpu", "gpu"), [*jobs(6), *jobs(1, gpus=1)])
    routed = route_demand([q], {"cpu": cpu, "gpu": gpu, "off": off})
    assert len(routed["cpu"]) == 4
    assert len(routed["gpu"]) == 3 and routed["gpu"][-1].gpus == 1
    assert routed["off"] == []


def test_route_demand_keeps_jobs_waiting_on_their_first_pool_when_all_are_full() -> None:
    cpu = a_pool("cpu").vcpus(0, 2).types(T4).spec
    routed = route_demand([QueueDemand(("cpu",), jobs(5))], {"cpu": cpu}, in_use={"cpu": Resources.of(2)})
    assert len(routed["cpu"]) == 5


# --- multi-node parallel jobs: numNodes whole nodes of one type, all or nothing -----------------
@pytest.mark.parametrize(
    ("pool", "nodes", "demand", "expect_added", "expect_waiting", "expect_unplaceable"),
    [
        pytest.param(
            a_pool().vcpus(0, 16).types(T4),
            [],
            [gang(3)],
            {"c4v": 3},
            0,
            0,
            id="3 one-vCPU nodes: 3 whole nodes, not packed onto one 4-vCPU node",
        ),
        pytest.param(
            a_pool().vcpus(0, 16).types(T2, T4, T8),
            [],
            [gang(2, cpu=3)],
            {"c4v": 2},
            0,
            0,
            id="BEST_FIT: the cheapest type that holds a node, for every node",
        ),
        pytest.param(
            a_pool().vcpus(0, 32).types(T2, T4, T8),
            [],
            [gang(3, cpu=1, main_cpu=3)],
            {"c4v": 3},
            0,
            0,
            id="one type for all nodes, sized by the largest node (the main node's 3 vCPUs)",
        ),
        pytest.param(
            a_pool().vcpus(0, 8).types(T4),
            [],
            [gang(3)],
            {},
            0,
            1,
            id="3 x 4 vCPUs > maxvCpus 8: never fits, nothing is added",
        ),
        pytest.param(
            a_pool().vcpus(0, 12).types(T2, T4),
            [],
            [gang(3)],
            {"c2v": 3},
            0,
            0,
            id="maxvCpus rules out 3 x c4v only when no smaller type holds a node",
        ),
        pytest.param(
            a_pool().vcpus(0, 12).types(T4),
            [a_node("ce-0", jobs=1, used=2)],
            [gang(3)],
            {},
            1,
            0,
            id="headroom for 2 of 3 nodes: nothing added, the gang waits (no half gang)",
        ),
        pytest.param(
            a_pool().vcpus(0, 16).types(T4),
            [a_node("ce-0", idle_for=5), a_node("ce-1", idle_for=5)],
            [gang(3)],
            {"c4v": 1},
            0,
            0,
            id="2 free nodes cover 2 members: one node is added",
        ),
        pytest.param(
            a_pool().vcpus(0, 16).types(T4),
            [a_node("ce-0", jobs=1, used=1), a_node("ce-1", idle_for=5)],
            [gang(2)],
            {"c4v": 1},
            0,
            0,
            id="a node with room but a job on it is no gang node (single-tenant)",
        ),
        pytest.param(
            a_pool().vcpus(0, 32).types(T4),
            [a_node("ce-0", idle_for=5)],
            [*jobs(1), gang(2), *jobs(1)],
            {"c4v": 2},
            0,
            0,
            id="a single job takes the free node first; the gang adds 2; the next single packs beside the first",
        ),
        pytest.param(
            a_pool().vcpus(0, 16).types(T4),
            [],
            [*jobs(1), gang(2), *jobs(1)],
            {"c4v": 3},
            0,
            0,
            id="no single job is packed onto a gang's new node",
        ),
        pytest.param(
            a_pool().vcpus(0, 12).types(T4),
            [],
            [gang(2), gang(2)],
            {"c4v": 2},
            1,
            0,
            id="the second gang does not fit the remaining headroom: it waits whole",
        ),
        pytest.param(
            a_pool().vcpus(0, 32).types(T4, T8).progressive(),
            [a_node("ce-0", T8, idle_for=5), a_node("ce-1", T8, idle_for=5)],
            [gang(3, cpu=3)],
            {"c8v": 1},
            0,
            0,
            id="BEST_FIT_PROGRESSIVE: one more c8v beside 2 free ones is cheaper than 3 new c4v",
        ),
        pytest.param(
            a_pool().vcpus(0, 32).types(T4, T8),
            [a_node("ce-0", T8, idle_for=5), a_node("ce-1", T8, idle_for=5)],
            [gang(3, cpu=3)],
            {"c4v": 3},
            0,
            0,
            id="BEST_FIT: the cheapest type, even with free nodes of another type that don't cover the gang",
        ),
        pytest.param(
            a_pool().vcpus(0, 32).types(T4, T8),
            [a_node("ce-0", T8, idle_for=5), a_node("ce-1", T4, idle_for=5)],
            [gang(2)],
            {},
            0,
            0,
            id="free nodes that cover the whole gang are taken as the scheduler takes them: nothing added",
        ),
        pytest.param(
            a_pool().vcpus(0, 16).types(T4).unavailable("c4v"),
            [],
            [gang(2)],
            {},
            1,
            0,
            id="the type is unavailable: the gang waits",
        ),
        pytest.param(
            a_pool().vcpus(0, 16).types(T4).disabled(),
            [],
            [gang(2)],
            {},
            1,
            0,
            id="DISABLED: no scale-out for a gang",
        ),
        pytest.param(
            a_pool().vcpus(0, 16).types(T4, G1),
            [],
            [gang(2, gpus=1)],
            {"g1v": 2},
            0,
            0,
            id="a GPU gang gets GPU nodes",
        ),
        pytest.param(
            a_pool().vcpus(0, 64).types(T4),
            [],
            [gang(2, cpu=6)],
            {},
            0,
            1,
            id="a node larger than every type: unplaceable",
        ),
    ],
)
def test_gang_scale_out(
    pool: PoolB,
    nodes: list[PoolNode],
    demand: list[Demand],
    expect_added: dict[str, int],
    expect_waiting: int,
    expect_unplaceable: int,
) -> None:
    plan = plan_scale(pool.spec, nodes, demand, NOW)
    assert dict(added(plan)) == expect_added
    assert plan.waiting_jobs == expect_waiting
    assert plan.unplaceable_jobs == expect_unplaceable
    assert plan.milli_cpu <= pool.spec.max_vcpus * 1000


def test_free_nodes_a_gang_takes_are_not_scaled_in() -> None:
    pool = a_pool().vcpus(0, 16).types(T4).delay(60)
    free = [a_node("ce-0", idle_for=600), a_node("ce-1", idle_for=600), a_node("ce-2", idle_for=600)]
    plan = plan_scale(pool.spec, free, [gang(2)], NOW)
    assert plan.remove == ("ce-2",) and not plan.add


def test_route_demand_sends_a_gang_whole_to_one_pool_by_its_total_vcpus() -> None:
    small = a_pool("small").vcpus(0, 4).types(T4).spec
    big = a_pool("big").vcpus(0, 32).types(T4).spec
    g = gang(3)
    out = route_demand([QueueDemand(("small", "big"), [g, *jobs(1)])], {"small": small, "big": big})
    assert out == {"small": jobs(1), "big": [g]}
