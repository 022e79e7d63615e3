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

from sora_async.mock import Fault

# The in-process CLI retries without waiting out its back-offs (the same tries; conftest).
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_backoff_waits")]


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

        broken = await run_cli(with_faulty_journal(argv, "record_finished:dead"))

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


# -- 6. input formats --------------------------------------------------------------------------

FORMATS = {
    "prompts.txt": "# my shots\na kite over the sea\n\n  # later: more\na fox, in snow\n",
    "shots.ndjson": '{"prompt": "a kite over the sea"}\n\n{"prompt": "a fox, in snow", '
    '"model": "sora-2-stable", "duration": 15}\n',
    "shots.csv": 'prompt,model,duration\n"a kite over the sea",,\n'
    '"a fox, in snow",sora-2-stable,15\n',
}


@pytest.mark.parametrize("name", sorted(FORMATS))
async def test_each_input_format_pays_for_its_prompts_only(tmp_path: Path, name: str) -> None:
    source, out = tmp_path / name, tmp_path / "out"
    source.write_text(FORMATS[name], encoding="utf-8")
    async with batch_mock() as mock:
        done = await run_cli(batch_argv(mock, source, out))

        assert done.returncode == 0, done.stderr
        prompts = ["a kite over the sea", "a fox, in snow"]
        assert created_once(mock, prompts)
        assert [row["prompt"] for row in read_manifest(out)] == prompts
        if not name.endswith(".txt"):
            params = {t.prompt: t.params for t in mock.tasks(KEY)}
            assert params["a fox, in snow"]["duration"] == 15, params


@pytest.mark.parametrize("name", ["shots.json", "prompts", "shots.tsv"])
async def test_an_input_of_another_format_is_refused_before_any_create(
    tmp_path: Path, name: str
) -> None:
    source, out = tmp_path / name, tmp_path / "out"
    source.write_text('{"prompt": "a kite"}\n', encoding="utf-8")
    async with batch_mock() as mock:
        done = await run_cli(batch_argv(mock, source, out))

        assert done.returncode == 2
        [message] = done.stderr_lines()
        assert ".jsonl" in message and ".csv" in message
        assert sum(mock.counters.requests.values()) == 0


# -- 7. generate --out checks the directory before it pays --------------------------------------


@pytest.mark.parametrize("where", ["a file", "under a file"])
async def test_generate_into_a_dir_it_cannot_write_pays_nothing(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "videos"
    blocker.write_text("not a directory", encoding="utf-8")
    out = blocker if where == "a file" else blocker / "inside"
    async with batch_mock() as mock:
        argv = batch_argv(mock, tmp_path / "unused.txt", out)
        command = [*argv[: argv.index("batch")], "generate", "a kite", "--out", str(out)]

        done = await run_cli(command)

        assert done.returncode == 2
        [message] = done.stderr_lines()
        assert str(out) in message and "--out" in message
        assert sum(mock.counters.requests.values()) == 0


# -- 9. --dry-run exits as the real run would ----------------------------------------------------


async def test_a_dry_run_of_a_refused_batch_exits_2(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    write_prompts(source, 3)
    async with batch_mock() as mock:
        over = await run_cli(batch_argv(mock, source, out, "--dry-run", "--max-credits", "200"))
        within = await run_cli(batch_argv(mock, source, out, "--dry-run", "--max-credits", "300"))

        assert over.returncode == 2
        assert "--max-credits 200" in over.stderr and "refused" in over.stderr
        assert within.returncode == 0, within.stderr
        assert mock.counters.requests["create"] == 0


# -- 8. a wrong base URL ---------------------------------------------------------------------------


async def test_a_wrong_base_url_fails_nothing_and_a_rerun_with_the_right_one_creates(
    tmp_path: Path,
) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 3)
    async with batch_mock() as mock:
        argv = batch_argv(mock, source, out, concurrency=1)
        wrong = list(argv)
        wrong[wrong.index(mock.url_for("freesora"))] = mock.url_for("freesora") + "/v9"

        stopped = await run_cli(wrong)

        assert stopped.returncode == 1
        assert "stopped creating" in stopped.stderr
        # The first 404 stopped the creates; nothing was created, so nothing failed.
        states = [row["state"] for row in read_manifest(out)]
        assert states == ["not_created", "pending", "pending"], states
        assert mock.counters.creates == 0

        done = await run_cli(argv)

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)


# -- 4. a failed download says why --------------------------------------------------------------


async def test_a_failed_download_reports_its_real_cause_and_a_rerun_fetches_it(
    tmp_path: Path,
) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 1)
    async with batch_mock() as mock:
        # Not retried (a 5xx would be, with backoff): the download fails at once.
        mock.inject("download", Fault.HTTP_ERROR, status=404)
        argv = batch_argv(mock, source, out)

        broken = await run_cli(argv)

        assert broken.returncode == 1
        [row] = read_manifest(out)
        assert row["note"].startswith("download failed: ") and "404" in row["note"], row
        assert "cannot become" not in broken.stderr
        assert "download failed: " in broken.stderr
        mock.clear_faults()

        done = await run_cli(argv)

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)


# -- 5. resume adopts the live tasks before it creates -------------------------------------------


async def test_resume_adopts_live_tasks_before_creating_so_no_429(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts = write_prompts(source, 3)
    clock = PausableClock()
    clock.pause()
    async with batch_mock(cap=2, clock=clock) as mock:
        # Item 0's create is lost on the wire (unknown; the client holds its slot a while, so
        # it runs 3 wide here); items 1 and 2 become live tasks and fill the account.
        mock.inject("create", Fault.DROP)
        first = batch_argv(mock, source, out, concurrency=3)
        argv = batch_argv(mock, source, out, concurrency=2)

        def live_and_polled(polls: int) -> bool:
            live = [t for t in mock.tasks(KEY) if not t.state.is_terminal]
            return len(live) == 2 and all(t.polls >= polls for t in live)

        async with started(first) as cli:
            await wait_until(lambda: live_and_polled(1), "2 frozen tasks, both polled")
            cli.kill()
            await cli.wait()

        # The re-run sends item 0 again (index 0, before the live items 1 and 2).
        async with started([*argv, "--resubmit-unknown"]) as cli:
            await wait_until(
                lambda: live_and_polled(2) or mock.counters.rate_limited > 0,
                "the live tasks adopted (or a create refused)",
            )
            assert mock.counters.rate_limited == 0
            clock.resume()
            done = await cli.wait()

        assert done.returncode == 0, done.stderr
        check_succeeded(mock, out, prompts)
        assert created_once(mock, prompts)
