"""Job dependencies (`dependsOn`): whole-job, SEQUENTIAL and N_TO_N, resolved purely.

Why this module exists: whether a job may leave PENDING depends on other jobs' states, and
those jobs may be submitted later, fail, or be arrays whose children progress one by one.
This module answers "READY, WAIT (for what) or FAIL (because of what)" for a job or an array
child from a read-only view of the other jobs, and keeps a reverse index so that a state
change re-evaluates only the jobs and children that depend on it.

Mapping from the API model (one line):
    Dependency(d.jobId, DependencyType.from_api(d.type))

AWS rules (User Guide "Job dependencies", "Array jobs", SubmitJob `dependsOn`; digest §2.4):
* "A job can depend upon a maximum of 20 jobs."
* A dependency is satisfied only by SUCCEEDED: "the AWS Batch scheduler ensures that your job
  is run only after the specified dependencies have successfully completed"; "If any of the
  job dependencies fail, the dependent job automatically transitions from PENDING to FAILED."
* SEQUENTIAL (array, no job id): "each child array job completes sequentially, starting at
  index 0" — child i+1 waits for child i to succeed.
* N_TO_N (array, with a job id): "each index child of this job must wait for the corresponding
  index child of each dependency to complete before it can begin."
* A whole-job dependency on an array waits for the whole array: the parent SUCCEEDS only when
  every child has [INFERENCE, digest §2.4].
* A list may mix a whole-job dependency and SEQUENTIAL (the AWS JobD example).

Decisions (AWS rejects bad references at SubmitJob; Kubernetes admits the object first):
* References are the dependency's name or uid in the same namespace; the caller's lookup
  tries uid first, then name (`make_lookup`).
* A name that does not exist yet WAITS ("Waiting for dependency <name> to be submitted"): a
  dependency submitted after its dependent is honoured (GitOps tools apply in any order).
* A uid that does not exist FAILS ("Dependent Job not found: <uid>"): uids are assigned by the
  API server, so an unknown one names a job that was deleted (or never existed) and can never
  appear. A reference is treated as a uid when it has the Kubernetes uid shape (a UUID).
  The operator must only resolve after its initial list of BatchJobs is complete.
* A cycle (possible only when some name was referenced before it existed) would wait forever,
  so every job on it FAILS with "Dependency cycle: a -> b -> a".
* N_TO_N on a job that is not an array, or an array of another size, FAILS (invalid dependsOn).
* N_TO_N on an array that has not spawned its children yet (it is itself PENDING on its own
  dependencies) WAITS: AWS "Reference: Example of an array job workflow" submits JobA, array
  JobB (dependsOn JobA) and JobC (N_TO_N on JobB) up front. If that array FAILS before it
  spawns, each dependent child fails with AWS's `Dependent Job failed`.
* One array child as a dependency: `<name or uid>:<index>` (AWS child job ids are
  "example_job_ID:0"). It resolves against that child's state: SUCCEEDED satisfies it, FAILED
  fails the dependent. Before the array spawns, the child counts as not finished (or FAILED
  when the whole array failed first). An index outside the array FAILS (invalid dependsOn).
  The parsing is here (`split_child_ref`); the caller's lookup only resolves names and uids.
* Cancelled and failed dependencies are treated alike (both are FAILED).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from batchyard.core.jobstate import JobState, Reason
from batchyard.core.params import child_job_id

MAX_DEPENDENCIES = 20  # AWS: "A job can depend upon a maximum of 20 jobs."
_UID_SHAPE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# "<name or uid>:<index>" (the CRD's jobId pattern allows up to 4 digits; AWS arrays have <= 10,000
# children). Kubernetes names and uids never contain ":".
_CHILD_REF = re.compile(r"(?P<job>[^:]+):(?P<index>[0-9]{1,4})")


class DependencyType(StrEnum):
    JOB = "JOB"  # whole-job dependency: the API's `type` omitted
    N_TO_N = "N_TO_N"
    SEQUENTIAL = "SEQUENTIAL"

    @classmethod
    def from_api(cls, value: str | None) -> DependencyType:
        return cls.JOB if not value else cls(value)


@dataclass(frozen=True, slots=True)
class Dependency:
    job: str | None  # name or uid of the dependency; None for SEQUENTIAL
    type: DependencyType = DependencyType.JOB


class ChildStates(Protocol):
    """What this module needs from an array's children (arrays.ArrayChildren provides it)."""

    def state_of(self, index: int) -> JobState: ...


@dataclass(frozen=True, slots=True)
class JobFacts:
    """The part of a job that dependency resolution reads. `children` is set for arrays."""

    name: str
    uid: str
    state: JobState
    array_size: int | None = None
    depends_on: tuple[Dependency, ...] = ()
    children: ChildStates | None = None


Lookup = Callable[[str], JobFacts | None]


