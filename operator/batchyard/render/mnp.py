"""Multi-node parallel jobs: which node range (and which override) shapes node i's pod.

Why this module exists: an MNP job runs one pod per node, each built from the node range that
covers its index. AWS: "A range of 0:3 indicates nodes with index values of 0 through 3. If the
starting range value is omitted (:n), then 0 is used ... If the ending range value is omitted (n:),
then the highest possible node index is used ... Your accumulative node ranges must account for
all nodes (0:n). You can nest node ranges, for example 0:10 and 4:5. For this case, the 4:5 range
properties override the 0:10 properties." So node i takes the narrowest range containing it (on
a tie, the later one). `nodeOverrides.nodePropertyOverrides` are matched to node i the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchyard.api.batchjob import BatchJob, NodePropertyOverride
from batchyard.api.jobdefinition import JobDefinitionSpec, NodeRangeProperty
from batchyard.render.model import PodPlan, Template
from batchyard.render.names import (
    LABEL_JOB_NAME,
    LABEL_JOB_UID,
    LABEL_MANAGED_BY,
    LABEL_NODE_INDEX,
    MANAGED_BY,
    label_value,
    main_service_name,
    owned_by_job,
)

# Every node's pod carries the main node's stable DNS name (Batchyard's; AWS has only the address).
MAIN_NODE_HOST_ENV = "BATCHYARD_MAIN_NODE_HOST"


def main_service_host(job: BatchJob) -> str:
    """``<job>-main.<namespace>.svc``: the main node's name through its headless Service."""
    return f"{main_service_name(job.metadata.name or '')}.{job.metadata.namespace}.svc"


def main_service(job: BatchJob, definition: JobDefinitionSpec) -> dict[str, object]:
    """The headless Service of the job's main node (a Batchyard extra, not an AWS object).

    It selects the main node's pod of whichever attempt runs (job uid + node index), publishes
    its address before it is Ready (the children start once it RUNS), and is owned by the
    BatchJob, so it goes with the job at the latest.
    """
    meta = job.metadata
    if not meta.name or not meta.namespace or not meta.uid:
        raise ValueError("the BatchJob needs metadata.name, metadata.namespace and metadata.uid")
    selector = {LABEL_JOB_UID: label_value(meta.uid), LABEL_NODE_INDEX: str(main_node(definition))}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": main_service_name(meta.name),
            "namespace": meta.namespace,
            "labels": {
                LABEL_MANAGED_BY: MANAGED_BY,
                LABEL_JOB_NAME: label_value(meta.name),
                LABEL_JOB_UID: label_value(meta.uid),
            },
            "ownerReferences": owned_by_job(meta.name, meta.uid),
        },
        "spec": {"clusterIP": "None", "selector": selector, "publishNotReadyAddresses": True},
    }


@dataclass(frozen=True, slots=True)
class NodeRange:
    """An inclusive node index range; `end` None means "to the last node"."""

    start: int
    end: int | None

    @staticmethod
    def parse(target: str) -> NodeRange:
        """ "0:3", ":3", "3:", ":" or "3" (AWS targetNodes)."""
        if ":" not in target:
            return NodeRange(int(target), int(target))
        lo, _, hi = target.partition(":")
        return NodeRange(int(lo) if lo else 0, int(hi) if hi else None)

    def last(self, num_nodes: int) -> int:
        return num_nodes - 1 if self.end is None else self.end

    def covers(self, index: int, num_nodes: int) -> bool:
        return self.start <= index <= self.last(num_nodes)

    def width(self, num_nodes: int) -> int:
        return self.last(num_nodes) - self.start


def num_nodes(job: BatchJob, definition: JobDefinitionSpec) -> int:
    """Number of nodes: nodeOverrides.numNodes, else the definition's numNodes (0 if not MNP)."""
    props = definition.nodeProperties
    if props is None:
        return 0
    over = job.spec.nodeOverrides
    return over.numNodes if over is not None and over.numNodes is not None else props.numNodes


def main_node(definition: JobDefinitionSpec) -> int:
    """Index of the main node (AWS mainNode); 0 when the definition is not MNP."""
    return definition.nodeProperties.mainNode if definition.nodeProperties else 0


def _narrowest(targets: list[str], index: int, n: int) -> int | None:
    best: int | None = None
    best_width = 0
    for k, target in enumerate(targets):
        r = NodeRange.parse(target)
        if r.covers(index, n) and (best is None or r.width(n) <= best_width):
            best, best_width = k, r.width(n)
    return best


def node_choice(job: BatchJob, definition: JobDefinitionSpec, index: int) -> tuple[int | None, int | None]:
    """(index of the node range, index of the node property override) that shape node `index`."""
    props = definition.nodeProperties
    if props is None:
        return None, None
    n = num_nodes(job, definition)
    ranges = [r.targetNodes for r in props.nodeRangeProperties]
    overrides = (
        [o.targetNodes for o in (job.spec.nodeOverrides.nodePropertyOverrides or [])]
        if (job.spec.nodeOverrides)
        else []
    )
    return _narrowest(ranges, index, n), _narrowest(overrides, index, n)


