"""Observe: read the cluster state and hand the core its views (``core.views``).

Why a module of its own: the lifecycle, the array stepping and the scheduler all ask the same
questions about a job -- which definition revision does it run, what does one step read, how
does the scheduler see it, what do its dependencies look like -- and the answers need the
in-memory cluster state (``adapters.state``) and the renderer (a pod's demand, its problems).
The rules themselves are in ``core.views``; this module only looks things up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from batchyard.adapters.state import ClusterState, JobEntry
from batchyard.api.jobdefinition import JobDefinitionSpec
from batchyard.core import deps, lifecycle, views
from batchyard.core.arrayjob import children_from_status
from batchyard.core.arrays import ArrayChildren
from batchyard.core.capacity import Resources
from batchyard.core.jobref import JobRef
from batchyard.core.retention import PodRetention
from batchyard.core.revisions import resolve
from batchyard.core.scheduler import JobView, World
from batchyard.core.tenancy import OperatorIdentity
from batchyard.core.views import CECapacity
from batchyard.render import pod as render
from batchyard.render.mnp import node_choice, num_nodes


def children_of(entry: JobEntry) -> ArrayChildren | None:
    """An array parent's children, restored from its status on first use (None: not spawned,
    or not an array)."""
    if entry.children is None and entry.job.spec.arrayProperties is not None:
        entry.children = children_from_status(entry.status)
    return entry.children


def node_demands(entry: JobEntry, spec: JobDefinitionSpec) -> tuple[Resources, ...]:
    """One demand per node, in index order (the scheduler places the gang from these)."""
    job = entry.job
    return tuple(render.job_demand(job, spec, i) for i in range(num_nodes(job, spec)))


def node_consumables(entry: JobEntry, spec: JobDefinitionSpec, job_level: dict[str, int]) -> dict[str, int]:
    """Consumable resources are held per node (AWS NodeRangeProperty.consumableResourceProperties;
    a node without its own takes the job's): the gang needs the sum."""
    job = entry.job
    props = spec.nodeProperties
    assert props is not None
    out: dict[str, int] = {}
    for i in range(num_nodes(job, spec)):
        r, _ = node_choice(job, spec, i)
        own = props.nodeRangeProperties[r].consumableResourceProperties if r is not None else None
        needs = (
            {c.consumableResource: c.quantity for c in own.consumableResourceList or []}
            if own is not None
            else job_level
        )
        for name, q in needs.items():
            out[name] = out.get(name, 0) + q
    return out


@dataclass
class CapacityBoard:
    """Compute-environment facts published by the node-pool reconciler (adapters.scaler) for
    the scheduler: ``of(name)`` is its report, or ``unseen`` for one it has not reported yet."""

    unseen: CECapacity = field(default_factory=CECapacity)
    reports: dict[str, CECapacity] = field(default_factory=dict)

    def of(self, name: str) -> CECapacity:
        return self.reports.get(name, self.unseen)


class JobReader:
    """Answers about jobs from the cluster state (no writes but the pinned-revision cache)."""

    def __init__(
        self,
        state: ClusterState,
        capacity: CapacityBoard,
        *,
        pod_retention: PodRetention = PodRetention.NONE,
        time_limit_scale: float = 1.0,
        identity: OperatorIdentity | None = None,
    ) -> None:
        self.state = state
        self.capacity = capacity
        self.pod_retention = pod_retention
        self.identity = identity
        self.time_limit_scale = time_limit_scale

    def definition(self, entry: JobEntry) -> tuple[int, JobDefinitionSpec] | str:
        """The revision the job runs, or why it can't be read. Once pinned it is kept with the
        job, so a definition deleted (or edited) while the job runs changes nothing for it
        (AWS: revisions are immutable)."""
        pinned = entry.status.jobDefinitionRevision
        if pinned is not None and entry.definition is not None and entry.definition[0] == pinned:
            return entry.definition
        job = entry.job
        name = job.spec.jobDefinition.partition(":")[0]
        jd = self.state.definitions.get((job.metadata.namespace or "", name))
        found = resolve(jd, job.spec.jobDefinition, pinned)
        if pinned is not None and not isinstance(found, str):
            entry.definition = found
        return found

    def resolved(self, entry: JobEntry) -> lifecycle.Resolved | str:
        found = self.definition(entry)
        if isinstance(found, str):
            return found
        revision, spec = found
        return views.resolved(
            entry.job, revision, spec, render.render_problems(entry.job, spec), identity=self.identity
        )

    def consumable_problems(self, entry: JobEntry) -> tuple[str, ...]:
        found = self.definition(entry)
        if isinstance(found, str):
            return ()
        return views.consumable_problems(entry.job, entry.status, found[1], self.state.consumables.values())

    def pod_of(self, entry: JobEntry, pod_name: str) -> lifecycle.PodObs | None:
        """The observed pod of that name if it is this job's (not an older job's of the same name)."""
        found = self.state.pods.get((entry.job.metadata.namespace or "", pod_name))
        return found.obs if found is not None and found.job_uid == entry.job.metadata.uid else None

    def context(
        self,
        entry: JobEntry,
        *,
        pod: lifecycle.PodObs | None = None,
        pod_seen: bool | None = None,
        dependencies: deps.Resolution | None = None,
    ) -> lifecycle.Context:
        """What one lifecycle step of ``entry`` reads (an array child passes its own pod)."""
        attempt = entry.status.attempts[-1] if entry.status.attempts else None
        if pod is None and pod_seen is None and attempt is not None and attempt.podName:
            pod = self.pod_of(entry, attempt.podName)
        if pod_seen is None:
            pod_seen = bool(attempt and attempt.podName in entry.pods_seen)
        return views.context(
            entry.job,
            entry.status,
            self.state.queues.get(entry.job.spec.jobQueue),
            self.resolved(entry),
            dependencies if dependencies is not None else self.dependencies(entry),
            pod,
            pod_seen=pod_seen,
            pod_retention=self.pod_retention,
            consumable_problems=self.consumable_problems(entry),
            identity=self.identity,
        )

    def job_view(self, ref: JobRef, entry: JobEntry, *, retried: bool = False, now: float) -> JobView | None:
        """The job (or array child ``ref``) as the scheduler sees it; None without a definition."""
        found = self.definition(entry)
        if isinstance(found, str):
            return None
        _, spec = found
        if ref.is_child and spec.nodeProperties is None:
            # Array children share one view: one pod plan per parent, not per child.
            created_at = entry.status.createdAt
            shared = entry.shared_view
            if shared is None or not shared.fits(entry.job, spec, created_at):
                view = views.job_view(
                    ref,
                    entry.job,
                    entry.status,
                    spec,
                    render.job_demand(entry.job, spec),
                    retried=retried,
                    now=now,
                )
                shared = entry.shared_view = views.SharedView(entry.job, spec, created_at, view)
            return shared.child(ref, retried=retried)
        demand = render.job_demand(entry.job, spec)
        if spec.nodeProperties is not None:
            # AWS gang scheduling: every node at once, each with its own demand; consumable
            # resources are held per node (adapters.mnp)
            return views.job_view(
                ref,
                entry.job,
                entry.status,
                spec,
                demand,
                retried=retried,
                now=now,
                node_demands=node_demands(entry, spec),
                node_consumables=node_consumables(entry, spec, dict(views.consumables(entry.job, spec))),
            )
        return views.job_view(ref, entry.job, entry.status, spec, demand, retried=retried, now=now)

    # -- dependencies -------------------------------------------------------------------------
    def facts(self, entry: JobEntry) -> deps.JobFacts:
        # An array's children are restored from status on first use, so a dependency read
        # before its own step is seen.
        return views.facts(entry.job, entry.status, children_of(entry))

    def lookup(self, entry: JobEntry) -> deps.Lookup:
        def facts_of(ref: JobRef) -> deps.JobFacts | None:
            found = self.state.jobs.get(ref)
            return self.facts(found) if found is not None else None

        return views.lookup(entry.job.metadata.namespace or "", self.state.uids.get, facts_of)

    def dependencies(self, entry: JobEntry) -> deps.Resolution:
        if not entry.job.spec.dependsOn:
            return deps.READY
        return deps.resolve_job(self.facts(entry), self.lookup(entry))

    # -- the scheduler's world ------------------------------------------------------------------
    def world(self) -> World:
        st = self.state
        return views.world(
            st.compute_environments.values(),
            st.queues.values(),
            st.policies,
            st.consumables.values(),
            self.capacity.of,
            self.time_limit_scale,
        )

    def capacity_reports(self) -> Mapping[str, CECapacity]:
        return self.capacity.reports
