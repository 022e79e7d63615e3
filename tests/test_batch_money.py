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
