"""WakeHint: the flag a callback sets and the waiting poller of its task awaits."""

from __future__ import annotations

import asyncio

__all__ = ["WakeHint"]


class WakeHint:
    """A wake-up flag for one waiting poller: set by a callback, awaited by the poller.

    Setting it is a hint only (the poller still confirms the state with the provider), so it
    carries no data. ``clear()`` re-arms it.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        self._event.clear()

    async def wait(self) -> None:
        await self._event.wait()

    def __repr__(self) -> str:
        return f"<WakeHint {'set' if self.is_set() else 'unset'}>"
