"""Liveness reflects the scheduler loop, not only the process (review problem 2): the kopf probe
(``handlers.operator.loop_liveness``, served on ``--liveness``: the chart's liveness probe) fails
when the loop stops going round or an engine task ends, also without leader election."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import kopf
import pytest
from fake_kube import FakeKube
from kopf._core.engines.indexing import OperatorIndexers
from kopf._core.engines.probing import health_reporter

from batchyard.adapters import health
from batchyard.handlers import operator as handlers

NOW = 1000.0


async def _forever() -> None:
    await asyncio.Event().wait()


async def _boom() -> None:
    raise RuntimeError("dictionary changed size during iteration")


def tasks_in(kinds: list[str]) -> list[str]:
    """Create tasks of the given kinds (running / failed / cancelled), report their problems."""

    async def main() -> list[str]:
        tasks = []
        for i, kind in enumerate(kinds):
            t = asyncio.create_task(_boom() if kind == "failed" else _forever(), name=f"t{i}")
            tasks.append(t)
        await asyncio.sleep(0)
        for t, kind in zip(tasks, kinds, strict=True):
            if kind == "cancelled":
                t.cancel()
        await asyncio.sleep(0)
        found = health.problems(heartbeat=NOW, now=NOW, stall=60, tasks=tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return found

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("heartbeat", "now", "healthy"),
    [
        pytest.param(NOW, NOW + 1, True, id="the loop went round a second ago: alive"),
        pytest.param(NOW, NOW + 60, True, id="exactly at the limit: still alive"),
        pytest.param(NOW, NOW + 61, False, id="silent for longer than the limit: stuck"),
        pytest.param(None, NOW + 10_000, True, id="a standby runs no loop: nothing to judge"),
    ],
)
def test_a_stale_heartbeat_fails_liveness(heartbeat: float | None, now: float, healthy: bool) -> None:
    found = health.problems(heartbeat=heartbeat, now=now, stall=60, tasks=[])
    assert (found == []) is healthy
    if not healthy:
        assert "has not gone round for 61 s" in found[0]


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        pytest.param(["running", "running"], [], id="every engine task runs: alive"),
        pytest.param(
            ["running", "failed"],
            ["task t1 ended: RuntimeError('dictionary changed size during iteration')"],
            id="a task that died with an error is named with it",
        ),
        pytest.param(["cancelled"], ["task t0 was cancelled"], id="a cancelled engine task counts as dead"),
    ],
)
def test_an_ended_engine_task_fails_liveness(kinds: list[str], expected: list[str]) -> None:
    assert tasks_in(kinds) == expected


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def healthz(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        return resp.status, await resp.text()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("breakage", ["stuck cycle", "dead loop task"])
def test_kopfs_liveness_endpoint_fails_when_the_standalone_loop_is_stuck_or_dead(
    breakage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real engine (start_engine, no leader election) and kopf's real health endpoint."""
    monkeypatch.setenv("BATCHYARD_LIVENESS_STALL_SECONDS", "0.5")

    async def main() -> None:
        kube = FakeKube()
        options = handlers.Options()
        memo = kopf.Memo(engine=handlers.Engine(), options=options)
        memo.tasks = await handlers.start_engine(memo, kube, options)  # type: ignore[arg-type]
        url = f"http://127.0.0.1:{free_port()}/healthz"
        settings = kopf.OperatorSettings()
        ready = asyncio.Event()
        reporter = asyncio.create_task(
            health_reporter(
                url,
                memo=memo,
                indices=OperatorIndexers().indices,
                registry=kopf.get_default_registry(),
                settings=settings,
                ready_flag=ready,
            )
        )
        try:
            await asyncio.wait_for(ready.wait(), 10)
            status, body = await healthz(url)
            assert status == 200, body
            assert '"leading": true' in body

            controller = memo.engine.controller
            if breakage == "stuck cycle":
                # A cycle that never ends (an API call without a timeout, say).
                async def hang() -> None:
                    await asyncio.Event().wait()

                controller.reconcile_once = hang
                controller.state.wake()
            else:
                loop_task = next(t for t in memo.tasks if t.get_name() == "batchyard-scheduler-loop")
                loop_task.cancel()

            # kopf caches probe results for 10 s: wait on the endpoint's answer changing.
            async def failing() -> bool:
                return (await healthz(url))[0] == 500

            await wait_until(failing, timeout=30)
        finally:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
            await handlers.stop_engine(memo)

    asyncio.run(main())
