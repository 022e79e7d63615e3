"""An undocumented freesora status, through real HTTP: asked again a few times, then given up."""

from __future__ import annotations

import pytest
from helpers import client_for, running_mock

from sora_async import RetryPolicy, UnknownStatusError, VideoRequest
from sora_async.polling import UNKNOWN_STATUS_LIMIT

pytestmark = pytest.mark.anyio

# One try per poll: the poller's own count of unknown answers is what is tested here.
ONE_TRY = RetryPolicy(attempts=1)


async def test_an_unknown_status_ends_the_wait_naming_it_after_a_few_polls() -> None:
    async with (
        running_mock(task_seconds=60.0) as mock,
        client_for(mock, "freesora", poll_interval=0.01, retry=ONE_TRY) as client,
    ):
        task_id = await client.create(VideoRequest("a kite"))
        mock.override_status(task_id, "canceled")
        with pytest.raises(UnknownStatusError) as info:
            await client.wait(task_id)
        assert info.value.status == "canceled"
        assert info.value.task_id == task_id
        assert "'canceled'" in str(info.value)
        # Asked again, not forever: the task runs a minute, the wait gave up after three polls,
        # and its slot is free (no status we can read will ever free it).
        assert mock.task(task_id).polls == UNKNOWN_STATUS_LIMIT == 3
        assert client.governor.statistics().held == 0


async def test_a_status_that_becomes_known_again_is_followed_to_the_end() -> None:
    async with (
        running_mock(task_seconds=0.3) as mock,
        client_for(mock, "freesora", poll_interval=0.01, retry=ONE_TRY) as client,
    ):
        task_id = await client.create(VideoRequest("a fox"))
        mock.override_status(task_id, "rendering-v2")
        with pytest.raises(UnknownStatusError, match="rendering-v2"):
            await client.status(task_id)  # a single poll says what it saw
        mock.override_status(task_id, None)
        result = await client.wait(task_id)
        assert result.ok


async def test_the_transport_does_not_retry_an_unknown_status() -> None:
    # With the default retry policy: a readable answer naming an unknown state is not a
    # glitch, so each poll is one request and the task is given up after three of them.
    async with (
        running_mock(task_seconds=60.0) as mock,
        client_for(mock, "freesora", poll_interval=0.01) as client,
    ):
        task_id = await client.create(VideoRequest("a gull"))
        mock.override_status(task_id, "timeout")
        with pytest.raises(UnknownStatusError):
            await client.wait(task_id)
        assert mock.counters.requests["status"] == UNKNOWN_STATUS_LIMIT
