"""Names, label keys and label values of the pods Batchyard creates.

Why this module exists: every API write must be idempotent, so an attempt's pod has a name derived
only from (job, array index, attempt); a restarted operator that repeats a dispatch gets 409
Conflict instead of a second pod. Labels are how the operator (server-side selectors), users
(`kubectl get pods -l ...`) and the node-pool code find job pods and nodes, so their keys are
constants here and their values are always valid Kubernetes label values.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from batchyard.core.nodepool import CE_LABEL, CE_TAINT_EFFECTS, CE_TAINT_KEY
from batchyard.core.nodepool import GPU_RESOURCE as NODEPOOL_GPU_RESOURCE

# --- keys the operator owns ---------------------------------------------------------------------

GROUP: Final = "batchyard.io"
API_VERSION: Final = "batchyard.io/v1alpha1"


def owned_by_job(name: str, uid: str) -> list[dict[str, object]]:
    """The ownerReferences of an object a BatchJob controls (its pods, its main node's Service):
    garbage collection deletes them with the job."""
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "BatchJob",
            "name": name,
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


LABEL_JOB_NAME: Final = "batchyard.io/job-name"
LABEL_JOB_UID: Final = "batchyard.io/job-uid"
LABEL_QUEUE: Final = "batchyard.io/queue"
LABEL_COMPUTE_ENVIRONMENT: Final = "batchyard.io/compute-environment"
LABEL_ATTEMPT: Final = "batchyard.io/attempt"
LABEL_ARRAY_INDEX: Final = "batchyard.io/array-index"
LABEL_NODE_INDEX: Final = "batchyard.io/node-index"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "batchyard"

# The label and taint the node-pool code puts on every node of a compute environment: pods select
# the label and tolerate the taint, so only Batchyard job pods (and DaemonSets that tolerate it)
# land on Batchyard nodes. AWS: "AWS Batch combines labels and taints to ensure jobs run only on
# AWS Batch managed nodes and that other pods don't run on those nodes." The node side owns them
# (core.nodepool); they are imported here so the two can never disagree.
NODE_LABEL_COMPUTE_ENVIRONMENT: Final = CE_LABEL
NODE_TAINT_COMPUTE_ENVIRONMENT: Final = CE_TAINT_KEY
# AWS: Batch nodes carry their taint with both effects (the DaemonSet tolerations in "Run a
# DaemonSet on AWS Batch managed nodes" list NoSchedule and NoExecute).
NODE_TAINT_EFFECTS: Final = CE_TAINT_EFFECTS

# AWS EKS pod labels ("Tutorial: Map a running pod back to its job"), kept so that AWS tooling
# habits (`kubectl get pods -l batch.amazonaws.com/job-id=<id>`) work here too.
AWS_LABEL_JOB_ID: Final = "batch.amazonaws.com/job-id"
AWS_LABEL_CE_UUID: Final = "batch.amazonaws.com/compute-environment-uuid"

ANNOTATION_JOB_ID: Final = "batchyard.io/job-id"
ANNOTATION_JOB_DEFINITION: Final = "batchyard.io/job-definition"
# BatchJob annotations with this prefix are copied to the pods (the kwok test stage reads them to
# decide a fake pod's exit code, reason, message and delay).
KWOK_ANNOTATION_PREFIX: Final = "kwok.batchyard.io/"

GPU_RESOURCE: Final = NODEPOOL_GPU_RESOURCE

# --- validity -----------------------------------------------------------------------------------

MAX_NAME: Final = 63  # a DNS label: also valid as the pod's hostname
MAX_LABEL_VALUE: Final = 63
_HASH_LEN: Final = 8
_DNS_LABEL_RE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE_RE: Final = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME_RE: Final = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DIGIT_TAIL_RE: Final = re.compile(r"-n?[0-9]+$")
_DNS_SUBDOMAIN_RE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def short_hash(text: str) -> str:
    """A short, stable hash (8 hex digits of SHA-256) used to keep shortened names unique."""
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


def is_dns_label(text: str) -> bool:
    return len(text) <= MAX_NAME and bool(_DNS_LABEL_RE.match(text))


def is_label_value(text: str) -> bool:
    return len(text) <= MAX_LABEL_VALUE and bool(_LABEL_VALUE_RE.match(text))


def is_label_key(key: str) -> bool:
    """A qualified name: optional DNS-subdomain prefix (≤253) and '/', then a name of ≤63 chars."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_LABEL_NAME_RE.match(name))


def dns_label(text: str, *, max_len: int = MAX_NAME) -> str:
    """`text` as a DNS label of at most `max_len` chars; unchanged when it already is one.

    Anything changed (case, invalid characters, length) gets `-<hash of the original>` appended,
    so two different inputs never map to the same output by sanitising.
    """
    if len(text) <= max_len and _DNS_LABEL_RE.match(text):
        return text
    suffix = "-" + short_hash(text)
    base = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    base = base[: max_len - len(suffix)].strip("-")
    return (base + suffix) if base else suffix[1:]


def label_value(text: str) -> str:
    """`text` as a valid label value (≤63 chars, alphanumeric ends, `-_.` inside).

    Valid values are kept as they are; others are sanitised and get `-<hash>` appended.
    """
    if is_label_value(text):
        return text
    suffix = "-" + short_hash(text)
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
    base = base[: MAX_LABEL_VALUE - len(suffix)]
    base = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", base)
    return (base + suffix) if base else suffix[1:]


def main_service_name(job_name: str) -> str:
    """The headless Service of a multi-node parallel job's main node: ``<job>-main`` as a
    DNS-1035 label (a Service name starts with a letter), shortened with a hash when needed."""
    name = dns_label(f"{job_name}-main")
    return name if name[0].isalpha() else dns_label(f"j-{job_name}-main")


def pod_name(job_name: str, attempt: int, array_index: int | None, node_index: int | None = None) -> str:
    """The deterministic pod name of one attempt: `<job>-a<attempt>`, `<job>-<index>-a<attempt>` for
    an array child, `<job>-n<node>-a<attempt>` for a node of a multi-node parallel job.

    `job_name` is the BatchJob's metadata.name (unique in its namespace, where the pod lives).
    The result is a DNS label of at most 63 characters, so it is also a valid hostname. When the
    job name is too long or not a DNS label (upper case, dots), it is shortened/sanitised and an
    8-digit hash of the full job name is inserted before the suffix, so names stay unique per
    (job, index, attempt) and the suffix stays readable. Job names ending in `-<digits>` get the
    hash too: otherwise job `x-1` (attempt 2) and child 1 of job `x` would both be `x-1-a2`
    (likewise `-n<digits>` for nodes).
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")  # AWS: first attempt is 1
    if array_index is not None and array_index < 0:
        raise ValueError(f"array index must be >= 0, got {array_index}")
    if array_index is not None and node_index is not None:
        raise ValueError("a multi-node parallel job can't be an array job")  # AWS
    if node_index is not None and node_index < 0:
        raise ValueError(f"node index must be >= 0, got {node_index}")
    if array_index is not None:
        suffix = f"-{array_index}-a{attempt}"
    elif node_index is not None:
        suffix = f"-n{node_index}-a{attempt}"
    else:
        suffix = f"-a{attempt}"
    candidate = job_name + suffix
    ambiguous = _DIGIT_TAIL_RE.search(job_name) is not None
    if job_name and not ambiguous and len(candidate) <= MAX_NAME and _DNS_LABEL_RE.match(candidate):
        return candidate
    tail = f"-{short_hash(job_name)}{suffix}"
    base = re.sub(r"[^a-z0-9-]+", "-", job_name.lower())
    base = base[: MAX_NAME - len(tail)].strip("-")
    return (base + tail) if base else ("j" + tail)
