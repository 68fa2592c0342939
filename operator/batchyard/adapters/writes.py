"""The writes every part of the loop makes: status merge patches and Kubernetes Events.

Why a module of its own: job status (adapters.apply), queue and consumable status
(adapters.objectstatus) and compute-environment status (adapters.scaler) are all written the
same way -- one RFC 7386 merge patch to the status subresource -- and Events are posted the same
way for jobs and queues. One place builds the paths and bodies.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from batchyard import API_VERSION, GROUP, VERSION
from batchyard.adapters.kube import ApiError, Kube
from batchyard.core.lifecycle import iso

log = logging.getLogger("batchyard.writes")

MAX_EVENT_MESSAGE = 1024


def resource_path(plural: str, name: str, namespace: str | None = None, sub: str = "") -> str:
    """The API path of one of our objects (``sub``: a subresource such as ``status``)."""
    ns = f"/namespaces/{namespace}" if namespace else ""
    return f"/apis/{GROUP}/{VERSION}{ns}/{plural}/{name}{'/' + sub if sub else ''}"


def status_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) turning ``old`` into ``new``.

    Objects merge key by key on the server, so a key that disappeared must be sent as null at
    every depth (a child index range that is no longer RUNNABLE, say); lists are replaced whole.
    """
    patch: dict[str, Any] = {}
    for k in set(old) | set(new):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            patch[k] = status_diff(a, b)
        else:
            patch[k] = b
    return patch


async def patch_status(
    kube: Kube, plural: str, name: str, namespace: str | None, status: Mapping[str, Any]
) -> bool:
    """Merge ``status`` into the object's status; False (logged) when the API refuses."""
    try:
        await kube.merge_patch(
            resource_path(plural, name, namespace, "status"), {"status": status}, verb="patch_status"
        )
        return True
    except ApiError as err:
        log.warning("status write for %s %s failed: %s", plural, name, err)
        return False


def event_body(
    involved: Mapping[str, Any], namespace: str, reason: str, message: str, type_: str
) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` (apiVersion, kind, name[, namespace, uid])."""
    stamp = iso(time.time())
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{involved['name']}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
        "involvedObject": dict(involved),
        "reason": reason,
        "message": message[:MAX_EVENT_MESSAGE],
        "type": type_,
        "source": {"component": "batchyard"},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


async def post_event(
    kube: Kube, involved: Mapping[str, Any], namespace: str, reason: str, message: str, type_: str
) -> None:
    """Post an Event; losing one is not worth a retry (logged at debug)."""
    body = event_body(involved, namespace, reason, message, type_)
    try:
        await kube.create(f"/api/v1/namespaces/{namespace}/events", body)
    except ApiError as err:
        log.debug("event for %s not recorded: %s", involved.get("name"), err)


def involved_object(kind: str, name: str, uid: str | None, namespace: str | None = None) -> dict[str, Any]:
    """The ``involvedObject`` of an Event about one of our objects."""
    out: dict[str, Any] = {"apiVersion": API_VERSION, "kind": kind, "name": name}
    if namespace is not None:
        out["namespace"] = namespace
    out["uid"] = uid
    return out
