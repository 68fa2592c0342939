"""core.retention: the keepPods setting and which ended attempts keep their pod (issue 15)."""

from __future__ import annotations

import pytest

from batchyard.core.retention import PodRetention, keep_finished_pod, parse_retention

ALL, FAILED, NONE = PodRetention.ALL, PodRetention.FAILED, PodRetention.NONE


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, FAILED),
        ("", FAILED),
        ("failed", FAILED),
        ("FAILED", FAILED),
        (" all ", ALL),
        ("none", NONE),
        ("true", ALL),
        ("1", ALL),
        ("yes", ALL),
        ("false", NONE),
        ("0", NONE),
        ("no", NONE),
    ],
)
def test_parse_retention(value: str | None, expected: PodRetention) -> None:
    assert parse_retention(value) is expected


@pytest.mark.parametrize("value", ["failures", "some", "2"])
def test_a_bad_value_is_refused_naming_the_field_and_the_values(value: str) -> None:
    with pytest.raises(ValueError, match=rf"BATCHYARD_KEEP_PODS='{value}': must be one of all, failed, none"):
        parse_retention(value)


@pytest.mark.parametrize(
    ("retention", "failed", "kept"),
    [
        (ALL, True, True),
        (ALL, False, True),
        (FAILED, True, True),
        (FAILED, False, False),
        (NONE, True, False),
        (NONE, False, False),
    ],
)
def test_keep_finished_pod(retention: PodRetention, failed: bool, kept: bool) -> None:
    assert keep_finished_pod(retention, failed=failed) is kept
