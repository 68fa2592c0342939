"""botocore's `batch` service model (2016-08-10): routes and input validation.

Why this exists: the gateway must speak exactly what boto3 and the AWS CLI send. Rather than
hand-copying 49 operations, the routes come from the installed botocore model (each operation's
http method + requestUri) and request parameters are checked with botocore's own
ParamValidator against the operation's input shape (unknown fields, missing required members,
types, minimum lengths), whose report names the offending field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import parse_qs, unquote

import botocore.loaders
import botocore.model
import botocore.validate

from batchyard.gateway.errors import client_error

SERVICE = "batch"
API_VERSION = "2016-08-10"


@dataclass(frozen=True)
class Route:
    operation: str
    method: str
    pattern: re.Pattern[str]


@cache
def service_model() -> botocore.model.ServiceModel:
    loader = botocore.loaders.Loader()
    return botocore.model.ServiceModel(loader.load_service_model(SERVICE, "service-2", API_VERSION), SERVICE)


@cache
def routes() -> tuple[Route, ...]:
    out = []
    model = service_model()
    for name in model.operation_names:
        http = model.operation_model(name).http
        uri = http["requestUri"].split("?")[0]
        # "{resourceArn}" captures one path segment (the ARN arrives percent-encoded).
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(uri))
        out.append(Route(name, http["method"].upper(), re.compile(f"^{regex}$")))
    return tuple(out)


@cache
def _static_routes() -> dict[tuple[str, str], str]:
    """(method, path) -> operation for the routes without URI parameters (all but the tags ones)."""
    out = {}
    model = service_model()
    for name in model.operation_names:
        http = model.operation_model(name).http
        uri = http["requestUri"].split("?")[0]
        if "{" not in uri:
            out[(http["method"].upper(), uri)] = name
    return out


def route(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """(operation, uri parameters) for a request, or None.

    Every operation but the tags ones is a fixed path: one dict lookup, not 49 regexes."""
    method = method.upper()
    static = _static_routes().get((method, path))
    if static is not None:
        return static, {}
    for r in routes():
        if r.method != method:
            continue
        m = r.pattern.match(path)
        if m:
            return r.operation, {k: unquote(v) for k, v in m.groupdict().items()}
    return None


def parse_params(operation: str, uri: dict[str, str], query: str, body: bytes) -> dict[str, Any]:
    """The operation's input parameters from body, uri and query string, validated by botocore."""
    op = service_model().operation_model(operation)
    shape = op.input_shape
    params: dict[str, Any] = {}
    payload_members = {}
    if shape is not None:
        for name, member in shape.members.items():
            loc = member.serialization.get("location")
            wire = member.serialization.get("name", name)
            if loc == "uri" and wire in uri:
                params[name] = uri[wire]
            elif loc == "querystring":
                values = parse_qs(query, keep_blank_values=True).get(wire)
                if values is not None:
                    params[name] = values if member.type_name == "list" else values[0]
            elif loc is None:
                payload_members[name] = member
    if body.strip():
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise client_error(f"The request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise client_error("The request body must be a JSON object")
        for key, value in data.items():
            if key in params:
                raise client_error(f"Parameter {key} belongs in the URI, not the body")
            params[key] = value
    if shape is not None:
        report = botocore.validate.ParamValidator().validate(params, shape)
        if report.has_errors():
            raise client_error(report.generate_report())
    elif params:
        raise client_error(f"{operation} takes no parameters; got {', '.join(sorted(params))}")
    return params
