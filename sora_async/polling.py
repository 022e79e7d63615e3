"""When to ask for a task's status again: a pure schedule, what it learns, and the wait loop.

Each provider module declares a :class:`PollProfile` (its documented cadence and its prior
guesses of how long a task takes). A client's :class:`PollPlanner` turns the profile, the
user's settings and the durations it has *seen* into one :class:`PollSchedule` per task, and
:func:`next_poll_delay` answers "how long until the next poll?" as a pure function of the
schedule and what has been observed so far.

Two promises hold for every task, whatever the priors or the learned durations say (priors
are hints, never promises), and a property test checks them over true durations from 0.1 s
to two hours and any base interval ``b``:

* **Lag.** A task is seen finished at most ``max(b, latency_fraction * its duration)`` after
  it finished (``latency_fraction`` is 10%): no gap is longer than ``b`` or than that
  fraction of the task's age at the last poll, unless progress predicts the finish. When
  each answer takes ``L`` to come back, the lag is at most ``max(b, 10% of its duration, L)
  + L``: gaps are counted between the *sends* of two polls (``min_interval`` too), and an
  observation is timed by its send, so a slow answer neither pushes the next poll back nor
  makes the task look slower than it is.
* **Cost.** By any moment, no more polls were made than a poller asking every ``b`` seconds
  from the create would have made: the k-th poll never comes before ``initial_delay + (k-1)
  * b`` (the *budget*). So the first poll comes no later, and no sooner, than ``b`` after the
  create (``initial_delay``, which only a server hint could lower), and a task that fails at
  once is seen within one base interval.

Between those two bounds, what was observed decides where the polls go:

* **Progress** (freesora reports 0-100): the rate since the task started moving predicts its
  finish, between the earliest the fastest rate the whole-number percentages allow says and
  the latest the slowest says (each reading true anywhere between its send and its answer,
  and a 1% perhaps less: providers round a task that has begun up to 1%). When
  those are within a third of a base interval, the next poll is aimed at the latest, so that one
  poll sees the task done, a little after its finish; when not, a ``min_interval`` before the
  earliest, where a reading narrows the finish down and leaves room for a poll aimed at it.
  A prediction is trusted no further ahead than ``progress_fraction`` of the task's age nor
  than it has been seen moving, unless the task was seen moving twice and the prediction
  falls in the window where tasks of its kind were seen to finish (below), after
  ``_TRUSTED_AFTER`` of them: then the polls go straight towards the finish, evenly spaced
  when ``max_interval`` caps a gap. A task of 4 base intervals that learned tasks of its
  kind took is polled 3 times (after one base interval, two, and just after its finish),
  where a fixed poller needs 4 and finds it up to a base interval late. A task that stalls
  falls back to the rule below.
* **Without progress** (sora2api, or a task still at 0%): outside the window in which the
  task is expected to finish (``expected_duration`` +- 2.5 ``expected_spread``), polls are
  sparse: the gap grows with the task's age, ``max(b, latency_fraction * age)``, capped by
  ``max_interval``, so a long task costs a logarithmic number of polls. Inside the window,
  polls come midway between ``min_interval`` and ``b`` (never closer than 0.1% of the task's
  age), a little more often than a fixed poller's, paid for by the sparse polls before (the
  budget still caps the count), so the usual lag is smaller than its. The window comes from
  the durations the planner has seen for this kind of task; before any is seen, from the
  provider's prior with a wide spread.
  A prior that is ten times off in either direction costs nothing but the window's density
  in the wrong place; the lag promise still holds, and the first finished task replaces it.
* **Completion callback expected** (sora2api ``callBackUrl``): after the first poll, polls
  only guard against a lost callback, every ``callback_fallback_interval``.
* **Retry-After** from the server wins whenever it is longer. Jitter (a fraction) spreads
  the sparse polls of tasks created together; it only ever shortens a gap, within the bounds.

:func:`poll_until_terminal` runs the loop: it sleeps (cut short by a wake hint when a callback
arrives), fetches, and returns the first terminal status. A callback body is never trusted: the
wake only triggers a poll. Transient failures that survived the fetch's own retries (transport,
5xx, 429, undecodable answer) do not end the wait: polling goes on, with backoff, until the
overall deadline, which raises :class:`~sora_async.errors.WaitTimeoutError`. A status the
provider module does not know (:class:`~sora_async.errors.UnknownStatusError`) is asked again
a few times, then the wait ends with that error, naming the status: a task in a state nobody
can interpret should not hold an account slot for an hour.
"""

from __future__ import annotations

import collections
import logging
import math
import random
import time
import types
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, NamedTuple, Protocol

