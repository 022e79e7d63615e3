"""The run's jobs, read lazily from the journal a chunk at a time: first the tasks that exist
(adopted, never created again), then the items to create, in index order."""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Callable, Iterable, MutableMapping
from pathlib import Path

from ..download import DownloadedFile
from ..events import Job
from ..models import TaskResult, VideoRequest
from .journal import FileRecord, GroupCommit, ItemRow, ItemState, Journal
from .plan import LIVE, Policy, request_from_json

__all__ = ["READ_CHUNK", "Feed", "out_relative"]

#: Items read per query while feeding the run its jobs (or writing the manifest).
READ_CHUNK = 1000

_S = ItemState


def out_relative(out: Path, path: str | os.PathLike[str]) -> str:
    """A path inside the output directory, as the journal records it."""
    text, base = os.fspath(path), os.fspath(out)
    if text.startswith(base + os.sep) and ".." not in text:
        # The usual case, a file the run named inside the directory: no Path objects made.
        return text[len(base) + 1 :].replace(os.sep, "/")
    try:
        return Path(path).relative_to(out).as_posix()
    except ValueError:
        return Path(os.path.relpath(path, out)).as_posix()


class Feed:
    """Jobs for ``generate_many``; the reads go through the run's writer, off the event loop."""

    def __init__(
        self,
        *,
        journal: Journal,
        writer: GroupCommit,
        total: int,
        out: Path,
        policy: Policy,
        price: Callable[[VideoRequest], int | None],
        max_credits: int | None,
        notes: MutableMapping[int, str],
    ) -> None:
        self.journal = journal
        self.writer = writer
        self.total = total
        self.out = out
        self.policy = policy
        self.price = price
        self.max_credits = max_credits
        self.notes = notes
        #: Credits the creates fed so far are estimated to cost.
        self.reserved = 0
        #: Items fed for an explicit second payment, by the state it leaves: unknown
        #: (--resubmit-unknown) or failed (--retry-failed). Their intent says so.
        self.second_payments: dict[int, ItemState] = {}
        #: The estimate of each create fed and not yet sent, by index: the recorder's intent
        #: takes it (one price a create, not two).
        self.prices: dict[int, int | None] = {}
        #: Files an earlier run recorded whole for the items still downloading.
        self.recorded: dict[int, tuple[FileRecord, ...]] = {}
        #: The states the policy creates (a set: a job a task is checked against it).
        self._create_states = frozenset(policy.states)

    async def jobs(self) -> AsyncIterator[Job]:
        # The tasks that exist first: they hold account slots already, so a create sent
        # before them would be refused with 429.
        journal, read = self.journal, self.writer.read
        async for row in self._rows(LIVE):
            if row.task_id is None:
                continue
            if row.state is _S.DOWNLOADING:
                # Files recorded whole before the last run stopped are kept, not fetched.
                item = await read(functools.partial(journal.get, row.index))
                if item is not None and item.files:
                    self.recorded[row.index] = item.files
            yield Job(request_from_json(row.request_json), key=row.index, task_id=row.task_id)
        # Then the creates: only their rows are read (a resumed batch's done items are not).
        async for row in self._rows(self.policy.states):
            job = self._to_create(row)
            if job is not None:
                yield job

    async def _rows(self, states: Iterable[ItemState]) -> AsyncIterator[ItemRow]:
        """The rows in ``states`` in index order, read a chunk at a time off the event loop."""
        after = 0
        while True:
            rows = await self.writer.read(
                functools.partial(self.journal.rows, after, self.total, *states, limit=READ_CHUNK)
            )
            if not rows:
                return
            after = rows[-1].index + 1
            for row in rows:
                yield row

    def _to_create(self, row: ItemRow) -> Job | None:
        index, state = row.index, row.state
        if state in LIVE or state not in self._create_states:
            return None
        request = request_from_json(row.request_json)
        price = self.price(request)
        if self.max_credits is not None and self.reserved + (price or 0) > self.max_credits:
            # Only reachable if the estimate changed since planning: never overspend.
            self.notes[index] = f"not sent: it would exceed --max-credits {self.max_credits}"
            return None
        self.reserved += price or 0
        self.prices[index] = price
        if state in (_S.UNKNOWN, _S.FAILED):
            self.second_payments[index] = state
        return Job(request, key=index)

    def recorded_file(self, result: TaskResult, path: Path) -> DownloadedFile | None:
        """A file an earlier run recorded whole (it stopped after recording it but before the
        item was done): it is kept, not fetched again."""
        if not self.recorded:  # a new batch: no call a file
            return None
        records = self.recorded.get(result.key)
        if not records:
            return None
        relative = out_relative(self.out, path)
        for record in records:
            if record.path == relative and _size_on_disk(path) == record.size:
                return DownloadedFile(
                    path=path, size=record.size, sha256=record.sha256, resumed=False
                )
        return None


def _size_on_disk(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None
