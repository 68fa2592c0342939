"""Unit tables for gang placement of multi-node parallel jobs in the scheduling cycle.

AWS "Multi-node parallel jobs" ("also known as gang scheduling"): all numNodes nodes start
together or not at all; "Multi-node parallel job nodes are single-tenant"; "Multi-node parallel
jobs aren't supported on UNMANAGED compute environments".
"""

from __future__ import annotations

import pytest
from sched_builders import a_ce, a_job, a_queue, blocks, dispatched, scheduler_with, world

from batchyard.core.scheduler import (
    CAPACITY_INSUFFICIENT,
    CE_MAX_RESOURCE,
    JOB_RESOURCE_REQUIREMENT,
    WAITING_CAPACITY,
    Dispatch,
)

FOUR_NODES = ((4, "8Gi", 0),) * 4
THREE_NODES = ((4, "8Gi", 0),) * 3


def _dispatch(result, key):
    return next(d for d in result.decisions if isinstance(d, Dispatch) and d.job_key == key)


@pytest.mark.parametrize(
    ("ce", "gang", "expected"),
    [
        pytest.param(
            a_ce().nodes(*FOUR_NODES),
            a_job("g").gang(4, cpu=2),
            "dispatch",
            id="4 nodes free: the gang starts",
        ),
        pytest.param(
            a_ce().nodes(*THREE_NODES),
            a_job("g").gang(4, cpu=1),
            CAPACITY_INSUFFICIENT,
            id="3 nodes for 4: nothing starts and a managed CE says the instances are missing",
        ),
        pytest.param(
            a_ce().nodes(*THREE_NODES).scaling(),
            a_job("g").gang(4, cpu=1),
            WAITING_CAPACITY,
            id="3 nodes for 4 while the pool scales: the gang waits",
        ),
        pytest.param(
            a_ce().nodes((8, "8Gi", 0)),
            a_job("g").gang(4, cpu=1),
            CAPACITY_INSUFFICIENT,
            id="one big node has room for all 4 pods but a gang needs 4 nodes",
        ),
        pytest.param(
            a_ce().nodes(*FOUR_NODES).max_vcpus(6),
            a_job("g").gang(4, cpu=2),
            CE_MAX_RESOURCE,
            id="the gang's total vCPUs exceed maxvCpus: it can never fit",
        ),
        pytest.param(
            a_ce().nodes(*FOUR_NODES),
            a_job("g").gang(4, cpu=6),
            JOB_RESOURCE_REQUIREMENT,
            id="one node's demand is larger than any node: it can never fit",
        ),
        pytest.param(
            a_ce().nodes(*FOUR_NODES).unmanaged(),
            a_job("g").gang(2, cpu=1),
            JOB_RESOURCE_REQUIREMENT,
            id="UNMANAGED compute environment: MNP jobs are not supported there",
        ),
        pytest.param(a_ce(), a_job("g").gang(4, cpu=2), "dispatch", id="capacity on demand: the gang starts"),
        pytest.param(
            a_ce().nodes(*THREE_NODES).scaling().max_vcpus(12).node_types((4, 3.4)),
            a_job("g").gang(4, cpu=1),
            CE_MAX_RESOURCE,
            id="4 vCPUs of jobs fit maxvCpus 12, but 4 whole 4-vCPU instances don't: it can never fit",
        ),
        pytest.param(
            a_ce().nodes(*THREE_NODES).scaling().max_vcpus(12).node_types((4, 3.4), (2, 1.4)),
            a_job("g").gang(4, cpu=1),
            WAITING_CAPACITY,
            id="4 whole 2-vCPU instances fit maxvCpus 12: the gang waits for the pool",
        ),
        pytest.param(
            a_ce().nodes(*THREE_NODES).scaling().max_vcpus(12).node_types((4, 3.4), (2, 1.4)),
            a_job("g").gang(4, cpu=2),
            CE_MAX_RESOURCE,
            id="a 2-vCPU node needs the 4-vCPU type: 4 x 4 > 12",
        ),
    ],
)
def test_gang_admission(ce, gang, expected):
    w = world([ce], [a_queue()])
    s = scheduler_with(w, gang)
    r = s.cycle(w, 1.0)
    if expected == "dispatch":
        d = _dispatch(r, "g")
        assert len(d.nodes) == len(gang.view.node_demands)
        known = [n for n in d.nodes if n is not None]
        assert len(known) == len(set(known)), "each node of the gang on its own node"
    else:
        assert dispatched(r) == []
        assert [b.reason_code for b in blocks(r)] == [expected]


