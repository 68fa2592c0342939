"""The gateway's HTTP server: AWS Batch operations onto Batchyard custom resources.

Why this exists: boto3, the AWS CLI and every other AWS SDK can drive Batchyard by pointing
their endpoint here. Each request is (1) routed by botocore's model, (2) authenticated by SigV4
against the access keys in labelled Secrets, (3) validated by botocore's ParamValidator and the
CRD models, (4) executed against the API server *as the key's ServiceAccount* (impersonation),
so Kubernetes RBAC decides what each key may do, and namespaced objects live in the key's
namespace. The operator stays the only writer of status; the gateway writes specs, as a user
with kubectl would. Reads of jobs come from a watch-fed cache, guarded by an impersonated
SelfSubjectAccessReview (cached for a few seconds) so RBAC still decides.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from batchyard.adapters.kube import ApiError, Credentials, Kube, sleep_backoff
from batchyard.api import JobDefinitionSpec
from batchyard.core.revisions import TOO_LARGE_CONDITION, spec_hash
from batchyard.gateway import mapping as m
from batchyard.gateway.auth import AccessKey, key_from_secret, verify
from batchyard.gateway.errors import GatewayError, client_error, server_error
from batchyard.gateway.http import Answer, HttpServer, Request
from batchyard.gateway.jobcache import JobCache
from batchyard.gateway.metrics import observe
from batchyard.gateway.service import parse_params, route

log = logging.getLogger(__name__)

CREDENTIALS_LABEL = "batchyard.io/gateway-credentials"
BASE = "/apis/batchyard.io/v1alpha1"
JSON_PATCH = "application/json-patch+json"
ACCESS_TTL = 5.0  # seconds an RBAC answer is reused for cache reads
REVISION_WAIT = 15.0
MAX_BODY = (
    4 * 1024 * 1024
)  # far above any valid request (a job definition is at most ~64 KiB)  # seconds RegisterJobDefinition waits for the operator to record a revision

# AWS operations that exist in the model but have no meaning on Kubernetes (SageMaker service
# environments and service jobs, quota shares).
NOT_MEANINGFUL = {
    "CreateServiceEnvironment": "service environments (SageMaker)",
    "UpdateServiceEnvironment": "service environments (SageMaker)",
    "DeleteServiceEnvironment": "service environments (SageMaker)",
    "DescribeServiceEnvironments": "service environments (SageMaker)",
    "SubmitServiceJob": "service jobs (SageMaker)",
    "DescribeServiceJob": "service jobs (SageMaker)",
    "ListServiceJobs": "service jobs (SageMaker)",
    "TerminateServiceJob": "service jobs (SageMaker)",
    "TerminateServiceJobs": "service jobs (SageMaker)",
    "UpdateServiceJob": "service jobs (SageMaker)",
    "CreateQuotaShare": "quota shares",
    "UpdateQuotaShare": "quota shares",
    "DeleteQuotaShare": "quota shares",
    "DescribeQuotaShare": "quota shares",
    "ListQuotaShares": "quota shares",
}


@dataclass
class Settings:
    region: str = "us-east-1"
    secrets_namespace: str | None = None  # None: credential Secrets in every namespace
    provider: dict[str, Any] = field(default_factory=lambda: {"type": "kwok"})


@dataclass
class Call:
    """One authenticated request: the key, where its ARNs point, and its impersonated client."""

    key: AccessKey
    account: m.Account
    kube: Kube

    @property
    def ns(self) -> str:
        return self.key.namespace


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _json(status: int, body: Mapping[str, Any], headers: dict[str, str]) -> Answer:
    return Answer(status, _ENCODE(body).encode(), headers)


def refusal(status: int, message: str) -> Answer:
    """A request the HTTP layer cannot read (oversized, malformed), in AWS's error shape: a
    client's mistake is a ClientException, HTTP 400, as AWS answers every caller mistake."""
    err = client_error(message) if status < 500 else server_error(message)
    return _json(
        err.status, err.body(), {"x-amzn-RequestId": str(uuid.uuid4()), "X-Amzn-ErrorType": err.code}
    )


def ns_path(ns: str, plural: str, name: str | None = None) -> str:
    return f"{BASE}/namespaces/{ns}/{plural}" + (f"/{name}" if name else "")


def cluster_path(plural: str, name: str | None = None) -> str:
    return f"{BASE}/{plural}" + (f"/{name}" if name else "")


def api_error(exc: ApiError, what: str) -> GatewayError:
    """A Kubernetes API answer in AWS's shape: client mistakes are ClientException (400)."""
    message = exc.body.get("message", "") if isinstance(exc.body, Mapping) else str(exc.body)[:300]
    if exc.status in (401, 403):
        return GatewayError("AccessDeniedException", f"Not authorized: {message}", 403)
    if exc.status == 404:
        return client_error(f"{what} does not exist")
    if exc.status == 409:
        return client_error(f"{what} already exists or was changed concurrently: {message}")
    if exc.status in (400, 422):
        return client_error(message)
    return server_error(f"Kubernetes API error {exc.status}: {message}")


