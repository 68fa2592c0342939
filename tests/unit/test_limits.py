"""AWS's size quotas (core.limits): what is counted, the exact limits, and the admission rule."""

from __future__ import annotations

import json
from typing import Any

import pytest

from batchyard.api.batchjob import BatchJobSpec
from batchyard.api.jobdefinition import JobDefinitionSpec
from batchyard.core import limits
from batchyard.core.limits import MAX_DEFINITION_BYTES, MAX_SUBMISSION_BYTES, admission_problem

JOB_BASE: dict[str, Any] = {"jobQueue": "q", "jobDefinition": "d"}
DEF_BASE: dict[str, Any] = {"type": "container", "containerProperties": {"image": "busybox"}}


def compact(data: Any) -> int:
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def obj(kind: str, spec: dict[str, Any], name: str = "x", namespace: str = "team") -> dict[str, Any]:
    return {
        "apiVersion": "batchyard.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


# --- what is counted ---------------------------------------------------------------------------

# The same spec with one ASCII character as a parameter value.
ONE_CHAR_JOB = compact({**JOB_BASE, "parameters": {"p": "e"}})
ONE_CHAR_DEF = compact({**DEF_BASE, "parameters": {"p": "e"}})

SUBMISSIONS = [
    # (case, spec, bytes counted)
    ("minimal", JOB_BASE, compact(JOB_BASE)),
    ("later requests are not the submission", {**JOB_BASE, "cancel": {"reason": "r" * 1000}}, compact(JOB_BASE)),
    ("terminate is not counted", {**JOB_BASE, "terminate": {"reason": "t" * 99}}, compact(JOB_BASE)),
    ("childRequests are not counted", {**JOB_BASE, "arrayProperties": {"size": 2},
                                       "childRequests": [{"index": 0, "action": "CANCEL", "reason": "r"}]},
     compact({**JOB_BASE, "arrayProperties": {"size": 2}})),
    ("a 2-byte character counts 2", {**JOB_BASE, "parameters": {"p": "é"}}, ONE_CHAR_JOB + 1),
    ("a 4-byte character counts 4", {**JOB_BASE, "parameters": {"p": "😀"}}, ONE_CHAR_JOB + 3),
]  # fmt: skip


@pytest.mark.parametrize(("case", "spec", "expected"), SUBMISSIONS, ids=[c[0] for c in SUBMISSIONS])
def test_what_a_submission_counts(case: str, spec: dict[str, Any], expected: int) -> None:
    assert limits.submission_bytes(BatchJobSpec.model_validate(spec)) == expected


DEFINITIONS = [
    ("minimal", DEF_BASE, compact(DEF_BASE)),
    ("deregistered revisions are not a registration", {**DEF_BASE, "inactiveRevisions": [1, 2, 3]},
     compact(DEF_BASE)),
    ("a 3-byte character counts 3", {**DEF_BASE, "parameters": {"p": "€"}}, ONE_CHAR_DEF + 2),
]  # fmt: skip


@pytest.mark.parametrize(("case", "spec", "expected"), DEFINITIONS, ids=[c[0] for c in DEFINITIONS])
def test_what_a_definition_counts(case: str, spec: dict[str, Any], expected: int) -> None:
    assert limits.definition_bytes(JobDefinitionSpec.model_validate(spec)) == expected


def test_fields_left_unset_are_not_counted_as_defaults_or_nulls() -> None:
    spec = BatchJobSpec.model_validate({**JOB_BASE, "parameters": None})
    assert limits.submission_bytes(spec) == compact(JOB_BASE)


# --- the limits, exactly -----------------------------------------------------------------------

LIMITS = [
    # (case, kind, size, char, refused)
    ("submission one byte under", "BatchJob", MAX_SUBMISSION_BYTES - 1, "x", False),
    ("submission exactly 30 KiB", "BatchJob", MAX_SUBMISSION_BYTES, "x", False),
    ("submission one byte over", "BatchJob", MAX_SUBMISSION_BYTES + 1, "x", True),
    ("definition exactly 24 KiB", "JobDefinition", MAX_DEFINITION_BYTES, "x", False),
    ("definition one byte over", "JobDefinition", MAX_DEFINITION_BYTES + 1, "x", True),
    # 10,000 two-byte characters are 10,000 characters but over 20,000 bytes: bytes count.
    ("definition of 2-byte characters over by bytes", "JobDefinition", MAX_DEFINITION_BYTES + 2, "é", True),
    ("submission of 2-byte characters at the limit", "BatchJob", MAX_SUBMISSION_BYTES, "é", False),
]  # fmt: skip


def _size_for(kind: str, size: int, char: str) -> dict[str, Any]:
    """A valid spec of exactly ``size`` counted bytes: parameters of ``char`` (1 to 4 bytes in
    UTF-8; a parameter value is at most 4,096 characters), topped up with one-byte characters."""
    base = JOB_BASE if kind == "BatchJob" else DEF_BASE
    width = len(char.encode("utf-8"))
    params: dict[str, str] = {}
    while True:
        key = f"p{len(params):03d}"
        room = size - compact({**base, "parameters": {**params, key: ""}})
        if room <= 1000 * width:
            count = room // width
            params[key] = char * count + "x" * (room - count * width)
            break
        params[key] = char * 1000
    spec = {**base, "parameters": params}
    assert compact(spec) == size
    return spec


@pytest.mark.parametrize(("case", "kind", "size", "char", "refused"), LIMITS, ids=[c[0] for c in LIMITS])
def test_the_limit_is_inclusive_and_counts_bytes(
    case: str, kind: str, size: int, char: str, refused: bool
) -> None:
    spec = _size_for(kind, size, char)
    if kind == "BatchJob":
        problem = limits.submission_problem(BatchJobSpec.model_validate(spec))
    else:
        problem = limits.definition_problem(JobDefinitionSpec.model_validate(spec))
    assert (problem is not None) == refused
    assert admission_problem(kind, obj(kind, spec)) == (
        None if problem is None else f"{kind} team/x: {problem[0].lower()}{problem[1:]}"
    )


def test_the_messages_name_the_object_the_size_and_aws_s_limit() -> None:
    job = _size_for("BatchJob", 31512, "x")
    assert admission_problem("BatchJob", obj("BatchJob", job, "big", "default")) == (
        "BatchJob default/big: job payload of 31,512 bytes is over the maximum job payload size "
        "of 30 KiB (30,720 bytes, AWS Batch SubmitJob quota)"
    )
    definition = _size_for("JobDefinition", 25000, "x")
    assert admission_problem("JobDefinition", obj("JobDefinition", definition, "d", "ns")) == (
        "JobDefinition ns/d: job definition of 25,000 bytes is over the maximum job definition "
        "size of 24 KiB (24,576 bytes, AWS Batch RegisterJobDefinition quota)"
    )
    # The operator's own refusal (statusReason, condition) is the same sentence without the name.
    assert limits.submission_problem(BatchJobSpec.model_validate(job)) == (
        "Job payload of 31,512 bytes is over the maximum job payload size of 30 KiB "
        "(30,720 bytes, AWS Batch SubmitJob quota)"
    )


# --- the admission rule: CREATE and UPDATE -----------------------------------------------------

BIG_JOB = _size_for("BatchJob", MAX_SUBMISSION_BYTES + 100, "x")
BIG_DEF = _size_for("JobDefinition", MAX_DEFINITION_BYTES + 100, "x")
SMALL_DEF = DEF_BASE


def with_meta(o: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {**o, "metadata": {**o["metadata"], **meta}}


ADMISSIONS = [
    # (case, kind, new object, old object or None, refused)
    ("create over the limit", "BatchJob", obj("BatchJob", BIG_JOB), None, True),
    ("create within the limit", "BatchJob", obj("BatchJob", JOB_BASE), None, False),
    ("an edit that grows a definition over the limit", "JobDefinition",
     obj("JobDefinition", BIG_DEF), obj("JobDefinition", SMALL_DEF), True),
    ("an edit that shrinks an oversized definition", "JobDefinition",
     obj("JobDefinition", SMALL_DEF), obj("JobDefinition", BIG_DEF), False),
    ("an edit of an oversized definition that stays oversized", "JobDefinition",
     obj("JobDefinition", {**BIG_DEF, "timeout": {"attemptDurationSeconds": 60}}),
     obj("JobDefinition", BIG_DEF), True),
    # An object stored while the webhook was off must never get stuck: metadata writes (labels,
    # finalizers), deregistration and cancel/terminate requests go through.
    ("a label on an oversized job", "BatchJob",
     with_meta(obj("BatchJob", BIG_JOB), labels={"a": "b"}), obj("BatchJob", BIG_JOB), False),
    ("removing a finalizer from an oversized definition", "JobDefinition",
     obj("JobDefinition", BIG_DEF), with_meta(obj("JobDefinition", BIG_DEF), finalizers=["f"]), False),
    ("cancelling an oversized job", "BatchJob",
     obj("BatchJob", {**BIG_JOB, "cancel": {"reason": "stop"}}), obj("BatchJob", BIG_JOB), False),
    ("deregistering a revision of an oversized definition", "JobDefinition",
     obj("JobDefinition", {**BIG_DEF, "inactiveRevisions": [1]}), obj("JobDefinition", BIG_DEF), False),
    # The models refuse it (an unknown field): the raw spec is measured, the operator reports it.
    ("an invalid oversized spec is still refused for its size", "BatchJob",
     obj("BatchJob", {**BIG_JOB, "unknownField": 1}), None, True),
    ("an invalid small spec is left to the schema and the operator", "BatchJob",
     obj("BatchJob", {"jobQueue": "q"}), None, False),
    ("a kind the rule does not know", "JobQueue", obj("JobQueue", {"x": "y" * 40000}), None, False),
    ("no spec at all", "BatchJob", {"metadata": {"name": "x"}}, None, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "kind", "new", "old", "refused"), ADMISSIONS, ids=[c[0] for c in ADMISSIONS]
)
def test_the_admission_rule(
    case: str, kind: str, new: dict[str, Any], old: dict[str, Any] | None, refused: bool
) -> None:
    problem = admission_problem(kind, new, old)
    assert (problem is not None) == refused, problem
    if refused:
        assert problem is not None and problem.startswith(f"{kind} team/x: ")
        assert ("30 KiB" if kind == "BatchJob" else "24 KiB") in problem


def test_a_generated_name_is_named_as_the_user_wrote_it() -> None:
    o = {"metadata": {"generateName": "run-", "namespace": "ns"}, "spec": BIG_JOB}
    assert (admission_problem("BatchJob", o) or "").startswith("BatchJob ns/run-: job payload of ")


def test_the_operator_and_the_webhook_count_the_same_bytes() -> None:
    """One rule: the size in the webhook's refusal is the size the operator's backstop reports."""
    spec = {**BIG_JOB, "tags": {"k": "ü" * 10}, "cancel": {"reason": "r"}}
    webhook = admission_problem("BatchJob", obj("BatchJob", spec)) or ""
    operator = limits.submission_problem(BatchJobSpec.model_validate(spec)) or ""
    assert operator and webhook.endswith(operator[0].lower() + operator[1:])
