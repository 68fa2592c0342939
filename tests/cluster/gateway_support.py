"""The AWS Batch gateway in cluster tests: a real `batchyard gateway` subprocess, real access keys.

Access keys are Secrets labelled batchyard.io/gateway-credentials=true in one keys namespace;
each names a test namespace and a ServiceAccount there, which gets ordinary RBAC (a Role on
the namespaced kinds, a ClusterRoleBinding for queues and compute environments) exactly as an
operator of a real cluster would grant it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from batchyard.devcluster import DevCluster

KEYS_NAMESPACE = "batchyard-gateway-keys"
CLUSTER_ROLE = "batchyard-gateway-test-cluster-kinds"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class GatewayProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


def start_gateway(
    cluster: DevCluster,
    workdir: Path,
    kubeconfig: Path | None = None,
    secrets_namespace: str = KEYS_NAMESPACE,
) -> Iterator[GatewayProcess]:
    """`batchyard gateway` as a subprocess (as the admin of the dev cluster, or `kubeconfig`'s user)."""
    cluster.kubectl("create", "namespace", secrets_namespace, check=False)
    apply_json(
        cluster,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": CLUSTER_ROLE},
            "rules": [
                {
                    "apiGroups": ["batchyard.io"],
                    "resources": [
                        "jobqueues",
                        "computeenvironments",
                        "schedulingpolicies",
                        "consumableresources",
                    ],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                }
            ],
        },
    )
    port = free_port()
    log = workdir / "gateway.log"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig or cluster.kubeconfig), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchyard.cli.main", "gateway", "--host", "127.0.0.1", "--port", str(port),
             "--secrets-namespace", secrets_namespace, "--metrics-port", "0", "--region", REGION],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    gw = GatewayProcess(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 60
    while "AWS Batch API on" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gateway did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    try:
        yield gw
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def apply_json(cluster: DevCluster, *objs: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objs))


@dataclass(frozen=True)
class Key:
    access_key_id: str
    secret_access_key: str
    namespace: str


def make_key(
    cluster: DevCluster,
    namespace: str,
    *,
    cluster_kinds: bool = True,
    keys_namespace: str = KEYS_NAMESPACE,
    sa: str = "batch-user",
) -> Key:
    """A ServiceAccount in `namespace` with RBAC on Batchyard's kinds, and an access key for it."""
    key = Key("AKID" + uuid.uuid4().hex[:16].upper(), uuid.uuid4().hex, namespace)
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": sa, "namespace": namespace},
            "rules": [
                {
                    "apiGroups": ["batchyard.io"],
                    "resources": ["batchjobs", "jobdefinitions"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": sa, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": f"key-{namespace}-{sa}",
                "namespace": keys_namespace,
                "labels": {"batchyard.io/gateway-credentials": "true"},
            },
            "stringData": {
                "accessKeyId": key.access_key_id,
                "secretAccessKey": key.secret_access_key,
                "namespace": namespace,
                "serviceAccount": sa,
            },
        },
    ]
    if cluster_kinds:
        objs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": f"{sa}-{namespace}"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": CLUSTER_ROLE,
                },
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
            }
        )
    apply_json(cluster, *objs)
    return key


def client(url: str, key: Key, secret: str | None = None) -> Any:
    return boto3.client(
        "batch",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=key.access_key_id,
        aws_secret_access_key=secret or key.secret_access_key,
        config=Config(retries={"max_attempts": 1}),
    )


def aws_cli(url: str, key: Key, *args: str, check: bool = True) -> Any:
    """The real AWS CLI in a subprocess (`aws batch ... --endpoint-url`)."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": key.access_key_id,
        "AWS_SECRET_ACCESS_KEY": key.secret_access_key,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    aws = str(Path(sys.executable).parent / "aws")
    done = subprocess.run(
        [aws, "batch", *args, "--endpoint-url", url, "--output", "json"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"aws batch {' '.join(args)} failed: {done.stderr}")
    return json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else done