import anyio
import anyio.lowlevel
import attrs

from .errors import (
    ConfigurationError,
    ProtocolError,
    RateLimitError,
    ServerError,
    TransportError,
    UnknownStatusError,
    WaitTimeoutError,
)
from .models import TaskState, TaskStatus, VideoRequest

__all__ = [
    "LEARNING_RATE",
    "TRANSIENT_POLL_ERRORS",
    "UNKNOWN_STATUS_LIMIT",
    "DurationKey",
    "Observation",
    "PollPlanner",
    "PollProfile",
    "PollSchedule",
    "WakeSignal",
    "next_poll_delay",
    "poll_until_terminal",
]

logger = logging.getLogger(__name__)

#: Errors of a fetch that do not end the wait: the status is still unknown, not bad.
TRANSIENT_POLL_ERRORS: Final = (TransportError, ServerError, RateLimitError, ProtocolError)

#: Consecutive answers with a status nobody knows before the wait gives up on the task.
UNKNOWN_STATUS_LIMIT: Final = 3

#: Weight of the newest observation in a learned duration, once a few have been seen.
LEARNING_RATE: Final = 0.1

# A predicted finish known less closely than this fraction of the base interval is
# approached by a poll a floor before its earliest, which narrows it down. A third, not a
# half: a poll aimed at the latest end of a wider bracket lands on average a sixth of a base
# interval past the finish, which for tasks of a few base intervals costs more of the slot's
# time than the one poll more (the simulated 1000 tasks of 4 base intervals: lag 10.8 ->
# 8.2 ms at a 50 ms base, 3.31 -> 3.47 polls a task).
_APPROACH_FRACTION: Final = 0.35
# Finished tasks of one kind seen before a progress prediction that agrees with them is
# trusted beyond the cautious reach.
_TRUSTED_AFTER: Final = 3
# Exponents beyond this only overflow; every delay is capped long before.
_MAX_EXPONENT: Final = 64
# Enough history for the estimates; bounds memory for a wait without a deadline.
_MAX_OBSERVATIONS: Final = 256
# A prior is a guess: its finish window is +-62% wide (2.5 spreads of 25%).
_PRIOR_SPREAD: Final = 0.25
# The window is never narrower than +-12% of the expected duration (2.5 spreads of 5%) ...
_MIN_SPREAD: Final = 0.05
# ... and it spans this many spreads on each side.
_WINDOW_SPREADS: Final = 2.5
# Even where polls are dense, a gap is at least this fraction of the task's age: a two-hour
# task polled at a 0.05 s base would otherwise be asked thousands of times near its end.
_DENSE_FRACTION: Final = 0.001
# Until this many durations are seen, the learned spread is blended with the prior's.
_SPREAD_PSEUDO_COUNT: Final = 2


class Observation(NamedTuple):
    """One status seen by the poller: when its request was sent (on the poller's clock), the
    state, the progress, and when its answer came back (None: at once)."""

    time: float
    state: TaskState
    progress: float | None = None
    answered_at: float | None = None


class WakeSignal(Protocol):
    """A re-armable wake-up flag, such as :class:`sora_async.callbacks.WakeHint`.

    ``set()`` by whoever learns that the task may be done (a completion callback); the poller
    waits on it while sleeping and clears it before each poll, so a signal that arrives during
    a poll is kept for the next sleep instead of being lost.
    """

    def is_set(self) -> bool: ...

    def clear(self) -> None: ...

    async def wait(self) -> None: ...


class _Random(Protocol):
    def random(self) -> float: ...


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
            spread = _PRIOR_SPREAD * self.expected_duration
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


# -- learning durations ----------------------------------------------------------------------


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
        prior = _PRIOR_SPREAD * self.mean * _SPREAD_PSEUDO_COUNT
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
            spread = _PRIOR_SPREAD * expected
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


# -- the pure schedule -----------------------------------------------------------------------


