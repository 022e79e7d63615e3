"""The journal's SQLite store: schema, opening, every state change as one durable transaction.

See the package docstring for the states and the calls that move an item between them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import operator
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ...durable import fsync_directory
from ...models import TaskState
from .states import TRANSITIONS, UNLOGGED, logged
from .states import check as check_transition
from .types import (
    CreateOutcome,
    FileRecord,
    ItemRow,
    ItemState,
    JournalError,
    JournalItem,
    JournalLockedError,
    JournalMismatchError,
    JournalOpenError,
    JournalTransitionError,
    JournalVersionError,
    canonical_json,
    classify_create_error,
    describe_error,
    manifest_row,
    utc_now,
)

__all__ = ["SCHEMA_VERSION", "Journal", "read_rows"]

#: The layout this module writes; a journal with a higher number is refused.
SCHEMA_VERSION = 2
# PRAGMA application_id marks the file as ours ("SorA"), so a foreign SQLite file is refused.
_APPLICATION_ID = 0x536F7241

_S = ItemState
# A state by its column value (a dict lookup; ItemState(text) is three calls a row).
_STATES = {state.value: state for state in ItemState}
_SENDABLE = (_S.PENDING, _S.NOT_CREATED)
# A column value for Journal._move meaning "the current value plus one".
_INCREMENT = object()
# Journal._advance's task_id meaning "the row's own".
_ROW_TASK_ID = object()
# The usual path's transitions the table allowed once: the table is constant, so each
# (event, sources, target) is checked on first use, not at every write.
_USUAL_CHECKED: set[tuple[str, tuple[ItemState, ...], ItemState]] = set()

_STATE_LIST = ", ".join(f"'{state.value}'" for state in ItemState)
_SCHEMA = f"""
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE items (
    idx               INTEGER PRIMARY KEY CHECK (idx >= 0),
    prompt            TEXT NOT NULL,
    request           TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ({_STATE_LIST})),
    task_id           TEXT UNIQUE,
    progress          INTEGER,
    error             TEXT,
    refunded          INTEGER,
    estimated_credits INTEGER,
    video_urls        TEXT NOT NULL DEFAULT '[]',
    create_attempts   INTEGER NOT NULL DEFAULT 0,
    resubmits         INTEGER NOT NULL DEFAULT 0,
    added_at          TEXT NOT NULL,
    intent_at         TEXT,
    task_created_at   TEXT,
    finished_at       TEXT,
    done_at           TEXT,
    updated_at        TEXT NOT NULL
);
CREATE INDEX items_by_state ON items (state, idx);
CREATE TABLE files (
    idx         INTEGER NOT NULL REFERENCES items (idx),
    path        TEXT NOT NULL UNIQUE,
    size        INTEGER NOT NULL CHECK (size >= 0),
    sha256      TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (idx, path)
);
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    idx        INTEGER NOT NULL,
    at         TEXT NOT NULL,
    event      TEXT NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    task_id    TEXT,
    detail     TEXT
);
CREATE INDEX events_by_item ON events (idx, seq);
-- Defence in depth: whatever the code above does, a task id can never be lost.
@WRITE_ONCE@
CREATE TRIGGER items_with_task_kept BEFORE DELETE ON items
WHEN OLD.task_id IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'an item with a task id is never deleted'); END;
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
"""

# A task id is never replaced or cleared, except by an explicit retry of a failed task
# (failed -> pending), which keeps the old id in the event log.
_WRITE_ONCE = """CREATE TRIGGER task_id_write_once BEFORE UPDATE OF task_id ON items
WHEN OLD.task_id IS NOT NULL AND NEW.task_id IS NOT OLD.task_id
AND NOT (OLD.state = 'failed' AND NEW.state = 'pending' AND NEW.task_id IS NULL)
BEGIN SELECT RAISE(ABORT, 'a task id is write-once'); END"""
_SCHEMA = _SCHEMA.replace("@WRITE_ONCE@", _WRITE_ONCE + ";")

# Not a column of the meta table: what Journal.open found there before it updated it.
_PREVIOUS_INPUT = "previous_input_fingerprint"

_INTERRUPTED = (
    "interrupted: the create request may have been sent before the previous run stopped "
    "(intent recorded, no task id); the task may exist and be paid for"
)


def _is_lock_error(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)


def _norm_base_url(url: str | None) -> str | None:
    return None if url is None else url.strip().rstrip("/")


def _check_index(index: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be a non-negative int, got {index!r}")
    return index


def _check_text(name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _check_request_json(request_json: str) -> str:
    try:
        value = json.loads(request_json)
    except (TypeError, ValueError):
        raise ValueError("request_json must be a JSON object (see request_to_json)") from None
    if not isinstance(value, dict):
        raise ValueError("request_json must be a JSON object (see request_to_json)")
    return canonical_json(value)


def _clean_relpath(relpath: str | os.PathLike[str]) -> str:
    text = os.fspath(relpath).replace(os.sep, "/")
    if "/" not in text and ":" not in text and text not in ("", ".", ".."):
        return text  # a plain file name, as a batch names its files: nothing to clean
    pure = PurePosixPath(text)
    parts = [p for p in pure.parts if p not in ("", ".")]
    if not parts or pure.is_absolute() or ".." in parts or ":" in parts[0]:
        raise ValueError(f"a file path must be relative to the output directory: {relpath!r}")
    return "/".join(parts)


_SHA256 = re.compile("[0-9a-f]{64}")


def _check_sha256(value: str) -> str:
    text = value.lower() if isinstance(value, str) else ""
    if _SHA256.fullmatch(text) is None:
        raise ValueError(f"sha256 must be 64 hex digits, got {value!r}")
    return text


def _check_file(relpath: str | os.PathLike[str], size: int, sha256: str) -> tuple[str, int, str]:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"size must be a non-negative int, got {size!r}")
    return _clean_relpath(relpath), size, _check_sha256(sha256)


def _check_urls(video_urls: Sequence[str]) -> list[str]:
    if isinstance(video_urls, str):
        raise ValueError("video_urls must be a sequence of URLs, not one string")
    return [_check_text("video url", url) for url in video_urls]


class Journal:
    """The SQLite journal of one batch. Build it with :meth:`Journal.open`."""

    def __init__(self, conn: sqlite3.Connection, path: Path, meta: Mapping[str, str]) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.RLock()
        # True while run_group's transaction is open (on the thread that holds the lock):
        # each write is then one savepoint of it.
        self._in_group = False
        self._in_savepoint = False
        # True while a call's own transaction is open: a call it makes (record_finished's)
        # writes into it, and a refusal undoes both.
        self._in_call = False
        # run_group's time: every write of a group is stamped with it (one clock read a group).
        self._group_time: str | None = None
        #: Transactions committed since opening: for tests and measurements.
        self.commits = 0
        #: Of those, the ones committed with synchronous=FULL (each one an fsync of the WAL).
        self.fsyncs = 0
        # The connection's synchronous setting (FULL since _prepare) and the next
        # transaction's: run_group lowers it for groups that hold nothing a crash may not lose.
        self._full = True
        self._want_full = True
        # A group was committed without an fsync since the last one.
        self._unsynced = False
        self.path = path
        #: The meta table as opened (schema version, input fingerprint, provider, base URL...).
        self.meta = {k: v for k, v in meta.items() if k != _PREVIOUS_INPUT}
        self.input_fingerprint = meta["input_fingerprint"]
        #: The input fingerprint the journal had before this open (input_may_grow updates it).
        self.previous_input_fingerprint = meta.get(_PREVIOUS_INPUT, self.input_fingerprint)
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
        _check_text("input_fingerprint", input_fingerprint)
        _check_text("provider", provider)
        db_path = Path(path)
        try:
            db_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalOpenError(f"cannot create the journal's directory: {exc}") from None
        try:
            conn = sqlite3.connect(
                db_path, isolation_level=None, check_same_thread=False, timeout=0
            )
        except sqlite3.Error as exc:
            raise JournalOpenError(f"cannot open the journal {db_path}: {exc}") from None
        try:
            meta, created = cls._prepare(
                conn, db_path, input_fingerprint, provider, base_url, input_may_grow=input_may_grow
            )
        except BaseException:
            conn.close()
            raise
        if created:
            fsync_directory(db_path.parent)
        return cls(conn, db_path, meta)

    @staticmethod
    def _prepare(
        conn: sqlite3.Connection,
        path: Path,
        input_fingerprint: str,
        provider: str,
        base_url: str | None,
        *,
        input_may_grow: bool,
    ) -> tuple[dict[str, str], bool]:
        try:
            # Exclusive locking: this process keeps the file locked until close (no second
            # batch on the same journal), and WAL then needs no shared-memory file.
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalOpenError(f"the journal {path} cannot use WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if _is_lock_error(exc):
                raise JournalLockedError(
                    f"the journal {path} is in use by another process (is another "
                    "'sora-async batch' running on this --out directory?); wait for it to "
                    "finish, or use another --out directory or --journal path"
                ) from None
            raise JournalOpenError(f"cannot use {path} as a journal: {exc}") from None
        try:
            meta, created = Journal._check_or_create(
                conn, path, input_fingerprint, provider, base_url, input_may_grow=input_may_grow
            )
            now = utc_now()
            interrupted = conn.execute(
                "SELECT idx FROM items WHERE state = ? ORDER BY idx", (_S.CREATING.value,)
            ).fetchall()
            for (idx,) in interrupted:
                check_transition(idx, "interrupted", _S.CREATING, _S.UNKNOWN)
                conn.execute(
                    "UPDATE items SET state = ?, error = ?, updated_at = ? WHERE idx = ?",
                    (_S.UNKNOWN.value, _INTERRUPTED, now, idx),
                )
                _log(
                    conn,
                    idx,
                    now,
                    "interrupted",
                    old=_S.CREATING,
                    new=_S.UNKNOWN,
                    detail=_INTERRUPTED,
                )
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise JournalOpenError(f"cannot use {path} as a journal: {exc}") from None
            raise
        return meta, created

    @staticmethod
    def _check_or_create(
        conn: sqlite3.Connection,
        path: Path,
        input_fingerprint: str,
        provider: str,
        base_url: str | None,
        *,
        input_may_grow: bool = False,
    ) -> tuple[dict[str, str], bool]:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        tables = int(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])
        wanted = {
            "input_fingerprint": input_fingerprint,
            "provider": provider,
            "base_url": json.dumps(_norm_base_url(base_url)),
        }
        if version == 0 and app_id == 0 and tables == 0:
            for statement in _SCHEMA.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            meta = {**wanted, "schema_version": str(SCHEMA_VERSION), "created_at": utc_now()}
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", sorted(meta.items()))
            # Pragmas take no parameters; both values are int constants of this module.
            conn.execute(f"PRAGMA application_id={_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            return meta, True
        if app_id != _APPLICATION_ID:
            raise JournalVersionError(
                f"{path} is an SQLite file but not a sora-async journal; "
                "use another --out directory or --journal path"
            )
        if version > SCHEMA_VERSION:
            raise JournalVersionError(
                f"the journal {path} has schema version {version}, written by a newer "
                f"sora_async (this one reads up to {SCHEMA_VERSION}); upgrade sora_async to "
                "resume it, or use another --out directory or --journal path"
            )
        if version == 1:
            # Version 2 only lets an explicit retry (--retry-failed) release a failed task's id.
            conn.execute("DROP TRIGGER task_id_write_once")
            conn.execute(_WRITE_ONCE)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            version = SCHEMA_VERSION
        if version < SCHEMA_VERSION:
            raise JournalVersionError(
                f"the journal {path} has schema version {version}, which this sora_async "
                "cannot read; use another --out directory or --journal path"
            )
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        moved = {
            key: wanted[key] for key in ("provider", "base_url") if meta.get(key) != wanted[key]
        }
        same_input = meta.get("input_fingerprint") == wanted["input_fingerprint"]
        meta[_PREVIOUS_INPUT] = meta.get("input_fingerprint", "")
        if input_may_grow and not same_input:
            # The caller compares the items one by one (lines appended are new items).
            conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'input_fingerprint'",
                (wanted["input_fingerprint"],),
            )
            meta["input_fingerprint"] = wanted["input_fingerprint"]
            same_input = True
        if moved and same_input and not _has_tasks(conn):
            # Nothing was (or may have been) created where the journal points: a batch that
            # only ever met a wrong URL or provider is not tied to it.
            conn.executemany(
                "UPDATE meta SET value = ? WHERE key = ?", [(v, k) for k, v in moved.items()]
            )
            meta.update(moved)
        _check_same_batch(path, meta, wanted)
        return meta, False

    def close(self) -> None:
        """Close the connection (idempotent). Nothing is lost by not calling it."""
        with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                conn.close()

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Journal {str(self.path)!r} provider={self.provider!r} {state}>"

    # -- plumbing -----------------------------------------------------------------------------

    def _now(self) -> str:
        return self._group_time or utc_now()

    def _require_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JournalError(f"the journal {self.path} is closed")
        return self._conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed (and fsynced) before the block's caller returns; inside
        :meth:`run_group`, one savepoint of the group's transaction instead."""
        with self._lock:
            conn = self._require_conn()
            if (self._in_group and self._in_savepoint) or (self._in_call and not self._in_group):
                # A call made by another call (record_finished's): the outer savepoint or
                # transaction undoes both.
                yield conn
                return
            if self._in_group:
                self._in_savepoint = True
                try:
                    with self._savepoint(conn):
                        yield conn
                finally:
                    self._in_savepoint = False
                return
            try:
                if self._want_full is not self._full:
                    # Only between transactions: inside one, SQLite refuses the change.
                    conn.execute(f"PRAGMA synchronous={'FULL' if self._want_full else 'NORMAL'}")
                    self._full = self._want_full
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise JournalError(f"journal write failed: {exc}") from None
            try:
                self._in_call = True
                try:
                    yield conn
                finally:
                    self._in_call = False
                self._commit(conn)
                if self._full:
                    self.fsyncs += 1
                self._unsynced = not self._full
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise JournalError(f"journal write failed: {exc}") from None
                raise

    @staticmethod
    @contextlib.contextmanager
    def _savepoint(conn: sqlite3.Connection) -> Iterator[None]:
        try:
            conn.execute("SAVEPOINT one_write")
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from None
        try:
            yield
        except BaseException as exc:
            try:
                conn.execute("ROLLBACK TO one_write")
                conn.execute("RELEASE one_write")
            except sqlite3.Error as undo:
                # The group's transaction is broken: its commit fails, and so does every
                # write in it.
                raise JournalError(f"journal write failed: {undo}") from None
            if isinstance(exc, sqlite3.Error):
                raise JournalError(f"journal write failed: {exc}") from None
            raise
        else:
            try:
                conn.execute("RELEASE one_write")
            except sqlite3.Error as exc:
                raise JournalError(f"journal write failed: {exc}") from None

    def _commit(self, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")
        self.commits += 1

    def run_group(
        self, calls: Sequence[Callable[[], Any]], *, fsync: bool = True
    ) -> list[tuple[bool, Any]]:
        """Run ``calls`` (each one or more of this journal's write methods) in ONE
        transaction, so one fsync makes them all durable: ``(True, result)`` or
        ``(False, exception)`` per call, in order.

        ``fsync=False`` commits with ``synchronous=NORMAL``: the group survives ``kill -9`` (the
        WAL is in the OS's cache) and becomes power-cut safe with the next ``fsync=True``
        group or checkpoint; a power cut before then loses it, and only it and the other
        groups after the last fsync (the WAL's frames are replayed in order, up to the first
        one not on disk). For writes a crash may lose without harm (see the package docstring).

        Each call acts as its own savepoint: a call that is refused (a transition the table
        does not allow) is undone alone and the others are kept. When the transaction itself
        fails (its commit, or a broken disk) every call fails with that JournalError, those
        that ran without an error included: nothing is reported done that is not on disk.
        The calls are first run under one savepoint for the group (two statements a group,
        not two a call); only if one of them raises is that undone and every call run again
        in a savepoint of its own (the calls are journal writes: running one again after an
        undo does what running it once would have done).
        """
        with self._lock:
            self._want_full = fsync
            self._group_time = utc_now()
            try:
                with self._write() as conn:
                    self._in_group = True
                    try:
                        outcomes = self._group_at_once(conn, calls)
                        if outcomes is None:
                            outcomes = [self._one_call(call) for call in calls]
                    finally:
                        self._in_group = False
            except JournalError as exc:
                return [(False, exc) for _ in calls]
            finally:
                self._want_full = True
                self._group_time = None
        return outcomes

    def _group_at_once(
        self, conn: sqlite3.Connection, calls: Sequence[Callable[[], Any]]
    ) -> list[tuple[bool, Any]] | None:
        """The calls under one savepoint; None (with all of it undone) if one raised."""
        try:
            conn.execute("SAVEPOINT whole_group")
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from None
        # Seen by _write: the calls write straight into the group's savepoint.
        self._in_savepoint = True
        try:
            results = [(True, call()) for call in calls]
        except Exception:
            results = None
        finally:
            self._in_savepoint = False
        try:
            if results is None:
                conn.execute("ROLLBACK TO whole_group")
            conn.execute("RELEASE whole_group")
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from None
        return results

    @staticmethod
    def _one_call(call: Callable[[], Any]) -> tuple[bool, Any]:
        try:
            return True, call()
        except Exception as exc:
            return False, exc

    def sync(self) -> None:
        """Make every committed group power-cut safe (one fsync of the WAL), e.g. before a
        manifest that reports what those groups wrote."""
        with self._lock:
            if not self._unsynced:
                return
            conn = self._require_conn()
            try:
                # A checkpoint fsyncs the WAL before copying it (an empty COMMIT would write,
                # and so fsync, nothing).
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                raise JournalError(f"journal sync failed: {exc}") from None
            self._unsynced = False
            self.fsyncs += 1

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._require_conn()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise JournalError(f"journal read failed: {exc}") from None

    @staticmethod
    def _state_of(conn: sqlite3.Connection, index: int) -> tuple[ItemState | None, str | None]:
        row = conn.execute("SELECT state, task_id FROM items WHERE idx = ?", (index,)).fetchone()
        if row is None:
            return None, None
        return ItemState(row[0]), row[1]

    @staticmethod
    def _move(
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
            _log(conn, index, now, event, old=old, new=new, task_id=task_id, detail=detail)
        return new

    @staticmethod
    def _shift(
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
        changed = _update(
            conn, index, new, now, columns, sources=old, when=when, params=when_params
        )
        return changed == 1

    @staticmethod
    def _advance(
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
        ``task_id`` :data:`_ROW_TASK_ID` logs the row's own task id.
        """
        sources = sorted(TRANSITIONS[event].sources)
        for old in sources:
            check_transition(index, event, old, new)
        row_id = "task_id" if task_id is _ROW_TASK_ID else "?"
        params = [now, event, new.value] + ([] if task_id is _ROW_TASK_ID else [task_id])
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
                _check_index(index),
                _check_text("prompt", prompt),
                request if canonical else _check_request_json(request),
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
        _check_index(index)
        if (request_json is None) is not (prompt is None):
            raise ValueError("request_json and prompt are given together or not at all")
        request = None if request_json is None else _check_request_json(request_json)
        if prompt is not None:
            _check_text("prompt", prompt)
        if estimated_credits is not None and (
            isinstance(estimated_credits, bool) or not isinstance(estimated_credits, int)
        ):
            raise ValueError(f"estimated_credits must be an int, got {estimated_credits!r}")
        with self._write() as conn:
            now = self._now()
            columns: dict[str, Any] = {
                "estimated_credits": estimated_credits,
                "error": None,
                "intent_at": now,
                "create_attempts": _INCREMENT,
            }
            if request is not None:
                columns.update(prompt=prompt, request=request)
            if self._shift(
                conn, index, "intent", old=(_S.PENDING,), new=_S.CREATING, now=now, columns=columns
            ):
                return _S.CREATING
            state, task_id = self._state_of(conn, index)
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
            return self._move(
                conn, index, "intent", old=state, new=_S.CREATING, now=now, columns=columns
            )

    def record_created(self, index: int, task_id: str) -> ItemState:
        """Commit the task id right after the create answer: -> ``created``.

        From ``creating``, or from ``unknown`` when the id was learnt later. Recording the same
        id again is a no-op; a different id for an item that has one is refused.
        """
        _check_index(index)
        _check_text("task_id", task_id)
        with self._write() as conn:
            now = self._now()
            columns = {"task_id": task_id, "error": None, "task_created_at": now}
            try:
                if self._shift(
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
                state, _ = self._state_of(conn, index)
                owner = conn.execute(
                    "SELECT idx FROM items WHERE task_id = ?", (task_id,)
                ).fetchone()
                raise JournalTransitionError(
                    index,
                    state,
                    f"task {task_id!r} already belongs to item {owner[0] if owner else None}",
                ) from None
            state, current = self._state_of(conn, index)
            if current is not None:
                if current == task_id and state is not None:
                    return state
                raise JournalTransitionError(
                    index, state, f"already has task {current!r}; refusing to replace it"
                )
            if state not in (_S.CREATING, _S.UNKNOWN):
                raise JournalTransitionError(
                    index, state, f"no create in flight (state {_name(state)}) to give an id to"
                )
            owner = conn.execute("SELECT idx FROM items WHERE task_id = ?", (task_id,)).fetchone()
            if owner is not None:
                raise JournalTransitionError(
                    index, state, f"task {task_id!r} already belongs to item {owner[0]}"
                )
            return self._move(
                conn,
                index,
                "created",
                old=state,
                new=_S.CREATED,
                now=now,
                columns=columns,
                task_id=task_id,
            )

    def record_not_created(
        self, index: int, error: BaseException | str, *, terminal: bool | None = None
    ) -> ItemState:
        """The create is known not to have happened: ``not_created`` or terminal ``failed``.

        ``terminal=None`` decides from the exception (:func:`classify_create_error`: a definite
        rejection such as 402 is terminal) and treats a plain message as re-queueable.
        Only call this when nothing can have been created; otherwise use :meth:`record_unknown`.
        """
        _check_index(index)
        if terminal is None:
            terminal = (
                isinstance(error, BaseException)
                and classify_create_error(error) is CreateOutcome.REJECTED
            )
        text = describe_error(error)
        new = _S.FAILED if terminal else _S.NOT_CREATED
        with self._write() as conn:
            state, _ = self._state_of(conn, index)
            if state is not _S.CREATING:
                raise JournalTransitionError(
                    index, state, f"no create in flight (state {_name(state)})"
                )
            event = "rejected" if terminal else "not_created"
            now = self._now()
            columns = {"error": text, "finished_at": now if terminal else None}
            return self._move(
                conn, index, event, old=state, new=new, now=now, columns=columns, detail=text
            )

    def record_unknown(self, index: int, cause: BaseException | str) -> ItemState:
        """The create may have happened but no task id is known: -> ``unknown``.

        Such an item is reported and never created again unless :meth:`resubmit_unknown`.
        """
        _check_index(index)
        text = describe_error(cause)
        with self._write() as conn:
            state, _ = self._state_of(conn, index)
            if state not in (_S.CREATING, _S.UNKNOWN):
                raise JournalTransitionError(
                    index, state, f"no create in flight (state {_name(state)})"
                )
            columns = {"error": text}
            return self._move(
                conn,
                index,
                "unknown",
                old=state,
                new=_S.UNKNOWN,
                now=self._now(),
                columns=columns,
                detail=text,
            )

    def record_create_error(self, index: int, exc: BaseException) -> ItemState:
        """Record a failed create call by what the exception proves (see classify_create_error)."""
        outcome = classify_create_error(exc)
        if outcome is CreateOutcome.UNKNOWN:
            return self.record_unknown(index, exc)
        return self.record_not_created(index, exc, terminal=outcome is CreateOutcome.REJECTED)

    def resubmit_unknown(self, index: int) -> ItemState:
        """Explicitly allow an ``unknown`` item to be created again (it may then cost twice)."""
        _check_index(index)
        with self._write() as conn:
            state, _ = self._state_of(conn, index)
            if state is not _S.UNKNOWN:
                raise JournalTransitionError(
                    index, state, f"only an unknown item can be resubmitted (state {_name(state)})"
                )
            columns = {"error": None, "resubmits": _INCREMENT}
            # The cause of the doubt stays in the event log.
            previous = conn.execute("SELECT error FROM items WHERE idx = ?", (index,)).fetchone()
            return self._move(
                conn,
                index,
                "resubmitted",
                old=state,
                new=_S.PENDING,
                now=self._now(),
                columns=columns,
                detail=previous[0],
            )

    def requeue_rejected(self, index: int) -> ItemState:
        """Put an item whose create was definitely rejected back to ``pending``."""
        _check_index(index)
        with self._write() as conn:
            state, task_id = self._state_of(conn, index)
            if state is not _S.FAILED or task_id is not None:
                raise JournalTransitionError(
                    index,
                    state,
                    "only a failed item without a task id can be re-queued "
                    f"(state {_name(state)}, task {task_id!r})",
                )
            columns = {"error": None, "finished_at": None}
            return self._move(
                conn, index, "requeued", old=state, new=_S.PENDING, now=self._now(), columns=columns
            )

    def retry_failed(self, index: int) -> ItemState:
        """Send a failed item again (``--retry-failed``, a new payment): ``failed`` -> ``pending``.

        A failed task's id is released from the item (it stays in the event log); nothing
        else ever clears a task id.
        """
        _check_index(index)
        with self._write() as conn:
            state, task_id = self._state_of(conn, index)
            if state is not _S.FAILED:
                raise JournalTransitionError(
                    index, state, f"only a failed item can be retried (state {_name(state)})"
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
            return self._move(
                conn,
                index,
                "retried",
                old=state,
                new=_S.PENDING,
                now=self._now(),
                columns=columns,
                task_id=task_id,
                detail=previous[0],
            )

    # -- tasks --------------------------------------------------------------------------------

    def record_status(
        self, index: int, state: TaskState | str, progress: int | None = None
    ) -> ItemState:
        """Record a non-terminal poll result (``pending`` or ``running``).

        An item already terminal is left unchanged (a late answer never moves it back), and
        ``running`` is never moved back to ``created``. Writes nothing when nothing changed.
        """
        _check_index(index)
        task_state = TaskState(state)
        if task_state.is_terminal:
            raise ValueError("a terminal state is recorded with record_terminal")
        if progress is not None and (
            isinstance(progress, bool) or not isinstance(progress, int) or not 0 <= progress <= 100
        ):
            raise ValueError(f"progress must be an int from 0 to 100, got {progress!r}")
        with self._write() as conn:
            current, _ = self._state_of(conn, index)
            if current in (_S.DOWNLOADING, _S.SUCCEEDED, _S.FAILED):
                return current
            if current is None or current not in (_S.CREATED, _S.RUNNING):
                raise JournalTransitionError(
                    index, current, f"no task to poll (state {_name(current)})"
                )
            new = _S.RUNNING if task_state is TaskState.RUNNING else current
            old_progress = conn.execute(
                "SELECT progress FROM items WHERE idx = ?", (index,)
            ).fetchone()[0]
            # An answer without progress does not forget the last one seen.
            progress = old_progress if progress is None else progress
            if new is current and progress == old_progress:
                return current
            return self._move(
                conn,
                index,
                "status",
                old=current,
                new=new,
                now=self._now(),
                columns={"progress": progress},
            )

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
        _check_index(index)
        task_state = TaskState(state)
        if not task_state.is_terminal:
            raise ValueError("record_terminal takes succeeded or failed")
        urls = _check_urls(video_urls)
        succeeded = task_state is TaskState.SUCCEEDED
        new = _S.DOWNLOADING if succeeded else _S.FAILED
        with self._write() as conn:
            now = self._now()
            columns = {
                "error": error,
                "refunded": None if refunded is None else int(bool(refunded)),
                "video_urls": canonical_json(urls),
                "finished_at": now,
            }
            if succeeded:
                moved = self._shift(
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
                moved = self._advance(
                    conn,
                    index,
                    "terminal",
                    new=new,
                    now=now,
                    columns=columns,
                    task_id=_ROW_TASK_ID,
                    detail=error,
                    when=" AND task_id IS NOT NULL",
                )
            if moved:
                return new
            current, task_id = self._state_of(conn, index)
            if current is None or task_id is None:
                raise JournalTransitionError(
                    index, current, f"no task to end (state {_name(current)})"
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
            return self._move(
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

    # -- files --------------------------------------------------------------------------------

    def record_download(
        self, index: int, relpath: str | os.PathLike[str], size: int, sha256: str
    ) -> ItemState:
        """Record one file, written whole, at ``relpath`` (relative to the output directory).

        Recording a path again replaces its size and hash (it was fetched again). A path that
        belongs to another item is refused: two items must never share a file.
        """
        _check_index(index)
        path, size, digest = _check_file(relpath, size, sha256)
        with self._write() as conn:
            if self._record_file(conn, index, (path, size, digest), self._now()):
                return _S.DOWNLOADING
            current, _ = self._state_of(conn, index)
            known = conn.execute(
                "SELECT idx, size, sha256 FROM files WHERE path = ?", (path,)
            ).fetchone()
            if known is not None and known[0] != index:
                raise JournalTransitionError(
                    index, current, f"file {path!r} is already recorded for item {known[0]}"
                )
            if current is _S.SUCCEEDED and known is not None and tuple(known[1:]) == (size, digest):
                return current
            # _record_file writes the file of any item downloading.
            raise JournalTransitionError(
                index, current, f"not downloading (state {_name(current)})"
            )

    @staticmethod
    def _record_file(
        conn: sqlite3.Connection, index: int, file: tuple[str, int, str], now: str
    ) -> bool:
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

    def mark_done(self, index: int) -> ItemState:
        """Every file of a succeeded task is whole: -> ``succeeded``.

        Refused while fewer files than video URLs are recorded.
        """
        _check_index(index)
        with self._write() as conn:
            current, _ = self._state_of(conn, index)
            if current is _S.SUCCEEDED:
                return current
            if current is not _S.DOWNLOADING:
                raise JournalTransitionError(
                    index, current, f"not downloading (state {_name(current)})"
                )
            urls = json.loads(
                conn.execute("SELECT video_urls FROM items WHERE idx = ?", (index,)).fetchone()[0]
            )
            count = conn.execute("SELECT count(*) FROM files WHERE idx = ?", (index,)).fetchone()
            if count[0] < len(urls):
                raise JournalTransitionError(
                    index, current, f"only {count[0]} of {len(urls)} files recorded"
                )
            now = self._now()
            return self._move(
                conn,
                index,
                "done",
                old=current,
                new=_S.SUCCEEDED,
                now=now,
                columns={"done_at": now},
            )

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
        _check_index(index)
        urls = _check_urls(video_urls)
        checked = [_check_file(relpath, size, sha256) for relpath, size, sha256 in files]
        with self._write() as conn:
            now = self._now()
            # The usual case, one statement a file and one for "succeeded", nothing read: the
            # end is recorded with these URLs (posted as the download began), and with these
            # files every URL has one.
            recorded = all(self._record_file(conn, index, file, now) for file in checked)
            if recorded and not done and checked:
                return _S.DOWNLOADING
            if recorded and done:
                when = " AND video_urls = ? AND (SELECT count(*) FROM files WHERE idx = ?) >= ?"
                if self._shift(
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
            # Otherwise each step as its own call says (a file written above again: the same).
            current, _ = self._state_of(conn, index)
            state = (
                current
                if current is _S.DOWNLOADING
                else self.record_terminal(index, TaskState.SUCCEEDED, video_urls=urls)
            )
            for path, size, digest in checked:
                state = self.record_download(index, path, size, digest)
            return self.mark_done(index) if done else state

    # -- queries ------------------------------------------------------------------------------

    def get(self, index: int) -> JournalItem | None:
        """One item, or None if the journal does not know it."""
        found = self._select("WHERE idx = ?", (_check_index(index),))
        return found[0] if found else None

    def items(self, *states: ItemState | str) -> list[JournalItem]:
        """All items in index order, or those in one of ``states``."""
        if not states:
            return self._select("", ())
        values = tuple(ItemState(s).value for s in states)
        marks = ", ".join("?" * len(values))
        return self._select(f"WHERE state IN ({marks})", values)

    def unknown(self) -> list[JournalItem]:
        """Items whose create may have happened without a known task id."""
        return self.items(_S.UNKNOWN)

    def summary(self) -> dict[str, int]:
        """How many items are in each state (every state listed, zeros included)."""
        with self._read() as conn:
            counts = dict(conn.execute("SELECT state, count(*) FROM items GROUP BY state"))
        return {state.value: int(counts.get(state.value, 0)) for state in ItemState}

    def rows(
        self, start: int, stop: int, *states: ItemState, limit: int | None = None
    ) -> list[ItemRow]:
        """The items ``start <= index < stop`` (of ``states``, or all; the first ``limit``)
        without their files: what a run needs to plan and to feed its jobs, a chunk at a time."""
        where = "WHERE idx >= ? AND idx < ?"
        params: tuple[Any, ...] = (start, stop)
        if states:
            where += f" AND state IN ({', '.join('?' * len(states))})"
            params += tuple(ItemState(s).value for s in states)
        where += " ORDER BY idx"
        if limit is not None:
            where += " LIMIT ?"
            params += (limit,)
        with self._read() as conn:
            found = conn.execute(
                f"SELECT idx, state, task_id, prompt, request FROM items {where}",  # noqa: S608
                params,
            ).fetchall()
        return [ItemRow(row[0], ItemState(row[1]), row[2], row[3], row[4]) for row in found]

    def states(self, start: int, stop: int) -> dict[int, ItemState]:
        """The state of each item ``start <= index < stop``."""
        with self._read() as conn:
            found = conn.execute(
                "SELECT idx, state FROM items WHERE idx >= ? AND idx < ?", (start, stop)
            ).fetchall()
        return {idx: ItemState(state) for idx, state in found}

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

    def items_between(self, start: int, stop: int) -> list[JournalItem]:
        """The items ``start <= index < stop`` with their files (the manifest, a chunk at a
        time, so a big journal is never all in memory)."""
        return self._select("WHERE idx >= ? AND idx < ?", (start, stop))

    def manifest_rows(self, start: int, stop: int) -> list[dict[str, Any]]:
        """The manifest rows (:meth:`JournalItem.manifest_row`) of the items ``start <= index <
        stop``, read in one query without an item object per row: what the manifest and
        index.html stream, a chunk at a time."""
        with self._read() as conn:
            found = conn.execute(
                "SELECT i.idx, i.prompt, i.state, i.task_id, i.error, i.refunded,"
                " i.estimated_credits, i.video_urls, i.finished_at, i.create_attempts,"
                " i.resubmits, f.path, f.size, f.sha256"
                " FROM items AS i LEFT JOIN files AS f ON f.idx = i.idx"
                " WHERE i.idx >= ? AND i.idx < ? ORDER BY i.idx, f.path",
                (start, stop),
            ).fetchall()
        rows = []
        for _, group in itertools.groupby(found, key=operator.itemgetter(0)):
            first, *more = group
            (idx, prompt, state, task_id, error, refunded, credits, urls, finished_at) = first[:9]
            files = [] if first[11] is None else [first[11:14], *(row[11:14] for row in more)]
            rows.append(
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
        return rows

    def first_items(self, limit: int, *states: ItemState) -> list[JournalItem]:
        """The first ``limit`` items in one of ``states`` (what a message lists by name)."""
        values = tuple(ItemState(s).value for s in states)
        marks = ", ".join("?" * len(values))
        return self._select(f"WHERE state IN ({marks}) ORDER BY idx LIMIT ?", (*values, limit))

    def _select(self, where: str, params: tuple[Any, ...]) -> list[JournalItem]:
        with self._read() as conn:
            conn.row_factory = sqlite3.Row
            try:
                order = "" if "ORDER BY" in where else " ORDER BY idx"
                rows = conn.execute(f"SELECT * FROM items {where}{order}", params).fetchall()  # noqa: S608
                if len(rows) == 1:
                    file_rows = conn.execute(
                        "SELECT * FROM files WHERE idx = ? ORDER BY path", (rows[0]["idx"],)
                    ).fetchall()
                elif rows:
                    # The files of the rows' index range only: a chunk reads a chunk.
                    file_rows = conn.execute(
                        "SELECT * FROM files WHERE idx >= ? AND idx <= ? ORDER BY idx, path",
                        (rows[0]["idx"], rows[-1]["idx"]),
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
        return [_item_from_row(row, files.get(row["idx"], [])) for row in rows]


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

    def rows() -> Iterator[dict[str, Any]]:
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

    return rows()


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
    bound = [value for value in values.values() if value is not _INCREMENT]
    bound.append(index)
    bound.extend(params)
    return conn.execute(sql, bound).rowcount


#: _update's statements by (state, column names, sources, condition): a task's usual writes
#: are four shapes, built once, not a string join a write on the journal's thread.
_UPDATES: dict[tuple[ItemState, tuple[str, ...], tuple[ItemState, ...], str], str] = {}
#: The columns _update counts up (their value is always _INCREMENT, so a statement's shape
#: follows from the column names alone).
_COUNTERS = frozenset({"create_attempts", "resubmits"})


def _update_sql(
    new: ItemState, values: Mapping[str, Any], sources: Sequence[ItemState], when: str
) -> str:
    parts = [f"state = '{new.value}'"]
    for name, value in values.items():
        if (value is _INCREMENT) is not (name in _COUNTERS):
            raise ValueError(f"the column {name} is counted up, and only counted up")
        # Column names and states are literals of this module, never callers' data.
        parts.append(f"{name} = {name} + 1" if name in _COUNTERS else f"{name} = ?")
    where = "idx = ?"
    if sources:
        where += f" AND state IN ({', '.join(repr(source.value) for source in sources)})"
    return f"UPDATE items SET {', '.join(parts)} WHERE {where}{when}"  # noqa: S608


def _log(
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
    conn.execute(
        "INSERT INTO events (idx, at, event, from_state, to_state, task_id, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (index, at, event, None if old is None else old.value, new.value, task_id, detail),
    )


def _has_tasks(conn: sqlite3.Connection) -> bool:
    """Whether any item has a task, or a create that may have made one."""
    row = conn.execute(
        "SELECT 1 FROM items WHERE task_id IS NOT NULL OR state IN (?, ?) LIMIT 1",
        (_S.UNKNOWN.value, _S.CREATING.value),
    ).fetchone()
    return row is not None


def _name(state: ItemState | None) -> str:
    return "absent" if state is None else state.value


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


def _check_same_batch(path: Path, meta: Mapping[str, str], wanted: Mapping[str, str]) -> None:
    problems = []
    if meta.get("input_fingerprint") != wanted["input_fingerprint"]:
        problems.append(
            "it was made for a different input file "
            f"({meta.get('input_fingerprint')} there, {wanted['input_fingerprint']} now)"
        )
    if meta.get("provider") != wanted["provider"]:
        problems.append(
            f"its tasks belong to provider {meta.get('provider')!r}, this run uses "
            f"{wanted['provider']!r} (use --provider {meta.get('provider')} to resume it)"
        )
    if meta.get("base_url") != wanted["base_url"]:
        then = json.loads(meta.get("base_url", "null")) or "the provider's default"
        now = json.loads(wanted["base_url"]) or "the provider's default"
        problems.append(
            f"its tasks were created at base URL {then}, this run uses {now} "
            "(pass the same --base-url to resume it)"
        )
    if problems:
        raise JournalMismatchError(
            f"the journal {path} belongs to another batch: "
            + "; ".join(problems)
            + ". Resuming it would mix two batches or lose track of paid tasks: use another "
            "--out directory or pass --journal PATH for a new journal."
        )
