"""A drain (first Ctrl-C, the batch runner's stop-creating) cuts short a create that waits.

A create refused with 429 waits out the pause before it is sent again; one queued for a slot
waits for a task to end. Either may last minutes. When the run stops creating meanwhile, the
wait ends at once and nothing is sent: the job is dropped like any job not yet sent.

The pauses here last an hour and the tasks never end (the mock's clock does not move), so a
wait that is not cut short shows as the hang guard firing.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from sora_async import SoraClient, TaskResult, VideoRequest
from sora_async.events import EventKind, TaskEvent
from sora_async.mock import Fault, ManualClock, MockConfig, MockServer

pytestmark = pytest.mark.anyio

KEY = "sk-create-drain-0123456789"
#: Only reached when something hangs; far below every pause the tests provoke.
HANG_GUARD = 20.0


async def wait_until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(HANG_GUARD):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.01)


@pytest.mark.parametrize("provider", ["freesora", "sora2api"])
@pytest.mark.parametrize(
    "retry_after",
    [
        # Under the rate-limit ceiling: this create alone waits.
        29.0,
        # Past it: the account cap, every create pauses.
        3600.0,
    ],
)
async def test_a_drain_cuts_short_a_create_waiting_out_a_429(
    provider: str, retry_after: float
) -> None:
    events: list[TaskEvent] = []
    async with MockServer(MockConfig(clock=ManualClock())) as mock:
        mock.inject("create", Fault.RATE_LIMIT, retry_after=retry_after)
        client = SoraClient(provider, KEY, base_url=mock.url_for(provider), env={})
        async with client:
            results: list[TaskResult] = []
            run = client.generate_many([VideoRequest("refused once")], on_event=events.append)
            with anyio.fail_after(HANG_GUARD):
                async with run:

                    async def consume() -> None:
                        results.extend([result async for result in run])

                    async with anyio.create_task_group() as group:
                        group.start_soon(consume)
                        await wait_until(
                            lambda: any(e.kind is EventKind.RATE_LIMITED for e in events)
                        )
                        run.drain()
            # Nothing was sent again, nothing was created, and the slot went back.
            assert results == []
            assert mock.counters.requests["create"] == 1
            assert mock.counters.creates == 0
            stats = client.governor.statistics()
            assert (stats.held, stats.live, stats.waiting) == (0, 0, 0)
            assert [e.kind for e in events] == [EventKind.CREATING, EventKind.RATE_LIMITED]


async def test_a_drain_drops_the_jobs_queued_for_a_slot_without_waiting_for_one() -> None:
    # One slot, held by a task that never ends: the second job queues for it.
    async with MockServer(MockConfig(clock=ManualClock())) as mock:
        client = SoraClient(
            "freesora", KEY, base_url=mock.url_for("freesora"), max_concurrent_tasks=1, env={}
        )
        async with client:
            async with client.generate_many([VideoRequest("first"), VideoRequest("queued")]) as run:
                await wait_until(lambda: client.governor.statistics().waiting == 1)
                run.drain()
                # While the first task still runs, the queued job leaves the queue unsent.
                await wait_until(lambda: client.governor.statistics().waiting == 0)
                assert client.governor.statistics().held == 1
            assert mock.counters.requests["create"] == 1
