"""The AWS Batch gateway: SubmitJob/s through boto3 against plain BatchJob creates, DescribeJobs latency.

Same run, same control plane: BatchJobs created through the Kubernetes API (the `kubernetes`
client, C threads, authenticated as the ServiceAccount the gateway's key impersonates) and SubmitJob through the gateway (boto3, C threads, one client each; the
gateway verifies SigV4, validates, and creates the BatchJob as the key's ServiceAccount). Each
round measures both sides back to back, in alternating order so that neither always gets the
warmer API server, and gives one ratio; the figure is the median ratio over the rounds (on a
shared, loaded machine a ratio within one round is what counts, absolute rates drift). Then
DescribeJobs of 100 ids (of a job definition that exists, so the gateway reads it as the key),
repeated, p50/p99. No operator runs: the jobs stay SUBMITTED, so only the request path is
measured.

    python bench/bench_gateway.py [--jobs 2000] [--clients 16] [--rounds 3]

Both sides run the same number of client threads. 16 by default: with 8, the gateway path
(three hops, each queueing) leaves the two cores partly idle, and the bench would measure
latency rather than the rate each path sustains (bench/RESULTS.md, session 7). --clients 8
still runs, for comparison with older figures.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness import REPO, machine

from batchyard.devcluster import DevCluster

NS = "default"


def setup(cluster: DevCluster) -> tuple[str, str]:
    key_id, secret = "AKIABENCH" + uuid.uuid4().hex[:8].upper(), uuid.uuid4().hex
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bench", "namespace": NS}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "bench"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
         "subjects": [{"kind": "ServiceAccount", "name": "bench", "namespace": NS}]},
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": "bench-key", "namespace": NS, "labels": {"batchyard.io/gateway-credentials": "true"}},
         "stringData": {"accessKeyId": key_id, "secretAccessKey": secret, "namespace": NS, "serviceAccount": "bench"}},
        {"apiVersion": "batchyard.io/v1alpha1", "kind": "JobDefinition", "metadata": {"name": "bench", "namespace": NS},
         "spec": {"type": "container", "containerProperties": {"image": "busybox", "command": ["true"]}}},
        {"apiVersion": "batchyard.io/v1alpha1", "kind": "JobQueue", "metadata": {"name": "bench-q"},
         "spec": {"priority": 1, "state": "DISABLED", "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "none"}]}},
    ]  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objs))
    return key_id, secret


def profile_apiserver(cluster: DevCluster, seconds: int, out: Path) -> None:
    """kube-apiserver's own CPU profile (/debug/pprof/profile) for `seconds`, into `out`
    (read it with `go tool pprof -top -cum out`)."""
    ctx = ssl.create_default_context(cafile=str(cluster.ca_file))
    req = urllib.request.Request(
        f"{cluster.server}/debug/pprof/profile?seconds={seconds}",
        headers={"Authorization": f"Bearer {cluster.token}"},
    )
    with urllib.request.urlopen(req, context=ctx, timeout=seconds + 60) as resp:
        out.write_bytes(resp.read())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rate(n: int, clients: int, one: Any) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(n)))
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--py-spy",
        type=Path,
        help="record the gateway with py-spy (a dev tool, not a dependency) into FILE: collapsed stacks, GIL holders only",
    )
    parser.add_argument(
        "--pprof",
        type=Path,
        help="after the rounds, profile kube-apiserver (Go pprof, 20 s) during each side alone into DIR/apiserver-SIDE.pprof",
    )
    args = parser.parse_args()
    import boto3
    from botocore.config import Config
    from kubernetes import client, config

    workdir = Path(tempfile.mkdtemp(prefix="batchyard-bench-gw-"))
    cluster = DevCluster(workdir=workdir)
    cluster.start()
    gateway = None
    try:
        cluster.install_crds(REPO / "crds")
        key_id, secret = setup(cluster)
        port = 18900
        log = (workdir / "gateway.log").open("wb")
        gateway = subprocess.Popen(
            [sys.executable, "-m", "batchyard.cli.main", "gateway", "--host", "127.0.0.1", "--port", str(port),
             "--secrets-namespace", NS, "--metrics-port", "0", "--log-level", "WARNING"],
            env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}, stdout=log, stderr=log,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        while "AWS Batch API on" not in (workdir / "gateway.log").read_text():
            time.sleep(0.1)

        local = threading.local()

        # The plain creates run as the same ServiceAccount the key impersonates (its own token),
        # so both sides pay the same RBAC evaluation; the cluster's admin token would take the
        # system:masters short cut that no ordinary user has.
        sa_token = cluster.kubectl("create", "token", "bench", "-n", NS, "--duration=2h").stdout.strip()
        sa_kubeconfig = workdir / "kubeconfig-bench-sa"
        kc = json.loads(cluster.kubeconfig.read_text())
        for user in kc["users"]:
            user["user"] = {"token": sa_token}
        sa_kubeconfig.write_text(json.dumps(kc))

        def kube_api() -> Any:
            if not hasattr(local, "api"):
                local.api = client.CustomObjectsApi(
                    config.new_client_from_config(config_file=str(sa_kubeconfig))
                )
            return local.api

        def batch() -> Any:
            if not hasattr(local, "batch"):
                local.batch = boto3.client(
                    "batch", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key_id,
                    aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}, max_pool_connections=4),
                )  # fmt: skip
            return local.batch

        def direct(i: int) -> None:
            kube_api().create_namespaced_custom_object(
                "batchyard.io", "v1alpha1", NS, "batchjobs",
                {"apiVersion": "batchyard.io/v1alpha1", "kind": "BatchJob", "metadata": {"generateName": "direct-"},
                 "spec": {"jobName": f"direct-{i}", "jobQueue": "bench-q", "jobDefinition": "bench"}},
            )  # fmt: skip

        ids: list[str] = []

        def via_gateway(i: int) -> None:
            ids.append(
                batch().submit_job(jobName=f"GW_{i}", jobQueue="bench-q", jobDefinition="bench")["jobId"]
            )

        who = client.AuthenticationV1Api(kube_api().api_client).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        )
        assert who.status.user_info.username == f"system:serviceaccount:{NS}:bench", who.status.user_info
        direct(-1)
        via_gateway(-1)  # warm both paths (connections, the gateway's key and RBAC caches)
        direct_rates: list[float] = []
        gateway_rates: list[float] = []
        # CPU seconds per side: this process (the clients), API server + etcd, the gateway.
        cpu = {side: {"clients": 0.0, "apiserver": 0.0, "gateway": 0.0} for side in ("direct", "gateway")}
        server_pids = [cluster.pids["kube-apiserver"], cluster.pids["etcd"]]

        def measured(side: str, one: Any, out: list[float]) -> None:
            before = (time.process_time(), sum(map(cpu_seconds, server_pids)), cpu_seconds(gateway.pid))
            out.append(rate(args.jobs, args.clients, one))
            after = (time.process_time(), sum(map(cpu_seconds, server_pids)), cpu_seconds(gateway.pid))
            for name, b, a in zip(("clients", "apiserver", "gateway"), before, after, strict=True):
                cpu[side][name] += a - b

        spy = None
        if args.py_spy:
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(gateway.pid),
                    "--output",
                    str(args.py_spy),
                    "--rate",
                    "500",
                    "--gil",
                    "--format",
                    "raw",
                ]
            )
        for n in range(args.rounds):
            if n % 2 == 0:
                measured("direct", direct, direct_rates)
                measured("gateway", via_gateway, gateway_rates)
            else:
                measured("gateway", via_gateway, gateway_rates)
                measured("direct", direct, direct_rates)
        if spy is not None:
            spy.send_signal(__import__("signal").SIGINT)
            spy.wait(60)
        ratios = [g / d for g, d in zip(gateway_rates, direct_rates, strict=True)]
        if args.pprof:
            args.pprof.mkdir(parents=True, exist_ok=True)
            for side, one in (("direct", direct), ("gateway", via_gateway)):
                out = args.pprof / f"apiserver-{side}.pprof"
                done = threading.Event()
                fetch = threading.Thread(
                    target=lambda o=out, e=done: (profile_apiserver(cluster, 20, o), e.set())
                )
                fetch.start()
                while not done.is_set():
                    rate(args.jobs, args.clients, one)
                fetch.join()
                print(f"kube-apiserver CPU profile with {side} requests only: {out}")

        sample = ids[:100]
        latencies = []
        for _ in range(200):
            t = time.perf_counter()
            got = batch().describe_jobs(jobs=sample)["jobs"]
            latencies.append(time.perf_counter() - t)
            assert len(got) == 100
        latencies.sort()
        p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]

        print(f"machine: {machine()}")
        print(f"jobs per round: {args.jobs}, clients: {args.clients}, rounds: {args.rounds}")
        print("direct BatchJob creates/s: " + ", ".join(f"{r:.0f}" for r in direct_rates))
        print("gateway SubmitJob/s (boto3): " + ", ".join(f"{r:.0f}" for r in gateway_rates))
        for side, spent in cpu.items():
            per = ", ".join(f"{k} {v / (args.jobs * args.rounds) * 1000:.2f}" for k, v in spent.items())
            print(f"CPU ms per request, {side}: {per}")
        print("ratio gateway / direct per round: " + ", ".join(f"{r:.2f}" for r in ratios))
        print(
            f"ratio gateway / direct, median of {args.rounds} rounds: {statistics.median(ratios):.2f} (target >= 0.7)"
        )
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        print(f"DescribeJobs of 100 ids, 200 calls: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.wait(10)
        cluster.stop()


if __name__ == "__main__":
    main()
