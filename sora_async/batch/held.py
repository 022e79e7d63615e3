"""Task ids the journal could not take: kept beside it, shown, and adopted by the next run.

A task id the process holds must reach durable storage or the user's screen, or the next run
would see the item as "unknown" and a resubmit would pay twice. When the journal refuses the
write (a full or failing disk), the id goes to ``DIR/.sora-held-task-ids.jsonl`` (appended,
fsynced) and on stderr; the next run records these ids in the journal before it plans, so the
tasks are adopted, never created again.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import attrs

__all__ = ["HELD_NAME", "HeldTask", "append_held", "forget_held", "read_held"]

HELD_NAME = ".sora-held-task-ids.jsonl"


@attrs.frozen
class HeldTask:
    index: int
    task_id: str
    prompt: str


def append_held(out: Path, held: HeldTask) -> bool:
    """Append ``held`` durably; False when even this file cannot be written."""
    line = json.dumps(attrs.asdict(held), ensure_ascii=False) + "\n"
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / HELD_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        return False
    return True


def read_held(out: Path) -> Iterator[HeldTask]:
    """The ids an earlier run held; a torn last line (a crash mid-append) is skipped."""
    with contextlib.suppress(FileNotFoundError), (out / HELD_NAME).open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
                yield HeldTask(int(row["index"]), str(row["task_id"]), str(row["prompt"]))
            except (ValueError, KeyError, TypeError):
                continue


def forget_held(out: Path) -> None:
    """Every held id is in the journal now."""
    with contextlib.suppress(FileNotFoundError):
        (out / HELD_NAME).unlink()
