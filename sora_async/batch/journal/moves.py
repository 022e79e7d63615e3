"""The SQL of an item's state changes, each checked against the transition table.

A change is one UPDATE of the item's row, and an event row when the event log keeps it (see
:data:`.states.UNLOGGED`). The usual path's changes find the item in the state they start
from instead of reading it first; their statements are built once a shape and kept.
Every function takes the connection of a transaction the caller has open.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from .states import TRANSITIONS, UNLOGGED, logged
from .states import check as check_transition
from .types import ItemState, JournalTransitionError, utc_now

__all__ = [
    "INCREMENT",
    "ROW_TASK_ID",
    "advance",
    "log",
    "move",
    "record_file",
    "shift",
    "state_name",
    "state_of",
]

_S = ItemState
#: A column value for :func:`move` meaning "the current value plus one".
INCREMENT = object()
#: :func:`advance`'s task_id meaning "the row's own".
ROW_TASK_ID = object()
# The usual path's transitions the table allowed once: the table is constant, so each
# (event, sources, target) is checked on first use, not at every write.
_USUAL_CHECKED: set[tuple[str, tuple[ItemState, ...], ItemState]] = set()


def state_of(conn: sqlite3.Connection, index: int) -> tuple[ItemState | None, str | None]:
    row = conn.execute("SELECT state, task_id FROM items WHERE idx = ?", (index,)).fetchone()
    if row is None:
        return None, None
    return ItemState(row[0]), row[1]


def state_name(state: ItemState | None) -> str:
    """A state as a refusal's message names it."""
    return "absent" if state is None else state.value


def move(
    conn: sqlite3.Connection,
    index: int,
    event: str,
    *,
    old: ItemState,
    new: ItemState,
    now: str | None = None,
    columns: Mapping[str, Any] | None = None,
    task_id: str | None = None,
    detail: str | None = None,
) -> ItemState:
    check_transition(index, event, old, new)
    now = now or utc_now()
    _update(conn, index, new, now, columns)
    if (old is not new or event != "status") and logged(event, old, new):
        log(conn, index, now, event, old=old, new=new, task_id=task_id, detail=detail)
    return new


def shift(
    conn: sqlite3.Connection,
    index: int,
    event: str,
    *,
    old: tuple[ItemState, ...],
    new: ItemState,
    now: str,
    columns: Mapping[str, Any],
    when: str = "",
    when_params: Sequence[Any] = (),
) -> bool:
    """A usual-path state change (one the event log does not record) in one statement,
    without reading the item first: the row is updated only in one of the states ``old``
    and only if ``when`` holds. False, with nothing written, when it is not so: the caller
    then reads the item and says why, or sees a harmless repeat."""
    if (event, old, new) not in _USUAL_CHECKED:
        for source in old:
            check_transition(index, event, source, new)
            assert (event, source, new) in UNLOGGED, (event, source, new)
        _USUAL_CHECKED.add((event, old, new))
    changed = _update(conn, index, new, now, columns, sources=old, when=when, params=when_params)
    return changed == 1


def advance(
    conn: sqlite3.Connection,
    index: int,
    event: str,
    *,
    new: ItemState,
    now: str,
    columns: Mapping[str, Any],
    task_id: str | object | None = None,
    detail: str | None = None,
    when: str = "",
) -> bool:
    """A logged state change, without reading the item first: the event is
    logged from the item's own row (``INSERT ... SELECT``, which finds the row only in a
    state the table lets ``event`` start from, and only ``when`` holds), then the row is
    updated. False, with nothing written, when the row is not found so: the caller then
    reads the item and says why, or sees a harmless repeat.
    ``task_id`` :data:`ROW_TASK_ID` logs the row's own task id.
    """
    sources = sorted(TRANSITIONS[event].sources)
    for old in sources:
        check_transition(index, event, old, new)
    row_id = "task_id" if task_id is ROW_TASK_ID else "?"
    params = [now, event, new.value] + ([] if task_id is ROW_TASK_ID else [task_id])
    cursor = conn.execute(
        "INSERT INTO events (idx, at, event, from_state, to_state, task_id, detail)"  # noqa: S608
        f" SELECT idx, ?, ?, state, ?, {row_id}, ? FROM items WHERE idx = ?"
        f" AND state IN ({', '.join('?' * len(sources))}){when}",
        (*params, detail, index, *(old.value for old in sources)),
    )
    if cursor.rowcount == 0:
        return False
    _update(conn, index, new, now, columns)
    return True


