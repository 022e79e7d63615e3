"""An item's create as the journal records it, one function a step: the intent written ahead
of the request, its task id, "nothing was created", a doubtful outcome, and the explicit
second tries (resubmit, requeue, retry).

Each function runs in the transaction (or savepoint) the caller holds open on ``conn``, with
its arguments already checked, and returns the item's new state or raises
:class:`JournalTransitionError` (the caller's transaction then undoes what it wrote).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from .moves import INCREMENT, move, shift, state_name, state_of
from .types import ItemState, JournalTransitionError

__all__ = ["created", "intent", "not_created", "requeue", "resubmit", "retry", "unknown"]

_S = ItemState
_SENDABLE = (_S.PENDING, _S.NOT_CREATED)


def intent(
    conn: sqlite3.Connection,
    index: int,
    *,
    now: str,
    request: str | None,
    prompt: str | None,
    estimated_credits: int | None,
) -> ItemState:
    columns: dict[str, Any] = {
        "estimated_credits": estimated_credits,
        "error": None,
        "intent_at": now,
        "create_attempts": INCREMENT,
    }
    if request is not None:
        columns.update(prompt=prompt, request=request)
    if shift(conn, index, "intent", old=(_S.PENDING,), new=_S.CREATING, now=now, columns=columns):
        return _S.CREATING
    state, task_id = state_of(conn, index)
    if state is None:
        if request is None:
            raise JournalTransitionError(
                index, None, "not registered, and no request given to create"
            )
        conn.execute(
            "INSERT INTO items (idx, prompt, request, state, added_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (index, prompt, request, _S.PENDING.value, now, now),
        )
        state = _S.PENDING
    if state not in _SENDABLE:
        raise JournalTransitionError(index, state, _refuse_create(state, task_id))
    return move(conn, index, "intent", old=state, new=_S.CREATING, now=now, columns=columns)


def _refuse_create(state: ItemState, task_id: str | None) -> str:
    if task_id is not None:
        return (
            f"already has task {task_id!r} (state {state.value}); creating it again would pay twice"
        )
    if state is _S.UNKNOWN:
        return (
            "its earlier create may have happened (state unknown); it is only sent again "
            "after an explicit resubmit (--resubmit-unknown)"
        )
    if state is _S.CREATING:
        return "a create is already in flight; record its outcome first"
    return f"not waiting to be created (state {state.value}; requeue_rejected re-queues it)"


def created(conn: sqlite3.Connection, index: int, task_id: str, now: str) -> ItemState:
    columns = {"task_id": task_id, "error": None, "task_created_at": now}
    try:
        if shift(
            conn,
            index,
            "created",
            old=(_S.CREATING,),
            new=_S.CREATED,
            now=now,
            columns=columns,
            when=" AND task_id IS NULL",
        ):
            return _S.CREATED
    except sqlite3.IntegrityError:
        # The id is another item's (UNIQUE): refused, and this call's writes undone.
        state, _ = state_of(conn, index)
        owner = conn.execute("SELECT idx FROM items WHERE task_id = ?", (task_id,)).fetchone()
        raise JournalTransitionError(
            index,
            state,
            f"task {task_id!r} already belongs to item {owner[0] if owner else None}",
        ) from None
    state, current = state_of(conn, index)
    if current is not None:
        if current == task_id and state is not None:
            return state
        raise JournalTransitionError(
            index, state, f"already has task {current!r}; refusing to replace it"
        )
    if state not in (_S.CREATING, _S.UNKNOWN):
        raise JournalTransitionError(
            index, state, f"no create in flight (state {state_name(state)}) to give an id to"
        )
    owner = conn.execute("SELECT idx FROM items WHERE task_id = ?", (task_id,)).fetchone()
    if owner is not None:
        raise JournalTransitionError(
            index, state, f"task {task_id!r} already belongs to item {owner[0]}"
        )
    return move(
        conn,
        index,
        "created",
        old=state,
        new=_S.CREATED,
        now=now,
        columns=columns,
        task_id=task_id,
    )


def not_created(
    conn: sqlite3.Connection, index: int, text: str, *, terminal: bool, now: str
) -> ItemState:
    state, _ = state_of(conn, index)
    if state is not _S.CREATING:
        raise JournalTransitionError(
            index, state, f"no create in flight (state {state_name(state)})"
        )
    event = "rejected" if terminal else "not_created"
    new = _S.FAILED if terminal else _S.NOT_CREATED
    columns = {"error": text, "finished_at": now if terminal else None}
    return move(conn, index, event, old=state, new=new, now=now, columns=columns, detail=text)


def unknown(conn: sqlite3.Connection, index: int, text: str, now: str) -> ItemState:
    state, _ = state_of(conn, index)
    if state not in (_S.CREATING, _S.UNKNOWN):
        raise JournalTransitionError(
            index, state, f"no create in flight (state {state_name(state)})"
        )
    columns = {"error": text}
    return move(
        conn, index, "unknown", old=state, new=_S.UNKNOWN, now=now, columns=columns, detail=text
    )


def resubmit(conn: sqlite3.Connection, index: int, now: str) -> ItemState:
    state, _ = state_of(conn, index)
    if state is not _S.UNKNOWN:
        raise JournalTransitionError(
            index,
            state,
            f"only an unknown item can be resubmitted (state {state_name(state)})",
        )
    columns = {"error": None, "resubmits": INCREMENT}
    # The cause of the doubt stays in the event log.
    previous = conn.execute("SELECT error FROM items WHERE idx = ?", (index,)).fetchone()
    return move(
        conn,
        index,
        "resubmitted",
        old=state,
        new=_S.PENDING,
        now=now,
        columns=columns,
        detail=previous[0],
    )


def requeue(conn: sqlite3.Connection, index: int, now: str) -> ItemState:
    state, task_id = state_of(conn, index)
    if state is not _S.FAILED or task_id is not None:
        raise JournalTransitionError(
            index,
            state,
            "only a failed item without a task id can be re-queued "
            f"(state {state_name(state)}, task {task_id!r})",
        )
    columns = {"error": None, "finished_at": None}
    return move(conn, index, "requeued", old=state, new=_S.PENDING, now=now, columns=columns)


def retry(conn: sqlite3.Connection, index: int, now: str) -> ItemState:
    state, task_id = state_of(conn, index)
    if state is not _S.FAILED:
        raise JournalTransitionError(
            index, state, f"only a failed item can be retried (state {state_name(state)})"
        )
    previous = conn.execute("SELECT error FROM items WHERE idx = ?", (index,)).fetchone()
    columns = {
        "task_id": None,
        "error": None,
        "refunded": None,
        "progress": None,
        "video_urls": "[]",
        "task_created_at": None,
        "finished_at": None,
    }
    return move(
        conn,
        index,
        "retried",
        old=state,
        new=_S.PENDING,
        now=now,
        columns=columns,
        task_id=task_id,
        detail=previous[0],
    )
