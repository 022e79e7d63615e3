"""The backoff arithmetic, checked without a clock and without sleeping."""

from __future__ import annotations

import random

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sora_async.retry import (
    CREATE_CONNECT,
    SAFE_CALLS,
    RetryPolicy,
    backoff_delay,
    next_retry_delay,
)


class FixedRandom:
    """A stand-in for the random module that always draws the same number."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


NO_JITTER = FixedRandom(0.0)
MOST_JITTER = FixedRandom(0.999999)


def test_delay_grows_exponentially_then_caps() -> None:
    policy = RetryPolicy(attempts=10, initial=0.5, maximum=10.0, multiplier=2.0, jitter=0.5)
    delays = [backoff_delay(policy, n, rng=NO_JITTER) for n in range(1, 9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_jitter_takes_at_most_its_fraction_off() -> None:
    policy = RetryPolicy(initial=4.0, maximum=4.0, jitter=0.25)
    assert backoff_delay(policy, 1, rng=NO_JITTER) == 4.0
    assert backoff_delay(policy, 1, rng=FixedRandom(0.5)) == pytest.approx(3.5)
    assert backoff_delay(policy, 1, rng=MOST_JITTER) == pytest.approx(3.0, abs=1e-5)


def test_full_jitter_can_reach_zero_and_no_jitter_is_exact() -> None:
    full = RetryPolicy(initial=2.0, maximum=2.0, jitter=1.0)
    assert backoff_delay(full, 1, rng=MOST_JITTER) == pytest.approx(0.0, abs=1e-5)
    none = RetryPolicy(initial=2.0, maximum=2.0, jitter=0.0)
    assert backoff_delay(none, 1, rng=MOST_JITTER) == 2.0


def test_retry_after_wins_even_beyond_the_cap() -> None:
    policy = RetryPolicy(initial=0.5, maximum=10.0, jitter=0.5)
    assert backoff_delay(policy, 1, retry_after=30.0, rng=NO_JITTER) == 30.0
    assert backoff_delay(policy, 5, retry_after=0.0, rng=NO_JITTER) == 0.0


def test_retry_after_gets_only_a_small_positive_spread() -> None:
    policy = RetryPolicy(initial=0.5, maximum=10.0, jitter=0.5)
    delay = backoff_delay(policy, 1, retry_after=3.0, rng=MOST_JITTER)
    assert 3.0 < delay <= 3.0 + 0.25


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_unusable_retry_after_falls_back_to_backoff(bad: float) -> None:
    policy = RetryPolicy(initial=1.0, maximum=10.0, jitter=0.0)
    assert backoff_delay(policy, 2, retry_after=bad) == 2.0


def test_huge_attempt_numbers_do_not_overflow() -> None:
    policy = RetryPolicy(attempts=100_000, initial=1.0, maximum=7.0, multiplier=10.0, jitter=0)
    assert backoff_delay(policy, 50_000) == 7.0


def test_attempt_is_one_based() -> None:
    with pytest.raises(ValueError, match="1-based"):
        backoff_delay(SAFE_CALLS, 0)


@given(
    attempt=st.integers(min_value=1, max_value=200),
    initial=st.floats(min_value=0, max_value=100),
    extra=st.floats(min_value=0, max_value=1000),
    multiplier=st.floats(min_value=1, max_value=10),
    jitter=st.floats(min_value=0, max_value=1),
    draw=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_computed_delay_stays_within_jitter_band_and_cap(
    *, attempt: int, initial: float, extra: float, multiplier: float, jitter: float, draw: float
) -> None:
    policy = RetryPolicy(
        attempts=attempt + 1,
        initial=initial,
        maximum=initial + extra,
        multiplier=multiplier,
        jitter=jitter,
    )
    delay = backoff_delay(policy, attempt, rng=FixedRandom(draw))
    ceiling = min(policy.maximum, initial * multiplier ** min(attempt - 1, 1000))
    assert 0.0 <= delay <= policy.maximum
    assert delay >= ceiling * (1 - jitter) - 1e-9


def test_default_module_rng_is_used_when_none_given() -> None:
    random.seed(7)
    first = backoff_delay(SAFE_CALLS, 3)
    random.seed(7)
    assert backoff_delay(SAFE_CALLS, 3) == first
    assert 1.0 <= first <= 2.0


def test_next_retry_delay_stops_when_attempts_are_used_up() -> None:
    policy = RetryPolicy(attempts=3, initial=1.0, maximum=1.0, jitter=0.0, timeout=None)
    assert next_retry_delay(policy, 1, elapsed=0.0) == 1.0
    assert next_retry_delay(policy, 2, elapsed=0.0) == 1.0
    assert next_retry_delay(policy, 3, elapsed=0.0) is None


def test_next_retry_delay_stops_at_the_deadline() -> None:
    policy = RetryPolicy(attempts=10, initial=2.0, maximum=2.0, jitter=0.0, timeout=10.0)
    assert next_retry_delay(policy, 1, elapsed=7.9) == 2.0
    assert next_retry_delay(policy, 1, elapsed=8.0) is None
    assert next_retry_delay(policy, 1, elapsed=20.0) is None


def test_a_retry_after_beyond_the_deadline_means_give_up_now() -> None:
    policy = RetryPolicy(attempts=10, initial=0.5, maximum=10.0, jitter=0.0, timeout=60.0)
    assert next_retry_delay(policy, 1, elapsed=10.0, retry_after=30.0) == 30.0
    assert next_retry_delay(policy, 1, elapsed=10.0, retry_after=50.0) is None


def test_single_attempt_policy_never_retries() -> None:
    assert next_retry_delay(RetryPolicy(attempts=1), 1, elapsed=0.0) is None


def test_default_policies_match_their_documented_numbers() -> None:
    assert attrs.asdict(SAFE_CALLS) == {
        "attempts": 6,
        "initial": 0.5,
        "maximum": 10.0,
        "multiplier": 2.0,
        "jitter": 0.5,
        "timeout": 60.0,
    }
    assert CREATE_CONNECT.attempts == 3
    assert CREATE_CONNECT.timeout == 30.0


def test_worst_case_safe_waits_fit_inside_the_deadline() -> None:
    waits = [backoff_delay(SAFE_CALLS, n, rng=NO_JITTER) for n in range(1, SAFE_CALLS.attempts)]
    assert SAFE_CALLS.timeout is not None
    assert sum(waits) < SAFE_CALLS.timeout


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"attempts": 2.5},
        {"attempts": True},
        {"initial": -1.0},
        {"initial": float("nan")},
        {"maximum": float("inf")},
        {"initial": 5.0, "maximum": 1.0},
        {"multiplier": 0.5},
        {"jitter": 1.5},
        {"jitter": -0.1},
        {"timeout": 0.0},
        {"timeout": float("nan")},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policies_are_frozen_and_keyword_only() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        SAFE_CALLS.attempts = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        RetryPolicy(3)  # type: ignore[call-arg]
