"""Group commit: the writes that arrive while one commit is in flight share the next one.

A batch's event hooks each need a journal write to be durable before their task goes on (the
intent before the create is sent, the task id before the first poll, the end before the
manifest says so). Written one by one, each costs a transaction and an fsync, on the event
loop. :class:`GroupCommit` is the one writer of a run: callers queue a write and await its
acknowledgement; the writer takes everything queued, runs it in one transaction
(:meth:`Journal.run_group`) in a worker thread, and wakes every caller once that transaction is
on disk. While it commits, new writes queue for the next group, so twenty tasks answered at
once cost one fsync, not twenty, and the event loop never waits on the disk.

A write that is refused (a transition the state table does not allow) fails alone; a group
whose commit fails fails every write in it, so no caller is told "durable" for something that
is not on disk. Reads go through the writer too, between two groups: the connection is the
journal's, and the event loop must not wait for a commit to get it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from .store import Journal
from .types import JournalError

__all__ = ["GroupCommit"]

T = TypeVar("T")


class _Call:
    __slots__ = ("call", "done", "ok", "value")

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.done = anyio.Event()
        self.ok = False
        self.value: Any = None

    def settle(self, ok: bool, value: Any) -> None:
        self.ok, self.value = ok, value
        self.done.set()


class GroupCommit:
    """The one journal writer of a run; :meth:`run` it in a task group for the run's life."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._writes: list[_Call] = []
        self._reads: list[_Call] = []
        self._wake = anyio.Event()
        self._stopped = False
        #: Groups committed (each one transaction): for tests and measurements.
        self.groups = 0

    async def write(self, call: Callable[[], T]) -> T:
        """Run ``call`` (journal writes) in the next group; return once it is on disk.

        Raises what the call raised, or the group's JournalError when its commit failed.
        """
        return await self._submit(call, self._writes)  # type: ignore[no-any-return]

    async def read(self, call: Callable[[], T]) -> T:
        """Run ``call`` (journal reads) off the event loop, between two groups."""
        return await self._submit(call, self._reads)  # type: ignore[no-any-return]

    async def _submit(self, call: Callable[[], Any], queue: list[_Call]) -> Any:
        if self._stopped:
            raise JournalError(f"the journal {self.journal.path} is no longer written")
        pending = _Call(call)
        queue.append(pending)
        self._wake.set()
        await pending.done.wait()
        if pending.ok:
            return pending.value
        raise pending.value

    async def run(self) -> None:
        """Commit groups until cancelled; on the way out, what is still queued fails."""
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                writes, self._writes = self._writes, []
                reads, self._reads = self._reads, []
                # Not abandoned on cancellation: the callers learn how their group ended.
                outcomes = await anyio.to_thread.run_sync(self._flush, writes, reads)
                for pending, (ok, value) in zip([*writes, *reads], outcomes, strict=True):
                    pending.settle(ok, value)
        finally:
            self._stopped = True
            stopped = JournalError(f"the journal {self.journal.path} is no longer written")
            for pending in [*self._writes, *self._reads]:
                pending.settle(False, stopped)

    def _flush(self, writes: list[_Call], reads: list[_Call]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        if writes:
            outcomes = self.journal.run_group([pending.call for pending in writes])
            self.groups += 1
        for pending in reads:
            try:
                outcomes.append((True, pending.call()))
            except Exception as exc:
                outcomes.append((False, exc))
        return outcomes
