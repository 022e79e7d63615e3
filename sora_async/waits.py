"""The back-off waits of retried calls and downloads, and the clock they are measured on.

The transport and the downloader sleep with :func:`sleep` and measure their deadlines with
:func:`clock` unless given their own. In production these are ``anyio.sleep`` and
``time.monotonic``. :func:`set_testing` (modelled on stamina's) lets the tests of code that
uses this SDK, and the SDK's own, retry without waiting: each wait is cut to ``max_wait``, and
the task that waited sees its clock move by the whole wait, so the same tries are made and a
deadline ends them at the same point as in a real run. The skipped time belongs to the task
that skipped it (a context variable): another task's deadlines are not moved.

A deadline that several tasks wait for (the governor's account-wide 429 pause) is kept on a
:class:`SharedClock` instead: one time for every task that reads it.
"""

from __future__ import annotations

import contextvars
import math
import time

import anyio

__all__ = ["SharedClock", "clock", "is_testing", "set_testing", "sleep"]


class _Testing:
    #: The longest a back-off wait really lasts while testing; None when not testing.
    max_wait: float | None = None


#: Seconds this task's waits were cut short by (only while testing).
_skipped: contextvars.ContextVar[float] = contextvars.ContextVar(
    "sora_async_skipped_wait", default=0.0
)


def set_testing(testing: bool, *, max_wait: float = 0.0) -> None:
    """Turn the testing waits on (each back-off wait at most ``max_wait`` seconds) or off.

    Process-wide, for test suites (a fixture turns it on and off). Nothing but the length of
    the real waits changes: the tries, their order and the point where a deadline stops them
    are those of a real run.
    """
    if testing and not (max_wait >= 0 and math.isfinite(max_wait)):
        raise ValueError(f"max_wait must be a finite number >= 0, got {max_wait!r}")
    _Testing.max_wait = max_wait if testing else None


def is_testing() -> bool:
    """Whether :func:`set_testing` has cut the waits short."""
    return _Testing.max_wait is not None


def clock() -> float:
    """Monotonic seconds, plus the waits this task skipped while testing."""
    return time.monotonic() + _skipped.get()


async def sleep(seconds: float) -> None:
    """Wait ``seconds`` (a back-off); while testing, at most ``max_wait`` of them really."""
    cap = _Testing.max_wait
    if cap is None or seconds <= cap:
        await anyio.sleep(seconds)
        return
    _skipped.set(_skipped.get() + seconds - cap)
    await anyio.sleep(cap)


class SharedClock:
    """A clock and a sleep for deadlines that several tasks set and wait for.

    In production, ``time.monotonic`` and ``anyio.sleep``. While testing, a wait cut short
    moves this clock (for every task that reads it) to where the whole wait would have ended,
    so a deadline one task set is over for the others once any of them has waited it out.
    """

    def __init__(self) -> None:
        self._ahead = 0.0

    def clock(self) -> float:
        """Monotonic seconds, plus the waits skipped on this clock while testing."""
        return time.monotonic() + self._ahead

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; while testing, at most ``max_wait`` of them really."""
        cap = _Testing.max_wait
        if cap is None or seconds <= cap:
            await anyio.sleep(seconds)
            return
        wake = self.clock() + seconds
        await anyio.sleep(cap)
        self._ahead = max(self._ahead, wake - time.monotonic())
