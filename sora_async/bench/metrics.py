"""What each client's run measured, as plain frozen records that serialise to JSON."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ..mock import TaskRecord
from .clients import Observed
from .measures import ideal_makespan, quantile
from .scenarios import Job, Scenario

__all__ = [
    "BASELINE",
    "SDK",
    "ClientMetrics",
    "CpuMetrics",
    "GenerateMetrics",
    "MemoryMetrics",
    "analyse",
]

SDK = "sora_async"
BASELINE = "baseline"


@attrs.frozen(kw_only=True)
class ClientMetrics:
    """One client in one fan-out scenario. Times are mock seconds."""

    client: str
    tasks: int
    succeeded: int
    failed: int
    #: Prompts given up on with no task id (a create whose outcome is unknown).
    unknown: int
    #: How many of the prompts were meant to fail.
    expected_failures: int
    makespan: float
    ideal: float
    status_requests: int
    #: Per task seen terminal: client saw it - the mock ended it.
    lags: list[float] = attrs.field(repr=False)
    max_live_tasks: int
    duplicate_creates: int
    rate_limited: int
    faults_fired: int
    cpu_seconds: float
    #: (created, ended) of every task on the mock, seconds since the client started.
    intervals: list[tuple[float, float]] = attrs.field(repr=False)
    #: Mean slot time between two tasks on the mock: from a task's end to the create that
    #: takes its slot again (what makes the makespan longer than the ideal, task by task).
    idle_mean: float | None = None
    #: Mean detection lag over the same tasks: the part of ``idle_mean`` spent seeing the end.
    seeing_mean: float | None = None
    #: Mean task duration on the mock.
    task_mean: float | None = None
    #: From the start of the run (the client not yet open) to the first create on the mock.
    start_delay: float | None = None
    #: From the last task's end on the mock to the end of the run (its result handed over,
    #: the client closed).
    end_delay: float | None = None
    #: The client's event loop: how late a short sleep woke, 95th percentile, real seconds.
    loop_late_p95: float | None = None
    #: The mock process's CPU time over this client's run (None where unknown).
    mock_cpu_seconds: float | None = None
    #: The machine's 1-minute load average at the end of the run.
    load_average: float | None = None

    @property
    def makespan_ratio(self) -> float:
        return self.makespan / self.ideal if self.ideal > 0 else math.nan

    @property
    def polls_per_task(self) -> float:
        return self.status_requests / self.tasks

    def share(self, seconds: float | None) -> float | None:
        """``seconds`` as a fraction of a mean task (None where unknown)."""
        if seconds is None or not self.task_mean:
            return None
        return seconds / self.task_mean

    @property
    def lag_p50(self) -> float | None:
        return quantile(self.lags, 0.5)

    @property
    def lag_p95(self) -> float | None:
        return quantile(self.lags, 0.95)

    @property
    def cpu_ms_per_task(self) -> float:
        return 1000 * self.cpu_seconds / self.tasks

    @property
    def mock_cpu_ms_per_task(self) -> float | None:
        if self.mock_cpu_seconds is None:
            return None
        return 1000 * self.mock_cpu_seconds / self.tasks

    def as_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data.update(
            mock_cpu_ms_per_task=self.mock_cpu_ms_per_task,
            makespan_ratio=self.makespan_ratio,
            polls_per_task=self.polls_per_task,
            lag_p50=self.lag_p50,
            lag_p95=self.lag_p95,
            cpu_ms_per_task=self.cpu_ms_per_task,
        )
        return data


def analyse(
    client: str, observed: Observed, scenario: Scenario, jobs: Sequence[Job]
) -> ClientMetrics:
    records = observed.log.records or []
    counters = observed.log.counters
    ideal = ideal_makespan([job.seconds for job in jobs], scenario.cap)
    lags = [
        max(0.0, observed.seen[record.task_id] - record.terminal_at)
        for record in records
        if record.task_id in observed.seen
    ]
    idle, seeing = _slot_gaps(records, observed.seen, scenario.cap)
    durations = [record.terminal_at - record.created_at for record in records]
    return ClientMetrics(
        start_delay=min(r.created_at for r in records) - observed.started if records else None,
        end_delay=observed.finished - max(r.terminal_at for r in records) if records else None,
        idle_mean=idle,
        seeing_mean=seeing,
        task_mean=sum(durations) / len(durations) if durations else None,
        client=client,
        tasks=len(jobs),
        succeeded=observed.succeeded,
        failed=observed.failed,
        unknown=observed.unknown,
        expected_failures=sum(job.fails_at_once for job in jobs),
        makespan=observed.finished - observed.started,
        ideal=ideal,
        status_requests=counters.requests["status"],
        lags=lags,
        max_live_tasks=counters.max_live_tasks,
        duplicate_creates=sum(max(0, n - 1) for n in counters.creates_by_prompt.values()),
        rate_limited=counters.rate_limited,
        faults_fired=counters.faults_fired,
        cpu_seconds=observed.cpu_seconds,
        loop_late_p95=observed.loop_late_p95,
        mock_cpu_seconds=observed.mock_cpu_seconds,
        load_average=observed.load_average,
        intervals=[
            (record.created_at - observed.started, record.terminal_at - observed.started)
            for record in records
        ],
    )


def _slot_gaps(
    records: Sequence[TaskRecord], seen: Mapping[str, float], cap: int
) -> tuple[float | None, float | None]:
    """(mean slot time from a task's end to the next create, mean detection lag of the same
    tasks), on the mock's clock; None without a slot taken twice.

    Which end freed which slot does not matter for the mean: the k-th end in time frees a
    slot for the (cap + k)-th create, and the sum of the differences is the same whichever
    way they are paired. The last ``cap`` ends free no slot anyone takes again.
    """
    ends = sorted(record.terminal_at for record in records)
    creates = sorted(record.created_at for record in records)[cap:]
    if not creates:
        return None, None
    freed = ends[: len(creates)]
    idle = sum(creates) / len(creates) - sum(freed) / len(freed)
    by_end = sorted(records, key=lambda record: record.terminal_at)[: len(creates)]
    lags = [seen[r.task_id] - r.terminal_at for r in by_end if r.task_id in seen]
    return idle, (sum(lags) / len(lags) if lags else None)


@attrs.frozen(kw_only=True)
class GenerateMetrics:
    """One video from process start to exit. Real seconds."""

    client: str
    task_seconds: float
    base_interval: float
    wall: float
    #: From the create reaching the mock to the process exit.
    create_to_exit: float | None
    status_requests: int
    succeeded: bool
    #: A progress line reached the terminal while waiting.
    progress_line: bool
    output_tail: str = attrs.field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class Checkpoint:
    done: int
    #: Peak resident set size of the client process so far, bytes.
    peak_rss: int
    #: Seconds since the run started.
    wall: float


@attrs.frozen(kw_only=True)
class MemoryMetrics:
    client: str
    tasks: int
    succeeded: int
    checkpoints: list[Checkpoint]
    #: RSS before the first request (imports, the event loop), bytes.
    start_rss: int
    #: Tasks done when the run ended or ran out of its time budget, and when that was.
    done: int
    wall: float
    final_rss: int
    #: The run was stopped at its time budget before every prompt was done.
    stopped: bool

    @property
    def rss_growth(self) -> float:
        """Peak RSS at the last checkpoint reached over that at the first (nan: fewer than
        two reached)."""
        if len(self.checkpoints) < 2 or not self.checkpoints[0].peak_rss:
            return math.nan
        return self.checkpoints[-1].peak_rss / self.checkpoints[0].peak_rss

    @property
    def wall_per_1000(self) -> float:
        return 1000 * self.wall / self.done if self.done else math.nan

    def as_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data.update(rss_growth=self.rss_growth, wall_per_1000=self.wall_per_1000)
        return data


@attrs.frozen(kw_only=True)
class CpuMetrics:
    client: str
    tasks: int
    succeeded: int
    cpu_seconds: float
    wall: float
    creates: int
    status_requests: int

    @property
    def cpu_ms_per_task(self) -> float:
        return 1000 * self.cpu_seconds / self.tasks

    def as_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["cpu_ms_per_task"] = self.cpu_ms_per_task
        return data
