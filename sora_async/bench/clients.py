"""The two clients of a fan-out scenario, each against a fresh mock in the child process.

Both get the same prompts in the same order, the same cap and the same base poll interval.
Each run notes, on the monotonic clock the mock also uses, when it handed over each task's
terminal result; the mock's records say when each task really ended.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, Protocol

import anyio
import attrs

from .. import SoraClient, VideoRequest
from .measures import ideal_makespan, quantile
from .mockproc import MockProcess, ServerLog
from .oracle import run as oracle_run
from .scenarios import Job, Scenario

__all__ = [
    "KEY",
    "BaselineRun",
    "Observed",
    "mock_config",
    "observe_baseline",
    "observe_oracle",
    "observe_sdk",
    "sdk_client",
]

KEY: Final = "bench-key"
# Only reached when something hangs: no run needs this many ideal makespans.
_HANG_FACTOR: Final = 20.0
_HANG_FLOOR: Final = 120.0
# The loop probe's sleep: 50 wakes a second.
_PROBE_SLEEP: Final = 0.02


class BaselineRun(Protocol):
    """``run`` of ``benchmarks/baseline.py``."""

    def __call__(
        self,
        base_url: str,
        api_key: str,
        jobs: Iterable[tuple[str, str]],
        *,
        concurrency: int,
        poll_interval: float,
        on_done: Callable[[str, dict[str, Any]], object] | None = None,
    ) -> Awaitable[Sequence[Any]]: ...


@attrs.frozen(kw_only=True)
class Observed:
    """What one client's run left behind."""

    started: float
    finished: float
    #: task id -> when the client handed over its terminal result.
    seen: dict[str, float]
    succeeded: int
    failed: int
    #: Prompts the client gave up on without a task id (a create with an unknown outcome).
    unknown: int
    #: Client process CPU time over the run (the mock runs elsewhere).
    cpu_seconds: float
    log: ServerLog
    #: How late a short sleep in the client's event loop woke, at the 95th percentile, s: a
    #: loop that is CPU-starved (by the client, or by the machine) finds every task late.
    loop_late_p95: float | None = None
    #: The mock process's CPU time over the run (None where unknown).
    mock_cpu_seconds: float | None = None
    #: The machine's 1-minute load average at the end of the run (None where unknown).
    load_average: float | None = None


def mock_config(scenario: Scenario, seed: int) -> dict[str, Any]:
    """The mock's settings: durations come from the prompts, so no jitter of its own."""
    return {
        "task_seconds": 0.0,
        "jitter": 0.0,
        "seed": seed,
        "cap": scenario.cap,
        # A cap 429 asks for one base interval, as a real server would hint.
        "cap_retry_after": round(scenario.base_interval, 4),
        "file_size": 64,
    }


def hang_guard(scenario: Scenario, jobs: Sequence[Job]) -> float:
    ideal = ideal_makespan([job.seconds for job in jobs], scenario.cap)
    return max(_HANG_FLOOR, _HANG_FACTOR * ideal)


def sdk_client(scenario: Scenario, url: str) -> SoraClient:
    """The SDK as a user configures it for this scenario: the cap, the base poll interval, and
    its own prior, retry waits and 429 pauses scaled with time (see :mod:`.scenarios`)."""
    return SoraClient(
        "freesora",
        KEY,
        base_url=url,
        max_concurrent_tasks=scenario.cap,
        poll_interval=scenario.base_interval,
        expected_duration=scenario.sdk_prior,
        retry=scenario.sdk_retry(),
        governor=scenario.sdk_governor(),
        env={},
    )


@attrs.define
class _Tally:
    seen: dict[str, float] = attrs.field(factory=dict)
    succeeded: int = 0
    failed: int = 0
    unknown: int = 0

    def saw(self, task_id: str | None, ok: bool) -> None:
        if task_id is None:
            self.unknown += 1
            return
        self.seen[task_id] = time.monotonic()
        self.succeeded += ok
        self.failed += not ok


async def _observe(
    mock: MockProcess,
    scenario: Scenario,
    jobs: Sequence[Job],
    seed: int,
    drive: Callable[[str, _Tally], Awaitable[object]],
) -> Observed:
    plan = scenario.fault_plan(seed, _horizon(jobs, scenario))
    url = await mock.start(mock_config(scenario, seed), plan)
    tally = _Tally()
    late: list[float] = []
    try:
        mock_cpu = mock.cpu_seconds()
        cpu = time.process_time()
        started = time.monotonic()
        with anyio.fail_after(hang_guard(scenario, jobs)):
            async with anyio.create_task_group() as group:
                group.start_soon(_probe_loop, late)
                await drive(url, tally)
                group.cancel_scope.cancel()
        finished = time.monotonic()
        cpu = time.process_time() - cpu
        mock_after = mock.cpu_seconds()
        if mock_cpu is not None and mock_after is not None:
            mock_cpu = mock_after - mock_cpu
    finally:
        log = await mock.stop()
    return Observed(
        started=started,
        finished=finished,
        seen=tally.seen,
        succeeded=tally.succeeded,
        failed=tally.failed,
        unknown=tally.unknown,
        cpu_seconds=cpu,
        log=log,
        loop_late_p95=quantile(late, 0.95),
        mock_cpu_seconds=mock_cpu,
        load_average=_load_average(),
    )


async def _probe_loop(late: list[float]) -> None:
    """Note how late each of a series of short sleeps wakes (few enough to cost nothing)."""
    while True:
        asked = time.monotonic()
        await anyio.sleep(_PROBE_SLEEP)
        late.append(max(0.0, time.monotonic() - asked - _PROBE_SLEEP))


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on this platform
        return None


async def observe_sdk(
    mock: MockProcess, scenario: Scenario, jobs: Sequence[Job], seed: int
) -> Observed:
    async def drive(url: str, tally: _Tally) -> None:
        # Opening the client is inside the measure: the baseline opens its session there too.
        async with sdk_client(scenario, url) as client:
            requests = (VideoRequest(job.prompt, model=job.model) for job in jobs)
            async for result in client.generate_many(requests):
                tally.saw(result.task_id, result.ok)

    return await _observe(mock, scenario, jobs, seed, drive)


async def observe_baseline(
    mock: MockProcess, scenario: Scenario, jobs: Sequence[Job], seed: int, run: BaselineRun
) -> Observed:
    async def drive(url: str, tally: _Tally) -> None:
        await run(
            url,
            KEY,
            ((job.prompt, job.model) for job in jobs),
            concurrency=scenario.cap,
            poll_interval=scenario.base_interval,
            on_done=lambda task_id, data: tally.saw(task_id, data.get("status") == "succeeded"),
        )

    return await _observe(mock, scenario, jobs, seed, drive)


async def observe_oracle(
    mock: MockProcess, scenario: Scenario, jobs: Sequence[Job], seed: int
) -> Observed:
    """The client that knows every task's end (:mod:`.oracle`): what is reachable here."""

    async def drive(url: str, tally: _Tally) -> None:
        await oracle_run(
            url,
            KEY,
            ((job.prompt, job.model, job.seconds) for job in jobs),
            concurrency=scenario.cap,
            on_done=lambda task_id, data: tally.saw(task_id, data.get("status") == "succeeded"),
        )

    return await _observe(mock, scenario, jobs, seed, drive)


def _horizon(jobs: Sequence[Job], scenario: Scenario) -> float:
    """How long the fault plan lasts: past the ideal makespan, into a slow client's tail."""
    ideal = ideal_makespan([job.seconds for job in jobs], scenario.cap)
    return 1.5 * ideal if math.isfinite(ideal) else 0.0
