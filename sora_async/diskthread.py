"""Threads for blocking disk work that run it in batches: a few per event loop for files.

A worker-thread trip per file (anyio's ``to_thread``) cost more than the file: a thread woken
and the loop woken for each job, and each thread taking the GIL from the busy event loop at
every system call it returns from. Here a caller queues a job (a list append) and awaits a
future; a free thread takes everything queued, runs it, makes the new names the batch made
durable with one fsync per folder (:func:`sync_directory_later`), and only then wakes the loop,
once, to report every job of the batch.

- One thread serves at first; another starts when a job has waited ``_GROW_AFTER`` for one,
  up to ``threads`` (a slow disk: fsyncs issued together are committed together). A thread
  more than the work needs costs more than it saves: each takes the GIL from the busy event
  loop at every system call it returns from (four threads for fast one-kilobyte files cost the
  run a tenth to a fifth more CPU than one, in pairs on a quiet machine).
- A job that raises fails alone; a folder whose fsync fails fails the jobs that renamed into it.
- A caller cancelled while it waits leaves its job to run; the result is dropped. Whoever needs
  the outcome whatever happens shields the wait (as GroupCommit does for its commits).
- A thread ends soon after its event loop is closed, after a while with nothing to do, and
  when the interpreter exits (it finishes the batch it holds first). None is a daemon: a
  commit or a rename in flight is finished, not cut (an interrupted CLI gives it
  ``cli.shutdown.THREADS_GRACE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.lowlevel

from .durable import fsync_directory

__all__ = ["FILE_THREADS", "DiskThread", "disk_thread", "set_disk_thread", "sync_directory_later"]

T = TypeVar("T")

#: At most this many threads write a loop's files. Each file's fsync waits on the disk, and
#: fsyncs issued together are committed together by the file system: 2,000 one-kilobyte files
#: at load 10, one thread spent 8-10 ms a file (15.7 of the run's 19 s) and made the run's wall
#: a quarter longer than four did; four is also what the downloads used before.
FILE_THREADS = 4
#: A job queued this long without a thread taking it starts another thread (up to the most).
#: One thread's batch of one-kilobyte files on a fast disk took 9 ms at the median and 35 ms
#: at the 99th percentile (20 files at most, a millisecond or two each, much of it waiting for
#: the GIL). With an fsync of 8 ms a file, batches took long enough to grow to four threads,
#: without which a thousand-file run's wall was a third longer.
_GROW_AFTER = 0.05
#: How often an idle thread looks whether its loop is closed (the loop tells it nothing).
_IDLE_CHECK = 0.1
#: An idle thread this long ends (a new one starts with the next job).
_IDLE_END = 10.0

_CURRENT: anyio.lowlevel.RunVar[DiskThread] = anyio.lowlevel.RunVar("sora_async.diskthread")
_local = threading.local()


#: The loop that last asked and its threads. A process nearly always runs one loop at a time,
#: and the run variable's lookup cost seven calls a file; another loop looks it up again.
_last: tuple[asyncio.AbstractEventLoop, DiskThread] | None = None


def disk_thread() -> DiskThread:
    """The running event loop's disk threads for files (made on first use)."""
    global _last  # noqa: PLW0603 - a one-entry cache, replaced whole
    loop = asyncio.get_running_loop()
    last = _last
    if last is not None and last[0] is loop:
        return last[1]
    try:
        thread = _CURRENT.get()
    except LookupError:
        thread = DiskThread(loop, threads=FILE_THREADS)
        _CURRENT.set(thread)
    _last = (loop, thread)
    return thread


def set_disk_thread(thread: DiskThread) -> None:
    """Make ``thread`` the running event loop's disk thread (a test's, recording its fsyncs)."""
    global _last  # noqa: PLW0603 - a one-entry cache, replaced whole
    _CURRENT.set(thread)
    _last = (asyncio.get_running_loop(), thread)


def sync_directory_later(directory: str | os.PathLike[str]) -> None:
    """Make a new or renamed entry of ``directory`` durable before the running job is reported
    done: on a disk thread, once for every job of the batch that asks; elsewhere, at once."""
    folders: dict[str, list[int]] | None = getattr(_local, "folders", None)
    if folders is None:
        fsync_directory(directory)
    else:
        folders.setdefault(os.fspath(directory), []).append(_local.job)


class _Job:
    __slots__ = ("args", "call", "future", "number")

    def __init__(
        self,
        call: Callable[..., Any],
        args: tuple[Any, ...],
        future: asyncio.Future[Any],
        number: int,
    ) -> None:
        self.call = call
        self.args = args
        self.future = future
        #: Its place in the order jobs were queued (jobs are taken in that order).
        self.number = number