def next_poll_delay(
    schedule: PollSchedule,
    observations: Sequence[Observation],
    *,
    now: float,
    started_at: float,
    retry_after: float | None = None,
    rng: _Random | None = None,
    callback_expected: bool = False,
    polls: int | None = None,
    last_poll_at: float | None = None,
) -> float:
    """Seconds from ``now`` until the next poll of a task created at ``started_at``.

    ``observations`` are the non-terminal statuses seen so far, oldest first, each timed when
    its request was sent; ``polls`` is how many polls were made (default: one per observation;
    a failed poll counts too). ``last_poll_at`` is when the last poll was sent: the floor
    ``min_interval`` then separates two sends, so an answer that took longer than that is
    followed at once when a poll is due (None: the floor counts from ``now``). ``rng`` draws
    the jitter (None: no jitter). The result is finite and lies within
    ``[floor, max(max_interval, retry_after)]``, the floor being ``min_interval`` from ``now``
    or from ``last_poll_at``.
    """
    s = schedule
    made = len(observations) if polls is None else max(0, polls)
    # The budget: never ahead of a poller asking every base interval from the first poll.
    earliest = started_at + s.initial_delay + made * s.base_interval
    floor = s.min_interval
    if last_poll_at is not None and math.isfinite(last_poll_at):
        floor = min(s.min_interval, max(0.0, last_poll_at + s.min_interval - now))
    lower = max(now + floor, earliest)
    at: float | None
    if not observations:
        at = started_at + s.initial_delay
    elif callback_expected:
        at = observations[-1].time + _shortened(s.callback_fallback_interval, s.jitter, rng)
    else:
        last = observations[-1]
        age = max(0.0, last.time - started_at)
        sparse = last.time + min(s.max_interval, max(s.base_interval, s.latency_fraction * age))
        at = _progress_target(s, observations, started_at=started_at, lower=lower)
        if at is None:
            at = _window_target(s, last.time, sparse, started_at=started_at, lower=lower)
        if at is None:
            at = sparse - _shortened(sparse - last.time, s.jitter, rng, only_cut=True)
    delay = max(lower, at) - now
    if not math.isfinite(delay):
        delay = s.base_interval
    delay = min(s.max_interval, max(floor, delay))
    if retry_after is not None and math.isfinite(retry_after) and retry_after > delay:
        delay = retry_after
    return delay


def _shortened(gap: float, jitter: float, rng: _Random | None, *, only_cut: bool = False) -> float:
    """``gap`` shortened by up to ``jitter`` of itself (``only_cut``: just the cut)."""
    cut = 0.0 if rng is None or jitter == 0 else gap * jitter * rng.random()
    return cut if only_cut else gap - cut


def _power(base: float, exponent: int) -> float:
    try:
        return float(base ** min(exponent, _MAX_EXPONENT))
    except OverflowError:
        return math.inf


def _unchanged_run(observations: Sequence[Observation]) -> int:
    """How many of the latest answers were identical (state and progress): 1 if the last is new."""
    last = observations[-1]
    run = 0
    for obs in reversed(observations):
        if obs.state != last.state or obs.progress != last.progress:
            break
        run += 1
    return run


def _window_target(
    s: PollSchedule, last_time: float, sparse: float, *, started_at: float, lower: float
) -> float | None:
    """Where the finish window puts the next poll, or None outside it (sparse polling)."""
    window = s.window()
    if window is None:
        return None
    opens, closes = started_at + window[0], started_at + window[1]
    if last_time >= closes or sparse < opens:
        return None  # overdue, or the window is still further away than the sparse gap
    if last_time < opens:
        return opens  # step into the window at its start instead of past it
    # Inside, where the finish is likely: a little denser than a fixed poller, within budget.
    dense = max((s.base_interval + s.min_interval) / 2, _DENSE_FRACTION * (last_time - started_at))
    return max(lower, last_time + dense)


def _answered(obs: Observation) -> float:
    """When ``obs``'s answer came back (its send when unknown): the status held in between."""
    answered = obs.answered_at
    if answered is None or not answered >= obs.time or not math.isfinite(answered):
        return obs.time
    return answered


