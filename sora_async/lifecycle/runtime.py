"""TaskRuntime, the one owner of each task's life: its state, its watchers, a job end to end."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .. import requestspans
from ..download import DEFAULT_MAX_DOWNLOAD_BYTES, DownloadedFile
from ..errors import SoraError, ValidationError, WaitTimeoutError
from ..events import (
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
    emit,
)
from ..governor import Governor
from ..models import TaskResult, TaskStatus, VideoRequest
from ..polling import PollPlanner
from ..providers import Provider
from ..retry import RetryPolicy
from ..transport import Transport
from .creating import Creating
from .files import TaskFiles
from .followed import Attempt, FollowedTask, outcome_within, result_of, stop_following
from .observer import Observer
from .stopping import SendingStop

if TYPE_CHECKING:
    from ..callbacks import CallbackReceiver

__all__ = ["TaskRuntime"]

logger = logging.getLogger("sora_async")


class TaskRuntime(Creating):
    """The services one task's life needs (provider, transport, governor, planner, receiver),
    and the tasks being followed. One per client; see :mod:`sora_async.lifecycle`.

    Built in layers that share this one object's state: :class:`.following.Following`
    (followers, a task's end), :class:`.creating.Creating` (the create path), then watching and
    whole jobs here. Layers, not objects of their own: the owner stays one, and a call between
    layers is a plain method call, with no hop through a delegate on every task.
    """

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
        self._acquire_nowait = getattr(governor, "acquire_nowait", None)
        self.planner = planner
        self.receiver = receiver
        self._files = TaskFiles(transport, max_downloads, download_max_bytes)
        self._retry = retry
        self._spawn = spawn
        self._clock = clock
        self._tasks = {}
        self._followers = set()
        self._launching = set()
        self._closing = False

    def download(
        self,
        result: TaskResult,
        dest: Path,
        filename: FileNamer | None = None,
        on_file: Callable[[DownloadedFile], Awaitable[None] | None] | FileHook | None = None,
    ) -> Coroutine[Any, Any, list[DownloadedFile]]:
        """Write a succeeded result's videos into ``dest`` (see SoraClient.download)."""
        return self._files.download(result, dest, filename, on_file)

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
        task: FollowedTask,
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
                if await outcome_within(task, left):
                    return result_of(task, request, job.key)
            else:
                progress = Observer(on_progress, "on_progress")
                events = Observer(hook, "the event hook")
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
                            return result_of(task, request, job.key)
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
                stop_following(task)

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
            await Observer(hook, "the event hook")(
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
                result = await self._files.fetch_files(result, job, dest=download_to, hook=hook)
            kind = EventKind.SUCCEEDED if result.ok else EventKind.FAILED
            await emit(hook, TaskEvent(kind, job.key, job.request, result.task_id, result=result))
        except SoraError as exc:
            # The error is the caller's answer; the hooks (event log, the task's span) still
            # learn that this job ended, as they would in generate_many.
            failed = TaskResult.from_exception(exc, job.request, task_id, key=job.key)
            await Observer(hook, "the event hook")(
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
                result = await self._files.fetch_files(
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
