"""The gateway's pure translations: AWS requests -> specs, objects -> AWS responses, SigV4."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from batchyard.api import BatchJobSpec
from batchyard.core import limits
from batchyard.gateway import mapping as m
from batchyard.gateway.auth import AccessKey, verify
from batchyard.gateway.errors import GatewayError
from batchyard.gateway.service import parse_params, route

ACCOUNT = m.Account("eu-west-1", "team-a")


class a_job:
    """Builder for a cached BatchJob as the API server returns it."""

    def __init__(self, uid: str, name: str = "j") -> None:
        self.obj: dict[str, Any] = {
            "metadata": {"name": name.lower(), "namespace": "team-a", "uid": uid,
                         "creationTimestamp": "2026-01-01T00:00:00Z", "resourceVersion": "1"},
            "spec": {"jobName": name, "jobQueue": "q", "jobDefinition": "jd"},
            "status": {},
        }  # fmt: skip

    def status(self, **st: Any) -> a_job:
        self.obj["status"].update(st)
        return self

    def spec(self, **sp: Any) -> a_job:
        self.obj["spec"].update(sp)
        return self

    def created(self, iso: str) -> a_job:
        return self.status(createdAt=iso)

    def build(self) -> dict[str, Any]:
        return self.obj


# --- names, ARNs, times ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aws", "prefix"),
    [
        pytest.param("my-job", "my-job-", id="a valid name stays"),
        pytest.param("My_Job_01", "my-job-01-", id="upper case and underscores become a DNS name"),
        pytest.param("A" * 128, "a" * 40 + "-", id="128 characters are cut to 40 before the random suffix"),
        pytest.param("_x_", "x-", id="leading and trailing separators are dropped"),
    ],
)
def test_job_names_become_generate_name_prefixes(aws: str, prefix: str) -> None:
    assert m.job_name_prefix(aws) == prefix


def test_rfc3339_becomes_epoch_milliseconds() -> None:
    assert m.epoch_ms("2026-01-01T00:00:01.5Z") == 1767225601500
    assert m.epoch_ms(None) is None


@pytest.mark.parametrize(
    ("value", "kind", "name"),
    [
        pytest.param("q1", "job-queue", "q1", id="a plain name"),
        pytest.param("arn:aws:batch:us-east-1:123:job-queue/q1", "job-queue", "q1", id="an ARN"),
    ],
)
def test_name_or_arn(value: str, kind: str, name: str) -> None:
    assert m.name_from(value, kind, "jobQueue") == name


def test_an_arn_of_another_kind_is_a_client_error_naming_the_field() -> None:
    with pytest.raises(GatewayError) as err:
        m.name_from("arn:aws:batch:us-east-1:1:job-definition/x:1", "job-queue", "jobQueue")
    assert err.value.code == "ClientException" and "jobQueue" in err.value.message


# --- SubmitJob / DescribeJobs ----------------------------------------------------------------------


def test_submit_job_keeps_the_aws_name_and_resolves_arns() -> None:
    manifest = m.submit_job_manifest(
        {"jobName": "Nightly_ETL", "jobQueue": "arn:aws:batch:r:a:job-queue/high",
         "jobDefinition": "arn:aws:batch:r:a:job-definition/etl:3", "arrayProperties": {"size": 4}},
        "team-a",
    )  # fmt: skip
    assert manifest["metadata"] == {"generateName": "nightly-etl-", "namespace": "team-a"}
    assert manifest["spec"]["jobName"] == "Nightly_ETL"
    assert manifest["spec"]["jobQueue"] == "high"
    assert manifest["spec"]["jobDefinition"] == "etl:3"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"arrayProperties": {"size": 1}}, "arrayProperties.size", id="array size below 2"),
        pytest.param({"retryStrategy": {"attempts": 11}}, "retryStrategy.attempts", id="11 attempts"),
        pytest.param(
            {"timeout": {"attemptDurationSeconds": 5}}, "timeout.attemptDurationSeconds", id="timeout < 60"
        ),
    ],
)
def test_out_of_range_submit_values_name_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(GatewayError) as err:
        m.submit_job_manifest({"jobName": "j", "jobQueue": "q", "jobDefinition": "d", **params}, "ns")
    assert err.value.status == 400 and field in err.value.message


def test_submit_job_over_the_30_kib_payload_quota_is_a_client_exception() -> None:
    # The admission webhook's rule (core.limits), applied before the gateway writes anything.
    base = {"jobName": "j", "jobQueue": "q", "jobDefinition": "d"}

    def params(pad: int) -> dict[str, Any]:  # parameter values are at most 4,096 characters each
        return {**base, "parameters": {**{f"p{i}": "x" * 4000 for i in range(7)}, "pad": "y" * pad}}

    at_limit = limits.MAX_SUBMISSION_BYTES - limits.submission_bytes(BatchJobSpec.model_validate(params(0)))
    assert 0 < at_limit <= 4096
    assert m.submit_job_manifest(params(at_limit), "ns")["spec"]["parameters"]["pad"] == "y" * at_limit
    with pytest.raises(GatewayError) as err:
        m.submit_job_manifest(params(at_limit + 1), "ns")
    assert err.value.status == 400 and err.value.code == "ClientException"
    assert err.value.message == limits.submission_message(limits.MAX_SUBMISSION_BYTES + 1, "SubmitJob")
    assert "maximum job payload size of 30 KiB" in err.value.message


def test_job_detail_uses_aws_ids_arns_and_milliseconds() -> None:
    job = (
        a_job("u-1", "Etl")
        .status(status="SUCCEEDED", createdAt="2026-01-01T00:00:00Z", startedAt="2026-01-01T00:00:01Z",
                stoppedAt="2026-01-01T00:00:02Z", jobDefinitionRevision=2,
                attempts=[{"attempt": 1, "exitCode": 0, "startedAt": "2026-01-01T00:00:01Z"}])
        .build()
    )  # fmt: skip
    d = m.job_detail(job, ACCOUNT)
    assert d["jobId"] == "u-1"
    assert d["jobArn"] == "arn:aws:batch:eu-west-1:team-a:job/u-1"
    assert d["jobQueue"] == "arn:aws:batch:eu-west-1:team-a:job-queue/q"
    assert d["jobDefinition"] == "arn:aws:batch:eu-west-1:team-a:job-definition/jd:2"
    assert (d["createdAt"], d["startedAt"], d["stoppedAt"]) == (1767225600000, 1767225601000, 1767225602000)
    assert d["attempts"] == [{"container": {"exitCode": 0}, "startedAt": 1767225601000}]
    assert d["jobName"] == "Etl" and d["isCancelled"] is False


def test_a_job_the_operator_has_not_seen_yet_is_submitted() -> None:
    d = m.job_detail(a_job("u").build(), ACCOUNT)
    assert d["status"] == "SUBMITTED" and d["createdAt"] == 1767225600000


def test_array_parent_and_children_from_index_ranges() -> None:
    job = (
        a_job("p").spec(arrayProperties={"size": 4})
        .status(status="PENDING", arrayProperties={
            "statusSummary": {"SUCCEEDED": 2, "FAILED": 1, "RUNNING": 1},
            "children": {"states": {"SUCCEEDED": "0-1", "FAILED": "2", "RUNNING": "3"},
                         "lastExits": {"2": {"exitCode": 3, "reason": "Error"}}}})
        .build()
    )  # fmt: skip
    parent = m.job_detail(job, ACCOUNT)
    assert parent["arrayProperties"]["size"] == 4
    assert parent["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 2
    assert parent["arrayProperties"]["statusSummary"]["SUBMITTED"] == 0
    child = m.job_detail(job, ACCOUNT, 2)
    assert child["jobId"] == "p:2" and child["status"] == "FAILED"
    assert child["arrayProperties"] == {"index": 2}
    assert child["attempts"] == [
        {
            "container": {"exitCode": 3, "reason": "Error", "logStreamName": "pod/j-2-a1"},
            "statusReason": "Essential container in task exited",
        }
    ]
    assert "startedAt" not in child and "stoppedAt" not in child  # times not kept for it


def test_an_array_childs_times_attempt_log_and_reason() -> None:
    """AWS reports startedAt/stoppedAt, the attempt's log stream and the statusReason per child."""
    job = (
        a_job("p").spec(arrayProperties={"size": 3})
        .status(status="RUNNING", arrayProperties={
            "children": {"states": {"FAILED": "0", "RUNNING": "1", "SUBMITTED": "2"},
                         "attempts": {"3": "0"},
                         "lastExits": {"0": {"exitCode": 137, "reason": "OOMKilled",
                                             "statusReason": "OutOfMemoryError: Container killed"}},
                         "times": {"0": "1767225601000-1767225605000", "1": "1767225602000-"}}})
        .build()
    )  # fmt: skip
    failed = m.job_detail(job, ACCOUNT, 0)
    assert (failed["startedAt"], failed["stoppedAt"]) == (1767225601000, 1767225605000)
    assert failed["statusReason"] == "OutOfMemoryError: Container killed"
    assert failed["attempts"] == [
        {
            "container": {"exitCode": 137, "reason": "OOMKilled", "logStreamName": "pod/j-0-a3"},
            "startedAt": 1767225601000,
            "stoppedAt": 1767225605000,
            "statusReason": "OutOfMemoryError: Container killed",
        }
    ]
    running = m.job_detail(job, ACCOUNT, 1)
    assert running["startedAt"] == 1767225602000 and "stoppedAt" not in running
    assert running["attempts"] == [] and "statusReason" not in running
    waiting = m.job_detail(job, ACCOUNT, 2)
    assert "startedAt" not in waiting and waiting["attempts"] == []


