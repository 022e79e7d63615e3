"""generate_many: governed fan-out of many requests, yielding results in completion order.

This module is only about concurrency; each job's life (slot, create or adopt, polling,
files, events) is :meth:`sora_async.lifecycle.TaskRuntime.run_job`'s.

Shape of a run: one feeder pulls the input lazily and hands each job to an idle worker,
starting a new one only while there are fewer than ``2 x cap``; with all of them busy it waits
before pulling the next, so live coroutines and pulled-but-unfinished inputs stay O(cap)
however long the input is. A worker runs its job and hands the result to the consumer through
an unbuffered stream (a result counts as delivered only once the consumer has taken it), and
only then takes the next job.

The run lives in the client's task group, not in the consumer's frame: an async generator
cannot own a task group safely (leaving the ``async for`` early closes it from another task).
Stopping (``break``, an exception or cancellation in the consumer, ``aclose()``) cancels the
feeder and the workers at once, so no new task is created; a create already on the wire is
shielded until its answer is recorded. Nothing is dropped silently: tasks still alive on the
server are logged and kept in ``run.unfinished`` (the client goes on following them, and
frees each one's slot when it ends), and results the server had already finished but the
consumer never took are logged and kept in ``run.undelivered``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import attrs

from .events import EventHook, FileNamer, FileReuser, Job
from .handoff import Handoff
from .lifecycle import Attempt, SendingStop, TaskRuntime
from .models import TaskResult, VideoRequest

__all__ = ["GenerationRun"]

logger = logging.getLogger("sora_async")

Requests = Iterable[VideoRequest | str | Job] | AsyncIterable[VideoRequest | str | Job]
Spawn = Callable[..., None]


class GenerationRun:
    """An async iterator of results (and an async context manager) for one fan-out.

    A handle on the run's engine. The engine works in the client's task group and never refers
    back to this handle, so the handle is collected as soon as the consumer lets go of it
    (``break`` out of ``async for`` calls nothing on the iterator), and that stops the run.
    """

    def __init__(
        self,
        runtime: TaskRuntime,
        spawn: Spawn,
        requests: Requests,
        *,
        timeout: float | None,
        on_event: EventHook | None,
        download_to: Path | None,
        filename: FileNamer | None,
        reuse_file: FileReuser | None = None,
    ) -> None:
        self._engine = _Engine(
            runtime,
            spawn,
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
        """Stop creating at once; watchers are cancelled and live tasks reported. Not awaited."""
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
    def undelivered(self) -> list[TaskResult]:
        """Results of tasks that ended on the server but were never yielded (early stop)."""
        return self._engine.undelivered

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
        runtime: TaskRuntime,
        spawn: Spawn,
        requests: Requests,
        *,
        timeout: float | None,
        on_event: EventHook | None,
        download_to: Path | None,
        filename: FileNamer | None,
        reuse_file: FileReuser | None,
    ) -> None:
        self._runtime = runtime
        self._spawn = spawn
        self._requests = requests
        # Stopped with draining or stopping: the creates waiting for a slot or out a 429.
        self._sending = SendingStop()
        self._job_options: dict[str, Any] = {
            "timeout": timeout,
            "hook": on_event,
            "may_send": self._may_send,
            "stop": self._sending,
            "download_to": download_to,
            "filename": filename,
            "reuse_file": reuse_file,
        }
        # A job waits for one of at most 2 x cap workers; an idle worker waits on this
        # unbuffered hand-off, so a job is handed over only to a worker ready to take it.
        self._max_workers = 2 * runtime.governor.total
        self._workers = 0
        self._handed: Handoff[Job] = Handoff()
        # Unbuffered: a send returns only once the consumer has the result in hand.
        self._results: Handoff[TaskResult] = Handoff()
        self._scope = anyio.CancelScope()
        self._feeder_scope = anyio.CancelScope()
        self._draining = False
        self._done = anyio.Event()
        self._started = False
        self._stopping = False
        self._error: BaseException | None = None
        self._left: list[Attempt] = []
        self._unfinished: dict[str, Job] = {}
        self._undelivered: list[TaskResult] = []
        self._submitted = 0

    # -- consumer side -----------------------------------------------------------------------

    async def next(self) -> TaskResult:
        self.start()
        try:
            # A result a worker is waiting to hand over is taken without a wait.
            try:
                return self._results.receive_nowait()
            except anyio.WouldBlock:
                return await self._results.receive(refused=True)
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
        # A result handed over as the consumer was cancelled, and never taken since.
        self._undelivered.extend(self._results.close_receiving())

    def drain(self) -> None:
        self._draining = True
        self._sending.stop()
        self._feeder_scope.cancel()

    @property
    def draining(self) -> bool:
        return self._draining

    def stop(self) -> None:
        self._stopping = True
        self._sending.stop()
        self._scope.cancel()

    def abandon(self) -> None:
        """The handle was dropped: stop a run that is still going (best effort, not awaited)."""
        if self._started and not self._done.is_set():
            with contextlib.suppress(Exception):  # even at interpreter shutdown
                self.stop()

    @property
    def unfinished(self) -> dict[str, Job]:
        return dict(self._unfinished)

    @property
    def undelivered(self) -> list[TaskResult]:
        return list(self._undelivered)

    @property
    def submitted(self) -> int:
        return self._submitted

    # -- producer side -----------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._spawn(self._main)

    async def _main(self) -> None:
        try:
            with self._scope:
                async with anyio.create_task_group() as group:
                    try:
                        with self._feeder_scope:
                            await self._feed(group)
                    except Exception as exc:
                        # The input itself failed (a generator raised): running jobs are
                        # cancelled; the consumer gets this error, not the task group's
                        # wrapping of it, after the results already delivered.
                        logger.error(
                            "generate_many stopped: the input raised %s", type(exc).__name__
                        )
                        self._error = exc
                        group.cancel_scope.cancel()
                    finally:
                        self._handed.close_sending()
        finally:
            self._handed.close_receiving()
            self._report_left()
            self._results.close_sending()
            self._done.set()

    async def _feed(self, group: anyio.abc.TaskGroup) -> None:
        async for job in self._jobs():
            try:
                self._handed.send_nowait(job)  # to a worker waiting idle
            except anyio.WouldBlock:
                if self._workers < self._max_workers:
                    self._workers += 1
                    group.start_soon(self._worker, job)
                else:
                    await self._handed.send(job, refused=True)

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

    async def _worker(self, job: Job) -> None:
        """Jobs one after another, until the input ends or the run stops creating: each from
        input to delivered result.

        A worker per job would cost a task (and its cancel scope) per job; the pool keeps the
        same bound on the work in progress. A job's work is written here rather than in a
        coroutine of its own: that would be one more frame to resume at each of its waits.
        """
        while True:
            self._submitted += 1
            attempt = Attempt(job)
            delivered = False
            try:
                result = await self._runtime.run_job(attempt, **self._job_options)
                if result is not None:  # None: not sent, the run stopped creating first
                    try:
                        self._results.send_nowait(result)  # to a consumer already waiting
                    except anyio.WouldBlock:
                        await self._results.send(result, refused=True)
                    delivered = True
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the consumer went away; reported below
            finally:
                if not delivered:
                    self._left.append(attempt)
            try:
                try:
                    job = self._handed.receive_nowait()
                except anyio.WouldBlock:
                    job = await self._handed.receive(refused=True)
            except anyio.EndOfStream:  # the feeder is done: no more input, or a drain
                return

    def _may_send(self) -> bool:
        # Stopping too: a worker handed a slot just before stop() resumes without being
        # cancelled (the cancellation reaches it at its next await, inside the create shield).
        return not (self._draining or self._stopping)

    def _report_left(self) -> None:
        """Sort the jobs that never delivered a result: alive on the server, or finished there
        but never yielded. Either way nothing is dropped silently."""
        alive = self._runtime.unfinished
        for attempt in self._left:
            if attempt.result is not None:
                self._undelivered.append(attempt.result)
            elif attempt.task_id is not None and attempt.task_id in alive:
                self._unfinished[attempt.task_id] = attempt.job
        if self._unfinished:
            logger.warning(
                "generate_many ended with %d task(s) still alive on the server "
                "(not abandoned: the client follows them until they end; see run.unfinished / "
                "client.unfinished_tasks): %s",
                len(self._unfinished),
                ", ".join(sorted(self._unfinished)),
            )
        if self._undelivered:
            logger.warning(
                "generate_many ended with %d finished task(s) whose results were never "
                "yielded (see run.undelivered): %s",
                len(self._undelivered),
                ", ".join(sorted(str(r.task_id) for r in self._undelivered)),
            )
