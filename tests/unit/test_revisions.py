"""Job definition revisions (core.revisions): what becomes revision N+1, ACTIVE/INACTIVE, and
which revision a job runs. AWS RegisterJobDefinition / DeregisterJobDefinition / SubmitJob
`jobDefinition` ("name" = latest ACTIVE revision, "name:revision" = that revision)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from batchyard.api.jobdefinition import JobDefinition, JobDefinitionSpec, JobDefinitionStatus
from batchyard.core.revisions import record_revisions, resolve, spec_hash

T1, T2, T3 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"


def spec(image: str = "busybox", **extra: Any) -> JobDefinitionSpec:
    return JobDefinitionSpec.model_validate(
        {"type": "container", "containerProperties": {"image": image, "command": ["echo", "hi"]}, **extra}
    )


@dataclass(frozen=True)
class DefB:
    """a_definition("d").with_image("busybox:2").generation(2).recorded(...)"""

    name: str
    image: str = "busybox"
    extra: tuple[tuple[str, Any], ...] = ()
    gen: int | None = 1
    status: JobDefinitionStatus | None = None

    def with_image(self, image: str) -> DefB:
        return replace(self, image=image)

    def with_field(self, key: str, value: Any) -> DefB:
        return replace(self, extra=(*((k, v) for k, v in self.extra if k != key), (key, value)))

    def deregistering(self, *revisions: int) -> DefB:
        return self.with_field("inactiveRevisions", list(revisions))

    def generation(self, gen: int | None) -> DefB:
        return replace(self, gen=gen)

    def spec(self) -> JobDefinitionSpec:
        return spec(self.image, **dict(self.extra))

    def build(self) -> JobDefinition:
        meta: dict[str, Any] = {"name": self.name, "namespace": "ns"}
        if self.gen is not None:
            meta["generation"] = self.gen
        return JobDefinition(metadata=meta, spec=self.spec(), status=self.status)

    def recorded(self, now: str = T1) -> DefB:
        """As the operator leaves it after recording its current spec."""
        new = record_revisions(self.build(), now)
        return replace(self, status=new) if new is not None else self

    def with_revisions(self, *images: str, inactive: tuple[int, ...] = ()) -> DefB:
        """A definition whose spec went through `images` (revision 1, 2, ...), some deregistered."""
        jd = self
        for n, image in enumerate(images, start=1):
            jd = jd.with_image(image).generation(n).recorded(f"2026-01-0{n}T00:00:00Z")
        if inactive:
            jd = jd.deregistering(*inactive).generation(len(images) + 1).recorded()
        return jd


def a_definition(name: str = "d") -> DefB:
    return DefB(name)


def revisions_of(status: JobDefinitionStatus | None) -> list[tuple[int, str, str | None]]:
    assert status is not None
    return [(r.revision, r.state, r.spec.containerProperties.image if r.spec and r.spec.containerProperties else None)
            for r in status.revisions or []]  # fmt: skip


# --- spec_hash ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        pytest.param(spec(), spec(), True, id="equal specs hash equal"),
        pytest.param(spec(), spec("busybox:2"), False, id="a changed image is a new hash"),
        pytest.param(spec(), spec(inactiveRevisions=[1]), True, id="inactiveRevisions is bookkeeping, not spec"),
        pytest.param(spec(), spec(retryStrategy={"attempts": 2}), False, id="a retry strategy changes the hash"),
        pytest.param(spec(parameters={"a": "1", "b": "2"}), spec(parameters={"b": "2", "a": "1"}), True,
                     id="key order does not matter"),
        pytest.param(spec(), spec(tags=None), True, id="an explicit null equals an absent field"),
        pytest.param(spec(registrationId="r1"), spec(registrationId="r2"), False,
                     id="a new registrationId is a new registration"),
    ],
)  # fmt: skip
def test_spec_hash(a: JobDefinitionSpec, b: JobDefinitionSpec, same: bool) -> None:
    assert (spec_hash(a) == spec_hash(b)) is same


def test_spec_hash_is_short_hex() -> None:
    digest = spec_hash(spec())

    assert len(digest) == 16 and int(digest, 16) >= 0


# --- record_revisions -------------------------------------------------------------------------


def test_first_sight_records_revision_1_active_with_a_spec_copy() -> None:
    jd = a_definition().generation(3).build()

    status = record_revisions(jd, T1)

    assert status is not None
    assert (status.latestRevision, status.observedGeneration) == (1, 3)
    assert status.revisions is not None
    (rev,) = status.revisions
    assert (rev.revision, rev.state, rev.createdAt, rev.specHash) == (1, "ACTIVE", T1, spec_hash(jd.spec))
    assert rev.spec == jd.spec


@pytest.mark.parametrize(
    ("definition", "why"),
    [
        pytest.param(a_definition().recorded(), "same spec, same generation", id="unchanged: nothing to write"),
        pytest.param(a_definition().generation(None).recorded(), "no generation", id="unchanged without generation"),
        pytest.param(a_definition().deregistering(5).recorded(), "unknown revision deregistered",
                     id="deregistering a revision that does not exist changes nothing"),
    ],
)  # fmt: skip
def test_unchanged_definition_writes_nothing(definition: DefB, why: str) -> None:
    assert record_revisions(definition.build(), T2) is None, why


def test_a_changed_spec_is_revision_n_plus_1_and_older_ones_stay() -> None:
    jd = a_definition().recorded(T1).with_image("busybox:2").generation(2)

    status = record_revisions(jd.build(), T2)

    assert revisions_of(status) == [(1, "ACTIVE", "busybox"), (2, "ACTIVE", "busybox:2")]
    assert status is not None and status.revisions is not None
    assert (status.latestRevision, status.observedGeneration) == (2, 2)
    assert [r.createdAt for r in status.revisions] == [T1, T2]


def test_a_spec_changed_back_is_a_new_revision_too() -> None:
    """AWS: every registration is a new revision, even with an earlier revision's contents."""
    jd = a_definition().with_revisions("busybox", "busybox:2", "busybox")

    assert revisions_of(jd.status) == [
        (1, "ACTIVE", "busybox"),
        (2, "ACTIVE", "busybox:2"),
        (3, "ACTIVE", "busybox"),
    ]


