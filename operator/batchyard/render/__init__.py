"""Pure builders: (job, job definition revision, compute environment, attempt) -> Pod manifest.

Why this package exists: turning a dispatched job into the pod it runs in is the heart of the
operator's AWS Batch semantics (overrides, parameters, AWS_BATCH_* variables, vCPU/memory/GPU,
placement on the compute environment's nodes), and it must be deterministic and testable without
a cluster. No I/O, no kopf, no Kubernetes client here (an import contract enforces it).
"""

from batchyard.render.mnp import (
    MAIN_NODE_HOST_ENV,
    main_node,
    main_service,
    main_service_host,
    node_choice,
    num_nodes,
)
from batchyard.render.names import (
    LABEL_ARRAY_INDEX,
    LABEL_ATTEMPT,
    LABEL_COMPUTE_ENVIRONMENT,
    LABEL_JOB_NAME,
    LABEL_JOB_UID,
    LABEL_MANAGED_BY,
    LABEL_NODE_INDEX,
    LABEL_QUEUE,
    MANAGED_BY,
    NODE_LABEL_COMPUTE_ENVIRONMENT,
    NODE_TAINT_COMPUTE_ENVIRONMENT,
    NODE_TAINT_EFFECTS,
    main_service_name,
    pod_name,
)
from batchyard.render.pod import job_demand, render_pod, render_problems
from batchyard.render.resources import DEFAULT_MEMORY_MIB, DEFAULT_VCPUS

__all__ = [
    "DEFAULT_MEMORY_MIB",
    "DEFAULT_VCPUS",
    "LABEL_ARRAY_INDEX",
    "LABEL_ATTEMPT",
    "LABEL_COMPUTE_ENVIRONMENT",
    "LABEL_JOB_NAME",
    "LABEL_JOB_UID",
    "LABEL_MANAGED_BY",
    "LABEL_NODE_INDEX",
    "LABEL_QUEUE",
    "MAIN_NODE_HOST_ENV",
    "MANAGED_BY",
    "NODE_LABEL_COMPUTE_ENVIRONMENT",
    "NODE_TAINT_COMPUTE_ENVIRONMENT",
    "NODE_TAINT_EFFECTS",
    "job_demand",
    "main_node",
    "main_service",
    "main_service_host",
    "main_service_name",
    "node_choice",
    "num_nodes",
    "pod_name",
    "render_pod",
    "render_problems",
]
