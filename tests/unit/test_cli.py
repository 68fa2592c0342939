"""The `batchyard` job commands without a cluster: argument checks (exit code 2 with a message
naming the argument), the SubmitJob spec built from flags, ListJobs filters, and which pod holds
an attempt's log."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from batchyard.api.batchjob import BatchJob
from batchyard.cli.common import JobRef, UsageError, age, parse_job_ref
from batchyard.cli.listing import field_selector, job_rows, queue_views, select, statuses, timestamp
from batchyard.cli.logs import AttemptLog, gone_message, gone_reason, resolve
from batchyard.cli.main import build_parser, main
from batchyard.cli.submit import build_spec

# --- job references ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("my-job", JobRef("my-job"), id="a plain job"),
        pytest.param("arr:7", JobRef("arr", index=7), id="an array child (AWS jobId:index)"),
        pytest.param("mnp#2", JobRef("mnp", node=2), id="a node of a multi-node job (AWS jobId#node)"),
    ],
)
def test_job_references(text: str, expected: JobRef) -> None:
    assert parse_job_ref(text, allow_node=True) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("arr:x", "array index after ':' must be a number", id="index not a number"),
        pytest.param("arr:10000", "from 0 to 9999", id="index beyond the largest array"),
        pytest.param("My_Job", "expected a BatchJob name", id="not an object name"),
        pytest.param("mnp#1", "multi-node job; not valid here", id="a node where only children make sense"),
    ],
)
def test_bad_job_references_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_job_ref(text)


# --- exit code 2 for bad arguments -------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["submit", "-q", "q", "--dry-run"], "--job-definition is required", id="submit without definition"),
        pytest.param(["submit", "-q", "q", "-d", "d", "--array-size", "1", "--dry-run"],
                     "spec.arrayProperties.size: Input should be greater than or equal to 2", id="array of one"),
        pytest.param(["submit", "-q", "q", "-d", "d", "--timeout", "5", "--dry-run"],
                     "spec.timeout.attemptDurationSeconds", id="timeout below AWS's 60 s"),
        pytest.param(["submit", "-q", "q", "-d", "d", "-p", "novalue", "--dry-run"],
                     "--parameters 'novalue': expected KEY=VALUE", id="parameter without a value"),
        pytest.param(["submit", "-q", "q", "-d", "d", "--depends-on", "a=ALL", "--dry-run"],
                     "only dependency type after '=' is N_TO_N", id="unknown dependency type"),
        pytest.param(["list", "--status", "DONE"], "--job-status DONE: not a job state", id="unknown state"),
        pytest.param(["list", "--created-after", "yesterday"], "--created-after 'yesterday': expected an RFC 3339",
                     id="a creation time that is not a time"),
        pytest.param(["logs", "arr:x"], "array index after ':'", id="logs of a malformed child"),
        pytest.param(["cancel", "arr:1", "--reason", " "], "--reason must not be empty", id="blank reason"),
    ],
)  # fmt: skip
def test_bad_arguments_exit_2_naming_the_argument(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--kubectl", "/nonexistent/kubectl"]) == 2
    assert message in capsys.readouterr().err


def test_argparse_errors_are_exit_2_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["cancel", "j"])  # --reason is required (AWS CancelJob)
    assert exit_.value.code == 2
    assert "--reason" in capsys.readouterr().err


# --- submit -----------------------------------------------------------------------------------


def submit_args(*argv: str) -> Any:
    return build_parser().parse_args(["submit", *argv])


def test_submit_flags_become_submitjob_fields() -> None:
    spec = build_spec(
        submit_args(
            "-q", "gpu", "-d", "train:3", "--job-name", "Train_1", "-p", "epochs=5", "--array-size", "4",
            "--depends-on", "prep", "--depends-on", "shard=N_TO_N", "--command", "sh -c 'exit 3'",
            "-e", "A=1", "--vcpus", "2", "--memory", "2048", "--retry-attempts", "3", "--timeout", "600",
            "--tags", "team=ml",
        )
    )  # fmt: skip
    assert spec == {
        "jobQueue": "gpu",
        "jobDefinition": "train:3",
        "jobName": "Train_1",
        "parameters": {"epochs": "5"},
        "arrayProperties": {"size": 4},
        "dependsOn": [{"jobId": "prep"}, {"jobId": "shard", "type": "N_TO_N"}],
        "containerOverrides": {
            "command": ["sh", "-c", "exit 3"],
            "environment": [{"name": "A", "value": "1"}],
            "resourceRequirements": [{"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "2048"}],
        },
        "retryStrategy": {"attempts": 3},
        "timeout": {"attemptDurationSeconds": 600},
        "tags": {"team": "ml"},
    }


def test_a_pasted_submitjob_request_is_taken_and_flags_win() -> None:
    request = '{"jobName": "x", "jobQueue": "q1", "jobDefinition": "d", "clientToken": "t", "parameters": {"a": "1"}}'
    spec = build_spec(submit_args("--cli-input-json", request, "-q", "q2", "-p", "b=2"))
    assert spec == {
        "jobName": "x",
        "jobQueue": "q2",
        "jobDefinition": "d",
        "parameters": {"a": "1", "b": "2"},
    }


# --- list ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queue", "status", "definition", "expected"),
    [
        pytest.param(
            "gpu", "FAILED", None, "spec.jobQueue=gpu,status.status=FAILED", id="queue and one state"
        ),
        pytest.param(None, "RUNNABLE,RUNNING", None, "", id="several states: filtered on the client"),
        pytest.param(None, None, "render", "spec.jobDefinition=render", id="definition"),
    ],
)
def test_list_filters_on_the_server_where_a_field_selector_can(
    queue: str | None, status: str | None, definition: str | None, expected: str
) -> None:
    assert field_selector(queue, statuses(status), definition) == expected


def an_item(name: str, state: str | None, job_name: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "jobQueue": "q",
        "jobDefinition": "d",
        **({"jobName": job_name} if job_name else {}),
    }
    return {"metadata": {"name": name}, "spec": spec, "status": {"status": state} if state else {}}


def test_list_client_side_states_and_prefix() -> None:
    items = [
        an_item("etl-1", "RUNNING"),
        an_item("etl-2", "RUNNABLE"),
        an_item("x", "RUNNING", job_name="etl-nightly"),
        an_item("etl-3", None),
    ]
    got = select(items, ["RUNNING", "SUBMITTED"], "etl")
    assert [i["metadata"]["name"] for i in got] == ["etl-1", "x", "etl-3"]


@pytest.mark.parametrize(
    ("job_name", "after", "before", "expected"),
    [
        pytest.param("etl-nightly", None, None, ["x"], id="JOB_NAME exact: the AWS jobName"),
        pytest.param("etl*", None, None, ["etl-1", "x"], id="JOB_NAME ending in '*': a prefix"),
        pytest.param(None, "2026-01-01T00:30:00Z", None, ["x"], id="AFTER_CREATED_AT"),
        pytest.param(None, None, "2026-01-01T00:30:00Z", ["etl-1"], id="BEFORE_CREATED_AT"),
    ],
)
def test_list_aws_listjobs_filters(
    job_name: str | None, after: str | None, before: str | None, expected: list[str]
) -> None:
    items = [an_item("etl-1", "RUNNING"), an_item("x", "RUNNING", job_name="etl-nightly")]
    items[0]["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    items[1]["metadata"]["creationTimestamp"] = "2026-01-01T01:00:00Z"
    got = select(
        items, [], None, job_name, timestamp(after, "--created-after"), timestamp(before, "--created-before")
    )
    assert [i["metadata"]["name"] for i in got] == expected


def test_queue_view_counts_capacity_and_blocked_reason() -> None:
    queue = {
        "metadata": {"name": "q"},
        "spec": {"priority": 5, "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}]},
        "status": {
            "jobCounts": {"RUNNABLE": 3, "RUNNING": 2},
            "conditions": [
                {"type": "Blocked", "status": "True", "message": "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"}
            ],
        },
    }
    ce = {"metadata": {"name": "ce"}, "spec": {"unmanagedvCpus": 8}, "status": {"vcpusInUse": 2.5}}
    (view,) = queue_views([queue], [ce])
    assert view["jobCounts"] == {"SUBMITTED": 0, "PENDING": 0, "RUNNABLE": 3, "STARTING": 0, "RUNNING": 2}
    assert (view["vcpusInUse"], view["maxvCpus"]) == (2.5, 8)
    assert view["blockedReason"] == "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"


# --- logs: which pod ------------------------------------------------------------------------------


def a_job(name: str, status: dict[str, Any], size: int | None = None) -> BatchJob:
    spec: dict[str, Any] = {"jobQueue": "q", "jobDefinition": "d"}
    if size:
        spec["arrayProperties"] = {"size": size}
    return BatchJob.from_body({"metadata": {"name": name, "namespace": "ns"}, "spec": spec, "status": status})


RETRIED = {
    "status": "FAILED",
    "attempts": [
        {"attempt": 1, "podName": "j-a1", "exitCode": 137, "stoppedAt": "2026-01-01T00:00:00Z"},
        {
            "attempt": 2,
            "podName": "j-a2",
            "exitCode": 1,
            "reason": "Error",
            "stoppedAt": "2026-01-01T00:01:00Z",
        },
    ],
}
ARRAY = {
    "status": "PENDING",
    "arrayProperties": {
        "size": 4,
        "children": {
            "states": {"SUCCEEDED": "0", "FAILED": "1", "RUNNING": "2", "RUNNABLE": "3"},
            "attempts": {"3": "1", "2": "2"},
            "lastExits": {"1": {"exitCode": 2, "reason": "Error"}},
        },
    },
}


@pytest.mark.parametrize(
    ("job", "ref", "attempt", "pod", "finished"),
    [
        pytest.param(a_job("j", RETRIED), "j", None, "j-a2", True, id="a job: its latest attempt"),
        pytest.param(a_job("j", RETRIED), "j", 1, "j-a1", True, id="a job: an earlier attempt"),
        pytest.param(a_job("arr", ARRAY, 4), "arr:1", None, "arr-1-a3", True, id="a child retried twice"),
        pytest.param(a_job("arr", ARRAY, 4), "arr:2", None, "arr-2-a2", False, id="a running child"),
        pytest.param(
            a_job("arr", ARRAY, 4), "arr:2", 1, "arr-2-a1", True, id="a running child's first attempt"
        ),
        pytest.param(a_job("arr", ARRAY, 4), "arr:0", None, "arr-0-a1", True, id="a child that succeeded"),
    ],
)
def test_the_pod_of_an_attempt(
    job: BatchJob, ref: str, attempt: int | None, pod: str, finished: bool
) -> None:
    log = resolve(job, parse_job_ref(ref), attempt)
    assert (log.pod, log.finished) == (pod, finished)


@pytest.mark.parametrize(
    ("job", "ref", "attempt", "message"),
    [
        pytest.param(a_job("j", RETRIED), "j", 3, "--attempt 3: j has had 2 attempt", id="an attempt not made"),
        pytest.param(a_job("arr", ARRAY, 4), "arr", None, "name one as arr:<index>", id="an array parent"),
        pytest.param(a_job("arr", ARRAY, 4), "arr:3", None, "has not started (it is RUNNABLE)", id="a waiting child"),
        pytest.param(a_job("j", {"status": "RUNNABLE", "statusReason": "Waiting for capacity"}), "j", None,
                     "has not started (it is RUNNABLE (Waiting for capacity))", id="a waiting job"),
        pytest.param(a_job("arr", ARRAY, 4), "arr:9", None, "outside 0..3", id="beyond the array"),
    ],
)  # fmt: skip
def test_no_log_to_show_says_why(job: BatchJob, ref: str, attempt: int | None, message: str) -> None:
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve(job, parse_job_ref(ref), attempt)


def test_a_gone_pod_says_why_and_what_the_status_kept() -> None:
    log = resolve(a_job("j", RETRIED), parse_job_ref("j"), None)
    text = gone_message(parse_job_ref("j"), log)
    assert "The log of j attempt 2 is gone: its pod j-a2 no longer exists." in text
    assert "The attempt has ended and its pod was deleted" in text
    assert "exitCode: 1" in text and "reason: Error" in text


def _ended(**attempt: Any) -> AttemptLog:
    return AttemptLog("j-a1", 1, 1, True, {"attempt": 1, "podName": "j-a1", **attempt})


@pytest.mark.parametrize(
    ("log", "why"),
    [
        pytest.param(AttemptLog("j-a1", 1, 1, False, {}), "The attempt has not ended", id="still running"),
        pytest.param(_ended(exitCode=1, logRetained=True), "The operator kept it when the attempt ended",
                     id="kept, then deleted"),
        pytest.param(_ended(exitCode=0, statusReason="Succeeded", logRetained=False),
                     "The attempt succeeded, and the operator deletes a succeeded attempt's pod when it ends "
                     "(its keepPods setting is failed", id="succeeded, keepPods=failed"),
        pytest.param(_ended(exitCode=1, logRetained=False), "its keepPods setting is none, or the pod was still "
                     "running", id="failed, not kept: keepPods=none or stopped"),
        pytest.param(_ended(exitCode=0), "unless its keepPods setting is all", id="a child that succeeded"),
        pytest.param(_ended(exitCode=2), "The attempt has ended and its pod was deleted", id="a child that failed"),
    ],
)  # fmt: skip
def test_why_a_log_is_gone(log: AttemptLog, why: str) -> None:
    assert why in gone_reason(log)
    text = gone_message(parse_job_ref("j"), log)
    assert "logRetained" not in text  # the reason says it in words


def test_age_reads_like_kubectl() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert [
        age(t, now) for t in ("2026-01-01T23:59:15Z", "2026-01-01T23:50:00Z", "2026-01-01T20:00:00Z")
    ] == [
        "45s",
        "10m",
        "4h",
    ]


def test_watch_redraws_until_interrupted(capsys: pytest.CaptureFixture[str]) -> None:
    from batchyard.cli.common import show

    frames = iter(["RUNNABLE 2", "RUNNING 2"])

    def render() -> str:
        frame = next(frames, None)
        if frame is None:
            raise KeyboardInterrupt
        return frame

    assert show(render, watch=True, interval=0) == 0
    assert capsys.readouterr().out == "RUNNABLE 2\n\nRUNNING 2\n\n"  # piped: one block per refresh


def test_list_wide_shows_a_waiting_job_s_position_and_estimated_start() -> None:
    from datetime import UTC, datetime

    item = {
        "metadata": {"name": "next", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"jobQueue": "q", "jobDefinition": "d"},
        "status": {"status": "RUNNABLE", "queuePosition": 2, "estimatedStartAt": "2026-01-01T00:05:00Z"},
    }
    header, row = job_rows([item], True, datetime(2026, 1, 1, 0, 1, tzinfo=UTC), False).splitlines()
    assert "EST. START" in header
    assert row.split()[-3:] == ["2", "~in", "4m"]


# --- batchyard gateway ---------------------------------------------------------------------------


def test_the_gateway_runs_on_uvloop_when_installed_and_asyncio_on_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from batchyard.cli.gateway import default_loop

    monkeypatch.delenv("BATCHYARD_GATEWAY_LOOP", raising=False)
    installed = importlib.util.find_spec("uvloop") is not None
    assert default_loop() == ("uvloop" if installed else "asyncio")
    assert build_parser().parse_args(["gateway"]).loop == default_loop()
    assert build_parser().parse_args(["gateway", "--loop", "asyncio"]).loop == "asyncio"
    monkeypatch.setenv("BATCHYARD_GATEWAY_LOOP", "asyncio")
    assert build_parser().parse_args(["gateway"]).loop == "asyncio"


def test_without_uvloop_the_gateway_falls_back_to_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    from batchyard.cli.gateway import default_loop

    monkeypatch.setitem(__import__("sys").modules, "uvloop", None)  # import uvloop raises ImportError
    assert default_loop() == "asyncio"