# --- ListJobs --------------------------------------------------------------------------------------


def jobs_in_states(*states: str) -> list[dict[str, Any]]:
    return [
        a_job(f"u{i}", f"job-{i}").status(status=s).created(f"2026-01-01T00:00:{i:02d}Z").build()
        for i, s in enumerate(states)
    ]


def listed(jobs: list[dict[str, Any]], **params: Any) -> tuple[list[str], str | None]:
    page, token = m.list_jobs(jobs, m.parse_list_jobs({"jobQueue": "q", **params}), ACCOUNT)
    return [j["jobId"] for j in page], token


def test_list_jobs_defaults_to_running_newest_first() -> None:
    jobs = jobs_in_states("RUNNING", "SUCCEEDED", "RUNNING")
    assert listed(jobs) == (["u2", "u0"], None)
    assert listed(jobs, jobStatus="SUCCEEDED") == (["u1"], None)


@pytest.mark.parametrize(
    ("flt", "ids"),
    [
        pytest.param({"name": "JOB_NAME", "values": ["JOB-1"]}, ["u1"], id="JOB_NAME is case-insensitive"),
        pytest.param(
            {"name": "JOB_NAME", "values": ["job-*"]}, ["u2", "u1", "u0"], id="JOB_NAME prefix with *"
        ),
        pytest.param({"name": "BEFORE_CREATED_AT", "values": ["1767225601000"]}, ["u0"], id="before"),
        pytest.param({"name": "AFTER_CREATED_AT", "values": ["1767225601000"]}, ["u2"], id="after"),
        pytest.param({"name": "JOB_DEFINITION", "values": ["jd"]}, ["u2", "u1", "u0"], id="definition name"),
    ],
)
def test_list_jobs_filters_ignore_job_status(flt: dict[str, Any], ids: list[str]) -> None:
    jobs = jobs_in_states("RUNNING", "SUCCEEDED", "FAILED")
    assert listed(jobs, filters=[flt])[0] == ids


