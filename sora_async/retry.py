"""Retry policies and the backoff arithmetic, as pure functions with no I/O and no sleeping.

The transport and the downloader own the loops; this module only answers "how long until the
next try?" and "is there a next try at all?", so both questions can be tested without a clock.

Jitter is a *fraction* of the exponential delay that is randomised downwards::

    delay = min(maximum, initial * multiplier ** (attempt - 1)) * (1 - jitter * U[0, 1))

``jitter=1.0`` is AWS-style "full jitter", ``0.0`` none. The defaults use ``0.5`` ("equal
jitter"): with only a handful of attempts, a floor of half the exponential delay guarantees that
the retries really span a growing window (a 5xx burst of a few seconds is outlasted), while the
other half still spreads many pollers of one account apart so they do not return in lock-step.
Randomising downwards keeps ``maximum`` a true cap.
"""

from __future__ import annotations

import math
import random
from typing import Protocol

import attrs

__all__ = [
    "CREATE_CONNECT",
    "SAFE_CALLS",
    "RetryPolicy",
    "backoff_delay",
    "next_retry_delay",
]


class _Random(Protocol):
    def random(self) -> float: ...


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and how patiently a call is retried.

    attempts:   the most tries in all, the first one included (1 means never retry).
    initial:    the delay before the second try, in seconds.
    maximum:    the cap of any computed delay (a server's Retry-After may exceed it).
    multiplier: growth of the delay per attempt.
    jitter:     fraction of the delay that is randomised downwards, 0..1 (see module doc).
    timeout:    one overall deadline in seconds for all tries and waits together; None for
                no deadline (then ``attempts`` alone bounds the loop).
    """

    attempts: int = attrs.field(default=6)
    initial: float = attrs.field(default=0.5, validator=_non_negative)
    maximum: float = attrs.field(default=10.0, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0)
    jitter: float = attrs.field(default=0.5)
    timeout: float | None = attrs.field(default=60.0)

    @attempts.validator
    def _check_attempts(self, _: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"attempts must be an integer >= 1, got {value!r}")

    @multiplier.validator
    def _check_multiplier(self, _: attrs.Attribute[float], value: float) -> None:
        if not (value >= 1 and math.isfinite(value)):
            raise ValueError(f"multiplier must be a finite number >= 1, got {value!r}")

    @jitter.validator
    def _check_jitter(self, _: attrs.Attribute[float], value: float) -> None:
        if not 0 <= value <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {value!r}")

    @timeout.validator
    def _check_timeout(self, _: attrs.Attribute[float | None], value: float | None) -> None:
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise ValueError(f"timeout must be a positive finite number or None, got {value!r}")

    def __attrs_post_init__(self) -> None:
        if self.maximum < self.initial:
            raise ValueError(
                f"maximum ({self.maximum!r}) must not be below initial ({self.initial!r})"
            )


#: Idempotent calls (status polls, credit reads, downloads): six tries over at most a minute.
#: 0.5 s, 1, 2, 4, 8 (each minus up to half jitter) is ~15 s of waiting at most, which outlasts
#: a typical gateway restart or 5xx burst; the 10 s cap and 60 s deadline keep one poll from
#: stalling a task's wait loop for longer than a couple of poll intervals.
SAFE_CALLS = RetryPolicy(
    attempts=6, initial=0.5, maximum=10.0, multiplier=2.0, jitter=0.5, timeout=60.0
)

#: Creates are retried only on connect errors (provably nothing sent). Three tries within 30 s
#: ride out a refused connection or a DNS hiccup; anything longer is an outage the caller
#: should hear about instead of a create that lands minutes after it was asked for.
CREATE_CONNECT = RetryPolicy(
    attempts=3, initial=0.5, maximum=4.0, multiplier=2.0, jitter=0.5, timeout=30.0
)


def backoff_delay(
    policy: RetryPolicy,
    attempt: int,
    *,
    retry_after: float | None = None,
    rng: _Random = random,
) -> float:
    """Seconds to wait after try number ``attempt`` (1-based) failed, before the next one.

    Capped exponential growth with downward jitter. A server's ``retry_after`` wins over the
    computed delay (even beyond ``maximum``: the server knows best); a little extra jitter, at
    most ``jitter * initial``, is added on top so that clients told the same Retry-After do not
    all return at the same instant. Whether the wait still fits the deadline is the caller's
    business (see :func:`next_retry_delay`).
    """
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt!r}")
    if retry_after is not None and retry_after >= 0 and math.isfinite(retry_after):
        return retry_after + policy.jitter * policy.initial * rng.random()
    try:
        base = policy.initial * policy.multiplier ** (attempt - 1)
    except OverflowError:
        base = math.inf
    capped = min(policy.maximum, base)
    return capped * (1.0 - policy.jitter * rng.random())


def next_retry_delay(
    policy: RetryPolicy,
    attempt: int,
    *,
    elapsed: float,
    retry_after: float | None = None,
    rng: _Random = random,
) -> float | None:
    """The wait before the next try, or None when the policy says to stop and raise.

    ``attempt`` tries have been made and the last one failed; ``elapsed`` seconds have passed
    since the first began. Stops when the tries are used up, or when the next try could not
    even start before the deadline: waiting less than a server's Retry-After would just earn
    another 429, and a try that starts at the deadline has no time left to succeed.
    """
    if attempt >= policy.attempts:
        return None
    delay = backoff_delay(policy, attempt, retry_after=retry_after, rng=rng)
    if policy.timeout is not None and elapsed + delay >= policy.timeout:
        return None
    return delay
