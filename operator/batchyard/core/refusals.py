"""Why the API server refused an attempt's pod, and whether asking again can ever help.

Kubernetes' own admission is the control over what a job may do (Pod Security, admission
webhooks, ValidatingAdmissionPolicies, ResourceQuota, LimitRange), and the operator works with
it rather than around it. A refused pod create falls in one of two classes:

* permanent -- the same pod will be refused again until someone changes the job definition or
  the namespace's policy: Pod Security ("violates PodSecurity"), an admission webhook or policy
  denial, a spec the API server calls invalid (400/422), a namespace being deleted. The attempt
  ends at once: the job (or array child) is FAILED with a statusReason quoting the refusal and is
  not retried. # AWS (User Guide, "Automated job retries"): "jobs that fail because of an
  invalid job definition aren't retried".
* transient -- the refusal may clear by itself: a ResourceQuota that is full ("exceeded quota"),
  API priority and fairness throttling (429), a server or webhook failure (5xx), a timeout, the
  operator's own RBAC (an administrator can fix it without touching the job). The job stays
  RUNNABLE at the head of its queue with a reason, the create is retried with a per-job
  exponential backoff (``core.backoff``), and the wait is a head-of-queue block that
  ``jobStateTimeLimitActions`` can act on (``core.scheduler``).

Pure: a status code and the Status message in, a ``Refusal`` out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Batchyard waiting reasons for a pod the API server refused for now (see core.scheduler: the job
# says why; a JobQueue's jobStateTimeLimitActions may name them to cancel a job waiting too long).
WAITING_RESOURCE_QUOTA: Final = "WAITING:RESOURCE_QUOTA"
WAITING_POD_CREATE: Final = "WAITING:POD_CREATE"
# AWS "Jobs stuck in a RUNNABLE status": the service role (here: the operator's RBAC) lacks a
# permission. The same code as core.scheduler.SERVICE_ROLE_PERMISSIONS.
SERVICE_ROLE_PERMISSIONS: Final = "MISCONFIGURATION:SERVICE_ROLE_PERMISSIONS"
# The code of a permanent refusal (also the start of its statusReason).
POD_REJECTED: Final = "Invalid job definition: pod rejected"

STATUS_REASON_LIMIT: Final = 1024


@dataclass(frozen=True, slots=True)
class Refusal:
    """What to do about one refused pod create."""

    permanent: bool
    code: str  # WAITING_* / SERVICE_ROLE_PERMISSIONS when transient; POD_REJECTED when permanent
    status_reason: str  # the job's statusReason, quoting the API server

    @property
    def transient(self) -> bool:
        return not self.permanent


# Message fragments of refusals that will not change by themselves, whatever the status code
# (Pod Security answers 403, a webhook chooses its code, a ValidatingAdmissionPolicy 403 or 422).
_PERMANENT_MARKERS: Final = (
    "violates podsecurity",  # Pod Security admission (enforce level of the namespace)
    "denied the request",  # admission webhook "<name>" denied the request: ...
    "validatingadmissionpolicy",  # ValidatingAdmissionPolicy '<name>' ... denied request
    "denied request",
    "because it is being terminated",  # namespace deletion: the job goes with it
    "must be no greater than",  # LimitRange maximum
    "must be no less than",  # LimitRange minimum
    "minimum cpu usage",  # LimitRange per-pod/container minimum
    "maximum cpu usage",
    "minimum memory usage",
    "maximum memory usage",
)
# ResourceQuota: "exceeded quota: <name>, requested: ..., used: ..., limited: ...", or a quota
# not yet computed ("status unknown for quota"). Both clear when usage or the quota changes.
_QUOTA_MARKERS: Final = ("exceeded quota", "status unknown for quota")


def classify_pod_refusal(status: int, message: str) -> Refusal:
    """The class of a pod create refused with HTTP ``status`` and Status ``message``.

    ``status`` 0 is a request that got no answer (a client timeout). Unknown refusals are
    transient: a job never fails for a reason that might have cleared on the next try.
    """
    text = " ".join(message.split())  # one line: the Status message may carry newlines
    low = text.lower()
    if any(m in low for m in _QUOTA_MARKERS):
        return Refusal(False, WAITING_RESOURCE_QUOTA, _clip(f"{WAITING_RESOURCE_QUOTA} - {text}"))
    if status in (400, 422) or any(m in low for m in _PERMANENT_MARKERS):
        return Refusal(True, POD_REJECTED, _clip(f"{POD_REJECTED}: {text}"))
    if status == 403:
        # RBAC: 'pods is forbidden: User "..." cannot create resource "pods" ... in the namespace'.
        return Refusal(
            False,
            SERVICE_ROLE_PERMISSIONS,
            _clip(f"{SERVICE_ROLE_PERMISSIONS} - the operator may not create pods here: {text}"),
        )
    what = {0: "no answer", 429: "throttled", 404: "not found"}.get(status) or (
        "server error" if status >= 500 else f"status {status}"
    )
    return Refusal(
        False, WAITING_POD_CREATE, _clip(f"{WAITING_POD_CREATE} - pod create failed ({what}): {text}")
    )


def _clip(reason: str) -> str:
    return reason if len(reason) <= STATUS_REASON_LIMIT else reason[: STATUS_REASON_LIMIT - 3] + "..."
