"""A created task as the journal records it, one function a step: its polled progress, its
end, each file fetched, and "succeeded" once every file is whole.

Each function runs in the transaction (or savepoint) the caller holds open on ``conn``, with
its arguments already checked, and returns the item's new state or raises
:class:`JournalTransitionError` (the caller's transaction then undoes what it wrote).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from ...models import TaskState
from .moves import ROW_TASK_ID, advance, move, record_file, shift, state_name, state_of
from .types import ItemState, JournalTransitionError, canonical_json

__all__ = ["download", "finish_at_once", "mark_done", "status", "terminal"]

_S = ItemState


def status(
    conn: sqlite3.Connection, index: int, task_state: TaskState, progress: int | None, now: str
) -> ItemState:
    current, _ = state_of(conn, index)
    if current in (_S.DOWNLOADING, _S.SUCCEEDED, _S.FAILED):
        return current
    if current is None or current not in (_S.CREATED, _S.RUNNING):
        raise JournalTransitionError(
            index, current, f"no task to poll (state {state_name(current)})"
        )
    new = _S.RUNNING if task_state is TaskState.RUNNING else current
    old_progress = conn.execute("SELECT progress FROM items WHERE idx = ?", (index,)).fetchone()[0]
    # An answer without progress does not forget the last one seen.
    progress = old_progress if progress is None else progress
    if new is current and progress == old_progress:
        return current
    return move(
        conn, index, "status", old=current, new=new, now=now, columns={"progress": progress}
    )


def terminal(
    conn: sqlite3.Connection,
    index: int,
    task_state: TaskState,
    *,
    error: str | None,
    refunded: bool | None,
    urls: list[str],
    now: str,
) -> ItemState:
    succeeded = task_state is TaskState.SUCCEEDED
    new = _S.DOWNLOADING if succeeded else _S.FAILED
    columns = {
        "error": error,
        "refunded": None if refunded is None else int(bool(refunded)),
        "video_urls": canonical_json(urls),
        "finished_at": now,
    }
    if succeeded:
        moved = shift(
            conn,
            index,
            "terminal",
            old=(_S.CREATED, _S.RUNNING),
            new=new,
            now=now,
            columns=columns,
            when=" AND task_id IS NOT NULL",
        )
    else:
        moved = advance(
            conn,
            index,
            "terminal",
            new=new,
            now=now,
            columns=columns,
            task_id=ROW_TASK_ID,
            detail=error,
            when=" AND task_id IS NOT NULL",
        )
    if moved:
        return new
    current, task_id = state_of(conn, index)
    if current is None or task_id is None:
        raise JournalTransitionError(
            index, current, f"no task to end (state {state_name(current)})"
        )
    if current in (_S.DOWNLOADING, _S.SUCCEEDED) and succeeded:
        if urls and current is _S.DOWNLOADING:
            conn.execute(
                "UPDATE items SET video_urls = ?, updated_at = ? WHERE idx = ?",
                (canonical_json(urls), now, index),
            )
        return current
    if current is _S.FAILED and not succeeded:
        return current
    if current not in (_S.CREATED, _S.RUNNING):
        raise JournalTransitionError(
            index, current, f"already ended as {current.value}, cannot become {task_state}"
        )
    return move(
        conn,
        index,
        "terminal",
        old=current,
        new=new,
        now=now,
        columns=columns,
        task_id=task_id,
        detail=error,
    )


def download(
    conn: sqlite3.Connection, index: int, file: tuple[str, int, str], now: str
) -> ItemState:
    if record_file(conn, index, file, now):
        return _S.DOWNLOADING
    path, size, digest = file
    current, _ = state_of(conn, index)
    known = conn.execute("SELECT idx, size, sha256 FROM files WHERE path = ?", (path,)).fetchone()
    if known is not None and known[0] != index:
        raise JournalTransitionError(
            index, current, f"file {path!r} is already recorded for item {known[0]}"
        )
    if current is _S.SUCCEEDED and known is not None and tuple(known[1:]) == (size, digest):
        return current
    # record_file writes the file of any item downloading.
    raise JournalTransitionError(index, current, f"not downloading (state {state_name(current)})")


def mark_done(conn: sqlite3.Connection, index: int, now: str) -> ItemState:
    current, _ = state_of(conn, index)
    if current is _S.SUCCEEDED:
        return current
    if current is not _S.DOWNLOADING:
        raise JournalTransitionError(
            index, current, f"not downloading (state {state_name(current)})"
        )
    urls = json.loads(
        conn.execute("SELECT video_urls FROM items WHERE idx = ?", (index,)).fetchone()[0]
    )
    count = conn.execute("SELECT count(*) FROM files WHERE idx = ?", (index,)).fetchone()
    if count[0] < len(urls):
        raise JournalTransitionError(
            index, current, f"only {count[0]} of {len(urls)} files recorded"
        )
    return move(
        conn, index, "done", old=current, new=_S.SUCCEEDED, now=now, columns={"done_at": now}
    )


def finish_at_once(
    conn: sqlite3.Connection,
    index: int,
    urls: list[str],
    files: Sequence[tuple[str, int, str]],
    *,
    done: bool,
    now: str,
) -> ItemState | None:
    """record_finished's usual case, one statement a file and one for "succeeded", nothing
    read: the end is recorded with these URLs (posted as the download began), and with these
    files every URL has one. None when it is not so: the caller then takes each step as its
    own call says (a file written here again: the same)."""
    recorded = all(record_file(conn, index, file, now) for file in files)
    if recorded and not done and files:
        return _S.DOWNLOADING
    if recorded and done:
        when = " AND video_urls = ? AND (SELECT count(*) FROM files WHERE idx = ?) >= ?"
        if shift(
            conn,
            index,
            "done",
            old=(_S.DOWNLOADING,),
            new=_S.SUCCEEDED,
            now=now,
            columns={"done_at": now},
            when=when,
            when_params=(canonical_json(urls), index, len(urls)),
        ):
            return _S.SUCCEEDED
    return None
