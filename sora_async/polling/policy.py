"""The polling policy's values: a provider's PollProfile and one task's checked PollSchedule."""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

__all__ = ["PRIOR_SPREAD", "PollProfile", "PollSchedule"]

#: A prior is a guess: its finish window is +-62% wide (2.5 spreads of 25%).
PRIOR_SPREAD: Final = 0.25
# The window is never narrower than +-12% of the expected duration (2.5 spreads of 5%) ...
_MIN_SPREAD: Final = 0.05
# ... and it spans this many spreads on each side.
_WINDOW_SPREADS: Final = 2.5


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _optional_positive(
    _: object, attribute: attrs.Attribute[float | None], v: float | None
) -> None:
    if v is not None and not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{attribute.name} must be a finite number > 0 or None, got {v!r}")


def _durations(
    _: object, attribute: attrs.Attribute[Mapping[str, float]], value: Mapping[str, float]
) -> None:
    for model, seconds in value.items():
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ValueError(f"{attribute.name}[{model!r}] must be > 0, got {seconds!r}")


def _read_only(durations: Mapping[str, float]) -> Mapping[str, float]:
    return types.MappingProxyType(dict(durations))


# -- what a provider declares ----------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PollProfile:
    """How one provider's tasks should be polled; each provider module declares its own.

    provider:                   the provider's name (part of every learned-duration key).
    base_interval:              the documented cadence: the gap when nothing better is known.
    min_interval:               the shortest gap the provider accepts.
    max_interval:               the longest gap (the lag of a very long task stays bounded).
    callback_fallback_interval: the gap while a completion callback is expected.
    expected_duration:          prior guess, in seconds from create to finished, for a model
                                not in ``expected_durations``.
    expected_durations:         prior guesses by model name (``Model.value``).
    default_model:              the model a request without one runs (None: no model field);
                                such requests are learned together with that model's.

    Gaps scale with a user's base interval: a base half the provider's halves the floor and
    the callback fallback too (a fast mock server), while the ceiling and the priors stay as
    they are (they describe the server, not the client).
    """

    provider: str
    base_interval: float = attrs.field(validator=_positive)
    min_interval: float = attrs.field(validator=_positive)
    max_interval: float = attrs.field(validator=_positive)
    callback_fallback_interval: float = attrs.field(validator=_positive)
    expected_duration: float = attrs.field(validator=_positive)
    expected_durations: Mapping[str, float] = attrs.field(
        factory=dict, converter=_read_only, validator=_durations
    )
    default_model: str | None = None

    def __attrs_post_init__(self) -> None:
        if not self.min_interval <= self.base_interval <= self.max_interval:
            raise ValueError(f"{self.provider}: need min_interval <= base_interval <= max_interval")
        if not self.min_interval <= self.callback_fallback_interval <= self.max_interval:
            raise ValueError(f"{self.provider}: callback_fallback_interval out of bounds")

    def prior(self, model: str | None) -> float:
        """The prior guess for a task of ``model`` (None: the default model)."""
        name = model if model is not None else self.default_model
        if name is None:
            return self.expected_duration
        return self.expected_durations.get(name, self.expected_duration)


# -- one task's schedule ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PollSchedule:
    """The knobs of :func:`next_poll_delay`, in seconds (see the module docstring).

    base_interval:              the budget's cadence and the gap when nothing better is known.
    initial_delay:              from creation to the first poll (default: ``base_interval``).
    min_interval:               the floor of every gap.
    max_interval:               no gap is longer, except a server's longer Retry-After.
    backoff:                    growth per consecutive failed poll (see poll_until_terminal).
    jitter:                     fraction by which a sparse gap may be shortened (0..1).
    latency_fraction:           without a progress prediction, no gap exceeds this fraction of
                                the task's age (but ``base_interval`` is always allowed).
    progress_fraction:          the same bound for a gap aimed at a predicted finish.
    expected_duration:          where the finish window is centred (None: no window).
    expected_spread:            its half-width is 2.5 times this (default 25% of the duration).
    callback_fallback_interval: the gap while a completion callback is expected.
    learned:                    finished tasks of this kind the window comes from (0: a prior).
    """

    base_interval: float = 5.0
    initial_delay: float = attrs.Factory(lambda self: self.base_interval, takes_self=True)
    min_interval: float = 1.0
    max_interval: float = 60.0
    backoff: float = 1.5
    jitter: float = 0.1
    latency_fraction: float = 0.1
    progress_fraction: float = 0.5
    expected_duration: float | None = None
    expected_spread: float | None = None
    callback_fallback_interval: float = 60.0
    learned: int = 0

    def __attrs_post_init__(self) -> None:
        # Every field in one expression, not a validator a field: a schedule is made for each
        # task, and the twelve validator calls were most of its cost. Only a bad schedule goes
        # through the checks one by one, to be refused with the first bad field's own words.
        if not (
            0 < self.base_interval < math.inf
            and 0 <= self.initial_delay < math.inf
            and 0 < self.min_interval < math.inf
            and 0 < self.max_interval < math.inf
            and 0 < self.backoff < math.inf
            and 0 <= self.jitter < math.inf
            and 0 < self.latency_fraction < math.inf
            and 0 < self.progress_fraction < math.inf
            and (self.expected_duration is None or 0 < self.expected_duration < math.inf)
            and (self.expected_spread is None or 0 < self.expected_spread < math.inf)
            and 0 < self.callback_fallback_interval < math.inf
            and self.learned >= 0
        ):
            for field in attrs.fields(PollSchedule):
                _SCHEDULE_CHECKS[field.name](self, field, getattr(self, field.name))
        if not self.min_interval <= self.base_interval <= self.max_interval:
            raise ValueError(
                "need min_interval <= base_interval <= max_interval, got "
                f"{self.min_interval!r}, {self.base_interval!r}, {self.max_interval!r}"
            )
        if not self.min_interval <= self.callback_fallback_interval <= self.max_interval:
            raise ValueError(
                "callback_fallback_interval must lie within [min_interval, max_interval], got "
                f"{self.callback_fallback_interval!r}"
            )
        if self.backoff < 1:
            raise ValueError(f"backoff must be >= 1, got {self.backoff!r}")
        if self.jitter >= 1:
            raise ValueError(f"jitter must be below 1, got {self.jitter!r}")

    def window(self) -> tuple[float, float] | None:
        """Seconds after the create between which the task is expected to finish, or None."""
        if self.expected_duration is None:
            return None
        spread = self.expected_spread
        if spread is None:
            spread = PRIOR_SPREAD * self.expected_duration
        spread = max(spread, _MIN_SPREAD * self.expected_duration)
        half = _WINDOW_SPREADS * spread
        return max(0.0, self.expected_duration - half), self.expected_duration + half


#: PollSchedule's field checks, run one by one only for a schedule that fails the quick one.
_SCHEDULE_CHECKS: dict[str, Callable[[Any, Any, Any], None]] = {
    "base_interval": _positive,
    "initial_delay": _non_negative,
    "min_interval": _positive,
    "max_interval": _positive,
    "backoff": _positive,
    "jitter": _non_negative,
    "latency_fraction": _positive,
    "progress_fraction": _positive,
    "expected_duration": _optional_positive,
    "expected_spread": _optional_positive,
    "callback_fallback_interval": _positive,
    "learned": attrs.validators.ge(0),
}
