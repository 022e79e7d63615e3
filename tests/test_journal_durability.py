"""Durability by kind of write: what keeps a prompt from being paid twice is fsync'd, the rest
rides on the next fsync.

- a group holding a create's intent or task id is committed with ``synchronous=FULL`` (an fsync
  of the WAL), even when writes that need none share it;
- a group holding only how a task ended is committed with ``synchronous=NORMAL`` (no fsync of
  its own; it survives ``kill -9`` as the WAL is in the OS's cache);
- ``GroupCommit.settle`` waits for every posted write and makes it power-cut safe (a checkpoint,
  which fsyncs the WAL first);
- a posted write that is refused, or whose group fails, is reported to its callback.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from journal_queries import history

from sora_async.batch.journal import (
    GroupCommit,
    ItemState,
    Journal,
    JournalError,
    JournalTransitionError,
    default_journal_path,
    fingerprint_bytes,
)
from sora_async.models import TaskState

pytestmark = pytest.mark.anyio

REQ = json.dumps({"prompt": "p"})
SHA = "ab" * 32


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.open(
        default_journal_path(tmp_path),
        input_fingerprint=fingerprint_bytes(b"p\n"),
        provider="freesora",
        base_url=None,
    )
    yield j
    j.close()


class Commits:
    """What SQLite was told: the synchronous setting in force at each COMMIT, in order."""

    def __init__(self, journal: Journal) -> None:
        self.modes: list[str] = []
        self.checkpoints = 0
        self._mode = "FULL"  # as Journal.open leaves the connection
        journal._require_conn().set_trace_callback(self._statement)

    def _statement(self, sql: str) -> None:
        text = sql.strip().upper()
        if text.startswith("PRAGMA SYNCHRONOUS="):
            self._mode = text.partition("=")[2]
        elif text == "COMMIT":
            self.modes.append(self._mode)
        elif text.startswith("PRAGMA WAL_CHECKPOINT"):
            self.checkpoints += 1


def intent(journal: Journal, index: int) -> None:
    journal.record_intent(index, REQ, f"prompt {index}", 10)


def ends(journal: Journal, index: int) -> ItemState:
    return journal.record_finished(
        index, ["https://files.example/v.mp4"], [(f"v{index}.mp4", 1, SHA)]
    )


class Posted:
    def __init__(self) -> None:
        self.outcomes: list[tuple[bool, Any]] = []
        self.done = anyio.Event()

    def __call__(self, ok: bool, value: Any) -> None:
        self.outcomes.append((ok, value))
        self.done.set()


async def test_a_create_is_fsynced_and_a_task_end_is_not(journal: Journal) -> None:
    commits = Commits(journal)
    writer = GroupCommit(journal)
    async with anyio.create_task_group() as group:
        group.start_soon(writer.run)
        await writer.write(functools.partial(intent, journal, 0))
        await writer.write(functools.partial(journal.record_created, 0, "task-0"))
        assert commits.modes == ["FULL", "FULL"]
        fsyncs = journal.fsyncs

        posted = Posted()
        writer.post(functools.partial(ends, journal, 0), posted)
        await posted.done.wait()
        assert posted.outcomes == [(True, ItemState.SUCCEEDED)]
        assert commits.modes[-1] == "NORMAL"
        assert journal.fsyncs == fsyncs

        # An end queued beside a create: the group is fsync'd for the create's sake.
        await writer.write(functools.partial(intent, journal, 1))
        late = Posted()
        writer.post(functools.partial(journal.record_terminal, 0, TaskState.SUCCEEDED), late)
        await writer.write(functools.partial(journal.record_created, 1, "task-1"))
        await late.done.wait()
        assert commits.modes[-1] == "FULL"
        assert journal.fsyncs == fsyncs + 2
        group.cancel_scope.cancel()
    assert journal.get(0) is not None and journal.get(0).state is ItemState.SUCCEEDED  # type: ignore[union-attr]
    assert journal.get(1) is not None and journal.get(1).task_id == "task-1"  # type: ignore[union-attr]


async def test_settle_waits_for_posted_ends_and_fsyncs_them(journal: Journal) -> None:
    commits = Commits(journal)
    writer = GroupCommit(journal)
    for index in range(3):
        intent(journal, index)
        journal.record_created(index, f"task-{index}")
    posted = Posted()
    async with anyio.create_task_group() as group:
        group.start_soon(writer.run)
        for index in range(3):
            writer.post(functools.partial(ends, journal, index), posted)
        await writer.settle()
        assert len(posted.outcomes) == 3
        assert commits.checkpoints == 1
        # Nothing unsynced since: a second settle has nothing to do.
        await writer.settle()
        assert commits.checkpoints == 1
        group.cancel_scope.cancel()
    assert journal.summary()[ItemState.SUCCEEDED.value] == 3


async def test_a_refused_or_failed_posted_write_reaches_its_callback(journal: Journal) -> None:
    writer = GroupCommit(journal)
    refused = Posted()
    async with anyio.create_task_group() as group:
        group.start_soon(writer.run)
        # No create was ever recorded for item 5: the end is refused alone.
        writer.post(functools.partial(ends, journal, 5), refused)
        await refused.done.wait()
        group.cancel_scope.cancel()
    [(ok, error)] = refused.outcomes
    assert not ok and isinstance(error, JournalTransitionError)
    with pytest.raises(JournalError, match="no longer written"):
        writer.post(functools.partial(ends, journal, 5), Posted())


def test_a_refused_call_of_a_group_is_undone_alone(journal: Journal) -> None:
    intent(journal, 0)
    journal.record_created(0, "task-0")
    events_before = len(history(journal, 0)) + len(history(journal, 1))
    outcomes = journal.run_group(
        [
            functools.partial(intent, journal, 1),
            # Item 0's id given to item 1: refused after its event row was written.
            functools.partial(journal.record_created, 1, "task-0"),
            functools.partial(intent, journal, 2),
            functools.partial(journal.record_created, 2, "task-2"),
        ]
    )

    assert [ok for ok, _ in outcomes] == [True, False, True, True]
    assert isinstance(outcomes[1][1], JournalTransitionError)
    one, two = journal.get(1), journal.get(2)
    assert one is not None and one.state is ItemState.CREATING and one.task_id is None
    assert two is not None and two.state is ItemState.CREATED and two.task_id == "task-2"
    # Nothing of the refused call is left, and nothing of the others was undone.
    assert journal.get(0).task_id == "task-0"  # type: ignore[union-attr]
    assert len(history(journal, 0)) + len(history(journal, 1)) == events_before


def test_a_refused_call_of_a_group_leaves_none_of_its_writes(journal: Journal) -> None:
    for index in (0, 1):
        intent(journal, index)
        journal.record_created(index, f"task-{index}")
    two = ["https://files.example/a.mp4", "https://files.example/b.mp4"]
    outcomes = journal.run_group(
        [
            # A file written, then "succeeded" refused (one of two files): the file goes too.
            functools.partial(journal.record_finished, 0, two, [("v0a.mp4", 1, SHA)]),
            functools.partial(journal.record_unknown, 1, "refused: item 1 has a task"),
            functools.partial(ends, journal, 1),
        ]
    )

    assert [ok for ok, _ in outcomes] == [False, False, True]
    zero, one = journal.get(0), journal.get(1)
    assert zero is not None and zero.state is ItemState.CREATED and zero.files == ()
    assert one is not None and one.state is ItemState.SUCCEEDED and len(one.files) == 1
    assert history(journal, 0) == [] and history(journal, 1) == []
