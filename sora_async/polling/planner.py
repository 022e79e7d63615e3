"""Learning how long tasks take: PollPlanner makes each task's schedule from what it has seen."""

from __future__ import annotations

import math
from typing import Final, NamedTuple

import attrs

from ..errors import ConfigurationError
from ..models import VideoRequest
from .policy import PRIOR_SPREAD, PollProfile, PollSchedule

__all__ = ["LEARNING_RATE", "DurationKey", "PollPlanner"]

#: Weight of the newest observation in a learned duration, once a few have been seen.
LEARNING_RATE: Final = 0.1
# Until this many durations are seen, the learned spread is blended with the prior's.
_SPREAD_PSEUDO_COUNT: Final = 2


class DurationKey(NamedTuple):
    """What a learned duration is kept for: tasks of the same kind take about as long."""

    provider: str
    model: str | None
    duration: int | None
    quality: str | None


@attrs.define
class _Estimate:
    count: int
    mean: float
    deviation: float

    def add(self, seconds: float) -> None:
        self.count += 1
        # A plain mean for the first few (the prior is gone after one), then a moving one so
        # that a change of the server's speed is followed within a few tasks.
        rate = max(LEARNING_RATE, 1.0 / self.count)
        error = seconds - self.mean
        self.mean += rate * error
        if self.count > 1:
            self.deviation += rate * (abs(error) - self.deviation)

    def spread(self) -> float:
        # Few samples say little about the spread: blend with the prior's relative spread.
        prior = PRIOR_SPREAD * self.mean * _SPREAD_PSEUDO_COUNT
        seen = self.deviation * (self.count - 1)
        return (prior + seen) / (_SPREAD_PSEUDO_COUNT + self.count - 1)


class PollPlanner:
    """One client's poll schedules: the provider's profile, the user's settings, and what this
    client has seen its tasks take.

    The task lifecycle asks :meth:`schedule` for each task it follows and reports each task it
    saw finish to :meth:`learn`; nothing else about polling lives outside this module.

    ``poll_interval`` replaces the profile's base interval (and scales its other gaps, see
    :class:`PollProfile`); ``expected_duration`` replaces its priors for every model. Both are
    checked here, before any task exists. Either way, durations seen win over guesses.
    """

    def __init__(
        self,
        profile: PollProfile,
        *,
        poll_interval: float | None = None,
        expected_duration: float | None = None,
    ) -> None:
        if not isinstance(profile, PollProfile):
            raise ConfigurationError(f"a PollProfile is needed, got {profile!r}")
        if poll_interval is not None and not (poll_interval > 0 and math.isfinite(poll_interval)):
            raise ConfigurationError(
                f"poll_interval must be a positive number, got {poll_interval!r}"
            )
        if expected_duration is not None and not (
            expected_duration > 0 and math.isfinite(expected_duration)
        ):
            raise ConfigurationError(
                f"expected_duration must be a positive number, got {expected_duration!r}"
            )
        self._profile = profile
        self._expected_duration = expected_duration
        self._learned: dict[DurationKey, _Estimate] = {}
        p = profile
        base = p.base_interval if poll_interval is None else poll_interval
        scale = base / p.base_interval
        down = min(1.0, scale)
        # Not scaled: the age cap already keeps the gaps of short tasks short.
        max_interval = max(base, p.max_interval)
        self._gaps = {
            "base_interval": base,
            "initial_delay": base,
            "min_interval": min(base, p.min_interval * scale),
            "max_interval": max_interval,
            "callback_fallback_interval": min(
                max_interval, max(base, p.callback_fallback_interval * down)
            ),
        }

    @property
    def profile(self) -> PollProfile:
        return self._profile

    def key(self, request: VideoRequest | None) -> DurationKey:
        """The learned-duration key of a task of ``request`` (None: of unknown request)."""
        p = self._profile
        if request is None:
            return DurationKey(p.provider, p.default_model, None, None)
        model = request.model.value if request.model is not None else p.default_model
        quality = request.quality.value if request.quality is not None else None
        return DurationKey(p.provider, model, request.duration, quality)

    def schedule(self, request: VideoRequest | None) -> PollSchedule:
        """The schedule for a new task of ``request`` (None: a task of unknown request)."""
        key = self.key(request)
        seen = self._learned.get(key)
        learned = 0
        if seen is not None:
            expected, spread, learned = seen.mean, seen.spread(), seen.count
        else:
            expected = self._expected_duration or self._profile.prior(key.model)
            spread = PRIOR_SPREAD * expected
        return PollSchedule(
            expected_duration=expected, expected_spread=spread, learned=learned, **self._gaps
        )

    def learn(
        self,
        request: VideoRequest | None,
        *,
        created_at: float,
        last_running_at: float | None,
        finished_seen_at: float,
        succeeded: bool,
    ) -> None:
        """A task this client created was seen terminal at ``finished_seen_at``.

        ``last_running_at`` is the last poll that still saw it running (None: none did). All
        three times are on the same monotonic clock. Failed tasks teach nothing: they often
        end early (a refused prompt), which says nothing about how long a video takes.
        """
        if not succeeded:
            return
        # The task ended between the last poll that saw it running (or its creation) and the
        # poll that saw it done. The midpoint, not the end: otherwise a late poll would teach
        # us its own delay.
        since = last_running_at if last_running_at is not None else created_at
        seen = (since + finished_seen_at) / 2 - created_at
        if not (seen > 0 and math.isfinite(seen)):
            return
        key = self.key(request)
        estimate = self._learned.get(key)
        if estimate is None:
            self._learned[key] = _Estimate(count=1, mean=seen, deviation=0.0)
        else:
            estimate.add(seen)

    @property
    def learned(self) -> dict[DurationKey, float]:
        """Learned durations in seconds, by kind of task (a snapshot)."""
        return {key: estimate.mean for key, estimate in self._learned.items()}
