"""kwok configuration for a plain-process kwok: the full stage set plus our exit stage.

kwok v0.8.0 fills in no default stages, so the config must carry all of them: node
initialisation and heartbeat, pod ready and delete (read from kwok's own module, copied into
the binary cache at build time), and Batchyard's `batchyard-pod-exit` stage, which ends a
Running pod as its annotations say. That is how tests and the demo drive exit codes:

| annotation on the pod (the operator copies it from the BatchJob) | meaning |
| --- | --- |
| `kwok.batchyard.io/exit-code` | exit code, or a comma list by attempt ("137,0": attempt 1 exits 137, later ones 0; the last entry repeats) |
| `kwok.batchyard.io/exit-code-index-<N>` | the same, for array child N only (takes precedence) |
| `kwok.batchyard.io/exit-code-node-<N>` | the same, for node N of a multi-node parallel job only (takes precedence) |
| `kwok.batchyard.io/delay-node-<N>` | the delay of node N of a multi-node parallel job (the operator writes it as that pod's `delay`) |
| `kwok.batchyard.io/reason` | the container's terminated reason (default `Completed` for 0, `Error` otherwise) |
| `kwok.batchyard.io/message` | the container's terminated message (default empty) |
| `kwok.batchyard.io/delay` | how long the pod runs, a Go duration ("3s", "250ms"); default 1s |

A pod without `kwok.batchyard.io/exit-code` runs until it is deleted, like a long job. The stage
reads the attempt from the pod label `batchyard.io/attempt`, the array index from
`batchyard.io/array-index` and the node index from `batchyard.io/node-index`. It matches bare pods, not only Job pods.

Container logs: kwok also runs its kubelet-like server (see `cluster.DevCluster`), and a
`ClusterLogs` document serves one fixed file for every container of every pod, so
`kubectl logs` (and `batchyard logs`) of any pod on a kwok node reads `KWOK_LOG_LINE`. kwok
v0.8.0 serves a file per selector (namespace and pod names), not per annotation, so there is
no per-pod log content. The file is in the CRI log format kwok's reader expects.
"""

from __future__ import annotations

import json
from pathlib import Path

from batchyard.render.names import LABEL_ARRAY_INDEX, LABEL_ATTEMPT, LABEL_NODE_INDEX

ANNOTATION_PREFIX = "kwok.batchyard.io/"
EXIT_CODE = ANNOTATION_PREFIX + "exit-code"
EXIT_CODE_INDEX = ANNOTATION_PREFIX + "exit-code-index-{index}"
EXIT_CODE_NODE = ANNOTATION_PREFIX + "exit-code-node-{node}"
DELAY_NODE = ANNOTATION_PREFIX + "delay-node-{node}"
REASON = ANNOTATION_PREFIX + "reason"
MESSAGE = ANNOTATION_PREFIX + "message"
DELAY = ANNOTATION_PREFIX + "delay"

ATTEMPT_LABEL = LABEL_ATTEMPT
ARRAY_INDEX_LABEL = LABEL_ARRAY_INDEX
NODE_INDEX_LABEL = LABEL_NODE_INDEX

NODE_SELECTOR_ANNOTATION = "kwok.x-k8s.io/node"
NODE_SELECTOR_VALUE = "fake"

KWOK_LOG_LINE = "batchyard kwok log"
KWOK_LOG_NAME = "container.log"
# One CRI log line (time, stream, F for a full line, content), the format kwok's reader parses.
KWOK_LOG_CRI = f"2026-01-01T00:00:00.000000000Z stdout F {KWOK_LOG_LINE}\n"

UPSTREAM_STAGES = (
    "node-initialize.yaml",
    "node-heartbeat-with-lease.yaml",
    "pod-ready.yaml",
    "pod-delete.yaml",
)

