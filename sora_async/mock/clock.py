"""Clocks the mock reads task progress from: the real monotonic one, or one a test moves."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Clock", "ManualClock"]

#: Any zero-argument callable returning seconds; only differences between readings matter.
Clock = Callable[[], float]


class ManualClock:
    """A clock that moves only when told to, so tests never sleep to see a task progress."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (never backwards) and return the new reading."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds!r})")
        self._now += seconds
        return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"
