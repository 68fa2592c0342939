"""Leader election over a Lease: who may take it, when, and that a leader steps down in time.

A fake API server keeps one Lease with a resourceVersion and answers 409 to a stale update, as
the real one does; a fake clock stands for each replica's own monotonic clock.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from batchyard.adapters.kube import Conflict, NotFound, ServerError
from batchyard.adapters.leader import LeaderElector

NS, NAME = "ops", "batchyard"
PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"


@dataclass
class FakeApi:
    lease: dict[str, Any] | None = None
    rv: int = 0
    fail: bool = False  # every call raises (API server unreachable)
    calls: list[str] = field(default_factory=list)

    def _check(self, verb: str) -> None:
        self.calls.append(verb)
        if self.fail:
            raise ServerError(503, {"message": "unavailable"}, verb, PATH)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(self.lease)

    async def get(self, path: str) -> Any:
        self._check("get")
        if self.lease is None:
            raise NotFound(404, {"message": "not found"}, "GET", path)
        return copy.deepcopy(self.lease)

    async def create(self, path: str, body: dict[str, Any]) -> Any:
        self._check("create")
        if self.lease is not None:
            raise Conflict(409, {"message": "exists"}, "POST", path)
        return self._store(body)

    async def request(self, verb: str, method: str, path: str, body: Any = None, **_: Any) -> Any:
        self._check(verb)
        assert (verb, method, path) == ("update", "PUT", f"{PATH}/{NAME}")
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise Conflict(409, {"message": "conflict"}, method, path)
        return self._store(body)

    def holder(self) -> str:
        return str(((self.lease or {}).get("spec") or {}).get("holderIdentity", ""))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(api: FakeApi, identity: str, clock: Clock | None = None, **kw: Any) -> LeaderElector:
    return LeaderElector(api, NS, NAME, identity=identity, clock=clock or Clock(), **kw)  # type: ignore[arg-type]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_the_first_candidate_creates_the_lease_and_leads() -> None:
    api = FakeApi()
    assert run(elector(api, "a").try_acquire_or_renew()) is True
    spec = api.lease["spec"] if api.lease else {}
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == spec["renewTime"]


def test_the_holder_renews_without_a_new_acquire_time() -> None:
    api = FakeApi()
    a = elector(api, "a")
    run(a.try_acquire_or_renew())
    acquired = api.lease["spec"]["acquireTime"] if api.lease else ""
    assert run(a.try_acquire_or_renew()) is True
    assert api.lease and api.lease["spec"]["acquireTime"] == acquired
    assert api.lease["spec"]["leaseTransitions"] == 0
    assert api.rv == 2


@pytest.mark.parametrize(
    ("waited", "renewed_meanwhile", "takes_it"),
    [
        pytest.param(5, False, False, id="held and recently seen: left alone"),
        pytest.param(14.9, False, False, id="just under the lease duration: still left alone"),
        pytest.param(15, False, True, id="unchanged for the lease duration: taken over"),
        pytest.param(20, True, False, id="the holder renewed in between: the wait starts again"),
    ],
)
def test_a_candidate_takes_a_lease_only_after_seeing_it_unchanged_for_its_duration(
    waited: float, renewed_meanwhile: bool, takes_it: bool
) -> None:
    api = FakeApi()
    a = elector(api, "a")
    run(a.try_acquire_or_renew())
    clock = Clock()
    b = elector(api, "b", clock)
    assert run(b.try_acquire_or_renew()) is False  # first sight starts b's own timer
    if renewed_meanwhile:
        clock.now += waited - 1
        run(a.try_acquire_or_renew())
        clock.now += 1
    else:
        clock.now += waited
    assert run(b.try_acquire_or_renew()) is takes_it
    assert api.holder() == ("b" if takes_it else "a")
    if takes_it:
        assert api.lease and api.lease["spec"]["leaseTransitions"] == 1


def test_a_released_lease_is_taken_at_once() -> None:
    api = FakeApi()
    a, b = elector(api, "a"), elector(api, "b")
    run(a.try_acquire_or_renew())
    run(a.release())
    assert api.holder() == ""
    assert run(b.try_acquire_or_renew()) is True
    assert api.holder() == "b"


def test_release_leaves_a_lease_held_by_someone_else_alone() -> None:
    api = FakeApi()
    run(elector(api, "a").try_acquire_or_renew())
    run(elector(api, "b").release())
    assert api.holder() == "a"


def test_two_candidates_taking_an_expired_lease_at_once_get_one_winner() -> None:
    api = FakeApi()
    run(elector(api, "old").try_acquire_or_renew())
    clock = Clock()
    b, c = elector(api, "b", clock), elector(api, "c", clock)
    run(b.try_acquire_or_renew())
    run(c.try_acquire_or_renew())
    clock.now += 16
    both_read = copy.deepcopy(api.lease)

    async def race() -> list[bool]:
        won_b = await b.try_acquire_or_renew()

        async def read_before_b_wrote(path: str) -> Any:
            return copy.deepcopy(both_read)

        api.get = read_before_b_wrote  # type: ignore[method-assign]
        # c's update carries the version both read; b's write moved it on: 409, c does not lead.
        return [won_b, await c.try_acquire_or_renew()]

    assert run(race()) == [True, False]
    assert api.holder() == "b"


def test_the_leader_runs_its_term_and_steps_down_when_the_lease_is_taken() -> None:
    api = FakeApi()

    async def scenario() -> list[str]:
        log: list[str] = []
        a = elector(api, "a", renew_seconds=0.02, retry_seconds=0.01)
        started, cancelled = asyncio.Event(), asyncio.Event()

        async def lead() -> None:
            log.append("started")
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                log.append("cancelled")
                cancelled.set()
                raise

        runner = asyncio.create_task(a.run(lead))
        await asyncio.wait_for(started.wait(), timeout=10)
        assert a.is_leader
        # Another replica takes it (as after a pause longer than the lease on our side).
        assert api.lease is not None
        api._store({**api.lease, "spec": {**api.lease["spec"], "holderIdentity": "b"}})
        await asyncio.wait_for(cancelled.wait(), timeout=10)
        assert not a.is_leader
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        return log

    assert run(scenario()) == ["started", "cancelled"]
    assert api.holder() == "b"  # stepping down never writes over the new holder


def test_the_leader_steps_down_when_it_cannot_renew_before_the_deadline() -> None:
    api = FakeApi()

    a = elector(api, "a", renew_seconds=0.02, renew_deadline_seconds=0.1, retry_seconds=0.01)

    async def scenario() -> float:
        a.clock = asyncio.get_running_loop().time
        leading, ended = asyncio.Event(), asyncio.Event()

        async def lead() -> None:
            leading.set()
            try:
                await asyncio.Event().wait()
            finally:
                ended.set()

        runner = asyncio.create_task(a.run(lead))
        await asyncio.wait_for(leading.wait(), timeout=10)
        api.fail = True
        cut = asyncio.get_running_loop().time()
        await asyncio.wait_for(ended.wait(), timeout=a.lease_seconds)
        stepped_down_after = asyncio.get_running_loop().time() - cut
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        return stepped_down_after

    # The property that matters: it steps down before another replica could take the Lease
    # (lease_seconds after the last renewal), and not before its renew deadline could pass
    # (the last renewal was at most renew_seconds before the API went away). No tighter wall-
    # clock bound: a loaded CI machine may be slow, which is what the deadline is for.
    stepped_down_after = run(scenario())
    assert a.renew_deadline_seconds - a.renew_seconds <= stepped_down_after < a.lease_seconds


def test_cancelling_the_elector_releases_the_lease() -> None:
    api = FakeApi()

    async def scenario() -> None:
        a = elector(api, "a", renew_seconds=0.02)
        started = asyncio.Event()

        async def lead() -> None:
            started.set()
            await asyncio.Event().wait()

        runner = asyncio.create_task(a.run(lead))
        await asyncio.wait_for(started.wait(), 2)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    run(scenario())
    assert api.holder() == ""
