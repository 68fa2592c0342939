"""AWS error shapes: what botocore's REST-JSON error parser expects.

AWS Batch answers `ClientException` (HTTP 400) for every caller mistake and `ServerException`
(500) for its own; SDKs retry 5xx, so a client mistake must never be a 5xx. Authentication
failures use the generic AWS codes with HTTP 403.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """An error answered in AWS's shape: HTTP status, `__type` / X-Amzn-ErrorType, message."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"__type": self.code, "message": self.message}


def client_error(message: str) -> GatewayError:
    """AWS: ClientException - "These errors are usually caused by a client action"."""
    return GatewayError("ClientException", message, 400)


def server_error(message: str) -> GatewayError:
    return GatewayError("ServerException", message, 500)


def auth_error(code: str, message: str) -> GatewayError:
    # AWS answers signature problems with 403 and these codes (botocore maps them to ClientError).
    return GatewayError(code, message, 403)
