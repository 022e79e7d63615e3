"""A followed task's shared state (and a job's Attempt), and how its watchers wait on it."""

from __future__ import annotations

import asyncio
import contextlib

import attrs

from ..errors import SoraError
from ..events import Job
from ..governor import Slot
from ..models import TaskResult, TaskStatus, VideoRequest

__all__ = [
    "Attempt",
    "FollowedTask",
    "outcome_within",
    "result_of",
    "stop_following",
    "wake_waiter",
]


@attrs.define(eq=False)
class FollowedTask:
    """A task the runtime follows: created here or adopted, not yet seen terminal."""

    task_id: str
    request: VideoRequest | None
    slot: Slot | None
    created_at: float
    created_here: bool
    callback_expected: bool
    latest: TaskStatus | None = None
    final: TaskStatus | None = None
    #: Why following stopped without a terminal status (a 404, an unknown status...).
    error: SoraError | None = None
    #: Set (and dropped) whenever ``latest`` or the outcome changes; watchers that show each
    #: status wait on it (see :meth:`change`). Made only when one does: most runs have none.
    #: asyncio's own Event: anyio's costs ten times as much to make and wait on (the client
    #: runs on asyncio only, aiohttp being asyncio's).
    changed: asyncio.Event | None = None
    #: Resolved once the outcome is known: watchers with nobody to show statuses to.
    enders: list[asyncio.Future[None]] = attrs.field(factory=list)
    #: Resolved at the next :meth:`publish`, once: a job whose create's task follows it, and
    #: that shows each status, starts watching there (see TaskRuntime._launch).
    woken: asyncio.Future[None] | None = None
    last_running_at: float | None = None
    #: The last poll's error, while polls fail (transient errors the follower rides out).
    last_error: SoraError | None = None
    watchers: int = 0
    #: The task that polls it (see TaskRuntime._start_follower), and whether it was told to
    #: stop: the end was seen by another poll, or nobody watches someone else's id any more.
    follower: asyncio.Task[None] | None = None
    stopping: bool = False
    #: When the create's answer was booked (the clock its job's watch timeout starts on).
    answered_at: float | None = None

    @property
    def over(self) -> bool:
        return self.final is not None or self.error is not None

    def change(self) -> asyncio.Event:
        """The event the next :meth:`publish` sets."""
        if self.changed is None:
            self.changed = asyncio.Event()
        return self.changed

    def publish(self) -> None:
        changed, self.changed = self.changed, None
        if changed is not None:
            changed.set()
        woken, self.woken = self.woken, None
        if woken is not None:
            wake_waiter(woken)
        if self.over:
            enders, self.enders = self.enders, []
            for ender in enders:
                wake_waiter(ender)


def stop_following(task: FollowedTask) -> None:
    """Stop ``task``'s follower, unless it is the caller (it is about to return anyway)."""
    task.stopping = True
    follower = task.follower
    if follower is not None and follower is not asyncio.current_task():
        follower.cancel()


def wake_waiter(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def outcome_within(task: FollowedTask, seconds: float | None) -> bool:
    """Wait until ``task``'s outcome is known: False if ``seconds`` passed first.

    A timer and a future, not a cancel scope: a scope costs as much to enter and leave as the
    rest of a watch, and a run watches every task once.
    """
    if task.over:
        return True
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    task.enders.append(waiter)
    timer = loop.call_later(seconds, wake_waiter, waiter) if seconds is not None else None
    try:
        await waiter
    finally:
        if timer is not None:
            timer.cancel()
        with contextlib.suppress(ValueError):  # already taken by publish()
            task.enders.remove(waiter)
    return task.over


def result_of(task: FollowedTask, request: VideoRequest | None, key: object) -> TaskResult:
    """The result of a task whose outcome is known: its terminal status, or why it is not."""
    if task.final is not None:
        return TaskResult.from_status(task.final, request, key=key)
    assert task.error is not None
    raise task.error


@attrs.define(eq=False)
class Attempt:
    """What a fan-out needs to know about one job while it runs, for an early stop."""

    job: Job
    task_id: str | None = None
    #: Set as soon as the task is seen terminal (before its files are fetched).
    result: TaskResult | None = None
