"""The secrets canary over what ``sora-async batch`` leaves behind: journal, manifest, index.html.

A canary key runs a batch through every fault the mock has (an unknown create, 5xx, dropped
and malformed polls, a failed download, a task that fails) with ``-vv --log-format json``, and
then ``report``; a second run uses a wrong key (401). Every byte of stdout, stderr and every
file under the output folder (the SQLite journal and its WAL included) is searched: 0 hits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_batch_support import KEY, batch_argv, batch_mock, run_cli, write_prompts

from sora_async.mock import Fault

# The in-process CLI retries without waiting out its back-offs (the same tries; conftest).
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_backoff_waits")]

CANARY = "sk-CANARY-batch-0123456789"
PIECES = (CANARY, "CANARY", "0123456789")


def with_key(argv: list[str], key: str) -> list[str]:
    return [key if arg == KEY else arg for arg in argv]


def assert_clean(text: str, what: str) -> None:
    for piece in PIECES:
        assert piece not in text, f"{piece!r} leaked into {what}: {text[:2000]}"


def assert_folder_clean(folder: Path) -> int:
    checked = 0
    for path in folder.rglob("*"):
        if path.is_file():
            assert_clean(path.read_bytes().decode("latin-1"), f"the file {path.name}")
            checked += 1
    return checked


async def test_no_trace_of_the_key_in_anything_a_batch_writes(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    write_prompts(source, 4)
    with source.open("a", encoding="utf-8") as more:
        more.write("a fox [fail]\n")
    async with batch_mock(api_keys={CANARY}, cap=3) as mock:
        mock.inject("create", Fault.CREATED_THEN_500)
        for fault in (Fault.SERVER_ERROR, Fault.DROP, Fault.MALFORMED):
            mock.inject("status", fault)
        mock.inject("download", Fault.HTTP_ERROR, status=500, times=8)
        argv = with_key(batch_argv(mock, source, out, concurrency=3), CANARY)
        argv[argv.index("batch") : argv.index("batch")] = ["-vv", "--log-format", "json"]

        done = await run_cli(argv)
        report = await run_cli(with_key([*argv[:3], "report", str(out)], CANARY))
        wrong = with_key(batch_argv(mock, source, out), CANARY + "-wrong")
        refused = await run_cli([*wrong, "--log-format", "json", "-vv"])

    assert done.returncode == 1, done.stderr  # some items failed or are unknown
    states = {
        json.loads(line)["state"] for line in (out / "manifest.jsonl").read_text().splitlines()
    }
    assert {"unknown", "failed"} <= states, states
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(record.get("event") == "created" for record in events)
    assert any(record.get("level") == "debug" for record in events)  # -vv reached the JSON
    assert refused.returncode != 0
    for name, ran in (("the run", done), ("report", report), ("the wrong key's run", refused)):
        assert_clean(ran.stdout, f"stdout of {name}")
        assert_clean(ran.stderr, f"stderr of {name}")
    names = {path.name for path in out.iterdir()}
    assert {"manifest.jsonl", "index.html", ".sora-journal.sqlite3"} <= names, names
    assert assert_folder_clean(tmp_path) >= 4
