"""From API objects to what the core decides on: every derived fact in one place.

Why this exists: the loop reads BatchJobs, their pinned JobDefinition revision, queues, compute
environments, scheduling policies and consumable resources as API models; the lifecycle and the
scheduler read small views of them. Turning one into the other carries AWS rules -- which of
SubmitJob's overrides win over the job definition, fair-share defaults, what an UNMANAGED
compute environment's capacity is, the order compute environments are tried in. They live here,
pure and tested as tables (tests/unit/test_views.py), instead of inside the adapter that feeds
the core (Kueue keeps the same split: its ``workload.Info`` is the API object plus derived data).

* ``resolved``: the job definition revision a job runs, as ``lifecycle.Resolved`` (retry
  strategy, timeout, problems);
* ``job_view``: a job as the scheduler sees it (``scheduler.JobView``);
* ``world``: queues, compute environments and consumable resources as the scheduler sees them;
* ``facts``: a job as dependency resolution sees it (``deps.JobFacts``), and ``lookup`` over a
  namespace's jobs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from batchyard.api.batchjob import BatchJob, BatchJobStatus
from batchyard.api.computeenvironment import ComputeEnvironment
from batchyard.api.consumableresource import ConsumableResource
from batchyard.api.jobdefinition import JobDefinitionSpec
from batchyard.api.jobqueue import JobQueue
from batchyard.api.schedulingpolicy import SchedulingPolicy
from batchyard.core import deps, lifecycle
from batchyard.core.arrays import ArrayChildren
from batchyard.core.capacity import CEView, NodeView, Resources
from batchyard.core.consumables import ConsumableView, requirement_problems
from batchyard.core.effective import effective
from batchyard.core.fairshare import PolicyView
from batchyard.core.jobref import JobRef
from batchyard.core.jobstate import JobState
from batchyard.core.retention import PodRetention
from batchyard.core.retry import ExitRule, parse_action
from batchyard.core.scheduler import JobView, QueueView, TimeLimitAction, World
from batchyard.core.tenancy import OperatorIdentity, namespace_refusal, service_account_refusal

# An UNMANAGED compute environment without unmanagedvCpus has no vCPU cap of its own.
UNBOUNDED_VCPUS = 1_000_000
# AWS (ShareAttributes.weightFactor): "The default value is 1.0".
DEFAULT_WEIGHT_FACTOR = 1.0


@dataclass(frozen=True)
class CECapacity:
    """What the node-pool reconciler (adapters.scaler) reports of a compute environment: its
    nodes (None: capacity appears on demand), the largest node it can launch, VALID/INVALID."""

    nodes: tuple[NodeView, ...] | None = None
    max_node: Resources | None = None
    status: str = "VALID"
    status_reason: str = ""
    scaling: bool = False  # the node pool follows demand (see core.capacity.CEView)
    node_types: tuple[tuple[int, Resources], ...] = ()  # see core.capacity.CEView


# --- one job --------------------------------------------------------------------------------


def unsupported(spec: JobDefinitionSpec) -> tuple[str, ...]:
    """What the API accepts but the loop does not run yet: said at submission, never half-run.
    Nothing today: multi-node parallel jobs run as a gang (adapters.mnp, core.mnp)."""
    del spec
    return ()


def resolved(
    job: BatchJob,
    revision: int,
    spec: JobDefinitionSpec,
    problems: Iterable[str] = (),
    identity: OperatorIdentity | None = None,
) -> lifecycle.Resolved:
    """The pinned revision as the lifecycle reads it. ``problems``: why its pod can't be built.

    AWS SubmitJob: retryStrategy and timeout given at submission "override" the job
    definition's (whole objects, not field by field)."""
    strategy = job.spec.retryStrategy or spec.retryStrategy
    timeout = job.spec.timeout or spec.timeout
    rules = tuple(
        ExitRule(parse_action(r.action), r.onExitCode, r.onReason, r.onStatusReason)
        for r in (strategy.evaluateOnExit or [] if strategy else [])
    )
    return lifecycle.Resolved(
        revision=revision,
        rules=rules,
        # AWS: attempts defaults to 1 (no retry).
        attempts=(strategy.attempts if strategy and strategy.attempts else 1),
        attempt_duration_seconds=timeout.attemptDurationSeconds if timeout else None,
        problems=(*problems, *unsupported(spec), *identity_problems(job, spec, identity)),
        effective=effective(job.spec, spec),
    )