def test_unmanaged_refusal_names_the_rule():
    w = world([a_ce("static").nodes(*FOUR_NODES).unmanaged()], [a_queue().ces("static")])
    r = scheduler_with(w, a_job("g").gang(2)).cycle(w, 1.0)
    assert "aren't supported on UNMANAGED compute environments (static)" in blocks(r)[0].status_reason


def test_gang_over_max_vcpus_in_whole_instances_says_why():
    w = world(
        [a_ce("pool").nodes(*THREE_NODES).scaling().max_vcpus(12).node_types((4, 3.4))],
        [a_queue().ces("pool")],
    )
    r = scheduler_with(w, a_job("g").gang(4, cpu=1)).cycle(w, 1.0)
    [b] = blocks(r)
    assert b.reason_code == CE_MAX_RESOURCE and b.queue_blocked
    assert "needs numNodes instances of one type" in b.status_reason
    assert "pool: 4 x 4 vCPUs > maxvCpus 12" in b.status_reason


def test_spot_refusal_names_the_rule():
    # AWS: "Multi-node parallel jobs aren't supported on compute environments that use Spot Instances"
    w = world([a_ce("spotty").nodes(*FOUR_NODES).spot()], [a_queue().ces("spotty")])
    r = scheduler_with(w, a_job("g").gang(2)).cycle(w, 1.0)
    assert "compute environments that use Spot Instances (spotty)" in blocks(r)[0].status_reason


def test_gang_skips_spot_for_the_next_on_demand_ce_and_single_jobs_still_use_spot():
    w = world(
        [a_ce("spotty").nodes(*FOUR_NODES).spot(), a_ce("pool").nodes(*FOUR_NODES)],
        [a_queue().ces("spotty", "pool")],
    )
    r = scheduler_with(w, a_job("g").gang(2), a_job("single").submitted(1.0)).cycle(w, 1.0)
    assert _dispatch(r, "g").compute_environment == "pool"
    assert _dispatch(r, "single").compute_environment == "spotty"


def test_gang_skips_unmanaged_ce_for_the_next_managed_one():
    w = world(
        [a_ce("static").nodes(*FOUR_NODES).unmanaged(), a_ce("pool").nodes(*FOUR_NODES)],
        [a_queue().ces("static", "pool")],
    )
    r = scheduler_with(w, a_job("g").gang(2)).cycle(w, 1.0)
    assert _dispatch(r, "g").compute_environment == "pool"


def test_gang_nodes_are_single_tenant_for_later_jobs():
    # AWS: MNP nodes are single-tenant -- a single job never lands beside a gang member
    w = world([a_ce().nodes(*FOUR_NODES)], [a_queue()])
    s = scheduler_with(w, a_job("g").gang(4, cpu=1), a_job("single").submitted(1.0))
    r = s.cycle(w, 1.0)
    assert dispatched(r) == ["g"]
    assert blocks(r)[0].job_key == "single"


def test_gang_needs_entirely_free_nodes():
    # a node that runs a small single job is not a candidate for a gang member
    w = world([a_ce().nodes(*FOUR_NODES)], [a_queue()])
    s = scheduler_with(w, a_job("single").requesting(cpu=1), a_job("g").gang(4).submitted(1.0))
    r = s.cycle(w, 1.0)
    assert dispatched(r) == ["single"]
    assert blocks(r)[0].job_key == "g"


