"""The run's events become journal writes through the run's group commit. What money safety
needs is awaited, fsync'd, before its task goes on: the intent before the create is sent, the
task id (or the create's failure) before anything else happens to the task. How a created task
ended (its success and files, or its failure) is posted, not awaited, and committed without an
fsync of its own: the task's slot and worker go on at once, the run waits for every posted
write (and one fsync) before its last manifest, and a crash before they are on disk costs a
re-run one poll, or one check of a file. Also the display's moves and the notes on what
failed."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import anyio

from ..errors import refuses_every_create
from ..events import EventKind, TaskEvent
from ..models import TaskResult, TaskState, VideoRequest
from .console import Console, one_line, refund_text
from .feed import out_relative
from .held import HeldTask, append_held
from .journal import (
    GroupCommit,
    ItemState,
    Journal,
    JournalError,
    JournalTransitionError,
)
from .progress import Phase, Tracker

__all__ = ["JOURNAL_RETRY_DELAYS", "Recorder", "RunControl"]

logger = logging.getLogger("sora_async")

#: Pauses between attempts to journal a task id (a passing disk hiccup must not lose it).
JOURNAL_RETRY_DELAYS = (0.05, 0.25, 1.0)

_S = ItemState


class RunControl(Protocol):
    """What the recorder may ask of the run: stop creating, or stop for a broken journal."""

    fatal: BaseException | None

    def stop_creating(self, reason: str) -> None: ...

    def journal_failed(self, exc: JournalError) -> None: ...


class Recorder:
    """One run's event hook (:meth:`on_event`); one handler per event kind, named after it."""

    def __init__(
        self,
        *,
        journal: Journal,
        writer: GroupCommit,
        console: Console,
        tracker: Tracker,
        out: Path,
        control: RunControl,
        price: Callable[[VideoRequest], int | None],
        prices: MutableMapping[int, int | None],
        second_payments: MutableMapping[int, ItemState],
        notes: MutableMapping[int, str],
        held: MutableMapping[int, str],
    ) -> None:
        self.journal = journal
        self.writer = writer
        self.console = console
        self.tracker = tracker
        self.out = out
        #: The output directory as a path's prefix: the files the run names start so.
        self._inside = os.fspath(out) + os.sep
        self.control = control
        self.price = price
        #: Estimates the feed made, by index (taken once; a create sent again prices again).
        self.prices = prices
        self.second_payments = second_payments
        #: Why an item is not done, when the journal's state alone does not say it.
        self.notes = notes
        #: Items whose intent is recorded and whose create has no answer yet.
        self.intents: set[int] = set()
        #: Items whose task succeeded and whose files are being fetched: the video URLs and
        #: the files fetched so far, journaled with "succeeded" in one write.
        self.fetching: dict[int, tuple[list[str], list[tuple[str, int, str]]]] = {}
        #: Task ids the journal could not take, by index: shown at every exit.
        self.held = held
        #: The handler of each event kind but CREATED and CREATING (see on_event).
        self._handlers: dict[EventKind, Callable[[int, TaskEvent], Awaitable[None] | None]] = {
            kind: getattr(self, f"_{kind.value}")
            for kind in EventKind
            if kind not in (EventKind.CREATED, EventKind.CREATING)
        }

    def _write(self, call: Any, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """One journal write through the run's group commit; done once it is fsync'd."""
        return self.writer.write(functools.partial(call, *args, **kwargs))

    def _post(
        self,
        index: int,
        call: Callable[[], Any],
        then: Callable[[], None] | None = None,
    ) -> None:
        """One journal write that may wait: committed in a later group without an fsync of its
        own; ``then()`` runs once it is committed. A refused or failed write is handled as
        :meth:`on_event` handles an awaited one."""

        def settled(ok: bool, value: Any) -> None:
            if ok:
                if then is not None:
                    then()
            elif isinstance(value, JournalTransitionError):
                logger.warning("journal: %s", value)
                self.notes[index] = one_line(str(value))
            elif isinstance(value, JournalError):
                self.control.journal_failed(value)
            else:
                # A bug in a write: the run stops as for a broken journal, loudly.
                logger.error("journal write for item %d failed: %r", index, value)
                self.control.journal_failed(JournalError(f"journal write failed: {value!r}"))

        try:
            self.writer.post(call, settled)
        except JournalError as exc:
            self.control.journal_failed(exc)

    def on_event(self, event: TaskEvent) -> Awaitable[None] | None:
        """The run's event hook: each step journaled (and awaited) before its task goes on.

        A plain function: only a step whose write must be on disk before its task goes on
        (a create's intent and answer) returns an awaitable; the others (a poll, a file, a
        task's end) are handled at once and their writes posted, without a coroutine each."""
        index: int = event.key
        kind = event.kind
        if kind is EventKind.CREATED:
            return self._created(index, event)
        if index in self.held:
            self._held_event(index, event)
            return None
        if kind is EventKind.CREATING:
            # It handles its refusals: not wrapped in _awaited (a frame, two calls a task).
            return self._creating(index, event)
        try:
            # One handler per kind, named after it: _creating, _rate_limited, _progress, ...
            outcome: Awaitable[None] | None = self._handlers[kind](index, event)
        except JournalError as exc:
            self._refused(kind, index, exc)
            return None
        if outcome is None:
            return None
        return self._awaited(kind, index, outcome)

    async def _awaited(self, kind: EventKind, index: int, outcome: Awaitable[None]) -> None:
        try:
            await outcome
        except JournalError as exc:
            self._refused(kind, index, exc)

    def _refused(self, kind: EventKind, index: int, exc: JournalError) -> None:
        if isinstance(exc, JournalTransitionError):
            if kind is EventKind.CREATING:
                raise exc  # the journal refuses this create: it must not be sent
            logger.warning("journal: %s", exc)
            self.notes[index] = one_line(str(exc))
            return
        self.control.journal_failed(exc)
        if kind is EventKind.CREATING:
            raise exc  # no intent on disk: this create must not be sent
        # Anything else is already safe on disk up to this step: the run stops, the
        # manifest is written and a re-run goes on from the journal.

    async def _creating(self, index: int, event: TaskEvent) -> None:
        assert event.request is not None
        if index in self.intents:
            return  # already recorded for this create
        journal = self.journal
        again = self.second_payments.pop(index, None) if self.second_payments else None
        resubmit, retry = again is _S.UNKNOWN, again is _S.FAILED
        price = self.prices.pop(index) if index in self.prices else self.price(event.request)

        def intent() -> None:
            # One savepoint: an explicit second payment and its intent are written together.
            if resubmit:
                journal.resubmit_unknown(index)
            if retry:
                journal.retry_failed(index)
            # The request as registered: the run's jobs are made from the journal's rows.
            journal.record_intent(index, None, None, price)

        try:
            await self.writer.write(intent)
        except JournalError as exc:
            self._refused(EventKind.CREATING, index, exc)  # raises: this create must not be sent
        self.intents.add(index)
        self.tracker.move(index, Phase.CREATING)

    async def _created(self, index: int, event: TaskEvent) -> None:
        assert event.task_id is not None
        self.intents.discard(index)
        self.tracker.move(index, Phase.RUNNING)
        failure: JournalError | None = None
        for delay in (*JOURNAL_RETRY_DELAYS, None):
            try:
                # Awaited: the lifecycle starts polling the task only once this returns.
                await self.writer.write(
                    functools.partial(self.journal.record_created, index, event.task_id)
                )
                return
            except JournalTransitionError as exc:
                logger.warning("journal: %s", exc)
                self.notes[index] = one_line(str(exc))
                return
            except JournalError as exc:
                failure = exc
            if delay is not None:
                await anyio.sleep(delay)
        assert failure is not None and event.request is not None
        self._hold(index, event.task_id, event.request.prompt, failure)

    def _hold(self, index: int, task_id: str, prompt: str, failure: JournalError) -> None:
        """The journal cannot take this task id: keep it beside the journal and on screen,
        and stop creating (the next id could not be recorded either)."""
        self.held[index] = task_id
        kept = append_held(self.out, HeldTask(index, task_id, prompt))
        where = (
            f"kept in {self.out / '.sora-held-task-ids.jsonl'} for the next run"
            if kept
            else "NOT saved anywhere else: note it"
        )
        self.console.error(
            f"{self.console.label(index)} task {task_id} was created but the journal cannot record "
            f"it ({failure}); {where}"
        )
        if self.control.fatal is None:
            self.control.fatal = failure
        self.control.stop_creating(f"the journal cannot be written ({failure})")

    def _held_event(self, index: int, event: TaskEvent) -> None:
        """An item whose task id is held outside the journal: shown, not journaled."""
        if event.kind is EventKind.PROGRESS:
            self.tracker.set_progress(index, event.progress)
        elif event.kind is EventKind.DOWNLOADING:
            self.tracker.move(index, Phase.DOWNLOADING, start=Phase.RUNNING)
        elif event.kind in (EventKind.SUCCEEDED, EventKind.FAILED):
            result = event.result
            assert result is not None
            ok = result.ok and result.download_error is None
            self.notes[index] = (
                f"task {result.task_id} {'succeeded' if ok else 'did not succeed'} "
                "(its id is not in the journal: a re-run adopts it)"
            )
            self.tracker.move(index, Phase.SUCCEEDED if ok else Phase.FAILED, start=Phase.RUNNING)

    async def _rate_limited(self, index: int, event: TaskEvent) -> None:
        assert event.error is not None
        # Nothing was created: if the run stops before the retry, the item is plainly not
        # created (re-queued), never "unknown". The retry records its intent again.
        await self._write(self.journal.record_not_created, index, event.error)
        self.intents.discard(index)
        self.tracker.move(index, Phase.QUEUED)

    def _progress(self, index: int, event: TaskEvent) -> None:
        assert event.status is not None
        # Not journaled: a re-run polls the task again whatever it was doing.
        self.tracker.move(index, Phase.RUNNING, start=Phase.RUNNING)
        self.tracker.set_progress(index, event.status.progress)

    def _downloading(self, index: int, event: TaskEvent) -> None:
        assert event.result is not None
        urls = list(event.result.video_urls)
        self.fetching[index] = (urls, [])
        self.tracker.move(index, Phase.DOWNLOADING, start=Phase.RUNNING)
        # The success, posted as the first byte is asked for: a re-run that finds it knows the
        # task is paid for and done (it resumes the .part files without waiting for the task
        # again); one that does not polls the task once more.
        self._post(
            index,
            functools.partial(
                self.journal.record_terminal, index, TaskState.SUCCEEDED, video_urls=urls
            ),
        )

    def _downloaded(self, index: int, event: TaskEvent) -> None:
        assert event.file is not None
        _, files = self.fetching.setdefault(index, ([], []))
        file = event.file
        files.append((self._relative(file.path), file.size, file.sha256))

    def _relative(self, path: str | os.PathLike[str]) -> str:
        """out_relative, without its calls for the usual file (named by the run, inside)."""
        text = os.fspath(path)
        if text.startswith(self._inside) and ".." not in text and os.sep == "/":
            return text[len(self._inside) :]
        return out_relative(self.out, text)

    def _succeeded(self, index: int, event: TaskEvent) -> None:
        assert event.result is not None
        result = event.result
        label = self.console.label(index)
        urls, files = self.fetching.pop(index, (list(result.video_urls), []))
        if result.download_error is not None:
            self._download_failed(index, result, result.download_error, urls, files)
            return
        if len(files) == len(result.files):  # each file announced: their names are at hand
            names = files[0][0] if len(files) == 1 else ", ".join([path for path, _, _ in files])
        else:
            names = ", ".join([self._relative(f) for f in result.files])

        def done() -> None:
            self.notes.pop(index, None)
            self.tracker.move(index, Phase.SUCCEEDED, start=Phase.RUNNING)
            self.console.display.item(f"{label} succeeded {result.task_id}: {names}")

        # The end, every file and "succeeded" in one write; the manifest is made from the
        # journal, so it says "succeeded" once this is committed.
        write = self.journal.record_finished
        self._post(index, functools.partial(write, index, urls or result.video_urls, files), done)

    def _failed(self, index: int, event: TaskEvent) -> Awaitable[None] | None:
        assert event.result is not None
        result = event.result
        label = self.console.label(index)
        error = one_line(result.error)
        if result.task_id is None:
            return self._create_failed(index, result)
        if index in self.fetching:
            # It failed after DOWNLOADING announced the success: its files failed, not the task.
            urls, files = self.fetching.pop(index)
            cause = result.download_error or result.error
            self._download_failed(index, result, cause, urls, files)
            return None
        if result.exception is None:
            # The task itself failed on the server.
            def done() -> None:
                self.tracker.move(index, Phase.FAILED, start=Phase.RUNNING)
                self.console.display.item(
                    f"{label} failed {result.task_id}: {error} ({refund_text(result.refunded)})",
                    problem=True,
                )

            write = functools.partial(
                self.journal.record_terminal,
                index,
                TaskState.FAILED,
                error=result.error,
                refunded=result.refunded,
            )
            self._post(index, write, done)
            return None
        # Polling gave up (timeout, auth, network): the task lives on; a re-run picks it up.
        note = f"not seen finished: {error}; a re-run polls it again"
        self.notes[index] = note
        self.tracker.move(index, Phase.FAILED, start=Phase.RUNNING)
        self.console.display.item(f"{label} {result.task_id}: {note}", problem=True)
        return None

    async def _create_failed(self, index: int, result: TaskResult) -> None:
        label = self.console.label(index)
        error = one_line(result.error)
        exc = result.exception
        if index not in self.intents:
            # Refused before the request left (by the journal, or a check at send time).
            self.notes[index] = f"not sent: {error}"
            self.tracker.move(index, Phase.FAILED)
            self.console.display.item(f"{label} not sent: {error}", problem=True)
            return
        self.intents.discard(index)
        if isinstance(exc, JournalError):
            # The journal failed around a create that may have happened; the item is left
            # "creating", which the next run reports as unknown.
            self.notes[index] = f"outcome unknown: {error}"
            self.tracker.move(index, Phase.UNKNOWN)
            self.console.display.item(f"{label} {self.notes[index]}", problem=True)
            return
        journal = self.journal
        if exc is not None and refuses_every_create(exc):
            # Every other create would be refused alike: stop (before the write, which lets
            # the next job take the slot), keep the item for a re-run.
            self.control.stop_creating(f"{type(exc).__name__}: {error}")
            state = await self._write(journal.record_not_created, index, exc, terminal=False)
        elif exc is None:
            # No proof that nothing was made.
            state = await self._write(journal.record_unknown, index, error)
        else:
            state = await self._write(journal.record_create_error, index, exc)
        if state is _S.UNKNOWN:
            self.tracker.move(index, Phase.UNKNOWN)
            self.console.display.item(
                f"{label} unknown: {error}; not sent again without --resubmit-unknown",
                problem=True,
            )
        elif state is _S.NOT_CREATED:
            self.notes[index] = f"not created: {error}; a re-run sends it again"
            self.tracker.move(index, Phase.FAILED)
            self.console.display.item(f"{label} {self.notes[index]}", problem=True)
        else:
            self.tracker.move(index, Phase.FAILED)
            self.console.display.item(f"{label} failed (not created): {error}", problem=True)

    def _download_failed(
        self,
        index: int,
        result: TaskResult,
        cause: str | None,
        urls: Sequence[str],
        files: Sequence[tuple[str, int, str]],
    ) -> None:
        """The task succeeded and is paid for; its files are not whole. The real cause is
        shown (not a journal complaint about the state), and a re-run fetches the rest."""
        note = f"download failed: {one_line(cause)}; a re-run resumes it"
        self.notes[index] = note
        self.tracker.move(index, Phase.FAILED, start=Phase.RUNNING)
        label = self.console.label(index)
        self.console.display.item(f"{label} {result.task_id}: {note}", problem=True)
        # The success and the files that are whole: a re-run fetches only the rest.
        urls = urls or result.video_urls
        write = self.journal.record_finished
        self._post(index, functools.partial(write, index, urls, files, done=False))
