"""A create sent from the task that will follow it; cancellations held until a create's answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, TypeVar

import anyio
import attrs

from ..calls import ApiCall
from ..events import EventHook, HookFailedAfterCreate, Job
from ..governor import Slot
from .followed import Attempt, FollowedTask

__all__ = ["CancelHeldBack", "Launch", "launched_task"]

T = TypeVar("T")


async def _waking(request: Awaitable[T], waiter: asyncio.Future[None]) -> T:
    try:
        return await request
    finally:
        if not waiter.done():
            waiter.set_result(None)


class CancelHeldBack:
    """Holds back asyncio's own cancellation of a create until its answer is booked.

    anyio's shield holds off anyio's cancellation only: ``asyncio.wait_for`` or ``Task.cancel``
    still reach a shielded await, and a create cut off there leaves a task that may be paid
    for, with no id, and its slot given back (the account over-filled). So :meth:`answer` runs
    the request in a task of its own and awaits it to the end (bounded by the request's own
    timeout) whatever cancels the caller; leaving the block re-raises the cancellation, after
    the task is registered and followed, or the slot disposed of. :meth:`launched` does the
    same for a create sent by a launch, for either kind of cancellation.
    """

    def __init__(self) -> None:
        self.cancelled: asyncio.CancelledError | None = None

    async def answer(self, request: Awaitable[T]) -> T:
        loop = asyncio.get_running_loop()
        # The request's task wakes this one itself as it ends: one trip through the loop,
        # where asyncio.shield takes two (the task's done callback, then the outer future's).
        waiter: asyncio.Future[None] = loop.create_future()
        answer = loop.create_task(_waking(request, waiter))
        try:
            await waiter
        except asyncio.CancelledError as exc:
            if answer.cancelled():  # the request itself was cancelled (the loop closing)
                raise
            self.cancelled = exc
            await _answer_of(answer)
        # Done here: the task set the waiter in its last step, before this one could resume.
        return answer.result()

    async def launched(self, launch: Launch) -> FollowedTask:
        """The launch's task once the task has news (see TaskRuntime.create), or at once
        when cancelled: the create's answer is awaited first, shielded from anyio too."""
        try:
            await launch.woken
        except asyncio.CancelledError as exc:
            if launch.answered.cancelled():
                raise
            self.cancelled = exc
            if not launch.answered.done():
                with anyio.CancelScope(shield=True):
                    await _answer_of(launch.answered)
        return launch.answered.result()

    def __enter__(self) -> CancelHeldBack:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.cancelled is not None:
            # The very exception caught: anyio's cancel scope knows its own by its message.
            raise self.cancelled from error


async def _answer_of(answer: asyncio.Future[Any]) -> None:
    """Wait until ``answer`` is done, whatever cancels the waiter meanwhile (shield wakes on
    any end of a task, even one that never ran its first step)."""
    while not answer.done():
        try:
            await asyncio.shield(answer)
        except asyncio.CancelledError:
            if answer.cancelled():
                raise


def launched_task(launch: Launch, task: FollowedTask, attempt: Attempt | None) -> FollowedTask:
    """A launch's booked task, for its caller: its id in ``attempt`` even when the caller
    leaves by a cancellation, and HookFailedAfterCreate when the CREATED hook raised."""
    if attempt is not None:
        attempt.task_id = task.task_id
    if launch.hook_error is not None:
        raise HookFailedAfterCreate(task.task_id, launch.hook_error) from launch.hook_error
    return task


def _future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


@attrs.define(eq=False)
class Launch:
    """One create sent from a task that goes on to follow its task (see TaskRuntime.create),
    and what that task tells the job's caller."""

    job: Job
    hook: EventHook | None
    call: ApiCall
    slot: Slot
    callback_expected: bool
    sent_at: float
    #: The caller shows each status (woken at the first), or only the outcome.
    shows: bool
    #: The job's watch timeout: the caller is woken this long after the answer at the latest.
    timeout: float | None
    #: The create's answer: the task (registered, holding the slot, its CREATED emitted), or
    #: the create's error.
    answered: asyncio.Future[FollowedTask] = attrs.field(factory=_future)
    #: The caller's wake: the task has news (its outcome or first status), or the job failed.
    woken: asyncio.Future[None] = attrs.field(factory=_future)
    #: The CREATED hook raised (the job fails; the task is followed all the same).
    hook_error: Exception | None = None
