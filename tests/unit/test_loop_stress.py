"""Stress of the scheduler loop (review problem 2, Appendix C): 60,000 jobs held and bursts of
BatchJob events through the real watch handler (``handlers.BatchJobEvents``, as
``adapters.watch.list_watch`` calls it) while the loop runs cycles. It must run clean: the loop
task never ends, no cycle fails, and every event reaches the state and is stepped.

The kopf handlers of the other kinds are delivered as kopf delivers them
(kopf/_core/actions/invocation.py): a coroutine function is awaited on the event loop, a plain
function runs on the executor's threads. Before the handlers were ``async def``, those threads
changed the maps while the loop iterated them and the loop died with ``RuntimeError: dictionary
changed size during iteration``; the BatchJob watch's handler is called on the loop itself.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any

import kopf
import pytest
from fake_kube import FakeKube

from batchyard.adapters.controller import Controller, Settings
from batchyard.adapters.state import ClusterState
from batchyard.core.jobref import JobRef
from batchyard.handlers import operator as handlers

HELD = 60_000
BURSTS = 4
PER_BURST = 1_500
NS = "ns"


def a_job(name: str, status: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "resourceVersion": "1"},
        "spec": {"jobQueue": "q", "jobDefinition": "d"},
    }
    if status is not None:
        body["status"] = {"status": status, "stoppedAt": "2030-01-01T00:00:00.000Z"}
    return body


def test_every_kopf_handler_runs_on_the_event_loop() -> None:
    """The state has one writer only if kopf runs every state-writing handler on the loop."""
    registry = kopf.get_default_registry()
    writers = [h.fn for h in registry._watching.get_all_handlers()]
    assert writers, "no event handlers registered"
    assert all(inspect.iscoroutinefunction(fn) for fn in writers), [
        fn.__name__ for fn in writers if not inspect.iscoroutinefunction(fn)
    ]
    probes = [
        h.fn for h in registry._activities.get_all_handlers() if getattr(h.activity, "value", None) == "probe"
    ]
    assert probes and all(inspect.iscoroutinefunction(fn) for fn in probes)


@pytest.mark.timeout(240)
def test_the_loop_survives_bursts_of_events_with_60000_jobs_held(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="batchyard.loop")

    async def main() -> None:
        st = ClusterState()
        st.upsert_cluster_object(
            "computeenvironments",
            # DISABLED: nothing dispatches, so every burst job ends its stepping RUNNABLE.
            {
                "metadata": {"name": "ce"},
                "spec": {"type": "UNMANAGED", "state": "DISABLED", "unmanagedvCpus": 4},
            },
        )
        st.upsert_cluster_object(
            "jobqueues",
            {
                "metadata": {"name": "q", "uid": "q-uid"},
                "spec": {
                    "priority": 1,
                    "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}],
                },
            },
        )
        st.upsert_definition(
            {
                "metadata": {"name": "d", "namespace": NS, "generation": 1},
                "spec": {
                    "type": "container",
                    "containerProperties": {"image": "busybox", "vcpus": 1, "memory": 512},
                },
            }
        )
        for i in range(HELD):
            st.upsert_job(a_job(f"held{i}", "SUCCEEDED"))  # finished jobs kept for their TTL
        st.synced = True
        controller = Controller(FakeKube(), st, Settings(tick_seconds=0.001))  # type: ignore[arg-type]
        on_job = handlers.BatchJobEvents(st, FakeKube())  # type: ignore[arg-type]
        loop_task = asyncio.create_task(controller.run(), name="batchyard-scheduler-loop")

        names = []
        for burst in range(BURSTS):
            batch = [f"b{burst}-{i}" for i in range(PER_BURST)]
            names += batch
            # A watch stream delivers a burst in chunks, yielding to the loop between them.
            for i, n in enumerate(batch):
                on_job("ADDED", a_job(n))
                if i % 50 == 49:
                    await asyncio.sleep(0)
            # Deletions of held jobs in the same burst.
            for i in range(100):
                on_job("DELETED", a_job(f"held{burst * 100 + i}"))
            await asyncio.sleep(0)  # let a cycle start between bursts
            assert not loop_task.done(), loop_task

        # Every new job reaches the state and is stepped (no lost dirty mark): all RUNNABLE.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not loop_task.done():
            if all(
                (e := st.jobs.get(JobRef(NS, n))) is not None and e.status.status == "RUNNABLE" for n in names
            ):
                break
            await asyncio.sleep(0.05)
        assert not loop_task.done(), loop_task.exception() if not loop_task.cancelled() else "cancelled"
        not_stepped = [
            n for n in names if (e := st.jobs.get(JobRef(NS, n))) is None or e.status.status != "RUNNABLE"
        ]
        assert not_stepped == [], f"{len(not_stepped)} jobs never stepped, e.g. {not_stepped[:3]}"
        assert len(st.jobs) == HELD + BURSTS * PER_BURST - BURSTS * 100
        assert time.monotonic() - controller.heartbeat < 60  # the heartbeat kept moving
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)

    asyncio.run(main())
    failed = [r for r in caplog.records if "cycle failed" in r.getMessage()]
    assert failed == [], failed[0].exc_text if failed else ""