def identity_problems(
    job: BatchJob, spec: JobDefinitionSpec, identity: OperatorIdentity | None
) -> tuple[str, ...]:
    """A job can't run as the operator's ServiceAccount (core.tenancy)."""
    if identity is None:
        return ()
    pod = spec.eksProperties.podProperties if spec.eksProperties is not None else None
    account = pod.serviceAccountName if pod is not None else None
    refusal = service_account_refusal(job.metadata.namespace or "", account, identity)
    return (refusal,) if refusal else ()


def scheduling_priority(job: BatchJob, spec: JobDefinitionSpec) -> int:
    """AWS SubmitJob: schedulingPriorityOverride "overrides the scheduling priority in the job
    definition"; without either it is 0."""
    if job.spec.schedulingPriorityOverride is not None:
        return job.spec.schedulingPriorityOverride
    return spec.schedulingPriority or 0


def consumables(job: BatchJob, spec: JobDefinitionSpec) -> dict[str, int]:
    """AWS SubmitJob: consumableResourcePropertiesOverride replaces the definition's list."""
    props = job.spec.consumableResourcePropertiesOverride or spec.consumableResourceProperties
    return {c.consumableResource: c.quantity for c in (props.consumableResourceList or [] if props else [])}


def job_view(
    ref: JobRef,
    job: BatchJob,
    status: BatchJobStatus,
    spec: JobDefinitionSpec,
    demand: Resources,
    *,
    retried: bool,
    now: float,
    node_demands: tuple[Resources, ...] = (),
    node_consumables: Mapping[str, int] | None = None,
) -> JobView:
    """The job (or array child ``ref``) as the scheduler sees it. ``demand`` is what its pod
    requests (render.job_demand). FIFO order is by createdAt (AWS: submission time).

    A multi-node parallel job passes one demand per node (``demand`` is their sum) and the
    consumables its nodes hold together: the scheduler places it as a gang."""
    submitted = lifecycle.epoch(status.createdAt or job.metadata.creationTimestamp)
    return JobView(
        key=ref,
        queue=job.spec.jobQueue,
        submitted_at=submitted if submitted is not None else now,
        demand=demand,
        share_identifier=job.spec.shareIdentifier,
        scheduling_priority=scheduling_priority(job, spec),
        retried=retried,
        consumables=consumables(job, spec) if node_consumables is None else node_consumables,
        node_demands=node_demands,
    )


@dataclass(frozen=True)
class SharedView:
    """The scheduler's view of an array parent's children, made once and shared by them.

    All children of an array run the parent's BatchJob (its SubmitJob overrides) on the parent's
    definition revision, and queue from the parent's createdAt: their demand, priority and
    consumables are the parent's. Rendering a pod plan per child only to learn its demand made
    a restart with 1,000,000 queued children spend tens of seconds in ``render.job_demand``.

    The key is what the view is made of, by identity: the very BatchJob object (the watch
    delivers a new one on every change, so any spec or override change misses), the very
    definition spec object (revisions are immutable; a new revision is a new object), and
    createdAt. Multi-node parallel jobs are not shared (their demands are per node)."""

    job: BatchJob
    spec: JobDefinitionSpec
    created_at: str | None
    view: JobView

    def fits(self, job: BatchJob, spec: JobDefinitionSpec, created_at: str | None) -> bool:
        return self.job is job and self.spec is spec and self.created_at == created_at

    def child(self, ref: JobRef, *, retried: bool) -> JobView:
        """Child ``ref``'s view: the shared one with its own key and retry flag."""
        v = self.view  # the constructor, not dataclasses.replace: this runs once per child
        return JobView(
            ref,
            v.queue,
            v.submitted_at,
            v.demand,
            v.share_identifier,
            v.scheduling_priority,
            retried,
            v.consumables,
        )


