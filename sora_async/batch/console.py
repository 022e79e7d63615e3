"""What a batch run says to its user: result lines on stdout, notes and errors on stderr, and
each item named by its index and input line.

With ``--log-format json`` every line the run writes to stderr is one JSON object, shaped as
the CLI's log records (:class:`~sora_async.eventlog.JsonFormatter`, logger
``sora_async.batch``): a warning or an error is a record at that level, each item listed under
it a record of its own with the item's fields, and the closing summary a record whose
``event`` is ``batch_summary``, with the counts as fields. stdout is the same in both formats.
"""

from __future__ import annotations

import array
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..eventlog import EVENT_FIELD, JsonFormatter
from .journal import JournalItem
from .progress import Display, QuietDisplay

__all__ = ["SHOWN_PROBLEMS", "Console", "one_line", "refund_text"]

#: Problems listed one by one at the start and in the final summary.
SHOWN_PROBLEMS = 20


def one_line(text: str | None, limit: int = 300) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def refund_text(refunded: bool | None) -> str:
    if refunded is None:
        return "refund not reported"
    return "refunded" if refunded else "not refunded"


class Console:
    """The run's voice; ``display`` is the progress display while the run goes on."""

    def __init__(self, *, quiet: bool, manifest_path: Path, log_json: bool = False) -> None:
        self.quiet = quiet
        self.manifest_path = manifest_path
        self._json = JsonFormatter() if log_json else None
        self.display: Display = QuietDisplay()
        #: Digits of the largest index (labels and file names line up).
        self.width = 5
        #: The input line of each item, by index (4 or 8 bytes an item, whatever the batch).
        self.lines = array.array("L")

    def label(self, index: int) -> str:
        return f"[{index:0{self.width}d}]"

    def line_of(self, index: int) -> int | None:
        return self.lines[index] if index < len(self.lines) else None

    def describe(self, item: JournalItem) -> str:
        line = self.line_of(item.index)
        where = f" line {line}" if line is not None else ""
        return f"{self.label(item.index)}{where} {json.dumps(one_line(item.prompt, 60))}"

    def list(
        self, items: Sequence[JournalItem], detail: Callable[[JournalItem], str], total: int
    ) -> None:
        """The first SHOWN_PROBLEMS of ``total`` items, by name."""
        for item in items[:SHOWN_PROBLEMS]:
            self.detail(
                f"{self.describe(item)}: {detail(item)}",
                index=item.index,
                line=self.line_of(item.index),
                task_id=item.task_id,
                state=item.state.value,
            )
        if total > SHOWN_PROBLEMS:
            more = total - SHOWN_PROBLEMS
            self.detail(f"... and {more} more (see {self.manifest_path})", more=more)

    def detail(self, text: str, **fields: Any) -> None:
        """A line under the last warning or error (indented), e.g. one item of a list."""
        if self._json is not None:
            self._record(logging.WARNING, text, fields)
        else:
            print(f"  {text}", file=sys.stderr, flush=True)

    def summary(self, text: str, **counts: Any) -> None:
        """The run's closing line: on stdout in text (unless quiet), a record in JSON."""
        if self._json is not None:
            self._record(logging.INFO, text, {"event": "batch_summary", **counts})
        elif not self.quiet:
            self.say(text)

    def say(self, text: str) -> None:
        """A line of the run's output (stdout)."""
        if isinstance(self.display, QuietDisplay):
            print(text, flush=True)
        else:
            self.display.note(text)

    def warn(self, text: str) -> None:
        if self._json is not None:
            self._record(logging.WARNING, text, {})
        else:
            print(f"sora-async: {text}", file=sys.stderr, flush=True)

    def error(self, text: str) -> None:
        if self._json is not None:
            self._record(logging.ERROR, text, {})
        else:
            print(f"sora-async: {text}", file=sys.stderr, flush=True)

    def _record(self, level: int, text: str, fields: dict[str, Any]) -> None:
        assert self._json is not None
        record = logging.LogRecord("sora_async.batch", level, __file__, 0, "%s", (text,), None)
        setattr(record, EVENT_FIELD, fields)
        print(self._json.format(record), file=sys.stderr, flush=True)
