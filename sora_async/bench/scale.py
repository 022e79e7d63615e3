"""Bulk and CPU: each client runs in a fresh child process of its own, so that its resident
memory and CPU time are its own and nothing earlier in the benchmark is counted.

* memory: N zero-duration prompts fed lazily (the baseline: as written, a gather); the peak
  RSS when 10k, 50k and 100k tasks are done, and the wall time per 1,000;
* CPU: N zero-duration prompts through the SDK, then a raw aiohttp loop sending the same
  requests (one create and, spread evenly, as many status calls as the SDK sent) with as many
  workers as the cap, over one kept-alive pool as the SDK's: whatever the SDK spends beyond
  that loop is its own overhead.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from .child import Child
from .clients import KEY, mock_config, sdk_client
from .metrics import BASELINE, SDK, Checkpoint, CpuMetrics, MemoryMetrics
from .mockproc import MockProcess
from .scenarios import Scenario

__all__ = ["RAW", "RAW_FRESH", "measure_cpu", "measure_memory"]

RAW: Final = "raw aiohttp loop"
#: The same loop with each create on a connection of its own: the SDK's policy until creates
#: shared the kept-alive pool, no longer measured (the name stays for old results).
RAW_FRESH: Final = "raw loop, fresh connection per create"


def _peak_rss() -> int:
    """Peak resident set size of this process so far, bytes (0 where unknown)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return int(peak if sys.platform == "darwin" else peak * 1024)


async def _in_child(function: Callable[..., Any], *args: Any) -> Any:
    async with Child() as child:
        return await child.call(function, *args)


