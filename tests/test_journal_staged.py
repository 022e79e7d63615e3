"""The batch journal's group on the event loop: its statements run there and only its COMMIT
in a worker thread (Journal.stage_group), without the loop ever waiting for the journal.

- a group that finds another thread holding the journal (a reader) waits for it in a worker
  thread, and the event loop goes on meanwhile;
- the thread that staged a group, using the journal while the group's COMMIT runs elsewhere,
  waits for that COMMIT (it never reads or writes inside it).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from test_journal import open_journal
from test_journal_durability import intent

from sora_async.batch.journal import GroupCommit, ItemState, Journal, default_journal_path

pytestmark = pytest.mark.anyio


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with open_journal(default_journal_path(tmp_path)) as opened:
        yield opened


async def test_a_group_waits_for_a_reader_in_a_worker_thread_not_on_the_event_loop(
    journal: Journal,
) -> None:
    # Another thread holds the journal (as a manifest being written does): the group must wait
    # for it off the event loop, which goes on meanwhile.
    inside, gate = threading.Event(), threading.Event()
    opened: list[bool] = []

    def held() -> None:
        inside.set()
        # Opened by the event loop: never, if the loop waits for this thread.
        opened.append(gate.wait(10))

    reader = threading.Thread(target=journal.run_group, args=([held],))
    reader.start()
    inside.wait(10)
    writer = GroupCommit(journal)
    written = anyio.Event()

    async def write() -> None:
        await writer.write(functools.partial(intent, journal, 0))
        written.set()

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(writer.run)
            group.start_soon(write)
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            # The loop ran on while the write waited for the reader.
            assert not written.is_set()
            gate.set()
            with anyio.fail_after(10):
                await written.wait()
            group.cancel_scope.cancel()
    finally:
        reader.join(10)
    assert opened == [True]
    item = journal.get(0)
    assert item is not None and item.state is ItemState.CREATING


def test_the_staging_thread_waits_for_its_group_s_commit_before_using_the_journal(
    journal: Journal,
) -> None:
    outcomes = journal.stage_group([functools.partial(intent, journal, 0)])
    assert outcomes is not None and outcomes[0][0]
    commits = journal.commits
    gate = threading.Event()

    def commit() -> None:
        gate.wait(10)
        assert journal.commit_staged() is None

    committer = threading.Thread(target=commit)
    committer.start()
    # Opened only once this thread is (about to be) waiting: the read below must not run
    # inside the transaction being committed.
    threading.Timer(0.05, gate.set).start()
    try:
        item = journal.get(0)
        assert journal.commits == commits + 1
        assert item is not None and item.state is ItemState.CREATING
    finally:
        gate.set()
        committer.join(10)
        journal.end_staged()
