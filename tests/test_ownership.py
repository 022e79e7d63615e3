"""One owner per task: the caller's mistakes never leak a slot, hang a run or drop a result.

Each test is a regression test of issue 8's defects 1-5, through the public API against the
mock server over 127.0.0.1. The mock enforces the account cap itself (a 429 for one task too
many), so a slot the client gives back too early shows up as a cap rejection on the server.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from sora_async import SoraClient, TaskStatus, VideoRequest, WaitTimeoutError
from sora_async.events import EventKind, TaskEvent
from sora_async.mock import MockConfig, MockServer

pytestmark = pytest.mark.anyio

KEY = "sk-ownership-0123456789"
HANG_GUARD = 20.0


def client(mock: MockServer, cap: int, **options: Any) -> SoraClient:
    settings: dict[str, Any] = {
        "base_url": mock.freesora_url,
        "max_concurrent_tasks": cap,
        "poll_interval": 0.05,
        "expected_duration": 0.2,
        "env": {},
        **options,
    }
    return SoraClient("freesora", KEY, **settings)


async def until(condition: Any) -> None:
    with anyio.fail_after(HANG_GUARD):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.02)


# -- 1. hooks that raise, hooks that are coroutines ---------------------------------------------


async def test_a_raising_on_progress_neither_leaks_the_slot_nor_hangs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(status: TaskStatus) -> None:
        raise RuntimeError("the caller's progress bar broke")

    async with (
        MockServer(MockConfig(task_seconds=0.3, jitter=0.0, cap=1)) as mock,
        client(mock, cap=1) as sora,
    ):
        with anyio.fail_after(HANG_GUARD):
            first = await sora.generate("one", on_progress=broken)
            # With one slot, this create waits for the first task's slot: a leak hangs here.
            second = await sora.generate("two", on_progress=broken)
        assert first.ok and second.ok
        assert sora.governor.statistics().held == 0
        assert mock.counters.cap_rejections == 0
    failures = [r for r in caplog.records if "on_progress raised" in r.getMessage()]
    assert len(failures) == 2  # once per wait, not once per status


async def test_a_coroutine_on_progress_is_awaited() -> None:
    seen: list[str] = []

    async def progress(status: TaskStatus) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(status.state.value)

    async with (
        MockServer(MockConfig(task_seconds=0.3, jitter=0.0)) as mock,
        client(mock, 2) as sora,
    ):
        with anyio.fail_after(HANG_GUARD):
            result = await sora.generate(VideoRequest("awaited"), on_progress=progress)
    assert result.ok
    assert seen and seen[-1] == "succeeded"


# -- 2. waits cancelled from outside ------------------------------------------------------------


async def test_cancelled_waits_give_each_slot_back_when_its_task_ends() -> None:
    cap = 2
    async with (
        MockServer(MockConfig(task_seconds=0.3, jitter=0.0, cap=cap)) as mock,
        client(mock, cap) as sora,
    ):
        for index in range(cap + 1):
            # asyncio.wait_for, as a service with its own deadline would do it.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(sora.generate(f"cancelled {index}"), timeout=0.05)
        with anyio.fail_after(HANG_GUARD):
            # Before the fix, `cap` cancellations kept every slot forever: this blocked.
            result = await sora.generate("after the cancellations")
        assert result.ok
        await until(lambda: sora.governor.statistics().held == 0)
        assert not sora.unfinished_tasks
        assert mock.counters.cap_rejections == 0
        assert mock.counters.max_live_tasks <= cap


async def test_a_wait_for_that_fires_while_the_create_is_in_flight_keeps_the_task() -> None:
    # asyncio's own cancellation (asyncio.wait_for, Task.cancel) passes through anyio's shield:
    # the create's answer must still be awaited, its task followed and its slot held, or the
    # account is over-filled (a 429 below) and a paid task goes unnoticed.
    from sora_async.mock import Fault

    async with (
        MockServer(MockConfig(task_seconds=0.3, jitter=0.0, cap=1)) as mock,
        client(mock, 1) as sora,
    ):
        mock.inject("create", Fault.CREATED_THEN_SLOW, delay=0.3)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(sora.generate("cancelled in flight"), timeout=0.05)
        await until(lambda: len(mock.tasks()) == 1)
        [made] = mock.tasks()
        assert made.task_id in sora.unfinished_tasks
        with anyio.fail_after(HANG_GUARD):
            result = await sora.generate("after the cancellation")
        assert result.ok
        await until(lambda: sora.governor.statistics().held == 0)
        assert mock.counters.cap_rejections == 0
        assert mock.counters.max_live_tasks <= 1


# -- 3. finished results are never dropped silently --------------------------------------------


async def test_leaving_early_keeps_finished_results_that_were_never_yielded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sora_async")
    async with (
        MockServer(MockConfig(task_seconds=0.2, jitter=0.0)) as mock,
        client(mock, 5) as sora,
    ):
        prompts = [f"finished {index}" for index in range(5)]
        with anyio.fail_after(HANG_GUARD):
            async with sora.generate_many(prompts) as run:
                async for first in run:  # noqa: B007 - checked after the loop
                    # Every task ends, and the client sees it end, while the consumer holds
                    # its first result: four results wait to be yielded.
                    await until(lambda: mock.counters.creates == 5 and not sora.unfinished_tasks)
                    await anyio.wait_all_tasks_blocked()
                    break
        undelivered = run.undelivered
        assert first.ok
        assert len(undelivered) == 4 and all(result.ok for result in undelivered)
        assert {r.task_id for r in undelivered} | {first.task_id} == {
            task.task_id for task in mock.tasks(KEY)
        }
        [warning] = [r.getMessage() for r in caplog.records if "never yielded" in r.getMessage()]
        assert all(str(result.task_id) in warning for result in undelivered)


# -- 4. a stopped run keeps counting its live tasks ---------------------------------------------


async def test_a_stopped_run_keeps_its_live_tasks_slots_so_the_next_run_never_overfills() -> None:
    cap = 3
    async with (
        MockServer(MockConfig(task_seconds=0.6, jitter=0.0, cap=cap)) as mock,
        client(mock, cap) as sora,
    ):
        with anyio.fail_after(HANG_GUARD):
            async with sora.generate_many(f"first run {i}" for i in range(10)) as run:
                await until(lambda: mock.live_tasks(KEY) == cap)
            # Stopped with `cap` tasks alive: they still count ...
            assert set(run.unfinished) == set(sora.unfinished_tasks)
            assert sora.governor.statistics().held == len(run.unfinished) == cap
            # ... so the next run waits for them instead of collecting 429s.
            results = [r async for r in sora.generate_many(f"second run {i}" for i in range(3))]
        assert all(result.ok for result in results)
        assert mock.counters.cap_rejections == 0
        assert mock.counters.max_live_tasks <= cap
        await until(lambda: sora.governor.statistics().held == 0)


# -- 5. a raising event hook fails nothing but itself ------------------------------------------


@pytest.mark.parametrize("kind", [EventKind.PROGRESS, EventKind.SUCCEEDED, EventKind.DOWNLOADED])
async def test_a_raising_event_hook_neither_aborts_the_run_nor_its_task(
    kind: EventKind, tmp_path: Any
) -> None:
    def hook(event: TaskEvent) -> None:
        if event.kind is kind and event.key == 1:
            raise ValueError(f"the caller's {kind} handler broke")

    async with (
        MockServer(MockConfig(task_seconds=0.2, jitter=0.0)) as mock,
        client(mock, 3) as sora,
    ):
        with anyio.fail_after(HANG_GUARD):
            results = {
                r.key: r
                async for r in sora.generate_many(
                    [f"hooked {i}" for i in range(3)], on_event=hook, download_to=tmp_path
                )
            }
        assert sorted(results) == [0, 1, 2]
        assert all(result.ok and result.files for result in results.values())
        assert sora.governor.statistics().held == 0
        assert mock.counters.creates == 3


# -- closing -------------------------------------------------------------------------------------


async def test_closing_stops_every_follower_of_a_live_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The followers are tasks of the runtime's own, outside the client's task group: closing
    # the client ends them too (not their next poll on a closed session), and nothing polls
    # for it afterwards.
    caplog.set_level(logging.ERROR, logger="sora_async")
    async with MockServer(MockConfig(task_seconds=600.0, jitter=0.0)) as mock:
        async with client(mock, 3) as sora:
            for index in range(3):
                await sora.create(f"long {index}")
            await until(lambda: mock.counters.polls >= 3)  # every follower is polling
        assert followers() == []
        polls = mock.counters.polls
        await anyio.sleep(0.2)  # four poll intervals
        assert mock.counters.polls == polls
    assert not caplog.records  # no follower failed on the way out


def followers() -> list[asyncio.Task[Any]]:
    """The client's followers still running (the tasks that poll, see lifecycle)."""
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and "_follow" in task.get_coro().__qualname__  # type: ignore[union-attr]
    ]


async def test_a_task_seen_ended_by_another_poll_stops_its_follower() -> None:
    # The follower's first poll is seconds away; the caller's own status() sees the end first.
    async with (
        MockServer(MockConfig(task_seconds=0.01, jitter=0.0)) as mock,
        client(mock, 2, poll_interval=5.0, expected_duration=5.0) as sora,
    ):
        task_id = await sora.create("quick")
        assert len(followers()) == 1
        await anyio.sleep(0.05)
        assert (await sora.status(task_id)).is_terminal
        await until(lambda: not followers())  # stopped now, not after its poll
        assert mock.counters.polls_by_task[task_id] == 1
        assert sora.governor.statistics().held == 0


async def test_an_unwatched_foreign_id_is_no_longer_followed() -> None:
    async with (
        MockServer(MockConfig(task_seconds=600.0, jitter=0.0)) as mock,
        client(mock, 2) as sora,
        client(mock, 2) as other,  # the id is another client's: no slot here
    ):
        task_id = await other.create("long")
        with pytest.raises(WaitTimeoutError):
            await sora.wait(task_id, timeout=0.1)
        await until(lambda: len(followers()) == 1)  # only the creator's own
        assert task_id not in sora.unfinished_tasks
