"""The batch journal's group commit: few transactions, and each guarantee kept.

- a run commits at most about 3 transactions per task (writes that arrive together share one);
- a task id is on disk before the task's first poll (seen by killing the CLI at the moment the
  mock receives that poll, then reading the journal from another connection);
- a group whose commit fails fails every write waiting on it: the task ids it held are shown
  and adopted by the next run, and nothing is paid twice.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from aiohttp import web
from test_batch_money import with_faulty_journal
from test_batch_support import (
    KEY,
    batch_argv,
    batch_mock,
    check_succeeded,
    created_once,
    run_cli,
    started,
    wait_until,
    write_prompts,
)

from sora_async import SoraClient
from sora_async.batch.run import BatchOptions, run_batch
from sora_async.mock import MockConfig, MockServer

pytestmark = pytest.mark.anyio

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def test_a_200_task_run_commits_at_most_3_transactions_per_task(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 200)
    async with batch_mock(task_seconds=0.0, cap=20) as mock:
        client = SoraClient("freesora", KEY, base_url=mock.freesora_url, poll_interval=0.01, env={})
        async with client:
            outcome = await run_batch(client, BatchOptions(input_path=source, out=out, quiet=True))

        assert outcome.status == 0
        check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)
    # Intent, task id, success and files: four writes a task, one transaction each without
    # group commit (plus the registration of the input).
    assert 0 < outcome.journal_commits <= 3 * len(prompts), outcome.journal_commits
    # Only the groups holding a create's intent or task id fsync (the last ends ride on the
    # run's final sync).
    assert 0 < outcome.journal_fsyncs < outcome.journal_commits, outcome


def journal_task_ids(path: Path) -> dict[int, str | None]:
    """The journal's task ids, read by a connection of our own (read-only)."""
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT idx, task_id FROM items ORDER BY idx").fetchall())
    finally:
        conn.close()


async def test_a_task_id_is_on_disk_before_its_first_poll(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    write_prompts(source, 4)
    polled: list[str] = []
    pid: list[int] = []

    @web.middleware
    async def kill_at_first_poll(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.endswith("/check-result") and not polled and pid:
            # The moment the first poll arrives: nothing the CLI does after it counts.
            os.kill(pid[0], signal.SIGKILL)
            polled.append(json.loads(await request.read())["taskId"])
        return await handler(request)

    mock = MockServer(MockConfig(task_seconds=0.3, jitter=0.0, file_size=4096))
    mock.app.middlewares.append(kill_at_first_poll)
    with anyio.fail_after(60):
        async with mock:
            # A slow disk: a poll sent before its task id's commit would overtake it.
            argv = with_faulty_journal(batch_argv(mock, source, out), "_commit:slow")
            async with started(argv) as cli:
                pid.append(cli.process.pid)
                await wait_until(lambda: bool(polled), "the first poll")
                killed = await cli.wait()
            assert killed.returncode == -signal.SIGKILL
            created = {task.task_id for task in mock.tasks(KEY)}

    recorded = journal_task_ids(out / ".sora-journal.sqlite3")
    assert polled[0] in recorded.values(), (polled, recorded)
    # Nothing else is lost either: every id the journal has is one the mock created.
    assert {t for t in recorded.values() if t is not None} <= created


async def test_a_failed_group_commit_fails_its_writers_and_nothing_is_paid_twice(
    tmp_path: Path,
) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 40)
    async with batch_mock(task_seconds=0.2) as mock:
        argv = batch_argv(mock, source, out, concurrency=20)
        # The input's registration, its options and the first group commit; every commit after
        # fails.
        broken = await run_cli(with_faulty_journal(argv, "_commit:3+dead"))

        assert broken.returncode == 1, broken.stderr
        assert "unexpected" not in broken.stderr
        created = [task.task_id for task in mock.tasks(KEY)]
        assert created, broken.stderr
        # Each id the journal could not take is on screen (and kept for the next run).
        recorded = journal_task_ids(out / ".sora-journal.sqlite3")
        for task_id in set(created) - set(recorded.values()):
            assert task_id in broken.stderr, (task_id, broken.stderr)

        done = await run_cli(argv)

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)


async def test_the_ends_posted_last_are_in_the_manifest_on_a_slow_disk(tmp_path: Path) -> None:
    # Each commit takes a fifth of a second: the last tasks' ends are still queued when their
    # jobs return, and the run must wait for them before its manifest.
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 6)
    async with batch_mock(task_seconds=0.0, cap=20) as mock:
        argv = with_faulty_journal(batch_argv(mock, source, out), "_commit:slow")
        done = await run_cli(argv)

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)
