"""`Ref::name` parameter substitution and the AWS_BATCH_* environment of a job's containers.

Why this module exists: the pod a job runs in must see exactly what an AWS Batch container
sees — its command with `Ref::` placeholders filled in from the job's parameters, and the
AWS_BATCH_* introspection variables — and users must not be able to spoof those variables.
The render layer calls these functions; they are pure so they can be tested exhaustively.

Sources: AWS User Guide "Parameters", "Reference: Parameter substitution", "AWS Batch job
environment variables"; SubmitJob `parameters`; digest §3.1.4 and §4.

What AWS documents (User Guide "Parameters"): a placeholder is a whole element of the command
array ("Ref::codec"), replaced by the value of the parameter it names. That form is exact here:
the element must be `Ref::` followed by a parameter's full name.

Decisions where the AWS documents are silent (digest §3.1.4, §8.3 #2 and #3):
* Substitution applies to every element of both `command` and `args` (EKS splits the two).
* Extension: a token embedded in a longer element ("--in=Ref::src", "s3://Ref::bucket/Ref::key")
  is replaced too. Its name is the whole run of name characters after `Ref::` (letters, digits,
  `_` and `-`), and it is replaced only when a parameter has exactly that name: with only a
  parameter `in`, "Ref::inputfile" stays "Ref::inputfile" (never "<value of in>putfile"), and
  "Ref::input.csv" with a parameter `input` becomes "<value>.csv" (the dot ends the name).
* A placeholder without a value stays literal (as AWS leaves it: the container sees the text).
* Values are inserted once; a value that itself contains `Ref::` is not expanded again.
* AWS_BATCH_JOB_ID of an array child is "<parent id>:<index>", of a multi-node node
  "<job id>#<node index>" — the ids AWS gives those jobs ("example_job_ID:0").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

REF_PREFIX = "Ref::"
# AWS: "All variables that AWS Batch set start with the AWS_BATCH_ prefix. This is a protected
# environment variable prefix." The job-definition reference says "must not start with
# AWS_BATCH" (no underscore), which is the stricter of the two; we enforce that one.
RESERVED_ENV_PREFIX = "AWS_BATCH"


def merged_parameters(
    definition_defaults: Mapping[str, str] | None, submitted: Mapping[str, str] | None
) -> dict[str, str]:
    """AWS: "Parameters in job submission requests take precedence over the defaults in a job definition"."""
    merged = dict(definition_defaults or {})
    merged.update(submitted or {})
    return merged


def substitute_element(element: str, params: Mapping[str, str]) -> str:
    """Replace every `Ref::name` token in one command/args element (see module docstring)."""
    if REF_PREFIX not in element:
        return element
    # AWS documented form: the whole element is the placeholder of one parameter, named in full.
    whole = element[len(REF_PREFIX) :]
    if element.startswith(REF_PREFIX) and whole and whole in params:
        return params[whole]
    out: list[str] = []
    pos = 0
    while True:
        hit = element.find(REF_PREFIX, pos)
        if hit < 0:
            out.append(element[pos:])
            return "".join(out)
        out.append(element[pos:hit])
        rest_at = hit + len(REF_PREFIX)
        end = _name_end(element, rest_at)
        name = element[rest_at:end]
        if name and name in params:
            out.append(params[name])
            pos = end
        else:
            out.append(REF_PREFIX)  # unknown placeholder stays literal (a prefix of a name is not a match)
            pos = rest_at


def _name_end(text: str, start: int) -> int:
    """Where the parameter name that starts at ``start`` ends (letters, digits, `_` and `-`)."""
    end = start
    while end < len(text) and (text[end].isalnum() or text[end] in "_-"):
        end += 1
    return end


def substitute(values: Sequence[str] | None, params: Mapping[str, str]) -> list[str] | None:
    """Substitute a whole command or args list; None (not set) stays None."""
    if values is None:
        return None
    return [substitute_element(v, params) for v in values]


def unresolved_refs(values: Sequence[str] | None, params: Mapping[str, str]) -> list[str]:
    """The `Ref::` tokens left after substitution, for a warning event (in order, once each)."""
    found: list[str] = []
    for element in substitute(values, params) or []:
        pos = element.find(REF_PREFIX)
        while pos >= 0:
            end = _name_end(element, pos + len(REF_PREFIX))
            token = element[pos:end]
            if token not in found:
                found.append(token)
            pos = element.find(REF_PREFIX, end)
    return found


# --- AWS_BATCH_* environment (digest §4) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArrayChild:
    index: int
    size: int


@dataclass(frozen=True, slots=True)
class MultiNode:
    """Multi-node parallel placement of one node. `main_node_ip` is needed on child nodes only."""

    node_index: int
    num_nodes: int
    main_node_index: int
    main_node_ip: str | None = None

    @property
    def is_main(self) -> bool:
        return self.node_index == self.main_node_index


@dataclass(frozen=True, slots=True)
class BatchEnvContext:
    """Everything the AWS_BATCH_* variables are computed from.

    `job_id` is the id of the submitted job (the array parent's id for a child, the job's id for
    an MNP node); `kubernetes_node_uid` is set once the pod's node is known (EKS-only variable).
    """

    job_id: str
    queue_name: str
    compute_environment_name: str
    attempt: int
    array: ArrayChild | None = None
    node: MultiNode | None = None
    kubernetes_node_uid: str | None = None


def child_job_id(parent_id: str, index: int) -> str:
    """AWS "Array jobs": the array index is "appended to the end of the parent ID ... example_job_ID:0"."""
    return f"{parent_id}:{index}"


def node_job_id(job_id: str, node_index: int) -> str:
    """AWS "Multi-node parallel jobs": nodes are addressed as `jobId#nodeIndex`."""
    return f"{job_id}#{node_index}"


def batch_env(ctx: BatchEnvContext) -> list[tuple[str, str]]:
    """The AWS_BATCH_* variables of one container, as (name, value) pairs sorted by name.

    Sorted so that the rendered pod is byte-for-byte stable (the order AWS uses is not defined).
    Raises ValueError for a context AWS could not produce.
    """
    if ctx.attempt < 1:
        raise ValueError(
            f"attempt numbers start at 1, got {ctx.attempt}"
        )  # AWS: "first attempt is numbered 1"
    job_id = ctx.job_id
    env: dict[str, str] = {
        # AWS: "set to the name of the compute environment where your job is placed."
        "AWS_BATCH_CE_NAME": ctx.compute_environment_name,
        # AWS: "set to the name of the job queue that your job was submitted to."
        "AWS_BATCH_JQ_NAME": ctx.queue_name,
        # AWS: "set to the job attempt number. The first attempt is numbered 1."
        "AWS_BATCH_JOB_ATTEMPT": str(ctx.attempt),
    }
    if ctx.array is not None:
        if not 0 <= ctx.array.index < ctx.array.size:
            raise ValueError(f"array index {ctx.array.index} outside 0..{ctx.array.size - 1}")
        # AWS: "only set in child array jobs. The array job index begins at 0".
        env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(ctx.array.index)
        # AWS: "set to the size of the parent array job."
        env["AWS_BATCH_JOB_ARRAY_SIZE"] = str(ctx.array.size)
        job_id = child_job_id(job_id, ctx.array.index)
    if ctx.node is not None:
        node = ctx.node
        if not (0 <= node.node_index < node.num_nodes and 0 <= node.main_node_index < node.num_nodes):
            raise ValueError(f"node indexes must be within 0..{node.num_nodes - 1}")
        # AWS: MAIN_NODE_INDEX, NODE_INDEX and NUM_NODES are "only set in multi-node parallel jobs".
        env["AWS_BATCH_JOB_MAIN_NODE_INDEX"] = str(node.main_node_index)
        env["AWS_BATCH_JOB_NODE_INDEX"] = str(node.node_index)
        env["AWS_BATCH_JOB_NUM_NODES"] = str(node.num_nodes)
        if not node.is_main:
            # AWS: "only set in multi-node parallel job child nodes. This variable isn't present on
            # the main node". Children start after the main node is RUNNING, so its IP is known.
            if not node.main_node_ip:
                raise ValueError("a child node needs the main node's IP address")
            env["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] = node.main_node_ip
        job_id = node_job_id(job_id, node.node_index)
    # AWS: "set to the AWS Batch job ID."
    env["AWS_BATCH_JOB_ID"] = job_id
    if ctx.kubernetes_node_uid is not None:
        # AWS: "the Kubernetes UID of the node object ... only set for jobs that run on Amazon EKS".
        env["AWS_BATCH_JOB_KUBERNETES_NODE_UID"] = ctx.kubernetes_node_uid
    return sorted(env.items())


def reserved_env_violations(names: Iterable[str]) -> list[str]:
    """User-supplied env names that AWS reserves (in input order, each once).

    AWS: "Environment variables must not start with AWS_BATCH. This naming convention is
    reserved for variables that are set by the AWS Batch service." (job definitions) and "You
    can't use this prefix for your own variables in job definitions or overrides."
    Environment names are case-sensitive, so `aws_batch_x` is allowed.
    """
    seen: list[str] = []
    for name in names:
        if name.startswith(RESERVED_ENV_PREFIX) and name not in seen:
            seen.append(name)
    return seen


def reserved_env_message(violations: Sequence[str]) -> str:
    """The statusReason / validation message for `reserved_env_violations`."""
    return (
        "Environment variables cannot start with AWS_BATCH, a prefix reserved for variables "
        "that Batch sets: " + ", ".join(violations)
    )
