"""Running multi-node parallel (MNP) jobs: the adapter side of ``core.mnp``.

Why this exists: an MNP job's attempt is one gang of pods, but the job lifecycle
(``core.lifecycle``) follows one pod per attempt. The main node's pod is that pod: it is created
by the ordinary dispatch, and its end is the attempt's end, with the main node's exit code,
reason and timestamps (AWS: "The final job status ... is determined by the final job status of
the main node"). This module adds the rest, from what the pod watch shows: the child nodes'
pods once the main node runs (``core.mnp.next_step``), stopping them when the attempt ends
(timeout, terminate, main exit, retry), the per-node node charges of the scheduler, and
``status.nodeProperties``. Pod names are deterministic (`<job>-n<node>-a<attempt>`), so a
restarted operator that repeats a creation gets 409 and adopts the pod.

A child node's pod the API server refuses is classified (``core.refusals``) and remembered per
attempt and node (``refusals``): transient ones are created again after a per-node backoff,
a permanent one ends the attempt (``before_feed``: FAILED, not retried, every node stopped).

The main node gets a headless Service (``render.main_service``, ``<job>-main.<ns>.svc``, also in
every node's ``BATCHYARD_MAIN_NODE_HOST``): created with the first launch of the children
(409 is fine), deleted when the job ends (``delete_services``), owned by the BatchJob so the
garbage collector removes one the operator missed (a job that ended while it was down). A
Service the API server refuses (RBAC, quota) is logged: the children still get the address.

What lives in memory only, and what a restart costs: the refusals (a restarted operator tries
the create again, which classifies it again) and ``announced``, which only bridges the cycles
between creating the children and seeing them; the "MainNodeRunning" event is posted only
while no child pod of the attempt exists, so a restart after the launch posts it no second time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from batchyard import render
from batchyard.adapters.kube import ApiError, Kube
from batchyard.adapters.observe import JobReader
from batchyard.adapters.state import ClusterState, JobEntry, JobKey
from batchyard.api.batchjob import NodeDetail, NodePropertiesDetail
from batchyard.api.jobdefinition import JobDefinitionSpec
from batchyard.core import lifecycle
from batchyard.core import mnp as core_mnp
from batchyard.core.backoff import KeyedBackoff
from batchyard.core.refusals import classify_pod_refusal
from batchyard.core.retention import PodRetention, keep_finished_pod
from batchyard.core.scheduler import Scheduler
from batchyard.render.names import LABEL_JOB_UID

log = logging.getLogger(__name__)

_PHASES = {"Pending": core_mnp.PENDING, "Running": core_mnp.RUNNING, "Succeeded": core_mnp.SUCCEEDED}
_LIVE = ("STARTING", "RUNNING")


def is_mnp(spec: JobDefinitionSpec) -> bool:
    return spec.nodeProperties is not None


@dataclass(frozen=True, slots=True)
class ChildLaunch:
    key: JobKey
    attempt: int
    compute_environment: str
    indexes: tuple[int, ...]
    main_address: str


@dataclass(slots=True)
class GangRunner:
    """The controller's MNP side: called from its synchronous ``decide`` and its ``execute``."""

    kube: Kube
    state: ClusterState
    scheduler: Scheduler
    reader: JobReader
    pod_retention: PodRetention = PodRetention.NONE
    launches: list[ChildLaunch] = field(default_factory=list)
    # jobs whose "children launched" event was posted, per attempt, until the children show
    announced: set[tuple[JobKey, int, str]] = field(default_factory=set)
    # child pods the API server refused, per (job, attempt) and node index
    refusals: dict[tuple[JobKey, int], dict[int, core_mnp.Refused]] = field(default_factory=dict)
    # main-node Services created (by job uid), and those to delete now that their job ended
    services: set[str] = field(default_factory=set)
    service_deletes: list[tuple[str, str, str]] = field(default_factory=list)
    create_backoff: KeyedBackoff = field(
        default_factory=lambda: KeyedBackoff(base_seconds=1.0, cap_seconds=60.0)
    )

    def gang(
        self, entry: JobEntry, spec: JobDefinitionSpec, attempt: int, key: JobKey | None = None
    ) -> core_mnp.Gang:
        job = entry.job
        ns = job.metadata.namespace or ""
        n = render.num_nodes(job, spec)
        pods: dict[int, core_mnp.NodePod] = {}
        host_network = False
        for i in range(n):
            name = render.pod_name(job.metadata.name or "", attempt, None, i)
            found = self.state.pods.get((ns, name))
            if found is None or found.job_uid != job.metadata.uid:
                if name in entry.pods_seen:
                    pods[i] = core_mnp.NodePod(i, core_mnp.GONE, pod_name=name)
                continue
            o = found.obs
            phase = _PHASES.get(o.phase, core_mnp.FAILED)
            if o.phase == "Running" and o.essentials_done:
                phase = core_mnp.SUCCEEDED if o.exit_code == 0 else core_mnp.FAILED
            # Under hostNetwork the pod's IP is its node's IP (either is the right address then).
            host_network = host_network or (o.pod_ip is not None and o.pod_ip == o.host_ip)
            pods[i] = core_mnp.NodePod(
                i,
                phase,
                pod_name=name,
                node_name=o.node,
                pod_ip=o.pod_ip,
                host_ip=o.host_ip,
                exit_code=o.exit_code,
                reason=o.reason,
                started_at=o.running_since,
                stopped_at=o.finished_at,
            )
        refused = self.refusals.get((key, attempt), {}) if key is not None else {}
        return core_mnp.Gang(n, render.main_node(spec), attempt, pods, host_network, refused)

    def before_feed(
        self, key: JobKey, entry: JobEntry, spec: JobDefinitionSpec, step: lifecycle.Step, ctx: lifecycle.Context,
        now: float,
    ) -> None:  # fmt: skip
        """Before the step reaches the scheduler: a child node refused for good ends the attempt
        (``core.mnp.AttemptRefused``), so its capacity is released in this very cycle."""
        status = step.status
        attempts = status.attempts or []
        if status.status not in _LIVE or not attempts or attempts[-1].attempt is None:
            return
        if not self.refusals.get((key, attempts[-1].attempt)):
            return
        decision = core_mnp.next_step(self.gang(entry, spec, attempts[-1].attempt, key), now)
        if isinstance(decision, core_mnp.AttemptRefused):
            lifecycle.end_refused(step, ctx, now, decision.reason)
            step.events.append(lifecycle.Event("Warning", "NodePodRefused", decision.reason))

    def after_step(
        self, key: JobKey, entry: JobEntry, spec: JobDefinitionSpec, step: lifecycle.Step, now: float
    ) -> None:
        """The job's lifecycle step is known: launch children, stop the gang, bind charges, and
        set status.nodeProperties. Synchronous (decide); pod creation happens in ``execute``."""
        status = step.status
        job = entry.job
        attempts = status.attempts or []
        current = attempts[-1].attempt if attempts else None
        live = status.status in _LIVE
        # Stop what must not run: every node of an attempt that is not the live one, and every
        # node of the live attempt once its main pod is being stopped (timeout, terminate).
        main_name = attempts[-1].podName if attempts else None
        main_pod = self.state.pods.get((job.metadata.namespace or "", main_name or ""))
        main_stopping = main_name is not None and (
            main_name in step.delete_pods or (main_pod is not None and main_pod.obs.deleting)
        )
        for number in sorted({a.attempt for a in attempts if a.attempt is not None}):
            if live and number == current and not main_stopping:
                continue  # the running attempt keeps its nodes (AWS: a child's end changes nothing)
            old = self.gang(entry, spec, number)
            # AWS: "All child nodes are then stopped". Finished children go with the attempt's
            # pods too, unless an ended attempt's pods are kept for their logs (core.retention:
            # every attempt but a SUCCEEDED job's last one failed).
            stop = set(core_mnp.stop_all(old))
            failed = not (number == current and status.status == "SUCCEEDED")
            if not keep_finished_pod(self.pod_retention, failed=failed):
                stop |= {i for i, p in old.pods.items() if p.phase != core_mnp.GONE}
            for i in sorted(stop):
                name = old.pod(i).pod_name
                seen = self.state.pods.get((job.metadata.namespace or "", name or ""))
                if seen is not None and seen.obs.deleting:
                    continue  # asked already
                if name and name not in step.delete_pods and i != old.main_node:
                    step.delete_pods.append(name)
        g = self.gang(entry, spec, current, key) if current is not None else None
        if live and g is not None and not main_stopping:
            for i, pod in g.pods.items():
                if pod.node_name and pod.phase in (core_mnp.PENDING, core_mnp.RUNNING):
                    self.scheduler.bind(key, pod.node_name, i)
            decision = core_mnp.next_step(g, now)
            if isinstance(decision, core_mnp.Wait) and decision.wake_at is not None:
                step.wake_at = (
                    decision.wake_at if step.wake_at is None else min(step.wake_at, decision.wake_at)
                )
            if isinstance(decision, core_mnp.CreateNodes) and decision.main_address is not None:
                ce = attempts[-1].computeEnvironment or status.computeEnvironment or ""
                self.launches.append(ChildLaunch(key, g.attempt, ce, decision.indexes, decision.main_address))
                children = [i for i in range(g.num_nodes) if i != g.main_node]
                # Derivable from the cluster: the first launch is the one with no child pod yet
                # (a restarted operator that finds the children posts nothing again).
                first = not g.refused and all(g.pod(i).phase == core_mnp.ABSENT for i in children)
                if first and (key, g.attempt, "launch") not in self.announced:
                    self.announced.add((key, g.attempt, "launch"))
                    step.events.append(
                        lifecycle.Event(
                            "Normal",
                            "MainNodeRunning",
                            f"Main node {g.main_node} is RUNNING at {decision.main_address}; launching "
                            f"{len(decision.indexes)} child node(s) of attempt {g.attempt}",
                        )
                    )
        if status.status in ("SUCCEEDED", "FAILED") and entry.status.status not in ("SUCCEEDED", "FAILED"):
            # the job ends in this step: its main node's Service goes with it
            ns = job.metadata.namespace or ""
            name = render.main_service_name(job.metadata.name or "")
            self.service_deletes.append((ns, name, job.metadata.uid or ""))
        n = render.num_nodes(job, spec)
        main_index = render.main_node(spec)
        if g is None:
            g = core_mnp.Gang(n, main_index, 0, {})
        ended = status.status in ("SUCCEEDED", "FAILED")
        rows = [NodeDetail.model_validate(r.as_dict()) for r in core_mnp.node_rows(g, job_ended=ended)]
        # A node's pod goes once the attempt is over: its last row stays (what the user needs to
        # see of a finished job), and a node stopped with the job says so.
        last = status.nodeProperties.nodes if status.nodeProperties and status.nodeProperties.nodes else []
        previous = {r.nodeIndex: r for r in last}
        for k, row in enumerate(rows):
            pod = g.pod(row.nodeIndex)
            before = previous.get(row.nodeIndex)
            expected = (
                render.pod_name(job.metadata.name or "", g.attempt, None, row.nodeIndex)
                if g.attempt
                else None
            )
            if (
                pod.phase in (core_mnp.ABSENT, core_mnp.GONE)
                and before is not None
                and before.podName == expected
            ):
                kept = before.model_copy()
                if kept.status in ("STARTING", "RUNNING") and ended:
                    kept.status = status.status
                    kept.reason = kept.reason or "Stopped: the main node exited"
                rows[k] = kept
            elif pod.phase == core_mnp.ABSENT and ended and before is not None and row.reason is None:
                # a node refused for good keeps its reason once the refusals are forgotten
                rows[k].reason = before.reason
        status.nodeProperties = NodePropertiesDetail(numNodes=n, mainNode=main_index, nodes=rows)
        # memory of attempts that are over goes (refusals, the launch event)
        for over in [a for a in self.refusals if a[0] == key and (not live or a[1] != current)]:
            for i in self.refusals.pop(over):
                self.create_backoff.succeeded((over, i))
        self.announced -= {a for a in self.announced if a[0] == key and (not live or a[1] != current)}

    async def launch(self, launch: ChildLaunch, now: float) -> None:
        """Create the child nodes' pods (idempotent by name: 409 from our own pod is adopted);
        a refusal is classified and remembered (module docstring)."""
        entry = self.state.jobs.get(launch.key)
        if entry is None:
            return
        resolved = self.reader.definition(entry)
        if isinstance(resolved, str):
            return
        revision, spec = resolved
        job = entry.job
        ns = job.metadata.namespace or ""
        ce = self.state.compute_environments.get(launch.compute_environment)
        await self._ensure_service(entry, spec)
        for i in launch.indexes:
            manifest: dict[str, Any] = render.render_pod(
                job,
                spec,
                revision=revision,
                attempt=launch.attempt,
                node_index=i,
                main_node_ip=launch.main_address,
                queue=job.spec.jobQueue,
                compute_environment=ce if ce is not None else launch.compute_environment,
            )
            attempt_key = (launch.key, launch.attempt)
            try:
                await self.kube.create(f"/api/v1/namespaces/{ns}/pods", manifest)
            except ApiError as err:
                if err.status == 409:
                    existing = await self.kube.get(
                        f"/api/v1/namespaces/{ns}/pods/{manifest['metadata']['name']}"
                    )
                    owner = ((existing.get("metadata") or {}).get("labels") or {}).get(LABEL_JOB_UID)
                    if owner == job.metadata.uid:
                        self._created(attempt_key, i)
                        continue
                    log.warning("creating node %s of %s failed, will retry: %s", i, launch.key, err)
                    self.state.dirty_jobs.add(launch.key)
                    continue
                refusal = classify_pod_refusal(err.status, err.message)
                retry_at = 0.0 if refusal.permanent else self.create_backoff.failed((attempt_key, i), now)
                self.refusals.setdefault(attempt_key, {})[i] = core_mnp.Refused(
                    refusal.permanent, refusal.status_reason, retry_at
                )
                if refusal.permanent:
                    log.warning("creating node %s of %s was refused for good: %s", i, launch.key, err)
                    self.state.dirty_jobs.add(launch.key)
                else:
                    log.warning("creating node %s of %s was refused, will retry: %s", i, launch.key, err)
                    entry.wake_at = retry_at if entry.wake_at is None else min(entry.wake_at, retry_at)
            else:
                self._created(attempt_key, i)

    async def _ensure_service(self, entry: JobEntry, spec: JobDefinitionSpec) -> None:
        uid = entry.job.metadata.uid or ""
        if uid in self.services:
            return
        ns = entry.job.metadata.namespace or ""
        try:
            await self.kube.create(f"/api/v1/namespaces/{ns}/services", render.main_service(entry.job, spec))
        except ApiError as err:
            if err.status != 409:
                log.warning("creating the main node's Service of %s failed: %s", entry.job.metadata.name, err)
                return
        self.services.add(uid)

    async def delete_services(self) -> None:
        """Delete the main-node Services of the jobs that ended (404: already gone)."""
        deletes, self.service_deletes = self.service_deletes, []
        for ns, name, uid in deletes:
            self.services.discard(uid)
            try:
                await self.kube.delete(f"/api/v1/namespaces/{ns}/services/{name}")
            except ApiError as err:
                if err.status != 404:
                    log.warning("deleting Service %s/%s failed: %s", ns, name, err)

    def _created(self, attempt_key: tuple[JobKey, int], index: int) -> None:
        self.create_backoff.succeeded((attempt_key, index))
        nodes = self.refusals.get(attempt_key)
        if nodes is not None:
            nodes.pop(index, None)
            if not nodes:
                del self.refusals[attempt_key]

    def take_launches(self) -> list[ChildLaunch]:
        out, self.launches = self.launches, []
        return out