def test_pagination_survives_jobs_changing_state_between_pages() -> None:
    jobs = jobs_in_states(*["RUNNABLE"] * 5)
    first, token = listed(jobs, jobStatus="RUNNABLE", maxResults=2)
    assert first == ["u4", "u3"] and token
    jobs[4]["status"]["status"] = "RUNNING"  # already returned: leaves the set
    jobs[0]["status"]["status"] = "RUNNING"  # not yet returned: leaves the set
    second, token = listed(jobs, jobStatus="RUNNABLE", maxResults=2, nextToken=token)
    assert second == ["u2", "u1"] and token is None


def test_list_children_of_an_array_job() -> None:
    job = (
        a_job("p").spec(arrayProperties={"size": 3})
        .status(status="PENDING", arrayProperties={"children": {"states": {"SUCCEEDED": "0,2", "RUNNING": "1"}}})
        .build()
    )  # fmt: skip
    page, _ = m.list_jobs([job], m.parse_list_jobs({"arrayJobId": "p", "jobStatus": "SUCCEEDED"}), ACCOUNT)
    assert [j["jobId"] for j in page] == ["p:0", "p:2"]


def an_mnp_job() -> dict[str, Any]:
    """A 3-node job: main node 0 running, node 1 ended with exit 0, node 2 not started."""
    return (
        a_job("m").status(status="RUNNING", startedAt="2026-01-01T00:00:01Z", nodeProperties={
            "numNodes": 3, "mainNode": 0, "nodes": [
                {"nodeIndex": 0, "isMainNode": True, "status": "RUNNING", "podName": "m-n0-a1"},
                {"nodeIndex": 1, "isMainNode": False, "status": "SUCCEEDED", "exitCode": 0},
                {"nodeIndex": 2, "isMainNode": False},
            ]})
        .build()
    )  # fmt: skip


def test_a_multi_node_job_and_its_nodes_in_describe_jobs() -> None:
    job = an_mnp_job()
    assert m.job_detail(job, ACCOUNT)["nodeProperties"] == {"numNodes": 3, "mainNode": 0}
    main = m.node_detail(job, ACCOUNT, 0)
    assert main is not None
    assert (main["jobId"], main["jobArn"]) == ("m#0", "arn:aws:batch:eu-west-1:team-a:job/m#0")
    assert (main["status"], main["nodeDetails"]) == ("RUNNING", {"nodeIndex": 0, "isMainNode": True})
    assert "nodeProperties" not in main and main["attempts"] == []
    ended = m.node_detail(job, ACCOUNT, 1)
    assert ended is not None and ended["status"] == "SUCCEEDED"
    assert ended["container"] == {"exitCode": 0} and ended["attempts"] == [{"container": {"exitCode": 0}}]
    waiting = m.node_detail(job, ACCOUNT, 2)
    assert waiting is not None and waiting["status"] == "RUNNING", "a node without a state has the job's"
    assert m.node_detail(job, ACCOUNT, 3) is None


