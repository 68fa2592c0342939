"""kopf handlers: they only parse events into the cluster state and wake the scheduler loop.

Startup lists every kind once (so the loop never decides on a half-known cluster: a job must
not fail for a missing queue that simply has not been listed yet), starts the pod watch (with a
server-side label selector, see ``adapters.watch``) and the loop. Event handlers keep the state
current afterwards; they write nothing, so kopf adds no annotations or finalizers of its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf

from batchyard import GROUP, VERSION
from batchyard.adapters.controller import Controller, Settings
from batchyard.adapters.kube import Kube
from batchyard.adapters.objectstatus import ConsumableStatusWriter, QueueStatusWriter
from batchyard.adapters.scaler import NodePoolReconciler
from batchyard.adapters.state import JOB_UID_LABEL, ClusterState
from batchyard.adapters.watch import list_objects, list_watch

CLUSTER_PLURALS = ("jobqueues", "computeenvironments", "schedulingpolicies", "consumableresources")


def settings_from_env() -> Settings:
    return Settings(
        keep_pods=os.environ.get("BATCHYARD_KEEP_PODS", "").lower() in ("1", "true", "yes"),
        finished_job_ttl_seconds=float(os.environ.get("BATCHYARD_FINISHED_JOB_TTL_SECONDS", 7 * 24 * 3600)),
        time_limit_scale=float(os.environ.get("BATCHYARD_TIME_LIMIT_SCALE", 1.0)),
    )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.scanning.disabled = True
    kube = await Kube.connect()
    state = ClusterState()
    controller = Controller(kube, state, settings_from_env())
    controller.object_status_writers.append(QueueStatusWriter(controller))
    controller.object_status_writers.append(ConsumableStatusWriter(controller))
    scaler = NodePoolReconciler(kube, controller)  # owns ComputeEnvironment status and nodes
    for plural in CLUSTER_PLURALS:
        items, _rv = await list_objects(kube, f"/apis/{GROUP}/{VERSION}/{plural}")
        for item in items:
            state.upsert_cluster_object(plural, item)
    for item in (await list_objects(kube, f"/apis/{GROUP}/{VERSION}/jobdefinitions"))[0]:
        state.upsert_definition(item)
    for item in (await list_objects(kube, f"/apis/{GROUP}/{VERSION}/batchjobs"))[0]:
        state.upsert_job(item)
    pods_synced = asyncio.Event()

    def on_pod(kind: str, body: Any) -> None:
        if kind == "DELETED":
            state.forget_pod(body)
        else:
            state.upsert_pod(body)
        state.wake()

    memo.state = state
    memo.controller = controller
    memo.kube = kube
    memo.scaler = scaler
    memo.tasks = [
        asyncio.create_task(list_watch(kube, "/api/v1/pods", JOB_UID_LABEL, on_pod, pods_synced)),
        asyncio.create_task(controller.run()),
        asyncio.create_task(scaler.run()),
    ]
    await pods_synced.wait()
    state.synced = True
    state.wake()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for task in getattr(memo, "tasks", []):
        task.cancel()
    await asyncio.gather(*getattr(memo, "tasks", []), return_exceptions=True)
    if hasattr(memo, "kube"):
        await memo.kube.close()


@kopf.on.event(GROUP, VERSION, "batchjobs")
def batchjob_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    name = (body.get("metadata") or {}).get("name", "")
    namespace = (body.get("metadata") or {}).get("namespace", "")
    if type == "DELETED":
        memo.state.forget_job((namespace, name))
    else:
        memo.state.upsert_job(body)
    memo.state.wake()


@kopf.on.event(GROUP, VERSION, "jobdefinitions")
def jobdefinition_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    meta = body.get("metadata") or {}
    if type == "DELETED":
        memo.state.forget_definition(meta.get("namespace", ""), meta.get("name", ""))
    else:
        memo.state.upsert_definition(body)
    memo.state.wake()


def _cluster_handler(plural: str) -> None:
    @kopf.on.event(GROUP, VERSION, plural, id=f"{plural}-event")
    def handler(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        if type == "DELETED":
            memo.state.forget_cluster_object(plural, (body.get("metadata") or {}).get("name", ""))
        else:
            memo.state.upsert_cluster_object(plural, body)
        memo.state.wake()


for _plural in CLUSTER_PLURALS:
    _cluster_handler(_plural)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere: $KUBECONFIG read now (not at import time)."""
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(
        **kwargs
    )
    return info
