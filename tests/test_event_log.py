"""Task events as structured log records (``sora_async.events``) and ``--log-format``.

In-process runs against the mock show each event's record and its fields; the CLI runs as a
subprocess so that its real stderr is what is read: one JSON object (or text line) per event.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import pytest
import zygote
from helpers import client_for, running_mock

from sora_async import TaskState
from sora_async.eventlog import EVENT_FIELD, EVENT_LOGGER, EventLog, JsonFormatter, log_events
from sora_async.mock import Fault

pytestmark = pytest.mark.anyio

KEY = "sk-EVENTLOG-7f3a9c"


def event_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        getattr(record, EVENT_FIELD) for record in caplog.records if record.name == EVENT_LOGGER
    ]


def by_key(records: list[dict[str, Any]]) -> dict[Any, list[dict[str, Any]]]:
    grouped: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for fields in records:
        grouped[fields["key"]].append(fields)
    return grouped


async def test_every_event_of_a_run_is_a_record_with_its_fields(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, logger=EVENT_LOGGER)
    async with running_mock(file_size=4096) as mock, client_for(mock, "freesora", KEY) as client:
        results = {
            r.key: r
            async for r in client.generate_many(["a kite", "a fox [fail]"], download_to=tmp_path)
        }

    grouped = by_key(event_records(caplog))
    ok, failed = grouped[0], grouped[1]
    kinds = [fields["event"] for fields in ok]
    assert kinds[:2] == ["creating", "created"]
    assert kinds[-3:] == ["downloading", "downloaded", "succeeded"]
    assert set(kinds[2:-3]) <= {"progress"}
    assert [fields["event"] for fields in failed][-1] == "failed"
    last = failed[-1]
    assert last["state"] == "failed" and last["error_class"] and "failed" in last["error"]
    assert last["task_id"] == results[1].task_id and last["refunded"] is True
    for fields in ok + failed:
        assert fields["provider"] == "freesora"
        assert fields["index"] == fields["key"]
    assert all(f["task_id"] == results[0].task_id for f in ok[1:])
    assert ok[-2]["file"] == results[0].files[0].name and ok[-2]["bytes"] == 4096
    elapsed = [fields["elapsed"] for fields in ok]
    assert elapsed == sorted(elapsed) and elapsed[0] == 0.0
    # The JSON line of each record holds the same fields, and the key never.
    formatter = JsonFormatter()
    for record in caplog.records:
        line = formatter.format(record)
        assert "\n" not in line and KEY not in line
        data = json.loads(line)
        if record.name == EVENT_LOGGER:
            assert (
                data["logger"] == EVENT_LOGGER
                and data["event"] == getattr(record, EVENT_FIELD)["event"]
            )
    assert results[0].state is TaskState.SUCCEEDED


async def test_generate_logs_its_events_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=EVENT_LOGGER)
    async with running_mock() as mock, client_for(mock, "sora2api", KEY) as client:
        result = await client.generate("a kite")

    kinds = [fields["event"] for fields in event_records(caplog)]
    assert kinds[:2] == ["creating", "created"] and kinds[-1] == "succeeded"
    assert event_records(caplog)[-1]["task_id"] == result.task_id
    assert event_records(caplog)[-1]["provider"] == "sora2api"


async def test_a_refused_create_carries_the_retry_after_the_server_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=EVENT_LOGGER)
    async with running_mock() as mock, client_for(mock, "freesora", KEY) as client:
        mock.inject("create", Fault.RATE_LIMIT, retry_after=0.05)
        [result] = [r async for r in client.generate_many(["a kite"])]

    assert result.ok
    [limited] = [f for f in event_records(caplog) if f["event"] == "rate_limited"]
    assert limited["error_class"] == "RateLimitError" and limited["retry_after"] == 0.05


def test_with_the_event_logger_off_the_hook_is_not_wrapped() -> None:
    events = logging.getLogger(EVENT_LOGGER)
    old = events.level
    events.setLevel(logging.WARNING)
    try:
        hook = print
        assert log_events("freesora", hook) is hook
        assert log_events("freesora", None) is None
    finally:
        events.setLevel(old)
    assert isinstance(EventLog("freesora"), EventLog)


async def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORA_")}
    with anyio.fail_after(60):  # a hang guard, not a timing assertion
        done = await zygote.run_process([sys.executable, "-m", "sora_async", *argv], env=env)
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


async def test_log_format_json_is_one_object_per_event_on_stderr(tmp_path: Path) -> None:
    async with running_mock(file_size=4096) as mock:
        done = await cli(
            "--api-key", KEY, "--base-url", mock.freesora_url, "--poll-interval", "0.1",
            "--log-format", "json", "generate", "a kite", "--out", str(tmp_path),
        )  # fmt: skip

    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    records = [json.loads(line) for line in lines]  # every stderr line is one JSON object
    events = [r for r in records if r["logger"] == EVENT_LOGGER]
    assert [r["event"] for r in events][:2] == ["creating", "created"]
    assert events[-1]["event"] == "succeeded" and events[-1]["state"] == "succeeded"
    assert {r["provider"] for r in events} == {"freesora"}
    assert KEY not in done.stderr + done.stdout
    assert done.stdout.strip()  # the result stays on stdout


async def test_log_format_text_is_one_line_per_event(tmp_path: Path) -> None:
    async with running_mock() as mock:
        done = await cli(
            "--api-key", KEY, "--base-url", mock.freesora_url, "--poll-interval", "0.1",
            "generate", "a kite", "--log-format", "text",
        )  # fmt: skip

    assert done.returncode == 0, done.stderr
    events = [line for line in done.stderr.splitlines() if "sora_async.events" in line]
    assert events[0].startswith("INFO sora_async.events: task event creating key=None")
    assert "task event succeeded" in events[-1] and "provider=freesora" in events[-1]
    assert KEY not in done.stderr
