"""Per-object retry backoff for failed writes (pure: the caller passes the clock and the dice).

A write that fails (a 500, a timeout, a throttled request) is tried again later, not on every
cycle: the n-th consecutive failure of one key waits ``base * 2**(n-1)`` seconds, capped, with
jitter, as client-go's rate-limited workqueue does (ItemExponentialFailureRateLimiter). A success
forgets the key, so the next failure starts small again. Keys are independent: one object that
keeps failing never slows the others.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field


@dataclass
class KeyedBackoff:
    """When each failing key may be tried again.

    ``jitter`` is the fraction of the delay that is random: the delay lies in
    ``[d * (1 - jitter), d]`` so keys that failed together spread out.
    """

    base_seconds: float = 0.5
    cap_seconds: float = 60.0
    jitter: float = 0.5
    rand: Callable[[], float] = random.random
    _failures: dict[Hashable, int] = field(default_factory=dict)
    _retry_at: dict[Hashable, float] = field(default_factory=dict)

    def failed(self, key: Hashable, now: float) -> float:
        """Record one more failure of ``key``; returns when it may be tried again."""
        n = self._failures.get(key, 0) + 1
        self._failures[key] = n
        ceiling = min(self.base_seconds * float(2 ** min(n - 1, 62)), self.cap_seconds)
        delay = ceiling * (1.0 - self.jitter * self.rand())
        self._retry_at[key] = now + delay
        return now + delay

    def succeeded(self, key: Hashable) -> None:
        """The key worked: forget its history."""
        self._failures.pop(key, None)
        self._retry_at.pop(key, None)

    def failures(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    def retry_at(self, key: Hashable) -> float | None:
        """When a failing key may be tried again (None: it is not backing off)."""
        return self._retry_at.get(key)

    def ready(self, key: Hashable, now: float) -> bool:
        at = self._retry_at.get(key)
        return at is None or at <= now

    def __len__(self) -> int:
        return len(self._failures)
