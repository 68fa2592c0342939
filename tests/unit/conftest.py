"""Unit tests run without a cluster: one that needs more than UNIT_TIMEOUT_SECONDS is hung
(pytest-timeout; the session default in pyproject.toml, 300 s, is for cluster tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

UNIT_TIMEOUT_SECONDS = 60
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Session-wide hook: mark only the items collected from this directory.
    for item in items:
        if item.path.is_relative_to(HERE) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT_SECONDS))
