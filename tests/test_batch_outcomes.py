"""``sora-async batch`` outcomes: failures with refunds, unknown creates, a 402, timeouts.

Each test runs the real CLI in a subprocess against the mock; the manifest, the summary on
stderr and the mock's counters are the evidence.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_batch_support import (
    PausableClock,
    batch_argv,
    batch_mock,
    check_succeeded,
    created_once,
    read_manifest,
    run_cli,
    write_prompts,
)

from sora_async.mock import Fault

# The in-process CLI retries without waiting out its back-offs (the same tries; conftest).
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_backoff_waits")]


async def test_a_402_stops_creating_and_a_rerun_sends_the_rest(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 4)
    async with batch_mock() as mock:
        mock.inject("create", Fault.HTTP_ERROR, status=402)
        argv = batch_argv(mock, source, out, concurrency=1)
        stopped = await run_cli(argv)

        assert stopped.returncode == 1
        assert "stopped creating" in stopped.stderr
        assert mock.counters.creates == 0
        assert mock.counters.requests["create"] == 1  # no create after the refusal
        rows = read_manifest(out)
        assert rows[0]["state"] == "not_created"
        assert [row["state"] for row in rows[1:]] == ["pending"] * 3

        done = await run_cli(batch_argv(mock, source, out, concurrency=4))

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)


async def test_failed_tasks_are_summarised_with_their_refunds(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = ["a kite over the sea", "a fox in the snow [fail]", "a lighthouse at dusk"]
    source.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    async with batch_mock() as mock:
        done = await run_cli(batch_argv(mock, source, out))

        assert done.returncode == 1
        rows = read_manifest(out)
        assert [row["state"] for row in rows] == ["succeeded", "failed", "succeeded"]
        failed = rows[1]
        assert failed["refunded"] is True and failed["error"]
        assert failed["files"] == []
        assert mock.task(failed["task_id"]).refunded
        summary = done.stderr[done.stderr.index("did not succeed") :]
        assert json.dumps(prompts[1]) in summary
        assert failed["error"] in summary and "(refunded)" in summary

        again = await run_cli(batch_argv(mock, source, out))

        assert again.returncode == 1  # still failed: a failed task is not paid for again
        assert created_once(mock, prompts)


async def test_an_unknown_create_is_never_sent_again_silently(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 2)
    async with batch_mock() as mock:
        # The server creates (and charges) the task, then the answer is lost.
        mock.inject("create", Fault.CREATED_THEN_DROP)
        # (The client holds the unknown task's slot for a while: give the other one its own.)
        argv = batch_argv(mock, source, out, concurrency=2)
        first = await run_cli(argv)

        assert first.returncode == 1
        rows = read_manifest(out)
        assert [row["state"] for row in rows] == ["unknown", "succeeded"]
        assert "unknown" in first.stderr and json.dumps(prompts[0]) in first.stderr

        again = await run_cli(argv)

        assert again.returncode == 1
        assert created_once(mock, prompts)
        assert "--resubmit-unknown" in again.stderr


async def test_a_task_past_timeout_is_kept_for_the_next_run(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 2)
    clock = PausableClock()
    clock.pause()
    async with batch_mock(clock=clock) as mock:
        gave_up = await run_cli(batch_argv(mock, source, out, "--timeout", "0.5"))

        assert gave_up.returncode == 1
        rows = read_manifest(out)
        assert [row["state"] for row in rows] == ["created", "created"]
        assert all("not seen finished" in row["note"] for row in rows)
        assert "a re-run polls it again" in gave_up.stderr
        clock.resume()

        done = await run_cli(batch_argv(mock, source, out))

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)


async def test_quiet_prints_nothing_but_problems(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 2)
    async with batch_mock() as mock:
        done = await run_cli(batch_argv(mock, source, out, "--quiet"))

        assert done.returncode == 0, done.stderr
        assert done.stdout == "" and done.stderr == ""
        check_succeeded(mock, out, prompts)
