"""The ``batch`` scenario: ``sora-async batch`` run the way users run it (a process of its own)
against a plain batch script (``benchmarks/batch_script.py``), each over the same
zero-duration prompts with 1 KB files, the same cap and the same base poll interval, each
against a fresh mock in the mock's own process. A third client, the SDK's ``generate_many``
with ``download_to`` and no journal (``benchmarks/batch_core.py``, beside the script), splits
the batch's cost into the client's and the journal's.

CPU time and peak RSS are the client process's own, read from the kernel when it is reaped
(``os.wait4``), so nothing of the harness or the mock is counted. The resume measure builds a
journal of N items of which half are done (a run interrupted with Ctrl-C once, which drains),
appends more prompts, and times the second run from its start to the first create the mock
receives (mock and harness share the machine's monotonic clock).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import attrs

from .child import child_env
from .clients import KEY, mock_config
from .mockproc import MockProcess
from .scenarios import Scenario

__all__ = [
    "BATCH_CORE",
    "BATCH_FILE_SIZE",
    "BATCH_SCRIPT",
    "BATCH_SDK",
    "BatchRun",
    "ResumeRun",
    "measure_batch",
    "measure_resume",
]

BATCH_SDK: Final = "sora-async batch"
BATCH_SCRIPT: Final = "plain script"
BATCH_FILE_SIZE: Final = 1024
BATCH_CORE: Final = "generate_many + download_to"
#: The core client's file, beside the plain script's.
CORE_SCRIPT_NAME: Final = "batch_core.py"
#: The core client runs up to this size: the split it shows holds from a thousand prompts on,
#: and a run at 100,000 would add minutes to the scenario.
CORE_UP_TO: Final = 10_000
#: Prompts appended before the resumed run: new items behind the journal's half.
_ADDED: Final = 1_000
#: How often the harness looks at the mock's counters while a run goes on.
_LOOK_EVERY: Final = 0.2


@attrs.frozen(kw_only=True)
class BatchRun:
    """One client process over ``prompts`` prompts."""

    client: str
    prompts: int
    exit_code: int
    #: User + system CPU of the client process (and anything it waited for), seconds.
    cpu_seconds: float
    wall: float
    #: Peak resident set size of the client process, bytes.
    peak_rss: int
    #: Manifest rows that say succeeded.
    succeeded: int
    creates: int
    status_requests: int
    downloads: int
    #: TCP connections the mock saw.
    connections: int
    #: User + system CPU of the process's main thread alone, which runs the event loop
    #: (None where the kernel does not tell it). On zero-duration tasks the loop's CPU bounds
    #: the wall: what the other threads do runs beside it, but for the GIL.
    loop_cpu_seconds: float | None = None

    @property
    def cpu_ms_per_task(self) -> float:
        return 1000 * self.cpu_seconds / self.prompts

    @property
    def loop_cpu_ms_per_task(self) -> float | None:
        seconds = self.loop_cpu_seconds
        return None if seconds is None else 1000 * seconds / self.prompts

    def as_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["cpu_ms_per_task"] = self.cpu_ms_per_task
        data["loop_cpu_ms_per_task"] = self.loop_cpu_ms_per_task
        return data


@attrs.frozen(kw_only=True)
class ResumeRun:
    """The second run over a journal of ``journal_items`` items, ``done_before`` of them done."""

    journal_items: int
    done_before: int
    added: int
    #: From the second run's start to the first create the mock received (None: none came).
    to_first_create: float | None
    #: How long the first, interrupted run took to build the journal.
    build_wall: float
    #: How the second run ended (130: stopped by the harness after its first create).
    exit_code: int

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class _Reaped:
    exit_code: int
    cpu_seconds: float
    wall: float
    peak_rss: int
    loop_cpu_seconds: float | None = None


def _mock_config(scenario: Scenario, seed: int) -> dict[str, Any]:
    return {
        **mock_config(scenario, seed),
        "file_size": BATCH_FILE_SIZE,
        # The batch's cost guard asks the balance first: enough for any size measured.
        "initial_credits": 10**12,
    }


def _write_prompts(path: Path, count: int, *, start: int = 0, mode: str = "w") -> None:
    with path.open(mode) as out:
        out.writelines(f"bench batch #{index}\n" for index in range(start, start + count))


def _sdk_argv(scenario: Scenario, url: str, prompts: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "sora_async", "batch", str(prompts),
        "--out", str(out),
        "--provider", "freesora",
        "--base-url", url,
        "--concurrency", str(scenario.cap),
        "--poll-interval", str(scenario.base_interval),
        "--quiet",
    ]  # fmt: skip


def _script_argv(scenario: Scenario, url: str, prompts: Path, out: Path, script: Path) -> list[str]:
    return [
        sys.executable, str(script), str(prompts),
        "--out", str(out),
        "--base-url", url,
        "--api-key", KEY,
        "--concurrency", str(scenario.cap),
        "--poll-interval", str(scenario.base_interval),
    ]  # fmt: skip


def _env() -> dict[str, str]:
    # The caller's SORA_* settings must not change the run; the key goes in by the environment,
    # as the CLI's help asks.
    env = {name: value for name, value in child_env().items() if not name.startswith("SORA_")}
    env["SORA_API_KEY"] = KEY
    return env


def _spawn(argv: Sequence[str]) -> tuple[subprocess.Popen[bytes], float]:
    started = time.monotonic()
    # Our own argv: this interpreter with the package or the benchmark's script.
    process = subprocess.Popen(  # noqa: S603
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=_env()
    )
    return process, started


def _reap(process: subprocess.Popen[bytes], started: float) -> _Reaped:
    """Wait for the process and read its own resource use from the kernel."""
    loop_cpu = None
    if sys.platform == "linux":
        # Ended but not yet reaped, its main thread's counters are still readable.
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        loop_cpu = _main_thread_cpu(process.pid)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    rss = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    cpu = usage.ru_utime + usage.ru_stime
    return _Reaped(process.returncode, cpu, wall, int(rss), loop_cpu)


def _main_thread_cpu(pid: int) -> float | None:
    """User + system CPU seconds of ``pid``'s main thread (Linux /proc), None if unreadable."""
    try:
        with open(f"/proc/{pid}/task/{pid}/stat", encoding="ascii") as stat:
            # After the command name, which may hold spaces: fields 14 and 15 of proc(5).
            fields = stat.read().rpartition(")")[2].split()
        ticks = int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def _succeeded(path: Path) -> int:
    """Manifest rows that say succeeded (the SDK writes ``state``, the script ``status``)."""
    if not path.is_file():
        return 0
    count = 0
    with path.open("rb") as lines:
        for line in lines:
            row = json.loads(line)
            count += row.get("state", row.get("status")) == "succeeded"
    return count


