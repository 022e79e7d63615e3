"""Group commit: the writes that arrive while one commit is in flight share the next one.

A batch's event hooks each need a journal write to be durable before their task goes on (the
intent before the create is sent, the task id before the first poll, the end before the
manifest says so). Written one by one, each costs a transaction and an fsync, on the event
loop. :class:`GroupCommit` is the one writer of a run: callers queue a write and await its
acknowledgement; the writer takes everything queued, runs it in one transaction
(:meth:`Journal.run_group`) on a disk thread of its own (:mod:`sora_async.diskthread`), which
ends with the run, and wakes every caller once that transaction is on disk. While it commits,
new writes queue for the next group, so twenty tasks answered at once cost one fsync, not
twenty, and the event loop never waits on the disk.

Not every write needs its own fsync. A write that says a create is about to be sent or what it
made (``fsync=True``, the default) is on disk, power cut included, before its caller goes on:
that is what keeps a prompt from being paid twice. A write that only records how a created task
ended (``fsync=False``) is committed with ``synchronous=NORMAL``: it survives ``kill -9`` at
once, and a power cut from the next fsync'd group on (an fsync of the WAL takes every frame
before it along); losing it costs a re-run one poll of the task, or one check of a file that
is verified anyway. A group is fsync'd when any write in it asks for it. :meth:`post` queues
such a write without waiting for it, so a task's end does not wait for its bookkeeping;
:meth:`settle` waits for every posted write and makes them power-cut safe.

A write that is refused (a transition the state table does not allow) fails alone; a group
whose commit fails fails every write in it, so no caller is told "durable" for something that
is not on disk. Reads go through the writer too, between two groups: the connection is the
journal's, and the event loop must not wait for a commit to get it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from ...diskthread import DiskThread
from .store import Journal
from .types import JournalError

__all__ = ["GroupCommit"]

T = TypeVar("T")


#: A queued write or read: the call, whether its group must fsync, what a poster is told
#: (``then(ok, value)``) and what an awaiting caller waits on. A tuple, not an object: four
#: of them a task, and an object's __init__ is a call.
_Call = tuple[
    Callable[[], Any],
    bool,
    "Callable[[bool, Any], None] | None",
    "asyncio.Future[Any] | None",
]


class GroupCommit:
    """The one journal writer of a run; :meth:`run` it in a task group for the run's life."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._writes: list[_Call] = []
        self._reads: list[_Call] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Set while the writer waits for something to do; the next caller wakes it.
        self._waiting: asyncio.Future[None] | None = None
        self._stopped = False
        #: Posted writes not yet settled, and the event set when the last one is.
        self._posted = 0
        self._idle = anyio.Event()
        self._idle.set()
        #: Groups committed (each one transaction): for tests and measurements.
        self.groups = 0

    def write(self, call: Callable[[], T], *, fsync: bool = True) -> asyncio.Future[T]:
        """Run ``call`` (journal writes) in the next group; the future it returns is done once
        that group is committed (with ``fsync``, on disk: see the module docstring).

        The future raises what the call raised, or the group's JournalError when its commit
        failed. A plain function, not a coroutine: twice a task, each awaiting frame is a call
        at the start and another at the wake-up.
        """
        if self._stopped:
            raise JournalError(f"the journal {self.journal.path} is no longer written")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._writes.append((call, fsync, None, done))
        if self._waiting is not None:
            self._wake()
        return done

    def post(self, call: Callable[[], Any], then: Callable[[bool, Any], None]) -> None:
        """Queue ``call`` (journal writes that need no fsync) for the next group and return at
        once; ``then(ok, result_or_exception)`` is called on the event loop when its group
        ended. Raises JournalError when the writer has stopped."""
        if self._stopped:
            raise JournalError(f"the journal {self.journal.path} is no longer written")
        if not self._posted:
            self._idle = anyio.Event()
        self._posted += 1
        self._writes.append((call, False, then, None))
        if self._waiting is not None:
            self._wake()

    async def settle(self) -> None:
        """Wait for every posted write, then make what they wrote power-cut safe."""
        await self._idle.wait()
        await self._submit(self.journal.sync, self._reads)

    async def read(self, call: Callable[[], T]) -> T:
        """Run ``call`` (journal reads) off the event loop, between two groups."""
        return await self._submit(call, self._reads)  # type: ignore[no-any-return]

    async def _submit(self, call: Callable[[], Any], queue: list[_Call]) -> Any:
        if self._stopped:
            raise JournalError(f"the journal {self.journal.path} is no longer written")
        done = asyncio.get_running_loop().create_future()
        queue.append((call, False, None, done))
        self._wake()
        return await done

    def _wake(self) -> None:
        waiting = self._waiting
        if waiting is not None:
            self._waiting = None
            if not waiting.done():  # done: the writer was cancelled while it waited
                waiting.set_result(None)

    def _settle(self, pending: _Call, ok: bool, value: Any) -> None:
        _, _, then, done = pending
        if then is not None:  # a posted write: one fewer to wait for
            self._posted -= 1
            if not self._posted:
                self._idle.set()
            then(ok, value)
        elif done is not None and not done.done():  # done: its caller was cancelled
            if ok:
                done.set_result(value)
            else:
                done.set_exception(value)

    async def run(self) -> None:
        """Commit groups until cancelled; on the way out, what is still queued fails."""
        # A thread of its own, not the files' one: a create waits for its intent's commit, and
        # a batch of file fsyncs ahead of it cost the run a third of its wall time.
        loop = asyncio.get_running_loop()
        disk = DiskThread(loop, name="sora-async journal")
        try:
            while True:
                if not self._writes and not self._reads:
                    self._waiting = loop.create_future()
                    await self._waiting
                writes, self._writes = self._writes, []
                reads, self._reads = self._reads, []
                # Not abandoned on cancellation: the callers learn how their group ended.
                with anyio.CancelScope(shield=True):
                    outcomes = await disk.run(self._flush, writes, reads)
                for pending, (ok, value) in zip([*writes, *reads], outcomes, strict=True):
                    self._settle(pending, ok, value)
        finally:
            disk.stop()
            self._stopped = True
            stopped = JournalError(f"the journal {self.journal.path} is no longer written")
            for pending in [*self._writes, *self._reads]:
                self._settle(pending, False, stopped)

    def _flush(self, writes: list[_Call], reads: list[_Call]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        if writes:
            calls = [pending[0] for pending in writes]
            fsync = any(pending[1] for pending in writes)
            outcomes = self.journal.run_group(calls, fsync=fsync)
            self.groups += 1
        for pending in reads:
            try:
                outcomes.append((True, pending[0]()))
            except Exception as exc:
                outcomes.append((False, exc))
        return outcomes