@dataclass(frozen=True, slots=True)
class Ready:
    pass


READY = Ready()


@dataclass(frozen=True, slots=True)
class Wait:
    outstanding: tuple[str, ...]  # names (or "name:index") not yet SUCCEEDED / not yet submitted
    reason: str
    # references (as written) to jobs that do not exist: the caller bounds how long it waits for
    # them (core.lifecycle.DEPENDENCY_SUBMIT_GRACE_SECONDS)
    not_submitted: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Fail:
    reason: str  # statusReason: Reason.DEPENDENT_JOB_FAILED for a failed dependency
    culprits: tuple[str, ...] = ()  # failed dependencies, cycle members or unknown uids


Resolution = Ready | Wait | Fail


def looks_like_uid(ref: str) -> bool:
    return _UID_SHAPE.fullmatch(ref) is not None


def split_child_ref(ref: str) -> tuple[str, int | None]:
    """("arr", 3) for "arr:3" (one array child), (ref, None) for a whole job."""
    m = _CHILD_REF.fullmatch(ref)
    return (m["job"], int(m["index"])) if m is not None else (ref, None)


def child_state(info: JobFacts, index: int) -> JobState | str:
    """The state of child ``index`` of array ``info``, or why the reference is invalid.

    Before the array spawns its children they have no state of their own: they are PENDING
    while the parent can still spawn them, and FAILED with it when it failed first (it never
    will). A parent that SUCCEEDED has had every child succeed.
    """
    if info.array_size is None:
        return f"{info.name} is not an array job, so it has no child {index}"
    if index >= info.array_size:
        return f"{info.name} has array size {info.array_size}, so it has no child {index}"
    if info.children is not None:
        return info.children.state_of(index)
    if info.state in (JobState.FAILED, JobState.SUCCEEDED):
        return info.state
    return JobState.PENDING


def make_lookup(jobs: Iterable[JobFacts]) -> Lookup:
    """A lookup over one namespace's jobs: uid first, then name."""
    by_uid = {j.uid: j for j in jobs}
    by_name = {j.name: j for j in by_uid.values()}

    def lookup(ref: str) -> JobFacts | None:
        return by_uid.get(ref) or by_name.get(ref)

    return lookup


def dependency_errors(job: JobFacts) -> list[str]:
    """Problems with a dependsOn list on its own (no other job needed)."""
    deps = job.depends_on
    errors: list[str] = []
    if len(deps) > MAX_DEPENDENCIES:
        errors.append(f"a job can depend on at most {MAX_DEPENDENCIES} jobs, got {len(deps)}")
    sequential = [d for d in deps if d.type is DependencyType.SEQUENTIAL]
    for dep in sequential:
        if dep.job is not None:
            errors.append("SEQUENTIAL dependencies take no jobId")  # AWS: "without specifying a job ID"
    if len(sequential) > 1:
        errors.append("at most one SEQUENTIAL dependency")
    if sequential and job.array_size is None:
        errors.append("SEQUENTIAL dependencies need an array job")
    for dep in deps:
        if dep.type is DependencyType.SEQUENTIAL:
            continue
        if dep.job is None:
            errors.append(f"a {dep.type} dependency needs a jobId")
        elif split_child_ref(dep.job)[0] in (job.name, job.uid):
            via = "" if dep.job == job.name else f" (jobId {dep.job})"
            errors.append(f"job {job.name} cannot depend on itself{via}")
        elif dep.type is DependencyType.N_TO_N and split_child_ref(dep.job)[1] is not None:
            errors.append(f"N_TO_N dependency {dep.job} must name a whole array job, not one child")
        if dep.type is DependencyType.N_TO_N and job.array_size is None:
            errors.append("N_TO_N dependencies need an array job")  # AWS: "for array jobs"
    return list(dict.fromkeys(errors))


def find_cycle(job: JobFacts, lookup: Lookup) -> tuple[str, ...] | None:
    """A dependency cycle through `job`, as names starting with it, or None.

    Follows whole-job and N_TO_N edges between non-terminal jobs only: a terminal job waits for
    nothing, so it cannot be part of a deadlock. Visits each reachable job at most once.
    """
    path: list[str] = [job.name]
    iters = [iter(_refs(job))]
    visited = {job.name}
    while iters:
        ref = next(iters[-1], None)
        if ref is None:
            iters.pop()
            path.pop()
            continue
        dep = lookup(ref)
        if dep is None or dep.state.is_terminal:
            continue
        if dep.name == job.name:
            return tuple(path)
        if dep.name in visited:
            continue
        visited.add(dep.name)
        path.append(dep.name)
        iters.append(iter(_refs(dep)))
    return None


def _refs(job: JobFacts) -> list[str]:
    return [
        split_child_ref(d.job)[0]
        for d in job.depends_on
        if d.job is not None and d.type is not DependencyType.SEQUENTIAL
    ]


