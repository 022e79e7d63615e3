"""One task's status as a single line on a terminal, redrawn in place while it runs.

Between two polls (four seconds apart by default) a user would otherwise see nothing; the
line's clock moves every half second, and each status the poller sees updates its state and
percentage. Off a terminal it draws nothing: piped or logged stderr gets no carriage returns.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Final, TextIO

import anyio

from ..models import TaskStatus

__all__ = ["StatusLine", "status_line"]

#: How often the elapsed time is redrawn, seconds.
REDRAW: Final = 0.5
# Carriage return, then erase to the end of the line: the new text replaces the old.
_REWRITE: Final = "\r\x1b[K"


class StatusLine:
    """The line's text and its drawing; ``update`` is the poller's ``on_progress``."""

    def __init__(
        self, stream: TextIO, task_id: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stream = stream
        self._task_id = task_id
        self._clock = clock
        self._started = clock()
        self._state = "waiting"
        self._progress: float | None = None
        self._drawn = False

    def text(self) -> str:
        elapsed = self._clock() - self._started
        shown = f" {self._progress:g}%" if self._progress is not None else ""
        return f"{self._task_id}: {self._state}{shown}, {elapsed:.0f}s elapsed"

    def update(self, status: TaskStatus) -> None:
        self._state = status.state.value
        self._progress = status.progress
        self.draw()

    def draw(self) -> None:
        self._stream.write(_REWRITE + self.text())
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the line, so that what is printed next starts on its own."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()


@contextlib.asynccontextmanager
async def status_line(stream: TextIO, task_id: str) -> AsyncIterator[StatusLine | None]:
    """A :class:`StatusLine` kept ticking while the block runs; None off a terminal."""
    if not stream.isatty():
        yield None
        return
    line = StatusLine(stream, task_id)
    try:
        async with anyio.create_task_group() as group:

            async def tick() -> None:
                while True:
                    line.draw()
                    await anyio.sleep(REDRAW)

            group.start_soon(tick)
            try:
                yield line
            finally:
                group.cancel_scope.cancel()
    finally:
        line.close()
