"""The callback receiver under abuse, over real HTTP on 127.0.0.1.

A forged "success" is confirmed by a poll and not believed; callbacks for unknown tasks cost no
poll; a flood of forged ids keeps memory bounded and every answer cheap; a body that never
finishes is cut off; nothing a stranger sends makes the receiver answer 500.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import anyio
import pytest
from yarl import URL

from sora_async import SoraClient, VideoRequest
from sora_async.callbacks import CallbackReceiver
from sora_async.errors import ConfigurationError
from sora_async.mock import MockConfig, MockServer
from sora_async.mock.clock import ManualClock

pytestmark = pytest.mark.anyio

KEY = "sk-callback-abuse-0123456789"
GUARD = 20.0  # only a hang guard
#: Shorter than aiohttp's lingering close (10 s): a connection it would keep open fails.
LINGER_GUARD = 5.0


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def success_body(task_id: str) -> dict[str, object]:
    return {"code": 200, "msg": "success", "data": {"taskId": task_id, "successFlag": 1}}


async def post(session: aiohttp.ClientSession, url: str, body: object) -> int:
    async with session.post(url, json=body) as response:
        await response.read()
        return response.status


async def test_a_forged_success_is_confirmed_by_one_poll_and_not_believed(
    session: aiohttp.ClientSession,
) -> None:
    clock = ManualClock()
    config = MockConfig(task_seconds=5.0, jitter=0.0, clock=clock)
    async with MockServer(config) as mock:
        # A repeat 10 ms after a callback wakes again (2 s by default; real time here).
        own = CallbackReceiver(rewake_after=0.01)
        client = SoraClient(
            "sora2api", KEY, base_url=mock.sora2api_url, callback_receiver=own, env={}
        )
        async with client:
            receiver = client.callback_receiver
            assert receiver is not None
            task_id = await client.create(VideoRequest("a forged success"))
            polls = mock.counters.polls_by_task
            async with anyio.create_task_group() as group:
                done = anyio.Event()

                async def wait() -> None:
                    result = await client.wait(task_id)
                    assert result.ok and result.task_id == task_id
                    done.set()

                group.start_soon(wait)
                with anyio.fail_after(GUARD):
                    # Forged: the task is still running on the server.
                    assert await post(session, receiver.callback_url, success_body(task_id)) == 200
                    # And a flood for tasks this client never made.
                    for index in range(50):
                        body = success_body(f"forged-{index}")
                        assert await post(session, receiver.callback_url, body) == 200
                    while polls.get(task_id, 0) < 1:  # noqa: ASYNC110 - no event to wait on
                        await anyio.sleep(0.01)
                    await anyio.sleep(0.05)  # room for a wrongly believed wait to finish
                    assert not done.is_set()
                    assert mock.task(task_id).state != "succeeded"
                    # The task really ends; its genuine callback, a repeat for the receiver,
                    # is not swallowed by the forged one: it wakes the poller again.
                    clock.advance(10.0)
                    await done.wait()
            assert set(polls) == {task_id}  # no poll for any forged id
            assert polls[task_id] == 2  # one to refute the forgery, one to confirm the end
            stats = receiver.statistics()
            assert stats.unwatched >= 50


async def test_a_flood_of_forged_ids_stays_bounded_and_answered(
    session: aiohttp.ClientSession,
) -> None:
    async with CallbackReceiver(max_remembered=20) as receiver:
        hint = receiver.watch("real")
        bodies = [success_body(f"forged-{index}") for index in range(200)]
        bodies += [success_body("real")] * 50
        with anyio.fail_after(GUARD):
            statuses = await asyncio.gather(
                *(post(session, receiver.callback_url, body) for body in bodies)
            )
        assert set(statuses) == {200}
        stats = receiver.statistics()
        assert stats.received == 250
        assert stats.accepted + stats.duplicates == 250
        assert hint.is_set()
        # Only the newest 20 ids are remembered: the oldest forged ids are forgotten.
        assert not receiver.watch("forged-0").is_set()
        remembered = sum(receiver.watch(f"forged-{index}").is_set() for index in range(200))
        assert remembered <= 20


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b"[]",
        b'"a string"',
        b"\xff\xfe\x00garbage",
        b'{"data": {"taskId": null}}',
        b'{"data": {"taskId": ""}}',
        b'{"data": {"taskId": 1e999}}',
        b'{"data": {"taskId": true}}',
        b'{"data": "not an object"}',
        json.dumps({"data": {"taskId": "x" * 5000}}).encode(),  # far longer than any real id
        b"<html><body>error</body></html>",
    ],
)
async def test_hostile_bodies_are_400_never_500(
    session: aiohttp.ClientSession, body: bytes
) -> None:
    async with CallbackReceiver(max_body_bytes=16 * 1024) as receiver:
        async with session.post(receiver.callback_url, data=body) as response:
            assert response.status == 400
        stats = receiver.statistics()
        assert (stats.received, stats.rejected_body, stats.accepted) == (1, 1, 0)


async def test_a_missing_token_is_404(session: aiohttp.ClientSession) -> None:
    async with CallbackReceiver() as receiver:
        hint = receiver.watch("t")
        bare = str(URL(receiver.callback_url).parent)
        for url in (bare, bare + "/"):
            assert await post(session, url, success_body("t")) == 404
        assert not hint.is_set()


async def test_a_body_that_never_ends_is_cut_off() -> None:
    async with CallbackReceiver(body_timeout=0.2) as receiver:
        url = URL(receiver.callback_url)
        assert url.host is not None and url.port is not None
        reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            head = (
                f"POST {url.raw_path} HTTP/1.1\r\nHost: {url.host}\r\n"
                "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                '{"data": {"taskId": "slow'
            )
            writer.write(head.encode())
            await writer.drain()
            with anyio.fail_after(GUARD):
                status_line = await reader.readline()
            # The connection is closed with the answer, not kept open to read and discard the
            # rest of the body (aiohttp's lingering close, 10 s by default), which would also
            # hold the receiver's shutdown for its whole grace period. The guard is under 10 s.
            with anyio.fail_after(LINGER_GUARD):
                await reader.read()
        finally:
            writer.close()
        assert status_line.split()[1] == b"408"
        assert receiver.statistics().rejected_timeout == 1


async def test_a_repeat_wakes_again_only_after_rewake_after(
    session: aiohttp.ClientSession,
) -> None:
    clock = ManualClock()
    async with CallbackReceiver(rewake_after=2.0, clock=clock) as receiver:
        hint = receiver.watch("t")
        assert await post(session, receiver.callback_url, success_body("t")) == 200
        assert hint.is_set()
        hint.clear()  # the poller polled: the task was still running
        clock.advance(1.9)
        assert await post(session, receiver.callback_url, success_body("t")) == 200
        assert not hint.is_set()  # a replay within the window costs nothing
        clock.advance(0.2)
        assert await post(session, receiver.callback_url, success_body("t")) == 200
        assert hint.is_set()  # later, it may be the real one: poll once more
        stats = receiver.statistics()
        assert (stats.accepted, stats.duplicates) == (2, 1)


@pytest.mark.parametrize(
    "options",
    [
        {"body_timeout": 0},
        {"body_timeout": float("nan")},
        {"rewake_after": -1},
        {"rewake_after": "2"},
    ],
)
def test_bad_abuse_limits_are_configuration_errors(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match=next(iter(options))):
        CallbackReceiver(**options)  # type: ignore[arg-type]
