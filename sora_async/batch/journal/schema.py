"""The journal's SQLite layout: its tables and triggers, and the numbers that mark a file as a
journal of this layout."""

from __future__ import annotations

from .types import ItemState

__all__ = ["APPLICATION_ID", "SCHEMA", "SCHEMA_VERSION", "WRITE_ONCE"]

#: The layout this module writes; a journal with a higher number is refused.
SCHEMA_VERSION = 2
# PRAGMA application_id marks the file as ours ("SorA"), so a foreign SQLite file is refused.
APPLICATION_ID = 0x536F7241

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
WRITE_ONCE = """CREATE TRIGGER task_id_write_once BEFORE UPDATE OF task_id ON items
WHEN OLD.task_id IS NOT NULL AND NEW.task_id IS NOT OLD.task_id
AND NOT (OLD.state = 'failed' AND NEW.state = 'pending' AND NEW.task_id IS NULL)
BEGIN SELECT RAISE(ABORT, 'a task id is write-once'); END"""
#: The statements that make a new journal, separated by ";\n".
SCHEMA = _SCHEMA.replace("@WRITE_ONCE@", WRITE_ONCE + ";")
