"""Opening a journal file: SQLite's exclusive lock and WAL, the layout made or checked (and
migrated), another batch's journal refused, and creates a crash interrupted made ``unknown``."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from ...durable import fsync_directory
from .moves import log
from .schema import APPLICATION_ID, SCHEMA, SCHEMA_VERSION, WRITE_ONCE
from .states import check as check_transition
from .types import (
    ItemState,
    JournalLockedError,
    JournalMismatchError,
    JournalOpenError,
    JournalVersionError,
    utc_now,
)

__all__ = ["PREVIOUS_INPUT", "open_connection"]

_S = ItemState
#: Not a column of the meta table: what opening found there before it updated it.
PREVIOUS_INPUT = "previous_input_fingerprint"

_INTERRUPTED = (
    "interrupted: the create request may have been sent before the previous run stopped "
    "(intent recorded, no task id); the task may exist and be paid for"
)


def open_connection(
    path: str | os.PathLike[str],
    input_fingerprint: str,
    provider: str,
    base_url: str | None,
    *,
    input_may_grow: bool,
) -> tuple[sqlite3.Connection, Path, dict[str, str]]:
    """The connection to the journal at ``path``, made or checked (see :meth:`Journal.open`),
    its path and its meta table (with :data:`PREVIOUS_INPUT`)."""
    db_path = Path(path)
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JournalOpenError(f"cannot create the journal's directory: {exc}") from None
    try:
        conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False, timeout=0)
    except sqlite3.Error as exc:
        raise JournalOpenError(f"cannot open the journal {db_path}: {exc}") from None
    try:
        meta, created = _prepare(
            conn, db_path, input_fingerprint, provider, base_url, input_may_grow=input_may_grow
        )
    except BaseException:
        conn.close()
        raise
    if created:
        fsync_directory(db_path.parent)
    return conn, db_path, meta


def _is_lock_error(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)


def _norm_base_url(url: str | None) -> str | None:
    return None if url is None else url.strip().rstrip("/")


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
        meta, created = _check_or_create(
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
            log(conn, idx, now, "interrupted", old=_S.CREATING, new=_S.UNKNOWN, detail=_INTERRUPTED)
        conn.execute("COMMIT")
    except BaseException as exc:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise JournalOpenError(f"cannot use {path} as a journal: {exc}") from None
        raise
    return meta, created


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
        for statement in SCHEMA.split(";\n"):
            if statement.strip():
                conn.execute(statement)
        meta = {**wanted, "schema_version": str(SCHEMA_VERSION), "created_at": utc_now()}
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", sorted(meta.items()))
        # Pragmas take no parameters; both values are int constants of the schema module.
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return meta, True
    if app_id != APPLICATION_ID:
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
        conn.execute(WRITE_ONCE)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        version = SCHEMA_VERSION
    if version < SCHEMA_VERSION:
        raise JournalVersionError(
            f"the journal {path} has schema version {version}, which this sora_async "
            "cannot read; use another --out directory or --journal path"
        )
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    moved = {key: wanted[key] for key in ("provider", "base_url") if meta.get(key) != wanted[key]}
    same_input = meta.get("input_fingerprint") == wanted["input_fingerprint"]
    meta[PREVIOUS_INPUT] = meta.get("input_fingerprint", "")
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


def _has_tasks(conn: sqlite3.Connection) -> bool:
    """Whether any item has a task, or a create that may have made one."""
    row = conn.execute(
        "SELECT 1 FROM items WHERE task_id IS NOT NULL OR state IN (?, ?) LIMIT 1",
        (_S.UNKNOWN.value, _S.CREATING.value),
    ).fetchone()
    return row is not None


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
