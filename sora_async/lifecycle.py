"""One task's life, from account slot to fetched files, owned in one place.

A task is followed by exactly one coroutine, its *follower*, from the moment its id is known
(a create answered, or an id adopted) until it is seen terminal. The follower runs in a task
of the runtime's own (stopped when the client closes), not in the caller's frame, so no caller
can take the task's slot with it. A job of ``generate_many`` sends its create from that very
task, which emits CREATED and then follows (a *launch*, see :meth:`TaskRuntime.create`): one
task a job, its caller woken once the task has news.

* the slot is taken before the create and given back only when the task is seen terminal, or
  when the create provably made no task (:func:`~sora_async.errors.create_was_not_made`);
* a caller that stops waiting (cancellation, ``break``, a timeout, a hook that raises) only
  stops *watching*; the follower goes on polling at the task's own backed-off cadence and
  frees the slot when the task ends, so the next run never over-fills the account;
* ``wait()`` and ``generate_many`` watch a follower; they never poll by themselves, so two
  waiters of one task cost one poller.

Hooks the caller gives us (``on_progress``, event hooks, file hooks) are called by the watcher,
in the watcher's task, never by the follower: a hook that raises is logged once and ignored (it
changes neither the task's fate nor the run); a coroutine hook is awaited. Two events are the
exception, because a write-ahead journal depends on them: a hook that raises on CREATING stops
the create before it is sent, and one that raises on CREATED fails the job with its task id
(:class:`~sora_async.events.HookFailedAfterCreate`), while the task itself is still followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
import attrs

from . import requestspans
from .calls import ApiCall, Endpoint
from .download import DEFAULT_MAX_DOWNLOAD_BYTES, DownloadedFile, download_file, video_filename
from .errors import (
    AuthenticationError,
    CreateOutcomeUnknownError,
    DownloadError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    SoraError,
    ValidationError,
    WaitTimeoutError,
    create_was_not_made,
)
from .events import (
    CreateSkipped,
    EventHook,
    EventKind,
    FileHook,
    FileNamer,
    FileReuser,
    HookFailedAfterCreate,
    Job,
    ProgressHook,
    TaskEvent,
    call_hook,
    emit,
)
from .governor import Governor, Slot
from .images import prepare_image
from .models import TaskResult, TaskState, TaskStatus, VideoRequest
from .polling import PollPlanner, poll_until_terminal
from .providers import PreparedImage, Provider
from .retry import RetryPolicy
from .transport import Transport

if TYPE_CHECKING:
    from .callbacks import CallbackReceiver

__all__ = ["Attempt", "SendingStop", "TaskRuntime"]

logger = logging.getLogger("sora_async")

T = TypeVar("T")

#: A create whose outcome is unknown may have started a task that counts against the account,
#: but without its id nobody can follow it: its slot is held for this many expected task
#: durations, then given back.
UNKNOWN_SLOT_HOLD_FACTOR = 2.0
#: Poll errors after which a task is not the account's: its slot goes back at once.
_DISOWNED = (NotFoundError, AuthenticationError)


class SendingStop:
    """A run's "stop creating": cuts short every create still waiting for a slot or out a
    429's pause, so a drain does not sit out a Retry-After only to send nothing.

    One cancel scope per waiting create, cancelled by :meth:`stop`: no task of its own.
    """

    def __init__(self) -> None:
        self._stopped = False
        self._waiting: set[anyio.CancelScope] = set()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        self._stopped = True
        for scope in self._waiting:
            scope.cancel()

    def waiting(self) -> _Waiting:
        """A scope around one wait; ``cancelled_caught`` tells whether the stop cut it short."""
        return _Waiting(self)


class _Waiting:
    """:meth:`SendingStop.waiting`'s scope, entered once a create (a class, not a generator
    context manager: three calls fewer each time)."""

    __slots__ = ("_scope", "_stop")

    def __init__(self, stop: SendingStop) -> None:
        self._stop = stop
        self._scope = anyio.CancelScope()

    def __enter__(self) -> anyio.CancelScope:
        scope = self._scope
        if self._stop.stopped:
            scope.cancel()
        self._stop._waiting.add(scope)
        try:
            return scope.__enter__()
        except BaseException:
            self._stop._waiting.discard(scope)
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        try:
            return self._scope.__exit__(kind, error, traceback)
        finally:
            self._stop._waiting.discard(self._scope)


@attrs.define(eq=False)
class _Task:
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
            _wake(woken)
        if self.over:
            enders, self.enders = self.enders, []
            for ender in enders:
                _wake(ender)


def _stop_follower(task: _Task) -> None:
    """Stop ``task``'s follower, unless it is the caller (it is about to return anyway)."""
    task.stopping = True
    follower = task.follower
    if follower is not None and follower is not asyncio.current_task():
        follower.cancel()