def record_file(conn: sqlite3.Connection, index: int, file: tuple[str, int, str], now: str) -> bool:
    """record_download's usual case (the item downloading, the path its own or new)
    in one statement, without reading first; False, nothing written, otherwise."""
    path, size, digest = file
    if ("file", (_S.DOWNLOADING,), _S.DOWNLOADING) not in _USUAL_CHECKED:
        check_transition(index, "file", _S.DOWNLOADING, _S.DOWNLOADING)
        _USUAL_CHECKED.add(("file", (_S.DOWNLOADING,), _S.DOWNLOADING))
    try:
        cursor = conn.execute(
            "INSERT INTO files (idx, path, size, sha256, recorded_at)"
            " SELECT idx, ?, ?, ?, ? FROM items WHERE idx = ? AND state = ?"
            " ON CONFLICT (idx, path) DO UPDATE SET size = excluded.size,"
            " sha256 = excluded.sha256, recorded_at = excluded.recorded_at",
            (path, size, digest, now, index, _S.DOWNLOADING.value),
        )
    except sqlite3.IntegrityError:
        # The path is another item's (UNIQUE): refused, and this call's writes undone.
        owner = conn.execute("SELECT idx FROM files WHERE path = ?", (path,)).fetchone()
        raise JournalTransitionError(
            index,
            _S.DOWNLOADING,
            f"file {path!r} is already recorded for item {owner[0] if owner else None}",
        ) from None
    return cursor.rowcount == 1


def _update(
    conn: sqlite3.Connection,
    index: int,
    new: ItemState,
    now: str,
    columns: Mapping[str, Any] | None,
    *,
    sources: Sequence[ItemState] = (),
    when: str = "",
    params: Sequence[Any] = (),
) -> int:
    """Set the item's state and ``columns`` (only in one of ``sources``, if given, and only
    where ``when``, with ``params``, holds); how many rows changed."""
    values = {"updated_at": now, **(columns or {})}
    key = (new, tuple(values), tuple(sources), when)
    sql = _UPDATES.get(key)
    if sql is None:
        sql = _UPDATES[key] = _update_sql(new, values, sources, when)
    bound = [value for value in values.values() if value is not INCREMENT]
    bound.append(index)
    bound.extend(params)
    return conn.execute(sql, bound).rowcount


#: _update's statements by (state, column names, sources, condition): a task's usual writes
#: are four shapes, built once, not a string join a write on the journal's thread.
_UPDATES: dict[tuple[ItemState, tuple[str, ...], tuple[ItemState, ...], str], str] = {}
#: The columns _update counts up (their value is always INCREMENT, so a statement's shape
#: follows from the column names alone).
_COUNTERS = frozenset({"create_attempts", "resubmits"})


def _update_sql(
    new: ItemState, values: Mapping[str, Any], sources: Sequence[ItemState], when: str
) -> str:
    parts = [f"state = '{new.value}'"]
    for name, value in values.items():
        if (value is INCREMENT) is not (name in _COUNTERS):
            raise ValueError(f"the column {name} is counted up, and only counted up")
        # Column names and states are literals of this module, never callers' data.
        parts.append(f"{name} = {name} + 1" if name in _COUNTERS else f"{name} = ?")
    where = "idx = ?"
    if sources:
        where += f" AND state IN ({', '.join(repr(source.value) for source in sources)})"
    return f"UPDATE items SET {', '.join(parts)} WHERE {where}{when}"  # noqa: S608


def log(
    conn: sqlite3.Connection,
    index: int,
    at: str,
    event: str,
    *,
    old: ItemState | None,
    new: ItemState,
    task_id: str | None = None,
    detail: str | None = None,
) -> None:
    """One row of the event log (the table's triggers keep it append-only)."""
    conn.execute(
        "INSERT INTO events (idx, at, event, from_state, to_state, task_id, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (index, at, event, None if old is None else old.value, new.value, task_id, detail),
    )
