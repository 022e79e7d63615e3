"""The schedule's arithmetic: next_poll_delay, a pure function of a schedule and what was seen."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, NamedTuple, Protocol

from ..models import TaskState
from .policy import PollSchedule

__all__ = ["Observation", "RandomSource", "next_poll_delay"]

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
# Even where polls are dense, a gap is at least this fraction of the task's age: a two-hour
# task polled at a 0.05 s base would otherwise be asked thousands of times near its end.
_DENSE_FRACTION: Final = 0.001


class Observation(NamedTuple):
    """One status seen by the poller: when its request was sent (on the poller's clock), the
    state, the progress, and when its answer came back (None: at once)."""

    time: float
    state: TaskState
    progress: float | None = None
    answered_at: float | None = None


class RandomSource(Protocol):
    def random(self) -> float: ...


def next_poll_delay(
    schedule: PollSchedule,
    observations: Sequence[Observation],
    *,
    now: float,
    started_at: float,
    retry_after: float | None = None,
    rng: RandomSource | None = None,
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


def _shortened(
    gap: float, jitter: float, rng: RandomSource | None, *, only_cut: bool = False
) -> float:
    """``gap`` shortened by up to ``jitter`` of itself (``only_cut``: just the cut)."""
    cut = 0.0 if rng is None or jitter == 0 else gap * jitter * rng.random()
    return cut if only_cut else gap - cut


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
