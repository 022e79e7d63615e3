"""Leaving generate_many early: break, an exception, a cancellation, ``async with``.

The mock runs on a ManualClock, moved once by the test: three of the first twenty tasks end and
every other task stays alive on the server for as long as the test looks. So when the consumer
leaves after three results, the tasks that must be reported are exactly the mock's live tasks,
and nothing depends on how fast anything ran. Those tasks keep their slots until the client,
which goes on following them, sees them end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from sora_async import SoraClient, TaskResult, VideoRequest
from sora_async.events import EventKind, TaskEvent
from sora_async.mock import ManualClock, MockConfig, MockServer

pytestmark = pytest.mark.anyio

PROVIDERS = ("freesora", "sora2api")
MODES = ("break", "named break", "exception", "cancel", "async with")
KEY = "sk-fanout-cancel-0123456789"
CAP = 20
#: Results taken before leaving.
FEW = 3
POLL = 0.02
#: Longer than the longest gap between two polls at POLL (0.3 s for freesora, 0.12 s for
#: sora2api): a poller still running would show within it.
QUIET = 0.5
#: Only reached when something hangs; never a measure of speed.
HANG_GUARD = 30.0


class ConsumerGaveUp(Exception):
    pass


class Prompts:
    """A long lazy input that counts how far it has been read."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pulled = 0

    def __iter__(self) -> Iterator[VideoRequest]:
        for index in range(self.count):
            self.pulled += 1
            yield VideoRequest(f"cancel {index}")


class Recorder:
    """The run's event hook. Once the first ``CAP`` tasks exist, it moves the mock's clock to
    the end of the ``FEW``-th shortest of them, so that exactly ``FEW`` tasks end."""

    def __init__(self, mock: MockServer, clock: ManualClock) -> None:
        self.mock = mock
        self.clock = clock
        self.events: list[TaskEvent] = []
        self.kept: Any = None  # a run handle the test holds on to

    def __call__(self, event: TaskEvent) -> None:
        self.events.append(event)
        if event.kind is EventKind.CREATED and len(self.created) == CAP:
            ends = sorted(self.mock.task(task_id).terminal_at for task_id in self.created)
            self.clock.advance(ends[FEW - 1] - self.clock() + 1e-6)

    @property
    def created(self) -> set[str]:
        return {e.task_id for e in self.events if e.kind is EventKind.CREATED and e.task_id}


async def wait_until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(HANG_GUARD):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.01)


def stop_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "sora_async"
        and record.levelno == logging.WARNING
        and "generate_many ended with" in record.getMessage()
    ]


