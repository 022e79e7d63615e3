"""The fault soak: many tasks through ``SoraClient.generate_many`` against a hostile mock.

One run starts the mock on 127.0.0.1, queues a seeded schedule of faults on its create and
status endpoints (5xx, dropped connections, malformed bodies, 429 bursts with Retry-After,
created-then-500, slow answers), drives every task through the public client, then checks each
result against the mock's own record of the task. The invariants that matter for money and
trust are counted, never assumed: duplicate creates, lost tasks, wrong outcomes, the most
tasks alive at once, and descriptors left open. ``benchmarks/soak.py`` is the command; the CI
test runs a bounded version and asserts the invariants, never timings.

The mock's fault queue is first-in first-out per endpoint, so a schedule is a list with one
entry per request: a fault, or a zero-second SLOW that stands for "answer normally". Entry i
therefore hits request i, whoever sends it, and the fired faults are known exactly.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs

from .calls import Endpoint
from .client import SoraClient
from .errors import CreateOutcomeUnknownError
from .mock import Fault, MockConfig, MockServer
from .models import TaskResult, TaskState, VideoRequest
from .retry import RetryPolicy

__all__ = ["SoakConfig", "SoakReport", "fault_schedule", "open_descriptors", "run_soak"]

PROVIDERS = ("freesora", "sora2api")
#: Prompts carrying this fail on the server (the mock's default fail_marker).
FAIL_MARKER = "[fail]"
#: Stands for "no fault": the real answer after no delay.
_PASS = (Fault.SLOW, 0.0)


@attrs.frozen(kw_only=True)
class SoakConfig:
    """What one soak run does. Rates are per request of the endpoint named."""

    tasks: int = 1000
    providers: tuple[str, ...] = PROVIDERS
    #: max_concurrent_tasks of each client and the mock's per-account cap.
    cap: int = 20
    seed: int = 0
    #: Mock task run time and client poll interval, in real seconds: short, so a run is quick.
    task_seconds: float = 0.3
    poll_interval: float = 0.05
    #: Share of prompts that fail on the server (a real failed task, not a fault).
    failing_prompts: float = 0.05
    poll_5xx: float = 0.10
    poll_drop: float = 0.05
    poll_malformed: float = 0.03
    create_then_500: float = 0.03
    #: Chance that a 429 burst (2 to 4 answers in a row, Retry-After ``retry_after``) starts.
    create_burst: float = 0.02
    poll_burst: float = 0.02
    retry_after: float = 0.02
    #: Chance of a slow answer (``slow_delay`` seconds) on either endpoint.
    slow: float = 0.02
    slow_delay: float = 0.1
    #: Download every success (fault-free: downloads are tested elsewhere).
    download_to: Path | None = None

    def __attrs_post_init__(self) -> None:
        if self.tasks < 1:
            raise ValueError(f"tasks must be >= 1: {self.tasks!r}")
        if not self.slow_delay > 0:
            # A zero-second SLOW is the schedule's "no fault"; a slow answer must differ.
            raise ValueError(f"slow_delay must be > 0: {self.slow_delay!r}")
        for provider in self.providers:
            if provider not in PROVIDERS:
                raise ValueError(f"unknown provider {provider!r}: allowed {', '.join(PROVIDERS)}")


@attrs.define(kw_only=True)
class SoakReport:
    """The figures of one run; :meth:`as_dict` is the JSON, :meth:`markdown` the table."""

    config: dict[str, Any]
    tasks: int
    results: int
    succeeded: int
    failed: int
    outcome_unknown: int
    duplicate_creates: int
    lost_tasks: int
    wrong_outcomes: int
    wrong_details: list[str]
    max_live_tasks: int
    cap: int
    cap_rejections: int
    requests: dict[str, int]
    faults_fired: dict[str, int]
    retries: dict[str, int]
    retries_per_request: float
    unfinished_tasks: int
    fds_before: int
    fds_after: int
    sockets_before: int
    sockets_after: int
    rss_mib_start: float
    rss_mib_warm: float
    rss_mib_end: float
    seconds: float
    machine: str

    @property
    def correct_outcomes(self) -> float:
        return 100.0 * (self.results - self.wrong_outcomes) / self.tasks if self.tasks else 0.0

    @property
    def fd_leak(self) -> int:
        return self.fds_after - self.fds_before

    @property
    def socket_leak(self) -> int:
        return self.sockets_after - self.sockets_before

    @property
    def ok(self) -> bool:
        return (
            self.duplicate_creates == 0
            and self.lost_tasks == 0
            and self.wrong_outcomes == 0
            and self.results == self.tasks
            and self.max_live_tasks <= self.cap
            and self.unfinished_tasks == 0
            and self.fd_leak <= 0
            and self.socket_leak <= 0
        )

    def as_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data.update(
            correct_outcomes_percent=round(self.correct_outcomes, 3),
            fd_leak=self.fd_leak,
            socket_leak=self.socket_leak,
            rss_drift_mib=round(self.rss_mib_end - self.rss_mib_warm, 2),
            ok=self.ok,
        )
        return data

    def markdown(self) -> str:
        rows = [
            ("tasks (results)", f"{self.tasks} ({self.results})"),
            ("succeeded / failed / outcome unknown",
             f"{self.succeeded} / {self.failed} / {self.outcome_unknown}"),
            ("duplicate creates", str(self.duplicate_creates)),
            ("lost tasks", str(self.lost_tasks)),
            ("correct outcomes", f"{self.correct_outcomes:.1f} %"),
            ("max live tasks (cap)", f"{self.max_live_tasks} ({self.cap})"),
            ("cap rejections (429 from a full account)", str(self.cap_rejections)),
            ("requests", ", ".join(f"{k} {v}" for k, v in sorted(self.requests.items()))),
            ("faults fired", ", ".join(f"{k} {v}" for k, v in sorted(self.faults_fired.items()))),
            ("retries", ", ".join(f"{k} {v}" for k, v in sorted(self.retries.items()))),
            ("retries per request", f"{self.retries_per_request:.3f}"),
            ("unfinished tasks at exit", str(self.unfinished_tasks)),
            ("file descriptors before / after", f"{self.fds_before} / {self.fds_after}"),
            ("sockets before / after", f"{self.sockets_before} / {self.sockets_after}"),
            ("RSS start / warm / end (MiB)",
             f"{self.rss_mib_start:.1f} / {self.rss_mib_warm:.1f} / {self.rss_mib_end:.1f}"),
            ("wall time", f"{self.seconds:.1f} s"),
            ("machine", self.machine),
        ]  # fmt: skip
        lines = ["| figure | value |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in rows]
        if self.wrong_details:
            lines += ["", "Wrong outcomes:", *(f"- {d}" for d in self.wrong_details[:20])]
        return "\n".join(lines) + "\n"


# -- faults --------------------------------------------------------------------------------


def fault_schedule(
    rng: random.Random,
    length: int,
    rates: list[tuple[Fault, float]],
    burst: float,
    slow_delay: float = 0.1,
) -> Iterator[tuple[Fault, float]]:
    """``length`` entries: (fault, delay) per request, 429 bursts of 2-4 in a row included."""
    made = 0
    while made < length:
        draw = rng.random()
        if draw < burst:
            run = rng.randint(2, 4)
            for _ in range(run):
                yield (Fault.RATE_LIMIT, 0.0)
            made += run
            continue
        draw = rng.random()
        entry = _PASS
        for fault, rate in rates:
            if draw < rate:
                entry = (fault, slow_delay if fault is Fault.SLOW else 0.0)
                break
            draw -= rate
        yield entry
        made += 1


def _queue(
    mock: MockServer, endpoint: str, entries: list[tuple[Fault, float]], retry_after: float
) -> None:
    """Inject the schedule, runs of equal entries as one inject (the queue stays short)."""
    index = 0
    while index < len(entries):
        fault, delay = entries[index]
        end = index + 1
        while end < len(entries) and entries[end] == entries[index]:
            end += 1
        options: dict[str, Any] = {}
        if fault is Fault.SLOW:
            options["delay"] = delay
        elif fault is Fault.RATE_LIMIT:
            options["retry_after"] = retry_after
        mock.inject(endpoint, fault, times=end - index, **options)
        index = end


def _schedules(cfg: SoakConfig) -> dict[str, list[tuple[Fault, float]]]:
    rng = random.Random(cfg.seed)
    create_rates = [(Fault.CREATED_THEN_500, cfg.create_then_500), (Fault.SLOW, cfg.slow)]
    poll_rates = [
        (Fault.SERVER_ERROR, cfg.poll_5xx),
        (Fault.DROP, cfg.poll_drop),
        (Fault.MALFORMED, cfg.poll_malformed),
        (Fault.SLOW, cfg.slow),
    ]
    # Long enough never to run dry: a create is retried after each 429, and a task is polled
    # about task_seconds / poll_interval times plus a retry per fault.
    polls = max(1, round(cfg.task_seconds / cfg.poll_interval)) * 4 + 20
    return {
        Endpoint.CREATE: list(
            fault_schedule(rng, cfg.tasks * 2 + 50, create_rates, cfg.create_burst, cfg.slow_delay)
        ),
        Endpoint.STATUS: list(
            fault_schedule(rng, cfg.tasks * polls, poll_rates, cfg.poll_burst, cfg.slow_delay)
        ),
    }


def _fired(schedule: list[tuple[Fault, float]], requests: int) -> Counter[str]:
    """The faults the first ``requests`` requests met (entry i hits request i)."""
    fired: Counter[str] = Counter()
    for entry in schedule[:requests]:
        if entry != _PASS:
            fired[entry[0].value] += 1
    return fired


# -- process figures -----------------------------------------------------------------------


def _fd_dir() -> Path | None:
    for name in ("/proc/self/fd", "/dev/fd"):
        if Path(name).is_dir():
            return Path(name)
    return None


def open_descriptors() -> tuple[int, int]:
    """(open file descriptors, of which sockets) of this process; (-1, -1) where unknown."""
    where = _fd_dir()
    if where is None:
        return (-1, -1)
    fds = sockets = 0
    for entry in os.listdir(where):
        try:
            target = os.readlink(where / entry)
        except OSError:
            continue  # the descriptor listdir itself used, closed by now
        fds += 1
        sockets += target.startswith("socket:")
    return (fds, sockets)


def _rss_mib() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (2**20 if sys.platform == "darwin" else 2**10)


def machine() -> str:
    uname = os.uname()
    return (
        f"{uname.sysname} {uname.machine}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )


class _RetryCounter(logging.Handler):
    """Counts the SDK's own retry log lines, by endpoint."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.retries: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.msg if isinstance(record.msg, str) else ""
        if "retrying in" not in message:
            return
        if message.startswith("create refused with 429"):
            self.retries["create (429, governor)"] += 1
        elif isinstance(record.args, tuple) and len(record.args) > 1:
            self.retries[str(record.args[1])] += 1


