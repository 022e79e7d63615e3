"""The account slot pool: FIFO, cancellation, release from anywhere, resizing, 429 adaptation.

No wall clock: ordering is observed with ``wait_all_tasks_blocked``, and the 429 pause runs on
a manual clock whose sleeps end only when the test moves time forward.
"""

from __future__ import annotations

import os
import random

import anyio
import anyio.lowlevel
import attrs
import pytest

from sora_async.governor import (
    Governor,
    GovernorStatistics,
    LocalGovernor,
    Slot,
    is_account_cap,
)

pytestmark = pytest.mark.anyio


class ManualTime:
    """A clock that moves only when the test says so; sleepers wake when their time comes."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, anyio.Event]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        event = anyio.Event()
        self._sleepers.append((self.now + delay, event))
        await event.wait()

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [item for item in self._sleepers if item[0] <= self.now]
        for item in due:
            self._sleepers.remove(item)
            item[1].set()
        await anyio.wait_all_tasks_blocked()


def check(gov: LocalGovernor, **expected: float) -> GovernorStatistics:
    stats = gov.statistics()
    actual = {name: getattr(stats, name) for name in expected}
    assert actual == expected
    return stats


async def test_local_governor_fills_the_protocol() -> None:
    gov: Governor = LocalGovernor(3)
    slot = await gov.acquire()
    assert isinstance(slot, Slot)
    assert gov.statistics() == GovernorStatistics(
        held=1, waiting=0, total=3, effective_total=3, live=0, paused_for=0.0
    )
    gov.release(slot)
    await gov.aclose()


async def test_statistics_are_a_frozen_snapshot() -> None:
    gov = LocalGovernor(2)
    before = gov.statistics()
    slot = await gov.acquire()
    assert before.held == 0
    assert gov.statistics().held == 1
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        before.held = 5  # type: ignore[misc]
    gov.release(slot)


async def test_the_cap_blocks_the_next_acquirer_until_a_release() -> None:
    gov = LocalGovernor(2)
    slots = [await gov.acquire(), await gov.acquire()]
    got: list[Slot] = []
    async with anyio.create_task_group() as tg:

        async def third() -> None:
            got.append(await gov.acquire())

        tg.start_soon(third)
        await anyio.wait_all_tasks_blocked()
        check(gov, held=2, waiting=1)
        assert got == []
        gov.release(slots[0])
    assert len(got) == 1
    check(gov, held=2, waiting=0)


async def test_waiters_are_served_first_in_first_out() -> None:
    gov = LocalGovernor(1)
    first = await gov.acquire()
    order: list[int] = []
    held: dict[int, Slot] = {}
    async with anyio.create_task_group() as tg:

        async def waiter(n: int) -> None:
            held[n] = await gov.acquire()
            order.append(n)

        for n in range(5):
            tg.start_soon(waiter, n)
            await anyio.wait_all_tasks_blocked()  # fixes the queue order
        check(gov, waiting=5)
        gov.release(first)
        for n in range(5):
            await anyio.wait_all_tasks_blocked()
            assert order == list(range(n + 1))
            gov.release(held[n])
    assert order == [0, 1, 2, 3, 4]
    check(gov, held=0, waiting=0)


async def test_release_is_idempotent_and_works_from_another_task() -> None:
    gov = LocalGovernor(1)
    slot = await gov.acquire()  # taken here, given back by another task (a later status())
    async with anyio.create_task_group() as tg:
        tg.start_soon(_release_later, gov, slot)
    check(gov, held=0)
    gov.release(slot)  # again: nothing happens, nothing is over-released
    check(gov, held=0)
    # The pool still has exactly one slot: a second acquirer waits behind the first.
    first = await gov.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(gov.acquire)
        await anyio.wait_all_tasks_blocked()
        check(gov, held=1, waiting=1)
        tg.cancel_scope.cancel()
    gov.release(first)


async def _release_later(gov: LocalGovernor, slot: Slot) -> None:
    await anyio.lowlevel.checkpoint()
    gov.release(slot)


async def test_a_cancelled_waiter_takes_nothing() -> None:
    gov = LocalGovernor(1)
    holder = await gov.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(gov.acquire)
        await anyio.wait_all_tasks_blocked()
        check(gov, held=1, waiting=1)
        tg.cancel_scope.cancel()
    check(gov, held=1, waiting=0)
    gov.release(holder)
    check(gov, held=0)
    slot = await gov.acquire()  # the slot was not leaked to the cancelled waiter
    gov.release(slot)


async def test_a_waiter_cancelled_as_the_slot_is_handed_over_leaks_nothing() -> None:
    # Whether the cancellation lands before or after the hand-over, acquire() either raises
    # (and takes nothing) or returns a slot its caller owns and gives back.
    gov = LocalGovernor(1)
    holder = await gov.acquire()
    got: list[str] = []
    with anyio.fail_after(5):  # a guard against a leak hanging the test, not a timing check
        async with anyio.create_task_group() as tg:
            doomed = anyio.CancelScope()

            async def cancelled_waiter() -> None:
                with doomed:
                    slot = await gov.acquire()
                    try:
                        await anyio.sleep_forever()
                    finally:
                        gov.release(slot)

            async def next_waiter() -> None:
                await gov.acquire()
                got.append("next")

            tg.start_soon(cancelled_waiter)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(next_waiter)
            await anyio.wait_all_tasks_blocked()
            gov.release(holder)  # hands the slot to the first waiter ...
            doomed.cancel()  # ... which is cancelled before it can run
    assert got == ["next"]
    check(gov, held=1, waiting=0)


async def test_growing_the_total_wakes_waiters_and_shrinking_revokes_nothing() -> None:
    gov = LocalGovernor(1)
    slots = [await gov.acquire()]
    async with anyio.create_task_group() as tg:

        async def waiter() -> None:
            slots.append(await gov.acquire())

        for _ in range(3):
            tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        check(gov, held=1, waiting=3)
        gov.total = 3
        await anyio.wait_all_tasks_blocked()
        check(gov, held=3, waiting=1, total=3, effective_total=3)
        gov.total = 2  # below what is held: nobody loses a slot
        check(gov, held=3, waiting=1, total=2, effective_total=2)
        gov.release(slots[0])
        await anyio.wait_all_tasks_blocked()
        check(gov, held=2, waiting=1)  # still at the cap: the last waiter keeps waiting
        gov.release(slots[1])
    check(gov, held=2, waiting=0)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "20"])
async def test_a_total_below_one_or_not_an_integer_is_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        LocalGovernor(bad)  # type: ignore[arg-type]
    gov = LocalGovernor(2)
    with pytest.raises(ValueError):
        gov.total = bad  # type: ignore[assignment]
    assert gov.total == 2


async def test_a_closed_governor_refuses_new_acquisitions_but_takes_slots_back() -> None:
    async with LocalGovernor(2) as gov:
        slot = await gov.acquire()
    with pytest.raises(RuntimeError):
        await gov.acquire()
    gov.release(slot)
    check(gov, held=0)


async def test_a_successful_create_marks_the_slot_live_with_its_task_id() -> None:
    gov = LocalGovernor(3)
    slot = await gov.acquire()
    gov.on_create_succeeded(slot, "task-1")
    assert slot.task_id == "task-1"
    check(gov, held=1, live=1)
    gov.release(slot)
    check(gov, held=0, live=0)


async def test_acquire_nowait_grants_only_what_acquire_would_grant_without_waiting() -> None:
    gov = LocalGovernor(2)
    first = gov.acquire_nowait()
    second = await gov.acquire()
    with pytest.raises(anyio.WouldBlock):  # full
        gov.acquire_nowait()
    check(gov, held=2, waiting=0)
    async with anyio.create_task_group() as tg:
        got: list[Slot] = []

        async def queued() -> None:
            got.append(await gov.acquire())

        tg.start_soon(queued)
        await anyio.wait_all_tasks_blocked()
        gov.release(first)
        # The token freed is the queued acquirer's: no jumping the queue.
        with pytest.raises(anyio.WouldBlock):
            gov.acquire_nowait()
    assert len(got) == 1 and got[0] is not second
    gov.release(second)
    check(gov, held=1, waiting=0)
    third = gov.acquire_nowait()
    check(gov, held=2)
    gov.release(third)
    gov.release(got[0])
    check(gov, held=0)


async def test_acquire_nowait_waits_out_no_pause_and_a_closed_governor_refuses_it() -> None:
    time = ManualTime()
    gov = LocalGovernor(10, clock=time.clock, sleep=time.sleep)
    live = await live_slots(gov, 2)
    probe = await gov.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(cap_429, gov, probe, 30.0)
        await anyio.wait_all_tasks_blocked()
        gov.release(live.pop())
        check(gov, held=2, effective_total=3, paused_for=30.0)
        with pytest.raises(anyio.WouldBlock):  # under the cap, but paused
            gov.acquire_nowait()
        await time.advance(30.0)
    slot = gov.acquire_nowait()  # the pause is over
    check(gov, held=3)
    gov.release(slot)
    await gov.aclose()
    with pytest.raises(RuntimeError):
        gov.acquire_nowait()


def test_slot_ids_are_unique_and_a_forked_child_draws_new_ones() -> None:
    ids = {Slot().id for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report a slot id and leave without running anything else
        os.write(write, Slot().id.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    # A child that repeated its parent's prefix and counter would hand out the parent's
    # next id: leases of two processes under one key.
    assert child[:16] != Slot().id[:16]


# -- 429 adaptation ----------------------------------------------------------------------------

#: What the mock answers a create beyond the account cap (sora_async/mock/state.py).
CAP = "too many concurrent tasks: the limit is 20"


async def cap_429(gov: LocalGovernor, slot: Slot, retry_after: float | None) -> None:
    await gov.on_rate_limited(slot, retry_after, message=CAP)


async def live_slots(gov: LocalGovernor, n: int) -> list[Slot]:
    slots = []
    for i in range(n):
        slot = await gov.acquire()
        gov.on_create_succeeded(slot, f"t{i}")
        slots.append(slot)
    return slots


async def test_a_429_pauses_everyone_and_shrinks_the_cap_to_live_plus_one() -> None:
    time = ManualTime()
    gov = LocalGovernor(10, clock=time.clock, sleep=time.sleep)
    live = await live_slots(gov, 3)
    probe = await gov.acquire()
    events: list[str] = []
    async with anyio.create_task_group() as tg:

        async def retry_after_429() -> None:
            await gov.on_rate_limited(probe, 30.0, message=CAP)
            events.append(f"retry at {time.now:g}")

        async def newcomer() -> None:
            slot = await gov.acquire()
            events.append(f"newcomer at {time.now:g}")
            gov.on_create_succeeded(slot, "new")

        tg.start_soon(retry_after_429)
        await anyio.wait_all_tasks_blocked()
        # Three tasks are live: three evidently fit, plus one probe.
        check(gov, held=4, live=3, effective_total=4, paused_for=30.0)
        tg.start_soon(newcomer)
        await anyio.wait_all_tasks_blocked()
        check(gov, held=4, waiting=1)  # over the shrunken cap: queued
        gov.release(live.pop())  # a task ended: its slot goes to the newcomer ...
        await time.advance(29.0)
        check(gov, held=4, waiting=0)
        assert events == []  # ... but nobody starts a create before the pause ends
        await time.advance(1.0)
    assert sorted(events) == ["newcomer at 30", "retry at 30"]
    check(gov, held=4, live=3, effective_total=5)  # the newcomer's create worked: +1
    gov.on_create_succeeded(probe, "t3")  # and the probe's: +1
    check(gov, live=4, effective_total=6)


async def test_successes_after_the_pause_grow_the_cap_one_by_one_up_to_the_total() -> None:
    time = ManualTime()
    gov = LocalGovernor(6, clock=time.clock, sleep=time.sleep)
    await live_slots(gov, 2)
    probe = await gov.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(cap_429, gov, probe, 10.0)
        await anyio.wait_all_tasks_blocked()
        check(gov, effective_total=3)
        await time.advance(10.0)
    gov.on_create_succeeded(probe, "t2")
    check(gov, live=3, effective_total=4)
    caps = []
    for i in range(3):
        slot = await gov.acquire()
        gov.on_create_succeeded(slot, f"n{i}")
        caps.append(gov.statistics().effective_total)
    assert caps == [5, 6, 6]
    check(gov, held=6, live=6)


async def test_successes_during_the_pause_only_raise_the_cap_to_the_evidence() -> None:
    time = ManualTime()
    gov = LocalGovernor(10, clock=time.clock, sleep=time.sleep)
    await live_slots(gov, 2)
    in_flight = [await gov.acquire() for _ in range(3)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(cap_429, gov, in_flight[0], 20.0)
        await anyio.wait_all_tasks_blocked()
        check(gov, held=5, effective_total=3)
        # Two creates that were already in flight succeed during the pause: the server holds
        # four of our tasks, so four fit, plus the probe; no growth beyond that yet.
        gov.on_create_succeeded(in_flight[1], "a")
        gov.on_create_succeeded(in_flight[2], "b")
        check(gov, live=4, effective_total=5)
        await time.advance(20.0)
    check(gov, held=5, effective_total=5)


async def test_slots_over_a_shrunken_cap_wait_for_tasks_to_end() -> None:
    time = ManualTime()
    gov = LocalGovernor(10, clock=time.clock, sleep=time.sleep)
    live = await live_slots(gov, 3)
    a, b = await gov.acquire(), await gov.acquire()
    retried: list[str] = []
    async with anyio.create_task_group() as tg:

        async def rate_limited(slot: Slot, name: str) -> None:
            await gov.on_rate_limited(slot, 5.0, message=CAP)
            assert gov.statistics().held <= gov.statistics().effective_total
            retried.append(name)

        tg.start_soon(rate_limited, a, "a")
        tg.start_soon(rate_limited, b, "b")
        await anyio.wait_all_tasks_blocked()
        check(gov, held=5, effective_total=4)  # transiently over: right after the shrink
        await time.advance(5.0)
        # The pause is over, but five slots do not fit under four: one retries, the other
        # gives its place back and queues.
        assert len(retried) == 1
        check(gov, held=4, waiting=1)
        gov.release(live[0])  # a task ended: room for the queued retry
        await anyio.wait_all_tasks_blocked()
        assert sorted(retried) == ["a", "b"]
    check(gov, held=4, waiting=0, effective_total=4)


async def test_many_refused_creates_with_nothing_alive_probe_one_at_a_time() -> None:
    time = ManualTime()
    gov = LocalGovernor(20, clock=time.clock, sleep=time.sleep)
    slots = [await gov.acquire() for _ in range(20)]
    retried: list[Slot] = []
    async with anyio.create_task_group() as tg:

        async def rate_limited(slot: Slot) -> None:
            await gov.on_rate_limited(slot, 10.0, message=CAP)
            retried.append(slot)

        for slot in slots:
            tg.start_soon(rate_limited, slot)
        await anyio.wait_all_tasks_blocked()
        check(gov, held=20, live=0, effective_total=1)
        await time.advance(10.0)
        assert len(retried) == 1  # a single probe, not twenty refused creates
        check(gov, held=1, waiting=19)
        # The probe is accepted: the cap grows by one per success, one create at a time.
        for n in range(1, 5):
            gov.on_create_succeeded(retried[-1], f"t{n}")
            await anyio.wait_all_tasks_blocked()
            assert len(retried) == n + 1
            check(gov, live=n, effective_total=n + 1)
        tg.cancel_scope.cancel()


async def test_without_retry_after_the_pause_doubles_and_resets_after_a_success() -> None:
    time = ManualTime()
    gov = LocalGovernor(5, clock=time.clock, sleep=time.sleep)
    slot = await gov.acquire()
    pauses = []
    for _ in range(6):
        async with anyio.create_task_group() as tg:
            tg.start_soon(cap_429, gov, slot, None)
            await anyio.wait_all_tasks_blocked()
            pauses.append(gov.statistics().paused_for)
            await time.advance(pauses[-1])
    assert pauses == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    gov.on_create_succeeded(slot, "t")
    other = await gov.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(cap_429, gov, other, None)
        await anyio.wait_all_tasks_blocked()
        check(gov, paused_for=5.0)
        await time.advance(5.0)


@pytest.mark.parametrize("min_pause", [None, 0.2])
async def test_a_tiny_retry_after_still_pauses_a_little(min_pause: float | None) -> None:
    time = ManualTime()
    options = {} if min_pause is None else {"min_pause": min_pause}
    gov = LocalGovernor(5, clock=time.clock, sleep=time.sleep, **options)
    slot = await gov.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(cap_429, gov, slot, 0.0)
        await anyio.wait_all_tasks_blocked()
        check(gov, paused_for=min_pause or 1.0)
        await time.advance(min_pause or 1.0)


async def test_a_cancelled_pause_wait_in_acquire_gives_the_slot_back() -> None:
    time = ManualTime()
    gov = LocalGovernor(5, clock=time.clock, sleep=time.sleep)
    probe = await gov.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(cap_429, gov, probe, 60.0)
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as scope:
            tg.start_soon(_cancel_soon, scope)
            await gov.acquire()
        tg.cancel_scope.cancel()
    gov.release(probe)
    check(gov, held=0, waiting=0)


async def _cancel_soon(scope: anyio.CancelScope) -> None:
    await anyio.wait_all_tasks_blocked()
    scope.cancel()


async def test_a_released_rate_limited_slot_queues_again() -> None:
    gov = LocalGovernor(1)
    slot = await gov.acquire()
    gov.release(slot)
    other = await gov.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(cap_429, gov, slot, None)
        await anyio.wait_all_tasks_blocked()
        check(gov, held=1, waiting=1)
        gov.release(other)
        tg.cancel_scope.cancel()  # stop it sleeping out the real 5 s pause
    gov.release(slot)
    check(gov, held=0, waiting=0)


@pytest.mark.parametrize(
    ("retry_after", "message", "refusals", "cap"),
    [
        (1.0, CAP, 1, True),
        (None, "Too many concurrent requests", 1, True),
        (0.2, "You have reached the task limit", 1, True),
        (None, "too many running tasks", 1, True),
        (0.2, "too many requests", 1, False),  # the mock's injected rate limit
        (None, "Too many requests - implement backoff strategy", 1, False),  # sora2api's doc
        (None, None, 1, False),
        (120.0, "too many requests", 1, True),  # a window that long: as good as full
        (30.0, None, 1, False),
        (0.2, "too many requests", 3, True),  # refused three times despite waiting
        (0.2, "too many requests", 2, False),
    ],
)
def test_what_counts_as_the_account_cap(
    retry_after: float | None, message: str | None, refusals: int, cap: bool
) -> None:
    assert is_account_cap(retry_after, message, refusals) is cap


async def test_a_rate_limit_slows_that_create_only() -> None:
    time = ManualTime()
    gov = LocalGovernor(10, clock=time.clock, sleep=time.sleep)
    await live_slots(gov, 3)
    refused = await gov.acquire()
    events: list[str] = []
    async with anyio.create_task_group() as tg:

        async def retry() -> None:
            await gov.on_rate_limited(refused, 0.2, message="too many requests")
            events.append(f"retry at {time.now:g}")

        tg.start_soon(retry)
        await anyio.wait_all_tasks_blocked()
        # No pause for anybody else, no shrink: a newcomer gets a slot at once.
        check(gov, held=4, live=3, effective_total=10, paused_for=0.0)
        newcomer = await gov.acquire()
        check(gov, held=5)
        assert time.sleeps == [0.2] and events == []
        await time.advance(0.2)
    assert events == ["retry at 0.2"]
    gov.on_create_succeeded(newcomer, "new")
    check(gov, effective_total=10, live=4)


async def test_a_create_refused_again_and_again_is_taken_as_the_cap() -> None:
    time = ManualTime()
    gov = LocalGovernor(10, clock=time.clock, sleep=time.sleep)
    await live_slots(gov, 4)
    slot = await gov.acquire()
    async with anyio.create_task_group() as tg:
        for wait in (5.0, 10.0):  # without Retry-After: its own backoff, nobody else's
            tg.start_soon(gov.on_rate_limited, slot, None)
            await anyio.wait_all_tasks_blocked()
            check(gov, effective_total=10, paused_for=0.0)
            assert time.sleeps[-1] == wait
            await time.advance(wait)
        tg.start_soon(gov.on_rate_limited, slot, None)
        await anyio.wait_all_tasks_blocked()
        # The third refusal in a row: the account is full. Everyone pauses, the window shrinks.
        check(gov, effective_total=5, paused_for=5.0)
        await time.advance(5.0)
    gov.on_create_succeeded(slot, "t4")
    check(gov, live=5, effective_total=6)
    # A success forgets the refusals: the next 429 of another create is a rate limit again.
    other = await gov.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(gov.on_rate_limited, other, 1.0)
        await anyio.wait_all_tasks_blocked()
        check(gov, effective_total=6, paused_for=0.0)
        await time.advance(1.0)


# -- the invariant under a random workload ----------------------------------------------------


class SharedAccount:
    """A server whose cap is shared with another process that grabs and frees room."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.others = 0
        self.ours = 0
        self.refused = 0
        self.accepted = 0

    def create(self) -> bool:
        if self.ours + self.others >= self.cap:
            self.refused += 1
            return False
        self.ours += 1
        self.accepted += 1
        return True


