"""List-then-watch with a server-side label selector, for the objects kopf should not stream.

On a shared cluster most pods are not ours, so job pods (and Batch nodes) are watched with a
`labelSelector` sent to the server, and the stream resumes from the last resourceVersion
(relisting after 410 Gone). kopf 1.45 can send label selectors too; these streams are our own
because they must run only while this replica leads (a standby holds no pods), and the engine
needs an explicit "listed" signal before its first cycle (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from batchyard.adapters.kube import ApiError, Gone, Kube, sleep_backoff

log = logging.getLogger("batchyard.watch")

Handler = Callable[[str, Mapping[str, Any]], None]


async def list_objects(kube: Kube, path: str, selector: str = "") -> tuple[list[dict[str, Any]], str]:
    params = {"labelSelector": selector} if selector else {}
    items: list[dict[str, Any]] = []
    cont = ""
    while True:
        page = await kube.list(path, {**params, "limit": "500", **({"continue": cont} if cont else {})})
        items.extend(page.get("items") or [])
        cont = (page.get("metadata") or {}).get("continue") or ""
        if not cont:
            return items, page["metadata"]["resourceVersion"]


async def list_watch(
    kube: Kube, path: str, selector: str, handle: Handler, synced: asyncio.Event | None = None
) -> None:
    """Forever: list (handle each as ADDED), then watch and handle events; relist on 410."""
    failures = 0
    # What the handler believes exists: after a relist, whatever vanished during the gap is
    # reported DELETED (a watch resumed after 410 never tells about those).
    alive: dict[tuple[str, str], dict[str, Any]] = {}
    while True:
        try:
            items, rv = await list_objects(kube, path, selector)
            listed = {_key(item) for item in items}
            for key in [k for k in alive if k not in listed]:
                _handle_one(handle, path, "DELETED", alive.pop(key))
            for item in items:
                alive[_key(item)] = _stub(item)
                _handle_one(handle, path, "ADDED", item)
            if synced is not None:
                synced.set()
            while True:
                async for event in kube.watch(path, {"labelSelector": selector} if selector else {}, rv):
                    kind = event.get("type")
                    obj = event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise Gone(410, obj, "WATCH", path)
                        continue
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        alive.pop(_key(obj), None)
                    else:
                        alive[_key(obj)] = _stub(obj)
                    _handle_one(handle, path, str(kind), obj)
                failures = 0
        except asyncio.CancelledError:
            raise
        except Gone:
            pass  # the resourceVersion is too old: relist at once
        except ApiError as err:
            log.warning("watch of %s failed: %s", path, err)
            failures += 1
            await sleep_backoff(failures)
        except Exception as err:  # network trouble: back off and relist
            log.warning("watch of %s broke: %r", path, err)
            failures += 1
            await sleep_backoff(failures)


def _handle_one(handle: Handler, path: str, kind: str, obj: Mapping[str, Any]) -> None:
    """One object the handler cannot read (a malformed label, say) is logged and skipped: it
    must not restart the watch, which would relist and meet it again, forever."""
    try:
        handle(kind, obj)
    except Exception:
        namespace, name = _key(obj)
        log.exception("watch of %s: skipping %s of %s/%s", path, kind, namespace, name)


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


def _stub(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Enough of an object to report its deletion (kept per live object, so small)."""
    meta = obj.get("metadata") or {}
    return {
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "labels") if k in meta},
        "spec": {},
        "status": {},
    }
