"""Unit tables for the multi-node parallel attempt state machine (core/mnp.py).

AWS "Job lifecycle for MNP jobs": main node first; children when it is RUNNING; the job ends
when the main node exits and the others are stopped; a child's failure takes no action.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from batchyard.core.mnp import (
    ABSENT,
    FAILED,
    GONE,
    MAIN_NODE_LOST_REASON,
    PENDING,
    RUNNING,
    SUCCEEDED,
    AttemptEnded,
    AttemptRefused,
    CreateNodes,
    Gang,
    NodePod,
    Refused,
    Wait,
    next_step,
    node_rows,
    split_node_job_id,
    stop_all,
)


def a_gang(n: int = 4, main: int = 0, host_network: bool = False, **phases: str) -> Gang:
    """``a_gang(4, n0=RUNNING, n2=FAILED)``: node i's pod in the given phase, others absent."""
    pods = {}
    for key, phase in phases.items():
        i = int(key[1:])
        pods[i] = NodePod(
            i,
            phase,
            pod_name=f"j-n{i}-a1",
            node_name=f"kwok-{i}",
            pod_ip=f"10.0.0.{i + 1}" if phase == RUNNING else None,
            host_ip=f"192.168.0.{i + 1}",
            exit_code={SUCCEEDED: 0, FAILED: 1}.get(phase),
            started_at=10.0,
            stopped_at=20.0 if phase in (SUCCEEDED, FAILED) else None,
        )
    return Gang(num_nodes=n, main_node=main, attempt=1, pods=pods, host_network=host_network)


@pytest.mark.parametrize(
    ("gang", "expected"),
    [
        pytest.param(a_gang(), CreateNodes((0,), None), id="nothing yet: the main node is launched first"),
        pytest.param(a_gang(main=2), CreateNodes((2,), None), id="mainNode 2 is launched first"),
        pytest.param(
            a_gang(n0=PENDING), Wait("the main node 0 is starting"), id="main pending: children wait"
        ),
        pytest.param(
            a_gang(n0=RUNNING),
            CreateNodes((1, 2, 3), "10.0.0.1"),
            id="main RUNNING: children with its pod IP",
        ),
        pytest.param(
            a_gang(host_network=True, n0=RUNNING),
            CreateNodes((1, 2, 3), "192.168.0.1"),
            id="hostNetwork: the main node's address is its node IP",
        ),
        pytest.param(
            a_gang(n0=RUNNING, n1=RUNNING),
            CreateNodes((2, 3), "10.0.0.1"),
            id="restart mid-launch: only the missing children are created",
        ),
        pytest.param(
            a_gang(n0=RUNNING, n1=RUNNING, n2=FAILED, n3=RUNNING),
            Wait("all nodes launched; the job ends when the main node exits"),
            id="a child fails: no action on the others, and it is not relaunched",
        ),
    ],
)
def test_next_step(gang, expected):
    assert next_step(gang) == expected


def test_main_without_address_waits():
    g = a_gang(n0=RUNNING)
    g = replace(g, pods={0: replace(g.pods[0], pod_ip=None)})
    assert isinstance(next_step(g), Wait)


@pytest.mark.parametrize(
    ("gang", "succeeded", "exit_code", "stop"),
    [
        pytest.param(
            a_gang(n0=SUCCEEDED, n1=RUNNING, n2=RUNNING, n3=SUCCEEDED),
            True,
            0,
            (1, 2),
            id="main exits 0: job SUCCEEDED and the running children are stopped",
        ),
        pytest.param(
            a_gang(n0=FAILED, n1=RUNNING, n2=PENDING, n3=RUNNING),
            False,
            1,
            (1, 2, 3),
            id="main exits 1: attempt FAILED with the main's exit; all others stopped",
        ),
        pytest.param(
            a_gang(n0=SUCCEEDED, n1=FAILED, n2=FAILED, n3=FAILED),
            True,
            0,
            (),
            id="children failed, main succeeded: the outcome is the main node's",
        ),
    ],
)
def test_main_exit_ends_the_attempt(gang, succeeded, exit_code, stop):
    step = next_step(gang)
    assert isinstance(step, AttemptEnded)
    assert (step.succeeded, step.exit_code, step.stop) == (succeeded, exit_code, stop)
    assert (step.started_at, step.stopped_at, step.node_name) == (10.0, 20.0, "kwok-0")


def test_main_pod_lost_fails_the_attempt():
    step = next_step(a_gang(n0=GONE, n1=RUNNING))
    assert isinstance(step, AttemptEnded)
    assert not step.succeeded and step.reason == MAIN_NODE_LOST_REASON and step.stop == (1,)