def _progress_target(
    s: PollSchedule, observations: Sequence[Observation], *, started_at: float, lower: float
) -> float | None:
    """The poll time aimed at the predicted finish, or None when progress predicts nothing."""
    last = observations[-1]
    if last.progress is None or not last.progress > 0:
        return None
    progress = min(100.0, float(last.progress))
    # Movement is measured from when the task was last seen not moving (queued at 0%), or from
    # its creation, so that time spent pending does not make it look slow ...
    zero: Observation | None = None
    moving: Observation | None = None
    for obs in reversed(observations):
        if obs.progress is None:
            continue
        if obs.progress <= 0:
            zero = obs
            break
        moving = obs
    anchor_time = anchor_answered = started_at if zero is None else zero.time
    if zero is not None:
        anchor_answered = _answered(zero)
    anchor_progress = 0.0
    # ... and once it has been seen moving twice, from the first of those, which also removes
    # any pending time that was never observed.
    seen_moving = (
        moving is not None
        and moving is not last
        and moving.progress is not None
        and last.time > moving.time
        and progress > moving.progress
    )
    if seen_moving:
        assert moving is not None and moving.progress is not None
        anchor_time, anchor_progress = moving.time, float(moving.progress)
        anchor_answered = _answered(moving)
    if not progress > anchor_progress:
        return None
    # Whole percentages hide up to one percent, and each reading was true somewhere between
    # its send and its answer. The fastest rate all that allows gives the earliest plausible
    # finish; the slowest, from when this value was first seen, the latest.
    if not last.time > anchor_time:
        return None
    early = last.time  # readings whose answers overlap bound no fastest rate
    span = last.time - (anchor_time if zero is None and not seen_moving else anchor_answered)
    if span > 0:
        # A reading of 1% may be less (providers round a task that has begun up to 1%).
        low = anchor_progress if anchor_progress > 1 else 0.0
        early += (99.0 - progress) * span / (progress + 1.0 - low)
    first_seen = observations[-_unchanged_run(observations)]
    since_zero = started_at if zero is None else zero.time
    late = _latest_finish(first_seen, progress, anchor_time, anchor_progress)
    if late == math.inf:
        # Two readings a point apart bound nothing: from the last time it was not moving.
        late = _latest_finish(first_seen, progress, since_zero, 0.0)
    age = max(0.0, last.time - started_at)
    # Aimed at the latest plausible finish, so that one poll sees the task done, when the
    # finish is known that closely (a bound: a margin on top would only add to the lag);
    # otherwise a floor before the earliest, where a reading
    # narrows it down and still leaves room for a poll at the finish.
    aim = min(late, early + s.min_interval)
    if late - early > _APPROACH_FRACTION * s.base_interval and early - s.min_interval > lower:
        aim = early - s.min_interval
    if aim <= lower:
        if last.time <= late:
            # Due, but not yet by the slowest rate: polled briskly until it would be done.
            return max(lower, last.time + _DENSE_FRACTION * age)
        return None  # stalled past any plausible finish: polled like a task without progress
    if seen_moving and _agrees_with_history(s, early, late, started_at=started_at):
        # Two readings and the durations seen for this kind of task tell the same story:
        # the prediction is trusted as far ahead as it goes.
        cap = s.max_interval
    else:
        # Otherwise trusted no further ahead than a fraction of the task's age, nor than it
        # has been seen moving: progress that is not linear would otherwise hide a finish.
        reach = min(s.progress_fraction * age, last.time - since_zero)
        cap = min(s.max_interval, max(s.base_interval, reach))
    ahead = aim - last.time
    if ahead > cap:
        if cap < s.max_interval:
            return last.time + cap  # a cap that grows with the task's age
        # Evenly spaced on the way, so that the last gap is not the one squeezed short of the
        # aim (the poll after it could then come no sooner than a floor later).
        ahead /= math.ceil(ahead / cap)
    return last.time + ahead


def _latest_finish(
    first_seen: Observation, progress: float, anchor_time: float, anchor_progress: float
) -> float:
    """The latest finish the slowest rate from the anchor to ``first_seen`` (the first reading
    of ``progress``) allows, or inf when that rate may be zero."""
    gained = progress - anchor_progress - 1.0
    span = first_seen.time - anchor_time
    if not (gained > 0 and span > 0):
        return math.inf
    return _answered(first_seen) + (100.0 - progress) * span / gained


def _agrees_with_history(s: PollSchedule, early: float, late: float, *, started_at: float) -> bool:
    """The finish predicted between ``early`` and ``late`` falls where tasks of this kind were
    seen to finish, and enough of them were seen for that to mean something."""
    window = s.window()
    if s.learned < _TRUSTED_AFTER or window is None:
        return False
    return early <= started_at + window[1] and late >= started_at + window[0]


# -- the wait loop ---------------------------------------------------------------------------


