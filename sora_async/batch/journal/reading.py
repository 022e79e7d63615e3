"""The journal's read side: items, a run's rows and the manifest's rows, a chunk at a time,
and :func:`read_rows` for a report on a journal no batch holds.

The functions given ``read`` run their queries under the journal's lock (``read()`` yields
its connection, see ``Journal._read``) and build their results after releasing it, so a
read keeps the run's writes waiting only for its SQL.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import operator
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from .types import FileRecord, ItemRow, ItemState, JournalError, JournalItem, manifest_row

__all__ = ["Read", "manifest_rows", "read_rows", "rows", "select", "states", "summary"]

#: The journal's connection, under its lock for the ``with`` block.
Read = Callable[[], AbstractContextManager[sqlite3.Connection]]

# A state by its column value (a dict lookup; ItemState(text) is three calls a row).
_STATES = {state.value: state for state in ItemState}


def summary(read: Read) -> dict[str, int]:
    with read() as conn:
        counts = dict(conn.execute("SELECT state, count(*) FROM items GROUP BY state"))
    return {state.value: int(counts.get(state.value, 0)) for state in ItemState}


def rows(
    read: Read, start: int, stop: int, in_states: tuple[ItemState, ...], limit: int | None
) -> list[ItemRow]:
    where = "WHERE idx >= ? AND idx < ?"
    params: tuple[Any, ...] = (start, stop)
    if in_states:
        where += f" AND state IN ({', '.join('?' * len(in_states))})"
        params += tuple(ItemState(s).value for s in in_states)
    where += " ORDER BY idx"
    if limit is not None:
        where += " LIMIT ?"
        params += (limit,)
    with read() as conn:
        found = conn.execute(
            f"SELECT idx, state, task_id, prompt, request FROM items {where}",  # noqa: S608
            params,
        ).fetchall()
    return [ItemRow(row[0], ItemState(row[1]), row[2], row[3], row[4]) for row in found]


def states(read: Read, start: int, stop: int) -> dict[int, ItemState]:
    with read() as conn:
        found = conn.execute(
            "SELECT idx, state FROM items WHERE idx >= ? AND idx < ?", (start, stop)
        ).fetchall()
    return {idx: ItemState(state) for idx, state in found}


def manifest_rows(read: Read, start: int, stop: int) -> list[dict[str, Any]]:
    with read() as conn:
        found = conn.execute(
            "SELECT i.idx, i.prompt, i.state, i.task_id, i.error, i.refunded,"
            " i.estimated_credits, i.video_urls, i.finished_at, i.create_attempts,"
            " i.resubmits, f.path, f.size, f.sha256"
            " FROM items AS i LEFT JOIN files AS f ON f.idx = i.idx"
            " WHERE i.idx >= ? AND i.idx < ? ORDER BY i.idx, f.path",
            (start, stop),
        ).fetchall()
    found_rows = []
    for _, group in itertools.groupby(found, key=operator.itemgetter(0)):
        first, *more = group
        (idx, prompt, state, task_id, error, refunded, credits, urls, finished_at) = first[:9]
        files = [] if first[11] is None else [first[11:14], *(row[11:14] for row in more)]
        found_rows.append(
            manifest_row(
                index=idx,
                prompt=prompt,
                state=_STATES[state],
                task_id=task_id,
                files=files,
                error=error,
                refunded=None if refunded is None else bool(refunded),
                estimated_credits=credits,
                video_urls=[] if urls == "[]" else json.loads(urls),
                finished_at=finished_at,
                create_attempts=first[9],
                resubmits=first[10],
            )
        )
    return found_rows


def select(read: Read, where: str, params: tuple[Any, ...]) -> list[JournalItem]:
    """The items ``where`` finds, with their files."""
    with read() as conn:
        conn.row_factory = sqlite3.Row
        try:
            order = "" if "ORDER BY" in where else " ORDER BY idx"
            found = conn.execute(f"SELECT * FROM items {where}{order}", params).fetchall()  # noqa: S608
            if len(found) == 1:
                file_rows = conn.execute(
                    "SELECT * FROM files WHERE idx = ? ORDER BY path", (found[0]["idx"],)
                ).fetchall()
            elif found:
                # The files of the rows' index range only: a chunk reads a chunk.
                file_rows = conn.execute(
                    "SELECT * FROM files WHERE idx >= ? AND idx <= ? ORDER BY idx, path",
                    (found[0]["idx"], found[-1]["idx"]),
                ).fetchall()
            else:
                file_rows = []
        finally:
            conn.row_factory = None
    files: dict[int, list[FileRecord]] = {}
    for f in file_rows:
        files.setdefault(f["idx"], []).append(
            FileRecord(
                path=f["path"], size=f["size"], sha256=f["sha256"], recorded_at=f["recorded_at"]
            )
        )
    return [_item_from_row(row, files.get(row["idx"], [])) for row in found]


def read_rows(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The manifest rows of a journal, read without writing to it (for reports).

    Raises :class:`JournalError` at once when the journal cannot be read, including while a
    batch holds it (its manifest is current then). Rows are streamed in index order.
    """
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=0)
        conn.row_factory = sqlite3.Row
        first = conn.execute("SELECT * FROM items ORDER BY idx")
    except sqlite3.Error as exc:
        with contextlib.suppress(UnboundLocalError, sqlite3.Error):
            conn.close()
        raise JournalError(f"cannot read the journal {path}: {exc}") from None

    def streamed() -> Iterator[dict[str, Any]]:
        try:
            for row in first:
                files = [
                    FileRecord(f["path"], f["size"], f["sha256"], f["recorded_at"])
                    for f in conn.execute(
                        "SELECT * FROM files WHERE idx = ? ORDER BY path", (row["idx"],)
                    ).fetchall()
                ]
                yield _item_from_row(row, files).manifest_row()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the journal {path}: {exc}") from None
        finally:
            conn.close()

    return streamed()


def _item_from_row(row: sqlite3.Row, files: list[FileRecord]) -> JournalItem:
    refunded = row["refunded"]
    return JournalItem(
        index=row["idx"],
        prompt=row["prompt"],
        request_json=row["request"],
        state=ItemState(row["state"]),
        task_id=row["task_id"],
        progress=row["progress"],
        error=row["error"],
        refunded=None if refunded is None else bool(refunded),
        estimated_credits=row["estimated_credits"],
        video_urls=tuple(json.loads(row["video_urls"])),
        files=tuple(files),
        create_attempts=row["create_attempts"],
        resubmits=row["resubmits"],
        added_at=row["added_at"],
        intent_at=row["intent_at"],
        task_created_at=row["task_created_at"],
        finished_at=row["finished_at"],
        done_at=row["done_at"],
        updated_at=row["updated_at"],
    )
