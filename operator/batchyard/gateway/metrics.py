"""Gateway metrics: requests by operation and result code, and request latency.

They live in a registry of the gateway's own (served by `batchyard gateway --metrics-port`), so
the operator's registry and the gateway's never mix in one process (tests run both).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "batchyard_gateway_requests_total",
    "AWS Batch API requests answered by the gateway, by operation and result code",
    ["operation", "code"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "batchyard_gateway_request_seconds",
    "AWS Batch API request latency, by operation",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)


_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}


def observe(operation: str, code: str, seconds: float) -> None:
    # The labelled children are looked up once per (operation, code): labels() takes a lock and
    # builds the label tuple on every call.
    pair = _children.get((operation, code))
    if pair is None:
        pair = _children[(operation, code)] = (REQUESTS.labels(operation, code), LATENCY.labels(operation))
    pair[0].inc()
    pair[1].observe(seconds)


def serve(port: int) -> None:
    """Expose REGISTRY on :port/metrics (a daemon thread)."""
    start_http_server(port, registry=REGISTRY)