def test_a_spec_changed_and_back_while_unseen_is_still_a_new_revision() -> None:
    """A -> B -> A seen only as the final A (generation 1 -> 3): AWS made two registrations, and
    the API server's generation says the spec changed, so the final spec is a new revision."""
    jd = a_definition().recorded().generation(3)

    status = record_revisions(jd.build(), T2)

    assert status is not None
    assert (status.observedGeneration, status.latestRevision) == (3, 2)
    assert revisions_of(status) == [(1, "ACTIVE", "busybox"), (2, "ACTIVE", "busybox")]


def test_registering_an_identical_spec_again_is_a_new_revision() -> None:
    """AWS: "Any subsequent job definitions that are registered with that name are given an
    incremental revision number", identical or not. The gateway's RegisterJobDefinition sets a
    fresh registrationId per call; the recorded copies do not carry it."""
    jd = a_definition().with_field("registrationId", "r1").recorded(T1)
    jd = jd.with_field("registrationId", "r2").generation(2).recorded(T2)

    assert revisions_of(jd.status) == [(1, "ACTIVE", "busybox"), (2, "ACTIVE", "busybox")]
    assert jd.status is not None and jd.status.revisions is not None
    assert [r.spec.registrationId for r in jd.status.revisions if r.spec] == [None, None]
    assert record_revisions(jd.build(), T3) is None, "the same registration seen again is no revision"


def test_a_restart_that_sees_the_recorded_generation_makes_no_revision() -> None:
    jd = a_definition().generation(5).recorded()

    assert record_revisions(jd.build(), T2) is None


@pytest.mark.parametrize(
    ("inactive", "expected"),
    [
        pytest.param((1,), ["INACTIVE", "ACTIVE", "ACTIVE"], id="deregister revision 1"),
        pytest.param((1, 3), ["INACTIVE", "ACTIVE", "INACTIVE"], id="deregister the latest too"),
        pytest.param((1, 2, 3), ["INACTIVE", "INACTIVE", "INACTIVE"], id="deregister every revision"),
    ],
)
def test_inactive_revisions_mark_revisions_inactive(inactive: tuple[int, ...], expected: list[str]) -> None:
    jd = a_definition().with_revisions("a", "b", "c").deregistering(*inactive).generation(4)

    status = record_revisions(jd.build(), T3)

    assert status is not None
    assert [r.state for r in status.revisions or []] == expected
    assert status.latestRevision == 3  # deregistering is not a new revision


