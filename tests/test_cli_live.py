"""The live status line of ``generate`` and ``wait``: on a terminal only, redrawn in place."""

from __future__ import annotations

import functools
import io
import json
import os
import sys

import anyio
import pytest
import zygote

from sora_async.bench.single import _run as run_command
from sora_async.cli.live import StatusLine, status_line
from sora_async.mock import MockConfig, MockServer
from sora_async.models import TaskState, TaskStatus

pytestmark = pytest.mark.anyio

KEY = "sk-CLI-LIVE-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_line_shows_state_percentage_and_elapsed_time_and_rewrites_itself() -> None:
    stream, clock = io.StringIO(), Clock()
    line = StatusLine(stream, "task_1", clock=clock)
    line.draw()
    clock.now += 3.2
    line.update(TaskStatus(task_id="task_1", state=TaskState.RUNNING, progress=42))
    line.close()
    assert stream.getvalue() == (
        "\r\x1b[Ktask_1: waiting, 0s elapsed\r\x1b[Ktask_1: running 42%, 3s elapsed\n"
    )


def test_a_line_never_drawn_ends_nothing() -> None:
    stream = io.StringIO()
    StatusLine(stream, "task_1").close()
    assert stream.getvalue() == ""


async def test_off_a_terminal_there_is_no_line() -> None:
    stream = io.StringIO()
    async with status_line(stream, "task_1") as line:
        assert line is None
    assert stream.getvalue() == ""


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
async def test_generate_on_a_terminal_shows_the_line_off_one_prints_results_only() -> None:
    async with MockServer(MockConfig(task_seconds=0.6)) as mock:
        argv = [
            sys.executable, "-m", "sora_async", "--provider", "freesora", "--api-key", KEY,
            "--base-url", mock.url_for("freesora"), "--poll-interval", "0.1",
            "generate", "a live line",
        ]  # fmt: skip
        _, _, code, output = await anyio.to_thread.run_sync(
            functools.partial(run_command, argv, tty=True)
        )
        text = output.decode(errors="replace")
        assert code == 0, text
        assert "\r\x1b[K" in text
        assert "elapsed" in text and "running" in text

        environ = {k: v for k, v in os.environ.items() if not k.startswith("SORA_")}
        with anyio.fail_after(60):  # a hang guard, not a timing assertion
            piped = await zygote.run_process(argv, env=environ)
        assert piped.returncode == 0, piped.stderr
        assert json.loads(piped.stdout)["state"] == "succeeded"
        assert b"\r" not in piped.stderr and b"elapsed" not in piped.stderr
