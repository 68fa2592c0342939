"""AWS Signature Version 4 verification with botocore's own signer, and the access keys.

Why this exists: every AWS SDK signs its requests with SigV4; verifying means recomputing the
signature from the request as received, with the secret of the access key it names, and
comparing. The recomputation is botocore's SigV4Auth (the reference implementation), fed with
exactly the headers the client says it signed, so canonicalisation is never re-implemented here.

AWS rules applied: a request without a signature, with an unknown access key, with a signature
that does not match, or dated more than 5 minutes away from now is refused with 403 (codes
MissingAuthenticationTokenException, UnrecognizedClientException, InvalidSignatureException).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from batchyard.gateway.errors import GatewayError, auth_error

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=5)  # AWS: "Signature expired" beyond 5 minutes either way
SERVICE = "batch"


class _Signer(SigV4Auth):  # type: ignore[misc]  # botocore has no type hints
    """botocore's SigV4 signer, told the payload hash instead of deriving it.

    botocore's own `payload` reads `request.body`, which prepares the whole request (url
    parsing, header copies) only to hash the body: a tenth of the gateway's CPU per request.
    The hash is the same (SHA-256 of the body as received), computed once here and carried in
    the request's context, so one signer per key and region serves every request (`_signer`)."""

    def __init__(self, credentials: Credentials, region: str) -> None:
        super().__init__(credentials, SERVICE, region)
        self._keys: dict[str, bytes] = {}  # day (YYYYMMDD) -> signing key

    def payload(self, request: AWSRequest) -> str:
        return str(request.context["payload_sha256"])

    def signature(self, string_to_sign: str, request: AWSRequest) -> str:
        """botocore's signature, with the signing key (four HMACs of the secret, the day, the
        region and the service) derived once per day for this signer's key and region, as AWS's
        SigV4 documents allow; botocore's `_sign` computes every HMAC."""
        day = request.context["timestamp"][0:8]
        signing_key = self._keys.get(day)
        if signing_key is None:
            k_date = self._sign(f"AWS4{self.credentials.secret_key}".encode(), day)
            k_region = self._sign(k_date, self._region_name)
            k_service = self._sign(k_region, self._service_name)
            signing_key = self._sign(k_service, "aws4_request")
            if len(self._keys) >= 3:
                self._keys.clear()  # requests are within 5 minutes of now: two days at most
            self._keys[day] = signing_key
        return str(self._sign(signing_key, string_to_sign, hex=True))


MAX_CACHED_SIGNERS = 4096
_SIGNERS: dict[tuple[str, str, str], _Signer] = {}


def _signer(key: AccessKey, region: str) -> _Signer:
    """One signer per (key id, secret, region): a rotated secret gets a new one."""
    cache_key = (key.access_key_id, key.secret_access_key, region)
    signer = _SIGNERS.get(cache_key)
    if signer is None:
        if len(_SIGNERS) >= MAX_CACHED_SIGNERS:
            _SIGNERS.clear()  # keys and regions come and go: a bound, not an eviction policy
        signer = _SIGNERS[cache_key] = _Signer(Credentials(key.access_key_id, key.secret_access_key), region)
    return signer


@dataclass(frozen=True)
class AccessKey:
    """One access key: the namespace it acts in (its "account") and the ServiceAccount it becomes."""

    access_key_id: str
    secret_access_key: str
    namespace: str
    service_account: str

    @property
    def username(self) -> str:
        """The Kubernetes user the gateway impersonates for this key's calls."""
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


@dataclass(frozen=True)
class SignedRequest:
    access_key: AccessKey
    region: str


def _parse_amz_date(value: str) -> datetime:
    """X-Amz-Date (ISO 8601 basic, 20261201T040000Z); by hand, as strptime is slow per request."""
    if len(value) != 16 or value[8] != "T" or value[15] != "Z" or not (value[:8] + value[9:15]).isdigit():
        raise ValueError(value)
    return datetime(
        int(value[0:4]), int(value[4:6]), int(value[6:8]), int(value[9:11]), int(value[11:13]),
        int(value[13:15]), tzinfo=UTC,
    )  # fmt: skip


