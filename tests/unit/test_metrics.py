"""The metrics registry exposes every series the issue lists, and the helpers move them."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from batchyard.adapters import metrics


def samples() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(name: str, **labels: str) -> float:
    return samples().get((name, frozenset(labels.items())), 0.0)


EXPECTED_FAMILIES = [
    ("batchyard_jobs", "gauge"),
    ("batchyard_job_submissions", "counter"),
    ("batchyard_job_dispatches", "counter"),
    ("batchyard_job_retries", "counter"),
    ("batchyard_job_failures", "counter"),
    ("batchyard_job_runnable_seconds", "histogram"),
    ("batchyard_job_running_seconds", "histogram"),
    ("batchyard_scheduler_cycle_seconds", "histogram"),
    ("batchyard_api_requests", "counter"),
    ("batchyard_api_errors", "counter"),
    ("batchyard_compute_environment_desired_vcpus", "gauge"),
    ("batchyard_compute_environment_in_use_vcpus", "gauge"),
    ("batchyard_consumable_resource_in_use", "gauge"),
    ("batchyard_consumable_resource_available", "gauge"),
]


def test_registry_describes_every_listed_family_with_its_type() -> None:
    families = {f.name: f.type for f in text_string_to_metric_families(metrics.exposition().decode())}
    for name, kind in EXPECTED_FAMILIES:
        assert families.get(name) == kind, name
    assert "process_resident_memory_bytes" in families or "python_info" in families


def test_every_batchyard_name_is_prefixed() -> None:
    for collector_name in metrics.REGISTRY._names_to_collectors:
        if not collector_name.startswith(("process_", "python_")):
            assert collector_name.startswith("batchyard_"), collector_name


@pytest.mark.parametrize(
    ("call", "series", "labels", "delta"),
    [
        pytest.param(
            lambda: metrics.count_submission("q-sub"),
            "batchyard_job_submissions_total",
            {"queue": "q-sub"},
            1,
            id="a submission counts once for its queue",
        ),
        pytest.param(
            lambda: metrics.count_dispatch("q-d", "ce-a"),
            "batchyard_job_dispatches_total",
            {"queue": "q-d", "compute_environment": "ce-a"},
            1,
            id="a dispatch counts for queue and compute environment",
        ),
        pytest.param(
            lambda: metrics.count_retry("q-r"),
            "batchyard_job_retries_total",
            {"queue": "q-r"},
            1,
            id="a retry counts for its queue",
        ),
        pytest.param(
            lambda: metrics.count_failure("q-f", "Timeout"),
            "batchyard_job_failures_total",
            {"queue": "q-f", "reason": "Timeout"},
            1,
            id="a failure counts by reason",
        ),
        pytest.param(
            lambda: metrics.count_api_call("create"),
            "batchyard_api_requests_total",
            {"verb": "create"},
            1,
            id="a successful API call counts as a request",
        ),
        pytest.param(
            lambda: metrics.count_api_call("patch", error=True),
            "batchyard_api_errors_total",
            {"verb": "patch"},
            1,
            id="a failed API call counts as an error too",
        ),
        pytest.param(
            lambda: metrics.observe_runnable_seconds("q-h", 42.0),
            "batchyard_job_runnable_seconds_count",
            {"queue": "q-h"},
            1,
            id="time RUNNABLE is one histogram observation",
        ),
        pytest.param(
            lambda: metrics.observe_running_seconds("q-h", 7.5),
            "batchyard_job_running_seconds_sum",
            {"queue": "q-h"},
            7.5,
            id="time RUNNING adds to the histogram sum",
        ),
        pytest.param(
            lambda: metrics.observe_cycle(0.003),
            "batchyard_scheduler_cycle_seconds_count",
            {},
            1,
            id="a scheduler cycle is one observation",
        ),
    ],
)
def test_counting_helpers_move_their_series(call, series, labels, delta) -> None:  # type: ignore[no-untyped-def]
    before = value(series, **labels)
    call()
    assert value(series, **labels) == pytest.approx(before + delta)


def test_gauges_hold_the_last_value_and_forget_deleted_objects() -> None:
    metrics.job_state_gauge("q-g", "RUNNABLE", 5)
    metrics.set_queue_job_states("q-g", {"RUNNING": 2})
    assert value("batchyard_jobs", queue="q-g", state="RUNNING") == 2
    assert value("batchyard_jobs", queue="q-g", state="RUNNABLE") == 0  # every state is reset

    metrics.set_ce_vcpus("ce-g", desired=16, in_use=6)
    assert value("batchyard_compute_environment_desired_vcpus", compute_environment="ce-g") == 16
    assert value("batchyard_compute_environment_in_use_vcpus", compute_environment="ce-g") == 6

    metrics.set_consumable("licence", in_use=3, available=7)
    assert value("batchyard_consumable_resource_in_use", consumable_resource="licence") == 3
    assert value("batchyard_consumable_resource_available", consumable_resource="licence") == 7

    metrics.forget_queue("q-g")
    metrics.forget_compute_environment("ce-g")
    metrics.forget_consumable("licence")
    metrics.forget_consumable("never-set")  # no error
    names = {(n, dict(labels).get("queue")) for n, labels in samples()}
    assert ("batchyard_jobs", "q-g") not in names
    assert not any(dict(labels).get("compute_environment") == "ce-g" for _, labels in samples())


def test_free_text_labels_are_bounded() -> None:
    metrics.count_failure("q-long", "x" * 500)
    reasons = [dict(lbl)["reason"] for name, lbl in samples() if dict(lbl).get("queue") == "q-long"]
    assert reasons and all(len(r) <= 63 for r in reasons)


def test_metrics_server_serves_the_registry_on_slash_metrics() -> None:
    server, thread = metrics.start_metrics_server(port=0, addr="127.0.0.1")
    try:
        metrics.count_submission("q-http")
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        assert 'batchyard_job_submissions_total{queue="q-http"}' in body
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_importable_without_kopf() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['kopf'] = None\n"  # any `import kopf` now raises ImportError
        "import batchyard.adapters.metrics\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
