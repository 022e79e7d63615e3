"""``sora-async bench``: how close the SDK comes to the physical limit, and at what cost.

Everything runs on the embedded mock server over 127.0.0.1; nothing leaves the machine. The
machines this runs on are shared and noisy, so every headline number is a **ratio** measured
within one run, never an absolute time:

* **makespan / ideal.** The reference is the best any client could do with the same tasks: a
  greedy list scheduler over the mock's actual (seeded) task durations, in creation order,
  that starts a task the instant a slot frees and notices a completion instantly
  (:func:`ideal_makespan`). A ratio near 1 means the slots were never left idle for long.
* **slot utilisation.** The integral of the tasks alive on the mock over the run, divided by
  ``cap x makespan`` (:func:`slot_utilisation`), from the mock's task records.
* **polls per task** and **detection latency**: from a task's completion on the mock to the
  moment the client handed its result over, as a fraction of the task's duration.
* **safety**: the most live tasks the mock ever saw on the account (<= cap), the 429s the
  client caused, and creates per prompt (must be 1).
* **memory**: the ``tracemalloc`` peak of a lazily fed run of ``N`` near-instant tasks, at two
  sizes; a peak ratio near 1 shows that live work is O(cap), not O(N). The mock runs in a
  child process there, so that its own records (O(N) by design) are not counted.

The same measures are taken for a typical hand-rolled script (``benchmarks/handrolled.py``:
a semaphore of 20 around create + poll, a fixed poll interval) on the same mock settings and
seed, so the mock draws the same task durations in the same order for both.

**Time scaling.** A real Sora 2 task takes about ``REAL_TASK_SECONDS`` (180 s) and freesora
asks for a poll every 3-5 s (``REAL_POLL_INTERVAL`` = 4 s). The mock's tasks take
``task_seconds`` (2 s), so every time knob is scaled by ``k = task_seconds / 180``: the SDK
gets ``poll_interval = 4 k`` and ``expected_duration = 180 k``, and the hand-rolled script
polls every ``4 k``. HTTP round trips on 127.0.0.1 are not scaled (about a millisecond, that
is a tenth of a real-scale second at ``k = 1/90``); latencies are also reported divided by
``k``, as real-scale seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import heapq
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import anyio
import attrs

from .argtypes import positive_float, positive_int
from .client import SoraClient
from .errors import ConfigurationError
from .mock import MockConfig, MockCounters, MockServer, TaskRecord
from .models import TaskState, VideoRequest

__all__ = [
    "REAL_POLL_INTERVAL",
    "REAL_TASK_SECONDS",
    "BenchConfig",
    "BenchReport",
    "MemoryMetrics",
    "RunMetrics",
    "add_arguments",
    "default_out_dir",
    "find_handrolled",
    "ideal_makespan",
    "load_handrolled",
    "run_benchmark",
    "run_command",
    "slot_utilisation",
    "write_results",
]

#: What one real Sora 2 task takes, seconds (the SDK's expected duration for freesora).
REAL_TASK_SECONDS: Final = 180.0
#: freesora's document: "call check-result every 3-5 seconds".
REAL_POLL_INTERVAL: Final = 4.0

SDK: Final = "sora_async"
HANDROLLED: Final = "hand-rolled"
IDEAL: Final = "ideal"

_KEY: Final = "bench-key"
_RESULTS_STEM: Final = "latest"
# The memory runs measure bookkeeping, not timing: tasks end at once and polls come fast.
_MEMORY_POLL_INTERVAL: Final = 0.01
# Only reached when something hangs: a run that needs longer than this many ideal makespans
# (or a mock child that does not start in this many seconds) is broken, not slow.
_HANG_FACTOR: Final = 20.0
_HANG_FLOOR: Final = 60.0
_CHILD_START_TIMEOUT: Final = 30.0


class HandRolledRun(Protocol):
    """The entry point of ``benchmarks/handrolled.py``."""

    def __call__(
        self,
        base_url: str,
        api_key: str,
        prompts: Iterable[str],
        *,
        concurrency: int,
        poll_interval: float,
        on_done: Callable[[str, dict[str, Any]], object] | None = None,
    ) -> Awaitable[Sequence[Any]]: ...


# -- configuration ---------------------------------------------------------------------------


def _check_positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not (value > 0 and math.isfinite(value)):
        raise ConfigurationError(f"{attribute.name} must be a positive number, got {value!r}")


def _check_count(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def _check_jitter(_: object, __: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value < 1:
        raise ConfigurationError(f"jitter must be >= 0 and < 1, got {value!r}")


def _check_memory(_: object, __: attrs.Attribute[Any], value: tuple[int, int] | None) -> None:
    if value is not None and not (len(value) == 2 and 0 < value[0] < value[1]):
        raise ConfigurationError(
            f"memory_tasks must be two sizes, the smaller first and both >= 1, got {value!r}"
        )


@attrs.frozen(kw_only=True)
class BenchConfig:
    """What to run. Times are mock seconds; see the module docstring for the scaling."""

    tasks: int = attrs.field(default=200, validator=_check_count)
    task_seconds: float = attrs.field(default=2.0, validator=_check_positive)
    #: The mock draws each duration uniformly within task_seconds x (1 +- jitter).
    jitter: float = attrs.field(default=0.5, validator=_check_jitter)
    cap: int = attrs.field(default=20, validator=_check_count)
    seed: int = 7
    #: The two sizes of the memory runs; None skips them.
    memory_tasks: tuple[int, int] | None = attrs.field(default=(500, 2000), validator=_check_memory)

    @property
    def scale(self) -> float:
        """Mock seconds per real second."""
        return self.task_seconds / REAL_TASK_SECONDS

    @property
    def poll_interval(self) -> float:
        """The real 4 s polling interval, scaled: the SDK's base interval and the script's."""
        return REAL_POLL_INTERVAL * self.scale

    @property
    def expected_duration(self) -> float:
        return REAL_TASK_SECONDS * self.scale

    def mock_config(self) -> MockConfig:
        return MockConfig(
            task_seconds=self.task_seconds,
            jitter=self.jitter,
            seed=self.seed,
            cap=self.cap,
            # The latencies compare the mock's task times with the client's clock readings.
            clock=time.monotonic,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            **attrs.asdict(self),
            "real_task_seconds": REAL_TASK_SECONDS,
            "real_poll_interval": REAL_POLL_INTERVAL,
            "scale": self.scale,
            "poll_interval": self.poll_interval,
            "expected_duration": self.expected_duration,
        }


# -- the pure measures -----------------------------------------------------------------------


def ideal_makespan(durations: Sequence[float], cap: int) -> float:
    """Makespan of greedy list scheduling: each task, in order, starts on the first free slot.

    This is the ideal client: no request latency, completion noticed the instant it happens.
    """
    if not durations:
        return 0.0
    free_at = [0.0] * min(cap, len(durations))
    for duration in durations:
        start = heapq.heappop(free_at)
        heapq.heappush(free_at, start + duration)
    return max(free_at)


def slot_utilisation(
    intervals: Iterable[tuple[float, float]], cap: int, start: float, end: float
) -> float:
    """Integral of live tasks over ``[start, end]`` divided by ``cap x (end - start)``.

    ``intervals`` are the (created, terminal) times of the tasks on the server.
    """
    span = end - start
    if not span > 0:
        return 0.0
    alive = sum(max(0.0, min(stop, end) - max(begin, start)) for begin, stop in intervals)
    return alive / (cap * span)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# -- measured results ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RunMetrics:
    """One client's run (or the ideal schedule). Seconds are mock seconds."""

    name: str
    tasks: int
    succeeded: int
    makespan: float
    #: The ideal schedule's makespan over this run's own task durations.
    ideal_makespan: float
    utilisation: float
    polls_per_task: float | None
    mean_latency: float | None
    p95_latency: float | None
    #: Mean over tasks of (detection latency / that task's duration).
    latency_fraction: float | None
    max_live_tasks: int
    rate_limited: int | None
    cap_rejections: int | None
    max_creates_per_prompt: int
    #: Every prompt created exactly once, and every task created.
    created_once: bool

    @property
    def makespan_ratio(self) -> float:
        return self.makespan / self.ideal_makespan if self.ideal_makespan > 0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "makespan_ratio": self.makespan_ratio}