def test_removing_a_revision_from_inactive_revisions_reactivates_it() -> None:
    jd = a_definition().with_revisions("a", "b", inactive=(1,))
    assert [r.state for r in jd.status.revisions or []] == ["INACTIVE", "ACTIVE"]  # type: ignore[union-attr]

    status = record_revisions(jd.deregistering().generation(9).build(), T3)

    assert status is not None
    assert [r.state for r in status.revisions or []] == ["ACTIVE", "ACTIVE"]


def test_deregistering_the_revision_being_created_records_it_inactive() -> None:
    jd = a_definition().recorded().with_image("b").deregistering(2).generation(2)

    status = record_revisions(jd.build(), T2)

    assert revisions_of(status) == [(1, "ACTIVE", "busybox"), (2, "INACTIVE", "b")]


def test_the_recorded_spec_copy_has_no_inactive_revisions() -> None:
    jd = a_definition().recorded().with_image("b").deregistering(1).generation(2)

    status = record_revisions(jd.build(), T2)

    assert status is not None and status.revisions is not None
    assert status.revisions[-1].spec is not None
    assert status.revisions[-1].spec.inactiveRevisions is None


def test_the_recorded_spec_is_a_copy_not_the_live_spec() -> None:
    jd = a_definition().build()
    status = record_revisions(jd, T1)
    assert status is not None and status.revisions is not None
    copy = status.revisions[0].spec
    assert (
        copy is not None and copy.containerProperties is not None and jd.spec.containerProperties is not None
    )

    jd.spec.containerProperties.image = "mutated"

    assert copy.containerProperties.image == "busybox"


def test_record_revisions_does_not_mutate_the_definition() -> None:
    jd = a_definition().recorded().with_image("b").deregistering(1).generation(2).build()
    before = jd.model_dump()

    record_revisions(jd, T2)

    assert jd.model_dump() == before


def test_a_recorded_status_survives_a_round_trip_through_the_api() -> None:
    """The status is written as JSON and read back: recording again must then be a no-op."""
    jd = a_definition().with_revisions("a", "b", inactive=(1,))
    body = jd.build().to_body()

    again = record_revisions(JobDefinition.from_body(body), T3)

    assert again is None


# --- resolve ------------------------------------------------------------------------------------

ABC = a_definition().with_revisions("a", "b", "c")  # revisions 1, 2, 3, all ACTIVE
ABC_2_3_OFF = a_definition().with_revisions("a", "b", "c", inactive=(2, 3))
ALL_OFF = a_definition().with_revisions("a", "b", inactive=(1, 2))


@pytest.mark.parametrize(
    ("definition", "ref", "pinned", "expected"),
    [
        pytest.param(ABC, "d", None, (3, "c"), id="AWS: name alone is the latest ACTIVE revision"),
        pytest.param(ABC_2_3_OFF, "d", None, (1, "a"), id="name alone skips INACTIVE revisions"),
        pytest.param(ABC, "d:2", None, (2, "b"), id="AWS: name:revision is that revision"),
        pytest.param(ABC, "d:1", None, (1, "a"), id="name:1 is the first revision"),
        pytest.param(ABC, "d", 2, (2, "b"), id="the pinned revision wins over the latest"),
        pytest.param(ABC, "d:3", 1, (1, "a"), id="the pinned revision wins over the reference"),
        pytest.param(ABC_2_3_OFF, "d", 3, (3, "c"), id="AWS: a submitted job keeps its revision even INACTIVE"),
        pytest.param(ABC_2_3_OFF, "d:2", 2, (2, "b"), id="pinned explicit INACTIVE revision still runs"),
        pytest.param(ABC_2_3_OFF, "d:2", None, "JobDefinition d:2 is INACTIVE",
                     id="a new job can't name an INACTIVE revision"),
        pytest.param(ALL_OFF, "d", None, "JobDefinition d has no ACTIVE revision", id="no ACTIVE revision left"),
        pytest.param(ABC, "d:4", None, "JobDefinition d has no revision 4", id="a revision that does not exist"),
        pytest.param(ABC, "d", 9, "JobDefinition d has no revision 9", id="a pinned revision that vanished"),
        pytest.param(None, "d", None, "JobDefinition d does not exist in the job's namespace",
                     id="no such definition"),
        pytest.param(None, "d:2", None, "JobDefinition d does not exist in the job's namespace",
                     id="no such definition, the revision is not in the name"),
        pytest.param(a_definition(), "d", None, "JobDefinition d has no recorded revision yet",
                     id="a definition the operator has not recorded yet"),
    ],
)  # fmt: skip
def test_resolve(
    definition: DefB | None, ref: str, pinned: int | None, expected: tuple[int, str] | str
) -> None:
    result = resolve(definition.build() if definition else None, ref, pinned)

    if isinstance(expected, str):
        assert result == expected
    else:
        assert not isinstance(result, str)
        revision, resolved = result
        assert resolved.containerProperties is not None
        assert (revision, resolved.containerProperties.image) == expected


