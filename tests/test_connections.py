"""Connections: creates, polls and downloads share one kept-alive pool.

The mock counts the TCP connections that carried requests (and the endpoint of each one's
first request), so the witness is the server's side of the socket, not the client's internals.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from helpers import PROVIDERS, client_for, running_mock

from sora_async import VideoRequest

pytestmark = pytest.mark.anyio

TASKS = 60
POOL = 8


async def test_the_mock_counts_connections_not_requests() -> None:
    async with running_mock() as mock:
        url = mock.url_for("freesora") + "/get-user-credits"
        headers = {"Authorization": "Bearer sk-connections-0123456789"}
        async with aiohttp.ClientSession(headers=headers) as kept:
            for _ in range(5):
                async with kept.post(url) as answer:
                    await answer.read()
        assert (mock.counters.requests["credits"], mock.counters.connections) == (5, 1)
        closing = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(headers=headers, connector=closing) as fresh:
            for _ in range(5):
                async with fresh.post(url) as answer:
                    await answer.read()
        assert mock.counters.connections == 6
        assert mock.counters.connections_by_endpoint == {"credits": 6}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_creates_polls_and_downloads_share_one_kept_alive_pool(
    provider: str, tmp_path: Path
) -> None:
    async with running_mock(task_seconds=0.0, file_size=1024) as mock:
        prompts = (VideoRequest(f"connections {i}") for i in range(TASKS))
        async with client_for(mock, provider, poll_interval=0.01, max_connections=POOL) as client:
            results = [r async for r in client.generate_many(prompts, download_to=tmp_path)]
        counters = mock.counters
    assert all(r.ok and r.download_error is None for r in results)
    assert counters.requests["download"] == TASKS and counters.requests["status"] >= TASKS
    assert counters.requests["create"] == TASKS
    # Far fewer connections than requests (3 x TASKS or more): creates ride connections
    # answered a moment before (tests/test_keepalive_creates.py shows when they may not).
    # Room for one more pool's worth: a create opens a fresh connection when the freshest
    # pooled one was answered over a second before, which a loaded machine can make happen.
    assert counters.connections <= 2 * POOL
