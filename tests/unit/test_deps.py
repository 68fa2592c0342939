"""Dependencies: whole-job, SEQUENTIAL, N_TO_N, late submission, cycles, reverse index."""

from __future__ import annotations

from dataclasses import replace

import pytest

from batchyard.core.arrays import ArrayChildren
from batchyard.core.deps import (
    READY,
    Dependency,
    DependencyType,
    DependentsIndex,
    Fail,
    JobFacts,
    Lookup,
    Resolution,
    Wait,
    dependency_errors,
    find_cycle,
    looks_like_uid,
    make_lookup,
    resolve_child,
    resolve_job,
    split_child_ref,
    state_after_resolution,
)
from batchyard.core.jobstate import JobState, Reason

S = JobState
T = DependencyType
UNKNOWN_UID = "0b7c2a52-3a4e-4c1b-9a0e-5f6d7e8f9a0b"


def on(*refs: str, type: DependencyType = T.JOB) -> tuple[Dependency, ...]:
    return tuple(Dependency(ref, type) for ref in refs)


SEQ = (Dependency(None, T.SEQUENTIAL),)


def a_job(
    name: str,
    state: JobState = S.PENDING,
    deps: tuple[Dependency, ...] = (),
    size: int | None = None,
    states: dict[str, str] | None = None,
    **children: str,
) -> JobFacts:
    """a_job("b", S.PENDING, on("a"), size=3, SUCCEEDED="0") — children default to PENDING."""
    kids = None
    if size is not None:
        kids = ArrayChildren.new(size)
        for state_name, text in {**(states or {}), **children}.items():
            for index in (int(x) for x in text.split(",")):
                kids.set_state(index, S(state_name))
    return JobFacts(
        name=name, uid=f"uid-{name}", state=state, array_size=size, depends_on=deps, children=kids
    )


def world(*jobs: JobFacts) -> Lookup:
    return make_lookup(jobs)


# --- API mapping and validation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_type", "expected"),
    [
        pytest.param(None, T.JOB, id="type omitted is a whole-job dependency"),
        pytest.param("", T.JOB, id="empty type is a whole-job dependency"),
        pytest.param("N_TO_N", T.N_TO_N, id="N_TO_N"),
        pytest.param("SEQUENTIAL", T.SEQUENTIAL, id="SEQUENTIAL"),
    ],
)
def test_dependency_type_from_api(api_type: str | None, expected: DependencyType) -> None:
    assert DependencyType.from_api(api_type) is expected


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        pytest.param(
            a_job("x", deps=on(*[f"d{i}" for i in range(20)])), [], id="twenty dependencies allowed"
        ),
        pytest.param(
            a_job("x", deps=on(*[f"d{i}" for i in range(21)])),
            ["a job can depend on at most 20 jobs, got 21"],
            id="twenty-one dependencies",
        ),
        pytest.param(
            a_job("x", deps=SEQ),
            ["SEQUENTIAL dependencies need an array job"],
            id="SEQUENTIAL on a single job",
        ),
        pytest.param(
            a_job("x", deps=(Dependency("a", T.SEQUENTIAL),), size=3),
            ["SEQUENTIAL dependencies take no jobId"],
            id="SEQUENTIAL with a job id",
        ),
        pytest.param(
            a_job("x", deps=SEQ + SEQ, size=3), ["at most one SEQUENTIAL dependency"], id="two SEQUENTIAL"
        ),
        pytest.param(
            a_job("x", deps=on("a", type=T.N_TO_N)),
            ["N_TO_N dependencies need an array job"],
            id="N_TO_N on a single job",
        ),
        pytest.param(
            a_job("x", deps=(Dependency(None, T.N_TO_N),), size=3),
            ["a N_TO_N dependency needs a jobId"],
            id="N_TO_N without a job id",
        ),
        pytest.param(
            a_job("x", deps=(Dependency(None),)),
            ["a JOB dependency needs a jobId"],
            id="whole-job without a job id",
        ),
        pytest.param(a_job("x", deps=on("x")), ["job x cannot depend on itself"], id="self by name, named"),
        pytest.param(
            a_job("x", deps=on("uid-x")),
            ["job x cannot depend on itself (jobId uid-x)"],
            id="self by uid, named",
        ),
        pytest.param(
            a_job("x", deps=on("x:1"), size=3),
            ["job x cannot depend on itself (jobId x:1)"],
            id="own child is self too",
        ),
        pytest.param(
            a_job("x", deps=on("a:1", type=T.N_TO_N), size=3),
            ["N_TO_N dependency a:1 must name a whole array job, not one child"],
            id="N_TO_N on one child is invalid",
        ),
        pytest.param(a_job("x", deps=on("c") + SEQ, size=3), [], id="whole-job plus SEQUENTIAL is valid"),
    ],
)
def test_dependency_errors(job: JobFacts, expected: list[str]) -> None:
    assert dependency_errors(job) == expected


