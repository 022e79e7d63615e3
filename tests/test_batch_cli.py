"""``sora-async batch`` refusals: bad input, the cost guard, a journal of another batch.

Each test runs the real CLI in a subprocess against the mock; the mock's counters show what
was (not) sent.
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
    run_cli,
    started,
    wait_until,
    write_prompts,
)

from sora_async.mock import MockServer

pytestmark = pytest.mark.anyio


def total_requests(mock: MockServer) -> int:
    return sum(mock.counters.requests.values())


# -- bad input: exit 2, the line number, nothing sent ---------------------------------------


@pytest.mark.parametrize(
    ("lines", "bad_line", "words"),
    [
        (['{"prompt": "a kite"}', "", '{"prompt": "a fox",}'], 3, "not valid JSON"),
        (['{"prompt": "a kite"}', '{"prompt": "a fox", "colour": "red"}'], 2, "'colour'"),
        (['{"prompt": "a kite", "duration": 12}'], 1, "duration"),
        # freesora cannot honour "quality": the provider's own check, before anything is sent
        (['{"prompt": "a kite"}', '{"prompt": "a fox", "quality": "hd"}'], 2, "quality"),
        (['["a kite"]'], 1, "JSON object"),
        (['{"model": "sora-2"}'], 1, "prompt"),
    ],
)
async def test_a_malformed_line_is_refused_before_anything_is_sent(
    tmp_path: Path, lines: list[str], bad_line: int, words: str
) -> None:
    source, out = tmp_path / "batch.jsonl", tmp_path / "out"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    async with batch_mock() as mock:
        done = await run_cli(batch_argv(mock, source, out))

        assert done.returncode == 2
        [message] = done.stderr_lines()
        assert message.startswith(f"sora-async: error: {source}:{bad_line}: ")
        assert words in message
        assert total_requests(mock) == 0
        assert not out.exists()


async def test_invalid_utf8_names_its_line(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    source.write_bytes(b"a kite\nan \xff fox\n")
    async with batch_mock() as mock:
        done = await run_cli(batch_argv(mock, source, out))

        assert done.returncode == 2
        [message] = done.stderr_lines()
        assert f"{source}:2: not UTF-8" in message
        assert total_requests(mock) == 0


async def test_an_empty_file_is_a_usage_error(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    source.write_text("\n  \n", encoding="utf-8")
    async with batch_mock() as mock:
        done = await run_cli(batch_argv(mock, source, out))

        assert done.returncode == 2
        assert "no prompts" in done.stderr
        assert total_requests(mock) == 0


# -- the cost guard --------------------------------------------------------------------------


async def test_dry_run_prints_the_estimate_and_sends_no_create(tmp_path: Path) -> None:
    source, out = tmp_path / "batch.jsonl", tmp_path / "out"
    source.write_text(
        '{"prompt": "a kite"}\n{"prompt": "a fox", "model": "sora-2-pro"}\n', encoding="utf-8"
    )
    async with batch_mock() as mock:
        done = await run_cli(batch_argv(mock, source, out, "--dry-run"))

        assert done.returncode == 0, done.stderr
        assert "estimate: 475 credits for the 2 item(s) to create" in done.stdout
        assert "balance 1000000 credits" in done.stdout
        assert "nothing was sent" in done.stdout
        assert mock.counters.requests["create"] == 0
        assert not out.exists()  # a dry run leaves no journal behind


async def test_max_credits_below_the_estimate_refuses(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    write_prompts(source, 3)
    async with batch_mock() as mock:
        done = await run_cli(batch_argv(mock, source, out, "--max-credits", "250"))

        assert done.returncode == 2
        [message] = done.stderr_lines()
        assert "--max-credits 250" in message and "300 credits" in message
        assert mock.counters.requests["create"] == 0
        assert not out.exists()


async def test_max_credits_that_covers_the_batch_runs_it(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 3)
    async with batch_mock() as mock:
        done = await run_cli(batch_argv(mock, source, out, "--max-credits", "300"))

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)


async def test_an_unaffordable_batch_is_refused(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    write_prompts(source, 3)
    async with batch_mock() as mock:
        mock.set_credits(KEY, 250)
        done = await run_cli(batch_argv(mock, source, out))

        assert done.returncode == 2
        [message] = done.stderr_lines()
        assert "cannot pay for this batch" in message
        assert "300 credits" in message and "balance is 250" in message
        assert mock.counters.requests["create"] == 0
        assert not out.exists()

        # Nothing was written, so the trimmed input can run into the same directory.
        prompts = write_prompts(source, 2)
        done = await run_cli(batch_argv(mock, source, out))

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)
        assert mock.credits(KEY) == 50


async def test_sora2api_has_no_prices_and_cannot_be_capped(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 2)
    async with batch_mock() as mock:
        capped = await run_cli(
            batch_argv(mock, source, out, "--max-credits", "1000", provider="sora2api")
        )
        assert capped.returncode == 2
        assert "publishes no prices" in capped.stderr
        assert mock.counters.requests["create"] == 0

        done = await run_cli(batch_argv(mock, source, out, provider="sora2api"))

        assert done.returncode == 0, done.stderr
        assert "sora2api publishes no prices" in done.stdout
        check_succeeded(mock, out, prompts)


# -- the journal belongs to one batch --------------------------------------------------------


async def test_the_same_out_dir_with_another_input_is_refused(tmp_path: Path) -> None:
    source, other, out = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "out"
    prompts = write_prompts(source, 2)
    write_prompts(other, 2, prefix="other")
    async with batch_mock() as mock:
        first = await run_cli(batch_argv(mock, source, out))
        assert first.returncode == 0, first.stderr

        refused = await run_cli(batch_argv(mock, other, out))

        assert refused.returncode == 2
        [message] = refused.stderr_lines()
        assert message.startswith(f"sora-async: error: {other}:1: this line changed")
        provider = await run_cli(batch_argv(mock, source, out, provider="sora2api"))
        assert provider.returncode == 2
        assert "provider 'freesora'" in provider.stderr and "--provider" in provider.stderr
        changed = await run_cli(batch_argv(mock, source, out, "--model", "sora-2-pro"))
        assert changed.returncode == 2
        assert "model" in changed.stderr and "same options" in changed.stderr
        assert created_once(mock, prompts)

        # A journal of its own makes the other input a batch of its own.
        elsewhere = await run_cli(
            batch_argv(mock, other, tmp_path / "out2", "--journal", str(tmp_path / "j.db"))
        )
        assert elsewhere.returncode == 0, elsewhere.stderr
        assert (tmp_path / "j.db").exists()


async def test_a_second_batch_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    write_prompts(source, 3)
    clock = PausableClock()
    clock.pause()
    async with batch_mock(cap=2, clock=clock) as mock:
        argv = batch_argv(mock, source, out, concurrency=2)
        async with started(argv):
            await wait_until(lambda: frozen_at_cap(mock, 2), "2 frozen tasks, all polled")

            second = await run_cli(argv)

            assert second.returncode == 2
            [message] = second.stderr_lines()
            assert "in use by another process" in message
            assert mock.counters.requests["create"] == 2
