"""One video, the way a user asks for it: ``sora-async generate`` from process start to exit.

It runs in real time (a 3 s mock task, the CLI's default base interval), on a pseudo-terminal
so that the CLI behaves as on a user's screen; the baseline script runs as its own process
too, so that both pay for starting Python.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

import anyio

from .clients import KEY, mock_config
from .metrics import BASELINE, SDK, GenerateMetrics
from .mockproc import MockProcess
from .scenarios import REAL_POLL_INTERVAL, Scenario

__all__ = ["measure_generate"]

_TIMEOUT: Final = 120.0
# Something the CLI shows while the task is still going: a state or a percentage below 100.
_PROGRESS = re.compile(
    rb"\b(pending|running|queued|waiting|elapsed)\b|(?<![\d.])\d{1,2}(\.\d+)? ?%", re.IGNORECASE
)
_TAIL: Final = 600


def _clean_env() -> dict[str, str]:
    """Our environment without SORA_* settings (the command line says everything)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("SORA_")}


def _run(command: list[str], *, tty: bool) -> tuple[float, float, int, bytes]:
    """(wall seconds, monotonic time at exit, exit status, everything it printed)."""
    env = _clean_env()
    started = time.monotonic()
    if tty and sys.platform != "win32":
        import pty

        master, slave = pty.openpty()
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=_TIMEOUT)
        ended = time.monotonic()
        os.close(master)
        return ended - started, ended, code, b"".join(chunks)
    done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        command, capture_output=True, env=env, timeout=_TIMEOUT, check=False
    )
    ended = time.monotonic()
    return ended - started, ended, done.returncode, done.stdout + done.stderr


async def measure_generate(
    mock: MockProcess, scenario: Scenario, seed: int, baseline: Path
) -> list[GenerateMetrics]:
    job = scenario.jobs(seed)[0]
    default_interval = scenario.base_interval == REAL_POLL_INTERVAL
    sdk = [sys.executable, "-m", "sora_async", "--provider", "freesora", "--api-key", KEY]
    if not default_interval:
        sdk += ["--poll-interval", str(scenario.base_interval)]
    plain = [
        sys.executable,
        str(baseline),
        "--api-key",
        KEY,
        "--poll-interval",
        str(scenario.base_interval),
        "--model",
        job.model,
        "--prompt",
        job.prompt,
    ]
    measured = []
    for client in (SDK, BASELINE):
        url = await mock.start(mock_config(scenario, seed))
        if client == SDK:
            command = [*sdk, "--base-url", url, "generate", job.prompt, "--model", job.model]
        else:
            command = [*plain, "--base-url", url]
        try:
            wall, ended, code, output = await anyio.to_thread.run_sync(
                functools.partial(_run, command, tty=client == SDK)
            )
        finally:
            log = await mock.stop()
        records = log.records or []
        measured.append(
            GenerateMetrics(
                client=client,
                task_seconds=job.seconds,
                base_interval=scenario.base_interval,
                wall=wall,
                create_to_exit=ended - records[0].created_at if records else None,
                status_requests=log.counters.requests["status"],
                succeeded=code == 0,
                progress_line=client == SDK and bool(_PROGRESS.search(output)),
                output_tail=output[-_TAIL:].decode(errors="replace"),
            )
        )
    return measured