async def _one_run(
    mock: MockProcess, scenario: Scenario, seed: int, *, client: str, prompts: int, script: Path
) -> BatchRun:
    work = Path(tempfile.mkdtemp(prefix="sora-async-bench-batch-"))
    try:
        source, out = work / "prompts.txt", work / "out"
        _write_prompts(source, prompts)
        url = await mock.start(_mock_config(scenario, seed))
        try:
            argv = (
                _sdk_argv(scenario, url, source, out)
                if client == BATCH_SDK
                else _script_argv(scenario, url, source, out, _script_of(client, script))
            )
            process, started = _spawn(argv)
            reaped = await anyio.to_thread.run_sync(_reap, process, started)
        finally:
            log = await mock.stop(records=False)
        counters = log.counters
        return BatchRun(
            client=client,
            prompts=prompts,
            exit_code=reaped.exit_code,
            cpu_seconds=reaped.cpu_seconds,
            wall=reaped.wall,
            peak_rss=reaped.peak_rss,
            succeeded=_succeeded(out / "manifest.jsonl"),
            creates=counters.creates,
            status_requests=counters.requests["status"],
            downloads=counters.downloads,
            connections=counters.connections,
            loop_cpu_seconds=reaped.loop_cpu_seconds,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _script_of(client: str, script: Path) -> Path:
    return script.with_name(CORE_SCRIPT_NAME) if client == BATCH_CORE else script


async def measure_batch(
    mock: MockProcess,
    scenario: Scenario,
    seed: int,
    *,
    script: Path,
    sizes: Sequence[int],
    progress: Callable[[str], object] = lambda _: None,
) -> list[BatchRun]:
    """At each size, ``sora-async batch``, the plain script, then (up to CORE_UP_TO, when its
    file is beside the script) the SDK's core client."""
    has_core = script.with_name(CORE_SCRIPT_NAME).is_file()
    runs = []
    for size in sizes:
        core = [BATCH_CORE] if has_core and size <= CORE_UP_TO else []
        for client in (BATCH_SDK, BATCH_SCRIPT, *core):
            run = await _one_run(mock, scenario, seed, client=client, prompts=size, script=script)
            progress(
                f"batch: {client} x {size:,}: {run.wall:.1f} s wall, "
                f"{run.cpu_ms_per_task:.2f} ms CPU per task, exit {run.exit_code}"
            )
            runs.append(run)
    return runs


async def _interrupt_at(
    mock: MockProcess, process: subprocess.Popen[bytes], started: float, creates: int
) -> _Reaped:
    """Ctrl-C once when the mock has seen ``creates`` creates (no new creates; the running
    tasks finish and are downloaded); the process's use once it exited."""
    reaping = _Later()
    async with anyio.create_task_group() as group:
        group.start_soon(reaping.run, process, started)
        # The counters live in another process: there is no event to wait on, only a look.
        while reaping.value is None and (await mock.counters()).creates < creates:  # noqa: ASYNC110
            await anyio.sleep(_LOOK_EVERY)
        if reaping.value is None:
            process.send_signal(signal.SIGINT)
    assert reaping.value is not None
    return reaping.value


async def measure_resume(mock: MockProcess, scenario: Scenario, seed: int, items: int) -> ResumeRun:
    """Build a journal of ``items`` items, half done; add prompts; time the first new create."""
    work = Path(tempfile.mkdtemp(prefix="sora-async-bench-resume-"))
    try:
        source, out = work / "prompts.txt", work / "out"
        _write_prompts(source, items)
        url = await mock.start(_mock_config(scenario, seed))
        try:
            process, started = _spawn(_sdk_argv(scenario, url, source, out))
            build = await _interrupt_at(mock, process, started, items // 2)
            done = _succeeded(out / "manifest.jsonl")
            _write_prompts(source, _ADDED, start=items, mode="a")
            creates = (await mock.counters()).creates
            process, started = _spawn(_sdk_argv(scenario, url, source, out))
            resumed = await _interrupt_at(mock, process, started, creates + 1)
            first = await mock.first_create_after(started)
        finally:
            await mock.stop(records=False)
        return ResumeRun(
            journal_items=items,
            done_before=done,
            added=_ADDED,
            to_first_create=None if first is None else first - started,
            build_wall=build.wall,
            exit_code=resumed.exit_code,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _Later:
    """Reaps a process in a worker thread; ``value`` once it exited."""

    value: _Reaped | None = None

    async def run(self, process: subprocess.Popen[bytes], started: float) -> None:
        self.value = await anyio.to_thread.run_sync(_reap, process, started)