async def leave_early(
    mode: str, client: SoraClient, prompts: Prompts, recorder: Recorder
) -> tuple[list[TaskResult], Any]:
    """Consume ``FEW`` results, then leave the way ``mode`` says; the run handle for
    ``async with`` (the other ways drop it, as a plain ``async for`` does)."""
    results: list[TaskResult] = []

    def take(result: TaskResult) -> bool:
        results.append(result)
        return len(results) == FEW

    if mode == "break":
        async for result in client.generate_many(prompts, on_event=recorder):
            if take(result):
                break
    elif mode == "named break":
        # The caller keeps the handle (for the whole test): leaving the loop must still stop it.
        run = client.generate_many(prompts, on_event=recorder)
        recorder.kept = run
        async for result in run:
            if take(result):
                break
    elif mode == "exception":
        with pytest.raises(ConsumerGaveUp):
            async for result in client.generate_many(prompts, on_event=recorder):
                if take(result):
                    raise ConsumerGaveUp
    elif mode == "cancel":
        enough = anyio.Event()

        async def consume() -> None:
            async for result in client.generate_many(prompts, on_event=recorder):
                if take(result):
                    enough.set()

        async with anyio.create_task_group() as group:
            group.start_soon(consume)
            await enough.wait()
            # The consumer is waiting for a fourth result that cannot come.
            group.cancel_scope.cancel()
    else:
        async with client.generate_many(prompts, on_event=recorder) as run:
            async for result in run:
                if take(result):
                    break
        return results, run
    return results, None


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("mode", MODES)
async def test_leaving_early_stops_creating_and_reports_live_tasks(
    mode: str, provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sora_async")
    before = {task for task in asyncio.all_tasks() if not task.done()}
    clock = ManualClock()
    prompts = Prompts(1000)
    config = MockConfig(task_seconds=10.0, jitter=0.9, cap=CAP, clock=clock)

    async with MockServer(config) as mock:
        recorder = Recorder(mock, clock)
        client = SoraClient(
            provider,
            KEY,
            base_url=mock.url_for(provider),
            poll_interval=POLL,
            expected_duration=0.1,
            env={},  # the caller's SORA_* variables must not change the test
        )
        async with client:
            with anyio.fail_after(HANG_GUARD):
                results, run = await leave_early(mode, client, prompts, recorder)
            assert len(results) == FEW
            if run is None:
                # Nothing awaited the stop: wait until the run has wound down and reported.
                await wait_until(lambda: bool(stop_warnings(caplog)))
            # async with: aclose() returned only once all of this was true.
            [warning] = stop_warnings(caplog)

            # Every task the server created was recorded by the client ...
            on_server = {task.task_id: task for task in mock.tasks(KEY)}
            assert set(on_server) == recorder.created
            assert len(on_server) == mock.counters.creates
            # ... and the ones not seen finished are exactly those still alive there.
            seen_finished = {result.task_id for result in results}
            unfinished = recorder.created - seen_finished
            alive = {task_id for task_id, task in on_server.items() if not task.state.is_terminal}
            assert unfinished == alive
            assert CAP - FEW <= len(unfinished) <= CAP
            # Their slots are still held: they count against the account until they end.
            stats = client.governor.statistics()
            assert stats.held == stats.live == len(unfinished) and stats.waiting == 0

            # They are reported: by the client, in the log, and by the run where it is kept.
            assert set(client.unfinished_tasks) == unfinished
            for task_id, request in client.unfinished_tasks.items():
                assert request is not None and request.prompt == on_server[task_id].prompt
            assert f"with {len(unfinished)} task(s) still alive" in warning
            assert all(task_id in warning for task_id in unfinished)
            if run is not None:
                assert set(run.unfinished) == unfinished
                for task_id, job in run.unfinished.items():
                    assert job.request is not None
                    assert job.request.prompt == on_server[task_id].prompt

            # The run is over: no new task is created for the rest of the input. The client
            # follows the live tasks to their end (and only that), then frees their slots.
            await anyio.sleep(QUIET)
            creates, pulled = mock.counters.creates, prompts.pulled
            clock.advance(100.0)
            assert mock.live_tasks(KEY) == 0
            await wait_until(lambda: not client.unfinished_tasks)
            assert client.governor.statistics().held == 0
            polls = mock.counters.polls
            await anyio.sleep(QUIET)
            assert mock.counters.creates == creates
            assert mock.counters.polls == polls
            assert prompts.pulled == pulled
            assert pulled <= creates + 2 * CAP + 1

    # Nothing the client started outlives it.
    left = {task for task in asyncio.all_tasks() if not task.done()} - before
    assert left == set(), left


async def test_a_created_hook_is_not_cut_short_by_cancelling_the_consumer() -> None:
    """The CREATED hook is where a caller keeps a task id before anything else happens to the
    task (a batch's journal write): cancelling generate_many's consumer while the hook awaits
    lets the hook finish (it runs in the launch's task), not raise CancelledError into it.
    (generate() runs the hook in the caller's own task, where a cancellation does cut it: the
    id is then only in the client's closing warning.)"""
    async with MockServer(MockConfig(task_seconds=60, jitter=0.0)) as mock:
        entered, release = asyncio.Event(), asyncio.Event()
        kept: list[str] = []

        async def hook(event: TaskEvent) -> None:
            if event.kind is EventKind.CREATED:
                assert event.task_id is not None
                entered.set()
                await release.wait()  # a slow disk: cut here, the id would be lost
                kept.append(event.task_id)

        async with SoraClient(
            "freesora", KEY, base_url=mock.freesora_url, poll_interval=POLL
        ) as client:

            async def call() -> None:
                async for _ in client.generate_many(["a prompt"], on_event=hook):
                    pass

            with anyio.fail_after(HANG_GUARD):
                task = asyncio.create_task(call())
                await entered.wait()
                task.cancel()
                await asyncio.sleep(0.05)  # the cancellation has reached whatever it reaches
                release.set()
                with pytest.raises(asyncio.CancelledError):
                    await task
        [created] = [t.task_id for t in mock.tasks(KEY)]
        assert kept == [created]


async def test_generate_cancelled_in_its_created_hook_still_lists_the_task() -> None:
    """generate() runs its hooks in the caller's task: a cancellation there cuts a CREATED hook
    that is still awaiting. The task is not lost for all that: it is the client's to follow,
    listed in unfinished_tasks while it lives."""
    async with MockServer(MockConfig(task_seconds=60, jitter=0.0)) as mock:
        entered = asyncio.Event()

        async def hook(event: TaskEvent) -> None:
            if event.kind is EventKind.CREATED:
                entered.set()
                await asyncio.Event().wait()

        async with SoraClient(
            "freesora", KEY, base_url=mock.freesora_url, poll_interval=POLL
        ) as client:
            with anyio.fail_after(HANG_GUARD):
                task = asyncio.create_task(client.generate("a prompt", on_event=hook))
                await entered.wait()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            [created] = [t.task_id for t in mock.tasks(KEY)]
            assert created in client.unfinished_tasks
