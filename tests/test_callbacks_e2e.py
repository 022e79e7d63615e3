"""sora2api completion callbacks end to end: mock -> CallbackReceiver -> poller.

The same batch runs on a fresh mock each time: without callbacks (polling only), with the
client's own receiver (the callback wakes the poller, which confirms with one poll), and with
callbacks lost on the way (the mock drops them: the slow fallback polling still ends every
task). All traffic is HTTP over 127.0.0.1 in both directions.

While a callback is expected, sora2api tasks are polled only every ``callback_fallback_interval``
(60 s at the default poll interval, 1.2 s at ``poll_interval=0.2``). At the default interval a
batch of one-second tasks can therefore only end in time through the callbacks.
"""

from __future__ import annotations

import anyio
import pytest

from sora_async import SoraClient, TaskResult, VideoRequest
from sora_async.callbacks import CallbackStatistics
from sora_async.mock import MockConfig, MockCounters, MockServer

pytestmark = pytest.mark.anyio

KEY = "sk-callbacks-e2e-0123456789"
COUNT = 10
#: Only reached when something hangs; never a measure of speed.
HANG_GUARD = 30.0


def requests() -> list[VideoRequest]:
    return [VideoRequest(f"callback {index}") for index in range(COUNT)]


async def run_batch(
    *, callbacks: bool, drop: bool = False, poll_interval: float | None = 0.2
) -> tuple[MockCounters, list[TaskResult], CallbackStatistics | None]:
    """One batch of one-second tasks on a fresh mock: the mock's counters, the results and the
    receiver's statistics (None without a receiver)."""
    # poll_interval 0.2 scales sora2api's gaps down to: first poll 0.2 s after the create,
    # then every 0.2 s growing by half per unchanged answer up to 15% of the task's age;
    # 1.2 s while a callback is expected.
    config = MockConfig(task_seconds=1.0, jitter=0.2, drop_callbacks=drop)
    async with MockServer(config) as mock:
        client = SoraClient(
            "sora2api",
            KEY,
            base_url=mock.sora2api_url,
            poll_interval=poll_interval,
            expected_duration=1.0,
            callback_receiver=callbacks,
            env={},  # the caller's SORA_* variables must not change the test
        )
        async with client:
            with anyio.fail_after(HANG_GUARD):
                results = [result async for result in client.generate_many(requests())]
            receiver = client.callback_receiver
            assert (receiver is not None) == callbacks
            if callbacks:
                # A poll may see a task finished before its callback lands: let every callback
                # be delivered (or dropped) before reading the receiver's counts.
                counters = mock.counters
                with anyio.fail_after(HANG_GUARD):
                    while (  # noqa: ASYNC110 - the mock's counters have no event to wait on
                        counters.callbacks_sent
                        + counters.callbacks_failed
                        + counters.callbacks_dropped
                        < COUNT
                    ):
                        await anyio.sleep(0.01)
            statistics = receiver.statistics() if receiver is not None else None
            callback_url = receiver.callback_url if receiver is not None else None
            for result in results:
                assert result.ok, result
                assert result.task_id is not None
                record = mock.task(result.task_id)
                assert record.state == "succeeded"
                assert result.request is not None and record.prompt == result.request.prompt
                assert result.video_urls == [f"{mock.base_url}/files/{result.task_id}.mp4"]
                # The client asked for the callback on its own receiver.
                assert record.callback_url == callback_url
            assert sorted(result.key for result in results) == list(range(COUNT))
            assert mock.counters.creates == COUNT
        return mock.counters.snapshot(), results, statistics


async def test_each_callback_wakes_its_poller_for_one_confirming_poll() -> None:
    # Default poll interval: the fallback poll would come after a minute, so every task ends
    # through its callback (or this test hangs until its guard).
    counters, results, statistics = await run_batch(callbacks=True, poll_interval=None)
    assert len(results) == COUNT
    assert counters.callbacks_sent == COUNT
    assert statistics is not None
    assert statistics.accepted == COUNT
    assert statistics.duplicates == 0
    # The callback body is not trusted: one poll per task confirmed it, and only one.
    assert sorted(counters.polls_by_task.values()) == [1] * COUNT


async def test_callbacks_end_tasks_with_fewer_polls_than_polling_alone() -> None:
    polled, _, no_receiver = await run_batch(callbacks=False)
    assert no_receiver is None
    assert polled.callbacks_sent == 0

    called, _, statistics = await run_batch(callbacks=True)
    print(
        f"\n[callbacks] polls for {COUNT} tasks: {polled.polls} polling alone, "
        f"{called.polls} with callbacks"
    )
    # Every task's callback reached the receiver, once.
    assert called.callbacks_sent == COUNT
    assert called.callbacks_failed == 0
    assert statistics is not None
    assert statistics.accepted == COUNT
    assert statistics.rejected_token == 0
    # The callback, not the cadence, ended the waits: far fewer polls for the same batch.
    assert called.polls < polled.polls
    assert all(called.polls_by_task[task] >= 1 for task in called.polls_by_task)
    assert len(called.polls_by_task) == COUNT


async def test_lost_callbacks_fall_back_to_slow_polling() -> None:
    counters, results, statistics = await run_batch(callbacks=True, drop=True)
    print(f"\n[callbacks lost] polls for {COUNT} tasks: {counters.polls}")
    assert counters.callbacks_dropped == COUNT
    assert counters.callbacks_sent == 0
    assert statistics is not None
    assert statistics.received == 0
    # Every task still ended, seen by a poll: the fallback cadence kept polling.
    assert len(results) == COUNT
    assert len(counters.polls_by_task) == COUNT
    assert all(polls >= 1 for polls in counters.polls_by_task.values())