async def _reraise(error: BaseException) -> None:
    raise error


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _outcome_within(task: _Task, seconds: float | None) -> bool:
    """Wait until ``task``'s outcome is known: False if ``seconds`` passed first.

    A timer and a future, not a cancel scope: a scope costs as much to enter and leave as the
    rest of a watch, and a run watches every task once.
    """
    if task.over:
        return True
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    task.enders.append(waiter)
    timer = loop.call_later(seconds, _wake, waiter) if seconds is not None else None
    try:
        await waiter
    finally:
        if timer is not None:
            timer.cancel()
        with contextlib.suppress(ValueError):  # already taken by publish()
            task.enders.remove(waiter)
    return task.over


def _result_of(task: _Task, request: VideoRequest | None, key: object) -> TaskResult:
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


class _Observer:
    """Calls one watcher's user hook; a hook that raises is logged once, then ignored."""

    __slots__ = ("_failed", "_hook", "_what")

    def __init__(self, hook: Callable[[Any], object] | None, what: str) -> None:
        self._hook = hook
        self._what = what
        self._failed = False

    async def __call__(self, argument: Any, label: object) -> None:
        if self._hook is None:
            return
        try:
            await call_hook(self._hook, argument)
        except Exception:
            if not self._failed:
                self._failed = True
                logger.exception(
                    "%s raised for %s; ignored (the task goes on, its slot is still freed)",
                    self._what,
                    label,
                )


