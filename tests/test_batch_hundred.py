"""The issue's "done when": a 100-prompt batch completes, and killed then re-run it gets
every video exactly once (checked against the mock's counters and bytes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_batch_support import (
    PausableClock,
    batch_argv,
    batch_mock,
    check_succeeded,
    created_once,
    frozen_at_cap,
    run_cli,
    started,
    wait_until,
    write_prompts,
)

pytestmark = pytest.mark.anyio


async def test_a_hundred_prompts_complete(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 100)
    async with batch_mock(cap=50) as mock:
        done = await run_cli(batch_argv(mock, source, out, concurrency=50))

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)
        assert mock.counters.max_live_tasks <= 50
        assert "100/100 succeeded" in done.stdout
        assert "estimate: 10000 credits" in done.stdout


async def test_a_hundred_prompts_killed_mid_batch_then_rerun(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 100)
    clock = PausableClock()
    async with batch_mock(cap=20, clock=clock) as mock:
        argv = batch_argv(mock, source, out, concurrency=20)
        async with started(argv) as cli:
            # Once the first wave is done and the second is being created, freeze the tasks:
            # the run fills every slot with a frozen task and stops creating; the kill lands
            # there, with videos downloaded, tasks running and prompts not yet sent.
            await wait_until(lambda: mock.counters.creates > 20, "a second wave")
            clock.pause()
            await wait_until(lambda: frozen_at_cap(mock, 20), "20 frozen tasks, all polled")
            cli.kill()
            killed = await cli.wait()
        assert killed.returncode == -9
        assert mock.counters.downloads >= 1
        before = sum(mock.counters.creates_by_prompt.values())
        assert 20 < before < 100
        clock.resume()

        done = await run_cli(argv)

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)
        # The 20 frozen tasks are resumed, and so is any download the kill cut short.
        resumed = re.search(rf"{100 - before} to create, (\d+) to resume", done.stdout)
        assert resumed is not None, done.stdout
        assert int(resumed.group(1)) >= 20
