"""generate_many: governed fan-out of many requests, yielding results in completion order.

Shape of a run: one feeder pulls the input lazily and starts one worker per job, but only
after taking a *work token*; there are ``2 x cap`` tokens, so live coroutines and pulled-but-
unfinished inputs stay O(cap) however long the input is. A worker creates the task (taking an
account slot from the governor, so at most ``cap`` tasks are alive), polls it to the end (which
frees the slot), optionally downloads its files, and hands the result to the consumer through a
bounded stream; its token comes back once the result is delivered.

The run lives in the client's task group, not in the consumer's frame: an async generator
cannot own a task group safely (leaving the ``async for`` early closes it from another task).
Stopping (``break``, an exception or cancellation in the consumer, ``aclose()``) cancels the
feeder and the pollers at once, so no new task is created; a create already on the wire is
shielded until its answer is recorded. Tasks alive on the server at that moment are logged,
kept in ``run.unfinished`` and in ``client.unfinished_tasks``, and their slots are returned.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import attrs

from .errors import SoraError, ValidationError, WaitTimeoutError
from .events import CreateSkipped, EventHook, EventKind, HookFailedAfterCreate, Job, TaskEvent, emit
from .models import TaskResult, VideoRequest

if TYPE_CHECKING:
    from .client import SoraClient

__all__ = ["GenerationRun"]

logger = logging.getLogger("sora_async")


class GenerationRun:
    """An async iterator of results (and an async context manager) for one fan-out.

    A handle on the run's engine. The engine works in the client's task group and never refers
    back to this handle, so the handle is collected as soon as the consumer lets go of it
    (``break`` out of ``async for`` calls nothing on the iterator), and that stops the run.
    """

    def __init__(
        self,
        client: SoraClient,
        requests: Iterable[VideoRequest | Job] | AsyncIterable[VideoRequest | Job],
        *,
        timeout: float | None,
        on_event: EventHook | None,
        download_to: Path | None,
        filename: Any,
        reuse_file: Any = None,
    ) -> None:
        self._engine = _Engine(
            client,
            requests,
            timeout=timeout,
            on_event=on_event,
            download_to=download_to,
            filename=filename,
            reuse_file=reuse_file,
        )

    def __aiter__(self) -> AsyncIterator[TaskResult]:
        # A fresh iterator that only the `async for` holds: leaving the loop drops it, which
        # stops the run even when the caller keeps a name for this handle.
        return _Iteration(self._engine)

    async def __anext__(self) -> TaskResult:
        return await self._engine.next()

    async def __aenter__(self) -> GenerationRun:
        self._engine.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._engine.aclose()

    async def aclose(self) -> None:
        """Stop the run (no new creates) and wait until its live tasks have been reported."""
        await self._engine.aclose()

    def drain(self) -> None:
        """Stop creating, but let the tasks already created run to the end (first Ctrl-C).

        Jobs not yet sent are dropped without a result; the iteration ends when the tasks
        that exist are terminal (and downloaded, with ``download_to``).
        """
        self._engine.drain()

    @property
    def draining(self) -> bool:
        return self._engine.draining

    def stop(self) -> None:
        """Stop creating at once; pollers are cancelled and live tasks reported. Not awaited."""
        self._engine.stop()

    def __del__(self) -> None:
        # The consumer let go without aclose() (break, exception, cancellation).
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.abandon()

    @property
    def unfinished(self) -> dict[str, Job]:
        """Tasks alive on the server when the run stopped early: task id -> job."""
        return self._engine.unfinished

    @property
    def submitted(self) -> int:
        """Jobs pulled from the input so far."""
        return self._engine.submitted


class _Iteration:
    """One ``async for`` over a run; dropping it (break, exception, cancellation) stops the run."""

    __slots__ = ("__weakref__", "_engine")

    def __init__(self, engine: _Engine) -> None:
        self._engine = engine

    def __aiter__(self) -> _Iteration:
        return self

    async def __anext__(self) -> TaskResult:
        return await self._engine.next()

    def __del__(self) -> None:
        self._engine.abandon()


class _Engine:
    """The state and the work of one run; see the module docstring."""

    def __init__(
        self,
        client: SoraClient,
        requests: Iterable[VideoRequest | Job] | AsyncIterable[VideoRequest | Job],
        *,
        timeout: float | None,
        on_event: EventHook | None,
        download_to: Path | None,
        filename: Any,
        reuse_file: Any = None,
    ) -> None:
        self._client = client
        self._requests = requests
        self._timeout = timeout
        self._on_event = on_event
        self._download_to = download_to
        self._filename = filename
        self._reuse_file = reuse_file
        cap = client.governor.total
        self._tokens = anyio.Semaphore(2 * cap)
        self._send, self._receive = anyio.create_memory_object_stream[TaskResult](cap)
        self._scope = anyio.CancelScope()
        self._feeder_scope = anyio.CancelScope()
        self._draining = False
        self._done = anyio.Event()
        self._started = False
        self._stopping = False
        self._error: BaseException | None = None
        self._live: dict[str, Job] = {}
        self._unfinished: dict[str, Job] = {}
        self._submitted = 0

    # -- consumer side -----------------------------------------------------------------------

    async def next(self) -> TaskResult:
        self.start()
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            await self._done.wait()
            if self._error is not None:
                error, self._error = self._error, None
                raise error from None
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self.stop()
        if self._started:
            with anyio.CancelScope(shield=True):
                await self._done.wait()
        self._receive.close()

    def drain(self) -> None:
        self._draining = True
        self._feeder_scope.cancel()

    @property
    def draining(self) -> bool:
        return self._draining

    def stop(self) -> None:
        self._stopping = True
        self._scope.cancel()

    def abandon(self) -> None:
        """The handle was dropped: stop a run that is still going (best effort, not awaited)."""
        if self._started and not self._done.is_set():
            with contextlib.suppress(Exception):  # even at interpreter shutdown
                self.stop()

    @property
    def unfinished(self) -> dict[str, Job]:
        """Tasks alive on the server when the run stopped early: task id -> job."""
        return dict(self._unfinished)

    @property
    def submitted(self) -> int:
        """Jobs pulled from the input so far."""
        return self._submitted

    # -- producer side -----------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._client._spawn(self._main)

    async def _main(self) -> None:
        try:
            with self._scope:
                async with anyio.create_task_group() as group:
                    with self._feeder_scope:
                        async for job in self._jobs():
                            await self._tokens.acquire()
                            group.start_soon(self._work, job)
        except Exception as exc:
            # The input itself failed (a generator raised): running jobs were cancelled;
            # the consumer gets the error after the results already delivered.
            logger.error("generate_many stopped: the input raised %s", type(exc).__name__)
            self._error = exc
        finally:
            self._report_unfinished()
            self._send.close()
            self._done.set()

    async def _jobs(self) -> AsyncIterator[Job]:
        position = 0

        def wrap(item: Any) -> Job:
            if isinstance(item, Job):
                return item if item.key is not None else attrs.evolve(item, key=position)
            return Job(item, key=position)

        # Pull one item per free token only: the input is never read ahead of the work.
        if isinstance(self._requests, AsyncIterable):
            async for item in self._requests:
                yield wrap(item)
                position += 1
        else:
            for item in self._requests:
                yield wrap(item)
                position += 1

    async def _work(self, job: Job) -> None:
        """One job from input to delivered result; its work token comes back at the end."""
        self._submitted += 1
        try:
            result = await self._outcome(job)
            if result is None:
                return  # not sent: the run stopped creating first
            kind = EventKind.SUCCEEDED if result.ok else EventKind.FAILED
            await emit(
                self._on_event,
                TaskEvent(kind, job.key, job.request, result.task_id, result=result),
            )
            await self._send.send(result)
        except anyio.get_cancelled_exc_class():
            for task_id in [t for t, live_job in self._live.items() if live_job is job]:
                self._unfinish(task_id, job)
            raise
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the consumer went away; the result is in the event hook and the logs
        finally:
            for task_id in [t for t, live_job in self._live.items() if live_job is job]:
                del self._live[task_id]
            self._tokens.release()

    async def _outcome(self, job: Job) -> TaskResult | None:
        """Create (or adopt), wait, download: the job's result, failures included."""
        client = self._client
        task_id = job.task_id
        try:
            if not isinstance(job.request, VideoRequest):
                raise ValidationError(
                    "requests", job.request, "VideoRequest or Job items", reason="bad item"
                )
            if task_id is None:
                try:
                    task_id = await client._create(job, self._on_event, self._may_send)
                except CreateSkipped:
                    return None
                except HookFailedAfterCreate as exc:
                    # Alive and paid for: keep its id in the result, the log and the list.
                    task_id = exc.task_id
                    logger.error("job %r: %s; it is alive on the server", job.key, exc)
                    self._unfinished[task_id] = job
                    raise
            else:
                await client.adopt(task_id, job.request)
            self._live[task_id] = job
            result = await client._wait(
                attrs.evolve(job, task_id=task_id), self._timeout, self._on_event
            )
            self._live.pop(task_id, None)
            if result.ok and self._download_to is not None:
                result = await self._fetch_files(result, job)
            return result
        except WaitTimeoutError as exc:
            # Still alive on the server (the client holds its slot a while): report it.
            assert task_id is not None
            self._unfinished[task_id] = job
            return TaskResult.from_exception(exc, job.request, task_id, key=job.key)
        except (SoraError, HookFailedAfterCreate) as exc:
            return TaskResult.from_exception(exc, job.request, task_id, key=job.key)
        except Exception as exc:  # a bug must not abort the batch: fail this one job
            logger.exception("unexpected error in job %r", job.key)
            return TaskResult.from_exception(exc, job.request, task_id, key=job.key)

    def _may_send(self) -> bool:
        # Stopping too: a worker handed a slot just before stop() resumes without being
        # cancelled (the cancellation reaches it at its next await, inside the create shield).
        return not (self._draining or self._stopping)

    def _unfinish(self, task_id: str, job: Job) -> None:
        self._unfinished[task_id] = job
        self._client._abandon(task_id)

    async def _fetch_files(self, result: TaskResult, job: Job) -> TaskResult:
        assert self._download_to is not None
        hook = self._on_event

        async def on_file(file: Any) -> None:
            await emit(
                hook,
                TaskEvent(
                    EventKind.DOWNLOADED,
                    job.key,
                    job.request,
                    result.task_id,
                    result=result,
                    file=file,
                ),
            )

        # A journal learns "succeeded, fetching" before the first byte is written.
        await emit(
            hook,
            TaskEvent(EventKind.DOWNLOADING, job.key, job.request, result.task_id, result=result),
        )
        try:
            files = await self._client._download(
                result, self._download_to, self._filename, on_file, self._reuse_file
            )
        except SoraError as exc:
            return attrs.evolve(result, download_error=f"{type(exc).__name__}: {exc}")
        return attrs.evolve(result, files=[os.fspath(file.path) for file in files])

    def _report_unfinished(self) -> None:
        if self._unfinished:
            logger.warning(
                "generate_many ended with %d task(s) still alive on the server "
                "(not abandoned: see run.unfinished / client.unfinished_tasks): %s",
                len(self._unfinished),
                ", ".join(sorted(self._unfinished)),
            )
