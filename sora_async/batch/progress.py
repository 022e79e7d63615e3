"""The progress display of ``sora-async batch``.

:class:`Tracker` counts the batch's items by :class:`Phase` (pure bookkeeping, no I/O), and a
display shows it: on a terminal with rich installed (``pip install sora_async[cli]``) an
overall bar with the counts, throughput and ETA, redrawn in place; otherwise (no rich, or
stderr is a pipe or a CI log) plain lines: one per finished item and a status line every
``interval`` seconds when something changed. rich is imported only when it is used.

The progress (bar, status lines, problems) goes to stderr; each item's result line and the
run's notes go to stdout, which carries results only. The throughput, and so the ETA, is
measured over the last minute (a resumed run that waited an hour is not slow now).
"""

from __future__ import annotations

import collections
import enum
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

import attrs

__all__ = [
    "Display",
    "Phase",
    "PlainDisplay",
    "QuietDisplay",
    "Snapshot",
    "Tracker",
    "format_duration",
    "format_status",
    "open_display",
]


class Phase(str, enum.Enum):
    """Where an item of the batch is, as the display counts it."""

    QUEUED = "queued"
    CREATING = "creating"
    RUNNING = "running"
    DOWNLOADING = "downloading"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        return self in _FINAL

    def __str__(self) -> str:
        return self.value


_FINAL = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.UNKNOWN})
_ACTIVE = (Phase.CREATING, Phase.RUNNING, Phase.DOWNLOADING)


@attrs.frozen
class Snapshot:
    """The counts at one moment, with what is derived from them."""

    total: int
    counts: Mapping[Phase, int]
    #: Mean progress (0-100) of the running items that report one, else None.
    mean_progress: float | None
    #: Items that reached a final phase during this run (the throughput's numerator).
    finished_this_run: int
    elapsed: float
    draining: bool = False
    #: Items that ended in the last :data:`RATE_WINDOW` seconds (the recent throughput).
    finished_recently: int = 0

    @property
    def done(self) -> int:
        return sum(self.counts[phase] for phase in _FINAL)

    @property
    def rate_per_minute(self) -> float | None:
        """Items per minute over the last minute; this run's average when none ended in it."""
        if self.finished_this_run == 0 or self.elapsed <= 0:
            return None
        if self.finished_recently:
            return self.finished_recently * 60.0 / min(RATE_WINDOW, self.elapsed)
        return self.finished_this_run * 60.0 / self.elapsed

    @property
    def eta(self) -> float | None:
        """Seconds until the items still to do are done, at this run's pace so far."""
        left = sum(self.counts[phase] for phase in _ACTIVE)
        if not self.draining:
            left += self.counts[Phase.QUEUED]
        if left == 0:
            return 0.0
        rate = self.rate_per_minute
        return None if rate is None else left * 60.0 / rate


#: Seconds over which the throughput is measured.
RATE_WINDOW = 60.0
#: End times kept for the throughput (more would only count beyond the window's need).
_RECENT_KEPT = 10_000