def test_resolve_a_revision_without_a_recorded_spec() -> None:
    jd = ABC.build()
    assert jd.status is not None and jd.status.revisions is not None
    jd.status.revisions[1].spec = None

    assert resolve(jd, "d:2", None) == "JobDefinition d:2 has no recorded spec"


def test_resolve_runs_the_recorded_spec_not_the_live_one() -> None:
    """The live spec may already be revision 4's; a job on revision 2 runs revision 2's copy."""
    jd = ABC.with_image("live").build()  # spec changed, not yet recorded

    result = resolve(jd, "d", None)

    assert not isinstance(result, str)
    assert result[1].containerProperties is not None
    assert (result[0], result[1].containerProperties.image) == (3, "c")


# --- AWS's 24 KiB job definition size quota (issue 11 item 12) -----------------------------------

HUGE = {"parameters": {f"p{i}": "x" * 200 for i in range(130)}}  # ~27 KiB of parameters


def test_a_definition_over_24_kib_records_no_revision_and_says_why() -> None:
    jd = a_definition().with_field("parameters", HUGE["parameters"]).generation(1)

    status = record_revisions(jd.build(), T1)

    assert status is not None and not status.revisions
    [condition] = status.conditions or []
    assert (condition.type, condition.status, condition.reason) == (
        "Registered",
        "False",
        "DefinitionTooLarge",
    )
    assert "over the maximum job definition size of 24 KiB" in (condition.message or "")
    # A job naming it fails with that reason instead of "no recorded revision yet".
    refused = resolve(jd.build().model_copy(update={"status": status}), "d", None)
    assert isinstance(refused, str) and "24 KiB" in refused
    # Written once: the same refusal again changes nothing.
    again = jd.build().model_copy(update={"status": status})
    assert record_revisions(again, T2) is None


def test_an_oversized_edit_keeps_the_earlier_revision_and_a_fix_clears_the_refusal() -> None:
    jd = a_definition().recorded(T1)
    big = replace(jd, extra=(("parameters", HUGE["parameters"]),), gen=2).recorded(T2)
    assert big.status is not None and revisions_of(big.status) == [(1, "ACTIVE", "busybox")]
    assert resolve(big.build(), "d", None) == (1, spec("busybox"))

    fixed = replace(big, extra=(), image="busybox:2", gen=3).recorded(T3)

    assert fixed.status is not None and not fixed.status.conditions
    assert revisions_of(fixed.status)[-1] == (2, "ACTIVE", "busybox:2")


def test_a_stray_number_in_inactive_revisions_does_not_hide_later_unseen_edits() -> None:
    jd = a_definition().with_revisions("a", "b")  # generation 2, revisions 1 and 2
    deregistered = jd.deregistering(1, 99).generation(3).recorded(T3)  # 99 does not exist
    assert deregistered.status is not None and deregistered.status.latestRevision == 2
    edited = deregistered.generation(5).recorded(T3)  # a spec edit and back, unseen
    assert edited.status is not None and edited.status.latestRevision == 3
