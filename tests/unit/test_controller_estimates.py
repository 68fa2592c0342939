"""The loop writes status.estimatedStartAt with the queue positions (issue 15): a job waiting
behind one that holds the whole compute environment gets the estimate the timeout allows."""

from __future__ import annotations

import asyncio

from fake_kube import FakeKube, one_job_state

from batchyard.adapters.controller import Controller, Settings
from batchyard.core.estimate import TIMEOUT_BASIS
from batchyard.core.jobref import JobRef
from batchyard.core.lifecycle import epoch

FOUR_VCPUS_TIMED = {
    "type": "container",
    "timeout": {"attemptDurationSeconds": 100},
    "containerProperties": {
        "image": "busybox",
        "resourceRequirements": [{"type": "VCPU", "value": "4"}, {"type": "MEMORY", "value": "512"}],
    },
}


def test_the_job_behind_a_full_compute_environment_gets_an_estimate_with_its_position() -> None:
    st = one_job_state(definition=FOUR_VCPUS_TIMED)
    st.upsert_job(
        {
            "metadata": {"name": "k", "namespace": "ns", "uid": "u2", "generation": 1},
            "spec": {"jobQueue": "q", "jobDefinition": "d"},
        }
    )
    controller = Controller(FakeKube(), st, Settings())  # type: ignore[arg-type]

    async def cycles(n: int) -> None:
        for _ in range(n):
            await controller.reconcile_once()

    asyncio.run(cycles(2))
    first, second = st.jobs[JobRef("ns", "j")].status, st.jobs[JobRef("ns", "k")].status
    assert first.status == "STARTING" and first.estimatedStartAt is None  # dispatched: none
    assert (second.status, second.queuePosition) == ("RUNNABLE", 0)
    assert second.estimatedStartBasis == TIMEOUT_BASIS
    at = epoch(second.estimatedStartAt)
    created = epoch(second.createdAt)
    assert at is not None and created is not None
    # j counts as starting now and runs at most its 100 s timeout: k may start ~100 s from now.
    assert 95 <= at - created <= 110
    # Written in the job's status patch, with the position.
    assert st.jobs[JobRef("ns", "k")].written.get("estimatedStartAt") == second.estimatedStartAt