def test_gang_released_when_attempt_ends_and_when_undone():
    w = world([a_ce().nodes(*FOUR_NODES)], [a_queue()])
    s = scheduler_with(w, a_job("g").gang(4), a_job("h").gang(4).submitted(1.0))
    r = s.cycle(w, 1.0)
    assert dispatched(r) == ["g"]
    # the gang cannot be completed (its pods failed to be created): undo releases every node
    s.undo(_dispatch(r, "g"), 2.0)
    assert dispatched(s.cycle(w, 3.0)) == ["g"]
    s.attempt_ended("g", 4.0)
    assert dispatched(s.cycle(w, 5.0)) == ["h"]


def test_fifo_gang_head_blocks_the_queue_no_backfill():
    # AWS FIFO: a blocked head blocks its queue; a single job behind a waiting gang waits too
    w = world([a_ce().nodes(*THREE_NODES)], [a_queue()])
    s = scheduler_with(w, a_job("g").gang(4), a_job("single").submitted(1.0))
    r = s.cycle(w, 1.0)
    assert dispatched(r) == []
    assert [b.job_key for b in blocks(r)] == ["g"]


def test_gang_in_priority_order_with_single_jobs():
    # the gang is one queue entry: it starts in FIFO order after the single job before it
    w = world([a_ce().nodes(*FOUR_NODES)], [a_queue()])
    s = scheduler_with(w, a_job("first").requesting(cpu=1), a_job("g").gang(3).submitted(1.0))
    r = s.cycle(w, 1.0)
    assert dispatched(r) == ["first", "g"]
    nodes = _dispatch(r, "g").nodes
    assert "ce-n0" not in nodes  # the first job's node is not single-tenant-free


def test_gang_consumables_and_maxvcpus_as_a_whole():
    from sched_builders import a_consumable

    w = world([a_ce().nodes(*FOUR_NODES)], [a_queue()], [a_consumable("lic", 3)])
    # 4 nodes x 1 licence each: the gang needs 4 at once and there are 3
    s = scheduler_with(w, a_job("g").gang(4).needs(lic=4))
    r = s.cycle(w, 1.0)
    assert dispatched(r) == []
    assert blocks(r)[0].reason_code == "WAITING:CONSUMABLE_RESOURCE"


def test_restart_restores_the_whole_gang():
    from batchyard.core.scheduler import Scheduler

    w = world([a_ce().nodes(*FOUR_NODES)], [a_queue()])
    s = Scheduler()
    s.set_world(w)
    s.cycle(w, 0.0)  # builds the CE's working view
    g = a_job("g").gang(3).view
    s.add_running(g, "ce", None, 0.0, gang_nodes=("ce-n0", "ce-n1", None))
    s.add_runnable(a_job("single").submitted(1.0).view, 1.0)
    r = s.cycle(w, 1.0)
    assert dispatched(r) == ["single"]
    d = _dispatch(r, "single")
    assert d.node in ("ce-n2", "ce-n3")


def test_bind_moves_a_member_and_holds_its_new_node_whole():
    # kube-scheduler may place a member elsewhere than the first fit: the charge follows it
    w = world([a_ce().nodes(*((4, "8Gi", 0),) * 5)], [a_queue()])
    s = scheduler_with(w, a_job("g").gang(4))
    d = _dispatch(s.cycle(w, 1.0), "g")
    assert "ce-n4" not in d.nodes
    s.bind("g", "ce-n4", 0)  # member 0 landed on the spare node; its first-fit node is free again
    s.add_runnable(a_job("single").submitted(2.0).view, 2.0)
    r = s.cycle(w, 2.0)
    assert _dispatch(r, "single").node == d.nodes[0]


def test_sizing_demand_of_a_gang_is_one_gang_of_one_demand_per_node():
    from batchyard.core.capacity import Resources
    from batchyard.core.nodepool import Gang

    w = world([a_ce().nodes(*THREE_NODES)], [a_queue()])
    s = scheduler_with(w, a_job("g").gang(4, cpu=3), a_job("single").requesting(cpu=2))
    assert s.sizing_demand("g") == Gang((Resources.of(3),) * 4)
    assert s.sizing_demand("single") == Resources.of(2)
    assert s.sizing_demand("nobody") is None
