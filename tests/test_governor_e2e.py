"""The governor against the mock over real HTTP: a rate limit is not the account cap."""

from __future__ import annotations

import pytest
from helpers import client_for, running_mock

from sora_async import LocalGovernor, SoraClient, TaskResult, VideoRequest
from sora_async.events import TaskEvent
from sora_async.mock import Fault

pytestmark = pytest.mark.anyio


async def run(client: SoraClient, prompts: list[str], effective: list[int]) -> list[TaskResult]:
    def watch(event: TaskEvent) -> None:
        # Every event: status polls go on while creates wait, so a shrink is seen.
        effective.append(client.governor.statistics().effective_total)

    requests = [VideoRequest(p) for p in prompts]
    return [r async for r in client.generate_many(requests, on_event=watch)]


async def test_a_burst_of_rate_limits_slows_those_creates_and_leaves_the_window() -> None:
    prompts = [f"a kite, take {i}" for i in range(6)]
    effective: list[int] = []
    async with running_mock() as mock, client_for(mock, "freesora") as client:
        # Short Retry-After, "too many requests": a rate limit, not a full account.
        mock.inject("create", Fault.RATE_LIMIT, times=4, retry_after=0.05)
        results = await run(client, prompts, effective)
        assert all(r.ok for r in results)
        assert mock.counters.rate_limited == 4
        assert mock.counters.cap_rejections == 0
        assert all(mock.counters.creates_by_prompt[p] == 1 for p in prompts)
        assert set(effective) == {20}  # never shrunk
        assert client.governor.statistics().held == 0


async def test_the_account_cap_shrinks_the_window_and_it_grows_back() -> None:
    prompts = [f"a fox, take {i}" for i in range(3)]
    effective: list[int] = []
    config = {"cap": 2, "cap_retry_after": 0.05}
    # The account-wide pause follows the mock's short Retry-After instead of the 1 s floor.
    governor = LocalGovernor(20, min_pause=0.05)
    async with (
        running_mock(**config) as mock,
        client_for(mock, "freesora", governor=governor) as client,
    ):
        results = await run(client, prompts, effective)
        assert all(r.ok for r in results)
        assert mock.counters.cap_rejections >= 1
        assert mock.counters.max_live_tasks <= 2
        assert min(effective) <= 3  # live + 1 at the refusal
        assert all(mock.counters.creates_by_prompt[p] == 1 for p in prompts)
        stats = client.governor.statistics()
        assert stats.held == 0 and stats.effective_total > min(effective)