class Gateway:
    def __init__(self, creds: Credentials, settings: Settings) -> None:
        self.creds = creds
        self.settings = settings
        self.kube = Kube(creds)  # the gateway's own identity: Secrets and the job watch
        self.cache = JobCache(self.kube)
        self.keys: dict[str, AccessKey] = {}
        self.keys_ready = asyncio.Event()
        self._clients: dict[str, Kube] = {}
        self._access: dict[tuple[str, str, str, str], tuple[bool, float]] = {}
        self._jd_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.ops: dict[str, Callable[[Call, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "SubmitJob": self.submit_job,
            "DescribeJobs": self.describe_jobs,
            "ListJobs": self.list_jobs,
            "CancelJob": self.cancel_job,
            "TerminateJob": self.terminate_job,
            "CancelJobs": self.cancel_jobs,
            "TerminateJobs": self.terminate_jobs,
            "RegisterJobDefinition": self.register_job_definition,
            "DeregisterJobDefinition": self.deregister_job_definition,
            "DescribeJobDefinitions": self.describe_job_definitions,
            "CreateJobQueue": self.create_job_queue,
            "UpdateJobQueue": self.update_job_queue,
            "DeleteJobQueue": self.delete_job_queue,
            "DescribeJobQueues": self.describe_job_queues,
            "GetJobQueueSnapshot": self.get_job_queue_snapshot,
            "CreateComputeEnvironment": self.create_ce,
            "UpdateComputeEnvironment": self.update_ce,
            "DeleteComputeEnvironment": self.delete_ce,
            "DescribeComputeEnvironments": self.describe_ces,
            "CreateSchedulingPolicy": self.create_sp,
            "UpdateSchedulingPolicy": self.update_sp,
            "DeleteSchedulingPolicy": self.delete_sp,
            "DescribeSchedulingPolicies": self.describe_sps,
            "ListSchedulingPolicies": self.list_sps,
            "CreateConsumableResource": self.create_cr,
            "UpdateConsumableResource": self.update_cr,
            "DeleteConsumableResource": self.delete_cr,
            "DescribeConsumableResource": self.describe_cr,
            "ListConsumableResources": self.list_crs,
            "ListJobsByConsumableResource": self.list_jobs_by_cr,
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListTagsForResource": self.list_tags,
        }

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [self.cache.start(), loop.create_task(self._watch_keys())]
        await asyncio.wait_for(self.cache.ready.wait(), 60)
        await asyncio.wait_for(self.keys_ready.wait(), 60)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in self._clients.values():
            await client.close()
        await self.kube.close()

    async def _watch_keys(self) -> None:
        """Access keys from Secrets labelled batchyard.io/gateway-credentials=true (list + watch)."""
        ns = self.settings.secrets_namespace
        path = f"/api/v1/namespaces/{ns}/secrets" if ns else "/api/v1/secrets"
        params = {"labelSelector": f"{CREDENTIALS_LABEL}=true"}
        by_secret: dict[str, str] = {}
        attempt = 0

        def decode(secret: Mapping[str, Any]) -> AccessKey | None:
            data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
            data.update(secret.get("stringData") or {})
            return key_from_secret(data)

        def upsert(secret: Mapping[str, Any]) -> None:
            ident = f"{secret['metadata']['namespace']}/{secret['metadata']['name']}"
            old = by_secret.pop(ident, None)
            if old:
                self.keys.pop(old, None)
            key = decode(secret)
            if key is not None:
                self.keys[key.access_key_id] = key
                by_secret[ident] = key.access_key_id

        while True:
            try:
                listing = await self.kube.list(path, params)
                self.keys.clear()
                by_secret.clear()
                for item in listing.get("items") or []:
                    upsert(item)
                self.keys_ready.set()
                rv = str(listing["metadata"]["resourceVersion"])
                while True:
                    async for event in self.kube.watch(path, params, rv):
                        kind, obj = event.get("type"), event.get("object") or {}
                        if kind == "ERROR":
                            raise ApiError(int(obj.get("code") or 500), obj, "WATCH", path)
                        rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                        if kind in ("ADDED", "MODIFIED"):
                            upsert(obj)
                        elif kind == "DELETED":
                            ident = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
                            old = by_secret.pop(ident, None)
                            if old:
                                self.keys.pop(old, None)
                    attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("credential Secret watch restarting: %s", exc)
                await sleep_backoff(attempt)
                attempt = min(attempt + 1, 5)

    def client_for(self, key: AccessKey) -> Kube:
        client = self._clients.get(key.username)
        if client is None:
            # Kubernetes impersonation: the API server authorizes the call as this ServiceAccount.
            headers = {**self.creds.headers, "Impersonate-User": key.username}
            client = Kube(Credentials(self.creds.server, headers, self.creds.ssl))
            self._clients[key.username] = client
        return client

    async def allowed(self, call: Call, verb: str, resource: str) -> None:
        """RBAC for cache reads: an impersonated SelfSubjectAccessReview, reused for ACCESS_TTL."""
        ident = (call.key.username, verb, resource, call.ns)
        now = time.monotonic()
        hit = self._access.get(ident)
        if hit is None or hit[1] < now:
            review = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "group": "batchyard.io",
                        "resource": resource,
                        "verb": verb,
                        "namespace": call.ns,
                    }
                },
            }
            try:
                got = await call.kube.create("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
            except ApiError as exc:
                raise api_error(exc, "access review") from None
            hit = (bool((got.get("status") or {}).get("allowed")), now + ACCESS_TTL)
            self._access[ident] = hit
        if not hit[0]:
            raise GatewayError(
                "AccessDeniedException",
                f"{call.key.username} may not {verb} {resource} in namespace {call.ns}",
                403,
            )

    # --- HTTP -------------------------------------------------------------------------------------

    def http_server(self) -> HttpServer:
        return HttpServer(self.handle, MAX_BODY, refusal)

    async def handle(self, request: Request) -> Answer:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        operation = "unknown"
        try:
            # Route on the raw path: a resource ARN in /v1/tags/{resourceArn} is percent-encoded
            # and contains "/", which the decoded path would split.
            found = route(request.method, request.path)
            if found is None:
                raise GatewayError(
                    "UnknownOperationException",
                    f"No AWS Batch operation at {request.method} {request.path}",
                    404,
                )
            operation, uri = found
            body = request.body
            signed = verify(
                request.method,
                f"{request.scheme}://{request.host}",
                request.target,
                request.headers,
                body,
                self.keys.get,
            )
            if operation in NOT_MEANINGFUL:
                raise client_error(
                    f"{operation}: {NOT_MEANINGFUL[operation]} have no meaning in Batchyard, "
                    "which runs jobs as Kubernetes pods; this operation is not supported"
                )
            params = parse_params(operation, uri, request.query_string, body)
            call = Call(
                signed.access_key,
                m.Account(signed.region, signed.access_key.namespace),
                self.client_for(signed.access_key),
            )
            result = await self.ops[operation](call, params)
            response = _json(200, result, {"x-amzn-RequestId": request_id})
        except GatewayError as exc:
            response = _json(
                exc.status, exc.body(), {"x-amzn-RequestId": request_id, "X-Amzn-ErrorType": exc.code}
            )
        except ApiError as exc:
            err = api_error(exc, "the resource")
            response = _json(
                err.status, err.body(), {"x-amzn-RequestId": request_id, "X-Amzn-ErrorType": err.code}
            )
        except Exception:
            log.exception("%s failed", operation)
            err = server_error("Internal error in the Batchyard gateway")
            response = _json(500, err.body(), {"x-amzn-RequestId": request_id, "X-Amzn-ErrorType": err.code})
        observe(operation, str(response.status), time.perf_counter() - started)
        return response

    # --- jobs -------------------------------------------------------------------------------------

    async def submit_job(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        manifest = m.submit_job_manifest(p, call.ns)
        try:
            obj = await call.kube.create(ns_path(call.ns, "batchjobs"), manifest)
        except ApiError as exc:
            raise api_error(exc, "job") from None
        self.cache.put(obj)  # read-your-writes for DescribeJobs / ListJobs
        uid = obj["metadata"]["uid"]
        return {"jobArn": call.account.arn("job", uid), "jobName": p["jobName"], "jobId": uid}

    async def describe_jobs(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        ids = p["jobs"]
        if len(ids) > 100:
            raise client_error("jobs: a list of up to 100 job IDs")  # AWS DescribeJobs limit
        await self.allowed(call, "get", "batchjobs")
        found: list[tuple[dict[str, Any], int | None, int | None]] = []  # (job, array index, node)
        for ident in ids:
            node_id = m.split_node_id(str(ident))
            uid, index = node_id if node_id is not None else m.split_job_id(str(ident))
            obj = self.cache.get(call.ns, uid)
            if obj is None:
                continue  # AWS: unknown ids are left out of the answer
            if node_id is not None:
                found.append((obj, None, node_id[1]))
                continue
            if index is not None:
                size = int((obj["spec"].get("arrayProperties") or {}).get("size") or 0)
                if index >= size:
                    continue
            found.append((obj, index, None))
        definitions = await self._definitions(call, {str(o["spec"]["jobDefinition"]) for o, _, _ in found})
        out = []
        for obj, index, node in found:
            definition = definitions.get(m.definition_ref(str(obj["spec"]["jobDefinition"]))[0])
            if node is None:
                out.append(m.job_detail(obj, call.account, index, definition))
            elif (detail := m.node_detail(obj, call.account, node, definition)) is not None:
                out.append(detail)
        return {"jobs": out}

    async def _definitions(self, call: Call, refs: set[str]) -> dict[str, dict[str, Any]]:
        """The JobDefinitions the jobs name, read as the key (one GET per name). One the key may not
        read, or that is gone, is left out: the job's detail then lacks what only it knows."""
        names = sorted({m.definition_ref(r)[0] for r in refs})

        async def one(name: str) -> dict[str, Any] | None:
            try:
                got: dict[str, Any] = await call.kube.get(ns_path(call.ns, "jobdefinitions", name))
                return got
            except ApiError as exc:
                if exc.status in (401, 403, 404):
                    return None
                raise api_error(exc, f"job definition {name}") from None

        got = await asyncio.gather(*(one(n) for n in names))
        return {n: d for n, d in zip(names, got, strict=True) if d is not None}

    async def list_jobs(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        q = m.parse_list_jobs(p)
        await self.allowed(call, "list", "batchjobs")
        if q.array_job_id is not None:
            parent = self.cache.get(call.ns, q.array_job_id)
            jobs = [parent] if parent is not None and parent["spec"].get("arrayProperties") else []
        elif q.multi_node_job_id is not None:
            parent = self.cache.get(call.ns, q.multi_node_job_id)
            jobs = [parent] if parent is not None else []
        else:
            jobs = list(self.cache.in_namespace(call.ns))
        page, token = m.list_jobs(jobs, q, call.account)
        return {"jobSummaryList": page, **({"nextToken": token} if token else {})}

    async def _stop(self, call: Call, job_id: str, reason: str, verb: str) -> None:
        if not 1 <= len(reason) <= 1024:
            raise client_error("reason: 1 to 1024 characters")
        if m.split_node_id(job_id) is not None:
            raise client_error(
                f"jobId: {job_id} is a node of a multi-node parallel job; nodes stop with their job, "
                "so cancel or terminate the job itself"
            )
        uid, index = m.split_job_id(job_id)
        obj = self.cache.get(call.ns, uid)
        if obj is None:
            raise client_error(f"jobId: job {job_id} does not exist")
        path = ns_path(call.ns, "batchjobs", obj["metadata"]["name"])
        try:
            if index is None:
                got = await call.kube.merge_patch(path, {"spec": {verb: {"reason": reason}}})
            else:
                size = int((obj["spec"].get("arrayProperties") or {}).get("size") or 0)
                if index >= size:
                    raise client_error(f"jobId: array job {uid} has no child {index}")
                got = await self._add_child_request(call, path, index, verb, reason)
                if got is None:
                    return
        except ApiError as exc:
            raise api_error(exc, f"job {job_id}") from None
        self.cache.put(got)

    async def _add_child_request(
        self, call: Call, path: str, index: int, verb: str, reason: str
    ) -> dict[str, Any] | None:
        """Append one spec.childRequests entry (a JSON patch guarded by resourceVersion, retried).

        A merge patch would replace the whole list, dropping other children's requests.
        """
        for attempt in range(5):
            current = await call.kube.get(path)
            requests = current["spec"].get("childRequests")
            if any(r.get("index") == index for r in requests or []):
                return None  # already requested: AWS answers success again
            entry = {"index": index, "action": verb.upper(), "reason": reason}
            ops: list[dict[str, Any]] = [
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": current["metadata"]["resourceVersion"],
                },
                {"op": "add", "path": "/spec/childRequests/-", "value": entry}
                if requests
                else {"op": "add", "path": "/spec/childRequests", "value": [entry]},
            ]
            try:
                got: dict[str, Any] = await call.kube.request(
                    "patch", "PATCH", path, ops, content_type=JSON_PATCH
                )
                return got
            except ApiError as exc:
                # 422 from the failed "test" (or 409): someone else wrote first; read again.
                if exc.status not in (409, 422) or attempt == 4:
                    raise
        return None

    async def cancel_job(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        # AWS: cancelling a STARTING or RUNNING job succeeds but has no effect.
        await self._stop(call, str(p["jobId"]), str(p["reason"]), "cancel")
        return {}

    async def terminate_job(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        await self._stop(call, str(p["jobId"]), str(p["reason"]), "terminate")
        return {}

    async def _bulk(self, call: Call, p: dict[str, Any], verb: str) -> dict[str, Any]:
        if len(p["jobs"]) > 50:
            raise client_error("jobs: up to 50 job IDs")
        ok, errors = [], []
        for job_id in p["jobs"]:
            try:
                await self._stop(call, str(job_id), str(p["reason"]), verb)
                ok.append(job_id)
            except GatewayError as exc:
                errors.append({"job": job_id, "code": exc.code, "message": exc.message})
        return {"successful": ok, "errors": errors}

    async def cancel_jobs(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        return await self._bulk(call, p, "cancel")

    async def terminate_jobs(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        return await self._bulk(call, p, "terminate")

    # --- job definitions --------------------------------------------------------------------------

    async def register_job_definition(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        aws_name = str(p["jobDefinitionName"])
        name, spec = m.register_spec(p)
        # AWS makes a revision per call, even of an identical definition: a fresh registrationId
        # makes this spec a new one for the operator, which numbers the revision.
        spec["registrationId"] = uuid.uuid4().hex
        path = ns_path(call.ns, "jobdefinitions", name)
        lock = self._jd_locks.setdefault((call.ns, name), asyncio.Lock())
        # One registration per definition at a time: each must be recorded as its own revision
        # before the next replaces the spec (AWS: every registration is a revision).
        async with lock:
            try:
                try:
                    current = await call.kube.get(path)
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    current = None
                if current is None:
                    meta = m.object_meta(aws_name, call.ns)
                    meta["name"] = name
                    body = {
                        "apiVersion": m.API_VERSION,
                        "kind": "JobDefinition",
                        "metadata": meta,
                        "spec": spec,
                    }
                    got = await call.kube.create(ns_path(call.ns, "jobdefinitions"), body)
                else:
                    inactive = current["spec"].get("inactiveRevisions")
                    new_spec = {**spec, **({"inactiveRevisions": inactive} if inactive else {})}
                    current["spec"] = new_spec
                    got = await call.kube.request("update", "PUT", path, current)
            except ApiError as exc:
                raise api_error(exc, f"job definition {aws_name}") from None
            digest = spec_hash(JobDefinitionSpec.model_validate(got["spec"]))
            revision = await self._await_revision(call, path, digest, got["metadata"].get("generation"))
        return {
            "jobDefinitionName": aws_name,
            "jobDefinitionArn": call.account.arn("job-definition", f"{aws_name}:{revision}"),
            "revision": revision,
        }

    async def _await_revision(self, call: Call, path: str, digest: str, generation: int | None) -> int:
        """The revision the operator records for this spec (it owns revision numbers).

        The digest includes the call's registrationId, so it names this registration's revision
        even when others were recorded after it. A spec the operator refuses (over 24 KiB) is a
        ClientException, not a 5xx an SDK would retry.
        """
        deadline = time.monotonic() + REVISION_WAIT
        while True:
            obj = await call.kube.get(path)
            status = obj.get("status") or {}
            for rev in reversed(status.get("revisions") or []):
                if rev.get("specHash") == digest:
                    return int(rev["revision"])
            refused = [c for c in status.get("conditions") or [] if c.get("type") == TOO_LARGE_CONDITION]
            if (
                refused
                and refused[0].get("status") == "False"
                and status.get("observedGeneration") == generation
            ):
                raise client_error(str(refused[0].get("message")))
            if time.monotonic() > deadline:
                # 5xx on purpose: an SDK retry registers again (AWS: a retried call may, too).
                raise server_error("The operator has not recorded the new revision yet; retry")
            await asyncio.sleep(0.05)

    async def deregister_job_definition(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        name, revision = m.definition_ref(str(p["jobDefinition"]))
        if revision is None:
            raise client_error("jobDefinition: name:revision or a job definition ARN with a revision")
        path = ns_path(call.ns, "jobdefinitions", name)
        try:
            obj = await call.kube.get(path)
            known = {int(r["revision"]) for r in (obj.get("status") or {}).get("revisions") or []}
            if revision not in known:
                raise client_error(f"jobDefinition: {p['jobDefinition']} does not exist")
            inactive = sorted({*(obj["spec"].get("inactiveRevisions") or []), revision})
            await call.kube.merge_patch(path, {"spec": {"inactiveRevisions": inactive}})
        except ApiError as exc:
            raise api_error(exc, f"job definition {p['jobDefinition']}") from None
        return {}

    async def describe_job_definitions(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        wanted = p.get("jobDefinitions") or []
        if len(wanted) > 100:
            raise client_error("jobDefinitions: up to 100 names or ARNs")
        max_results = p.get("maxResults")
        if max_results is not None and not 1 <= max_results <= 100:
            raise client_error("maxResults: must be between 1 and 100")
        try:
            items = (await call.kube.list(ns_path(call.ns, "jobdefinitions"))).get("items") or []
        except ApiError as exc:
            raise api_error(exc, "job definitions") from None
        refs = [m.definition_ref(str(w), "jobDefinitions") for w in wanted]
        name_filter = m.k8s_name(str(p["jobDefinitionName"]), 128) if p.get("jobDefinitionName") else None
        entries = []
        for obj in items:
            oname = obj["metadata"]["name"]
            if name_filter and oname != name_filter:
                continue
            for entry in m.definition_entries(obj, call.account):
                if refs and not any(n == oname and (r is None or r == entry["revision"]) for n, r in refs):
                    continue
                if p.get("status") and entry["status"] != p["status"]:
                    continue
                entries.append(entry)
        entries.sort(key=lambda e: (e["jobDefinitionName"], e["revision"]))
        for i, e in enumerate(entries):
            e["_key"] = f"{i:08d}"
        page, token = m.paginate(entries, "_key", max_results, p.get("nextToken"))
        for e in entries:
            e.pop("_key", None)
        return {"jobDefinitions": page, **({"nextToken": token} if token else {})}

    # --- cluster-scoped resources -----------------------------------------------------------------

    async def _create(self, call: Call, plural: str, kind: str, aws_name: str, spec: dict[str, Any],
                      annotations: Mapping[str, str] | None = None) -> None:  # fmt: skip
        body = {
            "apiVersion": m.API_VERSION,
            "kind": kind,
            "metadata": m.object_meta(aws_name, extra=annotations),
            "spec": spec,
        }
        try:
            await call.kube.create(cluster_path(plural), body)
        except ApiError as exc:
            raise api_error(exc, f"{kind} {aws_name}") from None

    async def _get(self, call: Call, plural: str, name: str, what: str) -> dict[str, Any]:
        try:
            got: dict[str, Any] = await call.kube.get(cluster_path(plural, name))
        except ApiError as exc:
            raise api_error(exc, what) from None
        return got

    async def _patch(
        self, call: Call, plural: str, name: str, body: dict[str, Any], what: str
    ) -> dict[str, Any]:
        try:
            got: dict[str, Any] = await call.kube.merge_patch(cluster_path(plural, name), body)
        except ApiError as exc:
            raise api_error(exc, what) from None
        return got

    async def _delete(self, call: Call, plural: str, name: str, what: str) -> None:
        try:
            await call.kube.delete(cluster_path(plural, name))
        except ApiError as exc:
            raise api_error(exc, what) from None

    async def _list(self, call: Call, plural: str) -> list[dict[str, Any]]:
        try:
            items: list[dict[str, Any]] = (await call.kube.list(cluster_path(plural))).get("items") or []
        except ApiError as exc:
            raise api_error(exc, plural) from None
        return items

    async def _describe(self, call: Call, plural: str, kind: str, names: list[str], field_: str,
                        detail: Callable[[Mapping[str, Any], m.Account], dict[str, Any]], key: str,
                        p: Mapping[str, Any], out: str) -> dict[str, Any]:  # fmt: skip
        if len(names) > 100:
            raise client_error(f"{field_}: up to 100 names or ARNs")
        wanted = {m.k8s_name(m.name_from(str(n), kind, field_), 253) for n in names}
        items = [
            detail(o, call.account)
            for o in await self._list(call, plural)
            if not wanted or o["metadata"]["name"] in wanted
        ]
        page, token = m.paginate(items, key, p.get("maxResults"), p.get("nextToken"))
        return {out: page, **({"nextToken": token} if token else {})}

    async def create_job_queue(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        name = str(p["jobQueueName"])
        await self._create(call, "jobqueues", "JobQueue", name, m.queue_spec(p))
        return {"jobQueueName": name, "jobQueueArn": call.account.arn("job-queue", name)}

    async def update_job_queue(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        name = m.k8s_name(m.name_from(str(p["jobQueue"]), "job-queue", "jobQueue"), 253)
        obj = await self._get(call, "jobqueues", name, f"job queue {p['jobQueue']}")
        spec = m.queue_spec(p, obj["spec"])
        await self._patch(call, "jobqueues", name, {"spec": spec}, f"job queue {p['jobQueue']}")
        aws = m.aws_name(obj)
        return {"jobQueueName": aws, "jobQueueArn": call.account.arn("job-queue", aws)}

    async def delete_job_queue(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        name = m.k8s_name(m.name_from(str(p["jobQueue"]), "job-queue", "jobQueue"), 253)
        obj = await self._get(call, "jobqueues", name, f"job queue {p['jobQueue']}")
        if obj["spec"].get("state", "ENABLED") != "DISABLED":
            # AWS: "You must first disable submissions for a queue with the UpdateJobQueue operation."
            raise client_error(
                f"jobQueue: {p['jobQueue']} must be DISABLED (UpdateJobQueue) before it is deleted"
            )
        await self._delete(call, "jobqueues", name, f"job queue {p['jobQueue']}")
        return {}

    async def describe_job_queues(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        return await self._describe(call, "jobqueues", "job-queue", p.get("jobQueues") or [], "jobQueues",
                                    m.queue_detail, "jobQueueName", p, "jobQueues")  # fmt: skip

    async def get_job_queue_snapshot(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        name = m.k8s_name(m.name_from(str(p["jobQueue"]), "job-queue", "jobQueue"), 253)
        await self._get(call, "jobqueues", name, f"job queue {p['jobQueue']}")
        await self.allowed(call, "list", "batchjobs")
        return m.snapshot(self.cache.in_namespace(call.ns), name, call.account, int(time.time() * 1000))

    async def create_ce(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        name = str(p["computeEnvironmentName"])
        spec, stored = m.ce_spec(p, self.settings.provider)
        annotations = {m.AWS_FIELDS_ANNOTATION: json.dumps(stored, sort_keys=True)} if stored else None
        await self._create(call, "computeenvironments", "ComputeEnvironment", name, spec, annotations)
        return {
            "computeEnvironmentName": name,
            "computeEnvironmentArn": call.account.arn("compute-environment", name),
        }

    async def update_ce(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        ref = str(p["computeEnvironment"])
        name = m.k8s_name(m.name_from(ref, "compute-environment", "computeEnvironment"), 253)
        obj = await self._get(call, "computeenvironments", name, f"compute environment {ref}")
        spec, stored = m.ce_spec(p, self.settings.provider, obj["spec"])
        annotations = obj["metadata"].get("annotations") or {}
        old = json.loads(annotations.get(m.AWS_FIELDS_ANNOTATION) or "{}")
        merged = {
            **old,
            **stored,
            "computeResources": {
                **(old.get("computeResources") or {}),
                **(stored.get("computeResources") or {}),
            },
        }
        if not merged["computeResources"]:
            merged.pop("computeResources")
        patch: dict[str, Any] = {"spec": spec}
        if merged:
            patch["metadata"] = {"annotations": {m.AWS_FIELDS_ANNOTATION: json.dumps(merged, sort_keys=True)}}
        await self._patch(call, "computeenvironments", name, patch, f"compute environment {ref}")
        aws = m.aws_name(obj)
        return {
            "computeEnvironmentName": aws,
            "computeEnvironmentArn": call.account.arn("compute-environment", aws),
        }

    async def delete_ce(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        ref = str(p["computeEnvironment"])
        name = m.k8s_name(m.name_from(ref, "compute-environment", "computeEnvironment"), 253)
        obj = await self._get(call, "computeenvironments", name, f"compute environment {ref}")
        if obj["spec"].get("state", "ENABLED") != "DISABLED":
            # AWS: "Before you can delete a compute environment, you must set its state to DISABLED".
            raise client_error(f"computeEnvironment: {ref} must be DISABLED before it is deleted")
        for q in await self._list(call, "jobqueues"):
            if any(
                o.get("computeEnvironment") == name for o in q["spec"].get("computeEnvironmentOrder") or []
            ):
                # AWS: "... and disassociate it from any job queues with the UpdateJobQueue API operation."
                raise client_error(f"computeEnvironment: {ref} is still used by job queue {m.aws_name(q)}")
        await self._delete(call, "computeenvironments", name, f"compute environment {ref}")
        return {}

    async def describe_ces(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        return await self._describe(call, "computeenvironments", "compute-environment",
                                    p.get("computeEnvironments") or [], "computeEnvironments", m.ce_detail,
                                    "computeEnvironmentName", p, "computeEnvironments")  # fmt: skip

    async def create_sp(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        name = str(p["name"])
        await self._create(call, "schedulingpolicies", "SchedulingPolicy", name, m.sp_spec(p))
        return {"name": name, "arn": call.account.arn("scheduling-policy", name)}

    def _sp_name(self, arn: str, field_: str = "arn") -> str:
        return m.k8s_name(m.name_from(arn, "scheduling-policy", field_), 253)

    async def update_sp(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        name = self._sp_name(str(p["arn"]))
        obj = await self._get(call, "schedulingpolicies", name, f"scheduling policy {p['arn']}")
        await self._patch(
            call,
            "schedulingpolicies",
            name,
            {"spec": m.sp_spec(p, obj.get("spec"))},
            f"scheduling policy {p['arn']}",
        )
        return {}

    async def delete_sp(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        name = self._sp_name(str(p["arn"]))
        for q in await self._list(call, "jobqueues"):
            if q["spec"].get("schedulingPolicy") == name:
                # AWS: "You can't delete a scheduling policy that's used in any job queues."
                raise client_error(f"arn: scheduling policy {p['arn']} is used by job queue {m.aws_name(q)}")
        await self._delete(call, "schedulingpolicies", name, f"scheduling policy {p['arn']}")
        return {}

    async def describe_sps(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        wanted = {self._sp_name(str(a), "arns") for a in p["arns"]}
        items = [
            m.sp_detail(o, call.account)
            for o in await self._list(call, "schedulingpolicies")
            if o["metadata"]["name"] in wanted
        ]
        return {"schedulingPolicies": items}

    async def list_sps(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        items = [
            {"arn": m.sp_detail(o, call.account)["arn"]} for o in await self._list(call, "schedulingpolicies")
        ]
        page, token = m.paginate(items, "arn", p.get("maxResults"), p.get("nextToken"))
        return {"schedulingPolicies": page, **({"nextToken": token} if token else {})}

    def _cr_name(self, ref: str) -> str:
        return m.k8s_name(m.name_from(ref, "consumable-resource", "consumableResource"), 253)

    async def create_cr(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        name = str(p["consumableResourceName"])
        await self._create(call, "consumableresources", "ConsumableResource", name, m.cr_spec(p))
        return {
            "consumableResourceName": name,
            "consumableResourceArn": call.account.arn("consumable-resource", name),
        }

    async def update_cr(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        ref = str(p["consumableResource"])
        obj = await self._get(call, "consumableresources", self._cr_name(ref), f"consumable resource {ref}")
        spec = m.cr_update(obj["spec"], p.get("operation"), p.get("quantity"))
        got = await self._patch(
            call,
            "consumableresources",
            self._cr_name(ref),
            {"spec": {"totalQuantity": spec["totalQuantity"]}},
            f"consumable resource {ref}",
        )
        aws = m.aws_name(got)
        return {"consumableResourceName": aws, "consumableResourceArn": call.account.arn("consumable-resource", aws),
                "totalQuantity": spec["totalQuantity"]}  # fmt: skip

    async def delete_cr(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        ref = str(p["consumableResource"])
        await self._delete(call, "consumableresources", self._cr_name(ref), f"consumable resource {ref}")
        return {}

    async def describe_cr(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        ref = str(p["consumableResource"])
        obj = await self._get(call, "consumableresources", self._cr_name(ref), f"consumable resource {ref}")
        return m.cr_detail(obj, call.account)

    async def list_crs(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        items = []
        prefix: str | None = None
        exact: str | None = None
        for f in p.get("filters") or []:
            if f.get("name") != "CONSUMABLE_RESOURCE_NAME":
                raise client_error("filters.name: must be CONSUMABLE_RESOURCE_NAME")
            value = str((f.get("values") or [""])[0])
            prefix, exact = (value[:-1], None) if value.endswith("*") else (None, value)
        for o in await self._list(call, "consumableresources"):
            d = m.cr_detail(o, call.account)
            name = d["consumableResourceName"]
            if (prefix is not None and not name.startswith(prefix)) or (exact is not None and name != exact):
                continue
            items.append(
                {
                    k: d[k]
                    for k in (
                        "consumableResourceArn",
                        "consumableResourceName",
                        "totalQuantity",
                        "inUseQuantity",
                        "resourceType",
                    )
                }
            )
        page, token = m.paginate(items, "consumableResourceName", p.get("maxResults"), p.get("nextToken"))
        return {"consumableResources": page, **({"nextToken": token} if token else {})}

    async def list_jobs_by_cr(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        resource = self._cr_name(str(p["consumableResource"]))
        await self.allowed(call, "list", "batchjobs")
        try:
            items = (await call.kube.list(ns_path(call.ns, "jobdefinitions"))).get("items") or []
        except ApiError as exc:
            raise api_error(exc, "job definitions") from None
        definitions = {d["metadata"]["name"]: d for d in items}
        jobs = m.jobs_by_consumable_resource(
            self.cache.in_namespace(call.ns), definitions, resource, p.get("filters") or [], call.account
        )
        for i, j in enumerate(jobs):
            j["_key"] = f"{i:08d}"
        page, token = m.paginate(jobs, "_key", p.get("maxResults"), p.get("nextToken"))
        for j in jobs:
            j.pop("_key", None)
        return {"jobs": page, **({"nextToken": token} if token else {})}

    # --- tags -------------------------------------------------------------------------------------

    async def _tag_target(self, call: Call, arn: str) -> tuple[str, str, dict[str, Any]]:
        kind, name = m.parse_arn(arn)
        plural = m.ARN_KINDS[kind]
        if kind == "job":
            uid, index = m.split_job_id(name)
            if index is not None:
                # AWS: "ARNs for child jobs of array and multi-node parallel (MNP) jobs aren't supported."
                raise client_error("resourceArn: array child job ARNs can't be tagged")
            obj = self.cache.get(call.ns, uid)
            if obj is None:
                raise client_error(f"resourceArn: job {uid} does not exist")
            return kind, ns_path(call.ns, plural, obj["metadata"]["name"]), obj
        if kind == "job-definition":
            jd, _ = m.definition_ref(name, "resourceArn")
            path = ns_path(call.ns, plural, jd)
        else:
            path = cluster_path(plural, m.k8s_name(name, 253))
        try:
            obj = await call.kube.get(path)
        except ApiError as exc:
            raise api_error(exc, f"resource {arn}") from None
        return kind, path, obj

    @staticmethod
    def _annotation_tags(obj: Mapping[str, Any]) -> dict[str, str]:
        raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(m.JOB_TAGS_ANNOTATION)
        return dict(json.loads(raw)) if raw else {}

    async def tag_resource(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        tags = p["tags"]
        for key in tags:
            if key.startswith("aws:") or not 1 <= len(key) <= 128:
                raise client_error(f"tags: key {key!r} must be 1-128 characters and not start with aws:")
        kind, path, obj = await self._tag_target(call, str(p["resourceArn"]))
        try:
            if kind in ("job", "job-definition"):
                # Job specs are immutable after submission, and a definition's spec change would
                # be a new revision: their added tags are kept in an annotation.
                merged = {**self._annotation_tags(obj), **tags}
                if len({**(obj["spec"].get("tags") or {}), **merged}) > 50:
                    raise client_error("tags: a resource can have up to 50 tags")
                got = await call.kube.merge_patch(
                    path,
                    {
                        "metadata": {
                            "annotations": {m.JOB_TAGS_ANNOTATION: json.dumps(merged, sort_keys=True)}
                        }
                    },
                )
            else:
                if len({**(obj["spec"].get("tags") or {}), **tags}) > 50:
                    raise client_error("tags: a resource can have up to 50 tags")
                got = await call.kube.merge_patch(path, {"spec": {"tags": tags}})
        except ApiError as exc:
            raise api_error(exc, f"resource {p['resourceArn']}") from None
        if kind == "job":
            self.cache.put(got)
        return {}

    async def untag_resource(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        keys = list(p["tagKeys"])
        kind, path, obj = await self._tag_target(call, str(p["resourceArn"]))
        try:
            if kind in ("job", "job-definition"):
                left = {k: v for k, v in self._annotation_tags(obj).items() if k not in keys}
                got = await call.kube.merge_patch(
                    path,
                    {"metadata": {"annotations": {m.JOB_TAGS_ANNOTATION: json.dumps(left, sort_keys=True)}}},
                )
            else:
                got = await call.kube.merge_patch(path, {"spec": {"tags": dict.fromkeys(keys)}})
        except ApiError as exc:
            raise api_error(exc, f"resource {p['resourceArn']}") from None
        if kind == "job":
            self.cache.put(got)
        return {}

    async def list_tags(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        kind, _, obj = await self._tag_target(call, str(p["resourceArn"]))
        if kind == "job":
            return {"tags": m.job_tags(obj)}
        return {"tags": {**(obj["spec"].get("tags") or {}), **self._annotation_tags(obj)}}


async def serve(gateway: Gateway, host: str, port: int) -> HttpServer:
    """Start the gateway's HTTP server; returns it (cleanup() stops it)."""
    await gateway.start()
    server = gateway.http_server()
    await server.start(host, port)
    return server