async def poll_until_terminal(
    fetch: Callable[[], Awaitable[TaskStatus]],
    schedule: PollSchedule,
    *,
    # The deadline lives on the injectable clock and ends in WaitTimeoutError with the last
    # state seen; a cancel scope (fail_after) could give neither.
    timeout: float | None,  # noqa: ASYNC109
    on_status: Callable[[TaskStatus], object] | None = None,
    wake: WakeSignal | None = None,
    task_id: str | None = None,
    started_at: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
    rng: _Random = random,
    unknown_status_limit: int = UNKNOWN_STATUS_LIMIT,
) -> TaskStatus:
    """Poll with :func:`next_poll_delay` until ``fetch`` returns a terminal status.

    timeout:    seconds from now; when it passes without a terminal status (a last poll is
                made at the deadline), :class:`WaitTimeoutError` is raised. None waits forever.
    on_status:  called with every status fetched, the terminal one included.
    wake:       a completion callback is expected: polls fall back to the slow
                ``callback_fallback_interval`` and a ``wake.set()`` makes the next poll
                happen at once (the poll, not the callback, decides).
    task_id:    for the errors when no status was ever fetched.
    started_at: when the task was created (its create sent), on ``clock`` (default: now);
                places the first poll, and the floor counts from it until then.
    clock, sleep, rng: injectable time and randomness (``sleep(d)`` must let ``clock()``
                advance by ``d``).
    unknown_status_limit: consecutive :class:`UnknownStatusError` answers after which the
                wait ends with that error (the caller frees the task's slot).

    ``fetch`` should do its own retries. A :data:`TRANSIENT_POLL_ERRORS` error that still
    escapes it is logged and polling goes on with backoff (honouring a 429's Retry-After)
    until the deadline; any other error propagates. A fetch in progress is not interrupted by
    the deadline, which is checked between polls.
    """
    if unknown_status_limit < 1:
        raise ValueError(f"unknown_status_limit must be >= 1, got {unknown_status_limit!r}")
    begin = clock()
    created = begin if started_at is None else started_at
    deadline = math.inf if timeout is None else begin + timeout
    observations: collections.deque[Observation] = collections.deque(maxlen=_MAX_OBSERVATIONS)
    last: TaskStatus | None = None
    last_error: BaseException | None = None
    retry_after: float | None = None
    failures = 0
    unknown = 0
    polls = 0
    # The create was a request too: the floor counts from it until the first poll is sent.
    last_poll_at = created

    def ident() -> str:
        return last.task_id if last is not None else (task_id or "unknown")

    def timed_out() -> WaitTimeoutError:
        state = str(last.state) if last is not None else None
        return WaitTimeoutError(ident(), 0.0 if timeout is None else timeout, state)

    while True:
        now = clock()
        delay = next_poll_delay(
            schedule,
            observations,
            now=now,
            started_at=created,
            retry_after=retry_after,
            rng=rng,
            callback_expected=wake is not None,
            polls=polls,
            last_poll_at=last_poll_at,
        )
        delay = _backed_off(schedule, delay, failures)
        remaining = deadline - now
        if remaining <= 0:
            raise timed_out() from last_error
        await _sleep_or_wake(min(delay, remaining), sleep, wake)
        if wake is not None:
            wake.clear()
        retry_after = None
        polls += 1
        # What the answer says was true when the request left: timing it by its arrival would
        # make a task look slower than it is, and a slow answer would delay the next poll.
        last_poll_at = clock()
        try:
            status = await fetch()
        except TRANSIENT_POLL_ERRORS as exc:
            failures += 1
            last_error = exc
            unknown = _count_unknown(exc, unknown, unknown_status_limit, ident())
            if isinstance(exc, RateLimitError):
                retry_after = exc.retry_after
            logger.warning(
                "status of task %s unknown after a failed poll (%s); polling again with backoff",
                ident(),
                exc,
            )
        else:
            failures = 0
            unknown = 0
            last_error = None
            last = status
            if on_status is not None:
                on_status(status)
            if status.is_terminal:
                return status
            observations.append(Observation(last_poll_at, status.state, status.progress, clock()))
        if clock() >= deadline:
            raise timed_out() from last_error


def _backed_off(schedule: PollSchedule, delay: float, failures: int) -> float:
    """``delay``, stretched after ``failures`` failed polls in a row."""
    if not failures:
        return delay
    raw = schedule.base_interval * _power(schedule.backoff, failures - 1)
    return max(delay, min(raw, schedule.max_interval))


def _count_unknown(exc: BaseException, seen: int, limit: int, task_id: str) -> int:
    """Consecutive unknown statuses after ``exc``; raises once there are ``limit`` of them.

    Other transient failures neither count nor reset: only a status we know does.
    """
    if not isinstance(exc, UnknownStatusError):
        return seen
    seen += 1
    if seen >= limit:
        raise UnknownStatusError(
            exc.status, endpoint=exc.endpoint, task_id=task_id, times=seen
        ) from exc
    return seen


async def _sleep_or_wake(
    delay: float, sleep: Callable[[float], Awaitable[object]], wake: WakeSignal | None
) -> None:
    if wake is None:
        if delay > 0:  # a poll already due goes now: a sleep(0) costs a trip through the loop
            await sleep(delay)
        return
    if wake.is_set():
        await anyio.lowlevel.checkpoint()
        return
    async with anyio.create_task_group() as tg:

        async def cut_short() -> None:
            await wake.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(cut_short)
        await sleep(delay)
        tg.cancel_scope.cancel()
