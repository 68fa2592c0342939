"""AWS Batch's size quotas on what a user submits: one rule, two enforcers.

AWS (User Guide, "AWS Batch service quotas", fixed quotas): "Maximum job payload size (for
SubmitJob API operations) 30 KiB" and "Maximum job definition size (for RegisterJobDefinition
API operations) 24 KiB". A SubmitJob or RegisterJobDefinition request over the limit is refused.

What is counted, the closest Kubernetes reading of "payload" and "definition": the object's
``spec`` as the API server stores it (the fields the user set, after the CRD's defaults, no
nulls), as compact JSON (no spaces, the keys as stored) encoded in UTF-8, so a non-ASCII
character counts its UTF-8 bytes. Left out is what is not part of the submission or the
registration: a BatchJob's later requests (``cancel``, ``terminate``, ``childRequests``) and a
JobDefinition's ``inactiveRevisions`` (DeregisterJobDefinition, not a registration) and
``registrationId`` (the gateway's per-call marker, not the user's); metadata
(name, labels, annotations) and status are never counted. 1 KiB is 1,024 bytes.

The enforcers: the validating admission webhook (``handlers.operator``, the API server refuses
the object, ``admission_problem``), and the operator itself as the backstop for objects admitted
while the webhook was off or unreachable (its failurePolicy is Ignore): such a job goes FAILED
(``core.lifecycle``) and such a definition records no revision (``core.revisions``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from batchyard.api.batchjob import BatchJobSpec
from batchyard.api.jobdefinition import JobDefinitionSpec

MAX_SUBMISSION_BYTES: Final = 30 * 1024
MAX_DEFINITION_BYTES: Final = 24 * 1024

# Fields of a spec that are not part of the submission / registration AWS measures.
SUBMISSION_EXCLUDED: Final = frozenset({"cancel", "terminate", "childRequests"})
DEFINITION_EXCLUDED: Final = frozenset({"inactiveRevisions", "registrationId"})


def json_size(data: Any) -> int:
    """Bytes of ``data`` as compact JSON in UTF-8 (the keys in their given order)."""
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _counted(spec: BaseModel, excluded: frozenset[str]) -> dict[str, Any]:
    data: dict[str, Any] = spec.model_dump(
        mode="json", exclude_unset=True, exclude_none=True, exclude=set(excluded)
    )
    return data


def submission_bytes(spec: BatchJobSpec) -> int:
    """The size of a BatchJob's submission as AWS's SubmitJob quota counts it."""
    return json_size(_counted(spec, SUBMISSION_EXCLUDED))


def definition_bytes(spec: JobDefinitionSpec) -> int:
    """The size of a JobDefinition as AWS's RegisterJobDefinition quota counts it."""
    return json_size(_counted(spec, DEFINITION_EXCLUDED))


def _lead(subject: str | None, what: str) -> str:
    return f"{subject}: {what.lower()}" if subject else what


def submission_message(size: int, subject: str | None = None) -> str | None:
    """None when ``size`` bytes are within the SubmitJob quota, else the refusal naming it."""
    if size <= MAX_SUBMISSION_BYTES:
        return None
    return (
        f"{_lead(subject, 'Job payload')} of {size:,} bytes is over the maximum job payload size "
        f"of 30 KiB ({MAX_SUBMISSION_BYTES:,} bytes, AWS Batch SubmitJob quota)"
    )


def definition_message(size: int, subject: str | None = None) -> str | None:
    """None when ``size`` bytes are within the RegisterJobDefinition quota, else the refusal."""
    if size <= MAX_DEFINITION_BYTES:
        return None
    return (
        f"{_lead(subject, 'Job definition')} of {size:,} bytes is over the maximum job definition "
        f"size of 24 KiB ({MAX_DEFINITION_BYTES:,} bytes, AWS Batch RegisterJobDefinition quota)"
    )


def submission_problem(spec: BatchJobSpec, subject: str | None = None) -> str | None:
    """Why a BatchJob's spec is over AWS's SubmitJob payload quota, or None."""
    return submission_message(submission_bytes(spec), subject)


def definition_problem(spec: JobDefinitionSpec, subject: str | None = None) -> str | None:
    """Why a JobDefinition's spec is over AWS's RegisterJobDefinition quota, or None."""
    return definition_message(definition_bytes(spec), subject)


# --- the admission rule (what the webhook asks) --------------------------------------------------

_KINDS: Final[dict[str, tuple[type[BaseModel], frozenset[str], Any]]] = {
    "BatchJob": (BatchJobSpec, SUBMISSION_EXCLUDED, submission_message),
    "JobDefinition": (JobDefinitionSpec, DEFINITION_EXCLUDED, definition_message),
}


def _counted_raw(kind: str, spec: Any) -> dict[str, Any]:
    """The counted part of a spec as the API server sent it: through the model when it is valid
    (exactly what the operator counts), else the raw mapping without the excluded fields (the
    operator refuses an invalid object anyway; its size is still worth refusing first)."""
    model, excluded, _message = _KINDS[kind]
    if not isinstance(spec, Mapping):
        return {}
    try:
        return _counted(model.model_validate(spec), excluded)
    except ValidationError:
        return {k: v for k, v in spec.items() if k not in excluded and v is not None}


def admission_problem(kind: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> str | None:
    """Why the API server must refuse this CREATE or UPDATE of a BatchJob or JobDefinition, or None.

    ``obj`` is the object in the admission request, ``old`` the stored object of an UPDATE.
    An UPDATE is refused only when it changes the counted part of the spec: metadata edits
    (labels, finalizers), a BatchJob's cancel/terminate request and any write to an object that
    was admitted before the limit was enforced go through, so nothing already stored is stuck.
    Status is a subresource and never comes here.
    """
    if kind not in _KINDS:
        return None
    counted = _counted_raw(kind, obj.get("spec"))
    if old is not None and _counted_raw(kind, old.get("spec")) == counted:
        return None
    meta = obj.get("metadata") or {}
    namespace, name = meta.get("namespace") or "", meta.get("name") or meta.get("generateName") or ""
    subject = f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
    message: str | None = _KINDS[kind][2](json_size(counted), subject)
    return message
