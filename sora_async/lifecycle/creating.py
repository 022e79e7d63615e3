"""TaskRuntime's create path: a slot, one create (429s sat out), CREATED, the task followed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from functools import partial

import anyio
import attrs

from ..errors import (
    CreateOutcomeUnknownError,
    RateLimitError,
    SoraError,
    ValidationError,
    create_was_not_made,
)
from ..events import (
    CreateSkipped,
    EventHook,
    EventKind,
    HookFailedAfterCreate,
    Job,
    TaskEvent,
    emit,
)
from ..governor import Slot
from ..images import prepare_image
from ..models import VideoRequest
from ..providers import PreparedImage
from .followed import Attempt, FollowedTask, wake_waiter
from .following import Following
from .launch import CancelHeldBack, Launch, launched_task
from .observer import Observer
from .stopping import SendingStop

__all__ = ["Creating"]

logger = logging.getLogger("sora_async")


class Creating(Following):
    """The part of :class:`~sora_async.lifecycle.TaskRuntime` that creates and adopts tasks,
    over :class:`Following` (a layer of the one owner; its state is set by TaskRuntime)."""

    #: The governor's way to a slot without a wait, where it has one (LocalGovernor).
    _acquire_nowait: Callable[[], Slot] | None

    # -- create and adopt --------------------------------------------------------------------

    async def prepare(self, request: VideoRequest) -> PreparedImage | None:
        """Everything about ``request`` checkable before sending; reads an image off the loop."""
        self.provider.check_request(request)
        if request.image is None:
            return None
        return await anyio.to_thread.run_sync(
            partial(
                prepare_image,
                request.image,
                accepts_bytes=self.provider.accepts_image_bytes,
                provider=self.provider.name,
            )
        )

    async def create(
        self,
        job: Job,
        hook: EventHook | None = None,
        may_send: Callable[[], bool] | None = None,
        stop: SendingStop | None = None,
    ) -> str:
        """Create ``job``'s task under a slot and start following it; return its id."""
        task = await self._create(job, hook, may_send, stop, watch=None, timeout=None)
        return task.task_id

    async def _create(
        self,
        job: Job,
        hook: EventHook | None,
        may_send: Callable[[], bool] | None,
        stop: SendingStop | None,
        *,
        watch: bool | None,
        timeout: float | None,  # noqa: ASYNC109 - see wait()
        attempt: Attempt | None = None,
    ) -> FollowedTask:
        """:meth:`create`, the task followed.

        ``may_send()`` is asked right before each attempt: False (a run draining after Ctrl-C)
        gives the slot back and raises CreateSkipped. ``stop`` (stopped when ``may_send()`` turns
        False) cuts short the wait for a slot and a 429's pause.

        ``watch`` (a job's whole life, run_job's): the create goes out from a task that goes on
        to emit CREATED and follow the task (:meth:`_launch`), and this returns only when the
        task has news for a watcher: its outcome, or with ``watch=True`` (statuses shown) its
        first status, or ``timeout`` seconds after the answer (the watch's own timeout starts
        there; see :attr:`FollowedTask.answered_at`). One task and two trips through the loop a job
        fewer than a create that returns at its answer, then a follower of its own.
        """
        if not isinstance(job.request, VideoRequest):
            raise ValidationError("request", job.request, "a VideoRequest")
        # create_call() checks the request as prepare() would: prepare() is for an image.
        image = await self.prepare(job.request) if job.request.image is not None else None
        request, callback_expected = self._with_callback(job.request)
        call = self.provider.create_call(request, image)
        slot: Slot | None = self._free_slot(stop) or await self._acquire(stop)
        try:
            while True:
                assert slot is not None
                if may_send is not None and not may_send():
                    raise CreateSkipped("the run stopped creating before this job was sent")
                rate_limited: RateLimitError | None = None
                # Shielded from the intent record to the task id record: a cancellation can
                # neither fall between the two nor lose the answer of a request that left
                # (asyncio's own, which passes anyio's shield, is held back until the end).
                # A launched create is waited for unshielded (the wait lasts the task's life),
                # its answer held back by CancelHeldBack.launched alone: no scope at all, a
                # scope costs about as much to enter and leave as the rest of the create.
                shield = (
                    anyio.CancelScope(shield=True) if watch is None else contextlib.nullcontext()
                )
                with shield, CancelHeldBack() as held:
                    if hook is not None:
                        with anyio.CancelScope(shield=True):
                            await emit(hook, TaskEvent(EventKind.CREATING, job.key, job.request))
                    # The task exists from somewhere between send and answer: dating it from
                    # the send puts the first poll no later than one base interval after it.
                    sent_at = self._clock()
                    launch: Launch | None = None
                    try:
                        if watch is None:
                            task_id: str = await held.answer(
                                self.transport.call(call, self.provider.decode_create, safe=False)
                            )
                        else:
                            launch = Launch(
                                job, hook, call, slot, callback_expected, sent_at, watch, timeout
                            )
                            self._launch(launch)
                            launched = await held.launched(launch)
                    except RateLimitError as exc:
                        rate_limited = exc
                    except SoraError as exc:
                        if create_was_not_made(exc):
                            raise
                        self.hold_slot(slot, request, "create outcome unknown: a task may exist")
                        slot = None
                        raise CreateOutcomeUnknownError(
                            f"{type(exc).__name__}: {exc}", request=job.request
                        ) from exc
                    else:
                        # The task owns the slot from here (booked with no await between).
                        owner, slot = slot, None
                        if launch is not None:
                            return launched_task(launch, launched, attempt)
                        task = self._book(job, owner, task_id, callback_expected, sent_at)
                        await self._created(task, job, hook)
                        return task
                    # Definitely not created: a journal records that before any pause. A hook
                    # that fails here only loses a note; the create is retried regardless.
                    assert rate_limited is not None
                    with anyio.CancelScope(shield=True):
                        await Observer(hook, "the event hook")(
                            TaskEvent(
                                EventKind.RATE_LIMITED, job.key, job.request, error=rate_limited
                            ),
                            job.key,
                        )
                assert rate_limited is not None and slot is not None
                await self._sit_out(slot, rate_limited, stop)
        finally:
            if slot is not None:
                # The create definitely did not happen (or was never sent).
                self.governor.release(slot)

    async def _sit_out(
        self, slot: Slot, rate_limited: RateLimitError, stop: SendingStop | None
    ) -> None:
        """The pause a 429 on the create made with ``slot`` asks for."""
        logger.info(
            "create refused with 429 (account full or rate limited); retrying in %s",
            f"{rate_limited.retry_after:g}s" if rate_limited.retry_after else "a while",
        )
        # Cut short by a drain: the create loop's may_send() then skips the create, and the
        # slot, held or not after the cancelled wait, is released there.
        with stop.waiting() if stop is not None else contextlib.nullcontext():
            await self.governor.on_rate_limited(
                slot, rate_limited.retry_after, message=rate_limited.message
            )

    def _book(
        self, job: Job, slot: Slot, task_id: str, callback_expected: bool, sent_at: float
    ) -> FollowedTask:
        """The create made with ``slot`` answered ``task_id``: the task holds the slot now."""
        self.governor.on_create_succeeded(slot, task_id)
        return self._register(
            task_id,
            job.request,
            slot,
            created_here=True,
            callback_expected=callback_expected,
            follow=False,
            created_at=sent_at,
        )

    async def _created(self, task: FollowedTask, job: Job, hook: EventHook | None) -> None:
        """CREATED, then the task's follower, for a create answered in the caller's task."""
        try:
            # Before anything else happens to the task (its first poll included), a journal
            # makes its id durable.
            await emit(hook, TaskEvent(EventKind.CREATED, job.key, job.request, task.task_id))
        except Exception as exc:
            raise HookFailedAfterCreate(task.task_id, exc) from exc
        finally:
            # Followed whatever the hook did: only that frees the slot.
            self._start_follower(task)

    def _launch(self, launch: Launch) -> None:
        """Send the launch's create from a task of its own that goes on to follow the task."""
        if self._closing:
            raise RuntimeError("the client is closing")
        self._launching.add(asyncio.get_running_loop().create_task(self._launched(launch)))

    async def _launched(self, launch: Launch) -> None:
        """The launch's task: the create, CREATED, then the task's follower (see create()).

        Nobody cancels it before it follows (only a closing loop does): a create is never cut
        off mid-flight, nor its CREATED hook.
        """
        sender = asyncio.current_task()
        assert sender is not None
        job = launch.job
        timer: asyncio.TimerHandle | None = None
        task: FollowedTask | None = None
        try:
            task_id = await self.transport.call(
                launch.call, self.provider.decode_create, safe=False
            )
            task = self._book(job, launch.slot, task_id, launch.callback_expected, launch.sent_at)
            if launch.hook is not None:
                try:
                    # Before anything else happens to the task (its first poll included), a
                    # journal makes its id durable.
                    await emit(
                        launch.hook, TaskEvent(EventKind.CREATED, job.key, job.request, task_id)
                    )
                except Exception as exc:
                    launch.hook_error = exc
            # Answered only now: a caller that is cancelled waits for the CREATED record too.
            task.answered_at = self._clock()
            launch.answered.set_result(task)
            if launch.hook_error is not None or task.over:  # over: seen by someone's status()
                # A failed hook fails the job; the task is followed anyway.
                wake_waiter(launch.woken)
            else:
                if launch.timeout is not None:
                    timer = asyncio.get_running_loop().call_later(
                        launch.timeout, wake_waiter, launch.woken
                    )
                if launch.shows:
                    task.woken = launch.woken
                else:
                    task.enders.append(launch.woken)
            # Followed whatever the hook did: only that frees the slot.
            if self._closing or task.stopping or task.over:
                return
            task.follower = sender
            self._followers.add(sender)
            self._launching.discard(sender)
            await self._following(task)
        except BaseException as exc:
            if not launch.answered.done():
                if task is not None:  # booked: the slot is the task's whatever happens now
                    launch.answered.set_result(task)
                elif isinstance(exc, asyncio.CancelledError):  # the loop closing
                    launch.answered.cancel()
                else:  # the create's error (not made, unknown, a 429): the caller's to sort
                    launch.answered.set_exception(exc)
                    return
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._launching.discard(sender)
            # Whatever happened, the job's caller is never left waiting.
            wake_waiter(launch.woken)

    def _free_slot(self, stop: SendingStop | None) -> Slot | None:
        """A slot free at once, taken without a wait (None: :meth:`_acquire` waits for one).

        No stop scope around it, and no coroutine: a scope costs about as much to enter and
        leave as the rest of the create's bookkeeping, and most creates find a slot free.
        """
        if self._acquire_nowait is None or (stop is not None and stop.stopped):
            return None
        try:
            return self._acquire_nowait()
        except anyio.WouldBlock:
            return None

    async def _acquire(self, stop: SendingStop | None) -> Slot:
        """A slot for a create, unless the run stops creating first (CreateSkipped)."""
        if stop is None:
            return await self.governor.acquire()
        slot: Slot | None = None
        with stop.waiting() as scope:
            slot = await self.governor.acquire()
        # A slot free at once is granted without a checkpoint: the stop is then read here.
        if slot is None or scope.cancelled_caught or stop.stopped:
            if slot is not None:  # granted as the stop came: never keep it
                self.governor.release(slot)
            raise CreateSkipped("the run stopped creating while this job waited for a slot")
        return slot

    def _with_callback(self, request: VideoRequest) -> tuple[VideoRequest, bool]:
        if self.receiver is None or request.callback_url is not None:
            return request, False
        return attrs.evolve(request, callback_url=self.receiver.callback_url), True

    async def adopt(self, task_id: str, request: VideoRequest | None = None) -> None:
        """Count a task created elsewhere (an earlier run) against the slots until terminal."""
        if task_id in self._tasks:
            return
        slot = await self.governor.acquire()
        if task_id in self._tasks:  # adopted by someone else while we queued
            self.governor.release(slot)
            return
        self.governor.on_create_succeeded(slot, task_id)
        self._register(task_id, request, slot, created_here=False)
