"""The journal's one SQLite connection and the transactions its calls run in.

Every call holds the connection's lock, so one thread at a time uses it. A write call is one
transaction, committed (with an fsync, unless its group asked for none) before it returns;
inside :meth:`JournalConnection.run_group` it is one savepoint of the group's transaction,
so one commit makes many calls durable. :class:`.store.Journal` is its only subclass: the
calls themselves live there.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .types import JournalError, utc_now

__all__ = ["JournalConnection"]


class JournalConnection:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
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
        # The connection's synchronous setting (FULL since opening) and the next
        # transaction's: run_group lowers it for groups that hold nothing a crash may not lose.
        self._full = True
        self._want_full = True
        # A group was committed without an fsync since the last one.
        self._unsynced = False
        self.path = path

    def close(self) -> None:
        """Close the connection (idempotent). Nothing is lost by not calling it."""
        with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                conn.close()

    @property
    def closed(self) -> bool:
        return self._conn is None

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