@pytest.mark.parametrize(
    ("params", "ids"),
    [
        pytest.param({}, ["m#0", "m#2"], id="AWS default: RUNNING nodes only"),
        pytest.param({"jobStatus": "SUCCEEDED"}, ["m#1"], id="one status"),
        pytest.param({"multiNodeJobId": "arn:aws:batch:eu-west-1:team-a:job/m", "jobStatus": "RUNNING"},
                     ["m#0", "m#2"], id="the job's ARN"),
        pytest.param({"filters": [{"name": "JOB_NAME", "values": ["j"]}]}, ["m#0", "m#1", "m#2"],
                     id="a filter lists every state"),
    ],
)  # fmt: skip
def test_list_jobs_of_a_multi_node_job_lists_its_nodes(params: dict[str, Any], ids: list[str]) -> None:
    query = m.parse_list_jobs({"multiNodeJobId": "m", **params})
    page, token = m.list_jobs([an_mnp_job()], query, ACCOUNT)
    assert ([j["jobId"] for j in page], token) == (ids, None)
    assert all(j["nodeProperties"]["numNodes"] == 3 for j in page)
    assert [j["nodeProperties"]["isMainNode"] for j in page] == [i == "m#0" for i in ids]


def test_a_multi_node_job_in_a_queue_listing_has_its_node_count() -> None:
    page, _ = m.list_jobs([an_mnp_job()], m.parse_list_jobs({"jobQueue": "q"}), ACCOUNT)
    assert [(j["jobId"], j["nodeProperties"]) for j in page] == [("m", {"numNodes": 3})]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("u", None), ("u:3", None), ("u#2", ("u", 2)), ("arn:aws:batch:r:a:job/u#0", ("u", 0))],
)
def test_node_ids(value: str, expected: tuple[str, int] | None) -> None:
    assert m.split_node_id(value) == expected


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({}, "jobQueue", id="no scope"),
        pytest.param({"multiNodeJobId": "u#1"}, "multiNodeJobId", id="a node is not a multi-node job"),
        pytest.param({"jobQueue": "q", "multiNodeJobId": "u"}, "multiNodeJobId", id="queue and multi-node"),
        pytest.param({"jobQueue": "q", "arrayJobId": "a"}, "arrayJobId", id="two scopes"),
        pytest.param({"jobQueue": "q", "maxResults": 0}, "maxResults", id="maxResults 0"),
        pytest.param(
            {"jobQueue": "q", "filters": [{"name": "COLOR", "values": ["x"]}]},
            "filters.name",
            id="bad filter",
        ),
        pytest.param({"jobQueue": "q", "nextToken": "garbage"}, "nextToken", id="a token we never issued"),
    ],
)
def test_bad_list_jobs_requests_name_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(GatewayError) as err:
        m.parse_list_jobs(params)
    assert field in err.value.message


# --- job definitions, queues, compute environments -------------------------------------------------


def test_definition_revisions_become_describe_entries() -> None:
    jd = {
        "metadata": {"name": "etl"},
        "spec": {"type": "container"},
        "status": {"revisions": [
            {"revision": 1, "specHash": "a", "state": "INACTIVE", "spec": {"type": "container", "containerProperties": {"image": "a"}}},
            {"revision": 2, "specHash": "b", "state": "ACTIVE", "spec": {"type": "container", "containerProperties": {"image": "b"}}},
        ]},
    }  # fmt: skip
    entries = m.definition_entries(jd, ACCOUNT)
    assert [(e["revision"], e["status"], e["containerProperties"]["image"]) for e in entries] == [
        (1, "INACTIVE", "a"),
        (2, "ACTIVE", "b"),
    ]
    assert entries[1]["jobDefinitionArn"] == "arn:aws:batch:eu-west-1:team-a:job-definition/etl:2"


def test_ec2_only_compute_fields_are_kept_aside_and_returned() -> None:
    spec, stored = m.ce_spec(
        {"computeEnvironmentName": "ce", "type": "MANAGED",
         "computeResources": {"type": "EC2", "maxvCpus": 16, "subnets": ["s-1"], "instanceRole": "r"},
         "serviceRole": "arn:role"},
        {"type": "kwok"},
    )  # fmt: skip
    assert spec["computeResources"] == {"type": "EC2", "maxvCpus": 16}
    assert spec["provider"] == {"type": "kwok"}
    assert stored == {
        "computeResources": {"subnets": ["s-1"], "instanceRole": "r"},
        "serviceRole": "arn:role",
    }
    obj = {
        "metadata": {"name": "ce", "uid": "x", "annotations": {m.AWS_FIELDS_ANNOTATION: json.dumps(stored)}},
        "spec": spec,
    }
    detail = m.ce_detail(obj, ACCOUNT)
    assert detail["computeResources"]["subnets"] == ["s-1"] and detail["serviceRole"] == "arn:role"


