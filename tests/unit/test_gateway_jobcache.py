"""The gateway's BatchJob cache: which copy of a job it keeps (pure rules, no watch running)."""

from __future__ import annotations

from typing import Any

from batchyard.gateway.jobcache import JobCache


def job(rv: str, status: str = "", uid: str = "u1", ns: str = "a") -> dict[str, Any]:
    return {
        "metadata": {"uid": uid, "namespace": ns, "name": "j", "resourceVersion": rv, "managedFields": [{}]},
        "spec": {"jobName": "j"},
        "status": {"status": status} if status else {},
    }


def cache() -> JobCache:
    return JobCache(kube=None)  # type: ignore[arg-type]  # put/forget never touch the client


def test_a_newer_copy_replaces_and_an_older_or_the_same_one_does_not() -> None:
    c = cache()
    c.put(job("5"))
    first = c.get("a", "u1")
    assert first is not None and "managedFields" not in first["metadata"]  # kept slim
    c.put(job("5", "RUNNABLE"))  # the watch's event of the gateway's own write: same version
    assert c.get("a", "u1") is first
    c.put(job("4", "PENDING"))
    assert c.get("a", "u1") is first
    c.put(job("6", "RUNNING"))
    got = c.get("a", "u1")
    assert got is not None and got["status"]["status"] == "RUNNING"
    assert list(c.in_namespace("a")) == [got] and c.get("b", "u1") is None


def test_a_deleted_job_is_not_brought_back_by_a_late_copy() -> None:
    c = cache()
    c.put(job("5"))
    c.forget(job("7"))
    c.put(job("6", "RUNNING"))  # a create's or patch's answer that arrives after the DELETED event
    assert c.get("a", "u1") is None and list(c.in_namespace("a")) == []
    c.put(job("8", "RUNNING"))
    assert c.get("a", "u1") is not None
