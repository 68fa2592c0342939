"""A cycle steps at most ``Settings.max_steps_per_cycle`` jobs, oldest first (issue 14: 100,000
submissions at once made one cycle of 72,000 jobs that wrote statuses for four minutes without
reading an event), except the first cycle of a term, which must hand every held job to the
scheduler before it dispatches anything."""

from __future__ import annotations

import asyncio
from typing import Any

from fake_kube import FakeKube, add_world

from batchyard.adapters.controller import Controller, Settings
from batchyard.adapters.state import ClusterState
from batchyard.core.jobref import JobRef

NS = "ns"


def world(st: ClusterState) -> None:
    # DISABLED: nothing dispatches, every job stepped ends RUNNABLE.
    add_world(st, NS, ce_state="DISABLED")


def job(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "resourceVersion": "1"},
        "spec": {"jobQueue": "q", "jobDefinition": "d"},
    }


def stepped(st: ClusterState, names: list[str]) -> list[str]:
    return [n for n in names if st.jobs[JobRef(NS, n)].status.status is not None]


def test_a_cycle_steps_the_oldest_jobs_up_to_the_limit_and_goes_round_again() -> None:
    async def main() -> None:
        st = ClusterState()
        world(st)
        listed = [f"listed-{i:03d}" for i in range(120)]
        for n in listed:
            st.upsert_job(job(n))
        st.synced = True
        controller = Controller(FakeKube(), st, Settings(max_steps_per_cycle=50))  # type: ignore[arg-type]
        # The term's first cycle steps every job listed, whatever the limit.
        await controller.reconcile_once()
        assert stepped(st, listed) == listed
        assert not st.dirty_jobs

        burst = [f"new-{i:03d}" for i in range(120)]
        for n in burst:
            st.upsert_job(job(n))
        st.upsert_job(
            job("listed-000") | {"metadata": {**job("listed-000")["metadata"], "resourceVersion": "2"}}
        )
        st.event.clear()
        await controller.reconcile_once()
        # Oldest first: the listed job's event, then the first 49 of the burst.
        assert stepped(st, burst) == burst[:49]
        assert len(st.dirty_jobs) == 71
        assert st.event.is_set()  # the loop goes round again at once
        await controller.reconcile_once()
        await controller.reconcile_once()
        assert stepped(st, burst) == burst
        assert not st.dirty_jobs

    asyncio.run(main())


def test_no_limit_with_zero() -> None:
    async def main() -> None:
        st = ClusterState()
        world(st)
        st.synced = True
        controller = Controller(FakeKube(), st, Settings(max_steps_per_cycle=0))  # type: ignore[arg-type]
        await controller.reconcile_once()
        burst = [f"new-{i:03d}" for i in range(300)]
        for n in burst:
            st.upsert_job(job(n))
        await controller.reconcile_once()
        assert stepped(st, burst) == burst

    asyncio.run(main())
