"""The `batchyard` CLI and kubectl's views (field selectors, the Progress column) against the real
control plane and the real operator, as a user would run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from batch import (
    apply,
    batch_job,
    compute_environment,
    environment,
    job_definition,
    job_queue,
    pods,
    wait_status,
)
from waiting import wait_for

from batchyard.devcluster import DevCluster
from batchyard.devcluster.kwok import KWOK_LOG_LINE

pytestmark = pytest.mark.cluster


def cli(cluster: DevCluster, *args: str, code: int | None = 0) -> subprocess.CompletedProcess[str]:
    """Run `batchyard` as a user would (their KUBECONFIG, kubectl); check its exit code."""
    assert cluster.binaries is not None
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    proc = subprocess.run(
        [sys.executable, "-m", "batchyard.cli.main", *args, "--kubectl", str(cluster.binaries.kubectl)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert code is None or proc.returncode == code, f"exit {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    return proc


def names(cluster: DevCluster, namespace: str, selector: str) -> set[str]:
    out = cluster.kubectl("get", "bj", "-n", namespace, "--field-selector", selector, "-o", "name").stdout
    return {line.removeprefix("batchjob.batchyard.io/") for line in out.split()}


def test_field_selectors_by_status_and_queue_return_exactly_the_matching_jobs(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    ce, q1 = environment(devcluster, namespace, max_vcpus=16, nodes=1)
    q2 = f"{namespace}-q2"
    apply(devcluster, job_queue(q2, [ce]), job_definition("d", namespace), job_definition("other", namespace))
    jobs = {
        "ok-1": (q1, "0", "d"),
        "bad-1": (q1, "3", "d"),
        "bad-2": (q1, "3", "other"),
        "ok-2": (q2, "0", "d"),
        "bad-3": (q2, "3", "d"),
    }
    apply(devcluster, *(batch_job(n, namespace, q, d, exit_code=c) for n, (q, c, d) in jobs.items()))
    for name in jobs:
        wait_status(devcluster, namespace, name, "SUCCEEDED", "FAILED", timeout=90)

    assert names(devcluster, namespace, f"status.status=FAILED,spec.jobQueue={q1}") == {"bad-1", "bad-2"}
    assert names(devcluster, namespace, "status.status=FAILED") == {"bad-1", "bad-2", "bad-3"}
    assert names(devcluster, namespace, f"spec.jobQueue={q2}") == {"ok-2", "bad-3"}
    assert names(devcluster, namespace, f"spec.jobQueue={q1},status.status!=FAILED") == {"ok-1"}
    assert names(devcluster, namespace, "spec.jobDefinition=other") == {"bad-2"}
    # The same through `batchyard list` (server-side selectors), in AWS's ListJobs shape.
    listed = json.loads(
        cli(devcluster, "list", "-n", namespace, "-q", q1, "-s", "FAILED", "-o", "json").stdout
    )
    assert {j["name"] for j in listed["jobSummaryList"]} == {"bad-1", "bad-2"}
    assert {j["container"]["exitCode"] for j in listed["jobSummaryList"]} == {3}
    table = cli(devcluster, "list", "-n", namespace, "--name-prefix", "ok-").stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "STATUS", "QUEUE"]
    assert sorted(row.split()[:2] for row in table[1:]) == [["ok-1", "SUCCEEDED"], ["ok-2", "SUCCEEDED"]]


def test_an_array_row_shows_its_progress(devcluster: DevCluster, operator: object, namespace: str) -> None:
    _, queue = environment(devcluster, namespace, max_vcpus=16, nodes=1)
    apply(
        devcluster,
        job_definition("d", namespace),
        batch_job("arr", namespace, queue, "d", arrayProperties={"size": 6},
                  annotations={"kwok.batchyard.io/exit-code-index-4": "1"}),
    )  # fmt: skip
    wait_status(devcluster, namespace, "arr", "FAILED", timeout=90)

    out = devcluster.kubectl("get", "batchjobs", "-n", namespace).stdout.splitlines()
    header, row = out[0], out[1]
    assert "PROGRESS" in header.split()
    at = header.index("PROGRESS")
    assert row[at:].startswith("SUCCEEDED 5/6, FAILED 1")
    listed = cli(devcluster, "list", "-n", namespace).stdout
    assert "SUCCEEDED 5/6, FAILED 1" in listed
    children = cli(
        devcluster, "list", "-n", namespace, "--array-job", "arr", "-s", "FAILED"
    ).stdout.splitlines()
    assert [r.split()[:3] for r in children[1:]] == [["4", "FAILED", "1"]]


def test_submit_wait_list_describe_and_cancel(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    _, queue = environment(devcluster, namespace, max_vcpus=16, nodes=1)
    off_ce, off_q = f"{namespace}-off", f"{namespace}-offq"
    apply(
        devcluster,
        compute_environment(off_ce, 16, state="DISABLED"),
        job_queue(off_q, [off_ce]),
        job_definition("d", namespace, parameters={"word": "hello"}),
    )
    kwok = ["--annotation", "kwok.batchyard.io/exit-code=0", "--annotation", "kwok.batchyard.io/delay=200ms"]

    done = cli(devcluster, "submit", "greet", "-n", namespace, "-q", queue, "-d", "d", "-p", "word=hi",
               "--vcpus", "2", *kwok, "--wait", "--wait-timeout", "90")  # fmt: skip
    assert "batchjob/greet submitted" in done.stdout
    assert done.stdout.splitlines()[-1].split()[1] == "SUCCEEDED"
    body = json.loads(devcluster.kubectl("get", "bj", "greet", "-n", namespace, "-o", "json").stdout)
    assert body["spec"]["parameters"] == {"word": "hi"}
    assert body["spec"]["containerOverrides"]["resourceRequirements"] == [{"type": "VCPU", "value": "2"}]

    waiting = cli(devcluster, "submit", "-n", namespace, "-q", off_q, "-d", "d").stdout
    name = waiting.split()[0].removeprefix("batchjob/")
    assert name.startswith("d-")
    wait_status(devcluster, namespace, name, "RUNNABLE")
    described = json.loads(cli(devcluster, "describe", name, "-n", namespace).stdout)
    assert described["status"]["status"] == "RUNNABLE"
    assert described["status"]["statusReason"]  # why it waits
    wide = cli(devcluster, "list", "-n", namespace, "-s", "RUNNABLE", "-o", "wide").stdout.splitlines()
    assert "POSITION" in wide[0].split() and wide[1].split()[0] == name

    cli(devcluster, "cancel", name, "-n", namespace, "--reason", "not needed")
    assert wait_status(devcluster, namespace, name, "FAILED")["statusReason"] == "not needed"

    # Refused requests: not found is exit 1; a bad argument is exit 2 with the field named.
    assert "not found" in cli(devcluster, "cancel", "nope", "-n", namespace, "-r", "x", code=1).stderr
    bad = cli(devcluster, "submit", "-n", namespace, "-q", queue, "-d", "d", "--array-size", "10001", code=2)
    assert "spec.arrayProperties.size" in bad.stderr
    assert (
        "greet is not an array job"
        in cli(devcluster, "terminate", "greet:0", "-n", namespace, "-r", "x", code=2).stderr
    )


def view(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(i for i in items if i["name"] == name)


def test_queues_and_ces_show_counts_capacity_and_blocked_reasons(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    ce, queue = environment(devcluster, namespace, max_vcpus=4, nodes=1)
    apply(
        devcluster,
        job_definition("d", namespace),
        job_definition("huge", namespace, container={"resourceRequirements": [
            {"type": "VCPU", "value": "8"}, {"type": "MEMORY", "value": "512"}]}),
        batch_job("runs", namespace, queue, "d", exit_code=None),  # runs until deleted
    )  # fmt: skip
    wait_status(devcluster, namespace, "runs", "RUNNING")
    apply(devcluster, batch_job("too-big", namespace, queue, "huge"))

    def queue_view() -> dict[str, Any] | None:
        v = view(json.loads(cli(devcluster, "queues", "-o", "json").stdout)["jobQueues"], queue)
        return v if v["blockedReason"] and v["jobCounts"]["RUNNING"] == 1 else None

    q = wait_for(queue_view, timeout=60, what="the queue to show its running job and its block")
    assert q["blockedReason"].startswith("MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE")
    assert q["jobCounts"]["RUNNABLE"] == 1
    assert (q["vcpusInUse"], q["maxvCpus"]) == (1, 4)
    table = cli(devcluster, "queues").stdout
    assert any(line.startswith(queue) and "MISCONFIGURATION" in line for line in table.splitlines())

    c = view(json.loads(cli(devcluster, "ces", "-o", "json").stdout)["computeEnvironments"], ce)
    assert (c["vcpusInUse"], c["maxvCpus"], c["jobQueues"]) == (1, 4, [queue])
    assert any(line.startswith(ce) for line in cli(devcluster, "ces").stdout.splitlines())


def test_a_failed_attempt_s_pod_outlives_it_and_logs_find_it_or_say_why_it_is_gone(
    devcluster: DevCluster, operator: object, namespace: str
) -> None:
    """Issue 15 with the default keepPods=failed: a failed attempt's pod (and so its log) stays
    after the job ended, a succeeded one's is gone; `batchyard logs` for a job, an attempt and an
    array child reads the kept pod's log through the API server after the job ended (kwok serves
    one fixed log for every container, `KWOK_LOG_LINE`), or says why the pod is gone."""
    _, queue = environment(devcluster, namespace, max_vcpus=16, nodes=1)
    apply(
        devcluster,
        job_definition("d", namespace, retryStrategy={"attempts": 2}),
        job_definition("once", namespace),
        batch_job("twice", namespace, queue, "d", exit_code="1,2",
                  annotations={"kwok.batchyard.io/message": "step 3: out of memory"}),
        batch_job("ok", namespace, queue, "d"),
        batch_job("arr", namespace, queue, "once", arrayProperties={"size": 2},
                  annotations={"kwok.batchyard.io/exit-code-index-1": "1"}),
    )  # fmt: skip
    status = wait_status(devcluster, namespace, "twice", "FAILED", timeout=90)
    wait_status(devcluster, namespace, "ok", "SUCCEEDED", timeout=90)
    wait_status(devcluster, namespace, "arr", "FAILED", timeout=90)
    wait_for(
        lambda: (
            sorted(p["metadata"]["name"] for p in pods(devcluster, namespace))
            == ["arr-1-a1", "twice-a1", "twice-a2"]
        ),
        what="the succeeded attempts' pods to be deleted and the failed ones' kept",
    )
    # Each failed attempt records its termination message and where its log is.
    assert [(a["terminationMessage"], a["logStreamName"], a["logRetained"]) for a in status["attempts"]] == [
        ("step 3: out of memory", "pod/twice-a1", True),
        ("step 3: out of memory", "pod/twice-a2", True),
    ]
    described = json.loads(cli(devcluster, "describe", "twice", "-n", namespace).stdout)
    assert described["status"]["attempts"][1]["terminationMessage"] == "step 3: out of memory"

    for args in (["twice"], ["twice", "--attempt", "1"], ["arr:1"]):
        kept = cli(devcluster, "logs", *args, "-n", namespace)
        assert kept.stdout == KWOK_LOG_LINE + "\n", (args, kept.stdout, kept.stderr)

    gone = cli(devcluster, "logs", "ok", "-n", namespace, code=1).stderr
    assert "The log of ok attempt 1 is gone: its pod ok-a1 no longer exists." in gone
    assert "The attempt succeeded, and the operator deletes a succeeded attempt's pod" in gone
    assert "exitCode: 0" in gone
    child = cli(devcluster, "logs", "arr:0", "-n", namespace, code=1).stderr
    assert "The log of arr:0 attempt 1 is gone: its pod arr-0-a1 no longer exists." in child
    assert "The attempt succeeded" in child
    missing = cli(devcluster, "logs", "nope", "-n", namespace, code=1).stderr
    assert 'batchjob "nope" not found' in missing and "expired" in missing
    assert (
        "--attempt 3: twice has had 2 attempt(s)"
        in cli(devcluster, "logs", "twice", "--attempt", "3", "-n", namespace, code=2).stderr
    )


def test_logs_of_a_running_attempt_on_kwok(devcluster: DevCluster, operator: object, namespace: str) -> None:
    _, queue = environment(devcluster, namespace, max_vcpus=16, nodes=1)
    apply(
        devcluster, job_definition("d", namespace), batch_job("runs", namespace, queue, "d", exit_code=None)
    )
    wait_status(devcluster, namespace, "runs", "RUNNING")
    # The API server fetches the log from kwok's kubelet-like server (the node's Hostname
    # address and kubelet port), which serves one fixed log for every container.
    live = cli(devcluster, "logs", "runs", "-n", namespace)
    assert live.stdout == KWOK_LOG_LINE + "\n", live.stderr
