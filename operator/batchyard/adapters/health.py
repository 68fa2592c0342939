"""Liveness that reflects the engine, not only the process, and reports of refused objects.

kopf's liveness endpoint answers as long as the event loop does. That is not enough: the
scheduler loop may be stuck in one cycle (an API call that never returns) or its task may have
ended while kopf keeps streaming. `problems` looks at what the probe handler
(``handlers.operator``) gives it: the age of the loop's heartbeat (`Controller.heartbeat`, set
every time round, also when idle, at least every `tick_seconds`) and the engine's tasks (the loop,
the pod watches, the node-pool reconciler, the leader elector); any problem fails the probe, so
the kubelet restarts the pod, like controller-runtime's healthz checks.

Also here: `report_rejections` posts a Warning Event on each object the models refused
(`ClusterState.rejections`), so the object's owner sees why Batchyard ignores it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from typing import Any

from batchyard import API_VERSION
from batchyard.adapters.kube import ApiError, Kube
from batchyard.adapters.state import ClusterState, Rejection

log = logging.getLogger("batchyard.health")

# A cycle that writes a large backlog takes seconds; a loop silent for this long is stuck.
DEFAULT_STALL_SECONDS = 120.0


def stall_seconds() -> float:
    return float(os.environ.get("BATCHYARD_LIVENESS_STALL_SECONDS") or DEFAULT_STALL_SECONDS)


def task_problem(task: asyncio.Task[Any]) -> str | None:
    """Why an engine task counts as dead, or None while it runs (they all run forever)."""
    if not task.done():
        return None
    if task.cancelled():
        return f"task {task.get_name()} was cancelled"
    exc = task.exception()
    return f"task {task.get_name()} ended" + (f": {exc!r}" if exc is not None else "")


def problems(
    *, heartbeat: float | None, now: float, stall: float, tasks: Iterable[asyncio.Task[Any]]
) -> list[str]:
    """What is wrong with the engine (empty: alive). ``heartbeat`` and ``now`` are monotonic;
    ``heartbeat`` is None when this replica runs no loop (a standby)."""
    found = [p for t in tasks if (p := task_problem(t)) is not None]
    if heartbeat is not None and now - heartbeat > stall:
        found.append(f"the scheduler loop has not gone round for {now - heartbeat:.0f} s (limit {stall:g} s)")
    return found


def log_if_it_dies(task: asyncio.Task[Any]) -> None:
    """Engine tasks run forever: say so loudly when one ends (the probe fails too)."""

    def done(t: asyncio.Task[Any]) -> None:
        problem = None if t.cancelled() else task_problem(t)
        if problem is not None:
            log.error("engine %s; the liveness probe now fails", problem, exc_info=t.exception())

    task.add_done_callback(done)


def monotonic() -> float:
    return time.monotonic()


async def report_rejections(kube: Kube, state: ClusterState) -> None:
    """Post a Warning Event on every object the models refused since the last call."""
    while state.rejections:
        rejection = state.rejections.pop(0)
        try:
            await kube.create(
                f"/api/v1/namespaces/{rejection.namespace or 'default'}/events", _event(rejection)
            )
        except (ApiError, OSError, TimeoutError) as err:
            log.debug("event for refused %s %s not recorded: %s", rejection.kind, rejection.name, err)


def _event(r: Rejection) -> dict[str, Any]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    involved: dict[str, str] = {"apiVersion": API_VERSION, "kind": r.kind, "name": r.name}
    if r.namespace:
        involved["namespace"] = r.namespace
    if r.uid:
        involved["uid"] = r.uid
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{r.name or 'object'}.", "namespace": r.namespace or "default"},
        "involvedObject": involved,
        "reason": "Rejected",
        "message": r.message,
        "type": "Warning",
        "source": {"component": "batchyard"},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