# --- whole-job resolution -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("others", "deps", "expected"),
    [
        pytest.param([], (), READY, id="no dependencies: ready"),
        pytest.param([a_job("a", S.SUCCEEDED)], on("a"), READY, id="dependency SUCCEEDED: ready"),
        pytest.param(
            [a_job("a", S.RUNNING)],
            on("a"),
            Wait(("a",), "Waiting for dependencies: a"),
            id="dependency RUNNING: wait",
        ),
        pytest.param(
            [a_job("a", S.FAILED)],
            on("a"),
            Fail(Reason.DEPENDENT_JOB_FAILED, ("a",)),
            id="dependency FAILED: fail",
        ),
        pytest.param(
            [a_job("a", S.FAILED), a_job("b", S.RUNNING)],
            on("a", "b"),
            Fail(Reason.DEPENDENT_JOB_FAILED, ("a",)),
            id="one failed among outstanding: fail now",
        ),
        pytest.param(
            [a_job("a", S.SUCCEEDED), a_job("b", S.RUNNABLE), a_job("c", S.PENDING)],
            on("a", "b", "c"),
            Wait(("b", "c"), "Waiting for dependencies: b, c"),
            id="names only the outstanding ones",
        ),
        pytest.param([a_job("a", S.SUCCEEDED)], on("uid-a"), READY, id="referenced by uid"),
        pytest.param(
            [a_job("a", S.RUNNING)],
            on("uid-a"),
            Wait(("a",), "Waiting for dependencies: a"),
            id="referenced by uid, reported by name",
        ),
        pytest.param(
            [],
            on("later"),
            Wait(("later",), "Waiting for dependency later to be submitted", ("later",)),
            id="name not submitted yet: wait",
        ),
        pytest.param(
            [a_job("a", S.RUNNING)],
            on("a", "later"),
            Wait(("later", "a"), "Waiting for dependency later to be submitted", ("later",)),
            id="not-submitted reason comes first",
        ),
        pytest.param(
            [],
            on(UNKNOWN_UID),
            Fail(f"Dependent Job not found: {UNKNOWN_UID}", (UNKNOWN_UID,)),
            id="unknown uid: fail",
        ),
        pytest.param(
            [a_job("arr", S.PENDING, size=3, SUCCEEDED="0,1")],
            on("arr"),
            Wait(("arr",), "Waiting for dependencies: arr"),
            id="whole-job on an array waits for the parent",
        ),
        pytest.param(
            [a_job("arr", S.SUCCEEDED, size=3, SUCCEEDED="0,1,2")],
            on("arr"),
            READY,
            id="whole-job on a SUCCEEDED array: ready",
        ),
        pytest.param(
            [a_job("arr", S.FAILED, size=3, SUCCEEDED="0,1", FAILED="2")],
            on("arr"),
            Fail(Reason.DEPENDENT_JOB_FAILED, ("arr",)),
            id="whole-job on a FAILED array: fail",
        ),
    ],
)
def test_resolve_single_job(
    others: list[JobFacts], deps: tuple[Dependency, ...], expected: Resolution
) -> None:
    job = a_job("me", S.SUBMITTED, deps)
    assert resolve_job(job, world(job, *others)) == expected