def resolve_job(job: JobFacts, lookup: Lookup) -> Resolution:
    """Job-level resolution: a non-array job, or the gate of an array parent.

    For an array parent, READY means its children may be evaluated with `resolve_child`
    (whole-job dependencies have succeeded and N_TO_N dependencies exist with the same size).
    """
    errors = dependency_errors(job)
    if errors:
        return Fail(Reason.invalid_dependency(errors))
    cycle = find_cycle(job, lookup)
    if cycle is not None:
        return Fail(Reason.dependency_cycle(cycle), cycle)
    failed: list[str] = []
    missing: list[str] = []
    not_submitted: list[str] = []
    outstanding: list[str] = []
    for dep in job.depends_on:
        if dep.job is None:
            continue  # SEQUENTIAL: child-level only
        ref, index = split_child_ref(dep.job)
        info = lookup(ref)
        if info is None:
            (missing if looks_like_uid(ref) else not_submitted).append(dep.job)
            continue
        if dep.type is DependencyType.N_TO_N:
            if info.array_size != job.array_size:
                shape = (
                    "is not an array job" if info.array_size is None else f"has array size {info.array_size}"
                )
                errors.append(f"N_TO_N dependency {info.name} {shape}, this job has size {job.array_size}")
            # Its children are resolved one by one (resolve_child), even before they exist.
            continue
        state: JobState | str = info.state
        name = info.name
        if index is not None:
            state = child_state(info, index)  # AWS: a child job id is "<array job id>:<index>"
            name = child_job_id(info.name, index)
            if not isinstance(state, JobState):  # JobState is a str too: test it first
                errors.append(state)
                continue
        if state is JobState.SUCCEEDED:
            continue
        if state is JobState.FAILED:
            failed.append(name)  # AWS: any dependency failed -> dependent FAILED
        else:
            outstanding.append(name)
    if errors:
        return Fail(Reason.invalid_dependency(errors))
    if missing:
        return Fail(Reason.dependency_not_found(tuple(missing)), tuple(missing))
    if failed:
        return Fail(Reason.DEPENDENT_JOB_FAILED, tuple(failed))
    return _wait_or_ready(not_submitted, outstanding)


def resolve_child(job: JobFacts, index: int, lookup: Lookup) -> Resolution:
    """Child-level resolution of array child `index`; call once `resolve_job` is READY.

    AWS SEQUENTIAL: child i waits for child i-1 of the same array. AWS N_TO_N: child i waits
    for child i of each dependency. Any of those FAILED -> this child FAILS.
    """
    if job.array_size is None or job.children is None:
        raise ValueError(f"{job.name} is not an array job")
    if not 0 <= index < job.array_size:
        raise IndexError(f"child index {index} outside 0..{job.array_size - 1}")
    failed: list[str] = []
    not_submitted: list[str] = []
    outstanding: list[str] = []

    def check(name: str, state: JobState) -> None:
        if state is JobState.FAILED:
            failed.append(name)
        elif state is not JobState.SUCCEEDED:
            outstanding.append(name)

    for dep in job.depends_on:
        if dep.type is DependencyType.SEQUENTIAL and index > 0:
            check(child_job_id(job.name, index - 1), job.children.state_of(index - 1))
        elif dep.type is DependencyType.N_TO_N and dep.job is not None:
            info = lookup(dep.job)
            if info is None:
                not_submitted.append(dep.job)
                continue
            state = child_state(info, index) if info.array_size == job.array_size else None
            if not isinstance(state, JobState):
                return Fail(
                    Reason.invalid_dependency([f"N_TO_N dependency {info.name} is not a matching array"])
                )
            # Not spawned yet: PENDING (wait); the array failed before spawning: FAILED.
            check(child_job_id(info.name, index), state)
    if failed:
        return Fail(Reason.DEPENDENT_JOB_FAILED, tuple(failed))
    return _wait_or_ready(not_submitted, outstanding)


def _wait_or_ready(not_submitted: Sequence[str], outstanding: Sequence[str]) -> Resolution:
    if not_submitted:
        return Wait(
            (*not_submitted, *outstanding),
            Reason.dependency_not_submitted(", ".join(not_submitted)),
            tuple(not_submitted),
        )
    if outstanding:
        return Wait(tuple(outstanding), Reason.dependencies_outstanding(tuple(outstanding)))
    return READY