def test_stop_all_is_every_live_node():
    assert stop_all(a_gang(n0=RUNNING, n1=PENDING, n2=FAILED)) == (0, 1)


def test_node_rows():
    rows = node_rows(a_gang(3, n0=RUNNING, n1=FAILED))
    assert [(r.nodeIndex, r.isMainNode, r.status) for r in rows] == [
        (0, True, "RUNNING"),
        (1, False, "FAILED"),
        (2, False, "PENDING"),
    ]
    assert rows[0].as_dict()["privateIpv4Address"] == "10.0.0.1"
    assert "podName" not in rows[2].as_dict()
    assert next_step(a_gang(3)) == CreateNodes((0,), None)
    assert node_rows(a_gang(2))[0].status == "RUNNABLE"
    assert ABSENT == "Absent"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("job#2", ("job", 2), id="node 2"),
        pytest.param("job", ("job", None), id="the job itself"),
        pytest.param("ns/job#x", ("ns/job#x", None), id="a suffix that is not a number stays"),
    ],
)
def test_split_node_job_id(text, expected):
    assert split_node_job_id(text) == expected


# --- a child node's pod refused by the API server (core.refusals classifies it) ---------------
PSA = "Invalid job definition: pod rejected: pods is forbidden: violates PodSecurity"
QUOTA = "WAITING:RESOURCE_QUOTA - exceeded quota: q"


def refused(g: Gang, **nodes: Refused) -> Gang:
    return replace(g, refused={int(k[1:]): r for k, r in nodes.items()})


@pytest.mark.parametrize(
    ("gang", "now", "expected"),
    [
        pytest.param(
            refused(a_gang(n0=RUNNING), n2=Refused(True, PSA)),
            100.0,
            AttemptRefused(2, f"{PSA} (node 2)", (0,)),
            id="permanent: the attempt ends with the refusal and the node named; the main node stops",
        ),
        pytest.param(
            refused(a_gang(n0=RUNNING, n1=RUNNING, n3=PENDING), n2=Refused(True, PSA)),
            100.0,
            AttemptRefused(2, f"{PSA} (node 2)", (0, 1, 3)),
            id="permanent: every live node of the gang is stopped",
        ),
        pytest.param(
            refused(a_gang(n0=RUNNING), n3=Refused(True, PSA), n1=Refused(True, "other")),
            100.0,
            AttemptRefused(1, "other (node 1)", (0,)),
            id="several refused for good: the lowest node is named",
        ),
        pytest.param(
            refused(a_gang(n0=RUNNING, n2=RUNNING), n2=Refused(True, PSA)),
            100.0,
            CreateNodes((1, 3), "10.0.0.1"),
            id="a refusal of a pod that exists after all (adopted) counts for nothing",
        ),
        pytest.param(
            refused(a_gang(n0=RUNNING), n2=Refused(False, QUOTA, retry_at=130.0)),
            100.0,
            CreateNodes((1, 3), "10.0.0.1"),
            id="transient: the others are created, the refused node waits for its backoff",
        ),
        pytest.param(
            refused(a_gang(n0=RUNNING, n1=RUNNING, n3=RUNNING), n2=Refused(False, QUOTA, retry_at=130.0)),
            100.0,
            Wait(f"node(s) 2 refused for now: {QUOTA}", 130.0),
            id="transient, only the refused node missing: wait until its backoff ends",
        ),
        pytest.param(
            refused(a_gang(n0=RUNNING, n1=RUNNING, n3=RUNNING), n2=Refused(False, QUOTA, retry_at=130.0)),
            130.0,
            CreateNodes((2,), "10.0.0.1"),
            id="transient, backoff over: created again",
        ),
        pytest.param(
            refused(a_gang(n0=SUCCEEDED, n1=RUNNING), n2=Refused(True, PSA)),
            100.0,
            AttemptEnded(True, 0, None, 10.0, 20.0, "kwok-0", (1,)),
            id="the main node exited first: its outcome stands",
        ),
    ],
)
def test_refused_child_nodes(gang, now, expected):
    assert next_step(gang, now) == expected


def test_refused_node_rows_say_why():
    g = refused(a_gang(n0=RUNNING), n2=Refused(True, PSA), n3=Refused(False, QUOTA, retry_at=130.0))
    rows = {r.nodeIndex: r for r in node_rows(g)}
    assert (rows[2].status, rows[2].reason) == ("FAILED", PSA)
    assert (rows[3].status, rows[3].reason) == ("PENDING", QUOTA)
    assert (rows[1].status, rows[1].reason) == ("PENDING", None)