def _parse_authorization(value: str) -> dict[str, str]:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise auth_error("IncompleteSignatureException", f"Unsupported signature algorithm {algorithm!r}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if sep:
            fields[key] = val
    for key in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(key):
            raise auth_error(
                "IncompleteSignatureException", f"Authorization header requires '{key}' parameter"
            )
    return fields


def verify(
    method: str,
    host_url: str,
    raw_path: str,
    headers: Mapping[str, str],
    body: bytes,
    lookup: Callable[[str], AccessKey | None],
    now: datetime | None = None,
) -> SignedRequest:
    """The access key that signed this request, or a 403 GatewayError.

    `headers` must be case-insensitive (gateway.http.Headers); `host_url` is scheme://host;
    `raw_path` the path and query string exactly as received (still percent-encoded).
    """
    auth = headers.get("Authorization")
    if not auth:
        raise auth_error("MissingAuthenticationTokenException", "Missing Authentication Token")
    fields = _parse_authorization(auth)
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise auth_error(
            "IncompleteSignatureException", "Credential must be <key>/<date>/<region>/<service>/aws4_request"
        )
    key_id, scope_date, region, service, _ = scope
    if service != SERVICE:
        raise auth_error(
            "InvalidSignatureException", f"Credential should be scoped to correct service: '{SERVICE}'"
        )
    key = lookup(key_id)
    if key is None:
        raise auth_error(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    amz_date = headers.get("X-Amz-Date", "")
    try:
        when = _parse_amz_date(amz_date)
    except ValueError:
        raise auth_error(
            "IncompleteSignatureException", "X-Amz-Date header is missing or malformed"
        ) from None
    current = now or datetime.now(UTC)
    if abs(current - when) > MAX_SKEW:
        raise auth_error(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than {(current - MAX_SKEW):%Y%m%dT%H%M%SZ} "
            f"({current:%Y%m%dT%H%M%SZ} - 5 min.)"
            if when < current
            else f"Signature not yet current: {amz_date} is still later than "
            f"{(current + MAX_SKEW):%Y%m%dT%H%M%SZ} ({current:%Y%m%dT%H%M%SZ} + 5 min.)",
        )
    if scope_date != amz_date[:8]:
        raise auth_error("InvalidSignatureException", "Credential date does not match X-Amz-Date")
    signed = [h for h in fields["SignedHeaders"].split(";") if h]
    if "host" not in signed:
        raise auth_error("InvalidSignatureException", "The host header must be signed")
    picked: dict[str, str] = {}
    for name in signed:
        value = headers.get(name)
        if value is None:
            raise auth_error("InvalidSignatureException", f"Signed header {name} is missing from the request")
        picked[name] = value
    body_sha = hashlib.sha256(body).hexdigest()
    content_sha = headers.get("X-Amz-Content-SHA256")
    if content_sha is not None and content_sha != body_sha:
        # botocore trusts this header as the payload hash: it must match the body we got.
        raise auth_error("InvalidSignatureException", "X-Amz-Content-SHA256 does not match the request body")
    request = AWSRequest(method=method.upper(), url=host_url + raw_path, data=body, headers=picked)
    request.context["timestamp"] = amz_date
    request.context["payload_sha256"] = body_sha
    signer = _signer(key, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, fields["Signature"]):
        raise auth_error(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
    return SignedRequest(key, region)


def key_from_secret(secret: Mapping[str, object]) -> AccessKey | None:
    """An AccessKey from a credentials Secret's decoded data, or None when incomplete."""
    data = secret
    try:
        return AccessKey(
            access_key_id=str(data["accessKeyId"]),
            secret_access_key=str(data["secretAccessKey"]),
            namespace=str(data["namespace"]),
            service_account=str(data.get("serviceAccount") or "default"),
        )
    except KeyError:
        return None


__all__ = ["AccessKey", "GatewayError", "SignedRequest", "key_from_secret", "verify"]
