"""BatchJobs come through the operator's own list/watch (``handlers.BatchJobEvents`` fed by
``adapters.watch.list_watch``), not kopf's per-event pipeline (issue 14): a term's engine lists
them before its first cycle, follows the stream, reports a refused job by a Warning Event from a
task of its own, forgets the jobs deleted while the watch was down (410 Gone), and stops its
watches with the term, also one lost while still listing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import kopf
from fake_kube import FakeKube

from batchyard.adapters.state import ClusterState
from batchyard.adapters.watch import list_watch
from batchyard.core.jobref import JobRef
from batchyard.handlers import operator as handlers

JOBS = "/apis/batchyard.io/v1alpha1/batchjobs"
NS_JOBS = "/apis/batchyard.io/v1alpha1/namespaces/ns/batchjobs"


def a_job(name: str, uid: str | None = None, rv: str = "1") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": uid or f"uid-{name}", "resourceVersion": rv},
        "spec": {"jobQueue": "q", "jobDefinition": "d"},
    }


def refused(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"}, "spec": {"jobQueue": 7}}


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def warning_events(kube: FakeKube) -> list[dict[str, Any]]:
    return [o for p, o in kube.objects.items() if "/events/" in p]


def test_the_handler_upserts_forgets_by_uid_and_wakes_the_loop() -> None:
    async def main() -> None:
        st = ClusterState()
        on_job = handlers.BatchJobEvents(st, None)
        on_job("ADDED", a_job("a"))
        assert st.event.is_set() and JobRef("ns", "a") in st.jobs
        st.event.clear()
        on_job("DELETED", a_job("a", uid="an-older-incarnation"))  # a stale DELETED: kept
        assert JobRef("ns", "a") in st.jobs and st.event.is_set()
        on_job("DELETED", a_job("a"))
        assert JobRef("ns", "a") not in st.jobs and JobRef("ns", "a") in st.forgotten_jobs

    asyncio.run(main())


def test_a_refused_job_is_reported_by_one_task_not_awaited_in_the_handler() -> None:
    async def main() -> None:
        st = ClusterState()
        kube = FakeKube()
        on_job = handlers.BatchJobEvents(st, kube)  # type: ignore[arg-type]
        on_job("ADDED", refused("bad1"))
        reporter = on_job.reporter
        assert reporter is not None and not reporter.done()  # spawned, the handler returned
        on_job("ADDED", refused("bad2"))
        assert on_job.reporter is reporter  # the running reporter drains the new one too
        await reporter
        assert sorted(e["involvedObject"]["name"] for e in warning_events(kube)) == ["bad1", "bad2"]
        on_job("ADDED", refused("bad3"))  # the last reporter ended: a new one
        assert on_job.reporter is not reporter
        await until(lambda: len(warning_events(kube)) == 3)
        assert st.jobs == {}

    asyncio.run(main())


def test_a_relist_after_410_forgets_the_jobs_deleted_while_the_watch_was_down() -> None:
    kube = FakeKube(objects={f"{JOBS}/a": a_job("a"), f"{JOBS}/b": a_job("b")})
    kube.watch_events = [[{"type": "ERROR", "object": {"code": 410, "message": "too old"}}]]
    original_list = kube.list

    async def listing(path: str, params: Mapping[str, str] | None = None) -> Any:
        if kube.count("list", JOBS) == 1:
            kube.objects.pop(f"{JOBS}/b")  # deleted while the watch was down
            kube.objects[f"{JOBS}/c"] = a_job("c")  # and one created
        return await original_list(path, params)

    kube.list = listing  # type: ignore[method-assign]

    async def main() -> None:
        st = ClusterState()
        synced = asyncio.Event()
        task = asyncio.create_task(list_watch(kube, JOBS, "", handlers.BatchJobEvents(st, kube), synced))  # type: ignore[arg-type]
        try:
            await until(lambda: kube.count("list", JOBS) == 2 and JobRef("ns", "c") in st.jobs)
            assert set(st.jobs) == {JobRef("ns", "a"), JobRef("ns", "c")}
            assert JobRef("ns", "b") in st.forgotten_jobs
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_a_term_lists_batchjobs_before_it_returns_then_follows_the_stream() -> None:
    kube = FakeKube(objects={f"{NS_JOBS}/a": a_job("a"), f"{NS_JOBS}/bad": refused("bad")})
    # The BatchJob watch opens first (the pods are listed once the jobs are).
    kube.watch_events = [[{"type": "ADDED", "object": a_job("b", rv="2")}]]

    async def main() -> None:
        memo = kopf.Memo(engine=handlers.Engine())
        tasks = await handlers.start_engine(memo, kube, handlers.Options(namespaces=("ns",)))  # type: ignore[arg-type]
        try:
            st = memo.engine.state
            assert st is not None and st.synced
            assert JobRef("ns", "a") in st.jobs  # listed before the first cycle
            assert kube.count("list", NS_JOBS) == 1
            assert any(t.get_name() == "batchyard-batchjob-watch/namespaces/ns" for t in tasks)
            await until(lambda: JobRef("ns", "b") in st.jobs)
            await until(lambda: [e["involvedObject"]["name"] for e in warning_events(kube)] == ["bad"])
        finally:
            await handlers.stop_engine(memo)
        assert all(t.done() for t in tasks)

    asyncio.run(main())


def test_a_term_lost_while_listing_stops_its_watches() -> None:
    """The BatchJob list never answers; the lease is lost meanwhile: the term's tasks end."""
    kube = FakeKube()

    async def main() -> None:
        started = asyncio.Event()
        original_list = kube.list

        async def listing(path: str, params: Mapping[str, str] | None = None) -> Any:
            if path == JOBS:
                started.set()
                await asyncio.Event().wait()  # hangs until cancelled
            return await original_list(path, params)

        kube.list = listing  # type: ignore[method-assign]
        memo = kopf.Memo(engine=handlers.Engine())
        term = asyncio.create_task(handlers.lead_term(memo, kube, handlers.Options()))  # type: ignore[arg-type]
        await started.wait()
        watches = list(memo.engine.tasks)
        assert [t.get_name() for t in watches] == ["batchyard-batchjob-watch (all namespaces)"]
        term.cancel()
        await asyncio.gather(term, return_exceptions=True)
        assert all(t.done() for t in watches)
        assert memo.engine.tasks == [] and memo.engine.state is None

    asyncio.run(main())


def test_kopf_streams_no_batchjobs() -> None:
    """kopf watches only the kinds it has event handlers for; BatchJobs are ours (the admission
    webhook for them is kopf's, and needs no stream)."""
    registry = kopf.get_default_registry()
    watched = {h.selector.any_name for h in registry._watching.get_all_handlers() if h.selector is not None}
    assert "batchjobs" not in watched
    assert {"jobdefinitions", *handlers.CLUSTER_PLURALS} <= watched