class TaskRuntime:
    """The services one task's life needs (provider, transport, governor, planner, receiver),
    and the tasks being followed. One per client; see the module docstring."""

    def __init__(
        self,
        *,
        provider: Provider,
        transport: Transport,
        governor: Governor,
        planner: PollPlanner,
        receiver: CallbackReceiver | None,
        max_downloads: int,
        retry: RetryPolicy | None,
        spawn: Callable[..., None],
        clock: Callable[[], float] = time.monotonic,
        download_max_bytes: int | None = DEFAULT_MAX_DOWNLOAD_BYTES,
    ) -> None:
        self.provider = provider
        self.transport = transport
        self.governor = governor
        #: The governor's way to a slot without a wait, where it has one (LocalGovernor).
        self._acquire_nowait: Callable[[], Slot] | None = getattr(governor, "acquire_nowait", None)
        self.planner = planner
        self.receiver = receiver
        # asyncio's semaphore: anyio's limiter goes through the event loop (a shielded
        # checkpoint) even when a token is free, one trip and one cancel scope a download.
        self._downloads = asyncio.Semaphore(max_downloads)
        self._download_max_bytes = download_max_bytes
        self._retry = retry
        self._spawn = spawn
        self._clock = clock
        self._tasks: dict[str, _Task] = {}
        self._followers: set[asyncio.Task[None]] = set()
        #: Launches' tasks not following yet (their create or CREATED hook under way), held
        #: here because the loop keeps only weak references; never cancelled. Their callers
        #: wait for them when cancelled, so a closing client's task group waits too.
        self._launching: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- what is followed --------------------------------------------------------------------

    @property
    def unfinished(self) -> dict[str, VideoRequest | None]:
        """Tasks created or adopted here and not seen terminal: id -> request."""
        return {task_id: task.request for task_id, task in self._tasks.items()}

    def close(self) -> None:
        """The client is closing (followers already cancelled): report and free what is left."""
        if self._tasks:
            logger.warning(
                "closing with %d task(s) not seen finished (still alive on the server, "
                "check them with status()): %s",
                len(self._tasks),
                ", ".join(sorted(self._tasks)),
            )
        if getattr(self.governor, "leases_outlive_client", False):
            # A shared governor: the tasks still count for the account until their leases
            # expire, so other workers do not over-fill it.
            return
        for task in self._tasks.values():
            self._release(task)

    def _release(self, task: _Task) -> None:
        slot, task.slot = task.slot, None
        if slot is not None:
            self.governor.release(slot)

    def _register(
        self,
        task_id: str,
        request: VideoRequest | None,
        slot: Slot | None,
        *,
        created_here: bool,
        callback_expected: bool = False,
        follow: bool = True,
        created_at: float | None = None,
    ) -> _Task:
        task = _Task(
            task_id,
            request,
            slot,
            created_at=self._clock() if created_at is None else created_at,
            created_here=created_here,
            callback_expected=callback_expected,
        )
        self._tasks[task_id] = task
        if follow:
            self._start_follower(task)
        return task

    # -- one poll ----------------------------------------------------------------------------

    async def status(self, task_id: str) -> TaskStatus:
        """One status poll (retried on transient failures); a terminal one frees the slot."""
        return await self._status(task_id)

    async def _status(self, task_id: str, *, follower: _Task | None = None) -> TaskStatus:
        """One poll; ``follower``: the task whose follower polls (its last error and last
        running poll are kept on it)."""
        asked_at = self._clock()
        try:
            status = await self.transport.call(
                self.provider.status_call(task_id),
                partial(self.provider.decode_status, task_id),
                safe=True,
                retry=self._retry,
            )
        except SoraError as exc:
            if follower is not None:
                follower.last_error = exc  # the cause a watcher that gives up reports
            raise
        if follower is not None:
            follower.last_error = None
            if not status.is_terminal:
                follower.last_running_at = asked_at
        task = self._tasks.get(task_id)
        if task is not None:
            if status.is_terminal:
                # The follower's own poll needs no cancelling: it returns this very status.
                self._finish(task, status, seen_at=asked_at, stop_follower=follower is None)
            elif not task.over:
                task.latest = status
                task.publish()
        return status

    # -- the follower ------------------------------------------------------------------------

    def _start_follower(self, task: _Task) -> None:
        """Follow ``task`` in a task of its own, in a copy of this context (a traced job's).

        A plain asyncio task, not one of the client's task group: anyio's start_soon costs four
        times as much (a task handle, its cancel scope and event), and a run starts one follower
        per task. :meth:`stop_followers` does for them what the group's exit does for its tasks.
        """
        if self._closing:
            raise RuntimeError("the client is closing")
        if task.stopping or task.over:  # seen ended by another poll before it could start
            return
        follower = task.follower = asyncio.get_running_loop().create_task(self._following(task))
        self._followers.add(follower)

    async def _following(self, task: _Task) -> None:
        """The follower's task: :meth:`_follow`, then its own bookkeeping (a done callback
        would cost a trip through the loop per task)."""
        try:
            await self._follow(task)
        except Exception as exc:
            # A bug (a poll's errors all end in _give_up): as if the follower had been a task
            # of the client's group, everything in the background stops and aclose() raises it.
            for other in self._followers:
                if other is not task.follower:
                    other.cancel()
            try:
                self._spawn(_reraise, exc)
            except RuntimeError:  # the client is closing: its group cannot take it any more
                logger.error("a follower failed", exc_info=exc)
        finally:
            if task.follower is not None:
                self._followers.discard(task.follower)

    async def stop_followers(self) -> None:
        """Cancel every follower and wait until they are gone (the client is closing)."""
        self._closing = True
        followers = list(self._followers)
        for follower in followers:
            follower.cancel()
        if followers:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(followers)

    async def _follow(self, task: _Task) -> None:
        receiver = self.receiver if task.callback_expected else None
        wake = receiver.watch(task.task_id) if receiver is not None else None
        schedule = self.planner.schedule(task.request)
        started_at = task.created_at
        if not task.created_here:
            # A task of unknown age (adopted after a crash, someone else's id): look now
            # rather than wait out a first-poll delay meant for a task just created.
            started_at -= schedule.initial_delay

        try:
            final = await poll_until_terminal(
                # _status itself, not a coroutine around it: one frame fewer at every resume.
                partial(self._status, task.task_id, follower=task),
                schedule,
                timeout=None,
                wake=wake,
                task_id=task.task_id,
                started_at=started_at,
                clock=self._clock,
            )
            self._finish(task, final)
        except SoraError as exc:
            self._give_up(task, exc)
        except asyncio.CancelledError:
            if not task.stopping:  # the client is closing
                raise
            # Stopped by _stop_follower: nothing more to do. (A cancel scope around the poll
            # loop would say so too, at the cost of entering and leaving it for every task.)
        finally:
            if wake is not None and receiver is not None:
                receiver.unwatch(task.task_id, wake)

    def _finish(
        self,
        task: _Task,
        status: TaskStatus,
        *,
        seen_at: float | None = None,
        stop_follower: bool = True,
    ) -> None:
        """``status`` is terminal; ``seen_at``: when the request that said so was sent.

        ``stop_follower=False``: the follower itself saw it and is about to return.
        """
        if task.over:
            return
        task.final = status
        task.latest = status
        self._tasks.pop(task.task_id, None)
        self._release(task)
        if task.created_here:
            self.planner.learn(
                task.request,
                created_at=task.created_at,
                last_running_at=task.last_running_at,
                finished_seen_at=self._clock() if seen_at is None else seen_at,
                succeeded=status.state is TaskState.SUCCEEDED,
            )
        if stop_follower:
            _stop_follower(task)
        task.publish()

    def _give_up(self, task: _Task, error: SoraError) -> None:
        """Polling ended without a terminal status: the error goes to every watcher."""
        if task.over:
            return
        task.error = error
        if isinstance(error, (*_DISOWNED, ProtocolError)):
            # Not this account's task (404/401), or a state we cannot read (an unknown status,
            # seen several times): it holds no slot we could ever see freed.
            self._tasks.pop(task.task_id, None)
            self._release(task)
        else:
            # It may still be alive; it stays listed, and its slot is held for a while.
            slot, task.slot = task.slot, None
            if slot is not None:
                self.hold_slot(slot, task.request, f"stopped following task {task.task_id}")
        logger.error("stopped following task %s: %s", task.task_id, error)
        task.publish()

    def hold_slot(self, slot: Slot, request: VideoRequest | None, why: str) -> None:
        """Keep counting a task nobody can follow for a while, then give its slot back.

        Releasing at once could over-fill the account; holding forever would shrink it.
        """
        expected = self.planner.schedule(request).expected_duration or 300.0
        hold = expected * UNKNOWN_SLOT_HOLD_FACTOR
        logger.warning("%s: its account slot is held for %.0fs", why, hold)

        async def release_later() -> None:
            try:
                await anyio.sleep(hold)
            finally:
                self.governor.release(slot)

        try:
            self._spawn(release_later)
        except RuntimeError:  # the client is closing: nothing will be created any more
            self.governor.release(slot)

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
    ) -> _Task:
        """:meth:`create`, the task followed.

        ``may_send()`` is asked right before each attempt: False (a run draining after Ctrl-C)
        gives the slot back and raises CreateSkipped. ``stop`` (stopped when ``may_send()`` turns
        False) cuts short the wait for a slot and a 429's pause.

        ``watch`` (a job's whole life, run_job's): the create goes out from a task that goes on
        to emit CREATED and follow the task (:meth:`_launch`), and this returns only when the
        task has news for a watcher: its outcome, or with ``watch=True`` (statuses shown) its
        first status, or ``timeout`` seconds after the answer (the watch's own timeout starts
        there; see :attr:`_Task.answered_at`). One task and two trips through the loop a job
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
                # its answer held back by _CancelHeldBack.launched alone: no scope at all, a
                # scope costs about as much to enter and leave as the rest of the create.
                shield = (
                    anyio.CancelScope(shield=True) if watch is None else contextlib.nullcontext()
                )
                with shield, _CancelHeldBack() as held:
                    if hook is not None:
                        with anyio.CancelScope(shield=True):
                            await emit(hook, TaskEvent(EventKind.CREATING, job.key, job.request))
                    # The task exists from somewhere between send and answer: dating it from
                    # the send puts the first poll no later than one base interval after it.
                    sent_at = self._clock()
                    launch: _Launch | None = None
                    try:
                        if watch is None:
                            task_id: str = await held.answer(
                                self.transport.call(call, self.provider.decode_create, safe=False)
                            )
                        else:
                            launch = _Launch(
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
                            return _launched_task(launch, launched, attempt)
                        task = self._book(job, owner, task_id, callback_expected, sent_at)
                        await self._created(task, job, hook)
                        return task
                    # Definitely not created: a journal records that before any pause. A hook
                    # that fails here only loses a note; the create is retried regardless.
                    assert rate_limited is not None
                    with anyio.CancelScope(shield=True):
                        await _Observer(hook, "the event hook")(
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
    ) -> _Task:
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

    async def _created(self, task: _Task, job: Job, hook: EventHook | None) -> None:
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

    def _launch(self, launch: _Launch) -> None:
        """Send the launch's create from a task of its own that goes on to follow the task."""
        if self._closing:
            raise RuntimeError("the client is closing")
        self._launching.add(asyncio.get_running_loop().create_task(self._launched(launch)))

    async def _launched(self, launch: _Launch) -> None:
        """The launch's task: the create, CREATED, then the task's follower (see create()).

        Nobody cancels it before it follows (only a closing loop does): a create is never cut
        off mid-flight, nor its CREATED hook.
        """
        sender = asyncio.current_task()
        assert sender is not None
        job = launch.job
        timer: asyncio.TimerHandle | None = None
        task: _Task | None = None
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
                _wake(launch.woken)  # a failed hook fails the job; the task is followed anyway
            else:
                if launch.timeout is not None:
                    timer = asyncio.get_running_loop().call_later(
                        launch.timeout, _wake, launch.woken
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
            _wake(launch.woken)

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

    # -- watching ----------------------------------------------------------------------------

    async def wait(
        self,
        job: Job,
        *,
        task_id: str | None = None,
        timeout: float | None,  # noqa: ASYNC109 - the error names the task and its last state
        on_progress: ProgressHook | None = None,
        hook: EventHook | None = None,
    ) -> TaskResult:
        """Watch ``job``'s task (``task_id``, or the job's) until it is terminal; a failed task
        is returned, not raised.

        A task nobody follows yet (an id from elsewhere) is followed without a slot, and only
        while somebody watches it. Leaving early, by timeout or cancellation, leaves the
        follower running: the task's slot is freed when the task ends.
        """
        task_id = task_id if task_id is not None else job.task_id
        assert task_id is not None
        task = self._tasks.get(task_id)
        if task is None:
            task = self._register(task_id, job.request, None, created_here=False)
        return await self._watch(job, task, timeout, on_progress, hook)

    async def _watch(
        self,
        job: Job,
        task: _Task,
        timeout: float | None,  # noqa: ASYNC109 - see wait()
        on_progress: ProgressHook | None,
        hook: EventHook | None,
        *,
        waited: float = 0.0,
    ) -> TaskResult:
        """:meth:`wait` for a task of ours, followed or over, ``waited`` seconds into
        ``timeout`` already."""
        task_id = task.task_id
        left = timeout - waited if timeout is not None else None
        request = job.request if job.request is not None else task.request
        # With no hook to show them to, the statuses before the last wake nobody: one wake a
        # poll would cost a trip through the loop each.
        shows = on_progress is not None or hook is not None
        task.watchers += 1
        try:
            if not shows:
                if await _outcome_within(task, left):
                    return _result_of(task, request, job.key)
            else:
                progress = _Observer(on_progress, "on_progress")
                events = _Observer(hook, "the event hook")
                # The hooks are inside the timeout too: a hook that hangs does not hang the wait.
                with anyio.move_on_after(left if left is not None else math.inf):
                    shown: TaskStatus | None = None
                    while True:
                        changed = task.change()
                        if task.latest is not None and task.latest is not shown:
                            status = shown = task.latest
                            if on_progress is not None:
                                await progress(status, task_id)
                            if hook is not None and not status.is_terminal:
                                await events(
                                    TaskEvent(
                                        EventKind.PROGRESS,
                                        job.key,
                                        request,
                                        task_id,
                                        status=status,
                                    ),
                                    job.key,
                                )
                            continue
                        if task.over:
                            return _result_of(task, request, job.key)
                        await changed.wait()
            last = task.latest.state if task.latest is not None else None
            raise WaitTimeoutError(
                task_id, timeout or 0.0, str(last) if last else None
            ) from task.last_error
        finally:
            task.watchers -= 1
            if task.watchers == 0 and task.slot is None and not task.created_here:
                # Someone else's id that nobody watches any more: nothing to keep count of.
                if not task.over:
                    self._tasks.pop(task.task_id, None)
                _stop_follower(task)

    # -- one job, start to end ---------------------------------------------------------------

    async def run_job(
        self,
        attempt: Attempt,
        *,
        timeout: float | None,  # noqa: ASYNC109 - see wait()
        hook: EventHook | None = None,
        may_send: Callable[[], bool] | None = None,
        stop: SendingStop | None = None,
        download_to: Path | None = None,
        filename: FileNamer | None = None,
        reuse_file: FileReuser | None = None,
        on_progress: ProgressHook | None = None,
    ) -> TaskResult | None:
        """Create (or adopt), watch, fetch: the job's result, failures included; None when the
        run stopped creating before the job was sent. SUCCEEDED/FAILED are emitted here."""
        job = attempt.job
        try:
            result = await self._outcome(
                attempt,
                timeout=timeout,
                hook=hook,
                may_send=may_send,
                stop=stop,
                download_to=download_to,
                filename=filename,
                reuse_file=reuse_file,
                on_progress=on_progress,
            )
        except CreateSkipped:
            return None
        if hook is not None:
            kind = EventKind.SUCCEEDED if result.ok else EventKind.FAILED
            await _Observer(hook, "the event hook")(
                TaskEvent(kind, job.key, job.request, result.task_id, result=result), job.key
            )
        return result

    async def generate(
        self,
        job: Job,
        *,
        timeout: float | None,  # noqa: ASYNC109 - see wait()
        on_progress: ProgressHook | None,
        download_to: Path | None,
        hook: EventHook | None,
    ) -> TaskResult:
        """SoraClient.generate: like :meth:`run_job`, but a create or a wait that fails raises
        (the caller of one video wants the error, not a result to inspect)."""
        task_id: str | None = None
        try:
            task_id = await self.create(job, hook)
            result = await self.wait(
                job,
                task_id=task_id,
                timeout=timeout,
                on_progress=on_progress,
                hook=hook,
            )
            if result.ok and download_to is not None:
                result = await self.fetch_files(result, job, dest=download_to, hook=hook)
            kind = EventKind.SUCCEEDED if result.ok else EventKind.FAILED
            await emit(hook, TaskEvent(kind, job.key, job.request, result.task_id, result=result))
        except SoraError as exc:
            # The error is the caller's answer; the hooks (event log, the task's span) still
            # learn that this job ended, as they would in generate_many.
            failed = TaskResult.from_exception(exc, job.request, task_id, key=job.key)
            await _Observer(hook, "the event hook")(
                TaskEvent(EventKind.FAILED, job.key, job.request, task_id, result=failed), job.key
            )
            raise
        finally:
            # The events ran in the caller's own context: a traced task's span must not stay
            # there as the parent of the caller's later requests when this one raised.
            requestspans.use(None)
        return result

    async def _outcome(
        self,
        attempt: Attempt,
        *,
        timeout: float | None,  # noqa: ASYNC109 - see wait()
        hook: EventHook | None,
        may_send: Callable[[], bool] | None,
        stop: SendingStop | None,
        download_to: Path | None,
        filename: FileNamer | None,
        reuse_file: FileReuser | None,
        on_progress: ProgressHook | None,
    ) -> TaskResult:
        job = attempt.job
        try:
            if isinstance(job.request, str):  # a plain prompt
                job = attempt.job = Job(VideoRequest(job.request), job.key, job.task_id)
            if not isinstance(job.request, VideoRequest):
                raise ValidationError(
                    "requests", job.request, "VideoRequest, str or Job items", reason="bad item"
                )
            if job.task_id is None:
                try:
                    # With nobody to show statuses to, the job's task is next woken at its end.
                    shows = on_progress is not None or hook is not None
                    task = await self._create(
                        job, hook, may_send, stop, watch=shows, timeout=timeout, attempt=attempt
                    )
                    attempt.task_id = task.task_id
                except HookFailedAfterCreate as exc:
                    # Alive and paid for: its id stays in the result, the log and the list.
                    attempt.task_id = exc.task_id
                    logger.error("job %r: %s; it is alive on the server", job.key, exc)
                    raise
                # Not wait(): the task may be over and no longer listed.
                waited = self._clock() - task.answered_at if task.answered_at is not None else 0.0
                result = await self._watch(job, task, timeout, on_progress, hook, waited=waited)
            else:
                attempt.task_id = job.task_id
                if isinstance(hook, requestspans.TaskSpans):
                    # No event comes before the follower adopt() spawns, in a copy of this
                    # context: the task's span starts here, or its polls would be no one's.
                    hook.adopting(job.key, job.task_id)
                await self.adopt(job.task_id, job.request)
                result = await self.wait(
                    job,
                    task_id=attempt.task_id,
                    timeout=timeout,
                    on_progress=on_progress,
                    hook=hook,
                )
            attempt.result = result
            if result.ok and download_to is not None:
                result = await self.fetch_files(
                    result, job, dest=download_to, hook=hook, filename=filename, reuse=reuse_file
                )
                attempt.result = result
            return result
        except CreateSkipped:
            raise
        except (SoraError, HookFailedAfterCreate) as exc:
            return TaskResult.from_exception(exc, job.request, attempt.task_id, key=job.key)
        except Exception as exc:  # a bug must not abort the batch: fail this one job
            logger.exception("unexpected error in job %r", job.key)
            return TaskResult.from_exception(exc, job.request, attempt.task_id, key=job.key)

    # -- files -------------------------------------------------------------------------------

    async def fetch_files(
        self,
        result: TaskResult,
        job: Job,
        *,
        dest: Path,
        hook: EventHook | None = None,
        filename: FileNamer | None = None,
        reuse: FileReuser | None = None,
    ) -> TaskResult:
        """``result`` with its files written into ``dest`` (``files``), or with why they could
        not be (``download_error``: the server's fault or the destination's)."""
        on_file: Callable[[DownloadedFile], Awaitable[None]] | None = None
        if hook is not None:  # no events, nor a closure, made for nobody
            events = _Observer(hook, "the event hook")

            async def on_file(file: DownloadedFile) -> None:
                event = TaskEvent(
                    EventKind.DOWNLOADED,
                    job.key,
                    job.request,
                    result.task_id,
                    result=result,
                    file=file,
                )
                await events(event, job.key)

            # A journal learns "succeeded, fetching" before the first byte is written.
            await events(
                TaskEvent(
                    EventKind.DOWNLOADING, job.key, job.request, result.task_id, result=result
                ),
                job.key,
            )
        try:
            files = await self.download(result, dest, filename, on_file, reuse)
        except (SoraError, OSError) as exc:  # OSError: the destination (disk full, permission)
            return attrs.evolve(result, download_error=f"{type(exc).__name__}: {exc}")
        return attrs.evolve(result, files=[file.path for file in files])

    async def download(
        self,
        result: TaskResult,
        dest: Path,
        filename: FileNamer | None = None,
        on_file: Callable[[DownloadedFile], Awaitable[None] | None] | FileHook | None = None,
        reuse: FileReuser | None = None,
    ) -> list[DownloadedFile]:
        """Write a succeeded result's videos into ``dest`` (see SoraClient.download)."""
        if result.task_id is None or not result.state.is_terminal or not result.video_urls:
            raise DownloadError(
                f"nothing to download for task {result.task_id}: state {result.state}, "
                f"{len(result.video_urls)} video URL(s)"
            )
        count = len(result.video_urls)
        files = []
        for index, url in enumerate(result.video_urls):
            name = (
                filename(result, index, count)
                if filename is not None
                else video_filename(result.task_id, index, count)
            )
            kept = reuse(result, dest / name) if reuse is not None else None
            if kept is not None:
                files.append(kept)
                continue
            async with self._downloads:
                tracer = requestspans.current()
                span = tracer.start("GET", Endpoint.DOWNLOAD) if tracer is not None else None
                try:
                    file = await download_file(
                        self.transport.session,
                        url,
                        dest / name,
                        read_timeout=self.transport.timeouts.download_read,
                        connect_timeout=self.transport.timeouts.connect,
                        max_bytes=self._download_max_bytes,
                        proxy_for=self.transport.proxy_for,
                        span=span,
                    )
                except BaseException as exc:
                    if span is not None:
                        span.end(exc)
                    raise
                if span is not None:
                    span.end(None)
            files.append(file)
            if on_file is not None:
                await call_hook(on_file, file)
        return files


async def _waking(request: Awaitable[T], waiter: asyncio.Future[None]) -> T:
    try:
        return await request
    finally:
        if not waiter.done():
            waiter.set_result(None)


class _CancelHeldBack:
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

    async def launched(self, launch: _Launch) -> _Task:
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

    def __enter__(self) -> _CancelHeldBack:
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


def _launched_task(launch: _Launch, task: _Task, attempt: Attempt | None) -> _Task:
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
class _Launch:
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
    answered: asyncio.Future[_Task] = attrs.field(factory=_future)
    #: The caller's wake: the task has news (its outcome or first status), or the job failed.
    woken: asyncio.Future[None] = attrs.field(factory=_future)
    #: The CREATED hook raised (the job fails; the task is followed all the same).
    hook_error: Exception | None = None
