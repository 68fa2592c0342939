"""Array children share one scheduler view (core.views.SharedView, used by
adapters.observe.JobReader.job_view): the demand is rendered once per parent, and a changed
parent (new BatchJob object: spec, overrides), another definition revision or another createdAt
makes a new one. Each child's view equals what rendering the child on its own gives."""

from __future__ import annotations

from typing import Any

import pytest

from batchyard.adapters.observe import CapacityBoard, JobReader
from batchyard.adapters.state import ClusterState
from batchyard.api.batchjob import BatchJobStatus
from batchyard.core import views
from batchyard.core.capacity import Resources
from batchyard.core.jobref import JobRef
from batchyard.render import pod as render

NOW = 1_800_000_000.0
DEFINITION = {
    "type": "container",
    "containerProperties": {
        "image": "busybox",
        "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "256"}],
    },
}
OVERRIDES: dict[str, Any] = {
    "containerOverrides": {
        "resourceRequirements": [{"type": "VCPU", "value": "3"}, {"type": "MEMORY", "value": "512"}]
    }
}


def world(**spec: Any) -> tuple[ClusterState, JobReader, JobRef]:
    st = ClusterState()
    st.upsert_definition(
        {
            "metadata": {"name": "d", "namespace": "ns", "generation": 1},
            "spec": DEFINITION,
            "status": {
                "revisions": [{"revision": 1, "state": "ACTIVE", "spec": DEFINITION, "specHash": "h"}]
            },
        }
    )
    st.upsert_job(parent(**spec))
    return st, JobReader(st, CapacityBoard()), JobRef("ns", "a")


def parent(resource_version: str = "1", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "a", "namespace": "ns", "uid": "u-a", "resourceVersion": resource_version,
                     "creationTimestamp": "2026-12-01T00:00:00Z"},
        "spec": {"jobQueue": "q", "jobDefinition": "d", "arrayProperties": {"size": 10}, **spec},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "demand"),
    [({}, Resources(1000, 256)), (OVERRIDES, Resources(3000, 512))],
    ids=["definition", "containerOverrides"],
)
def test_children_share_the_parents_demand_with_their_own_key(
    spec: dict[str, Any], demand: Resources
) -> None:
    st, reader, ref = world(**spec)
    entry = st.jobs[ref]
    first = reader.job_view(ref.child(0), entry, now=NOW)
    shared = entry.shared_view
    second = reader.job_view(ref.child(7), entry, retried=True, now=NOW)
    assert first is not None and second is not None
    assert entry.shared_view is shared  # made once
    assert (first.key, first.retried, second.key, second.retried) == (ref.child(0), False, ref.child(7), True)
    assert first.demand == second.demand == demand
    found = reader.definition(entry)
    assert not isinstance(found, str)
    # the same as rendering the child on its own
    assert demand == render.job_demand(entry.job, found[1])
    alone = views.job_view(ref.child(7), entry.job, entry.status, found[1], demand, retried=True, now=NOW)
    assert second == alone


def test_a_changed_parent_makes_a_new_view() -> None:
    st, reader, ref = world()
    entry = st.jobs[ref]
    before = reader.job_view(ref.child(0), entry, now=NOW)
    st.upsert_job(parent(resource_version="2", **OVERRIDES))  # the watch delivers a new object
    after = reader.job_view(ref.child(0), entry, now=NOW)
    assert before is not None and after is not None
    assert (before.demand, after.demand) == (Resources(1000, 256), Resources(3000, 512))


@pytest.mark.parametrize("change", ["job", "spec", "createdAt"])
def test_the_key_is_the_objects_it_was_made_of(change: str) -> None:
    st, reader, ref = world()
    entry = st.jobs[ref]
    found = reader.definition(entry)
    assert not isinstance(found, str)
    spec = found[1]
    reader.job_view(ref.child(0), entry, now=NOW)
    shared = entry.shared_view
    assert shared is not None and shared.fits(entry.job, spec, entry.status.createdAt)
    job, created = entry.job, entry.status.createdAt
    if change == "job":
        job = job.model_copy()
    elif change == "spec":
        spec = spec.model_copy()
    else:
        created = BatchJobStatus(createdAt="2026-12-02T00:00:00Z").createdAt
    assert not shared.fits(job, spec, created)
