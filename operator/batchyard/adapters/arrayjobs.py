"""Array jobs in the loop: what ``core.arrayjob`` reads of one parent, from the cluster state.

The rules of array jobs (children spawning, cascading cancel/terminate, dependencies per
child, the parent's end) are in ``core.arrayjob``; this module only answers its questions
about one parent (``ParentHost``): the parent's lifecycle context, an observed child pod, how
the scheduler sees a child, the dependency facts.
"""

from __future__ import annotations

from batchyard.adapters.observe import JobReader, children_of
from batchyard.adapters.state import JobEntry
from batchyard.core import deps, lifecycle
from batchyard.core.arrayjob import ChildPod
from batchyard.core.jobref import JobRef
from batchyard.core.scheduler import JobView


class ParentHost:
    """``core.arrayjob.ArrayHost`` for one parent during one step."""

    def __init__(self, reader: JobReader, entry: JobEntry, now: float) -> None:
        self.reader = reader
        self.entry = entry
        self.now = now
        self.pod_retention = reader.pod_retention

    def context(
        self,
        *,
        pod: lifecycle.PodObs | None = None,
        pod_seen: bool | None = None,
        dependencies: deps.Resolution | None = None,
    ) -> lifecycle.Context:
        return self.reader.context(self.entry, pod=pod, pod_seen=pod_seen, dependencies=dependencies)

    def child_view(self, child: JobRef, *, retried: bool) -> JobView | None:
        return self.reader.job_view(child, self.entry, retried=retried, now=self.now)

    def child_pod(self, pod_name: str) -> ChildPod | None:
        job = self.entry.job
        found = self.reader.state.pods.get((job.metadata.namespace or "", pod_name))
        if found is None or found.job_uid != job.metadata.uid:
            return None  # none, or an older job's of the same name
        return ChildPod(found.obs, found.compute_environment)

    def facts(self) -> deps.JobFacts:
        return self.reader.facts(self.entry)

    def lookup(self) -> deps.Lookup:
        return self.reader.lookup(self.entry)


__all__ = ["ParentHost", "children_of"]