class DiskThread:
    """Runs blocking calls for one event loop in ``threads`` threads; see the module docstring.

    ``sync_directory`` makes a folder's new entries durable (tests pass one that records);
    ``idle_end``: seconds without a job after which the thread ends; ``name``: the thread's;
    ``threads``: at most how many serve; ``start_with``: how many the first job starts.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        sync_directory: Callable[[str], None] = fsync_directory,
        idle_end: float = _IDLE_END,
        name: str = "sora-async disk",
        threads: int = 1,
        start_with: int = 1,
    ) -> None:
        self._name = name
        self._threads = threads
        self._start_with = min(start_with, threads)
        self._loop = loop
        self._idle_end = idle_end
        self._sync_directory = sync_directory
        # Not a SimpleQueue: with several threads taking from one, CPython's
        # SimpleQueue.get(timeout=...) can wait forever. A thread woken for an item another
        # thread already took, once its deadline has passed, waits again with a negative
        # timeout, which the C code treats as "no timeout" (seen in CPython 3.11: a disk
        # thread blocked there for good, and the interpreter's exit waiting on it).
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        #: Held while a job is queued and while the thread decides to end, so that no job is
        #: queued for a thread that is leaving.
        self._lock = threading.Lock()
        #: Threads serving, and at most how many.
        self._running = 0
        self._stopping = False
        #: Jobs queued so far, and the number of the last one a thread took (written by the
        #: threads, read on the loop: a late or early read only moves a growth by one look).
        self._queued = 0
        self._taken = 0
        #: The job whose wait the loop is timing (0: none), to grow when a thread is too slow.
        self._timed = 0
        #: Batches run: for tests and measurements.
        self.batches = 0

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` on the disk thread; its result or exception, once any folder it
        renamed into is durable."""
        future: asyncio.Future[T] = self._loop.create_future()
        self._queued += 1
        job = _Job(call, args, future, self._queued)
        with self._lock:
            self._jobs.put(job)
            if self._running == 0:
                self._start(self._start_with)
        if not self._timed and self._running < self._threads:
            self._time_wait()
        return await future

    def _start(self, count: int) -> None:
        # Under self._lock.
        for _ in range(count):
            threading.Thread(target=self._serve, name=self._name, daemon=False).start()
            self._running += 1
        _at_exit.add(self)

    def _time_wait(self) -> None:
        """Look again, after _GROW_AFTER, whether a thread took the newest job."""
        self._timed = self._queued
        self._loop.call_later(_GROW_AFTER, self._look)

    def _look(self) -> None:
        waiting = self._taken < self._timed
        self._timed = 0
        if waiting:
            with self._lock:
                if 0 < self._running < self._threads and not self._stopping:
                    self._start(1)
        if self._taken < self._queued and self._running < self._threads:
            self._time_wait()

    def stop(self) -> None:
        """End the thread once it has run what is queued (idempotent, any thread)."""
        with self._lock:
            self._stopping = True
            for _ in range(self._running):
                self._jobs.put(None)

    def _serve(self) -> None:
        idle = 0.0
        while True:
            try:
                first = self._jobs.get(timeout=_IDLE_CHECK)
            except queue.Empty:
                idle += _IDLE_CHECK
                ending = self._stopping or idle >= self._idle_end or self._loop.is_closed()
                if ending and self._leave():
                    return
                continue
            idle = 0.0
            batch = [first]
            while True:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            jobs = [job for job in batch if job is not None]
            if jobs:
                self._taken = max(self._taken, jobs[-1].number)
                self._run(jobs)
            if None in batch and self._leave():
                return

    def _leave(self) -> bool:
        with self._lock:
            if not self._jobs.empty():
                return False
            self._running -= 1
            return True

    def _run(self, jobs: list[_Job]) -> None:
        self.batches += 1
        outcomes: list[tuple[bool, Any]] = []
        folders: dict[str, list[int]] = {}
        _local.folders = folders
        try:
            for index, job in enumerate(jobs):
                _local.job = index
                try:
                    outcomes.append((True, job.call(*job.args)))
                except StopIteration as exc:  # a future cannot hold one
                    outcomes.append((False, RuntimeError(f"{job.call!r} raised {exc!r}")))
                except BaseException as exc:  # the caller gets it, not the thread
                    outcomes.append((False, exc))
        finally:
            del _local.folders
        for folder, asked in folders.items():
            try:
                self._sync_directory(folder)
            except BaseException as exc:  # a name that is not durable is no success
                for index in asked:
                    outcomes[index] = (False, exc)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(_report, jobs, outcomes)


def _report(jobs: list[_Job], outcomes: list[tuple[bool, Any]]) -> None:
    for job, (ok, value) in zip(jobs, outcomes, strict=True):
        if job.future.done():  # its caller was cancelled
            continue
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


def _stop_all() -> None:
    for thread in list(_at_exit):
        thread.stop()


#: Stopped when the interpreter exits, before it joins the threads left: an idle disk thread
#: would otherwise hold the exit until it sees that its loop is closed. (concurrent.futures'
#: threads end by the same hook.)
_at_exit: weakref.WeakSet[DiskThread] = weakref.WeakSet()
threading._register_atexit(_stop_all)  # type: ignore[attr-defined]
