"""Per-object backoff of failed writes (core.backoff), like client-go's rate-limited workqueue."""

from __future__ import annotations

import pytest

from batchyard.core.backoff import KeyedBackoff

T0 = 1000.0


def no_jitter(base: float = 0.5, cap: float = 60.0) -> KeyedBackoff:
    return KeyedBackoff(base_seconds=base, cap_seconds=cap, rand=lambda: 0.0)


@pytest.mark.parametrize(
    ("failures", "delay"),
    [
        pytest.param(1, 0.5, id="the first failure waits the base delay"),
        pytest.param(2, 1.0, id="each further failure doubles the delay"),
        pytest.param(5, 8.0, id="five failures in a row wait 2**4 times the base"),
        pytest.param(8, 60.0, id="the delay is capped"),
        pytest.param(500, 60.0, id="a key failing for hours stays at the cap (no overflow)"),
    ],
)
def test_delay_grows_exponentially_up_to_the_cap(failures: int, delay: float) -> None:
    b = no_jitter()
    at = 0.0
    for _ in range(failures):
        at = b.failed("k", T0)
    assert at == pytest.approx(T0 + delay)
    assert b.failures("k") == failures


@pytest.mark.parametrize(
    ("dice", "delay"),
    [
        pytest.param(0.0, 4.0, id="no luck: the full delay"),
        pytest.param(1.0, 2.0, id="most jitter: half the delay"),
        pytest.param(0.5, 3.0, id="in between"),
    ],
)
def test_jitter_spreads_the_delay_below_the_ceiling(dice: float, delay: float) -> None:
    b = KeyedBackoff(base_seconds=4.0, jitter=0.5, rand=lambda: dice)
    assert b.failed("k", T0) == pytest.approx(T0 + delay)


def test_a_backing_off_key_is_not_ready_until_its_time() -> None:
    b = no_jitter()
    b.failed("k", T0)
    assert not b.ready("k", T0 + 0.4)
    assert b.ready("k", T0 + 0.5)
    assert b.retry_at("k") == pytest.approx(T0 + 0.5)


def test_success_forgets_the_history_so_the_next_failure_starts_small() -> None:
    b = no_jitter()
    for _ in range(4):
        b.failed("k", T0)
    b.succeeded("k")
    assert b.ready("k", T0) and b.retry_at("k") is None and len(b) == 0
    assert b.failed("k", T0) == pytest.approx(T0 + 0.5)


def test_keys_back_off_independently() -> None:
    b = no_jitter()
    for _ in range(6):
        b.failed("bad", T0)
    assert b.failed("good", T0) == pytest.approx(T0 + 0.5)
    assert b.ready("other", T0)