def test_a_dependency_submitted_later_is_honoured() -> None:
    dependent = a_job("b", S.PENDING, on("a"))
    assert isinstance(resolve_job(dependent, world(dependent)), Wait)
    dependency = a_job("a", S.RUNNING)
    assert resolve_job(dependent, world(dependent, dependency)) == Wait(("a",), "Waiting for dependencies: a")
    assert resolve_job(dependent, world(dependent, replace(dependency, state=S.SUCCEEDED))) is READY


def test_invalid_dependencies_fail_with_the_problems() -> None:
    job = a_job("x", S.SUBMITTED, SEQ)
    result = resolve_job(job, world(job))
    assert result == Fail("Invalid dependsOn: SEQUENTIAL dependencies need an array job")


@pytest.mark.parametrize(
    ("dependency", "message"),
    [
        pytest.param(
            a_job("a", S.RUNNING), "N_TO_N dependency a is not an array job", id="N_TO_N on a single job"
        ),
        pytest.param(
            a_job("a", S.PENDING, size=4), "N_TO_N dependency a has array size 4", id="N_TO_N on another size"
        ),
    ],
)
def test_n_to_n_shape_mismatch_fails(dependency: JobFacts, message: str) -> None:
    job = a_job("b", S.SUBMITTED, on("a", type=T.N_TO_N), size=3)
    result = resolve_job(job, world(job, dependency))
    assert isinstance(result, Fail)
    assert message in result.reason


def test_n_to_n_parent_is_ready_once_the_dependency_exists() -> None:
    job = a_job("b", S.SUBMITTED, on("a", type=T.N_TO_N), size=3)
    assert resolve_job(job, world(job)) == Wait(("a",), "Waiting for dependency a to be submitted", ("a",))
    failed_array = a_job("a", S.FAILED, size=3, FAILED="0", SUCCEEDED="1,2")
    assert resolve_job(job, world(job, failed_array)) is READY, "N_TO_N is judged per child, not per parent"


# --- cycles ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        pytest.param([a_job("a", deps=on("b")), a_job("b", deps=on("a"))], ("a", "b"), id="two-job cycle"),
        pytest.param(
            [a_job("a", deps=on("b")), a_job("b", deps=on("c")), a_job("c", deps=on("a"))],
            ("a", "b", "c"),
            id="three-job cycle",
        ),
        pytest.param(
            [a_job("a", deps=on("b")), a_job("b", deps=on("uid-a"))],
            ("a", "b"),
            id="cycle closed through a uid",
        ),
        pytest.param(
            [
                a_job("a", size=2, deps=on("b", type=T.N_TO_N)),
                a_job("b", size=2, deps=on("a", type=T.N_TO_N)),
            ],
            ("a", "b"),
            id="N_TO_N cycle",
        ),
        pytest.param(
            [a_job("a", deps=on("b")), a_job("b", S.FAILED, deps=on("a"))],
            None,
            id="terminal job breaks the loop",
        ),
        pytest.param(
            [a_job("a", deps=on("b", "c")), a_job("b", deps=on("c")), a_job("c")],
            None,
            id="diamond is not a cycle",
        ),
        pytest.param(
            [a_job("a", deps=on("b")), a_job("b", deps=on("c")), a_job("c", deps=on("b"))],
            None,
            id="cycle not through this job is not reported here",
        ),
        pytest.param([a_job("a", deps=on("missing"))], None, id="unknown names end the search"),
    ],
)
def test_find_cycle(jobs: list[JobFacts], expected: tuple[str, ...] | None) -> None:
    assert find_cycle(jobs[0], world(*jobs)) == expected


