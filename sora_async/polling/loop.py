"""The wait loop: poll_until_terminal sleeps, polls, rides out transient errors, ends terminal."""

from __future__ import annotations

import collections
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import anyio
import anyio.lowlevel

from ..errors import (
    ProtocolError,
    RateLimitError,
    ServerError,
    TransportError,
    UnknownStatusError,
    WaitTimeoutError,
)
from ..models import TaskStatus
from .delay import Observation, RandomSource, next_poll_delay
from .policy import PollSchedule

__all__ = ["TRANSIENT_POLL_ERRORS", "UNKNOWN_STATUS_LIMIT", "WakeSignal", "poll_until_terminal"]

# The package's name: log configuration made for the one module polling was keeps working.
logger = logging.getLogger("sora_async.polling")

#: Errors of a fetch that do not end the wait: the status is still unknown, not bad.
TRANSIENT_POLL_ERRORS: Final = (TransportError, ServerError, RateLimitError, ProtocolError)

#: Consecutive answers with a status nobody knows before the wait gives up on the task.
UNKNOWN_STATUS_LIMIT: Final = 3

# Exponents beyond this only overflow; every delay is capped long before.
_MAX_EXPONENT: Final = 64
# Enough history for the estimates; bounds memory for a wait without a deadline.
_MAX_OBSERVATIONS: Final = 256


class WakeSignal(Protocol):
    """A re-armable wake-up flag, such as :class:`sora_async.callbacks.WakeHint`.

    ``set()`` by whoever learns that the task may be done (a completion callback); the poller
    waits on it while sleeping and clears it before each poll, so a signal that arrives during
    a poll is kept for the next sleep instead of being lost.
    """

    def is_set(self) -> bool: ...

    def clear(self) -> None: ...

    async def wait(self) -> None: ...


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
    rng: RandomSource = random,
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


def _power(base: float, exponent: int) -> float:
    try:
        return float(base ** min(exponent, _MAX_EXPONENT))
    except OverflowError:
        return math.inf