def context(
    job: BatchJob,
    status: BatchJobStatus,
    queue: JobQueue | None,
    definition: lifecycle.Resolved | str,
    dependencies: deps.Resolution,
    pod: lifecycle.PodObs | None,
    *,
    pod_seen: bool,
    pod_retention: PodRetention,
    consumable_problems: tuple[str, ...] = (),
    identity: OperatorIdentity | None = None,
) -> lifecycle.Context:
    """Everything besides the job that one lifecycle step reads. ``definition`` is the pinned
    revision, or why it can't be read; ``consumable_problems``: see ``consumable_problems``."""
    queue_problem = None
    if identity is not None and status.status is None:
        # The operator's namespace and kube-system are not served unless listed (core.tenancy).
        queue_problem = namespace_refusal(job.metadata.namespace or "", identity)
    if queue is not None and status.status is None and queue_problem is None:
        queue_problem = lifecycle.queue_refusal(
            job.spec.jobQueue,
            queue.spec.state,
            queue.spec.allowedNamespaces,
            job.metadata.namespace or "",
            scheduling_policy=queue.spec.schedulingPolicy,
            share_identifier=job.spec.shareIdentifier,
        )
    return lifecycle.Context(
        queue_exists=queue is not None,
        queue_problem=queue_problem,
        definition=definition if not isinstance(definition, str) else None,
        definition_problem=definition if isinstance(definition, str) else None,
        dependencies=dependencies,
        pod=pod,
        pod_seen=pod_seen,
        pod_retention=pod_retention,
        consumable_problems=consumable_problems,
    )


def consumable_problems(
    job: BatchJob, status: BatchJobStatus, spec: JobDefinitionSpec, resources: Iterable[ConsumableResource]
) -> tuple[str, ...]:
    """Why a new job's consumable-resource needs can never be met: checked at admission only (a
    resource deleted later leaves RUNNABLE jobs waiting, as on AWS)."""
    if status.status not in (None, JobState.SUBMITTED):
        return ()
    needs = consumables(job, spec)
    if not needs:
        return ()
    return tuple(requirement_problems(needs, {v.name: v for v in consumable_views(resources)}))


# --- dependencies ---------------------------------------------------------------------------


def facts(job: BatchJob, status: BatchJobStatus, children: ArrayChildren | None) -> deps.JobFacts:
    """A job as dependency resolution reads it (a job not stepped yet is SUBMITTED)."""
    return deps.JobFacts(
        name=job.metadata.name or "",
        uid=job.metadata.uid or "",
        state=JobState(status.status) if status.status else JobState.SUBMITTED,
        array_size=job.spec.arrayProperties.size if job.spec.arrayProperties else None,
        depends_on=tuple(
            deps.Dependency(d.jobId, deps.DependencyType.from_api(d.type)) for d in job.spec.dependsOn or []
        ),
        children=children,
    )


def lookup(
    namespace: str,
    by_uid: Callable[[str], JobRef | None],
    facts_of: Callable[[JobRef], deps.JobFacts | None],
) -> deps.Lookup:
    """Find a dependency by uid or by name. AWS dependencies never cross accounts; here they never
    cross namespaces, so a uid of another namespace's job is not found."""

    def find(ref: str) -> deps.JobFacts | None:
        key = by_uid(ref) or JobRef(namespace, ref)
        return facts_of(key) if key.namespace == namespace else None

    return find


# --- the scheduler's world ------------------------------------------------------------------


