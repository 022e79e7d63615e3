"""``--log-format json``: every line ``sora-async`` writes to stderr is one JSON object.

A batch goes through the mock's faults (an unknown create, 5xx, dropped and malformed polls, a
failed download, a task that fails), so its own warnings, the items listed under them and the
closing summary all appear; a re-run adds the plan's warning about unknown outcomes; a usage
error is a record too. stdout is the same as without JSON logs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_batch_support import batch_argv, batch_mock, read_manifest, run_cli, write_prompts

from sora_async.mock import Fault

pytestmark = pytest.mark.anyio


def records(stderr: str) -> list[dict[str, Any]]:
    lines = stderr.splitlines()
    assert lines, "nothing on stderr"
    parsed = []
    for line in lines:
        record = json.loads(line)  # every line, not only those that look like JSON
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= record.keys(), line
        parsed.append(record)
    return parsed


def with_json(argv: list[str]) -> list[str]:
    at = argv.index("batch")
    return [*argv[:at], "--log-format", "json", *argv[at:]]


async def test_a_faulty_batch_writes_only_json_records_to_stderr(tmp_path: Path) -> None:
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    write_prompts(source, 4)
    with source.open("a", encoding="utf-8") as more:
        more.write("a fox [fail]\n")
    async with batch_mock(cap=3) as mock:
        mock.inject("create", Fault.CREATED_THEN_500)
        for fault in (Fault.SERVER_ERROR, Fault.DROP, Fault.MALFORMED):
            mock.inject("status", fault)
        mock.inject("download", Fault.HTTP_ERROR, status=500, times=8)
        argv = batch_argv(mock, source, out, concurrency=3)
        done = await run_cli(with_json(argv))
        # The first run's manifest: the re-run below rewrites it (and may fetch the files the
        # first run could not), so its summary would no longer match.
        manifest = read_manifest(out)
        again = await run_cli(with_json(argv))  # the unknown outcome is left alone: a warning
        plain_out = tmp_path / "plain"
        plain = await run_cli(batch_argv(mock, source, plain_out, "--quiet", concurrency=3))

    assert done.returncode == 1, done.stderr
    states = [row["state"] for row in manifest]
    assert {"unknown", "failed"} <= set(states), states

    first = records(done.stderr)
    [summary] = [r for r in first if r.get("event") == "batch_summary"]
    assert summary["logger"] == "sora_async.batch" and summary["level"] == "info"
    assert summary["total"] == len(manifest) == 5
    for state in ("succeeded", "failed", "unknown"):
        assert summary[state] == states.count(state), (state, summary)
    assert summary["not_finished"] == 0
    assert summary["message"].startswith(f"batch: {states.count('succeeded')}/5 succeeded")
    warnings = [r for r in first if r["logger"] == "sora_async.batch" and r["level"] == "warning"]
    assert any("did not succeed" in r["message"] for r in warnings), warnings
    listed = {r["index"]: r for r in warnings if "index" in r}
    not_ok = {row["index"] for row in manifest if row["state"] != "succeeded"}
    assert set(listed) == not_ok
    for index, record in listed.items():
        assert record["state"] == manifest[index]["state"]
        assert record["line"] == index + 1
    assert any(r.get("event") == "created" for r in first)  # the task events are there too

    second = records(again.stderr)
    assert any("unknown create outcome" in r["message"] for r in second), second
    assert any(r.get("event") == "batch_summary" for r in second)

    # stdout is what it is without JSON logs (--quiet, which JSON implies): no summary there.
    assert "batch:" not in done.stdout
    assert done.stdout == plain.stdout


async def test_a_usage_error_is_a_json_record(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.txt"
    async with batch_mock() as mock:
        refused = await run_cli(with_json(batch_argv(mock, missing, tmp_path / "out")))
        unparsed = await run_cli(
            with_json(batch_argv(mock, missing, tmp_path / "out", "--concurrency", "zero"))
        )
    for ran in (refused, unparsed):
        assert ran.returncode == 2, ran.stderr
        [record] = records(ran.stderr)
        assert record["level"] == "error" and record["message"].startswith("error: ")
