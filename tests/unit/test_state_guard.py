"""ClusterState at the API boundary: an object the models refuse is reported and skipped (never
fatal), and a stale copy (the startup LIST after a newer watch event) never replaces a newer one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fake_kube import FakeKube

from batchyard.adapters import health, metrics
from batchyard.adapters.state import ClusterState
from batchyard.core.jobref import JobRef


def queue(name: str, order: list[dict[str, Any]], rv: str = "1") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": f"{name}-uid", "resourceVersion": rv},
        "spec": {"priority": 1, "computeEnvironmentOrder": order},
    }


CE_ORDER = [{"order": 1, "computeEnvironment": "ce"}]


def rejected_count(kind: str) -> float:
    value = metrics.REGISTRY.get_sample_value("batchyard_rejected_objects_total", {"kind": kind})
    return value or 0.0


def test_a_queue_the_model_refuses_is_reported_and_skipped_not_raised() -> None:
    # Stored before a CRD upgrade made computeEnvironmentOrder non-empty (the review's reproduction).
    st = ClusterState()
    before = rejected_count("JobQueue")
    st.upsert_cluster_object("jobqueues", queue("bad", []))
    st.upsert_cluster_object("jobqueues", queue("good", CE_ORDER))
    assert set(st.queues) == {"good"}
    assert rejected_count("JobQueue") == before + 1
    [rejection] = st.rejections
    assert (rejection.kind, rejection.name) == ("JobQueue", "bad")
    assert "computeEnvironmentOrder" in rejection.message


def test_a_refused_object_is_reported_once_until_it_is_fixed() -> None:
    st = ClusterState()
    st.upsert_cluster_object("jobqueues", queue("q", [], rv="1"))
    st.upsert_cluster_object("jobqueues", queue("q", [], rv="2"))  # a resync: same problem
    assert len(st.rejections) == 1
    st.upsert_cluster_object("jobqueues", queue("q", CE_ORDER, rv="3"))
    assert "q" in st.queues
    st.upsert_cluster_object("jobqueues", queue("q", [], rv="4"))  # broken again: reported again
    assert len(st.rejections) == 2


@pytest.mark.parametrize(
    ("method", "args"),
    [
        pytest.param(
            "upsert_job",
            ({"metadata": {"name": "j", "namespace": "ns", "uid": "u"}, "spec": {"jobQueue": 7}},),
            id="a BatchJob",
        ),
        pytest.param(
            "upsert_definition",
            ({"metadata": {"name": "d", "namespace": "ns"}, "spec": {"type": "nonsense"}},),
            id="a JobDefinition",
        ),
        pytest.param(
            "upsert_cluster_object",
            ("computeenvironments", {"metadata": {"name": "ce"}, "spec": {"type": "SPACESHIP"}}),
            id="a ComputeEnvironment",
        ),
    ],
)
def test_every_kind_is_guarded(method: str, args: tuple[Any, ...]) -> None:
    st = ClusterState()
    getattr(st, method)(*args)  # does not raise
    assert len(st.rejections) == 1


def test_the_warning_event_is_posted_on_the_refused_object() -> None:
    st = ClusterState()
    st.upsert_job({"metadata": {"name": "j", "namespace": "ns", "uid": "u"}, "spec": {"jobQueue": 7}})
    kube = FakeKube()
    asyncio.run(health.report_rejections(kube, st))  # type: ignore[arg-type]
    [event] = kube.objects.values()
    assert event["type"] == "Warning" and event["reason"] == "Rejected"
    assert event["involvedObject"] == {
        "apiVersion": "batchyard.io/v1alpha1",
        "kind": "BatchJob",
        "name": "j",
        "namespace": "ns",
        "uid": "u",
    }
    assert "jobQueue" in event["message"]
    assert st.rejections == []


def job(rv: str, cancel: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": "j", "namespace": "ns", "uid": "u", "resourceVersion": rv},
        "spec": {"jobQueue": "q", "jobDefinition": "d", **({"cancel": {"reason": "stop"}} if cancel else {})},
    }


def test_a_listed_copy_older_than_the_watched_one_does_not_undo_a_cancel() -> None:
    # Startup: kopf's watch delivers the cancel (rv 12) before the engine's LIST page (rv 10) lands.
    st = ClusterState()
    st.upsert_job(job("12", cancel=True))
    st.upsert_job(job("10"))
    assert st.jobs[JobRef("ns", "j")].job.spec.cancel is not None
    st.upsert_job(job("13"))  # a newer copy still wins
    assert st.jobs[JobRef("ns", "j")].job.spec.cancel is None


def test_a_stale_cluster_object_does_not_replace_a_newer_one() -> None:
    st = ClusterState()
    st.upsert_cluster_object(
        "jobqueues", queue("q", [*CE_ORDER, {"order": 2, "computeEnvironment": "b"}], "9")
    )
    st.upsert_cluster_object("jobqueues", queue("q", CE_ORDER, "5"))
    assert len(st.queues["q"].spec.computeEnvironmentOrder) == 2


def test_the_engine_starts_although_a_stored_queue_is_refused() -> None:
    """start_engine's LIST used to raise the ValidationError and abort the engine (review #9)."""
    from batchyard.handlers.operator import Engine, Options, start_engine, stop_engine

    group = "/apis/batchyard.io/v1alpha1"
    kube = FakeKube(
        objects={
            f"{group}/jobqueues/bad": queue("bad", []),
            f"{group}/jobqueues/good": queue("good", CE_ORDER),
        }
    )

    async def main() -> None:
        import kopf

        memo = kopf.Memo(engine=Engine(), options=Options())
        tasks = await asyncio.wait_for(start_engine(memo, kube, Options()), timeout=30)  # type: ignore[arg-type]
        try:
            assert set(memo.engine.state.queues) == {"good"}
            assert not any(t.done() for t in tasks)
        finally:
            await stop_engine(memo)

    asyncio.run(main())
    assert any(o.get("reason") == "Rejected" for o in kube.objects.values())


def waiting_job(name: str, queue_name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "1"},
        "spec": {"jobQueue": queue_name, "jobDefinition": "d"},
    }


def test_jobs_that_arrived_before_their_queue_are_stepped_when_it_arrives() -> None:
    st = ClusterState()
    st.upsert_job(waiting_job("early", "q"))
    st.upsert_job(waiting_job("other", "elsewhere"))
    st.take_changes()
    st.upsert_cluster_object("jobqueues", queue("q", CE_ORDER))
    assert st.take_changes()[2] == {JobRef("ns", "early")}
    # A known queue's later events (its status echoes) wake nobody: no scan of every job.
    st.upsert_cluster_object("jobqueues", queue("q", CE_ORDER, rv="2"))
    assert st.take_changes()[2] == set()
    # Deleted and created again: new again.
    st.forget_cluster_object("jobqueues", "q")
    st.take_changes()
    st.upsert_cluster_object("jobqueues", queue("q", CE_ORDER, rv="3"))
    assert JobRef("ns", "early") in st.take_changes()[2]
