"""``sora-async batch`` killed with SIGKILL at several points, then run again.

Whatever the moment of the kill, the re-run creates no prompt a second time (unless told to
with --resubmit-unknown), finishes the rest, resumes a half-written download with a Range
request, and leaves a complete manifest and whole files (checked against the mock's bytes).
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

from sora_async.batch.journal import Journal, fingerprint_bytes
from sora_async.mock import Fault

pytestmark = pytest.mark.anyio


async def test_killed_while_tasks_run_resumes_them(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 6)
    clock = PausableClock()
    clock.pause()
    async with batch_mock(cap=3, clock=clock) as mock:
        argv = batch_argv(mock, source, out, concurrency=3)
        async with started(argv) as cli:
            await wait_until(lambda: frozen_at_cap(mock, 3), "3 frozen tasks, all polled")
            cli.kill()
            await cli.wait()
        first = [t.task_id for t in mock.tasks(KEY)]
        assert len(first) == 3
        clock.resume()

        done = await run_cli(argv)

        assert done.returncode == 0, done.stderr
        rows = check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)
        # The tasks of the killed run were adopted and polled, not created again.
        assert [row["task_id"] for row in rows[:3]] == first
        assert all(row["create_attempts"] == 1 for row in rows)


async def test_killed_during_a_create_reports_unknown_until_resubmitted(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 5)
    async with batch_mock(cap=2) as mock:
        # The first two creates are held by the server: the kill lands before any answer.
        mock.inject("create", Fault.SLOW, times=2, delay=1.0)
        argv = batch_argv(mock, source, out, concurrency=2)
        async with started(argv) as cli:
            await wait_until(lambda: mock.counters.requests["create"] == 2, "2 creates sent")
            cli.kill()
            await cli.wait()

        second = await run_cli(argv)

        assert second.returncode == 1
        counts = mock.counters.creates_by_prompt
        # Whatever the server made of the two lost requests, they were not sent again.
        assert mock.counters.requests["create"] == 5
        held = [counts[p] for p in prompts[:2]]
        assert all(n <= 1 for n in held)
        assert [counts[p] for p in prompts[2:]] == [1, 1, 1]
        rows = read_manifest(out)
        assert [row["state"] for row in rows] == ["unknown"] * 2 + ["succeeded"] * 3
        assert all("interrupted" in row["error"] for row in rows[:2])
        assert "2 item(s) have an unknown create outcome" in second.stderr
        assert '"prompt number 0"' in second.stderr and "--resubmit-unknown" in second.stderr

        # Asked explicitly, the unknown ones are sent again (and paid for again).
        third = await run_cli([*argv, "--resubmit-unknown"])

        assert third.returncode == 0, third.stderr
        rows = check_succeeded(mock, out, prompts)
        assert [counts[p] for p in prompts] == [held[0] + 1, held[1] + 1, 1, 1, 1]
        assert [row["resubmits"] for row in rows] == [1, 1, 0, 0, 0]
        assert "sending 2 item(s) again" in third.stderr


async def test_killed_during_a_download_resumes_the_part_file(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 1)
    size = 2 * 1024 * 1024
    async with batch_mock(file_size=size) as mock:
        # Half the file arrives, then the connection breaks; the retry is held by the server.
        mock.inject("download", Fault.MALFORMED)
        mock.inject("download", Fault.SLOW, delay=60.0)
        argv = batch_argv(mock, source, out)
        async with started(argv) as cli:
            await wait_until(lambda: mock.pending_faults("download") == 0, "both faults fired")
            cli.kill()
            await cli.wait()
        [task] = mock.tasks(KEY)
        part = out / f"00000_{task.task_id}.mp4.part"
        kept = part.stat().st_size  # what arrived of the half sent before the break
        assert 0 < kept <= size // 2
        journal = Journal.open(
            out / ".sora-journal.sqlite3",
            input_fingerprint=fingerprint_bytes(source.read_bytes()),
            provider="freesora",
            base_url=mock.freesora_url,
        )
        with journal:
            item = journal.get(0)
            assert item is not None and item.state == "downloading"
            assert item.task_id == task.task_id and item.files == ()

        done = await run_cli(argv)

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)
        # The re-run fetched only what the .part lacked (the mock counts the half it sent).
        assert mock.counters.download_bytes == size // 2 + (size - kept)
