"""The run's hand-off of jobs and results: unbuffered, and no item lost to a cancellation."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from sora_async.handoff import Handoff

pytestmark = pytest.mark.anyio


async def test_an_item_goes_only_to_a_waiting_receiver() -> None:
    handoff: Handoff[str] = Handoff()
    with pytest.raises(anyio.WouldBlock):
        handoff.send_nowait("job")  # nobody waits: nothing is buffered
    with pytest.raises(anyio.WouldBlock):
        handoff.receive_nowait()
    async with anyio.create_task_group() as group:
        got: list[str] = []

        async def receive() -> None:
            got.append(await handoff.receive())

        group.start_soon(receive)
        await anyio.wait_all_tasks_blocked()
        handoff.send_nowait("job")
    assert got == ["job"]


async def test_a_waiting_sender_is_taken_from_and_released() -> None:
    handoff: Handoff[int] = Handoff()
    async with anyio.create_task_group() as group:
        sent: list[int] = []

        async def send(item: int) -> None:
            await handoff.send(item)
            sent.append(item)

        group.start_soon(send, 1)
        await anyio.wait_all_tasks_blocked()
        group.start_soon(send, 2)
        await anyio.wait_all_tasks_blocked()
        assert handoff.receive_nowait() == 1  # first come, first taken
        assert await handoff.receive() == 2
    assert sorted(sent) == [1, 2]


async def test_a_cancelled_sender_keeps_its_item() -> None:
    handoff: Handoff[str] = Handoff()
    async with anyio.create_task_group() as group:
        group.start_soon(handoff.send, "withdrawn")
        await anyio.wait_all_tasks_blocked()
        group.cancel_scope.cancel()
    with pytest.raises(anyio.WouldBlock):
        handoff.receive_nowait()


async def test_an_item_handed_to_a_receiver_cancelled_before_it_took_it_is_not_lost() -> None:
    handoff: Handoff[str] = Handoff()
    receiver = asyncio.get_running_loop().create_task(handoff.receive())
    await anyio.wait_all_tasks_blocked()
    handoff.send_nowait("result")  # handed over...
    receiver.cancel()  # ...and cancelled before the receiver could run
    with pytest.raises(asyncio.CancelledError):
        await receiver
    assert handoff.receive_nowait() == "result"  # the next receive gets it

    late = asyncio.get_running_loop().create_task(handoff.receive())
    await anyio.wait_all_tasks_blocked()
    handoff.send_nowait("another")
    late.cancel()
    with pytest.raises(asyncio.CancelledError):
        await late
    assert handoff.close_receiving() == ["another"]  # or whoever closes learns of it


async def test_closing_either_side() -> None:
    handoff: Handoff[str] = Handoff()
    async with anyio.create_task_group() as group:
        ended: list[type[BaseException]] = []

        async def receive() -> None:
            try:
                await handoff.receive()
            except anyio.EndOfStream:
                ended.append(anyio.EndOfStream)

        group.start_soon(receive)
        await anyio.wait_all_tasks_blocked()
        handoff.close_sending()
    assert ended == [anyio.EndOfStream]
    with pytest.raises(anyio.EndOfStream):
        handoff.receive_nowait()
    with pytest.raises(anyio.ClosedResourceError):
        handoff.send_nowait("late")

    other: Handoff[str] = Handoff()
    async with anyio.create_task_group() as group:
        broken: list[type[BaseException]] = []

        async def send() -> None:
            try:
                await other.send("never taken")
            except anyio.BrokenResourceError:
                broken.append(anyio.BrokenResourceError)

        group.start_soon(send)
        await anyio.wait_all_tasks_blocked()
        assert other.close_receiving() == []
    assert broken == [anyio.BrokenResourceError]
    with pytest.raises(anyio.BrokenResourceError):
        other.send_nowait("late")
    with pytest.raises(anyio.ClosedResourceError):
        other.receive_nowait()


async def test_a_wait_after_a_refused_nowait_is_the_same_wait() -> None:
    # refused=True (what a run passes after WouldBlock) skips only the second nowait.
    handoff: Handoff[str] = Handoff()
    got: list[str] = []
    sent: list[str] = []
    async with anyio.create_task_group() as group:

        async def receive() -> None:
            got.append(await handoff.receive(refused=True))

        async def send(item: str) -> None:
            await handoff.send(item, refused=True)
            sent.append(item)

        group.start_soon(receive)
        await anyio.wait_all_tasks_blocked()
        handoff.send_nowait("job")
        group.start_soon(send, "result")
        await anyio.wait_all_tasks_blocked()
        assert sent == []  # it waits for a receiver
        assert handoff.receive_nowait() == "result"
    assert got == ["job"] and sent == ["result"]


async def test_a_refused_wait_on_a_closed_side_raises_what_nowait_raises() -> None:
    handoff: Handoff[str] = Handoff()
    handoff.close_sending()
    with pytest.raises(anyio.ClosedResourceError):
        await handoff.send("late", refused=True)
    with pytest.raises(anyio.EndOfStream):
        await handoff.receive(refused=True)