def test_every_job_on_a_cycle_fails_naming_the_cycle() -> None:
    a, b = a_job("a", S.PENDING, on("b")), a_job("b", S.SUBMITTED, on("a"))
    lookup = world(a, b)
    assert resolve_job(a, lookup) == Fail("Dependency cycle: a -> b -> a", ("a", "b"))
    assert resolve_job(b, lookup) == Fail("Dependency cycle: b -> a -> b", ("b", "a"))


def test_a_job_downstream_of_a_cycle_waits_then_fails_with_it() -> None:
    a, b = a_job("a", S.PENDING, on("b")), a_job("b", S.PENDING, on("a"))
    c = a_job("c", S.PENDING, on("a"))
    assert resolve_job(c, world(a, b, c)) == Wait(("a",), "Waiting for dependencies: a")
    assert resolve_job(c, world(replace(a, state=S.FAILED), b, c)) == Fail(
        Reason.DEPENDENT_JOB_FAILED, ("a",)
    )


# --- children: SEQUENTIAL and N_TO_N --------------------------------------------------------


@pytest.mark.parametrize(
    ("children", "index", "expected"),
    [
        pytest.param({}, 0, READY, id="SEQUENTIAL child 0 starts at once"),
        pytest.param({}, 1, Wait(("s:0",), "Waiting for dependencies: s:0"), id="child 1 waits for child 0"),
        pytest.param(
            {"RUNNING": "0"}, 1, Wait(("s:0",), "Waiting for dependencies: s:0"), id="child 0 running"
        ),
        pytest.param({"SUCCEEDED": "0"}, 1, READY, id="child 0 succeeded: child 1 ready"),
        pytest.param(
            {"SUCCEEDED": "0"}, 2, Wait(("s:1",), "Waiting for dependencies: s:1"), id="only the previous"
        ),
        pytest.param(
            {"SUCCEEDED": "0", "FAILED": "1"},
            2,
            Fail(Reason.DEPENDENT_JOB_FAILED, ("s:1",)),
            id="previous failed",
        ),
    ],
)
def test_sequential_children(children: dict[str, str], index: int, expected: Resolution) -> None:
    job = a_job("s", S.PENDING, SEQ, size=4, states=children)
    assert resolve_child(job, index, world(job)) == expected


@pytest.mark.parametrize(
    ("a_children", "c_children", "index", "expected"),
    [
        pytest.param({}, {}, 1, Wait(("a:1",), "Waiting for dependencies: a:1"), id="B:1 waits for A:1"),
        pytest.param({"SUCCEEDED": "1"}, {}, 1, READY, id="A:1 succeeded: B:1 ready"),
        pytest.param(
            {"SUCCEEDED": "0"}, {}, 1, Wait(("a:1",), "Waiting for dependencies: a:1"), id="A:0 is not A:1"
        ),
        pytest.param(
            {"FAILED": "1"}, {}, 1, Fail(Reason.DEPENDENT_JOB_FAILED, ("a:1",)), id="A:1 failed: B:1 fails"
        ),
        pytest.param(
            {"SUCCEEDED": "2"},
            {"RUNNING": "2"},
            2,
            Wait(("c:2",), "Waiting for dependencies: c:2"),
            id="waits for the same index of each dependency",
        ),
        pytest.param(
            {"SUCCEEDED": "2"}, {"SUCCEEDED": "2"}, 2, READY, id="both dependencies' child 2 succeeded"
        ),
    ],
)
def test_n_to_n_children(
    a_children: dict[str, str], c_children: dict[str, str], index: int, expected: Resolution
) -> None:
    a = a_job("a", S.PENDING, size=3, states=a_children)
    c = a_job("c", S.PENDING, size=3, states=c_children)
    deps = on("a", type=T.N_TO_N) + (on("c", type=T.N_TO_N) if c_children else ())
    b = a_job("b", S.PENDING, deps, size=3)
    assert resolve_child(b, index, world(a, b, c)) == expected


