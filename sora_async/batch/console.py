"""What a batch run says to its user: result lines on stdout, notes and errors on stderr, and
each item named by its index and input line."""

from __future__ import annotations

import array
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

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

    def __init__(self, *, quiet: bool, manifest_path: Path) -> None:
        self.quiet = quiet
        self.manifest_path = manifest_path
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
            print(f"  {self.describe(item)}: {detail(item)}", file=sys.stderr)
        if total > SHOWN_PROBLEMS:
            print(
                f"  ... and {total - SHOWN_PROBLEMS} more (see {self.manifest_path})",
                file=sys.stderr,
            )

    def say(self, text: str) -> None:
        """A line of the run's output (stdout)."""
        if isinstance(self.display, QuietDisplay):
            print(text, flush=True)
        else:
            self.display.note(text)

    def warn(self, text: str) -> None:
        print(f"sora-async: {text}", file=sys.stderr, flush=True)

    def error(self, text: str) -> None:
        print(f"sora-async: {text}", file=sys.stderr, flush=True)