class Tracker:
    """Counts of the batch's items by phase.

    Items start as counts only (:meth:`seed`); an item is tracked one by one from its first
    :meth:`move` until it reaches a final phase, so memory beyond one byte per item stays
    proportional to the work in flight.
    """

    def __init__(self, total: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self._clock = clock
        self._started = clock()
        self._counts = dict.fromkeys(Phase, 0)
        self._phase: dict[int, Phase] = {}
        self._progress: dict[int, int] = {}
        # One byte per item: set once it ended in this run (an item ends once).
        self._ended = bytearray(total)
        self._finished = 0
        self._ended_at: collections.deque[float] = collections.deque(maxlen=_RECENT_KEPT)
        self.draining = False

    def seed(self, phase: Phase, count: int) -> None:
        """Add ``count`` untracked items in ``phase`` (the batch as planned)."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count!r}")
        self._counts[phase] += count

    def phase_of(self, index: int, default: Phase = Phase.QUEUED) -> Phase:
        return self._phase.get(index, default)

    def move(self, index: int, phase: Phase, *, start: Phase = Phase.QUEUED) -> None:
        """Item ``index`` is now in ``phase``; ``start`` is its seeded phase if not tracked yet."""
        if 0 <= index < self.total and self._ended[index]:
            return  # an item reaches one final phase per run
        if phase is not Phase.RUNNING and self._progress:
            self._progress.pop(index, None)
        if phase in _FINAL:  # not phase.is_final: a property call, four times a task
            old = self._phase.pop(index, start)
            self._finished += 1
            self._ended_at.append(self._clock())
            if 0 <= index < self.total:
                self._ended[index] = 1
        else:
            old = self._phase.get(index, start)
            self._phase[index] = phase
        if old is not phase:
            self._counts[old] -= 1
            self._counts[phase] += 1

    def set_progress(self, index: int, progress: int | None) -> None:
        if progress is not None and self._phase.get(index) is Phase.RUNNING:
            self._progress[index] = progress

    @property
    def counts(self) -> dict[Phase, int]:
        return dict(self._counts)

    def snapshot(self) -> Snapshot:
        progress = self._progress.values()
        mean = sum(progress) / len(progress) if progress else None
        now = self._clock()
        while self._ended_at and self._ended_at[0] < now - RATE_WINDOW:
            self._ended_at.popleft()
        return Snapshot(
            total=self.total,
            counts=dict(self._counts),
            mean_progress=mean,
            finished_this_run=self._finished,
            elapsed=now - self._started,
            draining=self.draining,
            finished_recently=len(self._ended_at),
        )


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s`` or ``42s``; ``--`` when unknown."""
    if seconds is None:
        return "--"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_counts(snapshot: Snapshot) -> str:
    counts = snapshot.counts
    parts = []
    for phase in Phase:
        if phase is Phase.UNKNOWN and counts[phase] == 0:
            continue
        text = f"{phase.value} {counts[phase]}"
        if phase is Phase.RUNNING and snapshot.mean_progress is not None:
            text += f" ({snapshot.mean_progress:.0f}%)"
        parts.append(text)
    return ", ".join(parts)


def format_pace(snapshot: Snapshot) -> str:
    rate = snapshot.rate_per_minute
    shown = "--" if rate is None else f"{rate:.1f}"
    return f"{shown}/min, ETA {format_duration(snapshot.eta)}"


def format_status(snapshot: Snapshot) -> str:
    """One plain status line, e.g. ``37/100 done | queued 40, ... | 12.3/min, ETA 3m05s``."""
    head = f"{snapshot.done}/{snapshot.total} done"
    if snapshot.draining:
        head += " (draining: no new creates)"
    return f"{head} | {format_counts(snapshot)} | {format_pace(snapshot)}"


class Display:
    """What the batch runner shows; the base class shows nothing (``--quiet``)."""

    def start(self) -> None:
        """Begin showing (called once, before the first item moves)."""

    def refresh(self) -> None:
        """Called a few times a second; redraw if there is anything new."""

    def item(self, text: str, *, problem: bool = False) -> None:
        """One item reached its end (``problem``: it did not succeed)."""

    def note(self, text: str) -> None:
        """A message about the whole run (a result: on stdout)."""

    def stop(self) -> None:
        """Show the final state and stop drawing. Idempotent."""


class QuietDisplay(Display):
    """``--quiet``: nothing at all."""


class PlainDisplay(Display):
    """Plain lines for pipes and CI logs: one per finished item, a status line now and then."""

    def __init__(
        self,
        tracker: Tracker,
        stream: IO[str],
        *,
        results: IO[str] | None = None,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tracker = tracker
        self._stream = stream
        self._results = results if results is not None else stream
        self._interval = interval
        self._clock = clock
        self._last_at: float | None = None
        self._last_counts: Mapping[Phase, int] | None = None
        self._stopped = False

    def _write(self, text: str, stream: IO[str] | None = None) -> None:
        out = stream if stream is not None else self._stream
        out.write(text + "\n")
        out.flush()

    def _status(self) -> None:
        snapshot = self._tracker.snapshot()
        self._last_at = self._clock()
        self._last_counts = snapshot.counts
        self._write(format_status(snapshot))

    def start(self) -> None:
        self._status()

    def refresh(self) -> None:
        if self._stopped or self._last_at is None:
            return
        if self._clock() - self._last_at < self._interval:
            return
        if self._tracker.counts != self._last_counts:
            self._status()

    def item(self, text: str, *, problem: bool = False) -> None:
        self._write(text, self._results)

    def note(self, text: str) -> None:
        self._write(text, self._results)

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._status()


class _RichDisplay(Display):
    """A live bar on a terminal; failures are printed above it as they happen."""

    def __init__(self, tracker: Tracker, stream: IO[str], results: IO[str] | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self._tracker = tracker
        self._console = Console(file=stream)
        self._results = results
        # Results on the same terminal go above the bar; piped ones go to their pipe.
        shared = results is not None and bool(getattr(results, "isatty", lambda: False)())
        self._live = Live(
            self._render(),
            console=self._console,
            auto_refresh=False,
            transient=False,
            redirect_stdout=shared,
        )
        self._running = False
        self._swapped: list[tuple[logging.StreamHandler[Any], Any]] = []

    def _render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        snapshot = self._tracker.snapshot()
        head = Table.grid(padding=(0, 1))
        head.add_row(
            Text("batch", style="bold"),
            ProgressBar(total=max(1, snapshot.total), completed=snapshot.done, width=40),
            Text(f"{snapshot.done}/{snapshot.total}"),
            Text(format_pace(snapshot), style="cyan"),
        )
        counts = Text(format_counts(snapshot), style="dim")
        if snapshot.draining:
            counts.append("  draining: no new creates (Ctrl-C again stops at once)", "yellow")
        return Group(head, counts)

    def start(self) -> None:
        stderr = sys.stderr
        self._live.start(refresh=True)
        self._running = True
        # Live redirects sys.stderr above the bar; log handlers hold the old stream and would
        # draw through the bar, so they follow the redirect while it lasts.
        if sys.stderr is not stderr:
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream is stderr:
                    self._swapped.append((handler, handler.setStream(sys.stderr)))

    def refresh(self) -> None:
        if self._running:
            self._live.update(self._render(), refresh=True)

    def item(self, text: str, *, problem: bool = False) -> None:
        if problem:
            self._console.print(text, markup=False, highlight=False, style="red")
        if self._results is not None:
            self._result(text)

    def note(self, text: str) -> None:
        if self._results is None:
            self._console.print(text, markup=False, highlight=False)
        else:
            self._result(text)

    def _result(self, text: str) -> None:
        # sys.stdout at call time: while the bar is drawn it may be rich's redirect.
        out = (
            sys.stdout
            if self._results is sys.__stdout__ or self._results is sys.stdout
            else self._results
        )
        assert out is not None
        out.write(text + "\n")
        out.flush()

    def stop(self) -> None:
        if self._running:
            self._running = False
            for handler, stream in self._swapped:
                handler.setStream(stream)
            self._swapped.clear()
            self._live.update(self._render(), refresh=True)
            self._live.stop()


def open_display(
    tracker: Tracker,
    *,
    quiet: bool = False,
    stream: IO[str] | None = None,
    results: IO[str] | None = None,
    interval: float = 10.0,
) -> Display:
    """The display for this terminal: quiet, rich (a TTY with rich installed) or plain lines.

    ``stream`` (default stderr) shows the progress; ``results`` (default: stdout when
    ``stream`` is not given) gets each item's result line and the notes.
    """
    if quiet:
        return QuietDisplay()
    if stream is None:
        stream = sys.stderr
        results = results if results is not None else sys.stdout
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        try:
            return _RichDisplay(tracker, stream, results)
        except ImportError:
            pass
    return PlainDisplay(tracker, stream, results=results, interval=interval)
