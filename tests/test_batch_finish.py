"""Finishing a batch: retry the failures, grow the input, pick up any task, see the result.

Each test runs the real CLI in a subprocess against the mock; the mock's counters say what was
created and paid for.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_batch_support import (
    KEY,
    batch_argv,
    batch_mock,
    check_succeeded,
    created_once,
    read_manifest,
    run_cli,
    write_prompts,
)

pytestmark = pytest.mark.anyio


async def test_retry_failed_announces_and_creates_the_failures_again(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = ["a kite over the sea", "a fox in the snow [fail]"]
    source.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    async with batch_mock() as mock:
        argv = batch_argv(mock, source, out)
        first = await run_cli(argv)
        assert first.returncode == 1
        failed_task = read_manifest(out)[1]["task_id"]

        again = await run_cli(argv)  # a plain re-run never pays for a failure again
        assert again.returncode == 1
        assert mock.counters.creates_by_prompt[prompts[1]] == 1

        retried = await run_cli([*argv, "--retry-failed"])

        assert retried.returncode == 1  # the mock fails this prompt every time
        assert mock.counters.creates_by_prompt == {prompts[0]: 1, prompts[1]: 2}
        assert "1 to create" in retried.stdout and "1 failed to create again" in retried.stdout
        announced = retried.stderr.index("--retry-failed: creating again 1 failed item(s)")
        assert announced < retried.stderr.index("did not succeed")
        [_, row] = read_manifest(out)
        assert row["state"] == "failed" and row["task_id"] not in (None, failed_task)
        assert row["create_attempts"] == 2


async def test_appended_lines_are_new_items_and_a_changed_line_is_refused(
    tmp_path: Path,
) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 2)
    async with batch_mock() as mock:
        argv = batch_argv(mock, source, out)
        assert (await run_cli(argv)).returncode == 0

        with source.open("a", encoding="utf-8") as more:
            more.write("one more prompt\n")
        grown = await run_cli(argv)

        assert grown.returncode == 0, grown.stderr
        assert "1 to create" in grown.stdout
        check_succeeded(mock, out, [*prompts, "one more prompt"])
        assert created_once(mock, [*prompts, "one more prompt"])

        source.write_text("a changed first line\nprompt number 1\n", encoding="utf-8")
        changed = await run_cli(argv)

        assert changed.returncode == 2
        [message] = changed.stderr_lines()
        assert f"{source}:1:" in message and "changed" in message
        assert mock.counters.creates == 3


async def test_visibility_is_announced_and_sent(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    write_prompts(source, 1)
    async with batch_mock() as mock:
        done = await run_cli(batch_argv(mock, source, out, "--private"))

        assert done.returncode == 0, done.stderr
        assert "videos: private" in done.stdout
        [task] = mock.tasks(KEY)
        assert task.params.get("public") is False or task.params.get("isPublic") is False, (
            task.params
        )
