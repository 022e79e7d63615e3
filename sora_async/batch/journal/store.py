"""The journal of one batch (:class:`Journal`): its public calls, each checking its arguments
and then taking one step in one transaction.

See the package docstring for the states and the calls that move an item between them. The
steps are in :mod:`.create_steps` and :mod:`.task_steps`, the SQL of a state change in
:mod:`.moves`, the read side in :mod:`.reading`, opening in :mod:`.opening`, and the
connection's transactions (group commit) in :mod:`.connection`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...models import TaskState
from . import create_steps, reading, task_steps
from .checks import (
    check_credits,
    check_file,
    check_index,
    check_progress,
    check_request_json,
    check_text,
    check_urls,
)
from .connection import JournalConnection
from .moves import state_of
from .opening import PREVIOUS_INPUT, open_connection
from .reading import read_rows
from .schema import SCHEMA_VERSION
from .types import (
    CreateOutcome,
    ItemRow,
    ItemState,
    JournalItem,
    classify_create_error,
    describe_error,
)

__all__ = ["SCHEMA_VERSION", "Journal", "read_rows"]

_S = ItemState


class Journal(JournalConnection):
    """The SQLite journal of one batch. Build it with :meth:`Journal.open`."""

    def __init__(self, conn: sqlite3.Connection, path: Path, meta: Mapping[str, str]) -> None:
        super().__init__(conn, path)
        #: The meta table as opened (schema version, input fingerprint, provider, base URL...).
        self.meta = {k: v for k, v in meta.items() if k != PREVIOUS_INPUT}
        self.input_fingerprint = meta["input_fingerprint"]
        #: The input fingerprint the journal had before this open (input_may_grow updates it).
        self.previous_input_fingerprint = meta.get(PREVIOUS_INPUT, self.input_fingerprint)
        self.provider = meta["provider"]
        self.base_url: str | None = json.loads(meta["base_url"])

    # -- opening and closing ------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        input_fingerprint: str,
        provider: str,
        base_url: str | None,
        input_may_grow: bool = False,
    ) -> Journal:
        """Create the journal at ``path`` or reopen it for resuming.

        Refuses (:class:`JournalMismatchError`) a journal made for another input file (unless
        ``input_may_grow``: then the caller checks every known item itself), provider
        or base URL (``None`` means the provider's default; pass the same form each run),
        a journal of a newer schema (:class:`JournalVersionError`) and a journal another
        process holds (:class:`JournalLockedError`). Items interrupted in ``creating`` become
        ``unknown`` before this returns.
        """
        check_text("input_fingerprint", input_fingerprint)
        check_text("provider", provider)
        conn, db_path, meta = open_connection(
            path, input_fingerprint, provider, base_url, input_may_grow=input_may_grow
        )
        return cls(conn, db_path, meta)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Journal {str(self.path)!r} provider={self.provider!r} {state}>"

    # -- registering input ---------------------------------------------------------------------

    def add_items(self, items: Iterable[tuple[int, str, str]], *, canonical: bool = False) -> int:
        """Register input items ``(index, prompt, request_json)`` as ``pending``.

        Items already in the journal are left as they are (that is what resuming means).
        One transaction for all; returns how many were new. ``canonical``: each
        ``request_json`` is request_to_json's own output (a run's planner), taken as it is
        rather than parsed and written again.
        """
        rows = [
            (
                check_index(index),
                check_text("prompt", prompt),
                request if canonical else check_request_json(request),
            )
            for index, prompt, request in items
        ]
        with self._write() as conn:
            now = self._now()
            # No "added" row in the event log: the item's added_at says it (see UNLOGGED).
            cursor = conn.executemany(
                "INSERT OR IGNORE INTO items (idx, prompt, request, state, added_at,"
                " updated_at) VALUES (?, ?, ?, 'pending', ?, ?)",
                [(index, prompt, request, now, now) for index, prompt, request in rows],
            )
            return max(cursor.rowcount, 0)

    # -- creates (write-ahead) ----------------------------------------------------------------

    def record_intent(
        self,
        index: int,
        request_json: str | None,
        prompt: str | None,
        estimated_credits: int | None = None,
    ) -> ItemState:
        """Commit "about to create" BEFORE the create request is sent: -> ``creating``.

        Allowed only for an item never sent (``pending``, or absent: it is added) or known not
        created (``not_created``). Anything else raises :class:`JournalTransitionError`, most
        importantly an item with a task id or an ``unknown`` one: creating it would pay twice.
        ``request_json`` and ``prompt`` None keep the ones the item was registered with (what
        a batch run sends: it made its request from them), and refuse an absent item.
        """
        check_index(index)
        if (request_json is None) is not (prompt is None):
            raise ValueError("request_json and prompt are given together or not at all")
        request = None if request_json is None else check_request_json(request_json)
        if prompt is not None:
            check_text("prompt", prompt)
        check_credits(estimated_credits)
        with self._write() as conn:
            return create_steps.intent(
                conn,
                index,
                now=self._now(),
                request=request,
                prompt=prompt,
                estimated_credits=estimated_credits,
            )

    def record_created(self, index: int, task_id: str) -> ItemState:
        """Commit the task id right after the create answer: -> ``created``.

        From ``creating``, or from ``unknown`` when the id was learnt later. Recording the same
        id again is a no-op; a different id for an item that has one is refused.
        """
        check_index(index)
        check_text("task_id", task_id)
        with self._write() as conn:
            return create_steps.created(conn, index, task_id, self._now())

    def record_not_created(
        self, index: int, error: BaseException | str, *, terminal: bool | None = None
    ) -> ItemState:
        """The create is known not to have happened: ``not_created`` or terminal ``failed``.

        ``terminal=None`` decides from the exception (:func:`classify_create_error`: a definite
        rejection such as 402 is terminal) and treats a plain message as re-queueable.
        Only call this when nothing can have been created; otherwise use :meth:`record_unknown`.
        """
        check_index(index)
        if terminal is None:
            terminal = (
                isinstance(error, BaseException)
                and classify_create_error(error) is CreateOutcome.REJECTED
            )
        text = describe_error(error)
        with self._write() as conn:
            return create_steps.not_created(conn, index, text, terminal=terminal, now=self._now())

    def record_unknown(self, index: int, cause: BaseException | str) -> ItemState:
        """The create may have happened but no task id is known: -> ``unknown``.

        Such an item is reported and never created again unless :meth:`resubmit_unknown`.
        """
        check_index(index)
        text = describe_error(cause)
        with self._write() as conn:
            return create_steps.unknown(conn, index, text, self._now())

    def record_create_error(self, index: int, exc: BaseException) -> ItemState:
        """Record a failed create call by what the exception proves (see classify_create_error)."""
        outcome = classify_create_error(exc)
        if outcome is CreateOutcome.UNKNOWN:
            return self.record_unknown(index, exc)
        return self.record_not_created(index, exc, terminal=outcome is CreateOutcome.REJECTED)

    def resubmit_unknown(self, index: int) -> ItemState:
        """Explicitly allow an ``unknown`` item to be created again (it may then cost twice)."""
        check_index(index)
        with self._write() as conn:
            return create_steps.resubmit(conn, index, self._now())

    def requeue_rejected(self, index: int) -> ItemState:
        """Put an item whose create was definitely rejected back to ``pending``."""
        check_index(index)
        with self._write() as conn:
            return create_steps.requeue(conn, index, self._now())

    def retry_failed(self, index: int) -> ItemState:
        """Send a failed item again (``--retry-failed``, a new payment): ``failed`` -> ``pending``.

        A failed task's id is released from the item (it stays in the event log); nothing
        else ever clears a task id.
        """
        check_index(index)
        with self._write() as conn:
            return create_steps.retry(conn, index, self._now())

    # -- tasks --------------------------------------------------------------------------------

    def record_status(
        self, index: int, state: TaskState | str, progress: int | None = None
    ) -> ItemState:
        """Record a non-terminal poll result (``pending`` or ``running``).

        An item already terminal is left unchanged (a late answer never moves it back), and
        ``running`` is never moved back to ``created``. Writes nothing when nothing changed.
        """
        check_index(index)
        task_state = TaskState(state)
        if task_state.is_terminal:
            raise ValueError("a terminal state is recorded with record_terminal")
        check_progress(progress)
        with self._write() as conn:
            return task_steps.status(conn, index, task_state, progress, self._now())

    def record_terminal(
        self,
        index: int,
        state: TaskState | str,
        error: str | None = None,
        refunded: bool | None = None,
        video_urls: Sequence[str] = (),
    ) -> ItemState:
        """Record the task's end: succeeded -> ``downloading``; failed -> ``failed``.

        Recording the same end again is harmless (a succeeded item's URLs are refreshed when
        given); the opposite end is refused.
        """
        check_index(index)
        task_state = TaskState(state)
        if not task_state.is_terminal:
            raise ValueError("record_terminal takes succeeded or failed")
        urls = check_urls(video_urls)
        with self._write() as conn:
            return task_steps.terminal(
                conn, index, task_state, error=error, refunded=refunded, urls=urls, now=self._now()
            )

    # -- files --------------------------------------------------------------------------------

    def record_download(
        self, index: int, relpath: str | os.PathLike[str], size: int, sha256: str
    ) -> ItemState:
        """Record one file, written whole, at ``relpath`` (relative to the output directory).

        Recording a path again replaces its size and hash (it was fetched again). A path that
        belongs to another item is refused: two items must never share a file.
        """
        check_index(index)
        file = check_file(relpath, size, sha256)
        with self._write() as conn:
            return task_steps.download(conn, index, file, self._now())

    def mark_done(self, index: int) -> ItemState:
        """Every file of a succeeded task is whole: -> ``succeeded``.

        Refused while fewer files than video URLs are recorded.
        """
        check_index(index)
        with self._write() as conn:
            return task_steps.mark_done(conn, index, self._now())

    def record_finished(
        self,
        index: int,
        video_urls: Sequence[str],
        files: Sequence[tuple[str | os.PathLike[str], int, str]],
        *,
        done: bool = True,
    ) -> ItemState:
        """A succeeded task and the files fetched for it (``relpath, size, sha256``), in one
        transaction: the end (unless already recorded), each file, then ``succeeded`` (unless
        ``done`` is False: the download failed; the item stays ``downloading`` with the files
        it has).

        The same as record_terminal, record_download and mark_done called in turn.
        """
        check_index(index)
        urls = check_urls(video_urls)
        checked = [check_file(relpath, size, sha256) for relpath, size, sha256 in files]
        with self._write() as conn:
            finished = task_steps.finish_at_once(
                conn, index, urls, checked, done=done, now=self._now()
            )
            if finished is not None:
                return finished
            # Each step as its own call says, in this call's transaction.
            current, _ = state_of(conn, index)
            state = (
                current
                if current is _S.DOWNLOADING
                else self.record_terminal(index, TaskState.SUCCEEDED, video_urls=urls)
            )
            for path, size, digest in checked:
                state = self.record_download(index, path, size, digest)
            return self.mark_done(index) if done else state

    def set_meta(self, key: str, value: str) -> None:
        """Record one fact about the batch in the meta table (the opening checks own the
        fingerprint, provider and base URL keys)."""
        if key in ("input_fingerprint", "provider", "base_url", "schema_version", "created_at"):
            raise ValueError(f"the meta key {key!r} is not set this way")
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        self.meta[key] = value

    # -- queries ------------------------------------------------------------------------------

    def get(self, index: int) -> JournalItem | None:
        """One item, or None if the journal does not know it."""
        found = reading.select(self._read, "WHERE idx = ?", (check_index(index),))
        return found[0] if found else None

    def items(self, *states: ItemState | str) -> list[JournalItem]:
        """All items in index order, or those in one of ``states``."""
        if not states:
            return reading.select(self._read, "", ())
        values = tuple(ItemState(s).value for s in states)
        marks = ", ".join("?" * len(values))
        return reading.select(self._read, f"WHERE state IN ({marks})", values)

    def unknown(self) -> list[JournalItem]:
        """Items whose create may have happened without a known task id."""
        return self.items(_S.UNKNOWN)

    def summary(self) -> dict[str, int]:
        """How many items are in each state (every state listed, zeros included)."""
        return reading.summary(self._read)

    def rows(
        self, start: int, stop: int, *states: ItemState, limit: int | None = None
    ) -> list[ItemRow]:
        """The items ``start <= index < stop`` (of ``states``, or all; the first ``limit``)
        without their files: what a run needs to plan and to feed its jobs, a chunk at a time."""
        return reading.rows(self._read, start, stop, states, limit)

    def states(self, start: int, stop: int) -> dict[int, ItemState]:
        """The state of each item ``start <= index < stop``."""
        return reading.states(self._read, start, stop)

    def items_between(self, start: int, stop: int) -> list[JournalItem]:
        """The items ``start <= index < stop`` with their files (the manifest, a chunk at a
        time, so a big journal is never all in memory)."""
        return reading.select(self._read, "WHERE idx >= ? AND idx < ?", (start, stop))

    def manifest_rows(self, start: int, stop: int) -> list[dict[str, Any]]:
        """The manifest rows (:meth:`JournalItem.manifest_row`) of the items ``start <= index <
        stop``, read in one query without an item object per row: what the manifest and
        index.html stream, a chunk at a time."""
        return reading.manifest_rows(self._read, start, stop)

    def first_items(self, limit: int, *states: ItemState) -> list[JournalItem]:
        """The first ``limit`` items in one of ``states`` (what a message lists by name)."""
        values = tuple(ItemState(s).value for s in states)
        marks = ", ".join("?" * len(values))
        return reading.select(
            self._read, f"WHERE state IN ({marks}) ORDER BY idx LIMIT ?", (*values, limit)
        )