@attrs.frozen(kw_only=True)
class MemoryMetrics:
    """``tracemalloc`` peaks, in bytes, of two lazily fed runs of different sizes."""

    name: str
    small_tasks: int
    large_tasks: int
    small_peak: int
    large_peak: int

    @property
    def ratio(self) -> float:
        return self.large_peak / self.small_peak if self.small_peak > 0 else math.nan

    @property
    def bytes_per_extra_task(self) -> float:
        return (self.large_peak - self.small_peak) / (self.large_tasks - self.small_tasks)

    def as_dict(self) -> dict[str, Any]:
        return {
            **attrs.asdict(self),
            "ratio": self.ratio,
            "bytes_per_extra_task": self.bytes_per_extra_task,
        }


@attrs.frozen(kw_only=True)
class BenchReport:
    config: BenchConfig
    #: The ideal schedule first, then each client measured.
    runs: tuple[RunMetrics, ...]
    memory: tuple[MemoryMetrics, ...]
    #: Anything that makes the numbers untrustworthy (a failed task, a broken safety rule).
    problems: tuple[str, ...]
    environment: dict[str, Any]
    wall_seconds: float

    def run(self, name: str) -> RunMetrics | None:
        return next((run for run in self.runs if run.name == name), None)

    def memory_of(self, name: str) -> MemoryMetrics | None:
        return next((item for item in self.memory if item.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": "sora-async bench",
            "environment": self.environment,
            "config": self.config.as_dict(),
            "runs": {run.name: run.as_dict() for run in self.runs},
            "memory": {item.name: item.as_dict() for item in self.memory},
            "problems": list(self.problems),
            "wall_seconds": self.wall_seconds,
        }

    def to_markdown(self) -> str:
        return _markdown(self)


# -- running ---------------------------------------------------------------------------------


@attrs.frozen
class _Observed:
    """What one client run left behind: its clock readings and the mock's records."""

    started: float
    #: task id -> when the client handed over (or learned) its terminal result.
    seen: dict[str, float]
    succeeded: int
    records: list[TaskRecord]
    counters: MockCounters


def _prompts(count: int, label: str) -> Iterable[str]:
    return (f"{label} prompt #{index}" for index in range(count))


def _input_position(record: TaskRecord) -> int:
    """Where the record's prompt came in the input (see :func:`_prompts`)."""
    return int(record.prompt.rpartition("#")[2])


def _hang_guard(config: BenchConfig) -> float:
    waves = math.ceil(config.tasks / config.cap)
    return max(_HANG_FLOOR, _HANG_FACTOR * waves * config.task_seconds * (1 + config.jitter))


async def _observe_sdk(config: BenchConfig) -> _Observed:
    seen: dict[str, float] = {}
    succeeded = 0
    async with MockServer(config.mock_config()) as mock:
        async with SoraClient(
            "freesora",
            _KEY,
            base_url=mock.freesora_url,
            max_concurrent_tasks=config.cap,
            poll_interval=config.poll_interval,
            expected_duration=config.expected_duration,
            env={},
        ) as client:
            requests = (VideoRequest(prompt) for prompt in _prompts(config.tasks, "bench"))
            started = time.monotonic()
            with anyio.fail_after(_hang_guard(config)):
                async for result in client.generate_many(requests):
                    if result.task_id is not None:
                        seen[result.task_id] = time.monotonic()
                    succeeded += result.ok
        return _Observed(started, seen, succeeded, mock.tasks(_KEY), mock.counters.snapshot())


async def _observe_handrolled(config: BenchConfig, run: HandRolledRun) -> _Observed:
    seen: dict[str, float] = {}
    succeeded = 0

    def on_done(task_id: str, data: dict[str, Any]) -> None:
        nonlocal succeeded
        seen[task_id] = time.monotonic()
        succeeded += data.get("status") == TaskState.SUCCEEDED.value

    async with MockServer(config.mock_config()) as mock:
        started = time.monotonic()
        with anyio.fail_after(_hang_guard(config)):
            await run(
                mock.freesora_url,
                _KEY,
                _prompts(config.tasks, "bench"),
                concurrency=config.cap,
                poll_interval=config.poll_interval,
                on_done=on_done,
            )
        return _Observed(started, seen, succeeded, mock.tasks(_KEY), mock.counters.snapshot())


def _analyse(name: str, observed: _Observed, config: BenchConfig) -> RunMetrics:
    records = sorted(observed.records, key=_input_position)
    ideal = ideal_makespan([record.duration for record in records], config.cap)
    end = max(observed.seen.values(), default=observed.started)
    latencies: list[float] = []
    fractions: list[float] = []
    for record in records:
        seen_at = observed.seen.get(record.task_id)
        if seen_at is None:
            continue
        latency = max(0.0, seen_at - record.terminal_at)
        latencies.append(latency)
        if record.duration > 0:
            fractions.append(latency / record.duration)
    counters = observed.counters
    per_prompt = counters.creates_by_prompt
    return RunMetrics(
        name=name,
        tasks=config.tasks,
        succeeded=observed.succeeded,
        makespan=end - observed.started,
        ideal_makespan=ideal,
        utilisation=slot_utilisation(
            ((r.created_at, r.terminal_at) for r in records), config.cap, observed.started, end
        ),
        polls_per_task=counters.polls / config.tasks,
        mean_latency=_mean(latencies),
        p95_latency=_quantile(latencies, 0.95),
        latency_fraction=_mean(fractions),
        max_live_tasks=counters.max_live_tasks,
        rate_limited=counters.rate_limited,
        cap_rejections=counters.cap_rejections,
        max_creates_per_prompt=max(per_prompt.values(), default=0),
        created_once=len(per_prompt) == config.tasks and set(per_prompt.values()) == {1},
    )


def _ideal(reference: RunMetrics, records: Sequence[TaskRecord], cap: int) -> RunMetrics:
    ideal = reference.ideal_makespan
    busy = sum(record.duration for record in records)
    return RunMetrics(
        name=IDEAL,
        tasks=reference.tasks,
        succeeded=reference.tasks,
        makespan=ideal,
        ideal_makespan=ideal,
        utilisation=busy / (cap * ideal) if ideal > 0 else 0.0,
        polls_per_task=None,
        mean_latency=0.0,
        p95_latency=0.0,
        latency_fraction=0.0,
        max_live_tasks=min(cap, reference.tasks),
        rate_limited=None,
        cap_rejections=None,
        max_creates_per_prompt=1,
        created_once=True,
    )


def _problems(run: RunMetrics, config: BenchConfig) -> list[str]:
    found = []
    if run.succeeded != run.tasks:
        found.append(f"{run.name}: {run.succeeded}/{run.tasks} tasks succeeded")
    if run.max_live_tasks > config.cap:
        found.append(f"{run.name}: {run.max_live_tasks} live tasks, above the cap {config.cap}")
    if not run.created_once:
        found.append(f"{run.name}: not every prompt was created exactly once")
    return found


# -- memory ----------------------------------------------------------------------------------


def _source_root() -> Path | None:
    """The source checkout this package was imported from, if it is one."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "benchmarks").is_dir():
        return root
    return None


def _child_env() -> dict[str, str]:
    """Our environment, with this package importable even when it is not installed."""
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    return env


@contextlib.asynccontextmanager
async def _mock_process(cap: int) -> AsyncIterator[str]:
    """A mock server in a child process (its task records stay out of our memory): its
    freesora base URL. Tasks end at once."""
    command = [
        sys.executable,
        "-m",
        "sora_async",
        "mock-server",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--task-seconds",
        "0",
        "--cap",
        str(cap),
    ]
    process = await anyio.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_child_env()
    )
    try:
        assert process.stdout is not None
        buffer = b""
        prefix = b"freesora base URL: "
        with anyio.fail_after(_CHILD_START_TIMEOUT):
            while prefix not in buffer or not buffer.split(prefix, 1)[1].count(b"\n"):
                try:
                    buffer += await process.stdout.receive()
                except anyio.EndOfStream:
                    raise RuntimeError("the mock server child exited before listening") from None
        yield buffer.split(prefix, 1)[1].split(b"\n", 1)[0].decode().strip()
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.terminate()
                with anyio.move_on_after(5):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            await process.aclose()


async def _traced_peak(work: Callable[[], Awaitable[int]]) -> tuple[int, int]:
    """(tracemalloc peak in bytes, what ``work`` returned)."""
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if was_tracing:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
    else:
        base = 0
        tracemalloc.start()
    try:
        outcome = await work()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return peak, outcome


def _memory_sdk_work(base_url: str, key: str, count: int, cap: int) -> Callable[[], Awaitable[int]]:
    async def work() -> int:
        succeeded = 0
        async with SoraClient(
            "freesora",
            key,
            base_url=base_url,
            max_concurrent_tasks=cap,
            poll_interval=_MEMORY_POLL_INTERVAL,
            expected_duration=_MEMORY_POLL_INTERVAL,
            env={},
        ) as client:
            # Fed lazily and nothing kept: whatever memory grows with N is the SDK's.
            requests = (VideoRequest(prompt) for prompt in _prompts(count, key))
            async for result in client.generate_many(requests):
                succeeded += result.ok
        return succeeded

    return work


def _memory_handrolled_work(
    run: HandRolledRun, base_url: str, key: str, count: int, cap: int
) -> Callable[[], Awaitable[int]]:
    async def work() -> int:
        results = await run(
            base_url,
            key,
            _prompts(count, key),
            concurrency=cap,
            poll_interval=_MEMORY_POLL_INTERVAL,
        )
        return sum(1 for result in results if result.get("status") == "succeeded")

    return work


async def _measure_memory(
    config: BenchConfig, handrolled: HandRolledRun | None, report: Callable[[str], object]
) -> tuple[list[MemoryMetrics], list[str]]:
    assert config.memory_tasks is not None
    small, large = config.memory_tasks
    cap = config.cap
    makers: dict[str, Callable[[str, str, int], Callable[[], Awaitable[int]]]] = {
        SDK: lambda url, key, n: _memory_sdk_work(url, key, n, cap),
    }
    if handrolled is not None:
        makers[HANDROLLED] = lambda url, key, n: _memory_handrolled_work(
            handrolled, url, key, n, cap
        )
    measured: list[MemoryMetrics] = []
    problems: list[str] = []
    guard = max(_HANG_FLOOR, _HANG_FACTOR * (small + large + 4 * cap) * 0.01)
    async with _mock_process(cap) as url:
        for name, make in makers.items():
            report(f"memory: {name}, {small} and {large} near-instant tasks")
            peaks: list[int] = []
            # The first run pays for one-off allocations (codegen, caches): not measured.
            sizes = [("warm", 2 * cap), ("small", small), ("large", large)]
            with anyio.fail_after(guard):
                for label, count in sizes:
                    key = f"bench-memory-{name}-{label}"
                    peak, succeeded = await _traced_peak(make(url, key, count))
                    if succeeded != count:
                        problems.append(f"memory {name}: {succeeded}/{count} tasks succeeded")
                    if label != "warm":
                        peaks.append(peak)
            measured.append(
                MemoryMetrics(
                    name=name,
                    small_tasks=small,
                    large_tasks=large,
                    small_peak=peaks[0],
                    large_peak=peaks[1],
                )
            )
    return measured, problems


# -- the whole benchmark ---------------------------------------------------------------------


def find_handrolled() -> Path | None:
    """``benchmarks/handrolled.py`` of the source checkout this package comes from, if any.

    Only the checkout's own copy is used (never one found from the working directory), since
    it is executed.
    """
    root = _source_root()
    if root is None:
        return None
    path = root / "benchmarks" / "handrolled.py"
    return path if path.is_file() else None


def load_handrolled(path: Path) -> HandRolledRun:
    """The ``run`` coroutine function of a hand-rolled script."""
    spec = importlib.util.spec_from_file_location("sora_async_bench_handrolled", path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"cannot load the hand-rolled baseline from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run: HandRolledRun = module.run
    return run


def _environment() -> dict[str, Any]:
    from . import __version__

    return {
        "sora_async": __version__,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


async def run_benchmark(
    config: BenchConfig | None = None,
    *,
    handrolled: HandRolledRun | None = None,
    progress: Callable[[str], object] | None = None,
) -> BenchReport:
    """Run every measure once and return the report (nothing is written).

    ``handrolled`` is the baseline script's ``run`` (see :func:`load_handrolled`); None leaves
    the hand-rolled column out. ``progress`` receives a line per stage.
    """
    config = config or BenchConfig()

    def report(line: str) -> None:
        if progress is not None:
            progress(line)

    began = time.monotonic()
    report(
        f"{SDK}: {config.tasks} tasks of {config.task_seconds:g}s +-{config.jitter:.0%}, "
        f"cap {config.cap}"
    )
    sdk_observed = await _observe_sdk(config)
    sdk = _analyse(SDK, sdk_observed, config)
    runs = [_ideal(sdk, sdk_observed.records, config.cap), sdk]
    problems = _problems(sdk, config)
    if handrolled is not None:
        report(f"{HANDROLLED}: same mock settings and seed")
        hand = _analyse(HANDROLLED, await _observe_handrolled(config, handrolled), config)
        runs.append(hand)
        problems += _problems(hand, config)
    memory: list[MemoryMetrics] = []
    if config.memory_tasks is not None:
        memory, memory_problems = await _measure_memory(config, handrolled, report)
        problems += memory_problems
    return BenchReport(
        config=config,
        runs=tuple(runs),
        memory=tuple(memory),
        problems=tuple(problems),
        environment=_environment(),
        wall_seconds=time.monotonic() - began,
    )


# -- output ----------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.{digits}f}"


def _int(value: int | None) -> str:
    return "—" if value is None else str(value)


def _kib(value: int) -> str:
    return f"{value / 1024:,.0f} KiB"


def _markdown(report: BenchReport) -> str:
    config = report.config
    runs = report.runs
    scale = config.scale

    def real(value: float | None) -> float | None:
        return None if value is None else value / scale

    rows: list[tuple[str, Callable[[RunMetrics], str]]] = [
        ("makespan / ideal", lambda r: _num(r.makespan_ratio)),
        ("slot utilisation", lambda r: _num(r.utilisation)),
        ("status polls per task", lambda r: _num(r.polls_per_task, 1)),
        ("mean detection latency / task duration", lambda r: _num(r.latency_fraction, 3)),
        ("mean detection latency, real-scale s", lambda r: _num(real(r.mean_latency), 1)),
        ("p95 detection latency, real-scale s", lambda r: _num(real(r.p95_latency), 1)),
        (f"max live tasks (cap {config.cap})", lambda r: _int(r.max_live_tasks)),
        ("429s caused", lambda r: _int(r.rate_limited)),
        ("creates per prompt (max)", lambda r: _int(r.max_creates_per_prompt)),
        ("tasks succeeded", lambda r: f"{r.succeeded}/{r.tasks}"),
        ("makespan, mock s (noisy)", lambda r: _num(r.makespan, 1)),
    ]
    lines = [
        "| metric | " + " | ".join(run.name for run in runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(run) for run in runs) + " |")
    if report.memory and config.memory_tasks is not None:
        small, large = config.memory_tasks
        cells = []
        for run in runs:
            item = report.memory_of(run.name)
            cells.append(
                "—"
                if item is None
                else f"{_kib(item.small_peak)} → {_kib(item.large_peak)} (x{item.ratio:.2f})"
            )
        lines.append(f"| tracemalloc peak, N={small} → N={large} | " + " | ".join(cells) + " |")
    env = report.environment
    head = (
        f"N = {config.tasks} tasks, cap {config.cap}, mock tasks of {config.task_seconds:g} s "
        f"± {config.jitter:.0%} (seed {config.seed}); time scale 1:{1 / scale:.0f} (a real "
        f"{REAL_TASK_SECONDS:.0f} s task polled every {REAL_POLL_INTERVAL:g} s becomes "
        f"{config.expected_duration:g} s polled every {config.poll_interval:.3f} s). "
        f"sora_async {env.get('sora_async')}, Python {env.get('python')}, "
        f"{env.get('cpus')} CPUs, {env.get('date')}; whole run {report.wall_seconds:.0f} s."
    )
    text = [head, "", *lines]
    if report.problems:
        text += ["", "Problems: " + "; ".join(report.problems)]
    return "\n".join(text) + "\n"


def write_results(report: BenchReport, out_dir: Path) -> tuple[Path, Path]:
    """Write ``latest.json`` and ``latest.md`` into ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{_RESULTS_STEM}.json"
    md_path = out_dir / f"{_RESULTS_STEM}.md"
    json_path.write_text(json.dumps(report.as_dict(), indent=2, sort_keys=True) + "\n")
    md_path.write_text("# sora-async bench: latest run\n\n" + report.to_markdown())
    return json_path, md_path


def default_out_dir() -> Path:
    """``benchmarks/results`` when run from inside the source checkout, else a new temp dir."""
    root = _source_root()
    if root is not None:
        cwd = Path.cwd().resolve()
        if cwd == root or root in cwd.parents:
            return root / "benchmarks" / "results"
    return Path(tempfile.mkdtemp(prefix="sora-async-bench-"))


# -- command line ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's options."""
    defaults = BenchConfig()
    parser.add_argument(
        "--tasks",
        type=positive_int,
        default=defaults.tasks,
        help="tasks per client run (default %(default)s)",
    )
    parser.add_argument(
        "--task-seconds",
        type=positive_float,
        default=defaults.task_seconds,
        help="mock task duration standing for a real 180 s task; every time knob is scaled "
        "by S/180 (default %(default)s)",
    )
    parser.add_argument(
        "--jitter",
        type=float,
        default=defaults.jitter,
        help="durations are drawn from S x (1 +- J) (default %(default)s)",
    )
    parser.add_argument(
        "--cap",
        type=positive_int,
        default=defaults.cap,
        help="account task cap (default %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="mock seed (default %(default)s)"
    )
    parser.add_argument(
        "--memory-tasks",
        type=positive_int,
        nargs=2,
        metavar=("SMALL", "LARGE"),
        default=defaults.memory_tasks,
        help="sizes of the two memory runs (default 500 2000)",
    )
    parser.add_argument("--skip-memory", action="store_true", help="no memory runs")
    parser.add_argument(
        "--skip-handrolled", action="store_true", help="no hand-rolled baseline run"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="results directory (default: benchmarks/results when run inside the source "
        "checkout, else a new temp dir)",
    )


async def run_command(args: argparse.Namespace) -> int:
    """``sora-async bench``: run, print the table, write the results. 1 if a problem showed."""
    config = BenchConfig(
        tasks=args.tasks,
        task_seconds=args.task_seconds,
        jitter=args.jitter,
        cap=args.cap,
        seed=args.seed,
        memory_tasks=None if args.skip_memory else tuple(args.memory_tasks),
    )
    handrolled: HandRolledRun | None = None
    if not args.skip_handrolled:
        path = find_handrolled()
        if path is None:
            print(
                "bench: benchmarks/handrolled.py not found (not a source checkout); "
                "the hand-rolled column is left out",
                file=sys.stderr,
            )
        else:
            handrolled = load_handrolled(path)

    def progress(line: str) -> None:
        print(f"bench: {line}", file=sys.stderr, flush=True)

    report = await run_benchmark(config, handrolled=handrolled, progress=progress)
    out_dir = args.out if args.out is not None else default_out_dir()
    json_path, md_path = write_results(report, out_dir)
    print(report.to_markdown(), end="")
    print(f"bench: results written to {json_path} and {md_path}", file=sys.stderr)
    return 1 if report.problems else 0
