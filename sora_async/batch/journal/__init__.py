"""The durable batch journal: no finished video is lost and no prompt is paid for twice.

``sora-async batch`` runs for hours and may be killed at any moment. Every state change of every
input item is committed (WAL mode) before the call that made it returns, so whatever a call
reported as done survives a crash or ``kill -9``. Called directly, each call is one transaction
with ``synchronous=FULL`` (an fsync). A run calls them through :class:`GroupCommit` instead: the
writes that arrive while one commit is in flight share the next transaction (one fsync for many
tasks), and each caller awaits the commit of its own write. A batch task costs four writes over
its life (intent, task id, success, files with "succeeded"): six SQL statements with its
registration, one more for each further file.

Durability by kind of write. A power cut, unlike ``kill -9``, also loses what the OS had not
written out; what it may lose without harm decides which groups are fsync'd:

- the intent before a create is sent, and the create's outcome (its task id, or that nothing was
  made): fsync'd before the run goes on (``GroupCommit.write``). Losing the intent of a create
  that reached the server would let a re-run send it again, and losing a task id would leave a
  paid task nobody follows; so neither is ever only in the OS's cache when the next step runs.
- a task's end (its success and URLs, its files and "succeeded", or its failure): committed with
  ``synchronous=NORMAL``, posted without being awaited (``GroupCommit.post``). In WAL mode such
  a commit is in the WAL in the OS's cache at once, so ``kill -9`` loses nothing; an fsync of the
  WAL (the next fsync'd group, a checkpoint, or ``GroupCommit.settle`` at the end of a run,
  before the last manifest) takes it to disk, and with it every frame before. A power cut
  before that loses these ends and nothing else (the WAL is replayed in order up to its first
  frame not on disk, so what remains is a state the journal was in): a re-run polls those
  tasks once more and fetches their files again. A file is fsync'd and in place before its
  record is written, so the journal never says "succeeded" for a file the disk does not hold.

Modules: :mod:`.types` (states, snapshots, errors), :mod:`.states` (the transition table every
state change is checked against), :mod:`.store` (:class:`Journal`: the calls below),
:mod:`.checks` (their arguments), :mod:`.create_steps` and :mod:`.task_steps` (what each call
does to an item), :mod:`.moves` (the SQL of a state change), :mod:`.reading` (the read side),
:mod:`.schema` (the tables), :mod:`.opening` (opening a journal file), :mod:`.connection` (the
connection's transactions) and :mod:`.group` (group commit: the run's one writer).

Item states (:class:`ItemState`) and the calls that move an item between them::

    call                  allowed from                      leads to
    add_items             (absent)                          pending
    record_intent         (absent), pending, not_created    creating      <- before sending
    record_created        creating, unknown                 created       <- right after answer
    record_not_created    creating                          not_created (retry) | failed
    record_unknown        creating, unknown                 unknown
    record_create_error   creating                          by classify_create_error
    Journal.open          creating                          unknown       (interrupted)
    resubmit_unknown      unknown                           pending
    requeue_rejected      failed without a task id          pending
    record_status         created, running                  created | running (never back)
    record_terminal       created, running                  downloading | failed
    record_download       downloading                       downloading (one more file)
    mark_done             downloading, every file recorded  succeeded
    record_finished       created, running, downloading     the three above, in one savepoint

Anything else raises :class:`JournalTransitionError`, except harmless repeats (the same task id,
the same end, a late status of an ended task, a done item marked done), which change nothing.

- ``creating`` means the intent is committed and the create request is being sent. An item found
  in ``creating`` when the journal is opened was interrupted between sending and recording the
  answer: it becomes ``unknown`` at once, because the task may exist and have been paid for.
- ``unknown`` is never created again by itself: only :meth:`Journal.resubmit_unknown` (the CLI's
  ``--resubmit-unknown``) puts it back to ``pending``.
- A definite rejection (400, 401/403, 402, 404, or a request the SDK refused before sending) is
  terminal ``failed`` with the reason: sending the same request again would be refused again, and
  a 402 must stop spending, not loop. :meth:`Journal.requeue_rejected` re-queues such an item
  explicitly (after a top-up or a key fix). Only "nothing was sent" (connect error) and "too
  busy" (429) are re-queued automatically as ``not_created``. See :func:`classify_create_error`.
- ``downloading`` means the task succeeded and its files are being fetched; ``succeeded`` means
  every file is recorded whole (:meth:`Journal.mark_done`), so the manifest's ``succeeded`` is
  the user's "I have the video".
- A task id is write-once: once an item has one it is never replaced or cleared (a trigger
  refuses it), except by an explicit retry of a failed task, whose released id is kept in the
  append-only event log.
- The event log (table ``events``) has a row for each transition off the usual path (a refused
  or doubtful create, an interruption, a resubmit, requeue or retry, a task id learnt for an
  unknown item, a failed task, a progress change), not for the usual steps (added, intent,
  created, the success, each file, done): the item's row holds their times (``added_at``,
  ``intent_at``, ``task_created_at``, ``finished_at``, ``done_at``, each file's
  ``recorded_at``). Journals written before kept a row for every step; they open unchanged.
- Each usual step is one statement that finds the item only in the state it starts from (an
  UPDATE, or a file's INSERT ... SELECT); only when it finds nothing is the item read, for a
  harmless repeat or the refusal's message. Writes of one group share one timestamp.

Threading: the journal is synchronous. :class:`GroupCommit` runs its groups (and the run's
reads) in a worker thread, so the event loop never waits for a disk; the connection is opened
with ``check_same_thread=False`` and every call holds the journal's lock, so the connection is
used by one thread at a time. Inside :meth:`Journal.run_group` each call is a savepoint: one
refused call is undone alone, and a failed commit fails every call of the group. The process
holds SQLite's exclusive lock for the journal's whole life, so a second ``batch`` process on
the same journal is refused (:class:`JournalLockedError`) instead of creating the same prompts
twice.

The journal never sees the API key: it stores prompts, request fields, task ids, states,
errors, URLs and file hashes.
"""

from __future__ import annotations

from .group import GroupCommit
from .store import SCHEMA_VERSION, Journal, read_rows
from .types import (
    DEFAULT_JOURNAL_NAME,
    CreateOutcome,
    FileRecord,
    ItemRow,
    ItemState,
    JournalError,
    JournalEvent,
    JournalItem,
    JournalLockedError,
    JournalMismatchError,
    JournalOpenError,
    JournalTransitionError,
    JournalVersionError,
    canonical_json,
    classify_create_error,
    default_journal_path,
    fingerprint_bytes,
    request_to_json,
)

__all__ = [
    "DEFAULT_JOURNAL_NAME",
    "SCHEMA_VERSION",
    "CreateOutcome",
    "FileRecord",
    "GroupCommit",
    "ItemRow",
    "ItemState",
    "Journal",
    "JournalError",
    "JournalEvent",
    "JournalItem",
    "JournalLockedError",
    "JournalMismatchError",
    "JournalOpenError",
    "JournalTransitionError",
    "JournalVersionError",
    "canonical_json",
    "classify_create_error",
    "default_journal_path",
    "fingerprint_bytes",
    "read_rows",
    "request_to_json",
]
