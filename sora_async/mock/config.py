"""MockConfig: every knob of the mock server, validated once, frozen."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

import attrs

from .clock import Clock

__all__ = ["DEFAULT_FILE_SIZE", "MIN_FILE_SIZE", "MockConfig"]

DEFAULT_FILE_SIZE = 256 * 1024
#: Room for the ``ftyp`` box and an ``mdat`` header, so every file looks like an mp4.
MIN_FILE_SIZE = 32
FIFTEEN_DAYS = 15 * 24 * 3600.0


def _finite_at_least(minimum: float) -> Any:
    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{attribute.name} must be a number, not {type(value).__name__}")
        if not math.isfinite(value) or value < minimum:
            raise ValueError(f"{attribute.name} must be a finite number >= {minimum}: {value!r}")

    return check


def _fraction(upper_open: bool = False) -> Any:
    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        _finite_at_least(0.0)(_, attribute, value)
        if value > 1 or (upper_open and value >= 1):
            bound = "< 1" if upper_open else "<= 1"
            raise ValueError(f"{attribute.name} must be >= 0 and {bound}: {value!r}")

    return check


def _int_at_least(minimum: int) -> Any:
    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{attribute.name} must be an int, not {type(value).__name__}")
        if value < minimum:
            raise ValueError(f"{attribute.name} must be >= {minimum}: {value!r}")

    return check


def _optional(check: Any) -> Any:
    def run(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            check(instance, attribute, value)

    return run


def _to_keys(value: Iterable[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        # A lone string would otherwise become a set of its characters.
        value = [value]
    return frozenset(value)


def _check_keys(_: Any, __: Any, value: frozenset[str] | None) -> None:
    if value is None:
        return
    for key in value:
        if not isinstance(key, str) or not key.strip():
            raise ValueError("api_keys must hold non-empty strings")


def _check_marker(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty string")


def _check_clock(_: Any, __: Any, value: Any) -> None:
    if not callable(value):
        raise TypeError("clock must be a callable returning seconds")


@attrs.frozen(kw_only=True)
class MockConfig:
    """How the mock behaves. Times are seconds of ``clock`` unless said otherwise."""

    #: Nominal run time of a task, from create to terminal. 0 makes tasks finish at once.
    task_seconds: float = attrs.field(default=5.0, validator=_finite_at_least(0.0))
    #: Uniform jitter of the run time, as a fraction: 0.2 means 80 % to 120 % of task_seconds.
    jitter: float = attrs.field(default=0.2, validator=_fraction(upper_open=True))
    #: Share of the run time a task spends "pending" before it starts "running".
    pending_fraction: float = attrs.field(default=0.1, validator=_fraction())
    #: Chance that a task fails while generating (drawn from the seeded RNG at create).
    failure_rate: float = attrs.field(default=0.0, validator=_fraction())
    #: A prompt containing this fails while generating (freesora "failed", sora2api flag 3).
    fail_marker: str = attrs.field(default="[fail]", validator=_check_marker)
    #: A prompt containing this fails before generating (sora2api successFlag 2).
    create_fail_marker: str = attrs.field(default="[fail:create]", validator=_check_marker)
    #: A prompt containing this marker, a number and "]" (``[seconds:2.5]``) runs that many
    #: seconds instead of task_seconds (jitter still applies): per-task times for benchmarks.
    duration_marker: str = attrs.field(default="[seconds:", validator=_check_marker)
    #: Live (not terminal) tasks one account may have; a create beyond it gets 429.
    cap: int | None = attrs.field(default=20, validator=_optional(_int_at_least(1)))
    #: Retry-After, in real seconds, sent with a cap 429 (and with injected rate limits).
    cap_retry_after: float = attrs.field(default=1.0, validator=_finite_at_least(0.0))
    #: Credits of an account the first time its key is seen.
    initial_credits: int = attrs.field(default=1_000_000, validator=_int_at_least(0))
    #: Credits one sora2api task costs; its document publishes no price, so 0 by default.
    sora2api_price: int = attrs.field(default=0, validator=_int_at_least(0))
    #: is_pro / is_vip of every account in freesora's get-user-credits.
    vip: bool = False
    #: Size of every result file, in bytes.
    file_size: int = attrs.field(default=DEFAULT_FILE_SIZE, validator=_int_at_least(MIN_FILE_SIZE))
    #: How long a finished video stays downloadable (both documents say 15 days); None = forever.
    retention_seconds: float | None = attrs.field(
        default=FIFTEEN_DAYS, validator=_optional(_finite_at_least(0.0))
    )
    #: Seeds run-time jitter, random failures and file contents.
    seed: int = attrs.field(default=0, validator=_int_at_least(-(2**63)))
    #: None accepts any non-empty key; a set accepts only those keys.
    api_keys: frozenset[str] | None = attrs.field(
        default=None, converter=_to_keys, validator=_check_keys, repr=False
    )
    #: Simulate lost completion callbacks: none is sent (each is counted as dropped).
    drop_callbacks: bool = False
    #: Real seconds one callback delivery may take before it counts as failed.
    callback_timeout: float = attrs.field(default=10.0, validator=_finite_at_least(0.0))
    #: Real seconds between background checks for tasks that became terminal (for callbacks).
    tick_interval: float = attrs.field(default=0.05, validator=_finite_at_least(0.001))
    #: Real seconds added before every API answer (network and server latency).
    latency: float = attrs.field(default=0.0, validator=_finite_at_least(0.0))
    #: Real seconds a SLOW fault waits when inject() is given no delay.
    slow_delay: float = attrs.field(default=1.0, validator=_finite_at_least(0.0))
    #: The real time (``time.time()``) the clock's reading at startup stands for, in printed
    #: times such as completeTime; None: now. Set it days back to play old, adopted tasks.
    wall_start: float | None = attrs.field(default=None, validator=_optional(_finite_at_least(0.0)))
    #: Where task time comes from; a ManualClock lets tests move time by hand.
    clock: Clock = attrs.field(default=time.monotonic, validator=_check_clock, eq=False, repr=False)