def layout_problems(job: BatchJob, definition: JobDefinitionSpec) -> list[str]:
    """Node-count and range problems of an MNP job (AWS RegisterJobDefinition/SubmitJob rules)."""
    props = definition.nodeProperties
    if props is None:
        return []
    problems: list[str] = []
    spec = job.spec
    for name in ("containerOverrides", "ecsPropertiesOverride", "eksPropertiesOverride"):
        if getattr(spec, name) is not None:
            problems.append(
                f"spec.{name} can't be used with a multi-node parallel job; use "
                "spec.nodeOverrides.nodePropertyOverrides"
            )
    if spec.arrayProperties is not None:
        problems.append("spec.arrayProperties: multi-node parallel jobs can't be array jobs")
    n = num_nodes(job, definition)
    if spec.nodeOverrides is not None and spec.nodeOverrides.numNodes is not None:
        # AWS numNodes override: "There must be at least one node range in your job definition that
        # has an open upper boundary ... The lower boundary of the node range that's specified in
        # the job definition must be fewer than the number of nodes specified in the override. The
        # main node index ... must be fewer than the number of nodes specified in the override."
        open_ranges = [
            NodeRange.parse(r.targetNodes)
            for r in props.nodeRangeProperties
            if NodeRange.parse(r.targetNodes).end is None
        ]
        if not open_ranges:
            problems.append(
                "spec.nodeOverrides.numNodes needs a node range with an open upper boundary (such as "
                "':' or 'n:') in the job definition's nodeProperties"
            )
        elif any(r.start >= n for r in open_ranges):
            problems.append(
                f"spec.nodeOverrides.numNodes ({n}) must be greater than the lower boundary of the job "
                "definition's open-ended node range"
            )
    if props.mainNode >= n:
        problems.append(
            f"nodeProperties.mainNode ({props.mainNode}) must be smaller than the number of nodes ({n})"
        )
    for k, r in enumerate(props.nodeRangeProperties):
        rng = NodeRange.parse(r.targetNodes)
        if rng.end is not None and (rng.end < rng.start or rng.end >= n):
            problems.append(
                f"jobDefinition.nodeProperties.nodeRangeProperties[{k}].targetNodes {r.targetNodes!r} "
                f"must lie within nodes 0..{n - 1}"
            )
    # AWS "Node groups": "all node groups in a multi-node parallel job must use the same
    # instance type" -- where ranges (or overrides) name one, they must agree.
    types = sorted(
        {t for r in props.nodeRangeProperties for t in _instance_types_of(r.instanceTypes, r.container)}
        | {
            t
            for o in (spec.nodeOverrides.nodePropertyOverrides or [] if spec.nodeOverrides else [])
            for t in _instance_types_of(o.instanceTypes, o.containerOverrides)
        }
    )
    if len(types) > 1:
        problems.append(
            "jobDefinition.nodeProperties.nodeRangeProperties: all node groups of a multi-node parallel "
            f"job must use the same instance type (found {', '.join(types)})"
        )
    uncovered = [i for i in range(n) if node_choice(job, definition, i)[0] is None]
    if uncovered:
        problems.append(
            "jobDefinition.nodeProperties.nodeRangeProperties must account for all nodes (0:"
            f"{n - 1}); not covered: {_ranges_text(uncovered)}"
        )
    for m, o in enumerate(spec.nodeOverrides.nodePropertyOverrides or [] if spec.nodeOverrides else []):
        rng = NodeRange.parse(o.targetNodes)
        if rng.start >= n or (rng.end is not None and (rng.end < rng.start or rng.end >= n)):
            problems.append(
                f"spec.nodeOverrides.nodePropertyOverrides[{m}].targetNodes {o.targetNodes!r} must lie "
                f"within nodes 0..{n - 1}"
            )
    return problems


def _instance_types_of(types: list[str] | None, container: object) -> list[str]:
    named = list(types or [])
    instance = getattr(container, "instanceType", None)
    if isinstance(instance, str) and instance:
        named.append(instance)
    return named


def _ranges_text(indexes: list[int]) -> str:
    parts: list[str] = []
    start = prev = indexes[0]
    for i in [*indexes[1:], -2]:
        if i != prev + 1:
            parts.append(str(start) if start == prev else f"{start}:{prev}")
            start = i
        prev = i
    return ", ".join(parts)


def template_for(
    definition: JobDefinitionSpec,
    range_index: int,
    rng: NodeRangeProperty,
    override_index: int | None,
    override: NodePropertyOverride | None,
) -> Template:
    ov = override
    instance = None
    if ov is not None and ov.instanceTypes:
        instance = ov.instanceTypes[0]
    elif rng.instanceTypes:
        instance = rng.instanceTypes[0]
    elif ov is not None and ov.containerOverrides is not None and ov.containerOverrides.instanceType:
        instance = ov.containerOverrides.instanceType
    elif rng.container is not None and rng.container.instanceType:
        instance = rng.container.instanceType
    return Template(
        where=f"jobDefinition.nodeProperties.nodeRangeProperties[{range_index}]",
        container=rng.container,
        ecs=rng.ecsProperties,
        eks=rng.eksProperties,
        container_overrides=ov.containerOverrides if ov else None,
        ecs_override=ov.ecsPropertiesOverride if ov else None,
        eks_override=ov.eksPropertiesOverride if ov else None,
        override_where=(
            f"spec.nodeOverrides.nodePropertyOverrides[{override_index}]" if ov is not None else "spec"
        ),
        instance_type=instance,
    )


def node_template(
    plan: PodPlan, job: BatchJob, definition: JobDefinitionSpec, index: int | None
) -> Template | None:
    """The template of node `index` (default: the main node); None (with a problem) if none covers it."""
    props = definition.nodeProperties
    assert props is not None
    n = num_nodes(job, definition)
    i = props.mainNode if index is None else index
    if not 0 <= i < n:
        plan.problems.append(f"node index {i} is outside 0..{n - 1}")
        return None
    r, o = node_choice(job, definition, i)
    if r is None:
        plan.problems.append(f"no jobDefinition.nodeProperties.nodeRangeProperties entry covers node {i}")
        return None
    override = None
    if o is not None and job.spec.nodeOverrides is not None and job.spec.nodeOverrides.nodePropertyOverrides:
        override = job.spec.nodeOverrides.nodePropertyOverrides[o]
    return template_for(definition, r, props.nodeRangeProperties[r], o, override)
