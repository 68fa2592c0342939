"""The life of one attempt of a multi-node parallel (MNP) job: which node pods to create or stop,
and when the attempt ends with which outcome.

Why this exists: AWS Batch runs an MNP job as a gang of nodes with one main node, and the rules
for that gang differ from a single job's pod ("Job lifecycle for MNP jobs", "Running MNP jobs"
in the AWS Batch User Guide). This module is pure: the adapter reports what it sees of each
node's pod (``NodePod``), ``next_step`` says what to do, ``node_rows`` says what a user sees.

The rules (AWS, quoted):

* "The main node is launched first ... When the main node reaches the RUNNING status ... the
  child nodes are launched": children are created only once the main node's pod runs and has
  an address (``AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS``: the pod IP, or the node IP under
  hostNetwork).
* "The job is finished only if the main node exits. All child nodes are then stopped" and "The
  final job status ... is determined by the final job status of the main node": the attempt's
  outcome, exit code, reason and timestamps are the main node's.
* "If a child node dies, AWS Batch doesn't take any action on the other nodes": a child's end
  changes nothing but its own row.
* "a main node failure causes another attempt ... Child node failures don't cause more attempts
  ... Each new attempt ... updates the corresponding attempt of its associated child nodes": the
  retry decision is the single-job one (``core.retry``) on the main node's exit, and every node
  of the next attempt carries the same attempt number (the adapter names the pods by it).
* "The timeout applies to the whole job and not to the nodes", and cancel/terminate act on the
  whole gang: ``stop_all`` lists every live pod.

A child node's pod the API server refuses (``core.refusals``, recorded per node as ``Refused``)
is classified as a single job's pod is. Transient (a full ResourceQuota, throttling): the node
waits and its create is tried again after a backoff (``Wait.wake_at``), its row says why.
Permanent (Pod Security, a webhook, an invalid spec): the attempt ends at once, FAILED with the
refusal quoted and the node named, every node stopped and the gang's capacity released, and it
is not retried -- the same pod would be refused again, and AWS: "jobs that fail because of an
invalid job definition aren't retried" (AWS would refuse such a node group at submission; the
job is one unit there, so a node that can never start fails the job, not just its own row).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from batchyard.core.refusals import STATUS_REASON_LIMIT

# Observed pod phases (Kubernetes), plus ABSENT (not created yet) and GONE (created, then
# deleted or lost before it ended).
ABSENT: Final = "Absent"
PENDING: Final = "Pending"
RUNNING: Final = "Running"
SUCCEEDED: Final = "Succeeded"
FAILED: Final = "Failed"
GONE: Final = "Gone"
TERMINAL: Final = frozenset({SUCCEEDED, FAILED, GONE})

# AWS limits ("Running MNP jobs", "Node groups").
MAX_NODES: Final = 1000
MAX_NODE_RANGES: Final = 5
MAX_CONTAINERS_PER_NODE: Final = 10

MAIN_NODE_LOST_REASON: Final = "The main node's pod was deleted before it exited"


@dataclass(frozen=True, slots=True)
class NodePod:
    """What the adapter sees of node ``index``'s pod in the current attempt."""

    index: int
    phase: str = ABSENT
    pod_name: str | None = None
    node_name: str | None = None
    pod_ip: str | None = None
    host_ip: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    started_at: float | None = None
    stopped_at: float | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """The API server refused node ``index``'s pod: for good, or for now (tried again at ``retry_at``)."""

    permanent: bool
    reason: str  # the refusal's statusReason (core.refusals)
    retry_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Gang:
    """One attempt of an MNP job as observed: its nodes' pods, keyed by node index, and the
    refusals of the pods not created."""

    num_nodes: int
    main_node: int
    attempt: int
    pods: Mapping[int, NodePod]
    host_network: bool = False
    refused: Mapping[int, Refused] = field(default_factory=dict)

    def pod(self, index: int) -> NodePod:
        return self.pods.get(index) or NodePod(index)

    @property
    def main(self) -> NodePod:
        return self.pod(self.main_node)

    def main_address(self) -> str | None:
        """AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS: the node IP under hostNetwork (the pod
        shares the node's network), else the pod IP."""
        main = self.main
        return main.host_ip if self.host_network else main.pod_ip

    def live(self) -> list[int]:
        """Node indexes whose pod exists and has not ended."""
        return [i for i in range(self.num_nodes) if self.pod(i).phase in (PENDING, RUNNING)]


