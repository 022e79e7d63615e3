"""generate_many when its input fails: the consumer gets the input's own error."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from test_fanout import HANG_GUARD, mock_and_client, wait_until

from sora_async import VideoRequest
from sora_async.mock import MockConfig

pytestmark = pytest.mark.anyio


class InputBroke(Exception):
    pass


def failing_input() -> Iterator[VideoRequest]:
    for index in range(3):
        yield VideoRequest(f"before the failure {index}")
    raise InputBroke("the input broke")


async def failing_async_input() -> AsyncIterator[VideoRequest]:
    for request in failing_input():
        yield request
        await anyio.lowlevel.checkpoint()


@pytest.mark.parametrize("source", ["generator", "async generator"])
async def test_an_input_that_raises_ends_the_run_with_its_own_error(source: str) -> None:
    requests: Any = failing_input() if source == "generator" else failing_async_input()
    config = MockConfig(task_seconds=0.2, jitter=0.0)
    async with mock_and_client("freesora", config, expected_duration=0.2) as (_, client):
        with anyio.fail_after(HANG_GUARD):
            with pytest.raises(InputBroke, match="the input broke"):
                async for _ in client.generate_many(requests):
                    pass
            # The tasks created before the failure are still followed; their slots come back.
            await wait_until(lambda: client.governor.statistics().held == 0)
