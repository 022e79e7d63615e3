"""The Redis governor's scripts and wiring against a real redis-server (issue 11).

Several RedisGovernor instances in one process stand for several workers: they share nothing
but the Redis account, exactly as processes would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import HANG_GUARD, KEY, client_for, closed_port_url, running_mock, total_requests
from redis.asyncio import Redis
from redis_support import RedisServer

from sora_async import VideoRequest
from sora_async.cli import main
from sora_async.errors import ConfigurationError
from sora_async.governor import Slot
from sora_async.governor_redis import RedisGovernor, account_keys, redact_url

pytestmark = pytest.mark.anyio

TTL = 0.6
HEARTBEAT = 0.15


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


def governor(server: RedisServer, total: int = 2, **options: Any) -> RedisGovernor:
    settings: dict[str, Any] = {
        "lease_ttl": TTL,
        "heartbeat": HEARTBEAT,
        "wait_fallback": 0.1,
        "min_pause": 0.05,
        **options,
    }
    return RedisGovernor(server.url, "acct", total, **settings)


async def wait_until(condition: Any) -> None:
    with anyio.fail_after(HANG_GUARD):
        while not await condition():  # noqa: ASYNC110 - Redis announces nothing to a test
            await anyio.sleep(0.01)


async def held(redis: Redis) -> int:
    return int(await redis.zcard(account_keys("acct")[0][0]))


async def queued(redis: Redis) -> int:
    return int(await redis.zcard(account_keys("acct")[0][2]))


async def cfg(redis: Redis) -> dict[str, int]:
    raw = await redis.hgetall(account_keys("acct")[0][4])
    return {key.decode(): int(float(value)) for key, value in raw.items()}


async def test_the_cap_is_the_accounts_and_waiters_are_served_in_order(
    redis_server: RedisServer, redis: Redis
) -> None:
    order: list[str] = []
    got: dict[str, Slot] = {}

    async def take(name: str, gov: RedisGovernor) -> None:
        got[name] = await gov.acquire()
        order.append(name)

    async with (
        governor(redis_server) as one,
        governor(redis_server) as two,
        governor(redis_server) as three,
    ):
        first, second = await one.acquire(), await one.acquire()
        assert await held(redis) == 2
        async with anyio.create_task_group() as group:
            group.start_soon(take, "two", two)
            await wait_until(lambda: _equals(queued(redis), 1))
            group.start_soon(take, "three", three)
            await wait_until(lambda: _equals(queued(redis), 2))
            one.release(first)
            await wait_until(lambda: _truthy(order))
            assert order == ["two"]
            one.release(second)
        assert order == ["two", "three"]
        assert await held(redis) == 2
        two.release(got["two"])
        three.release(got["three"])
        await wait_until(lambda: _equals(held(redis), 0))


async def test_a_crashed_holders_leases_expire_and_a_live_ones_are_renewed(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with governor(redis_server, total=2) as alive:
        crashed = governor(redis_server, total=2)
        await crashed.open()
        await crashed.acquire()
        kept = await alive.acquire()
        # A crash: no more renewals, nothing handed back.
        await crashed.aclose()
        assert await held(redis) == 2
        with anyio.fail_after(HANG_GUARD):
            slot = await alive.acquire()  # only possible once the crashed lease expired
        # Longer than a TTL has passed: the live holder's first lease is still there.
        assert await held(redis) == 2
        alive.release(kept)
        alive.release(slot)
        await wait_until(lambda: _equals(held(redis), 0))


async def test_a_lease_lost_while_alive_counts_again_at_the_next_renewal(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with governor(redis_server, total=3) as gov:
        slot = await gov.acquire()
        # What a Redis restart without persistence (or a pause beyond the TTL) leaves.
        await redis.flushall()
        await wait_until(lambda: _equals(held(redis), 1))
        gov.release(slot)
        await wait_until(lambda: _equals(held(redis), 0))


async def test_resizing_applies_to_every_worker_of_the_account(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with governor(redis_server, total=2) as one, governor(redis_server, total=2) as two:
        a, b = await one.acquire(), await one.acquire()
        async with anyio.create_task_group() as group:
            group.start_soon(two.acquire)
            await wait_until(lambda: _equals(queued(redis), 1))
            one.total = 3  # the waiter of the *other* worker gets in
        assert await held(redis) == 3
        assert (await cfg(redis))["total"] == 3
        one.release(a)
        one.release(b)


async def test_a_429_pauses_and_shrinks_the_whole_account(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with (
        governor(redis_server, total=5) as one,
        governor(redis_server, total=5) as two,
    ):
        for _ in range(2):
            slot = await one.acquire()
            one.on_create_succeeded(slot, "task")
        await wait_until(lambda: _equals(_live(redis), 2))
        refused = await two.acquire()
        await two.on_rate_limited(refused, 0.05, message="too many concurrent tasks")
        # Two live tasks fit, plus one probe: the refused create got the probe back.
        state = await cfg(redis)
        assert state["effective"] == 3
        assert state["strikes"] == 1
        assert await held(redis) == 3
        async with anyio.create_task_group() as group:
            group.start_soon(one.acquire)
            await wait_until(lambda: _equals(queued(redis), 1))
            assert await held(redis) == 3
            # A success grows the account's cap back by one: the waiter gets in.
            two.on_create_succeeded(refused, "task")
        assert await held(redis) == 4
        assert (await cfg(redis))["strikes"] == 0


async def test_unreachable_redis_is_a_configuration_error_and_nothing_is_created(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = closed_port_url("/0").replace("http://", "redis://:s3cret-pw@")
    with pytest.raises(ConfigurationError) as caught:
        async with RedisGovernor(url, "acct", connect_timeout=1.0):
            pass
    assert "cannot use Redis at redis://127.0.0.1:" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)
    async with running_mock() as mock:
        client = client_for(mock, "freesora", redis_url=url)
        with pytest.raises(ConfigurationError, match="redis_url"):
            async with client:
                pass
        assert total_requests(mock) == 0
        code = await anyio.to_thread.run_sync(
            main,
            [
                "--api-key",
                KEY,
                "--base-url",
                mock.url_for("freesora"),
                "--redis-url",
                url,
                "status",
                "task_0123456789abcdef",
            ],
        )
        assert total_requests(mock) == 0
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "s3cret-pw" not in err


async def test_redis_url_builds_the_shared_governor_under_a_keyless_account(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with running_mock() as mock:
        async with client_for(mock, "freesora", redis_url=redis_server.url) as client:
            assert isinstance(client.governor, RedisGovernor)
            account = client.settings.account
            assert account.startswith("freesora-") and KEY not in account
            results = [
                result async for result in client.generate_many(VideoRequest(p) for p in "abc")
            ]
            assert [r.error for r in results if not r.ok] == []
        assert mock.counters.creates == 3
    names = [key.decode() for key in await redis.keys("*")]
    assert names and all(account in name for name in names)
    assert not any(KEY in name for name in names)
    leases = account_keys(account)[0][0]
    assert await redis.zcard(leases) == 0  # every slot handed back at the end


def test_redis_urls_lose_their_credentials_in_messages() -> None:
    assert redact_url("redis://user:pw@host:6380/1") == "redis://host:6380/1"
    assert redact_url("rediss://:pw@host/0") == "rediss://host/0"


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def _truthy(value: Any) -> bool:
    return bool(value)


async def _live(redis: Redis) -> int:
    return int(await redis.zcard(account_keys("acct")[0][1]))


async def test_a_client_closing_with_live_tasks_leaves_their_leases_to_expire(
    redis_server: RedisServer, redis: Redis
) -> None:
    # Those tasks still count for the account on the server: releasing their slots would let
    # another worker create one task too many (a 429) until they end.
    async with running_mock(task_seconds=30.0) as mock:
        async with (
            governor(redis_server) as shared,
            client_for(mock, "freesora", governor=shared) as client,
        ):
            await client.create(VideoRequest("still running at close"))
        assert await held(redis) == 1
        await wait_until(lambda: _no_leases(redis))  # ... until the lease TTL passes


async def _no_leases(redis: Redis) -> bool:
    # Expired leases are swept by the next script; count only unexpired ones.
    seconds, micros = await redis.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    return int(await redis.zcount(account_keys("acct")[0][0], now_ms, "+inf")) == 0
