"""The AWS Batch gateway in `make demo`: a key for the demo namespace and the gateway process.

Why this exists: the demo shows that `aws batch ... --endpoint-url` drives the same jobs; it
creates a ServiceAccount with RBAC on Batchyard's kinds, an access key Secret for it, starts
`batchyard gateway` and returns the lines to print (endpoint and a ready-made command).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from batchyard.devcluster import DevCluster

NAMESPACE = "default"
SERVICE_ACCOUNT = "batchyard-demo-aws"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _objects(key_id: str, secret: str) -> list[dict[str, Any]]:
    rbac = "rbac.authorization.k8s.io/v1"
    subject = [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}]
    verbs = ["get", "list", "watch", "create", "update", "patch", "delete"]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE},
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": {"name": SERVICE_ACCOUNT},
            "rules": [{"apiGroups": ["batchyard.io"], "resources": ["*"], "verbs": verbs}],
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": SERVICE_ACCOUNT},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": SERVICE_ACCOUNT,
            },
            "subjects": subject,
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "batchyard-demo-aws-key",
                "namespace": NAMESPACE,
                "labels": {"batchyard.io/gateway-credentials": "true"},
            },
            "stringData": {
                "accessKeyId": key_id,
                "secretAccessKey": secret,
                "namespace": NAMESPACE,
                "serviceAccount": SERVICE_ACCOUNT,
            },
        },
    ]


def start(cluster: DevCluster, workdir: Path) -> tuple[subprocess.Popen[bytes], list[str]]:
    key_id, secret = "AKIADEMO" + secrets.token_hex(6).upper(), secrets.token_hex(20)
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in _objects(key_id, secret)))
    port = _free_port()
    log_path = workdir / "gateway.log"
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchyard.cli.main", "gateway", "--host", "127.0.0.1", "--port", str(port),
         "--secrets-namespace", NAMESPACE, "--metrics-port", "0"],
        env=env, stdout=log, stderr=log,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while (
        "AWS Batch API on" not in log_path.read_text() and proc.poll() is None and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    url = f"http://127.0.0.1:{port}"
    return proc, [
        f"AWS Batch API: {url} (log: {log_path})",
        f"  AWS_ACCESS_KEY_ID={key_id} AWS_SECRET_ACCESS_KEY={secret} AWS_DEFAULT_REGION=us-east-1 \\",
        f"    aws batch list-jobs --job-queue demo --job-status SUCCEEDED --endpoint-url {url}",
    ]
