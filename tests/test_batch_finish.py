"""Finishing a batch: retry the failures, grow the input, pick up any task, see the result.

Each test runs the real CLI in a subprocess against the mock; the mock's counters say what was
created and paid for.
"""

from __future__ import annotations

import json
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

from sora_async import SoraClient, VideoRequest

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


async def test_a_changed_line_is_refused_even_with_lines_appended(tmp_path: Path) -> None:
    # Appended lines let the journal trust its items without comparing them, but only once the
    # file's bytes up to its last known item are the file it knew.
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    write_prompts(source, 2)
    async with batch_mock() as mock:
        argv = batch_argv(mock, source, out)
        assert (await run_cli(argv)).returncode == 0

        source.write_text(
            "a changed first line\nprompt number 1\none more prompt\n", encoding="utf-8"
        )
        changed = await run_cli(argv)

        assert changed.returncode == 2
        [message] = changed.stderr_lines()
        assert f"{source}:1:" in message and "changed" in message
        assert mock.counters.creates == 2


async def test_visibility_is_announced_and_sent(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    write_prompts(source, 1)
    async with batch_mock() as mock:
        done = await run_cli(batch_argv(mock, source, out, "--private"))

        assert done.returncode == 0, done.stderr
        assert "videos: private" in done.stdout
        # stdout carries results (plan, each item, summary); the progress goes to stderr.
        assert " done | " not in done.stdout and " done | " in done.stderr
        assert "[00000] succeeded" in done.stdout
        [task] = mock.tasks(KEY)
        assert task.params.get("public") is False or task.params.get("isPublic") is False, (
            task.params
        )


async def test_index_html_and_the_report_show_every_item(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = ["a kite <over> the sea", "a fox in the snow [fail]"]
    source.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    async with batch_mock() as mock:
        argv = batch_argv(mock, source, out)
        assert (await run_cli(argv)).returncode == 1
        ok, failed = read_manifest(out)

        page = (out / "index.html").read_text(encoding="utf-8")
        assert f'<video src="{ok["files"][0]}"' in page
        assert "a kite &lt;over&gt; the sea" in page and prompts[1] in page
        assert 'class="state failed"' in page and 'class="state succeeded"' in page

        report = await run_cli([*argv[: argv.index("batch")], "report", str(out)])

        assert report.returncode == 1  # not every item succeeded
        assert "1 succeeded, 1 failed" in report.stdout
        assert failed["task_id"] in report.stdout and "(refunded)" in report.stdout
        assert "credits spent (estimated by the price table): 100" in report.stdout


async def test_wait_and_download_pick_up_a_task_created_elsewhere(tmp_path: Path) -> None:
    async with batch_mock() as mock:
        async with SoraClient("freesora", KEY, base_url=mock.url_for("freesora")) as client:
            task_id = await client.create(VideoRequest("a kite over the sea"))
        head = batch_argv(mock, tmp_path / "unused.txt", tmp_path)
        head = head[: head.index("batch")]

        waited = await run_cli([*head, "wait", task_id, "--out", str(tmp_path / "a")])
        fetched = await run_cli([*head, "download", task_id, "--out", str(tmp_path / "b")])

        assert waited.returncode == 0, waited.stderr
        assert fetched.returncode == 0, fetched.stderr
        for done, where in ((waited, "a"), (fetched, "b")):
            [path] = json.loads(done.stdout)["files"]
            written = tmp_path / where / Path(path).name
            assert str(written) == path
            assert written.read_bytes() == mock.file_bytes(task_id)
        assert mock.counters.creates == 1
