"""Job definition revisions: which revision a job runs, and when a definition gets a new one.

Why this exists: AWS job definitions are immutable revisions (RegisterJobDefinition makes
revision N+1; a submitted job keeps the revision it was submitted with). A Kubernetes object has
one mutable spec, so the operator records every spec change as a revision in the
JobDefinition's status, with a full copy, and jobs pin a revision number at submission.

What counts as a spec change: the API server bumps ``metadata.generation`` on every change of
the spec, so a generation the status has not observed yet is a new revision even when the spec
now hashes like the latest revision (A -> B -> A seen only as the final A, say while the
operator was down or the watch coalesced the edits: AWS would have made two registrations). The
one exception is an edit of ``inactiveRevisions`` alone (deregistration is bookkeeping, not a
registration): a generation bump whose spec hashes like the latest revision and whose
inactiveRevisions differ from the recorded states makes no revision. Re-registering an identical
spec (the gateway's RegisterJobDefinition) is a new revision because it carries a new
``registrationId``, which the hash includes. What an unseen
intermediate spec (B) contained is lost; only the count and the final spec are recorded.
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

from batchyard.api.common import Condition
from batchyard.api.jobdefinition import (
    JobDefinition,
    JobDefinitionRevision,
    JobDefinitionSpec,
    JobDefinitionStatus,
)
from batchyard.core import limits

TOO_LARGE_CONDITION: Final = "Registered"


def definition_size_problem(spec: JobDefinitionSpec) -> str | None:
    """Why a spec can't be registered as a revision (over AWS's 24 KiB quota, core.limits), or None."""
    problem = limits.definition_problem(spec)
    return None if problem is None else f"{problem}: no revision was recorded"


def spec_hash(spec: JobDefinitionSpec) -> str:
    # inactiveRevisions is bookkeeping, not part of what a job runs. registrationId is hashed: a
    # new one is a new registration (AWS: every RegisterJobDefinition is a revision).
    data = spec.model_dump(mode="json", exclude_none=True, exclude={"inactiveRevisions"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def record_revisions(jd: JobDefinition, now_iso: str) -> JobDefinitionStatus | None:
    """The definition's new status if its spec is a new revision or revision states changed.

    A spec over AWS's 24 KiB limit is refused as RegisterJobDefinition refuses it: no revision is
    recorded (jobs keep resolving to the earlier revisions) and a ``Registered=False`` condition
    with reason ``DefinitionTooLarge`` says why; it is cleared once a spec is recorded again.
    """
    status = jd.status.model_copy(deep=True) if jd.status else JobDefinitionStatus()
    too_large = definition_size_problem(jd.spec)
    previous = [c for c in status.conditions or [] if c.type == TOO_LARGE_CONDITION]
    if too_large is not None:
        if (
            previous
            and previous[0].message == too_large
            and status.observedGeneration == jd.metadata.generation
        ):
            return None
        status.conditions = [
            *(c for c in status.conditions or [] if c.type != TOO_LARGE_CONDITION),
            Condition(
                type=TOO_LARGE_CONDITION,
                status="False",
                reason="DefinitionTooLarge",
                message=too_large,
                lastTransitionTime=now_iso,
            ),
        ]
        status.observedGeneration = jd.metadata.generation
        return status
    if previous:
        status.conditions = [c for c in status.conditions or [] if c.type != TOO_LARGE_CONDITION] or None
    revisions = list(status.revisions or [])
    digest = spec_hash(jd.spec)
    changed = False
    latest = revisions[-1] if revisions else None
    inactive = set(jd.spec.inactiveRevisions or [])
    unseen_edit = (
        latest is not None
        and jd.metadata.generation is not None
        and status.observedGeneration is not None
        and jd.metadata.generation > status.observedGeneration
        # an edit of inactiveRevisions alone is a deregistration, not a registration
        and inactive & {r.revision for r in revisions}
        == {r.revision for r in revisions if r.state == "INACTIVE"}
    )
    if latest is None or latest.specHash != digest or unseen_edit:
        # AWS: registering a changed definition makes revision N+1; older revisions stay usable.
        number = (latest.revision if latest else 0) + 1
        revisions.append(
            JobDefinitionRevision(
                revision=number,
                specHash=digest,
                state="ACTIVE",
                createdAt=now_iso,
                spec=jd.spec.model_copy(
                    update={"inactiveRevisions": None, "registrationId": None}, deep=True
                ),
            )
        )
        changed = True
    for i, rev in enumerate(revisions):
        state = "INACTIVE" if rev.revision in inactive else "ACTIVE"
        if rev.state != state:
            revisions[i] = rev.model_copy(update={"state": state})
            changed = True
    if jd.metadata.generation is not None and status.observedGeneration != jd.metadata.generation:
        status.observedGeneration = jd.metadata.generation
        changed = True
    changed = changed or bool(previous)
    if not changed:
        return None
    status.revisions = revisions
    status.latestRevision = revisions[-1].revision
    return status


def resolve(jd: JobDefinition | None, ref: str, pinned: int | None) -> tuple[int, JobDefinitionSpec] | str:
    """(revision, spec) a job runs, or why it can't run.

    ``ref`` is the job's spec.jobDefinition (``name`` or ``name:revision``); ``pinned`` the
    revision recorded at submission, which always wins (AWS: a job keeps its revision).
    """
    name, _, rev_text = ref.partition(":")
    if jd is None:
        return f"JobDefinition {name} does not exist in the job's namespace"
    revisions = (jd.status.revisions if jd.status else None) or []
    if not revisions:
        refused = [
            c for c in (jd.status.conditions if jd.status else None) or [] if c.type == TOO_LARGE_CONDITION
        ]
        if refused:
            return f"JobDefinition {name}: {refused[0].message}"
        return f"JobDefinition {name} has no recorded revision yet"
    wanted = pinned if pinned is not None else (int(rev_text) if rev_text else None)
    if wanted is None:
        # AWS: "name" without a revision means the latest ACTIVE revision.
        active = [r for r in revisions if r.state == "ACTIVE"]
        if not active:
            return f"JobDefinition {name} has no ACTIVE revision"
        chosen = active[-1]
    else:
        found = [r for r in revisions if r.revision == wanted]
        if not found:
            return f"JobDefinition {name} has no revision {wanted}"
        chosen = found[0]
        if pinned is None and chosen.state != "ACTIVE":
            return f"JobDefinition {name}:{wanted} is INACTIVE"
    if chosen.spec is None:
        return f"JobDefinition {name}:{chosen.revision} has no recorded spec"
    return chosen.revision, chosen.spec