def test_queue_spec_resolves_compute_environment_and_policy_arns() -> None:
    spec = m.queue_spec(
        {"jobQueueName": "q", "priority": 5,
         "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "arn:aws:batch:r:a:compute-environment/ce1"}],
         "schedulingPolicyArn": "arn:aws:batch:r:a:scheduling-policy/fair"},
    )  # fmt: skip
    assert spec == {
        "priority": 5,
        "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce1"}],
        "schedulingPolicy": "fair",
    }


@pytest.mark.parametrize(
    ("op", "qty", "total"),
    [("SET", 3, 3), ("ADD", 3, 13), ("REMOVE", 3, 7)],
)
def test_consumable_resource_update_operations(op: str, qty: int, total: int) -> None:
    assert m.cr_update({"totalQuantity": 10}, op, qty)["totalQuantity"] == total


def test_snapshot_orders_by_queue_position() -> None:
    jobs = [
        a_job("b").status(status="RUNNABLE", queuePosition=1).build(),
        a_job("a").status(status="RUNNABLE", queuePosition=0).build(),
        a_job("c").status(status="RUNNING").build(),
    ]
    snap = m.snapshot(jobs, "q", ACCOUNT, 5)
    assert [j["jobArn"].rsplit("/", 1)[1] for j in snap["frontOfQueue"]["jobs"]] == ["a", "b"]


# --- service model and SigV4 -----------------------------------------------------------------------


def test_routes_come_from_the_botocore_model() -> None:
    assert route("POST", "/v1/submitjob") == ("SubmitJob", {})
    assert route("DELETE", "/v1/tags/arn%3Aaws%3Abatch%3Ar%3Aa%3Ajob-queue%2Fq") == (
        "UntagResource",
        {"resourceArn": "arn:aws:batch:r:a:job-queue/q"},
    )
    assert route("GET", "/v1/submitjob") is None


@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param(b'{"jobName": "j", "jobQueue": "q"}', ["jobDefinition"], id="missing required member"),
        pytest.param(
            b'{"jobName": "j", "jobQueue": "q", "jobDefinition": "d", "color": 1}',
            ["color"],
            id="unknown field",
        ),
        pytest.param(b'{"jobName": 5, "jobQueue": "q", "jobDefinition": "d"}', ["jobName"], id="wrong type"),
        pytest.param(b"{not json", ["JSON"], id="malformed body"),
    ],
)
def test_bad_bodies_are_client_exceptions_naming_the_field(body: bytes, words: list[str]) -> None:
    with pytest.raises(GatewayError) as err:
        parse_params("SubmitJob", {}, "", body)
    assert err.value.status == 400 and err.value.code == "ClientException"
    assert all(w in err.value.message for w in words)


KEY = AccessKey("AKIDTEAMA", "s3cret", "team-a", "batch-user")


def signed(secret: str = "s3cret", body: bytes = b'{"jobs": []}') -> tuple[dict[str, str], bytes]:
    req = AWSRequest(method="POST", url="http://gw.local:8900/v1/describejobs", data=body,
                     headers={"Content-Type": "application/json"})  # fmt: skip
    signer = SigV4Auth(Credentials("AKIDTEAMA", secret), "batch", "us-east-1")
    signer.add_auth(req)
    headers = dict(req.headers.items())
    headers["Host"] = "gw.local:8900"  # what the HTTP client sends; botocore signs it from the URL
    return headers, body


class CI(dict[str, str]):
    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        for k, v in self.items():
            if k.lower() == key.lower():
                return v
        return default


def check(headers: dict[str, str], body: bytes, now: datetime | None = None) -> str:
    try:
        got = verify("POST", "http://gw.local:8900", "/v1/describejobs", CI(headers), body,
                     {"AKIDTEAMA": KEY}.get, now)  # fmt: skip
    except GatewayError as exc:
        assert exc.status == 403
        return exc.code
    return got.access_key.namespace


def test_a_botocore_signature_verifies() -> None:
    assert check(*signed()) == "team-a"


