"""Which finished attempts keep their pod, so their log can still be read (issue 15).

AWS Batch keeps every attempt's output in CloudWatch Logs (``attempts[].container.logStreamName``).
On Kubernetes the log lives with the pod: once the pod is deleted, ``kubectl logs`` has nothing.
The operator therefore keeps the pod of a finished attempt according to one setting
(``Settings.pod_retention``, env BATCHYARD_KEEP_PODS, Helm ``operator.keepPods``):

* ``failed`` (the default): the pod of an attempt that failed stays; a succeeded attempt's goes;
* ``all``: every finished attempt's pod stays;
* ``none``: every pod goes when its attempt ends (the behaviour before issue 15).

A kept pod stays until its job expires (``adapters.apply`` deletes it with the job, and the
garbage collector would through its ownerReference) or the job is deleted. A kept pod has
finished: it holds no node and no capacity, and it is never the live attempt (an attempt's pod
name carries its number, and a retry gets a new one).

A pod that still runs is always stopped (a timeout, a terminate, a non-essential container that
never exits): Kubernetes cannot stop a container without deleting its pod.
"""

from __future__ import annotations

from enum import StrEnum


class PodRetention(StrEnum):
    ALL = "all"
    FAILED = "failed"
    NONE = "none"


# Accepted spellings of BATCHYARD_KEEP_PODS besides the three values: the boolean of old
# releases (true kept every pod, false none).
_ALIASES = {"true": PodRetention.ALL, "1": PodRetention.ALL, "yes": PodRetention.ALL,
            "false": PodRetention.NONE, "0": PodRetention.NONE, "no": PodRetention.NONE}  # fmt: skip


def parse_retention(value: str | None, *, field: str = "BATCHYARD_KEEP_PODS") -> PodRetention:
    """The setting's value; empty means the default (``failed``). Anything else is refused with
    a message naming the field and the values it takes."""
    text = (value or "").strip().lower()
    if not text:
        return PodRetention.FAILED
    if text in _ALIASES:
        return _ALIASES[text]
    try:
        return PodRetention(text)
    except ValueError:
        raise ValueError(
            f"{field}={value!r}: must be one of all, failed, none (or true = all, false = none)"
        ) from None


def keep_finished_pod(retention: PodRetention, *, failed: bool) -> bool:
    """Whether the pod of an attempt that has ended stays (the pod itself must have finished;
    a running pod is always stopped). ``failed``: the attempt did not succeed."""
    if retention is PodRetention.ALL:
        return True
    if retention is PodRetention.FAILED:
        return failed
    return False


def log_gone_reason(retention: PodRetention, *, failed: bool, pod_exists: bool) -> str | None:
    """Why an ended attempt's log can no longer be read from its pod, or None while it can."""
    if pod_exists:
        return None
    if retention is PodRetention.NONE:
        return "its pod was deleted when the attempt ended (the operator keeps no pods: keepPods=none)"
    if not failed and retention is PodRetention.FAILED:
        return "the attempt succeeded and its pod was deleted (the operator keeps failed attempts' pods only: keepPods=failed)"
    return "its pod is gone (the job expired, the pod was stopped while running, or it was deleted)"
