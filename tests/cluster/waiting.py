"""Polling helpers for cluster tests: wait for what a user would see, with a clear failure."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], timeout: float = 60, interval: float = 0.25, what: str = "condition"
) -> T:
    """Call `probe` until it returns something truthy; return it, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def sample_until(
    sample: Callable[[], T],
    done: Callable[[T], bool],
    timeout: float = 120,
    interval: float = 0.2,
    what: str = "condition",
) -> list[T]:
    """Call `sample` until `done(sample)`; return every sample taken (the last one is done).

    For tests that assert on what was seen on the way (states, shares, peaks), not only at the
    end; fails naming `what` and the last sample if `done` never holds."""
    deadline = time.monotonic() + timeout
    samples: list[T] = []
    while True:
        samples.append(sample())
        if done(samples[-1]):
            return samples
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; last sample: {samples[-1]!r}"
            )
        time.sleep(interval)