@pytest.mark.parametrize(
    ("make", "code"),
    [
        pytest.param(lambda: ({}, b""), "MissingAuthenticationTokenException", id="unsigned"),
        pytest.param(lambda: signed(secret="wrong"), "InvalidSignatureException", id="wrong secret"),
        pytest.param(
            lambda: (signed()[0], b'{"jobs": ["x"]}'), "InvalidSignatureException", id="body changed"
        ),
        pytest.param(lambda: signed(), "InvalidSignatureException", id="checked 6 minutes later"),
        pytest.param(
            lambda: ({k: v.replace("AKIDTEAMA", "AKIDOTHER") for k, v in signed()[0].items()}, signed()[1]),
            "UnrecognizedClientException",
            id="unknown key",
        ),
    ],
)
def test_bad_signatures_are_403(make: Any, code: str, request: pytest.FixtureRequest) -> None:
    headers, body = make()
    later = "6 minutes" in request.node.callspec.id
    signed_at = datetime.strptime(signed()[0]["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert check(headers, body, signed_at + timedelta(minutes=6) if later else None) == code


def test_cached_signing_keys_never_admit_another_secret_region_or_day() -> None:
    """The signing key is derived once per (secret, day, region) and reused: each of those
    changes must still give botocore's own answer, in both orders."""
    import batchyard.gateway.auth as auth_module

    def cached_keys() -> int:
        return sum(len(signer._keys) for signer in auth_module._SIGNERS.values())

    auth_module._SIGNERS.clear()
    assert check(*signed()) == "team-a"  # caches the key for s3cret, today, us-east-1
    assert cached_keys() == 1
    assert check(*signed(secret="wrong")) == "InvalidSignatureException"  # the right key is cached
    assert cached_keys() == 1  # keys derive from the stored secret: "wrong" added none
    assert check(*signed()) == "team-a"

    def signed_in(region: str, when: datetime) -> tuple[dict[str, str], bytes]:
        req = AWSRequest(method="POST", url="http://gw.local:8900/v1/describejobs", data=b"{}",
                         headers={"Content-Type": "application/json", "Host": "gw.local:8900"})  # fmt: skip
        req.context["timestamp"] = when.strftime("%Y%m%dT%H%M%SZ")
        signer = SigV4Auth(Credentials("AKIDTEAMA", "s3cret"), "batch", region)
        signer._modify_request_before_signing(req)  # botocore's add_auth, at a fixed time
        canonical = signer.canonical_request(req)
        signature = signer.signature(signer.string_to_sign(req, canonical), req)
        scope = f"AKIDTEAMA/{when:%Y%m%d}/{region}/batch/aws4_request"
        headers = {k: v for k, v in req.headers.items()}
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders={signer.signed_headers(signer.headers_to_sign(req))}, "
            f"Signature={signature}"
        )
        return headers, b"{}"

    # A fixed day, so the count below never depends on the clock; the cache starts empty again.
    midnight = datetime(2026, 12, 2, 23, 59, 58, tzinfo=UTC)
    auth_module._SIGNERS.clear()
    for region, when in [
        ("eu-west-1", midnight),
        ("us-east-1", midnight),
        ("us-east-1", midnight + timedelta(seconds=4)),  # the next day
    ]:
        headers, body = signed_in(region, when)
        assert check(headers, body, when) == "team-a", (region, when)
        # the same request claiming another region than it was signed for: refused
        forged = {**headers, "Authorization": headers["Authorization"].replace(f"/{region}/", "/ap-south-1/")}
        assert check(forged, body, when) == "InvalidSignatureException"
    # eu-west-1 on day 1, us-east-1 and ap-south-1 (the forgeries' region) on days 1 and 2.
    assert cached_keys() == 5


def test_a_rotated_secret_takes_effect_at_once_despite_the_cached_signer() -> None:
    rotated = AccessKey("AKIDTEAMA", "n3w-secret", "team-a", "batch-user")
    for key, good, stale in ((KEY, "s3cret", "n3w-secret"), (rotated, "n3w-secret", "s3cret")):
        lookup = {"AKIDTEAMA": key}.get
        for secret, expected in ((good, "team-a"), (stale, "InvalidSignatureException")):
            headers, body = signed(secret=secret)
            try:
                got = verify("POST", "http://gw.local:8900", "/v1/describejobs", CI(headers), body, lookup)
                outcome = got.access_key.namespace
            except GatewayError as exc:
                outcome = exc.code
            assert outcome == expected, (key.secret_access_key, secret)


def test_share_identifier_filter() -> None:
    jobs = [
        a_job("u0").spec(shareIdentifier="blue").status(status="RUNNABLE").build(),
        a_job("u1").spec(shareIdentifier="red").status(status="RUNNING").build(),
    ]
    assert listed(jobs, filters=[{"name": "SHARE_IDENTIFIER", "values": ["blue"]}])[0] == ["u0"]


def test_jobs_by_consumable_resource_from_override_or_pinned_definition_revision() -> None:
    licence = {"consumableResourceList": [{"consumableResource": "lic", "quantity": 2}]}
    definition = {
        "metadata": {"name": "jd"},
        "spec": {},
        "status": {"revisions": [{"revision": 1, "spec": {"consumableResourceProperties": licence}}, {"revision": 2, "spec": {}}]},
    }  # fmt: skip
    jobs = [
        a_job("pinned-1", "Old").status(status="RUNNING", jobDefinitionRevision=1).build(),
        a_job("pinned-2").status(status="RUNNING", jobDefinitionRevision=2).build(),
        a_job("override")
        .spec(consumableResourcePropertiesOverride=licence)
        .status(status="RUNNABLE")
        .build(),
    ]
    got = m.jobs_by_consumable_resource(jobs, {"jd": definition}, "lic", [], ACCOUNT)
    assert sorted(j["jobArn"].rsplit("/", 1)[1] for j in got) == ["override", "pinned-1"]
    assert {j["quantity"] for j in got} == {2}
    only_running = m.jobs_by_consumable_resource(
        jobs, {"jd": definition}, "lic", [{"name": "JOB_STATUS", "values": ["RUNNING"]}], ACCOUNT
    )
    assert [j["jobName"] for j in only_running] == ["Old"]


# --- JobDetail from the pinned definition revision and the operator's status -----------------------

_MODEL = botocore.session.get_session().get_service_model("batch")


def unknown_members(value: Any, shape: Any, where: str = "") -> list[str]:
    """Paths in `value` that botocore's output shape does not have (a field AWS never returns)."""
    if shape.type_name == "structure" and isinstance(value, dict):
        out = []
        for k, v in value.items():
            if k not in shape.members:
                out.append(f"{where}.{k}")
            else:
                out += unknown_members(v, shape.members[k], f"{where}.{k}")
        return out
    if shape.type_name == "list" and isinstance(value, list):
        return [p for i, v in enumerate(value) for p in unknown_members(v, shape.member, f"{where}[{i}]")]
    return []


def a_definition(**spec: Any) -> dict[str, Any]:
    """A JobDefinition whose revision 1 is `spec` and whose live spec has moved on to revision 2."""
    return {
        "metadata": {"name": "jd", "namespace": "team-a"},
        "spec": {"type": "container", "containerProperties": {"image": "live:2"}},
        "status": {"revisions": [{"revision": 1, "specHash": "h1", "state": "ACTIVE", "spec": spec},
                                 {"revision": 2, "specHash": "h2", "state": "ACTIVE",
                                  "spec": {"type": "container", "containerProperties": {"image": "live:2"}}}]},
    }  # fmt: skip


def test_an_ecs_job_shows_the_pinned_containers_with_its_overrides_and_its_effective_values() -> None:
    definition = a_definition(
        type="container",
        platformCapabilities=["EC2"],
        consumableResourceProperties={"consumableResourceList": [{"consumableResource": "lic", "quantity": 1}]},
        containerProperties={
            "image": "app:1", "command": ["run"],
            "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
        },
    )  # fmt: skip
    job = (
        a_job("u").spec(containerOverrides={"command": ["run", "--fast"], "environment": [{"name": "B", "value": "3"}],
                                            "resourceRequirements": [{"type": "VCPU", "value": "2"}]})
        .status(status="FAILED", jobDefinitionRevision=1, retryStrategy={"attempts": 3}, timeout={"attemptDurationSeconds": 60},
                parameters={"p": "v"}, schedulingPriority=5, isTerminated=True,
                attempts=[{"attempt": 1, "exitCode": 2, "reason": "Error", "podName": "u-a1", "nodeName": "n1"}])
        .build()
    )  # fmt: skip
    d = m.job_detail(job, ACCOUNT, definition=definition)
    assert d["container"] == {
        "image": "app:1", "command": ["run", "--fast"],
        "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}],
        "resourceRequirements": [{"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "512"}],
        "exitCode": 2, "reason": "Error",
    }  # fmt: skip
    assert (d["retryStrategy"], d["timeout"], d["parameters"]) == (
        {"attempts": 3},
        {"attemptDurationSeconds": 60},
        {"p": "v"},
    )
    assert (d["schedulingPriority"], d["isTerminated"], d["isCancelled"]) == (5, True, False)
    assert d["platformCapabilities"] == ["EC2"]
    assert d["consumableResourceProperties"]["consumableResourceList"][0]["consumableResource"] == "lic"
    assert "eksAttempts" not in d and "eksProperties" not in d
    assert unknown_members(d, _MODEL.shape_for("JobDetail")) == []


def test_an_eks_job_has_eks_properties_and_eks_attempts() -> None:
    definition = a_definition(
        type="container",
        eksProperties={"podProperties": {"containers": [{"name": "main", "image": "app:1", "command": ["run"]},
                                                        {"name": "side", "image": "proxy:1"}]}},
    )  # fmt: skip
    job = (
        a_job("u").spec(eksPropertiesOverride={"podProperties": {"containers": [{"name": "main", "command": ["go"]}]}})
        .status(status="SUCCEEDED", jobDefinitionRevision=1, attempts=[
            {"attempt": 1, "exitCode": 137, "reason": "OOMKilled", "podName": "u-a1", "nodeName": "n1",
             "startedAt": "2026-01-01T00:00:01Z", "stoppedAt": "2026-01-01T00:00:02Z", "statusReason": "x"},
            {"attempt": 2, "exitCode": 0, "podName": "u-a2", "nodeName": "n2",
             "containers": [{"name": "main", "exitCode": 0, "reason": "Completed"}, {"name": "side", "exitCode": 0}]},
        ])
        .build()
    )  # fmt: skip
    d = m.job_detail(job, ACCOUNT, definition=definition)
    pod = d["eksProperties"]["podProperties"]
    assert [(c["name"], c["image"], c.get("command")) for c in pod["containers"]] == [
        ("main", "app:1", ["go"]), ("side", "proxy:1", None)
    ]  # fmt: skip
    assert (pod["podName"], pod["nodeName"]) == ("u-a2", "n2")
    assert d["eksAttempts"] == [
        {"containers": [{"exitCode": 137, "reason": "OOMKilled"}], "podName": "u-a1", "podNamespace": "team-a",
         "nodeName": "n1", "startedAt": 1767225601000, "stoppedAt": 1767225602000, "statusReason": "x"},
        {"containers": [{"name": "main", "exitCode": 0, "reason": "Completed"}, {"name": "side", "exitCode": 0}],
         "podName": "u-a2", "podNamespace": "team-a", "nodeName": "n2"},
    ]  # fmt: skip
    assert unknown_members(d, _MODEL.shape_for("JobDetail")) == []


def test_a_multi_node_job_has_the_definitions_node_ranges() -> None:
    ranges = [{"targetNodes": "0:", "container": {"image": "mpi:1"}}]
    definition = a_definition(
        type="multinode", nodeProperties={"numNodes": 3, "mainNode": 0, "nodeRangeProperties": ranges}
    )
    job = an_mnp_job()
    job["status"]["jobDefinitionRevision"] = 1
    d = m.job_detail(job, ACCOUNT, definition=definition)
    assert d["nodeProperties"] == {"numNodes": 3, "mainNode": 0, "nodeRangeProperties": ranges}
    node = m.node_detail(job, ACCOUNT, 1, definition)
    assert node is not None and "nodeProperties" not in node
    for detail in (d, node):
        assert unknown_members(detail, _MODEL.shape_for("JobDetail")) == []
    summary, _ = m.list_jobs(
        [job], m.parse_list_jobs({"multiNodeJobId": "m", "jobStatus": "SUCCEEDED"}), ACCOUNT
    )
    assert unknown_members(summary[0], _MODEL.shape_for("JobSummary")) == []


def test_an_array_childs_container_shows_the_childs_exit() -> None:
    definition = a_definition(type="container", containerProperties={"image": "app:1"})
    job = (
        a_job("p").spec(arrayProperties={"size": 2})
        .status(status="PENDING", jobDefinitionRevision=1, arrayProperties={
            "children": {"states": {"FAILED": "0", "SUCCEEDED": "1"}, "lastExits": {"0": {"exitCode": 3}}}})
        .build()
    )  # fmt: skip
    child = m.job_detail(job, ACCOUNT, 0, definition)
    assert child["container"] == {"image": "app:1", "exitCode": 3, "logStreamName": "pod/j-0-a1"}
    assert m.job_detail(job, ACCOUNT, 1, definition)["container"] == {"image": "app:1"}


def test_register_job_definition_over_the_24_kib_quota_is_a_client_exception() -> None:
    from batchyard.api.jobdefinition import JobDefinitionSpec

    def params(pad: int) -> dict[str, Any]:
        return {
            "jobDefinitionName": "big",
            "type": "container",
            "containerProperties": {"image": "busybox", "command": ["true"]},
            "parameters": {**{f"p{i}": "x" * 4000 for i in range(5)}, "q": "z" * 1000, "pad": "y" * pad},
        }

    spec = {k: v for k, v in params(0).items() if k != "jobDefinitionName"}
    at_limit = limits.MAX_DEFINITION_BYTES - limits.definition_bytes(JobDefinitionSpec.model_validate(spec))
    assert 0 < at_limit <= 4096
    name, registered = m.register_spec(params(at_limit))
    assert name == "big" and registered["parameters"]["pad"] == "y" * at_limit
    with pytest.raises(GatewayError) as err:
        m.register_spec(params(at_limit + 1))
    assert err.value.status == 400 and err.value.code == "ClientException"
    assert err.value.message == limits.definition_message(
        limits.MAX_DEFINITION_BYTES + 1, "RegisterJobDefinition"
    )