def state_after_resolution(
    current: JobState, resolution: Resolution, *, array_parent: bool = False
) -> tuple[JobState, str | None]:
    """The (state, statusReason) a SUBMITTED/PENDING job moves to; other states are unchanged.

    AWS "Job states": SUBMITTED -> PENDING with outstanding dependencies, -> RUNNABLE without;
    PENDING -> RUNNABLE when satisfied; PENDING -> FAILED when any dependency fails.
    An array parent never becomes RUNNABLE: READY leaves it where it is and its state then
    follows its children (arrays.ArrayChildren.parent_state).
    """
    if current not in (JobState.SUBMITTED, JobState.PENDING):
        return current, None
    if isinstance(resolution, Fail):
        return JobState.FAILED, resolution.reason
    if isinstance(resolution, Wait):
        return JobState.PENDING, resolution.reason
    return (current, None) if array_parent else (JobState.RUNNABLE, None)


class DependentsIndex:
    """Reverse index: which jobs and children to re-evaluate when a job or child changes.

    Keys are the references as written (name or uid), so a dependent that names a job not yet
    submitted is found as soon as that job appears. All operations are O(dependencies of the
    job) or O(dependents returned).
    """

    def __init__(self) -> None:
        self._whole: dict[str, set[str]] = {}  # ref -> dependents with a whole-job edge
        self._n_to_n: dict[str, set[str]] = {}  # ref -> dependents with an N_TO_N edge
        self._edges: dict[str, list[tuple[str, DependencyType]]] = {}  # dependent -> its refs
        self._uid: dict[str, str] = {}  # name -> uid
        self._sequential_size: dict[str, int] = {}  # name -> array size, for SEQUENTIAL arrays
        self._child: dict[tuple[str, int], set[str]] = {}  # (ref, index) -> jobs on that one child
        self._child_edges: dict[str, list[tuple[str, int]]] = {}  # dependent -> its (ref, index)

    def upsert(self, job: JobFacts) -> None:
        """Register (or re-register) a job's identity and dependsOn."""
        self.remove(job.name)
        self._uid[job.name] = job.uid
        # A dependency on one child ("arr:3") is indexed under the array's ref, so the job is
        # re-resolved when the array appears, changes state or that child ends.
        edges = [(split_child_ref(d.job)[0], d.type) for d in job.depends_on if d.job is not None]
        self._edges[job.name] = edges
        for ref, kind in edges:
            table = self._n_to_n if kind is DependencyType.N_TO_N else self._whole
            table.setdefault(ref, set()).add(job.name)
        child_edges = [split_child_ref(d.job) for d in job.depends_on if d.job is not None]
        self._child_edges[job.name] = [(ref, i) for ref, i in child_edges if i is not None]
        for key in self._child_edges[job.name]:
            self._child.setdefault(key, set()).add(job.name)
        if job.array_size is not None and any(d.type is DependencyType.SEQUENTIAL for d in job.depends_on):
            self._sequential_size[job.name] = job.array_size

    def remove(self, name: str) -> None:
        for ref, kind in self._edges.pop(name, []):
            table = self._n_to_n if kind is DependencyType.N_TO_N else self._whole
            dependents = table.get(ref)
            if dependents is not None:
                dependents.discard(name)
                if not dependents:
                    del table[ref]
        for key in self._child_edges.pop(name, []):
            on_child = self._child.get(key)
            if on_child is not None:
                on_child.discard(name)
                if not on_child:
                    del self._child[key]
        self._uid.pop(name, None)
        self._sequential_size.pop(name, None)

    def _refs_for(self, name: str) -> tuple[str, ...]:
        uid = self._uid.get(name)
        return (name,) if uid is None else (name, uid)

    def dependents_of(self, name: str) -> set[str]:
        """Jobs to re-resolve (resolve_job) when `name` appears, disappears or changes job state."""
        out: set[str] = set()
        for ref in self._refs_for(name):
            out |= self._whole.get(ref, set())
            out |= self._n_to_n.get(ref, set())
        return out

    def n_to_n_dependents_of(self, name: str) -> set[str]:
        """Arrays whose children wait N_TO_N on array ``name`` (every child of theirs is affected
        when ``name`` fails before spawning its own children)."""
        out: set[str] = set()
        for ref in self._refs_for(name):
            out |= self._n_to_n.get(ref, set())
        return out

    def dependents_of_child(self, name: str, index: int) -> set[str]:
        """Jobs that depend on child ``index`` of array ``name`` itself ("name:index"): re-resolve
        them (resolve_job) when that child changes state."""
        out: set[str] = set()
        for ref in self._refs_for(name):
            out |= self._child.get((ref, index), set())
        return out

    def affected_by_child(self, name: str, index: int) -> list[tuple[str, int]]:
        """Children to re-resolve (resolve_child) when child `index` of array `name` changes state."""
        out: set[tuple[str, int]] = set()
        for ref in self._refs_for(name):
            out.update((dependent, index) for dependent in self._n_to_n.get(ref, ()))
        size = self._sequential_size.get(name)
        if size is not None and index + 1 < size:
            out.add((name, index + 1))  # AWS SEQUENTIAL: the next child may start
        return sorted(out)