@dataclass(frozen=True, slots=True)
class CreateNodes:
    """Create these nodes' pods; ``main_address`` is None for the main node itself."""

    indexes: tuple[int, ...]
    main_address: str | None


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    """The main node exited (or was lost): the attempt is over with the main node's outcome.
    ``stop`` lists the nodes whose pods must be stopped (AWS: "All child nodes are then
    stopped")."""

    succeeded: bool
    exit_code: int | None
    reason: str | None
    started_at: float | None
    stopped_at: float | None
    node_name: str | None
    stop: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AttemptRefused:
    """A node's pod was refused for good: the attempt ends FAILED with ``reason``, not retried;
    ``stop`` lists every live node (the main node's too)."""

    node: int
    reason: str
    stop: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do until a pod changes, or until ``wake_at`` (``why`` for logs and describe)."""

    why: str
    wake_at: float | None = None


Step = CreateNodes | AttemptEnded | AttemptRefused | Wait


def refused_reason(index: int, reason: str) -> str:
    """The job's statusReason when node ``index``'s pod is refused for good: the node named."""
    text = f"{reason} (node {index})"
    return text if len(text) <= STATUS_REASON_LIMIT else text[: STATUS_REASON_LIMIT - 3] + "..."


def next_step(g: Gang, now: float = 0.0) -> Step:
    """What the attempt needs now (module docstring)."""
    main = g.main
    if main.phase == ABSENT:
        # AWS: "The main node is launched first"
        return CreateNodes((g.main_node,), None)
    if main.phase in TERMINAL:
        # AWS: "The job is finished only if the main node exits. All child nodes are then stopped"
        lost = main.phase == GONE
        return AttemptEnded(
            succeeded=main.phase == SUCCEEDED,
            exit_code=main.exit_code,
            reason=MAIN_NODE_LOST_REASON if lost and not main.reason else main.reason,
            started_at=main.started_at,
            stopped_at=main.stopped_at,
            node_name=main.node_name,
            stop=tuple(i for i in g.live() if i != g.main_node),
        )
    final = sorted(i for i, r in g.refused.items() if r.permanent and g.pod(i).phase == ABSENT)
    if final:
        # a node that can never start: the job is invalid as a whole (module docstring)
        return AttemptRefused(final[0], refused_reason(final[0], g.refused[final[0]].reason), tuple(g.live()))
    if main.phase == PENDING:
        return Wait(f"the main node {g.main_node} is starting")
    address = g.main_address()
    if not address:
        return Wait(f"the main node {g.main_node} runs but has no address yet")
    # AWS: "When the main node reaches the RUNNING status ... the child nodes are launched".
    # A child that ended (or was lost) is not launched again: AWS takes no action on a child
    # node's failure.
    missing = tuple(i for i in range(g.num_nodes) if i != g.main_node and g.pod(i).phase == ABSENT)
    # A node refused for now is tried again after its backoff.
    due = tuple(i for i in missing if i not in g.refused or g.refused[i].retry_at <= now)
    if due:
        return CreateNodes(due, address)
    if missing:
        first = missing[0]
        return Wait(
            f"node(s) {', '.join(map(str, missing))} refused for now: {g.refused[first].reason}",
            min(g.refused[i].retry_at for i in missing),
        )
    return Wait("all nodes launched; the job ends when the main node exits")


def stop_all(g: Gang) -> tuple[int, ...]:
    """Timeout, cancel, terminate: every live node of the gang (AWS: the timeout "applies to the
    whole job and not to the nodes"; TerminateJob acts on the job)."""
    return tuple(g.live())


# AWS per-node job status as DescribeJobs shows `jobId#N`.
NODE_STATUS: Final[Mapping[str, str]] = {
    PENDING: "STARTING",
    RUNNING: "RUNNING",
    SUCCEEDED: "SUCCEEDED",
    FAILED: "FAILED",
    GONE: "FAILED",
}


@dataclass(frozen=True, slots=True)
class NodeRow:
    """One node as a user sees it (``status.nodeProperties.nodes[]``, ``describe job#N``)."""

    nodeIndex: int
    isMainNode: bool
    status: str
    podName: str | None
    nodeName: str | None
    privateIpv4Address: str | None
    exitCode: int | None
    reason: str | None

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in _fields(self).items() if v is not None}


def _fields(row: NodeRow) -> dict[str, object]:
    return {name: getattr(row, name) for name in row.__slots__}


def node_status(g: Gang, index: int, job_ended: bool = False) -> str:
    """AWS status of node ``index``: a node not created yet waits for the main node (RUNNABLE
    for the main node, PENDING for a child); once the attempt ended, a node never launched is
    reported as the job ended (its pod was never needed)."""
    pod = g.pod(index)
    if pod.phase == ABSENT:
        refused = g.refused.get(index)
        if job_ended or (refused is not None and refused.permanent):
            return "FAILED"
        return "RUNNABLE" if index == g.main_node else "PENDING"
    return NODE_STATUS[pod.phase]


def node_rows(g: Gang, job_ended: bool = False) -> list[NodeRow]:
    """Every node of the attempt, in index order."""
    rows = []
    for i in range(g.num_nodes):
        pod = g.pod(i)
        address = pod.host_ip if g.host_network else pod.pod_ip
        rows.append(
            NodeRow(
                nodeIndex=i,
                isMainNode=i == g.main_node,
                status=node_status(g, i, job_ended),
                podName=pod.pod_name,
                nodeName=pod.node_name,
                privateIpv4Address=address,
                exitCode=pod.exit_code,
                reason=pod.reason if i not in g.refused or pod.phase != ABSENT else g.refused[i].reason,
            )
        )
    return rows


def node_job_id(job_id: str, index: int) -> str:
    """AWS: a node of an MNP job is addressed as ``<jobId>#<node index>``."""
    return f"{job_id}#{index}"


def split_node_job_id(text: str) -> tuple[str, int | None]:
    """``job#2`` -> ("job", 2); ``job`` -> ("job", None). A suffix that is not a number is kept."""
    base, sep, tail = text.rpartition("#")
    if sep and base and tail.isdigit():
        return base, int(tail)
    return text, None
