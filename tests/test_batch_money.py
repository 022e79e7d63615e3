"""The "money and truth" paths of ``sora-async batch``: where a run could pay twice, lose a
task id or hide the real cause of a failure.

Each test runs the real CLI in a subprocess against the mock; the mock's counters say what was
created and paid for.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_batch_support import (
    KEY,
    PausableClock,
    batch_argv,
    batch_mock,
    check_succeeded,
    created_once,
    frozen_at_cap,
    read_manifest,
    run_cli,
    started,
    wait_until,
    write_prompts,
)

pytestmark = pytest.mark.anyio


# -- 1. DIR knows its journal ----------------------------------------------------------------


async def test_a_rerun_without_journal_flag_adopts_the_journal_dir_records(
    tmp_path: Path,
) -> None:
    source, out, journal = tmp_path / "prompts.txt", tmp_path / "out", tmp_path / "j.sqlite3"
    prompts = write_prompts(source, 4)
    clock = PausableClock()
    clock.pause()
    async with batch_mock(cap=2, clock=clock) as mock:
        argv = batch_argv(mock, source, out, "--journal", str(journal), concurrency=2)
        async with started(argv) as cli:
            await wait_until(lambda: frozen_at_cap(mock, 2), "2 frozen tasks, all polled")
            cli.kill()
            await cli.wait()
        clock.resume()

        done = await run_cli(batch_argv(mock, source, out, concurrency=2))  # no --journal

        assert created_once(mock, prompts)
        assert done.returncode == 0, done.stderr
        assert str(journal) in done.stderr  # it says which journal it adopted
        check_succeeded(mock, out, prompts)


async def test_a_dir_whose_journal_is_gone_is_refused_before_any_create(tmp_path: Path) -> None:
    source, out, journal = tmp_path / "prompts.txt", tmp_path / "out", tmp_path / "j.sqlite3"
    write_prompts(source, 2)
    async with batch_mock() as mock:
        first = await run_cli(batch_argv(mock, source, out, "--journal", str(journal)))
        assert first.returncode == 0, first.stderr
        journal.rename(tmp_path / "moved.sqlite3")
        creates = mock.counters.requests["create"]

        again = await run_cli(batch_argv(mock, source, out))

        assert again.returncode == 2
        [message] = again.stderr_lines()
        assert str(journal) in message and "--journal" in message
        assert mock.counters.requests["create"] == creates

        other = await run_cli(
            batch_argv(mock, source, out, "--journal", str(tmp_path / "new.sqlite3"))
        )
        assert other.returncode == 2
        assert str(journal) in other.stderr
        assert mock.counters.requests["create"] == creates


# -- 2, 3. a journal that cannot be written ----------------------------------------------------

FAULTY = Path(__file__).with_name("faulty_journal.py")


def with_faulty_journal(argv: list[str], fault: str) -> list[str]:
    """The same command run with a journal whose disk fails (see faulty_journal.py)."""
    assert argv[1:3] == ["-m", "sora_async"]
    return [argv[0], str(FAULTY), fault, *argv[3:]]


async def test_a_failed_write_of_a_task_id_is_retried(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 2)
    async with batch_mock() as mock:
        argv = batch_argv(mock, source, out, concurrency=1)

        done = await run_cli(with_faulty_journal(argv, "record_created:1"))

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)


async def test_a_task_id_the_journal_cannot_take_is_shown_and_never_paid_twice(
    tmp_path: Path,
) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 3)
    async with batch_mock() as mock:
        argv = batch_argv(mock, source, out, concurrency=1)

        broken = await run_cli(with_faulty_journal(argv, "record_created:dead"))

        assert broken.returncode == 1
        # Creating stopped at the first id the journal could not take; that id is on screen.
        [task] = mock.tasks(KEY)
        assert mock.counters.requests["create"] == 1
        assert task.task_id in broken.stderr
        assert "unexpected" not in broken.stderr
        rows = read_manifest(out)
        assert rows[0]["task_id"] == task.task_id

        done = await run_cli(argv)

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)


async def test_a_journal_failure_after_a_create_still_writes_the_manifest(
    tmp_path: Path,
) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 2)
    async with batch_mock() as mock:
        argv = batch_argv(mock, source, out, concurrency=1)

        broken = await run_cli(with_faulty_journal(argv, "record_download:dead"))

        assert broken.returncode == 1
        assert "unexpected" not in broken.stderr
        assert "journal" in broken.stderr
        # The manifest was written on the way out: every task created so far is in it.
        rows = read_manifest(out)
        created = {task.task_id for task in mock.tasks(KEY)}
        assert created and {row["task_id"] for row in rows} - {None} == created

        done = await run_cli(argv)

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)
