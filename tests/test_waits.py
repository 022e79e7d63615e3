"""Testing waits (sora_async.waits.set_testing): the tries of a real run, without the waiting.

Through the public client against the mock: a status call that always meets a 500 is tried as
often as its policy's deadline allows in a real run, whether the waits are real or cut short.
"""

from __future__ import annotations

import anyio
import pytest
from helpers import HANG_GUARD, client_for, created_elsewhere, running_mock

from sora_async import LocalGovernor, RetryPolicy, ServerError, waits
from sora_async.mock import Fault

pytestmark = pytest.mark.anyio

#: Waits of 1 s; the deadline admits tries at 0, 1, 2 and 3 s (a fifth would start at 4 s).
POLICY = RetryPolicy(attempts=10, initial=1.0, maximum=1.0, multiplier=1.0, jitter=0.0, timeout=3.5)


@pytest.mark.usefixtures("no_backoff_waits")
async def test_the_deadline_ends_the_tries_where_a_real_run_would() -> None:
    async with running_mock() as mock:
        task_id = await created_elsewhere(mock, "freesora")
        async with client_for(mock, "freesora", retry=POLICY) as client:
            mock.inject("status", Fault.SERVER_ERROR, times=100)
            before = mock.counters.requests["status"]
            with anyio.fail_after(HANG_GUARD), pytest.raises(ServerError):
                await client.status(task_id)
            assert mock.counters.requests["status"] - before == 4


async def test_the_skipped_time_is_the_waiting_tasks_own() -> None:
    waits.set_testing(True)
    try:
        assert waits.is_testing()
        seen: dict[str, float] = {}

        async def waiter() -> None:
            start = waits.clock()
            await waits.sleep(100.0)
            seen["waiter"] = waits.clock() - start

        async def bystander() -> None:
            start = waits.clock()
            await anyio.sleep(0.01)
            seen["bystander"] = waits.clock() - start

        async with anyio.create_task_group() as group:
            group.start_soon(waiter)
            group.start_soon(bystander)
        assert seen["waiter"] >= 100.0
        assert seen["bystander"] < 100.0
    finally:
        waits.set_testing(False)
    assert not waits.is_testing()


def test_a_bad_max_wait_is_refused() -> None:
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="max_wait"):
            waits.set_testing(True, max_wait=bad)
    assert not waits.is_testing()


@pytest.mark.usefixtures("no_backoff_waits")
async def test_the_governors_account_pause_is_a_testing_wait_over_for_every_task() -> None:
    governor = LocalGovernor(2)
    live = await governor.acquire()
    governor.on_create_succeeded(live, "task-1")
    refused = await governor.acquire()

    async def retry_after_the_cap_429() -> None:
        # The account's cap, Retry-After one minute: nobody creates before it is over.
        await governor.on_rate_limited(refused, 60.0, message="too many concurrent tasks")

    with anyio.fail_after(HANG_GUARD):  # the real minute would time the test out
        async with anyio.create_task_group() as group:
            group.start_soon(retry_after_the_cap_429)
    # The task that waited the pause out was another one: the pause is over for this one too
    # (one deadline for every acquirer, unlike the per-task clock of a retried call).
    assert governor.statistics().paused_for == 0
    assert governor.statistics().held == 2
