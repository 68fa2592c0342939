"""Leader election over a coordination.k8s.io/v1 Lease: one replica dispatches, the others wait.

Why not kopf peering: it only pauses kopf's own watch streams (the scheduler loop, the pod
watch and the node-pool reconciler are our own tasks and would keep running), and replicas of
equal priority pause each other. So the operator elects a leader itself and runs its whole
engine (lists, pod watch, scheduler loop) only while it holds the Lease.

The protocol, in the Kubernetes convention (the same Lease fields client-go's leader election
uses, so `kubectl get lease` reads as usual):

* every write is an update checked against the resourceVersion read just before, so two
  replicas can never both believe they took the same Lease (the loser gets 409);
* a candidate takes a Lease held by another replica only after it has seen the Lease's record
  unchanged for `lease_seconds` on its own clock (no clock comparison across machines);
* the leader renews every `renew_seconds`; if it cannot renew for `renew_deadline_seconds`
  (less than `lease_seconds`) it stops leading before any candidate may take over, so there is
  never a moment with two leaders dispatching;
* a leader that stops cleanly releases the Lease (empty holder), so a standby takes over at
  its next poll instead of waiting for the Lease to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from batchyard.adapters.kube import Conflict, Kube, NotFound

log = logging.getLogger("batchyard.leader")

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


def default_identity() -> str:
    """The pod name in a cluster (unique per replica), else host and process id, plus a suffix
    so that a restarted process never mistakes its predecessor's Lease for its own."""
    base = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    return f"{base}_{uuid.uuid4().hex[:8]}"


def micro_time(epoch: float) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds)."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaderElector:
    kube: Kube
    namespace: str
    name: str = "batchyard"
    identity: str = field(default_factory=default_identity)
    lease_seconds: float = 15.0
    renew_seconds: float = 5.0
    renew_deadline_seconds: float = 10.0
    retry_seconds: float = 2.0
    clock: Callable[[], float] = time.monotonic  # our own clock for expiry (tests pass a fake)
    is_leader: bool = False
    transitions: int = 0  # terms this replica has led (for tests and logs)
    # The record last seen and when (monotonic, our own clock): expiry is judged from these.
    _observed: tuple[Any, ...] | None = None
    _observed_at: float = 0.0
    _rv: str = ""
    _renewed_at: float = 0.0  # monotonic start of our last successful write of the Lease

    @property
    def path(self) -> str:
        return LEASES.format(namespace=self.namespace)

    # -- one attempt --------------------------------------------------------------------------
    async def try_acquire_or_renew(self) -> bool:
        """One round: create, renew or take over the Lease. True if we hold it afterwards."""
        now = time.time()
        started = self.clock()
        try:
            lease = await self.kube.get(f"{self.path}/{self.name}")
        except NotFound:
            body = self._lease_body(None, now, acquired=True, transitions=0)
            try:
                created = await self.kube.create(self.path, body)
            except Conflict:  # another replica created it first
                return False
            self._remember(created)
            self._renewed_at = started
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        self._remember(lease)
        if holder != self.identity:
            duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
            unchanged_for = self.clock() - self._observed_at
            if holder and unchanged_for < duration:
                return False  # held by a live replica (as far as we have seen)
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        body = self._lease_body(lease, now, acquired=holder != self.identity, transitions=transitions)
        try:
            updated = await self.kube.request("update", "PUT", f"{self.path}/{self.name}", body)
        except Conflict:  # someone else wrote in between: re-read next round
            return False
        self._remember(updated)
        self._renewed_at = started
        return True

    def _remember(self, lease: dict[str, Any]) -> None:
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed = record
            self._observed_at = self.clock()
        self._rv = (lease.get("metadata") or {}).get("resourceVersion", "")

    def _lease_body(
        self, old: dict[str, Any] | None, now: float, acquired: bool, transitions: int
    ) -> dict[str, Any]:
        spec = dict((old or {}).get("spec") or {})
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=int(self.lease_seconds),
            renewTime=micro_time(now),
            leaseTransitions=transitions,
        )
        if acquired or not spec.get("acquireTime"):
            spec["acquireTime"] = micro_time(now)
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if old is not None:
            metadata["resourceVersion"] = old["metadata"]["resourceVersion"]
            metadata["labels"] = (old.get("metadata") or {}).get("labels") or {}
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    async def release(self) -> None:
        """Give the Lease up (empty holder, as client-go does) so a standby needn't wait for expiry."""
        try:
            lease = await self.kube.get(f"{self.path}/{self.name}")
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            lease["spec"] = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1}
            await self.kube.request("update", "PUT", f"{self.path}/{self.name}", lease)
        except Exception as err:  # the process may be stopping: never mask that
            log.info("could not release lease %s/%s: %r", self.namespace, self.name, err)

    # -- the loop -----------------------------------------------------------------------------
    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Forever: wait for the Lease, run `lead()` while holding it, cancel it when lost.

        `lead` must tolerate cancellation at any await (every write of ours is idempotent) and
        is started afresh each term, so it re-derives everything from the API server.
        """
        try:
            while True:
                await self._acquire()
                self.is_leader = True
                self.transitions += 1
                log.info("leading as %s (lease %s/%s)", self.identity, self.namespace, self.name)
                task: asyncio.Task[None] = asyncio.create_task(lead(), name="batchyard-leader-term")
                try:
                    await self._renew_until_lost(task)
                finally:
                    self.is_leader = False
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.error("leader term failed: %r; releasing the lease", task.exception())
                    await self.release()
                    await asyncio.sleep(self.retry_seconds)
        except asyncio.CancelledError:
            if self._observed and self._observed[0] == self.identity:
                await asyncio.shield(self.release())
            raise

    async def _acquire(self) -> None:
        while True:
            try:
                if await self.try_acquire_or_renew():
                    return
            except asyncio.CancelledError:
                raise
            except Exception as err:  # API trouble: keep trying, we are not leading anyway
                log.warning("lease %s/%s: %r", self.namespace, self.name, err)
            await asyncio.sleep(self.retry_seconds)

    async def _renew_until_lost(self, task: asyncio.Task[None]) -> None:
        """Renew every `renew_seconds` until `task` ends or the Lease is lost.

        Lost means taken by another replica, or not renewed within `renew_deadline_seconds` of
        the start of the last successful renewal: a candidate only takes over `lease_seconds`
        after it saw that renewal, so we have stopped (our API calls cancelled) before then.
        """
        while not task.done():
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel that
            # arrives as the awaited thing completes, and the elector would outlive cleanup.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.renew_seconds):
                    await asyncio.shield(task)
            if task.done():
                return
            remaining = self.renew_deadline_seconds - (self.clock() - self._renewed_at)
            ok = False
            if remaining > 0:
                try:
                    async with asyncio.timeout(remaining):
                        ok = await self.try_acquire_or_renew()
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # includes the timeout: judged by the deadline below
                    log.warning("renewing lease %s/%s failed: %r", self.namespace, self.name, err)
            if ok:
                continue
            holder = self._observed[0] if self._observed is not None else None
            if holder not in (self.identity, None, ""):
                log.warning("lease %s/%s taken by %s: stepping down", self.namespace, self.name, holder)
                return
            if self.clock() - self._renewed_at >= self.renew_deadline_seconds:
                log.warning(
                    "lease %s/%s not renewed for %.0f s: stepping down",
                    self.namespace,
                    self.name,
                    self.renew_deadline_seconds,
                )
                return
