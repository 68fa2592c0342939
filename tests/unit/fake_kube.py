"""A typed, in-memory fake of the operator's API client (``adapters.kube.Kube``), with injectable
failures, for driving the adapter's error paths without an API server.

It implements ``nodepools.base.KubeClient`` (get, list, create, merge_patch, delete) plus
``request``, keeps created objects by path, and raises the real typed errors of
``batchyard.apierrors`` (NotFound, Conflict, Invalid, ...), as the real client does.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from batchyard.adapters.state import ClusterState
from batchyard.apierrors import ApiError, Conflict, NotFound, api_error
from batchyard.nodepools.base import KubeClient


@dataclass
class Failure:
    verb: str  # get, list, create, patch, patch_status, delete (Kube's verbs)
    path_contains: str
    error: ApiError
    times: int  # how many more requests fail (then the request goes through)


@dataclass
class FakeKube:
    """Objects by path (``create`` stores at ``path/name``); every request is recorded."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Events each watch yields, in order, before it goes quiet (popped: one list per watch).
    watch_events: list[list[dict[str, Any]]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (verb, path)
    failures: list[Failure] = field(default_factory=list)

    # -- injecting failures ------------------------------------------------------------------------
    def fail(self, verb: str, path_contains: str, status: int, times: int = 1, message: str = "") -> None:
        """The next ``times`` requests of ``verb`` on a path containing ``path_contains`` fail
        with the typed error of ``status`` (a RequestTimeout for status 0)."""
        body = {"kind": "Status", "code": status, "message": message or f"injected {status}"}
        self.failures.append(
            Failure(verb, path_contains, api_error(status, body, verb.upper(), path_contains), times)
        )

    def fail_with(self, verb: str, path_contains: str, error: ApiError, times: int = 1) -> None:
        self.failures.append(Failure(verb, path_contains, error, times))

    def count(self, verb: str, path_contains: str = "") -> int:
        return sum(1 for v, p in self.requests if v == verb and path_contains in p)

    def _maybe_fail(self, verb: str, path: str) -> None:
        self.requests.append((verb, path))
        for f in self.failures:
            if f.times > 0 and f.verb == verb and f.path_contains in path:
                f.times -= 1
                raise f.error

    # -- the KubeClient surface ----------------------------------------------------------------------
    async def get(self, path: str) -> Any:
        self._maybe_fail("get", path)
        if path not in self.objects:
            raise NotFound(404, {"message": "not found"}, "GET", path)
        return copy.deepcopy(self.objects[path])

    async def list(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        self._maybe_fail("list", path)
        items = [copy.deepcopy(o) for p, o in self.objects.items() if p.rsplit("/", 1)[0] == path]
        return {"items": items, "metadata": {"resourceVersion": "1"}}

    async def create(self, path: str, body: Mapping[str, Any]) -> Any:
        self._maybe_fail("create", path)
        name = (body.get("metadata") or {}).get("name") or f"generated-{len(self.objects)}"
        full = f"{path}/{name}"
        if full in self.objects:
            raise Conflict(409, {"reason": "AlreadyExists", "message": "exists"}, "POST", path)
        self.objects[full] = copy.deepcopy(dict(body))
        return copy.deepcopy(self.objects[full])

    async def merge_patch(self, path: str, body: Mapping[str, Any], verb: str = "patch") -> Any:
        self._maybe_fail(verb, path)
        return dict(body)

    async def delete(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        self._maybe_fail("delete", path)
        if self.objects.pop(path, None) is None:
            raise NotFound(404, {"message": "not found"}, "DELETE", path)
        return {}

    async def watch(
        self, path: str, params: Mapping[str, str], resource_version: str, timeout_seconds: int = 300
    ) -> AsyncIterator[dict[str, Any]]:
        """The next scripted events (``watch_events``), then nothing happens (until cancelled)."""
        self._maybe_fail("watch", path)
        for event in self.watch_events.pop(0) if self.watch_events else []:
            yield event
        await asyncio.Event().wait()

    async def request(
        self,
        verb: str,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        self._maybe_fail(verb, path)
        return body


_: type[KubeClient] = FakeKube  # the fake keeps the providers' Protocol (checked by mypy)


ONE_VCPU_CONTAINER: dict[str, Any] = {
    "type": "container",
    "containerProperties": {
        "image": "busybox",
        "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
    },
}


def add_world(
    st: ClusterState,
    namespace: str = "ns",
    definition: dict[str, Any] | None = None,
    ce_state: str = "ENABLED",
) -> None:
    """An UNMANAGED compute environment ``ce`` of 4 vCPUs (``ce_state``), queue ``q`` on it and
    definition ``d`` in ``namespace`` (a 1-vCPU container unless given)."""
    st.upsert_cluster_object(
        "computeenvironments",
        {"metadata": {"name": "ce"}, "spec": {"type": "UNMANAGED", "state": ce_state, "unmanagedvCpus": 4}},
    )
    st.upsert_cluster_object(
        "jobqueues",
        {
            "metadata": {"name": "q", "uid": "q-uid"},
            "spec": {"priority": 1, "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}]},
        },
    )
    st.upsert_definition(
        {
            "metadata": {"name": "d", "namespace": namespace, "generation": 1},
            "spec": definition if definition is not None else ONE_VCPU_CONTAINER,
        }
    )


def one_job_state(
    namespace: str = "ns", definition: dict[str, Any] | None = None, status: dict[str, Any] | None = None
) -> ClusterState:
    """The smallest synced world a Controller runs one job in: an UNMANAGED compute environment of
    4 vCPUs, queue ``q`` on it, definition ``d`` (a 1-vCPU container unless given) and job ``j``
    (new, or with the ``status`` given)."""
    st = ClusterState()
    add_world(st, namespace, definition)
    job: dict[str, Any] = {
        "metadata": {"name": "j", "namespace": namespace, "uid": "u1", "generation": 1},
        "spec": {"jobQueue": "q", "jobDefinition": "d"},
    }
    if status is not None:  # a job the operator wrote before (a restarted operator lists it)
        job["metadata"]["resourceVersion"] = "9"
        job["status"] = status
    st.upsert_job(job)
    st.synced = True
    return st