def test_mixed_whole_job_and_sequential() -> None:
    """The AWS JobD example: dependsOn [{"jobId": JobC}, {"type": "SEQUENTIAL"}]."""
    c = a_job("c", S.RUNNING)
    d = a_job("d", S.SUBMITTED, on("c") + SEQ, size=3)
    assert resolve_job(d, world(c, d)) == Wait(("c",), "Waiting for dependencies: c")
    c = replace(c, state=S.SUCCEEDED)
    assert resolve_job(d, world(c, d)) is READY
    assert resolve_child(d, 0, world(c, d)) is READY
    assert resolve_child(d, 1, world(c, d)) == Wait(("d:0",), "Waiting for dependencies: d:0")


def test_resolve_child_rejects_non_arrays_and_bad_indexes() -> None:
    single = a_job("x")
    with pytest.raises(ValueError):
        resolve_child(single, 0, world(single))
    arr = a_job("y", size=2)
    with pytest.raises(IndexError):
        resolve_child(arr, 2, world(arr))


# --- state after resolution -----------------------------------------------------------------

WAIT = Wait(("a",), "Waiting for dependencies: a")
FAIL = Fail(Reason.DEPENDENT_JOB_FAILED, ("a",))


@pytest.mark.parametrize(
    ("current", "resolution", "array_parent", "expected"),
    [
        pytest.param(
            S.SUBMITTED, READY, False, (S.RUNNABLE, None), id="no dependencies: SUBMITTED -> RUNNABLE"
        ),
        pytest.param(
            S.SUBMITTED, WAIT, False, (S.PENDING, WAIT.reason), id="outstanding: SUBMITTED -> PENDING"
        ),
        pytest.param(S.PENDING, READY, False, (S.RUNNABLE, None), id="satisfied: PENDING -> RUNNABLE"),
        pytest.param(S.PENDING, WAIT, False, (S.PENDING, WAIT.reason), id="still waiting: PENDING stays"),
        pytest.param(
            S.PENDING,
            FAIL,
            False,
            (S.FAILED, "Dependent Job failed"),
            id="dependency failed: PENDING -> FAILED",
        ),
        pytest.param(
            S.SUBMITTED, FAIL, False, (S.FAILED, "Dependent Job failed"), id="failed before evaluation"
        ),
        pytest.param(S.RUNNING, FAIL, False, (S.RUNNING, None), id="running jobs are not affected"),
        pytest.param(S.SUBMITTED, READY, True, (S.SUBMITTED, None), id="array parent never RUNNABLE"),
        pytest.param(S.SUBMITTED, WAIT, True, (S.PENDING, WAIT.reason), id="array parent waits in PENDING"),
    ],
)
def test_state_after_resolution(
    current: JobState, resolution: Resolution, array_parent: bool, expected: tuple[JobState, str | None]
) -> None:
    assert state_after_resolution(current, resolution, array_parent=array_parent) == expected


# --- reverse index --------------------------------------------------------------------------


def an_index(*jobs: JobFacts) -> DependentsIndex:
    index = DependentsIndex()
    for job in jobs:
        index.upsert(job)
    return index


def test_dependents_of_by_name_and_uid() -> None:
    index = an_index(
        a_job("a"), a_job("b", deps=on("a")), a_job("c", deps=on("uid-a")), a_job("d", deps=on("x"))
    )
    assert index.dependents_of("a") == {"b", "c"}
    assert index.dependents_of("b") == set()


def test_a_late_dependency_finds_its_waiting_dependents() -> None:
    index = an_index(a_job("b", deps=on("a")))
    assert index.dependents_of("a") == {"b"}, "known by name before it exists"
    index.upsert(a_job("a"))
    assert index.dependents_of("a") == {"b"}


