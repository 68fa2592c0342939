"""adapters.watch against the typed fake API: one object the handler cannot read is skipped
(the watch goes on), and 410 Gone relists at once."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from fake_kube import FakeKube

from batchyard.adapters.watch import list_watch

PODS = "/api/v1/pods"


def pod(name: str, attempt: str = "1") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "labels": {"attempt": attempt}}}


def run_watch(kube: FakeKube, until: int) -> list[tuple[str, str]]:
    """Run list_watch with a handler that cannot read a non-numeric attempt label."""
    seen: list[tuple[str, str]] = []
    enough = asyncio.Event()

    def handle(kind: str, obj: Mapping[str, Any]) -> None:
        int(obj["metadata"]["labels"]["attempt"])  # raises for the malformed one
        seen.append((kind, obj["metadata"]["name"]))
        if len(seen) >= until:
            enough.set()

    async def main() -> None:
        task = asyncio.create_task(list_watch(kube, PODS, "", handle))  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(enough.wait(), timeout=10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    return seen


def test_an_object_the_handler_cannot_read_is_skipped_and_the_watch_goes_on() -> None:
    kube = FakeKube(objects={f"{PODS}/a": pod("a"), f"{PODS}/bad": pod("bad", "x"), f"{PODS}/c": pod("c")})
    kube.watch_events = [[{"type": "ADDED", "object": pod("d")}]]
    seen = run_watch(kube, until=3)
    assert seen == [("ADDED", "a"), ("ADDED", "c"), ("ADDED", "d")]
    assert kube.count("list", PODS) == 1  # no relist loop on the bad object


def test_410_gone_relists_and_reports_what_vanished_meanwhile() -> None:
    kube = FakeKube(objects={f"{PODS}/a": pod("a"), f"{PODS}/b": pod("b")})
    kube.watch_events = [[{"type": "ERROR", "object": {"code": 410, "message": "too old"}}]]

    original_list = kube.list
    lists = 0

    async def listing(path: str, params: Mapping[str, str] | None = None) -> Any:
        nonlocal lists
        lists += 1
        if lists == 2:
            kube.objects.pop(f"{PODS}/b")  # deleted while the watch was down
        return await original_list(path, params)

    kube.list = listing  # type: ignore[method-assign]
    seen = run_watch(kube, until=4)
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "b"), ("ADDED", "a")]
