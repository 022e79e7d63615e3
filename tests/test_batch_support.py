"""Shared pieces of the ``sora-async batch`` tests (no tests here).

A CLI that a test kills (-9) or interrupts (SIGINT) runs as a real process
(``python -m sora_async``, :func:`started`), forked by the fork server (zygote.py); one that
runs to its end (:func:`run_cli`) runs in this process (inprocess_cli.py). Neither pays a
second of interpreter start-up. Both
talk to a MockServer served by the test's own event loop, and either can run again on the same
directory; the mock's counters and file bytes are the evidence. A :class:`PausableClock`
freezes the mock's tasks so that a kill or a Ctrl-C lands at a known moment: with every slot
held by a frozen task, no create can be on the wire.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import attrs
import zygote
from inprocess_cli import environment, run_main

from sora_async.mock import MockConfig, MockServer

KEY = "sk-batch-test-0123456789"
REPO = Path(__file__).resolve().parent.parent
#: Only reached when something hangs; never a measure of speed.
HANG_GUARD = 60.0
#: How long a step waits for a CLI process (or a condition) before the test fails with the
#: process's threads' stacks: under pytest's own 60 s timeout, which would only say "hung".
CHILD_GUARD = 40.0
#: Small files keep the runs quick; the download test sets its own.
FILE_SIZE = 4096


class PausableClock:
    """Real time that can be stopped: while paused, the mock's tasks make no progress."""

    def __init__(self) -> None:
        self._lost = 0.0
        self._paused_at: float | None = None

    def __call__(self) -> float:
        if self._paused_at is not None:
            return self._paused_at
        return time.monotonic() - self._lost

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = self()

    def resume(self) -> None:
        if self._paused_at is not None:
            self._lost = time.monotonic() - self._paused_at
            self._paused_at = None


@contextlib.asynccontextmanager
async def batch_mock(**config: Any) -> AsyncIterator[MockServer]:
    # Short tasks, polled every 0.05 s (batch_argv): a kill or a Ctrl-C lands on a frozen
    # clock (PausableClock), never on a task's length.
    settings: dict[str, Any] = {"task_seconds": 0.1, "jitter": 0.0, "file_size": FILE_SIZE}
    settings.update(config)
    with anyio.fail_after(HANG_GUARD * 3):
        async with MockServer(MockConfig(**settings)) as mock:
            yield mock


def cli_env() -> dict[str, str]:
    env = environment()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "200"
    return env


def batch_argv(
    mock: MockServer,
    source: Path,
    out: Path,
    *extra: str,
    provider: str = "freesora",
    concurrency: int = 20,
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sora_async",
        "--provider",
        provider,
        "--api-key",
        KEY,
        "--base-url",
        mock.url_for(provider),
        "--poll-interval",
        "0.05",
        "--concurrency",
        str(concurrency),
        "batch",
        str(source),
        "--out",
        str(out),
        *extra,
    ]


@attrs.frozen
class Finished:
    returncode: int
    stdout: str
    stderr: str

    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def no_traceback(done: Finished) -> Finished:
    assert "Traceback" not in done.stderr, done.stderr
    assert "Traceback" not in done.stdout, done.stdout
    return done


async def run_cli(argv: list[str]) -> Finished:
    """Run the CLI to its end. ``python -m sora_async ...`` runs inside this process (see
    inprocess_cli.py); any other program (a wrapper such as faulty_journal.py) is a process of
    its own, forked by the fork server (zygote.py)."""
    with anyio.fail_after(HANG_GUARD):
        if argv[1:3] == ["-m", "sora_async"]:
            ran = await run_main(argv[3:], cli_env())
            return no_traceback(Finished(ran.returncode, ran.stdout, ran.stderr))
        done = await zygote.run_process(argv, env=cli_env(), hang_guard=CHILD_GUARD)
    return no_traceback(Finished(done.returncode, done.stdout.decode(), done.stderr.decode()))


