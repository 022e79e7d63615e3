"""One point of the crash matrix: run the CLI, kill it there, run it again, check the evidence."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import attrs

from ..mock import MockConfig, MockServer, Trip
from .points import Kill, KillPoint

__all__ = ["KEY", "MatrixSettings", "PointResult", "run_point"]

KEY = "sk-crash-matrix-0123456789"
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent
#: The exit statuses of a finished re-run: every item done, or some left (unknown) to report.
_RERUN_EXITS = (0, 1)
#: How long a hung CLI is given to write its threads' stacks before it is killed.
_DUMP_GRACE = 1.0


@attrs.frozen(kw_only=True)
class MatrixSettings:
    """The batch every point runs."""

    items: int = 5
    #: --concurrency of the CLI and the mock's per-account cap.
    concurrency: int = 3
    #: Big enough that half a file is more than one socket read.
    file_size: int = 128 * 1024
    task_seconds: float = 0.3
    poll_interval: float = 0.1
    provider: str = "freesora"
    #: Real seconds one CLI run may take before the point fails as hung (never a speed limit).
    hang_guard: float = 60.0


@attrs.define(kw_only=True)
class PointResult:
    """What one point saw. ``ok`` when the kill landed and every check held."""

    point: KillPoint
    #: The first run died of SIGKILL (not of anything else, and not after finishing).
    killed: bool
    #: Exit status of each run: the killed one (-9), the re-run, the --resubmit-unknown run.
    exits: list[int]
    #: What the kill left in the output folder (partial files, temporary files).
    left_by_kill: list[str]
    #: Items the re-run reported "unknown" (their create's answer was lost to the kill).
    unknown: int
    #: Of those, how many the mock had created anyway: paid for, never delivered.
    unknown_created: int
    #: Tasks the mock created in all, and those a --resubmit-unknown run sent on purpose.
    creates: int
    resubmitted: int
    #: Creates of a prompt beyond one that nobody asked for.
    duplicates: int
    #: Items that did not end "succeeded" with their file.
    lost: int
    files_whole: int
    files_bad: int
    #: Partial or temporary files still there after the last run.
    left_at_end: list[str]
    problems: list[str]
    seconds: float
    #: CPU seconds of the CLI processes (user + system), the matrix's cost.
    cli_cpu_seconds: float

    @property
    def ok(self) -> bool:
        return (
            self.killed
            and not self.problems
            and self.duplicates == 0
            and self.lost == 0
            and self.files_bad == 0
            and not self.left_at_end
        )

    def as_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        data["point"] = {**attrs.asdict(self.point), "kind": self.point.kind.value}
        data["label"] = self.point.label()
        data["ok"] = self.ok
        return data


class _Killer:
    """SIGKILLs the CLI once, from a mock trip, a timer or nothing (the audit hook does it)."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.fired = False
        self.wanted = False

    def started(self, pid: int) -> None:
        """The process to kill is ``pid``; a trip that came before this is acted on now."""
        self.pid = pid
        if self.wanted:
            self.kill()

    def kill(self) -> None:
        if self.pid is None:
            # Tripped before the pid was known (a forked child can send its creates before
            # its parent hears its pid): killed as soon as it is.
            self.wanted = True
            return
        if self.fired:
            return
        self.fired = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def kill_later(self, delay: float) -> None:
        if delay <= 0:
            self.kill()
        else:
            asyncio.get_running_loop().call_later(delay, self.kill)

    def at(self, n: int, delay: float = 0.0) -> Callable[[int], None]:
        def on_trip(count: int) -> None:
            if count == n:
                self.kill_later(delay)

        return on_trip


def _arm_mock(mock: MockServer, point: KillPoint, killer: _Killer) -> None:
    kind = point.kind
    if kind is Kill.BEFORE_CREATE_ANSWER:
        mock.on(Trip.CREATE_RECEIVED, killer.at(point.n))
    elif kind is Kill.AFTER_CREATE_ANSWER:
        mock.on(Trip.CREATE_ANSWERED, killer.at(point.n, point.delay))
    elif kind is Kill.MID_DOWNLOAD:
        mock.on(Trip.DOWNLOAD_HALF, killer.at(point.n))
    elif kind is Kill.ANY_TIME:
        mock.on(Trip.CREATE_RECEIVED, killer.at(1, point.delay))


