"""TaskRuntime's base: each task polled by one follower to its end, its slot freed on any end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import anyio

from ..errors import AuthenticationError, NotFoundError, ProtocolError, SoraError
from ..governor import Governor, Slot
from ..models import TaskState, TaskStatus, VideoRequest
from ..polling import PollPlanner, poll_until_terminal
from ..providers import Provider
from ..retry import RetryPolicy
from ..transport import Transport
from .followed import FollowedTask, stop_following

if TYPE_CHECKING:
    from ..callbacks import CallbackReceiver

__all__ = ["UNKNOWN_SLOT_HOLD_FACTOR", "Following"]

logger = logging.getLogger("sora_async")

#: A create whose outcome is unknown may have started a task that counts against the account,
#: but without its id nobody can follow it: its slot is held for this many expected task
#: durations, then given back.
UNKNOWN_SLOT_HOLD_FACTOR = 2.0
#: Poll errors after which a task is not the account's: its slot goes back at once.
_DISOWNED = (NotFoundError, AuthenticationError)


async def _reraise(error: BaseException) -> None:
    raise error


class Following:
    """The part of :class:`~sora_async.lifecycle.TaskRuntime` that follows tasks: what is
    followed, one poll, the followers, a task's end (learned, its slot freed).

    A layer of the one owner, not an owner of its own: its state is set by
    ``TaskRuntime.__init__``, and the layers above (the create path, the watchers) share it.
    """

    provider: Provider
    transport: Transport
    governor: Governor
    planner: PollPlanner
    receiver: CallbackReceiver | None
    _retry: RetryPolicy | None
    _spawn: Callable[..., None]
    _clock: Callable[[], float]
    _tasks: dict[str, FollowedTask]
    _followers: set[asyncio.Task[None]]
    #: Launches' tasks not following yet (their create or CREATED hook under way), held
    #: here because the loop keeps only weak references; never cancelled. Their callers
    #: wait for them when cancelled, so a closing client's task group waits too.
    _launching: set[asyncio.Task[None]]
    _closing: bool

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

    def _release(self, task: FollowedTask) -> None:
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
    ) -> FollowedTask:
        task = FollowedTask(
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

    async def _status(self, task_id: str, *, follower: FollowedTask | None = None) -> TaskStatus:
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

    def _start_follower(self, task: FollowedTask) -> None:
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

    async def _following(self, task: FollowedTask) -> None:
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

    async def _follow(self, task: FollowedTask) -> None:
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
            # Stopped by stop_following: nothing more to do. (A cancel scope around the poll
            # loop would say so too, at the cost of entering and leaving it for every task.)
        finally:
            if wake is not None and receiver is not None:
                receiver.unwatch(task.task_id, wake)

    def _finish(
        self,
        task: FollowedTask,
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
            stop_following(task)
        task.publish()

    def _give_up(self, task: FollowedTask, error: SoraError) -> None:
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
