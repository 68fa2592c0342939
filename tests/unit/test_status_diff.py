"""Status merge patches (adapters.writes.status_diff): RFC 7386 with nested nulls for keys
that disappeared at any depth, lists replaced whole. One merge patch per job per cycle."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from batchyard.adapters.writes import status_diff


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2, as the API server applies it."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


P = pytest.param
RUNNING_CHILDREN = {"states": {"RUNNABLE": "0-4", "RUNNING": "5-9"}, "attempts": {"2": "3"}}
ROWS = [
    P({}, {}, {}, id="nothing to write"),
    P({"status": "RUNNING"}, {"status": "RUNNING"}, {}, id="unchanged status writes nothing"),
    P({"status": "STARTING"}, {"status": "RUNNING"}, {"status": "RUNNING"}, id="a changed field"),
    P({}, {"status": "RUNNABLE"}, {"status": "RUNNABLE"}, id="first write: every field"),
    P({"status": "RUNNABLE", "queuePosition": 3}, {"status": "STARTING"}, {"status": "STARTING", "queuePosition": None},
      id="a field that disappeared is sent as null"),
    P({"a": 1, "b": 2}, {"a": 1, "b": 2, "c": 3}, {"c": 3}, id="only what changed"),
    P({"arrayProperties": {"children": RUNNING_CHILDREN}},
      {"arrayProperties": {"children": {"states": {"RUNNING": "0-4", "SUCCEEDED": "5-9"}, "attempts": {"2": "3"}}}},
      {"arrayProperties": {"children": {"states": {"RUNNABLE": None, "RUNNING": "0-4", "SUCCEEDED": "5-9"}}}},
      id="nested: a child index range that is no longer RUNNABLE is a nested null"),
    P({"arrayProperties": {"children": RUNNING_CHILDREN, "size": 10}}, {"arrayProperties": {"size": 10}},
      {"arrayProperties": {"children": None}}, id="a whole nested object that disappeared is one null"),
    P({"arrayProperties": {"size": 10}}, {}, {"arrayProperties": None}, id="a top-level object that disappeared"),
    P({}, {"arrayProperties": {"size": 10, "statusSummary": {"RUNNING": 1}}},
      {"arrayProperties": {"size": 10, "statusSummary": {"RUNNING": 1}}}, id="a new object is sent whole"),
    P({"x": {"a": 1}}, {"x": {}}, {"x": {"a": None}}, id="an object emptied: its keys nulled"),
    P({"attempts": [{"attempt": 1}]}, {"attempts": [{"attempt": 1}, {"attempt": 2}]},
      {"attempts": [{"attempt": 1}, {"attempt": 2}]}, id="RFC 7386: lists are replaced whole"),
    P({"attempts": [{"attempt": 1, "podName": "p"}]}, {"attempts": [{"attempt": 1}]}, {"attempts": [{"attempt": 1}]},
      id="a key removed inside a list element: the list is resent, no null"),
    P({"attempts": [1]}, {}, {"attempts": None}, id="a list that disappeared is a null"),
    P({"x": {"a": 1}}, {"x": 5}, {"x": 5}, id="an object replaced by a scalar"),
    P({"x": 5}, {"x": {"a": 1}}, {"x": {"a": 1}}, id="a scalar replaced by an object"),
    P({"x": "a"}, {"x": None}, {"x": None}, id="an explicit null is a removal"),
    P({"x": None}, {}, {}, id="an old null and an absent key are the same"),
    P({"isCancelled": True}, {"isCancelled": False}, {"isCancelled": False}, id="false is a value, not a removal"),
    P({"n": 0}, {"n": 1}, {"n": 1}, id="zero is a value"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "patch"), ROWS)
def test_status_diff(old: dict[str, Any], new: dict[str, Any], patch: dict[str, Any]) -> None:
    assert status_diff(old, new) == patch


def _without_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


@pytest.mark.parametrize(("old", "new", "patch"), ROWS)
def test_applying_the_patch_gives_the_new_status(
    old: dict[str, Any], new: dict[str, Any], patch: Any
) -> None:
    """What the API server stores after the patch is what the loop decided (nulls are absences)."""
    assert _without_nulls(merge_patch(old, status_diff(old, new))) == _without_nulls(new)


def test_status_diff_does_not_mutate_its_inputs() -> None:
    old = {"a": {"b": 1, "c": [1]}}
    new = {"a": {"c": [2]}}

    status_diff(old, new)

    assert (old, new) == ({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}})
