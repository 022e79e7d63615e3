"""When to ask for a task's status again: a pure schedule, and the wait loop built on it.

A task takes minutes, so a fixed short interval spends most of its requests on a task that
cannot be done yet, and a fixed long one reports completion late. :func:`next_poll_delay` answers
"how long until the next poll?" from what has been seen so far, as a pure function:

* **First poll**: ``initial_delay`` after creation, a fraction (0.2) of the model's expected
  duration: a Sora 2 task is not done after 4 seconds, so polling then only costs requests.
* **With progress** (freesora reports 0-100): the rate since the task started moving predicts
  when it reaches 100, and the next poll is aimed just after that moment. The prediction is
  never trusted further ahead than the task has been seen moving (an extrapolation no longer
  than the history it rests on) nor ``max_interval``. Once the predicted moment has passed,
  polls come every ``min_interval``, growing by ``backoff`` per unchanged answer for a task
  that stalls at 99%. A task that stalls mid-way falls back to the backoff below.
* **Without progress** (sora2api, or a task still at 0%): capped exponential backoff from
  ``base_interval`` (the contract's ``poll_interval``), multiplied by ``backoff`` per unchanged
  answer and reset by any change (pending -> running, a new progress value). The cap is the
  smaller of ``max_interval`` and ``latency_fraction`` of the task's age (never below
  ``base_interval``), so the delay in noticing completion stays a small fraction of the task's
  duration, whatever that duration is, while the number of polls grows only logarithmically.
* **Completion callback expected** (sora2api ``callBackUrl``): the callback wakes the poller,
  so polls only guard against a lost callback, every ``callback_fallback_interval``.
* **Retry-After** from the server wins whenever it is longer.
* Jitter (a fraction, both ways) spreads the polls of tasks created together; every delay is
  finite and clamped to ``[min_interval, max_interval]``, except a longer Retry-After.

:func:`poll_until_terminal` runs the loop: it sleeps (cut short by a wake hint when a callback
arrives), fetches, and returns the first terminal status. A callback body is never trusted: the
wake only triggers a poll. Transient failures that survived the fetch's own retries (transport,
5xx, 429, undecodable answer) do not end the wait: polling goes on, with backoff, until the
overall deadline, which raises :class:`~sora_async.errors.WaitTimeoutError`.
"""

from __future__ import annotations

import collections
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final, NamedTuple, Protocol

import anyio
import anyio.lowlevel
import attrs

from .errors import (
    ConfigurationError,
    ProtocolError,
    RateLimitError,
    ServerError,
    TransportError,
    WaitTimeoutError,
)
from .models import Model, TaskState, TaskStatus, VideoRequest

__all__ = [
    "EXPECTED_DURATIONS",
    "INITIAL_DELAY_FRACTION",
    "TRANSIENT_POLL_ERRORS",
    "Observation",
    "PollPlanner",
    "PollSchedule",
    "WakeSignal",
    "next_poll_delay",
    "poll_until_terminal",
]

logger = logging.getLogger(__name__)

#: The first poll comes after this fraction of the expected duration.
INITIAL_DELAY_FRACTION: Final = 0.2

#: Expected task durations in seconds, by provider and model (None: the provider's only or
#: default model). Sora 2 renders of 10-15 s clips typically take two to four minutes and Pro
#: renders about twice that; sora2api's own sample shows five minutes from createTime to
#: completeTime. They only place the first poll, so an estimate off by half costs a few polls
#: or a few seconds, never correctness.
EXPECTED_DURATIONS: Final[Mapping[tuple[str, str | None], float]] = {
    ("freesora", None): 180.0,
    ("freesora", Model.SORA_2.value): 180.0,
    ("freesora", Model.SORA_2_STABLE.value): 180.0,
    ("freesora", Model.SORA_2_PRO.value): 360.0,
    ("sora2api", None): 300.0,
}

#: Errors of a fetch that do not end the wait: the status is still unknown, not bad.
TRANSIENT_POLL_ERRORS: Final = (TransportError, ServerError, RateLimitError, ProtocolError)

# Aim this fraction of min_interval past the predicted finish, so that the poll lands after
# the task flips to succeeded rather than just before it.
_FINISH_MARGIN_FRACTION: Final = 0.25
# Exponents beyond this only overflow; every delay is capped long before.
_MAX_EXPONENT: Final = 64
# Enough history for the estimates; bounds memory for a wait without a deadline.
_MAX_OBSERVATIONS: Final = 256