# -- the run -------------------------------------------------------------------------------


def _prompt(provider: str, index: int, failing: bool) -> str:
    return f"soak {provider} {index}" + (f" {FAIL_MARKER}" if failing else "")


async def _drive(
    mock: MockServer,
    cfg: SoakConfig,
    *,
    provider: str,
    prompts: list[str],
    out: dict[tuple[str, int], TaskResult],
    unfinished: list[int],
    warm: list[float],
) -> None:
    retry = RetryPolicy(attempts=6, initial=0.01, maximum=0.1, jitter=0.5, timeout=20.0)
    client = SoraClient(
        provider,
        f"sk-soak-{provider}",
        base_url=mock.url_for(provider),
        max_concurrent_tasks=cfg.cap,
        poll_interval=cfg.poll_interval,
        expected_duration=cfg.task_seconds,
        retry=retry,
    )
    async with client:
        requests = (VideoRequest(prompt) for prompt in prompts)
        async with client.generate_many(requests, download_to=cfg.download_to) as run:
            async for result in run:
                out[(provider, result.key)] = result
                if len(out) == max(1, cfg.tasks // 10):
                    warm.append(_rss_mib())
        unfinished.append(len(client.unfinished_tasks))


def _check(
    mock: MockServer, cfg: SoakConfig, prompts: dict[str, list[str]],
    results: dict[tuple[str, int], TaskResult],
) -> tuple[int, int, list[str]]:  # fmt: skip
    """(duplicate creates, lost tasks, wrong outcomes described) against the mock's records."""
    wrong: list[str] = []
    creates = mock.counters.creates_by_prompt
    ours = {p for batch in prompts.values() for p in batch}
    duplicates = sum(count - 1 for prompt, count in creates.items() if count > 1)
    duplicates += sum(1 for prompt in creates if prompt not in ours)
    delivered: set[str] = set()
    lost = 0
    for provider, batch in prompts.items():
        for index, prompt in enumerate(batch):
            result = results.get((provider, index))
            if result is None:
                lost += 1
                continue
            where = f"{provider} #{index}"
            if result.task_id is None:
                # Never a task id: only an honest "unknown" is right, and it was sent once.
                if not isinstance(result.exception, CreateOutcomeUnknownError):
                    wrong.append(f"{where}: no task and {result.exception!r}")
                continue
            delivered.add(result.task_id)
            try:
                record = mock.task(result.task_id)
            except KeyError:
                wrong.append(f"{where}: task {result.task_id} unknown to the mock")
                continue
            expected = TaskState.FAILED if FAIL_MARKER in prompt else TaskState.SUCCEEDED
            urls = [f"{mock.base_url}/files/{record.task_id}.mp4"]
            if record.prompt != prompt or record.provider != provider:
                wrong.append(f"{where}: result names another prompt's task")
            elif not (record.state is result.state is expected):
                wrong.append(f"{where}: {result.state} here, {record.state} on the mock")
            elif expected is TaskState.SUCCEEDED and result.video_urls != urls:
                wrong.append(f"{where}: urls {result.video_urls}")
            elif (
                cfg.download_to is not None
                and expected is TaskState.SUCCEEDED
                and [p.read_bytes() for p in result.files] != [mock.file_bytes(record.task_id)]
            ):
                wrong.append(f"{where}: downloaded bytes differ")
    # A task the mock made that no result names (and no "unknown" owns) was lost.
    unknown_prompts = {
        prompts[p][i] for (p, i), r in results.items() if r.task_id is None
    }  # fmt: skip
    for record in mock.tasks():
        if record.task_id not in delivered and record.prompt not in unknown_prompts:
            lost += 1
    return duplicates, lost, wrong


async def run_soak(cfg: SoakConfig) -> SoakReport:
    """One soak run; the mock and the clients are started and closed inside."""
    started = time.monotonic()
    rss_start = _rss_mib()
    fds_before, sockets_before = open_descriptors()
    rng = random.Random(cfg.seed + 1)
    prompts: dict[str, list[str]] = {p: [] for p in cfg.providers}
    for index in range(cfg.tasks):
        provider = cfg.providers[index % len(cfg.providers)]
        batch = prompts[provider]
        batch.append(_prompt(provider, len(batch), rng.random() < cfg.failing_prompts))
    mock_config = MockConfig(
        task_seconds=cfg.task_seconds,
        jitter=0.2,
        cap=cfg.cap,
        cap_retry_after=cfg.retry_after,
        seed=cfg.seed,
        file_size=4096,
        slow_delay=cfg.slow_delay,
        tick_interval=0.05,
    )
    results: dict[tuple[str, int], TaskResult] = {}
    unfinished: list[int] = []
    warm: list[float] = []
    counter = _RetryCounter()
    sdk_logger = logging.getLogger("sora_async")
    level = sdk_logger.level
    sdk_logger.addHandler(counter)
    sdk_logger.setLevel(logging.DEBUG)
    try:
        async with MockServer(mock_config) as mock:
            schedules = _schedules(cfg)
            for endpoint, schedule in schedules.items():
                _queue(mock, endpoint, schedule, cfg.retry_after)
            async with anyio.create_task_group() as group:
                for provider, batch in prompts.items():
                    group.start_soon(
                        functools.partial(
                            _drive,
                            mock,
                            cfg,
                            provider=provider,
                            prompts=batch,
                            out=results,
                            unfinished=unfinished,
                            warm=warm,
                        )
                    )
            duplicates, lost, wrong = _check(mock, cfg, prompts, results)
            counters = mock.counters.snapshot()
            exhausted = {e: mock.pending_faults(e) == 0 for e in schedules}
    finally:
        sdk_logger.removeHandler(counter)
        sdk_logger.setLevel(level)
    # Give the loop a moment to finish closing transports the server side still held.
    fds_after, sockets_after = open_descriptors()
    for _ in range(50):
        if fds_after <= fds_before and sockets_after <= sockets_before:
            break
        await anyio.sleep(0.02)
        fds_after, sockets_after = open_descriptors()
    fired: Counter[str] = Counter()
    for endpoint, schedule in schedules.items():
        for kind, count in _fired(schedule, counters.requests[endpoint]).items():
            fired[f"{endpoint} {kind}"] += count
    for endpoint, dry in exhausted.items():
        if dry:
            wrong.append(f"the {endpoint} fault schedule ran dry: later requests met no faults")
    retries = dict(counter.retries)
    total_requests = sum(counters.requests.values())
    first_tries = max(1, total_requests - sum(retries.values()))
    values = list(results.values())
    return SoakReport(
        config={k: str(v) if isinstance(v, Path) else v for k, v in attrs.asdict(cfg).items()},
        tasks=cfg.tasks,
        results=len(results),
        succeeded=sum(r.state is TaskState.SUCCEEDED for r in values),
        failed=sum(r.state is TaskState.FAILED and r.task_id is not None for r in values),
        outcome_unknown=sum(r.task_id is None for r in values),
        duplicate_creates=duplicates,
        lost_tasks=lost,
        wrong_outcomes=len(wrong),
        wrong_details=wrong,
        max_live_tasks=counters.max_live_tasks,
        cap=cfg.cap,
        cap_rejections=counters.cap_rejections,
        requests=dict(counters.requests),
        faults_fired=dict(fired),
        retries=retries,
        retries_per_request=sum(retries.values()) / first_tries,
        unfinished_tasks=sum(unfinished),
        fds_before=fds_before,
        fds_after=fds_after,
        sockets_before=sockets_before,
        sockets_after=sockets_after,
        rss_mib_start=rss_start,
        rss_mib_warm=warm[0] if warm else rss_start,
        rss_mib_end=_rss_mib(),
        seconds=time.monotonic() - started,
        machine=machine(),
    )