@pytest.mark.parametrize("seed", range(12))
async def test_held_never_exceeds_the_effective_cap_through_an_acquisition(seed: int) -> None:
    rng = random.Random(seed)
    now = [0.0]

    async def sleep(delay: float) -> None:
        # Time only moves forward when someone waits; enough for the pause arithmetic.
        now[0] += delay
        await anyio.lowlevel.checkpoint()

    account = SharedAccount(cap=20)
    gov = LocalGovernor(20, clock=lambda: now[0], sleep=sleep)
    violations: list[GovernorStatistics] = []
    lowest_cap = [20]
    done: list[int] = []

    def check_admitted() -> None:
        stats = gov.statistics()
        lowest_cap[0] = min(lowest_cap[0], stats.effective_total)
        if stats.held > stats.effective_total:
            violations.append(stats)

    async def steps(n: int) -> None:
        for _ in range(n):
            await anyio.lowlevel.checkpoint()

    async def request(n: int) -> None:
        slot = await gov.acquire()
        check_admitted()
        try:
            while True:
                await steps(rng.randint(0, 3))  # the create POST
                if account.create():
                    gov.on_create_succeeded(slot, f"task-{n}")
                    break
                await gov.on_rate_limited(slot, rng.choice([None, 1.0, 3.0]), message=CAP)
                check_admitted()
            await steps(rng.randint(5, 60))  # the task runs
            account.ours -= 1
        finally:
            gov.release(slot)
        done.append(n)

    async def other_process() -> None:
        for _ in range(40):
            await steps(rng.randint(1, 20))
            account.others = rng.randint(0, 15)

    with anyio.fail_after(30):  # a guard against a deadlock, not a timing assertion
        async with anyio.create_task_group() as tg:
            tg.start_soon(other_process)
            for n in range(80):
                tg.start_soon(request, n)
    assert violations == []
    # The workload did provoke refusals and shrink the cap (else it would prove nothing).
    assert account.refused > 0
    assert lowest_cap[0] < 20
    assert sorted(done) == list(range(80))
    assert account.accepted == 80
    check(gov, held=0, live=0, waiting=0)
