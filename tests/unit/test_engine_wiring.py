"""The engine start_engine wires is configured by the settings it reads (the dispatch budget
used to be lost: start_engine built its Scheduler with the core's default of 5,000 dispatches
per cycle, not the operator's 256, so a burst's cycle created every pod before it wrote one
status or read one event; issue 14's flat stretches)."""

from __future__ import annotations

import asyncio

import kopf
import pytest
from fake_kube import FakeKube

from batchyard.adapters.settings import Settings
from batchyard.handlers import operator as handlers


def wired_budget() -> int:
    async def main() -> int:
        memo = kopf.Memo(engine=handlers.Engine())
        await handlers.start_engine(memo, FakeKube(), handlers.Options(namespaces=("ns",)))  # type: ignore[arg-type]
        try:
            controller = memo.engine.controller
            assert controller is not None and controller.scheduler is controller.book.scheduler
            return int(controller.scheduler.max_dispatches_per_cycle)
        finally:
            await handlers.stop_engine(memo)

    return asyncio.run(main())


def test_the_engines_scheduler_has_the_operators_dispatch_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATCHYARD_MAX_DISPATCHES_PER_CYCLE", raising=False)
    assert wired_budget() == Settings.max_dispatches_per_cycle == 64


def test_the_dispatch_budget_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHYARD_MAX_DISPATCHES_PER_CYCLE", "256")
    assert handlers.settings_from_env().max_dispatches_per_cycle == 256
    assert wired_budget() == 256


def test_the_api_concurrency_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATCHYARD_API_CONCURRENCY", raising=False)
    assert handlers.settings_from_env().create_concurrency == Settings.create_concurrency
    monkeypatch.setenv("BATCHYARD_API_CONCURRENCY", "32")
    assert handlers.settings_from_env().create_concurrency == 32
