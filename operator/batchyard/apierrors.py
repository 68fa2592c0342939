"""Typed answers of the Kubernetes API server: one exception class per status that callers act on.

These live outside the layers (`adapters` and `nodepools` both catch them, and `nodepools` may not
import `adapters`); they hold no I/O. `ApiError.status` stays, so a caller can still read the code,
but callers catch the class (``except NotFound``) instead of comparing integers.

The classes follow the API server's status codes (k8s.io/apimachinery `StatusReason`): 404
NotFound, 409 Conflict (AlreadyExists or a stale resourceVersion), 400/422 Invalid (BadRequest
or Invalid), 401 Unauthorized, 403 Forbidden, 410 Gone (a watch's resourceVersion is too old),
429 TooManyRequests, 5xx ServerError. Anything else stays a plain ApiError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """A non-2xx answer from the API server, with its status code and Status body."""

    def __init__(self, status: int, body: Mapping[str, Any] | str, method: str, path: str) -> None:
        self.status = status
        self.body = body
        self.method = method
        self.path = path
        message = body.get("message", "") if isinstance(body, Mapping) else str(body)[:500]
        super().__init__(f"{method} {path}: {status} {message}")

    @property
    def reason(self) -> str:
        return str(self.body.get("reason", "")) if isinstance(self.body, Mapping) else ""

    @property
    def message(self) -> str:
        return str(self.body.get("message", "")) if isinstance(self.body, Mapping) else str(self.body)


class NotFound(ApiError):
    """404: the object (or its namespace) does not exist."""


class Conflict(ApiError):
    """409: the name is taken (AlreadyExists) or the write carried a stale resourceVersion."""


class Invalid(ApiError):
    """400 or 422: the server refuses the request body (BadRequest / Invalid); retrying won't help."""


class Unauthorized(ApiError):
    """401: the credentials were refused (an expired or rotated token)."""


class Forbidden(ApiError):
    """403: RBAC refuses the verb, or an admission rule (quota, namespace terminating) does."""


class Gone(ApiError):
    """410: a watch's or list's resourceVersion is too old; relist."""


class TooManyRequests(ApiError):
    """429: API priority and fairness throttled the request; back off."""


class ServerError(ApiError):
    """5xx: the API server (or etcd, or a webhook) failed; back off and retry."""


class RequestTimeout(ApiError):
    """No answer within the client's per-request timeout (status 0: never reached the server's
    answer). Retrying later is safe for the operator's idempotent writes."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
}


def api_error(status: int, body: Mapping[str, Any] | str, method: str, path: str) -> ApiError:
    """The typed error for an answer with this status (a plain ApiError if no class fits)."""
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(status, body, method, path)