class Observation(NamedTuple):
    """One status seen by the poller: when (on the poller's clock), the state, the progress."""

    time: float
    state: TaskState
    progress: float | None = None


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


@attrs.frozen(kw_only=True)
class PollSchedule:
    """The knobs of :func:`next_poll_delay`, in seconds (see the module docstring).

    base_interval:              the gap when nothing better is known; backoff starts here.
    initial_delay:              from creation to the first poll.
    min_interval:               the floor of every gap.
    max_interval:               no gap is longer, except a server's longer Retry-After.
    backoff:                    growth per unchanged answer.
    jitter:                     fraction by which a delay is randomised, both ways (0..1).
    latency_fraction:           without progress, no gap exceeds this fraction of the task's
                                age (but ``base_interval`` is always allowed).
    expected_duration:          what ``initial_delay`` was derived from, for reference.
    callback_fallback_interval: the gap while a completion callback is expected.
    """

    base_interval: float = attrs.field(default=5.0, validator=_positive)
    initial_delay: float = attrs.field(
        default=attrs.Factory(lambda self: self.base_interval, takes_self=True),
        validator=_non_negative,
    )
    min_interval: float = attrs.field(default=1.0, validator=_positive)
    max_interval: float = attrs.field(default=60.0, validator=_positive)
    backoff: float = attrs.field(default=1.5, validator=_positive)
    jitter: float = attrs.field(default=0.1, validator=_non_negative)
    latency_fraction: float = attrs.field(default=0.15, validator=_positive)
    expected_duration: float | None = attrs.field(default=None, validator=_optional_positive)
    callback_fallback_interval: float = attrs.field(default=60.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
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

    @classmethod
    def for_provider(
        cls,
        name: str,
        *,
        model: Model | str | None = None,
        poll_interval: float | None = None,
        expected_duration: float | None = None,
    ) -> PollSchedule:
        """The schedule for a provider (and model), with the user's overrides.

        freesora: base 4 s, the middle of the 3-5 s its document asks for; min 3 s, its lower
        bound, so that even the polls aimed at a predicted finish stay within its request.
        sora2api: base 10 s. Its sample polls every 30 s with no backoff; here the backoff
        reaches 30 s within three unchanged answers anyway, so starting at 10 s costs a
        couple of requests per task and sees a quick success or an early failure (successFlag
        2, "created but failed") 20 s sooner. It reports no progress, so nothing better than
        the backoff is ever known; with a callback, polling drops to the fallback cadence.
        Both: max 60 s, backoff 1.5, jitter 10%, latency fraction 15%, callback fallback 60 s,
        first poll at 20% of the expected duration (see :data:`EXPECTED_DURATIONS`).

        ``poll_interval`` replaces the base interval. A value below the provider's default
        scales the other gaps down with it (a mock server that finishes tasks in seconds);
        ``expected_duration`` replaces the model's expected duration.
        """
        profile = _PROFILES.get(name)
        if profile is None:
            known = ", ".join(sorted(_PROFILES))
            raise ConfigurationError(f"unknown provider {name!r} (known: {known})")
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
        if expected_duration is None:
            key = str(model.value if isinstance(model, Model) else model) if model else None
            expected_duration = EXPECTED_DURATIONS.get((name, key), EXPECTED_DURATIONS[name, None])
        base = profile.base_interval if poll_interval is None else poll_interval
        scale = min(1.0, base / profile.base_interval)
        min_interval = min(profile.min_interval, base)
        max_interval = max(base, profile.max_interval * scale)
        fallback = min(max_interval, max(base, profile.callback_fallback_interval * scale))
        initial = min(max_interval, INITIAL_DELAY_FRACTION * expected_duration)
        return cls(
            base_interval=base,
            initial_delay=initial,
            min_interval=min_interval,
            max_interval=max_interval,
            expected_duration=expected_duration,
            callback_fallback_interval=fallback,
        )


@attrs.frozen
class _Profile:
    base_interval: float
    min_interval: float
    max_interval: float
    callback_fallback_interval: float


_PROFILES: Final[Mapping[str, _Profile]] = {
    "freesora": _Profile(4.0, 3.0, 60.0, 60.0),
    "sora2api": _Profile(10.0, 5.0, 60.0, 60.0),
}


#: Weight of the newest observation in a learned task duration (an exponential average).
LEARNING_RATE: Final = 0.3


class PollPlanner:
    """One client's poll schedules: the provider's profile, the user's settings, and what this
    client has seen its tasks take.

    The task lifecycle asks :meth:`schedule` for each task it follows and reports each task it
    saw finish to :meth:`learn`; nothing else about polling lives outside this module.
    """

    def __init__(
        self,
        provider: str,
        *,
        poll_interval: float | None = None,
        expected_duration: float | None = None,
    ) -> None:
        self._provider = provider
        self._poll_interval = poll_interval
        self._expected_duration = expected_duration
        self._learned: dict[Model | None, float] = {}

    def schedule(self, request: VideoRequest | None) -> PollSchedule:
        """The schedule for a new task of ``request`` (None: a task of unknown request)."""
        model = request.model if request is not None else None
        expected = self._expected_duration
        if expected is None:
            expected = self._learned.get(model)
        return PollSchedule.for_provider(
            self._provider,
            model=model,
            poll_interval=self._poll_interval,
            expected_duration=expected,
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
        three times are on the same monotonic clock.
        """
        if not succeeded:
            return
        model = request.model if request is not None else None
        # The task ended between the last poll that saw it running (or its creation) and the
        # poll that saw it done. The midpoint, not the end: otherwise a late first poll would
        # teach us its own delay.
        since = last_running_at if last_running_at is not None else created_at
        seen = (since + finished_seen_at) / 2 - created_at
        previous = self._learned.get(model)
        self._learned[model] = (
            seen if previous is None else previous + LEARNING_RATE * (seen - previous)
        )

    @property
    def learned(self) -> dict[Model | None, float]:
        """Learned durations in seconds, by model (a snapshot)."""
        return dict(self._learned)


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
) -> float:
    """Seconds from ``now`` until the next poll of a task created at ``started_at``.

    ``observations`` are the non-terminal statuses seen so far, oldest first. ``rng`` draws
    the jitter (None: no jitter). The result is finite and lies within
    ``[min_interval, max(max_interval, retry_after)]``.
    """
    s = schedule
    age = max(0.0, now - started_at)
    delay: float | None
    if callback_expected:
        delay = _jittered(s.callback_fallback_interval, s.jitter, rng)
    elif not observations:
        delay = started_at + _jittered(s.initial_delay, s.jitter, rng) - now
    else:
        delay = _progress_delay(s, observations, now=now, started_at=started_at, age=age)
        if delay is None:
            delay = _backoff_delay(s, observations, age=age, rng=rng)
    if not math.isfinite(delay):
        delay = s.base_interval
    delay = min(s.max_interval, max(s.min_interval, delay))
    if retry_after is not None and math.isfinite(retry_after) and retry_after > delay:
        delay = retry_after
    return delay


def _jittered(value: float, jitter: float, rng: _Random | None) -> float:
    if rng is None or jitter == 0:
        return value
    return value * (1.0 + jitter * (2.0 * rng.random() - 1.0))


def _power(base: float, exponent: int) -> float:
    try:
        return float(base ** min(exponent, _MAX_EXPONENT))
    except OverflowError:
        return math.inf


def _age_cap(s: PollSchedule, age: float) -> float:
    return min(s.max_interval, max(s.base_interval, s.latency_fraction * age))


def _unchanged_run(observations: Sequence[Observation]) -> int:
    """How many of the latest answers were identical (state and progress): 1 if the last is new."""
    last = observations[-1]
    run = 0
    for obs in reversed(observations):
        if obs.state != last.state or obs.progress != last.progress:
            break
        run += 1
    return run


def _backoff_delay(
    s: PollSchedule, observations: Sequence[Observation], *, age: float, rng: _Random | None
) -> float:
    raw = s.base_interval * _power(s.backoff, _unchanged_run(observations) - 1)
    return _jittered(min(raw, _age_cap(s, age)), s.jitter, rng)


def _progress_delay(
    s: PollSchedule,
    observations: Sequence[Observation],
    *,
    now: float,
    started_at: float,
    age: float,
) -> float | None:
    """The delay aimed at the predicted finish, or None when progress predicts nothing."""
    last = observations[-1]
    if last.progress is None or not last.progress > 0:
        return None
    progress = min(100.0, float(last.progress))
    # Movement is measured from when the task was last seen not moving (queued at 0%), or from
    # its creation, so that time spent pending does not make it look slow ...
    zero_time = started_at
    moving: Observation | None = None
    for obs in reversed(observations):
        if obs.progress is None:
            continue
        if obs.progress <= 0:
            zero_time = obs.time
            break
        moving = obs
    anchor_time, anchor_progress = zero_time, 0.0
    # ... and once it has been seen moving twice, from the first of those, which also removes
    # any pending time that was never observed.
    if (
        moving is not None
        and moving is not last
        and moving.progress is not None
        and last.time > moving.time
        and progress > moving.progress
    ):
        anchor_time, anchor_progress = moving.time, float(moving.progress)
    span = last.time - anchor_time
    if not span > 0 or not progress > anchor_progress:
        return None
    rate = (progress - anchor_progress) / span
    if not rate > 0:
        return None
    finish = last.time + (100.0 - progress) / rate
    ahead = finish + _FINISH_MARGIN_FRACTION * s.min_interval - now
    unchanged = _unchanged_run(observations)
    if ahead >= s.min_interval:
        if unchanged > 1:
            # Stalled mid-way: the prediction only recedes with every poll; back off instead.
            return None
        # Never extrapolate further ahead than the task has been seen moving.
        return min(ahead, s.max_interval, max(s.base_interval, last.time - zero_time))
    # Due or overdue: poll briskly, then back off for a task that stalls at 99%.
    return min(s.min_interval * _power(s.backoff, unchanged - 1), _age_cap(s, age))


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
) -> TaskStatus:
    """Poll with :func:`next_poll_delay` until ``fetch`` returns a terminal status.

    timeout:    seconds from now; when it passes without a terminal status (a last poll is
                made at the deadline), :class:`WaitTimeoutError` is raised. None waits forever.
    on_status:  called with every status fetched, the terminal one included.
    wake:       a completion callback is expected: polls fall back to the slow
                ``callback_fallback_interval`` and a ``wake.set()`` makes the next poll
                happen at once (the poll, not the callback, decides).
    task_id:    for the timeout error when no status was ever fetched.
    started_at: when the task was created, on ``clock`` (default: now); places the first poll.
    clock, sleep, rng: injectable time and randomness (``sleep(d)`` must let ``clock()``
                advance by ``d``).

    ``fetch`` should do its own retries. A :data:`TRANSIENT_POLL_ERRORS` error that still
    escapes it is logged and polling goes on with backoff (honouring a 429's Retry-After)
    until the deadline; any other error propagates. A fetch in progress is not interrupted by
    the deadline, which is checked between polls.
    """
    begin = clock()
    created = begin if started_at is None else started_at
    deadline = math.inf if timeout is None else begin + timeout
    observations: collections.deque[Observation] = collections.deque(maxlen=_MAX_OBSERVATIONS)
    last: TaskStatus | None = None
    last_error: BaseException | None = None
    retry_after: float | None = None
    failures = 0

    def timed_out() -> WaitTimeoutError:
        ident = last.task_id if last is not None else (task_id or "unknown")
        state = str(last.state) if last is not None else None
        return WaitTimeoutError(ident, 0.0 if timeout is None else timeout, state)

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
        )
        if failures:
            raw = schedule.base_interval * _power(schedule.backoff, failures - 1)
            delay = max(delay, _jittered(min(raw, schedule.max_interval), schedule.jitter, rng))
        remaining = deadline - now
        if remaining <= 0:
            raise timed_out() from last_error
        await _sleep_or_wake(min(delay, remaining), sleep, wake)
        if wake is not None:
            wake.clear()
        retry_after = None
        try:
            status = await fetch()
        except TRANSIENT_POLL_ERRORS as exc:
            failures += 1
            last_error = exc
            if isinstance(exc, RateLimitError):
                retry_after = exc.retry_after
            logger.warning(
                "status of task %s unknown after a failed poll (%s); polling again with backoff",
                last.task_id if last is not None else (task_id or "?"),
                exc,
            )
        else:
            failures = 0
            last_error = None
            last = status
            if on_status is not None:
                on_status(status)
            if status.is_terminal:
                return status
            observations.append(Observation(clock(), status.state, status.progress))
        if clock() >= deadline:
            raise timed_out() from last_error


async def _sleep_or_wake(
    delay: float, sleep: Callable[[float], Awaitable[object]], wake: WakeSignal | None
) -> None:
    if wake is None:
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