def consumed(c: ConsumableResource) -> int:
    """NON_REPLENISHABLE units used up, as persisted in status (totalQuantity there is the spec's
    total minus them); trusted only while the status reflects the current spec generation."""
    st = c.status
    if c.spec.resourceType != "NON_REPLENISHABLE" or st is None or st.totalQuantity is None:
        return 0
    if st.observedGeneration != c.metadata.generation:
        return 0
    return max(0, c.spec.totalQuantity - st.totalQuantity)


def ce_view(ce: ComputeEnvironment, capacity: CECapacity) -> CEView:
    cr = ce.spec.computeResources
    # An UNMANAGED environment has no maxvCpus: unmanagedvCpus (what AWS counts it as) caps it
    # when set, else its nodes are the limit (the real scheduler keeps pods Pending until they fit).
    unmanaged = ce.spec.type == "UNMANAGED"
    return CEView(
        name=ce.metadata.name or "",
        max_vcpus=(cr.maxvCpus if cr else 0)
        if not unmanaged
        else (ce.spec.unmanagedvCpus or UNBOUNDED_VCPUS),
        managed=not unmanaged,
        state=ce.spec.state or "ENABLED",
        status=capacity.status,
        status_reason=capacity.status_reason,
        nodes=capacity.nodes,
        max_node=capacity.max_node,
        scaling=capacity.scaling,
        instance_types=tuple(cr.instanceTypes or ()) if cr else (),
        spot=bool(cr is not None and cr.type == "SPOT"),
        node_types=capacity.node_types,
    )


def policy_view(policy: SchedulingPolicy | None) -> PolicyView | None:
    """A queue's fair-share policy, or None (a FIFO queue)."""
    fp = policy.spec.fairsharePolicy if policy is not None else None
    if fp is None:
        return None
    return PolicyView(
        # AWS User Guide "Fair-share scheduling policies": "A value of zero indicates that only
        # current usage is measured" (unset is 0 too).
        share_decay_seconds=fp.shareDecaySeconds or 0,
        compute_reservation=fp.computeReservation or 0,
        weights={
            s.shareIdentifier: float(s.weightFactor or DEFAULT_WEIGHT_FACTOR)
            for s in fp.shareDistribution or []
        },
    )


def queue_view(
    q: JobQueue, policies: Mapping[str, SchedulingPolicy], time_limit_scale: float = 1.0
) -> QueueView:
    """``time_limit_scale`` multiplies every jobStateTimeLimitActions maxTimeSeconds (a test
    knob: the CRD keeps AWS's 600 s minimum)."""
    name = q.spec.schedulingPolicy
    return QueueView(
        name=q.metadata.name or "",
        priority=q.spec.priority,
        # AWS: "Compute environments are tried in ascending order".
        compute_environment_order=tuple(q.compute_environments_in_order()),
        state=q.spec.state or "ENABLED",
        policy=policy_view(policies.get(name)) if name else None,
        time_limit_actions=tuple(
            TimeLimitAction(a.reason, math.ceil(a.maxTimeSeconds * time_limit_scale), a.action, a.state)
            for a in q.spec.jobStateTimeLimitActions or []
        ),
    )


def world(
    compute_environments: Iterable[ComputeEnvironment],
    queues: Iterable[JobQueue],
    policies: Mapping[str, SchedulingPolicy],
    consumable_resources: Iterable[ConsumableResource],
    capacity_of: Callable[[str], CECapacity],
    time_limit_scale: float = 1.0,
) -> World:
    """What one scheduler cycle reads. ``capacity_of``: the node-pool reconciler's report."""
    return World.of(
        [ce_view(ce, capacity_of(ce.metadata.name or "")) for ce in compute_environments],
        [queue_view(q, policies, time_limit_scale) for q in queues],
        consumable_views(consumable_resources),
    )


def consumable_views(resources: Iterable[ConsumableResource]) -> list[ConsumableView]:
    return [
        ConsumableView(
            name=c.metadata.name or "",
            total_quantity=c.spec.totalQuantity,
            resource_type=c.spec.resourceType or "REPLENISHABLE",
            consumed=consumed(c),
        )
        for c in resources
    ]
