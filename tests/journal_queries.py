"""Questions only the tests ask a journal (the batch runner needs none of them).

They read through the journal's own connection and lock, as its methods do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sora_async.batch.journal import ItemState, Journal, JournalEvent, JournalItem
from sora_async.durable import write_lines_atomically

_S = ItemState


def durability(journal: Journal) -> dict[str, str]:
    """The SQLite settings in force: WAL, FULL sync, exclusive lock."""
    with journal._read() as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
        locking = conn.execute("PRAGMA locking_mode").fetchone()[0]
    sync_names = {0: "off", 1: "normal", 2: "full", 3: "extra"}
    return {
        "journal_mode": str(mode).lower(),
        "synchronous": sync_names.get(int(sync), str(sync)),
        "locking_mode": str(locking).lower(),
    }


def pending_creates(journal: Journal) -> list[JournalItem]:
    """Items to create: never sent (``pending``) or known not created (``not_created``)."""
    return journal.items(_S.PENDING, _S.NOT_CREATED)


def to_poll(journal: Journal) -> list[JournalItem]:
    """Items with a live task (``created``, ``running``)."""
    return journal.items(_S.CREATED, _S.RUNNING)


def to_download(journal: Journal) -> list[JournalItem]:
    """Succeeded tasks whose files are not all recorded (``downloading``)."""
    return journal.items(_S.DOWNLOADING)


def rejected(journal: Journal) -> list[JournalItem]:
    """Failed items that never got a task id (definite rejections of the create)."""
    return [item for item in journal.items(_S.FAILED) if item.task_id is None]


def history(journal: Journal, index: int | None = None) -> list[JournalEvent]:
    """The append-only event log, of one item or of all, oldest first."""
    where, params = ("WHERE idx = ?", (index,)) if index is not None else ("", ())
    with journal._read() as conn:
        rows = conn.execute(
            "SELECT seq, idx, at, event, from_state, to_state, task_id, detail"  # noqa: S608
            f" FROM events {where} ORDER BY seq",
            params,
        ).fetchall()
    return [
        JournalEvent(
            seq=row[0],
            index=row[1],
            at=row[2],
            event=row[3],
            from_state=None if row[4] is None else ItemState(row[4]),
            to_state=ItemState(row[5]),
            task_id=row[6],
            detail=row[7],
        )
        for row in rows
    ]


def task_ids(journal: Journal) -> dict[int, str]:
    """Every task id recorded, by item index."""
    return {item.index: item.task_id for item in journal.items() if item.task_id is not None}


def manifest_rows(journal: Journal) -> list[dict[str, Any]]:
    """One JSON-ready dict per item, in index order."""
    return [item.manifest_row() for item in journal.items()]


def write_manifest(journal: Journal, path: str | os.PathLike[str]) -> Path:
    """The journal's rows as ``manifest.jsonl``, written atomically."""
    rows = (json.dumps(row, ensure_ascii=False) + "\n" for row in manifest_rows(journal))
    return write_lines_atomically(path, rows)