def _load_baseline(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("sora_async_bench_baseline", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the baseline from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run


# -- memory ----------------------------------------------------------------------------------


async def _memory_child(client: str, url: str, scenario: Scenario, baseline: str) -> MemoryMetrics:
    from .. import VideoRequest

    start_rss = _peak_rss()
    marks: list[Checkpoint] = []
    done = succeeded = 0
    started = time.monotonic()

    def count(ok: bool) -> None:
        nonlocal done, succeeded
        done += 1
        succeeded += ok
        if done in scenario.checkpoints:
            marks.append(
                Checkpoint(done=done, peak_rss=_peak_rss(), wall=time.monotonic() - started)
            )

    prompts = (f"bench memory #{index}" for index in range(scenario.tasks))

    async def sdk() -> None:
        async with sdk_client(scenario, url) as sora:
            # Fed lazily and nothing kept: whatever grows with N is the SDK's.
            async for result in sora.generate_many(VideoRequest(p) for p in prompts):
                count(result.ok)

    async def plain() -> None:
        run = _load_baseline(baseline)
        await run(
            url,
            KEY,
            ((prompt, "sora-2") for prompt in prompts),
            concurrency=scenario.cap,
            poll_interval=scenario.base_interval,
            on_done=lambda _, data: count(data.get("status") == "succeeded"),
        )

    budget = scenario.budget
    if client == SDK and scenario.sdk_budget is not None:
        budget = scenario.sdk_budget
    try:
        await asyncio.wait_for(sdk() if client == SDK else plain(), budget)
        stopped = False
    except asyncio.TimeoutError:
        stopped = True
    return MemoryMetrics(
        client=client,
        tasks=scenario.tasks,
        succeeded=succeeded,
        checkpoints=marks,
        start_rss=start_rss,
        done=done,
        wall=time.monotonic() - started,
        final_rss=_peak_rss(),
        stopped=stopped,
    )


async def measure_memory(
    mock: MockProcess, scenario: Scenario, seed: int, baseline: Path
) -> list[MemoryMetrics]:
    measured = []
    for client in (SDK, BASELINE):
        url = await mock.start(mock_config(scenario, seed))
        try:
            measured.append(await _in_child(_memory_child, client, url, scenario, str(baseline)))
        finally:
            # Its records are O(N) and not needed: the counters say enough.
            await mock.stop(records=False)
    return measured


# -- CPU -------------------------------------------------------------------------------------


async def _sdk_cpu_child(
    url: str, scenario: Scenario, profile: bool
) -> tuple[CpuMetrics, str | None]:
    from .. import VideoRequest

    succeeded = 0

    async def work() -> None:
        nonlocal succeeded
        async with sdk_client(scenario, url) as sora:
            requests = (VideoRequest(f"bench cpu #{i}") for i in range(scenario.tasks))
            async for result in sora.generate_many(requests):
                succeeded += result.ok

    profiler: Any = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled")
        profiler.start()
    cpu, wall = time.process_time(), time.monotonic()
    await work()
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    text = None
    if profiler is not None:
        profiler.stop()
        text = profiler.output_text(unicode=False, color=False)
    metrics = CpuMetrics(
        client=SDK,
        tasks=scenario.tasks,
        succeeded=succeeded,
        cpu_seconds=cpu,
        wall=wall,
        creates=0,
        status_requests=0,
    )
    return metrics, text


async def _raw_cpu_child(
    url: str, scenario: Scenario, status_requests: int, fresh_creates: bool
) -> CpuMetrics:
    import aiohttp

    tasks = scenario.tasks
    # Spread the SDK's status calls evenly: task i makes polls[i] of them.
    polls = [status_requests // tasks + (i < status_requests % tasks) for i in range(tasks)]
    succeeded = 0

    async def work() -> None:
        nonlocal succeeded
        headers = {"Authorization": f"Bearer {KEY}"}
        connector = aiohttp.TCPConnector(limit=scenario.cap + 4)
        closing = aiohttp.TCPConnector(limit=scenario.cap + 4, force_close=True)
        async with (
            aiohttp.ClientSession(headers=headers, connector=connector) as session,
            aiohttp.ClientSession(headers=headers, connector=closing) as fresh,
        ):
            creator = fresh if fresh_creates else session
            todo = iter(range(tasks))

            async def worker() -> None:
                nonlocal succeeded
                for index in todo:
                    body = {"model": "sora-2", "prompt": f"bench cpu #{index}"}
                    async with creator.post(f"{url}/v1/video/sora-video", json=body) as answer:
                        task_id = (await answer.json())["data"]["id"]
                    status: dict[str, Any] = {}
                    for _ in range(polls[index]):
                        async with session.post(
                            f"{url}/video-generations/check-result", json={"taskId": task_id}
                        ) as answer:
                            status = (await answer.json())["data"]
                    succeeded += status.get("status") == "succeeded"

            await asyncio.gather(*(worker() for _ in range(scenario.cap)))

    cpu, wall = time.process_time(), time.monotonic()
    await work()
    return CpuMetrics(
        client=RAW_FRESH if fresh_creates else RAW,
        tasks=tasks,
        succeeded=succeeded,
        cpu_seconds=time.process_time() - cpu,
        wall=time.monotonic() - wall,
        creates=0,
        status_requests=0,
    )


async def measure_cpu(
    mock: MockProcess, scenario: Scenario, seed: int, *, profile: bool = False
) -> tuple[list[CpuMetrics], str | None]:
    """The SDK, then the raw loop with the SDK's request counts; and the SDK's profile."""
    url = await mock.start(mock_config(scenario, seed))
    try:
        sdk, _ = await _in_child(_sdk_cpu_child, url, scenario, False)
    finally:
        log = await mock.stop(records=False)
    sdk = _with_requests(sdk, log.counters.requests)
    text = None
    if profile:
        # A run of its own: the profiler's overhead stays out of the measured one.
        url = await mock.start(mock_config(scenario, seed))
        try:
            _, text = await _in_child(_sdk_cpu_child, url, scenario, True)
        finally:
            await mock.stop(records=False)
    url = await mock.start(mock_config(scenario, seed))
    try:
        raw = await _in_child(_raw_cpu_child, url, scenario, sdk.status_requests, False)
    finally:
        log = await mock.stop(records=False)
    return [sdk, _with_requests(raw, log.counters.requests)], text


def _with_requests(metrics: CpuMetrics, requests: Any) -> CpuMetrics:
    import attrs

    return attrs.evolve(metrics, creates=requests["create"], status_requests=requests["status"])
