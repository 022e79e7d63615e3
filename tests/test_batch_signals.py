"""Ctrl-C during ``sora-async batch``: once drains, twice stops at once; both resume cleanly.

The mock's tasks are frozen (PausableClock) while the signal is sent, so the moment is known:
two tasks alive, every slot held, the other prompts not sent.
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

from sora_async.mock import Fault

pytestmark = pytest.mark.anyio


async def test_one_sigint_drains_then_a_rerun_finishes(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 5)
    clock = PausableClock()
    clock.pause()
    async with batch_mock(cap=2, clock=clock) as mock:
        argv = batch_argv(mock, source, out, concurrency=2)
        async with started(argv) as cli:
            await wait_until(lambda: frozen_at_cap(mock, 2), "2 frozen tasks, all polled")
            cli.interrupt()
            await wait_until(lambda: "no new creates" in cli.stderr_text(), "the drain notice")
            clock.resume()  # the running tasks may finish now
            drained = await cli.wait()

        assert drained.returncode == 130
        # The two running tasks finished and were downloaded; nothing else was created.
        assert sorted(mock.counters.creates_by_prompt.elements()) == prompts[:2]
        rows = read_manifest(out)
        assert [row["state"] for row in rows] == ["succeeded"] * 2 + ["pending"] * 3
        for row in rows[:2]:
            assert (out / row["files"][0]).read_bytes() == mock.file_bytes(row["task_id"])
        assert "3 item(s) not created yet" in drained.stderr

        # The cap applies to what is left: 3 x 100 credits, not the whole batch's 500.
        done = await run_cli([*argv, "--max-credits", "300"])

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)


async def test_two_sigints_stop_at_once_then_a_rerun_finishes(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 5)
    clock = PausableClock()
    clock.pause()
    async with batch_mock(cap=2, clock=clock) as mock:
        argv = batch_argv(mock, source, out, concurrency=2)
        async with started(argv) as cli:
            await wait_until(lambda: frozen_at_cap(mock, 2), "2 frozen tasks, all polled")
            cli.interrupt()
            await wait_until(lambda: "no new creates" in cli.stderr_text(), "the drain notice")
            cli.interrupt()
            stopped = await cli.wait()

        # It did not wait for the (frozen) tasks.
        assert stopped.returncode == 130
        assert all(not t.state.is_terminal for t in mock.tasks(KEY))
        assert mock.counters.downloads == 0
        assert "stopped at once" in stopped.stderr
        rows = read_manifest(out)
        assert [row["state"] for row in rows] == ["created"] * 2 + ["pending"] * 3
        clock.resume()

        done = await run_cli(argv)

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)
        assert "3 to create, 2 to resume" in done.stdout


async def test_second_sigint_during_a_create_leaves_it_unknown(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 2)
    async with batch_mock(cap=1) as mock:
        mock.inject("create", Fault.SLOW, delay=30.0)
        argv = batch_argv(mock, source, out, concurrency=1)
        async with started(argv) as cli:
            await wait_until(lambda: mock.counters.requests["create"] == 1, "a create sent")
            cli.interrupt()
            await wait_until(lambda: "no new creates" in cli.stderr_text(), "the drain notice")
            cli.interrupt()
            stopped = await cli.wait()

        # The create on the wire did not hold the second Ctrl-C up.
        assert stopped.returncode == 130
        assert "1 create(s) had no answer yet" in stopped.stderr

        again = await run_cli(argv)

        assert again.returncode == 1
        rows = read_manifest(out)
        assert [row["state"] for row in rows] == ["unknown", "succeeded"]
        assert mock.counters.creates_by_prompt[prompts[1]] == 1
        assert mock.counters.requests["create"] == 2


async def test_a_create_refused_with_429_then_ctrl_c_is_not_unknown(tmp_path: Path) -> None:
    # A 429 proves nothing was created. If the run drains while waiting to retry, the item is
    # "not created yet" (re-queued), never "unknown" (which only --resubmit-unknown sends).
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 1)
    async with batch_mock(cap=2) as mock:
        # The pause outlasts the moment the Ctrl-C lands (the retry would then show as a
        # create); the drain waits it out, so a longer pause only makes the test slower.
        mock.inject("create", Fault.RATE_LIMIT, retry_after=4)
        argv = batch_argv(mock, source, out, concurrency=2)
        async with started(argv) as cli:
            await wait_until(lambda: mock.counters.rate_limited == 1, "the refused create")
            cli.interrupt()
            drained = await cli.wait()

        assert drained.returncode == 130
        assert mock.counters.creates == 0
        [row] = read_manifest(out)
        assert row["state"] != "unknown", row
        assert "1 item(s) not created yet" in drained.stderr

        done = await run_cli(argv)  # no --resubmit-unknown needed

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)
