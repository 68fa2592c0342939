"""What the loop remembers between cycles, besides the cluster state itself.

Why a module of its own: deciding (adapters.controller), executing (adapters.apply) and array
stepping (adapters.arrayjobs) share a few facts that no API object holds -- which jobs the
scheduler holds, which jobs' status must be written before any pod is created, who depends on
whom -- and each has one name and one owner here instead of being attributes that several
modules write on the controller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from batchyard.adapters.state import ClusterState
from batchyard.core import deps
from batchyard.core.jobref import JobRef
from batchyard.core.jobstate import POD_STATES, JobState
from batchyard.core.scheduler import Scheduler

WAITING_FOR_DEPENDENCIES = (None, JobState.SUBMITTED, JobState.PENDING)


@dataclass
class Bookkeeping:
    state: ClusterState
    scheduler: Scheduler = field(default_factory=Scheduler)
    # Jobs and array children the scheduler holds (RUNNABLE, STARTING or RUNNING in it).
    held: set[JobRef] = field(default_factory=set)
    # Array parents whose children were handed to the scheduler (spawned here, or restored
    # from status after an operator restart).
    restored_parents: set[JobRef] = field(default_factory=set)
    # Jobs whose (child's) end may release dependents this cycle: their status is written
    # before any pod is created, so nobody sees a dependent start before its dependency ended.
    write_before_dispatch: set[JobRef] = field(default_factory=set)
    # STARTING array children whose pod is missing: (re)created, idempotently by name.
    pending_child_pod_creates: list[JobRef] = field(default_factory=list)
    # Reverse dependency indexes per namespace, and the jobs already in them.
    dependents: dict[str, deps.DependentsIndex] = field(default_factory=dict)
    indexed: set[JobRef] = field(default_factory=set)

    def dependents_in(self, namespace: str) -> deps.DependentsIndex:
        """The reverse dependency index of one namespace (dependencies never cross namespaces)."""
        index = self.dependents.get(namespace)
        if index is None:
            index = self.dependents[namespace] = deps.DependentsIndex()
        return index

    def take_write_before_dispatch(self) -> set[JobRef]:
        """The jobs whose status goes out before this cycle's pods (and forget them)."""
        out, self.write_before_dispatch = self.write_before_dispatch, set()
        return out

    def take_pending_child_pod_creates(self) -> list[JobRef]:
        out, self.pending_child_pod_creates = self.pending_child_pod_creates, []
        return out

    def release(self, ref: JobRef, now: float, *, keep: bool = False) -> None:
        """The attempt of ``ref`` is over: free what it held; unless ``keep`` (it is RUNNABLE
        again), the scheduler forgets it."""
        if ref not in self.held:
            return
        if self.scheduler.state_of(ref) in POD_STATES:
            self.scheduler.attempt_ended(ref, now)
        if not keep:
            self.scheduler.remove(ref, now)
            self.held.discard(ref)

    def forget(self, ref: JobRef, now: float) -> None:
        """The scheduler drops ``ref`` whatever it was doing (the job failed or was deleted)."""
        self.scheduler.remove(ref, now)
        self.held.discard(ref)

    def wake_dependents(self, ref: JobRef) -> None:
        """Job ``ref`` ended: its dependents that still wait are stepped next cycle."""
        self.write_before_dispatch.add(ref)
        st = self.state
        index = self.dependents_in(ref.namespace)
        for other_name in index.dependents_of(ref.name):
            other_ref = JobRef(ref.namespace, other_name)
            other = st.jobs.get(other_ref)
            if other is not None and other.status.status in WAITING_FOR_DEPENDENCIES:
                st.dirty_jobs.add(other_ref)
        entry = st.jobs.get(ref)
        if entry is not None and entry.job.spec.arrayProperties is not None and entry.children is None:
            # An array that ended before spawning: children waiting N_TO_N on it resolve now.
            for other_name in index.n_to_n_dependents_of(ref.name):
                other_ref = JobRef(ref.namespace, other_name)
                other = st.jobs.get(other_ref)
                if other is not None and other.children is not None:
                    other.dirty_children |= set(other.children.in_state(JobState.PENDING))
                    st.dirty_jobs.add(other_ref)
        if st.dirty_jobs:
            st.wake()

    def wake_child_dependents(self, child: JobRef) -> None:
        """An array child ended. SEQUENTIAL: child index+1 of the same array; N_TO_N: child
        index of each dependent array."""
        assert child.index is not None
        parent = child.parent
        self.write_before_dispatch.add(parent)
        # Jobs on this one child ("name:index", core.deps.split_child_ref).
        for name in self.dependents_in(parent.namespace).dependents_of_child(parent.name, child.index):
            self.state.dirty_jobs.add(JobRef(parent.namespace, name))
        for name, index in self.dependents_in(parent.namespace).affected_by_child(parent.name, child.index):
            ref = JobRef(parent.namespace, name)
            other = self.state.jobs.get(ref)
            if other is not None:
                other.dirty_children.add(index)
                self.state.dirty_jobs.add(ref)