def test_removing_and_updating_dependents() -> None:
    index = an_index(a_job("a"), a_job("b", deps=on("a")))
    index.upsert(a_job("b", deps=on("z")))
    assert index.dependents_of("a") == set()
    assert index.dependents_of("z") == {"b"}
    index.remove("b")
    assert index.dependents_of("z") == set()
    assert index._whole == {} and "b" not in index._edges, "no garbage left behind"


@pytest.mark.parametrize(
    ("changed", "child", "expected"),
    [
        pytest.param("a", 1, [("b", 1), ("c", 1)], id="N_TO_N dependents' same index"),
        pytest.param("s", 1, [("s", 2)], id="SEQUENTIAL: the next child of the same array"),
        pytest.param("s", 3, [], id="SEQUENTIAL: the last child has no successor"),
        pytest.param("w", 0, [], id="whole-job dependents are not child-level"),
    ],
)
def test_affected_by_child(changed: str, child: int, expected: list[tuple[str, int]]) -> None:
    index = an_index(
        a_job("a", size=4),
        a_job("b", deps=on("a", type=T.N_TO_N), size=4),
        a_job("c", deps=on("uid-a", type=T.N_TO_N), size=4),
        a_job("s", deps=SEQ, size=4),
        a_job("w", size=4),
        a_job("x", deps=on("w")),
    )
    assert index.affected_by_child(changed, child) == expected
    assert index.dependents_of("w") == {"x"}


def test_uid_shape() -> None:
    assert looks_like_uid(UNKNOWN_UID)
    assert not looks_like_uid("my-job")
    assert not looks_like_uid(UNKNOWN_UID.upper()), "Kubernetes uids are lower case"


# --- N_TO_N on an array that has not spawned its children yet (issue 11 item 2) ---------------


def unspawned(name: str, state: JobState, size: int = 3, deps: tuple[Dependency, ...] = ()) -> JobFacts:
    """An array parent whose children do not exist yet (it is waiting, or failed first)."""
    return JobFacts(name=name, uid=f"uid-{name}", state=state, array_size=size, depends_on=deps)


def test_aws_array_job_workflow_submitted_up_front_waits() -> None:
    """AWS "Example of an array job workflow": JobA, array JobB on JobA, JobC N_TO_N on JobB."""
    job_a = a_job("jobA", S.RUNNING)
    job_b = unspawned("jobB", S.PENDING, deps=on("jobA"))
    job_c = a_job("jobC", S.PENDING, on("jobB", type=T.N_TO_N), size=3)
    lookup = world(job_a, job_b, job_c)
    assert resolve_job(job_c, lookup) == READY  # JobC may spawn; its children wait per index
    for index in range(3):
        assert resolve_child(job_c, index, lookup) == Wait(
            (f"jobB:{index}",), f"Waiting for dependencies: jobB:{index}"
        )


@pytest.mark.parametrize(
    ("dependency", "expected"),
    [
        pytest.param(
            unspawned("b", S.PENDING),
            Wait(("b:1",), "Waiting for dependencies: b:1"),
            id="not spawned: waits",
        ),
        pytest.param(
            unspawned("b", S.SUBMITTED),
            Wait(("b:1",), "Waiting for dependencies: b:1"),
            id="submitted: waits",
        ),
        pytest.param(
            unspawned("b", S.FAILED),
            Fail(Reason.DEPENDENT_JOB_FAILED, ("b:1",)),
            id="failed before spawning: Dependent Job failed",
        ),
        pytest.param(
            unspawned("b", S.PENDING, size=4),
            Fail(Reason.invalid_dependency(["N_TO_N dependency b is not a matching array"])),
            id="another size is still invalid",
        ),
    ],
)
def test_n_to_n_child_on_an_unspawned_array(dependency: JobFacts, expected: Resolution) -> None:
    c = a_job("c", S.PENDING, on("b", type=T.N_TO_N), size=3)
    assert resolve_child(c, 1, world(dependency, c)) == expected