def _env() -> dict[str, str]:
    # The user's SORA_* settings must not change the batch under test.
    env = {name: value for name, value in os.environ.items() if not name.startswith("SORA_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "200"
    return env


def _cli_args(mock: MockServer, settings: MatrixSettings, source: Path, out: Path) -> list[str]:
    return [
        "--provider",
        settings.provider,
        "--api-key",
        KEY,
        "--base-url",
        mock.url_for(settings.provider),
        "--poll-interval",
        str(settings.poll_interval),
        "--concurrency",
        str(settings.concurrency),
        "batch",
        str(source),
        "--out",
        str(out),
    ]


@attrs.frozen
class _Ran:
    code: int
    stdout: str
    stderr: str


#: How a point starts its CLI processes: ``anyio.open_process`` or anything called the same way
#: that gives a real process to kill (the test suite's fork server, which saves each one the
#: interpreter's start-up).
OpenProcess = Callable[..., Awaitable[anyio.abc.Process]]


async def _run(
    argv: list[str], logs: Path, killer: _Killer | None, guard: float, open_process: OpenProcess
) -> _Ran:
    """One CLI process, its output in files (a killed process leaves no pipe half-read)."""
    logs.parent.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs.with_suffix(".stdout"), logs.with_suffix(".stderr")
    with out_path.open("wb") as stdout, err_path.open("wb") as stderr:
        process = await open_process(
            argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=_env()
        )
        try:
            if killer is not None:
                killer.started(process.pid)
            with anyio.move_on_after(guard) as hung:
                code = await process.wait()
            if hung.cancelled_caught:
                # A child under faulthandler (the test suite's fork server's children) writes
                # its threads' stacks to its stderr; any other one dies of the signal.
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGUSR2)
                await anyio.sleep(_DUMP_GRACE)
                raise TimeoutError(
                    f"{argv[1:3]} ran over {guard} s; its stderr ends with:\n"
                    f"{_read(err_path)[-20_000:]}"
                )
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                with anyio.CancelScope(shield=True):
                    await process.wait()
            await process.aclose()
    return _Ran(code, _read(out_path), _read(err_path))


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _leftovers(out: Path) -> list[str]:
    if not out.is_dir():
        return []
    found = []
    for path in sorted(out.iterdir()):
        if path.name.endswith((".part", ".tmp")):
            found.append(f"{path.name} ({path.stat().st_size} bytes)")
    return found


def _manifest(out: Path) -> list[dict[str, Any]]:
    path = out / "manifest.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _children_cpu() -> float:
    # Counts waited-for children only, so points run one after another in a process (the
    # benchmark) are measured apart; under pytest-xdist each worker counts its own.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tail(text: str) -> str:
    return " | ".join(text.strip().splitlines()[-3:])


def _duplicates(
    prompts: list[str], after_rerun: Counter[str], final: Counter[str], resubmitted: set[int]
) -> int:
    """Creates beyond one per prompt, less the one --resubmit-unknown asked for per item."""
    extra = 0
    for index, prompt in enumerate(prompts):
        asked = 1 if index in resubmitted else 0
        extra += max(0, after_rerun[prompt] - 1)
        extra += max(0, final[prompt] - after_rerun[prompt] - asked)
    return extra


@attrs.frozen
class _Files:
    whole: int
    bad: int
    lost: int


def _check_files(mock: MockServer, out: Path, rows: list[dict[str, Any]], items: int) -> _Files:
    """Each item succeeded, and its file and the manifest's sha256 equal the mock's bytes."""
    whole = bad = lost = 0
    by_index = {row["index"]: row for row in rows}
    for index in range(items):
        row = by_index.get(index)
        if row is None or row["state"] != "succeeded" or not row["files"]:
            lost += 1
            continue
        served = _sha256(mock.file_bytes(row["task_id"]))
        path = out / row["files"][0]
        got = _sha256(path.read_bytes()) if path.is_file() else None
        recorded = [detail.get("sha256") for detail in row.get("file_details") or []]
        if got == served and recorded == [served]:
            whole += 1
        else:
            bad += 1
    return _Files(whole, bad, lost)


class _Point:
    """One point's runs against one mock; the evidence is read from the mock and the folder."""

    def __init__(
        self, point: KillPoint, workdir: Path, settings: MatrixSettings, open_process: OpenProcess
    ) -> None:
        self.point = point
        self.open_process = open_process
        self.settings = settings
        self.workdir = workdir
        self.source, self.out = workdir / "prompts.txt", workdir / "out"
        self.prompts = [f"crash matrix {point.seed} item {i}" for i in range(settings.items)]
        self.problems: list[str] = []
        self.exits: list[int] = []

    def _write_input(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.source.write_text("".join(p + "\n" for p in self.prompts), encoding="utf-8")

    def _mock(self) -> MockServer:
        settings = self.settings
        return MockServer(
            MockConfig(
                task_seconds=settings.task_seconds,
                jitter=0.0,
                file_size=settings.file_size,
                cap=settings.concurrency,
                seed=self.point.seed,
            )
        )

    async def _cli(self, argv: list[str], name: str, killer: _Killer | None = None) -> _Ran:
        logs = self.workdir / "logs" / name
        ran = await _run(argv, logs, killer, self.settings.hang_guard, self.open_process)
        self.exits.append(ran.code)
        if "Traceback" in ran.stderr or "Traceback" in ran.stdout:
            self.problems.append(f"run {name} printed a traceback")
        return ran

    async def run(self) -> PointResult:
        began, cpu_before = time.monotonic(), _children_cpu()
        await anyio.to_thread.run_sync(self._write_input)
        point, prompts, out = self.point, self.prompts, self.out
        async with self._mock() as mock:
            cli = _cli_args(mock, self.settings, self.source, out)
            plain = [sys.executable, "-m", "sora_async", *cli]
            first_argv = plain
            if point.kind is Kill.FINAL_MANIFEST:
                child = [sys.executable, "-m", "sora_async.crashmatrix.child"]
                first_argv = [*child, point.variant, str(out), str(len(prompts)), *cli]
            killer = _Killer()
            _arm_mock(mock, point, killer)
            first = await self._cli(first_argv, "1-killed", killer)
            killed = first.code == -signal.SIGKILL
            if not killed:
                self.problems.append(f"the kill did not land: exit {first.code}")
            left_by_kill = _leftovers(out)

            rerun = await self._cli(plain, "2-rerun")
            if rerun.code not in _RERUN_EXITS:
                self.problems.append(f"the re-run exited {rerun.code}: {_tail(rerun.stderr)}")
            after_rerun = Counter(mock.counters.creates_by_prompt)
            unknown = self._unknown_after_rerun(rerun)
            if unknown:
                again = await self._cli([*plain, "--resubmit-unknown"], "3-resubmit")
                if again.code != 0:
                    self.problems.append(
                        f"--resubmit-unknown exited {again.code}: {_tail(again.stderr)}"
                    )
            final = Counter(mock.counters.creates_by_prompt)
            rows = _manifest(out)
            if [row.get("prompt") for row in rows] != prompts:
                self.problems.append("the manifest does not list every prompt once, in order")
            if not (out / "index.html").is_file():
                self.problems.append("no index.html after the last run")
            files = _check_files(mock, out, rows, len(prompts))
            return PointResult(
                point=point,
                killed=killed,
                exits=self.exits,
                left_by_kill=left_by_kill,
                unknown=len(unknown),
                unknown_created=sum(after_rerun[prompts[i]] for i in unknown),
                creates=mock.counters.creates,
                resubmitted=sum(final[prompts[i]] - after_rerun[prompts[i]] for i in unknown),
                duplicates=_duplicates(prompts, after_rerun, final, unknown),
                lost=files.lost,
                files_whole=files.whole,
                files_bad=files.bad,
                left_at_end=_leftovers(out),
                problems=self.problems,
                seconds=round(time.monotonic() - began, 2),
                cli_cpu_seconds=round(_children_cpu() - cpu_before, 2),
            )

    def _unknown_after_rerun(self, rerun: _Ran) -> set[int]:
        """The items the re-run left "unknown"; anything else unfinished is a problem."""
        rows = _manifest(self.out)
        unknown = {row["index"] for row in rows if row["state"] == "unknown"}
        others = [
            (r["index"], r["state"]) for r in rows if r["state"] not in ("unknown", "succeeded")
        ]
        if others:
            self.problems.append(f"the re-run left {others}")
        if rerun.code == 1 and not unknown:
            self.problems.append(f"the re-run failed with no unknown item: {_tail(rerun.stderr)}")
        return unknown


async def run_point(
    point: KillPoint,
    workdir: Path,
    settings: MatrixSettings | None = None,
    *,
    open_process: OpenProcess = anyio.open_process,
) -> PointResult:
    """Run ``point`` in ``workdir`` (made if missing; the batch's files and logs stay there).

    ``open_process`` starts the CLI's processes (see :data:`OpenProcess`); their CPU seconds
    are counted only when they are this process's children.
    """
    return await _Point(point, workdir, settings or MatrixSettings(), open_process).run()