class Running:
    """A CLI process whose output is collected while it runs."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.read_all = anyio.Event()

    async def _collect(self, stream: Any, into: bytearray) -> None:
        if stream is None:
            return
        # ClosedResourceError: started() closed the pipe on leaving, while this still read it.
        with contextlib.suppress(
            anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError
        ):
            async for chunk in stream:
                into.extend(chunk)

    def kill(self) -> None:
        self.process.kill()

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    async def wait(self) -> Finished:
        with anyio.move_on_after(CHILD_GUARD):
            code = await self.process.wait()
            await self.read_all.wait()  # the readers finish once the pipes close
            return no_traceback(Finished(code, self.stdout.decode(), self.stderr.decode()))
        raise AssertionError(
            f"the CLI is still running after {CHILD_GUARD} s:\n{await self.dump()}"
        )

    async def dump(self) -> str:
        """Kill the CLI, first asking it for its threads' stacks (see zygote.run_process);
        its stderr's end, with the stacks when the fork server started it."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGUSR2)
            await anyio.sleep(1.0)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        return self.stderr_text()[-20_000:]

    def stderr_text(self) -> str:
        return self.stderr.decode(errors="replace")


@contextlib.asynccontextmanager
async def started(argv: list[str]) -> AsyncIterator[Running]:
    """Start the CLI; on leaving, a process still alive is killed."""
    process = await zygote.open_process(argv, env=cli_env(), stdin=subprocess.DEVNULL)
    running = Running(process)
    async with anyio.create_task_group() as group:

        async def readers() -> None:
            async with anyio.create_task_group() as inner:
                inner.start_soon(running._collect, process.stdout, running.stdout)
                inner.start_soon(running._collect, process.stderr, running.stderr)
            running.read_all.set()

        group.start_soon(readers)
        try:
            yield running
        except BaseException:
            # The test failed (or gave up waiting) with the CLI alive: say where it was.
            if process.returncode is None:
                with anyio.CancelScope(shield=True):
                    stacks = await running.dump()
                    print(f"the CLI's threads and stderr when the test failed:\n{stacks}")
            raise
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            with anyio.CancelScope(shield=True), anyio.move_on_after(HANG_GUARD):
                await process.wait()
            await process.aclose()


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Wait (generously) for ``condition``; fail naming ``what`` if it never holds."""
    with anyio.move_on_after(CHILD_GUARD):
        while True:
            if condition():
                return
            await anyio.sleep(0.02)
    assert condition(), f"gave up waiting for {what}"


def write_prompts(path: Path, count: int, prefix: str = "prompt") -> list[str]:
    prompts = [f"{prefix} number {i}" for i in range(count)]
    path.write_text("".join(p + "\n" for p in prompts), encoding="utf-8")
    return prompts


def read_manifest(out: Path) -> list[dict[str, Any]]:
    text = (out / "manifest.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_succeeded(mock: MockServer, out: Path, prompts: list[str]) -> list[dict[str, Any]]:
    """Every prompt succeeded once, in order, and its one file is whole and recorded."""
    rows = read_manifest(out)
    assert [row["index"] for row in rows] == list(range(len(prompts)))
    assert [row["prompt"] for row in rows] == prompts
    for row in rows:
        assert row["state"] == "succeeded", row
        task_id = row["task_id"]
        served = mock.file_bytes(task_id)
        [name] = row["files"]
        assert name == f"{row['index']:05d}_{task_id}.mp4"
        assert sha256((out / name).read_bytes()) == sha256(served)
        [detail] = row["file_details"]
        assert detail == {"path": name, "size": len(served), "sha256": sha256(served)}
        assert row["error"] is None
    videos = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert videos == sorted([*(row["files"][0] for row in rows), "index.html", "manifest.jsonl"])
    assert not list(out.glob("*.part"))
    return rows


def created_once(mock: MockServer, prompts: list[str]) -> bool:
    counts = mock.counters.creates_by_prompt
    return all(counts[p] == 1 for p in prompts) and sum(counts.values()) == len(prompts)


def frozen_at_cap(mock: MockServer, cap: int) -> bool:
    """``cap`` live tasks, each polled at least once (so its id is in the journal), and
    nothing else on the wire: with every slot held, the CLI cannot be sending a create."""
    live = [t for t in mock.tasks(KEY) if not t.state.is_terminal]
    return (
        len(live) == cap
        and all(t.polls >= 1 for t in live)
        and mock.counters.requests["create"] == mock.counters.creates
    )