EXIT_STAGE = r"""apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: batchyard-pod-exit
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.annotations["kwok.batchyard.io/exit-code"]'
      operator: 'Exists'
  delay:
    durationMilliseconds: 1000
    durationFrom:
      expressionFrom: '.metadata.annotations["kwok.batchyard.io/delay"]'
  weight: 1000
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $ann := or .metadata.annotations dict }}
      {{ $labels := or .metadata.labels dict }}
      {{ $codes := splitList "," ( index $ann "kwok.batchyard.io/exit-code" ) }}
      {{ $idx := or ( index $labels "batchyard.io/array-index" ) "" }}
      {{ if $idx }}{{ $perIndex := index $ann ( printf "kwok.batchyard.io/exit-code-index-%s" $idx ) }}{{ if $perIndex }}{{ $codes = splitList "," $perIndex }}{{ end }}{{ end }}
      {{ $node := or ( index $labels "batchyard.io/node-index" ) "" }}
      {{ if $node }}{{ $perNode := index $ann ( printf "kwok.batchyard.io/exit-code-node-%s" $node ) }}{{ if $perNode }}{{ $codes = splitList "," $perNode }}{{ end }}{{ end }}
      {{ $attempt := atoi ( or ( index $labels "batchyard.io/attempt" ) "1" ) }}
      {{ $i := sub $attempt 1 }}
      {{ if ge $i ( len $codes ) }}{{ $i = sub ( len $codes ) 1 }}{{ end }}
      {{ if lt $i 0 }}{{ $i = 0 }}{{ end }}
      {{ $code := atoi ( trim ( index $codes $i ) ) }}
      {{ $reason := or ( index $ann "kwok.batchyard.io/reason" ) ( ternary "Completed" "Error" ( eq $code 0 ) ) }}
      {{ $message := or ( index $ann "kwok.batchyard.io/message" ) "" }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: PodCompleted
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: PodCompleted
        type: ContainersReady
      containerStatuses:
      {{ range $index, $item := .spec.containers }}
      - image: {{ $item.image | Quote }}
        name: {{ $item.name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: {{ $code }}
            reason: {{ $reason | Quote }}
            message: {{ $message | Quote }}
            startedAt: {{ $now | Quote }}
            finishedAt: {{ $now | Quote }}
      {{ end }}
      phase: {{ ternary "Succeeded" "Failed" ( eq $code 0 ) }}
"""


def cluster_logs(logs_file: Path) -> str:
    """A `ClusterLogs` document: every container of every pod reads `logs_file`."""
    return (
        "apiVersion: kwok.x-k8s.io/v1alpha1\n"
        "kind: ClusterLogs\n"
        "metadata:\n"
        "  name: batchyard-logs\n"
        "spec:\n"
        "  logs:\n"
        f"  - logsFile: {json.dumps(str(logs_file))}\n"
        f"    previousLogsFile: {json.dumps(str(logs_file))}\n"
    )


def kwok_config(stages_dir: Path, logs_file: Path) -> str:
    """The multi-document config passed to `kwok --config`."""
    docs = [
        "apiVersion: config.kwok.x-k8s.io/v1alpha1\n"
        "kind: KwokConfiguration\n"
        "options:\n"
        "  manageAllNodes: false\n"
        f"  manageNodesWithAnnotationSelector: {NODE_SELECTOR_ANNOTATION}={NODE_SELECTOR_VALUE}\n"
        "  nodeLeaseDurationSeconds: 40\n"
        "  cidr: 10.244.0.0/16\n"
        # Defaults are not applied to a config file's options: set the workers explicitly.
        "  podPlayStageParallelism: 8\n"
        "  nodePlayStageParallelism: 4\n"
        "  nodeLeaseParallelism: 4\n"
        "  podsOnNodeSyncParallelism: 2\n"
        "  enablePodsOnNodeSyncListPager: true\n"
        "  enablePodsOnNodeSyncStreamWatch: false\n"
        # The server's /containerLogs (see `cluster_logs`); off unless set.
        "  enableDebuggingHandlers: true\n"
    ]
    docs += [(stages_dir / name).read_text() for name in UPSTREAM_STAGES]
    docs.append(EXIT_STAGE)
    docs.append(cluster_logs(logs_file))
    return "\n---\n".join(d.strip("\n") + "\n" for d in docs)