# --- a dependency on one array child, "arr:3" (issue 11 item 3) ----------------------------------


ARRAY_UID = "11111111-2222-4333-8444-555555555555"


def arr(state: JobState = S.PENDING, spawned: bool = True, **children: str) -> JobFacts:
    job = a_job("arr", state, size=4, **children) if spawned else unspawned("arr", state, size=4)
    return replace(job, uid=ARRAY_UID)


@pytest.mark.parametrize(
    ("array", "ref", "expected"),
    [
        pytest.param(arr(SUCCEEDED="3"), "arr:3", READY, id="child SUCCEEDED satisfies (by name)"),
        pytest.param(arr(SUCCEEDED="3"), f"{ARRAY_UID}:3", READY, id="child SUCCEEDED satisfies (by uid)"),
        pytest.param(
            arr(RUNNING="3"),
            "arr:3",
            Wait(("arr:3",), "Waiting for dependencies: arr:3"),
            id="child running: waits",
        ),
        pytest.param(
            arr(SUCCEEDED="0,1,2", FAILED="3"),
            "arr:3",
            Fail(Reason.DEPENDENT_JOB_FAILED, ("arr:3",)),
            id="child FAILED fails the dependent",
        ),
        pytest.param(
            arr(FAILED="2", SUCCEEDED="3"), "arr:3", READY, id="another child failing does not matter"
        ),
        pytest.param(
            arr(spawned=False),
            "arr:3",
            Wait(("arr:3",), "Waiting for dependencies: arr:3"),
            id="array not spawned yet: waits",
        ),
        pytest.param(
            arr(S.FAILED, spawned=False),
            "arr:3",
            Fail(Reason.DEPENDENT_JOB_FAILED, ("arr:3",)),
            id="array failed before spawning: fails",
        ),
        pytest.param(
            arr(),
            "arr:4",
            Fail(Reason.invalid_dependency(["arr has array size 4, so it has no child 4"])),
            id="index outside the array is invalid",
        ),
        pytest.param(
            a_job("arr", S.SUCCEEDED),
            "arr:0",
            Fail(Reason.invalid_dependency(["arr is not an array job, so it has no child 0"])),
            id="a child of a non-array is invalid",
        ),
        pytest.param(
            arr(),
            "later:1",
            Wait(("later:1",), "Waiting for dependency later:1 to be submitted", ("later:1",)),
            id="array not submitted yet: waits naming the child",
        ),
    ],
)
def test_dependency_on_one_array_child(array: JobFacts, ref: str, expected: Resolution) -> None:
    job = a_job("j", S.PENDING, on(ref))
    assert resolve_job(job, world(array, job)) == expected


def test_split_child_ref() -> None:
    assert split_child_ref("arr:3") == ("arr", 3)
    assert split_child_ref(f"{ARRAY_UID}:12") == (ARRAY_UID, 12)
    assert split_child_ref("arr") == ("arr", None)


def test_a_job_on_one_child_is_woken_by_that_child() -> None:
    index = DependentsIndex()
    index.upsert(a_job("j", S.PENDING, on("arr:3")))
    assert index.dependents_of_child("arr", 3) == {"j"}
    assert index.dependents_of_child("arr", 2) == set()
    assert index.dependents_of("arr") == {"j"}  # and by the array itself (appears, fails)
    index.remove("j")
    assert index.dependents_of_child("arr", 3) == set()


def test_n_to_n_dependents_are_found_for_an_array_that_failed_before_spawning() -> None:
    index = DependentsIndex()
    index.upsert(a_job("c", S.PENDING, on("b", type=T.N_TO_N), size=3))
    index.upsert(a_job("d", S.PENDING, on("b")))
    assert index.n_to_n_dependents_of("b") == {"c"}
