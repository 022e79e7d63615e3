"""``sora-async batch FILE --out DIR``: bulk generation that survives crashes and Ctrl-C.

The run, in order:

1. **Validate** the input (:mod:`.batch_input`), streamed: every line becomes a request and
   passes the provider's checks (``client.prepare``), while the file is fingerprinted. Any bad
   line stops here with its line number (exit 2) before anything is written or sent.
2. **Open the journal** (:mod:`.journal`; default ``DIR/.sora-journal.sqlite3``). A journal of
   another input file, provider or base URL is refused (exit 2).
3. **Register and plan**: a second streamed read adds every item to the journal (items known
   from an earlier run are kept as they are, and must have the same request) and counts what
   is left to create, to resume and already done, with the estimated credits.
4. **Cost guard**: refuse what ``--max-credits`` or the balance (freesora) cannot pay for;
   ``--dry-run`` stops here.
5. **Run** ``client.generate_many`` over the journal's items, lazily: an item with a task is
   adopted (polled, never created again), an item never sent is created, an item whose create
   had an unknown outcome is left alone unless ``--resubmit-unknown``. The event hook writes
   the journal at each step: the intent inside the create's cancellation shield before the
   request leaves, the task id right after the answer, the success before its files are
   fetched, each file's size and SHA-256 once it is whole, then "succeeded".
6. **Report**: ``DIR/manifest.jsonl`` (rewritten atomically now and then, and at the end), a
   summary of every failure, and the exit status (0 all succeeded, 1 any not, 2 usage or
   configuration, 130 interrupted).

Ctrl-C once drains (no new creates; created tasks finish and download); twice stops at once.
Every journal write is committed before the step it records goes on, so stopping at once, or
``kill -9``, loses nothing: the next run resumes, and a create that was on the wire becomes
"unknown" instead of being sent again.
"""

from __future__ import annotations

import array
import contextlib
import functools
import glob
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import anyio.lowlevel
import anyio.to_thread
import attrs

from ..download import DownloadedFile, video_filename
from ..durable import write_lines_atomically
from ..errors import (
    AuthenticationError,
    ConfigurationError,
    NotSupportedError,
    SoraError,
    refuses_every_create,
)
from ..events import EventKind, Job, TaskEvent
from ..models import TaskResult, TaskState, VideoRequest
from .held import HeldTask, append_held, forget_held, read_held
from .home import locate_journal, remember_journal
from .input import INPUT_FIELDS, BatchInputError, InputItem, InputReader, request_from_fields
from .journal import (
    FileRecord,
    GroupCommit,
    ItemRow,
    ItemState,
    Journal,
    JournalError,
    JournalItem,
    JournalMismatchError,
    JournalTransitionError,
    default_journal_path,
    request_to_json,
)
from .progress import Display, Phase, QuietDisplay, Tracker, open_display
from .report import INDEX_NAME, write_index

if TYPE_CHECKING:
    from ..client import SoraClient
    from ..fanout import GenerationRun

__all__ = ["MANIFEST_NAME", "BatchOptions", "BatchOutcome", "Plan", "run_batch", "write_manifest"]

logger = logging.getLogger("sora_async")

MANIFEST_NAME = "manifest.jsonl"
#: Seconds between manifest rewrites during a run (at least; a big journal waits longer).
MANIFEST_INTERVAL = 10.0
#: Display redraws per second.
REFRESH_INTERVAL = 0.25
#: Items registered per journal transaction (and read per query while planning).
REGISTER_CHUNK = 500
#: Items read per query while feeding the run its jobs or writing the manifest.
READ_CHUNK = 1000
#: Validation yields to the event loop (signals, cancellation) this often.
CHECKPOINT_EVERY = 200
#: Problems listed one by one at the start and in the final summary.
SHOWN_PROBLEMS = 20
#: Pauses between attempts to journal a task id (a passing disk hiccup must not lose it).
JOURNAL_RETRY_DELAYS = (0.05, 0.25, 1.0)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_S = ItemState
_TO_CREATE = (_S.PENDING, _S.NOT_CREATED)
_LIVE = (_S.CREATED, _S.RUNNING, _S.DOWNLOADING)
#: The temporary files of the manifest and index.html (write_lines_atomically) start so.
_TMP_PREFIXES = (f".{MANIFEST_NAME}.", f".{INDEX_NAME}.")
_MANIFEST_HEAD = ("index", "line", "prompt", "task_id", "state", "files", "error", "refunded")


@attrs.define
class Plan:
    """What a run has to do, counted while registering the input."""

    total: int = 0
    to_create: int = 0
    to_resume: int = 0
    succeeded: int = 0
    failed: int = 0
    #: Unknown-outcome items left alone (no --resubmit-unknown).
    unknown: int = 0
    #: Unknown-outcome items that will be sent again (also counted in to_create).
    resubmit: int = 0
    #: Failed items that will be created again, --retry-failed (also counted in to_create).
    retry: int = 0
    #: Credits the items to create cost, by the provider's published prices.
    estimate: int = 0
    #: Items to create whose provider publishes no price.
    unpriced: int = 0


def request_from_json(request_json: str) -> VideoRequest:
    """The request a journal recorded (see :func:`~sora_async.batch.journal.request_to_json`)."""
    fields = json.loads(request_json)
    return request_from_fields({name: fields.get(name) for name in INPUT_FIELDS})


def _one_line(text: str | None, limit: int = 300) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _refund_text(refunded: bool | None) -> str:
    if refunded is None:
        return "refund not reported"
    return "refunded" if refunded else "not refunded"


def write_manifest(
    journal: Journal,
    path: Path,
    *,
    total: int,
    lines: Sequence[int] = (),
    notes: Mapping[int, str] | None = None,
    held: Mapping[int, str] | None = None,
) -> None:
    """Write ``manifest.jsonl`` from the journal, atomically (temporary file, fsync, replace).

    One object per item ``0 .. total-1``, in input order: the journal's row with the input
    ``line`` and this run's ``note`` (why an item is not done, when the journal's state does
    not say it); ``held`` gives the task ids the journal could not take, by index. Items are
    read a chunk at a time, so memory stays flat and the journal is free between two chunks
    (the periodic rewrite runs in a worker thread while the run goes on).
    """
    notes = notes or {}
    held = held or {}

    def rows() -> Iterator[str]:
        for item in _stream(journal, total):
            index = item.index
            row = item.manifest_row()
            row["line"] = lines[index] if index < len(lines) else None
            row["note"] = notes.get(index)
            if row["task_id"] is None and index in held:
                row["task_id"] = held[index]
            ordered = {key: row[key] for key in _MANIFEST_HEAD}
            ordered.update(row)
            yield json.dumps(ordered, ensure_ascii=False) + "\n"

    write_lines_atomically(path, rows())


def _stream(journal: Journal, total: int) -> Iterator[JournalItem]:
    """Items ``0 .. total-1`` in index order, read a chunk at a time (memory stays flat, and
    the journal is free between two chunks)."""
    for start in range(0, total, READ_CHUNK):
        yield from journal.items_between(start, min(start + READ_CHUNK, total))


@attrs.frozen(kw_only=True)
class BatchOptions:
    """What one batch run is asked to do (the ``batch`` command's options, without argparse)."""

    #: The input: ``.txt``, ``.jsonl`` / ``.ndjson`` or ``.csv`` (see :mod:`.batch_input`).
    input_path: Path = attrs.field(converter=Path)
    #: Videos, ``manifest.jsonl`` and ``index.html`` go here (and the journal, by default).
    out: Path = attrs.field(converter=Path)
    #: The journal, when not inside ``out`` (``out`` then remembers where it is).
    journal: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    #: VideoRequest fields for the items that do not set them.
    defaults: Mapping[str, Any] = attrs.field(factory=dict)
    resubmit_unknown: bool = False
    retry_failed: bool = False
    #: Cap on the estimated credits of the items this run creates.
    max_credits: int | None = None
    #: Plan and estimate only; the outcome's status is what the real run would have.
    dry_run: bool = False
    quiet: bool = False
    #: Per-task wait limit in seconds.
    timeout: float | None = None


@attrs.frozen
class BatchOutcome:
    """How a batch run ended."""

    #: 0 every item succeeded, 1 some did not, 2 refused (a dry run's verdict), 130 interrupted.
    status: int
    #: Items by journal state at the end (empty when the journal was never opened).
    counts: Mapping[str, int] = attrs.field(factory=dict)
    manifest: Path | None = None
    #: Task ids created but not in the journal (a journal that could not be written).
    held_task_ids: Mapping[int, str] = attrs.field(factory=dict)
    #: Journal transactions this run committed (each one fsync), registering the input
    #: included: what group commit saves is measured here.
    journal_commits: int = 0


async def run_batch(client: SoraClient, options: BatchOptions) -> BatchOutcome:
    """Run one batch with an open ``client``; usage errors raise ConfigurationError."""
    batch = _Batch(client, options)
    status = await batch.run()
    return BatchOutcome(
        status=status,
        counts=batch.final_counts,
        manifest=batch.manifest_path if batch.journal is not None else None,
        held_task_ids=dict(batch.held),
        journal_commits=batch.journal_commits,
    )


class _Batch:
    """One invocation of ``sora-async batch``."""

    def __init__(self, client: SoraClient, options: BatchOptions) -> None:
        self.input_path = options.input_path
        self.out = options.out
        self.journal_flag: Path | None = options.journal
        self.journal_path = self.journal_flag or default_journal_path(self.out)
        self.manifest_path = self.out / MANIFEST_NAME
        self.defaults = dict(options.defaults)
        self.resubmit: bool = options.resubmit_unknown
        self.retry_failed: bool = options.retry_failed
        self.max_credits: int | None = options.max_credits
        self.dry_run: bool = options.dry_run
        self.quiet: bool = options.quiet
        self.timeout: float | None = options.timeout
        self.client: SoraClient = client
        self.final_counts: dict[str, int] = {}
        self.journal: Journal | None = None
        self.run_handle: GenerationRun | None = None
        self.tracker = Tracker(0)
        self.display: Display = QuietDisplay()
        self.total = 0
        self.width = 5
        #: The input line of each item, by index (for the manifest and messages).
        self.lines = array.array("L")
        #: Why an item is not done, when the journal's state alone does not say it.
        self.notes: dict[int, str] = {}
        #: Items whose intent is recorded and whose create has no answer yet.
        self.intents: set[int] = set()
        #: Unknown-outcome items fed to the run for sending again (--resubmit-unknown).
        self.resubmits: set[int] = set()
        #: Failed items fed to the run for creating again (--retry-failed).
        self.retries: set[int] = set()
        #: Items whose task succeeded and whose files are being fetched: the video URLs and
        #: the files fetched so far, journaled with the end in one write.
        self.fetching: dict[int, tuple[list[str], list[tuple[str, int, str]]]] = {}
        #: Files an earlier run recorded whole for the items still downloading.
        self.recorded: dict[int, tuple[FileRecord, ...]] = {}
        #: The run's one journal writer (group commit), while the run goes on.
        self.writer: GroupCommit | None = None
        self.reserved = 0
        self.interrupts = 0
        #: The cost guard would refuse the real run (--dry-run reports it and exits 2).
        self.refused = False
        self.stopped_creating: str | None = None
        self.fatal: BaseException | None = None
        #: Task ids the journal could not take, by index: shown at every exit.
        self.held: dict[int, str] = {}
        self.prepare_scope = anyio.CancelScope()
        self.journal_commits = 0

    # -- the whole command --------------------------------------------------------------------

    async def run(self) -> int:
        failure: BaseException | None = None
        code = EXIT_FAILED
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch_signals)
                try:
                    code = await self._main()
                except Exception as exc:  # re-raised below, outside the task group
                    failure = exc
                finally:
                    group.cancel_scope.cancel()
        finally:
            self.display.stop()
            if self.journal is not None:
                self.journal_commits = self.journal.commits
                logger.info("journal: %d commits (transactions) in this run", self.journal_commits)
                self.journal.close()
        if failure is not None:
            raise failure
        return code

    async def _main(self) -> int:
        client = self.client
        plan: Plan | None = None
        with self.prepare_scope:
            plan = await self._prepare(client)
        if plan is None or self.interrupts:
            self._error("interrupted before anything was sent")
            return EXIT_INTERRUPTED
        if self.dry_run:
            self._say("dry run: nothing was sent")
            # The status the real run would have: a refused batch is a usage error.
            return EXIT_USAGE if self.refused else EXIT_OK
        return await self._execute(client, plan)

    # -- validate, register, plan ------------------------------------------------------------

    async def _prepare(self, client: SoraClient) -> Plan:
        self.journal_path, adopted = locate_journal(self.out, self.journal_flag)
        if adopted is not None:
            self._warn(adopted)
        reader = InputReader(self.input_path, self.defaults)
        fingerprint, whole = await self._validate(client, reader)
        if whole.total == 0:
            raise BatchInputError(self.input_path, None, "no prompts (the file has no items)")
        self.total = whole.total
        self.width = max(5, len(str(whole.total - 1)))
        if not self.journal_path.exists():
            # A new batch: refuse it (or dry-run it) before writing anything, so that a
            # refused input can be edited and run again into the same --out directory.
            await self._check_cost(client, whole)
            if self.dry_run:
                return whole
            self.journal = self._open_journal(client, fingerprint)
            return await self._plan(client, reader, fingerprint)
        self.journal = self._open_journal(client, fingerprint)
        plan = await self._plan(client, reader, fingerprint)
        await self._check_cost(client, plan)
        return plan

    async def _validate(self, client: SoraClient, reader: InputReader) -> tuple[str, Plan]:
        """Check every item; the plan of the whole input as if nothing had been done yet."""
        whole = Plan()
        for item in reader:
            try:
                await client.prepare(item.request)
            except SoraError as exc:
                # Everything prepare() raises is about this request; nothing was sent.
                raise BatchInputError(reader.path, item.line, str(exc)) from None
            self._count(client, whole, item.request, _S.PENDING)
            if item.index % CHECKPOINT_EVERY == 0:
                await anyio.lowlevel.checkpoint()
        assert reader.fingerprint is not None
        return reader.fingerprint, whole

    def _open_journal(self, client: SoraClient, fingerprint: str) -> Journal:
        if not self.dry_run:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigurationError(
                    f"--out {self.out}: cannot create the directory: {exc.strerror or exc}"
                ) from None
        journal = Journal.open(
            self.journal_path,
            input_fingerprint=fingerprint,
            provider=client.provider,
            base_url=client.settings.base_url,
            # Lines appended to the input are new items; every known item is compared.
            input_may_grow=True,
        )
        try:
            # Before any create: a re-run without --journal must find this journal.
            remember_journal(self.out, self.journal_path)
            if not self.dry_run:
                self._adopt_held(journal)
        except BaseException:
            journal.close()
            raise
        return journal

    def _adopt_held(self, journal: Journal) -> None:
        """Record the task ids an earlier run held outside the journal: adopted, not paid again."""
        held = list(read_held(self.out))
        for task in held:
            item = journal.get(task.index)
            if item is None or item.task_id == task.task_id:
                continue
            if item.task_id is None and item.prompt == task.prompt and item.state is _S.UNKNOWN:
                journal.record_created(task.index, task.task_id)
                self._warn(f"{self._label(task.index)} adopted task {task.task_id}")
            else:
                raise ConfigurationError(
                    f"{self.out / '.sora-held-task-ids.jsonl'} holds task {task.task_id} for "
                    f"item {task.index}, which the journal {self.journal_path} does not match "
                    f"(state {item.state.value}, task {item.task_id}); check that task by hand"
                )
        if held:
            forget_held(self.out)

    async def _plan(self, client: SoraClient, reader: InputReader, fingerprint: str) -> Plan:
        plan = Plan()
        chunk: list[InputItem] = []
        for item in reader:
            chunk.append(item)
            if len(chunk) >= REGISTER_CHUNK:
                self._plan_chunk(client, chunk, plan)
                chunk = []
                await anyio.lowlevel.checkpoint()
        if chunk:
            self._plan_chunk(client, chunk, plan)
        if reader.fingerprint != fingerprint or plan.total != self.total:
            raise BatchInputError(
                self.input_path,
                None,
                "the file changed while the batch was starting; leave it unchanged while "
                "a batch runs (a changed file needs another --out directory)",
            )
        if self.journal is not None:
            known = sum(self.journal.summary().values())
            if known > plan.total:
                raise JournalMismatchError(
                    f"{self.input_path}: the journal {self.journal_path} records {known} items, "
                    f"the file has {plan.total}: lines were removed. The batch belongs to the "
                    "input as it was (lines may only be appended); restore them, or use "
                    "another --out directory for a new batch."
                )
        return plan

    def _plan_chunk(self, client: SoraClient, chunk: list[InputItem], plan: Plan) -> None:
        journal = self.journal
        rows = [(item.index, item.request.prompt, request_to_json(item.request)) for item in chunk]
        for item in chunk:
            self.lines.append(item.line)
        known_rows: dict[int, ItemRow] = {}
        if journal is not None:
            # One query for the chunk (the input's indexes are consecutive).
            first, last = chunk[0].index, chunk[-1].index
            known_rows = {row.index: row for row in journal.rows(first, last + 1)}
        states: list[ItemState] = []
        for item, (_, _, request_json) in zip(chunk, rows, strict=True):
            state = _S.PENDING
            known = known_rows.get(item.index)
            if known is not None:
                # Before anything is added: a changed line refuses the run as it was.
                self._check_same_request(known, item, request_json)
                state = known.state
            states.append(state)
        if journal is not None and not self.dry_run:
            journal.add_items(
                row for row, state in zip(rows, states, strict=True) if state is _S.PENDING
            )
        for item, state in zip(chunk, states, strict=True):
            self._count(client, plan, item.request, state)

    def _check_same_request(self, known: ItemRow, item: InputItem, request_json: str) -> None:
        if known.request_json == request_json and known.prompt == item.request.prompt:
            return
        then, now = json.loads(known.request_json), json.loads(request_json)
        changed = [
            f"{name}: {then.get(name)!r} then, {now.get(name)!r} now"
            for name in sorted(set(then) | set(now))
            if then.get(name) != now.get(name)
        ]
        if known.prompt != item.request.prompt:
            raise JournalMismatchError(
                f"{self.input_path}:{item.line}: this line changed since the journal "
                f"{self.journal_path} recorded item {item.index} "
                f"({_one_line(known.prompt, 60)!r} then, {_one_line(item.request.prompt, 60)!r} "
                "now): the batch belongs to the input as it was; lines may only be appended. "
                "Restore the line, or use another --out directory for a new batch."
            )
        raise JournalMismatchError(
            f"{self.input_path}:{item.line}: the journal {self.journal_path} recorded this item "
            f"with other request fields ({'; '.join(changed)}). Resume with the same options "
            "(--model, --aspect-ratio, --duration, --quality), or use another --out directory "
            "(or --journal PATH) for a new batch."
        )

    def _count(
        self, client: SoraClient, plan: Plan, request: VideoRequest, state: ItemState
    ) -> None:
        plan.total += 1
        if self._will_create(state):
            plan.to_create += 1
            plan.resubmit += state is _S.UNKNOWN
            plan.retry += state is _S.FAILED
            price = client.estimate_credits(request)
            if price is None:
                plan.unpriced += 1
            else:
                plan.estimate += price
        elif state in _LIVE:
            plan.to_resume += 1
        elif state is _S.SUCCEEDED:
            plan.succeeded += 1
        elif state is _S.FAILED:
            plan.failed += 1
        else:  # unknown (and "creating", which opening the journal already turned unknown)
            plan.unknown += 1

    def _will_create(self, state: ItemState) -> bool:
        return (
            state in _TO_CREATE
            or (state is _S.UNKNOWN and self.resubmit)
            or (state is _S.FAILED and self.retry_failed)
        )

    async def _check_cost(self, client: SoraClient, plan: Plan) -> None:
        loud = self.dry_run or not self.quiet
        if loud:
            self._say(
                f"batch: {plan.total} item(s) in {self.input_path}: {plan.to_create} to create, "
                f"{plan.to_resume} to resume, {plan.succeeded} already succeeded, "
                f"{plan.failed} failed, {plan.unknown} unknown"
                + (f" ({plan.retry} failed to create again)" if plan.retry else "")
            )
            if plan.to_create and client.provider == "freesora":
                self._say(f"videos: {_visibility(self.defaults.get('public'))}")
        priced = plan.unpriced == 0
        if plan.to_create == 0:
            estimate_text = "estimate: nothing to create, no credits to spend"
        elif priced:
            estimate_text = (
                f"estimate: {plan.estimate} credits for the {plan.to_create} item(s) to create "
                f"({client.provider} price table)"
            )
        elif plan.unpriced == plan.to_create:
            estimate_text = (
                f"estimate: {client.provider} publishes no prices; "
                f"{plan.to_create} item(s) to create"
            )
        else:
            estimate_text = (
                f"estimate: at least {plan.estimate} credits; {plan.unpriced} of the "
                f"{plan.to_create} item(s) to create have no published price"
            )
        balance = await self._balance(client) if plan.to_create else None
        if balance is not None:
            estimate_text += f"; balance {balance} credits"
        if loud:
            self._say(estimate_text)
        problems = []
        if plan.to_create and self.max_credits is not None:
            if not priced:
                problems.append(
                    f"--max-credits {self.max_credits}: {client.provider} publishes no prices, "
                    "so the spend cannot be capped; run without --max-credits"
                )
            elif plan.estimate > self.max_credits:
                problems.append(
                    f"--max-credits {self.max_credits}: the {plan.to_create} item(s) to create "
                    f"cost an estimated {plan.estimate} credits; raise the cap or split the input"
                )
        if plan.to_create and balance is not None and plan.estimate > balance:
            problems.append(
                f"cannot pay for this batch: the {plan.to_create} item(s) to create cost an "
                f"estimated {plan.estimate} credits and the balance is {balance}; top up or "
                "split the input"
            )
        if problems and self.dry_run:
            for problem in problems:
                self._error(f"error: a real run would be refused: {problem}")
            self.refused = True
        elif problems:
            raise ConfigurationError(problems[0])

    async def _balance(self, client: SoraClient) -> int | None:
        try:
            return (await client.credits()).left_credits
        except NotSupportedError:
            return None
        except AuthenticationError as exc:
            raise ConfigurationError(f"the API key was refused: {exc}") from None
        except SoraError as exc:
            self._warn(f"could not read the balance ({exc}); going on without the check")
            return None

    # -- the run -----------------------------------------------------------------------------

    async def _execute(self, client: SoraClient, plan: Plan) -> int:
        tracker = self.tracker = Tracker(plan.total)
        tracker.seed(Phase.QUEUED, plan.to_create)
        tracker.seed(Phase.RUNNING, plan.to_resume)
        tracker.seed(Phase.SUCCEEDED, plan.succeeded)
        tracker.seed(Phase.FAILED, plan.failed)
        tracker.seed(Phase.UNKNOWN, plan.unknown)
        self._report_unknown(plan)
        for prefix in _TMP_PREFIXES:
            for stale in self.out.glob(f"{glob.escape(prefix)}*.tmp"):
                # Left by a run killed while it rewrote the manifest or index.html.
                with contextlib.suppress(OSError):
                    stale.unlink()
        try:
            if plan.to_create or plan.to_resume:
                await self._run(client, tracker)
        finally:
            # Every exit writes the manifest, and shows the task ids the journal lacks.
            self.display.stop()
            self._write_manifest()
            self._write_index()
            self._report_held()
        return self._finish()

    async def _run(self, client: SoraClient, tracker: Tracker) -> None:
        assert self.journal is not None
        self.display = open_display(tracker, quiet=self.quiet)
        self.display.start()
        writer = self.writer = GroupCommit(self.journal)
        run = client.generate_many(
            self._jobs(),
            on_event=self._on_event,
            download_to=self.out,
            filename=self._filename,
            reuse_file=self._recorded_file,
            timeout=self.timeout,
        )
        self.run_handle = run
        if self.interrupts:
            run.drain()
        failure: SoraError | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(writer.run)
            # The manifest is written at once (off the event loop: the first create does not
            # wait for a big journal's manifest), then now and then.
            group.start_soon(self._tick)
            try:
                async with run:
                    async for _ in run:
                        pass  # every outcome was handled by the event hook
            except SoraError as exc:  # the journal failed under the input: raised below
                failure = exc
            finally:
                # Every hook has returned: nothing waits for the writer any more.
                group.cancel_scope.cancel()
        self.writer = None
        if failure is not None:
            raise failure

    def _report_held(self) -> None:
        if not self.held:
            return
        self._error(
            f"{len(self.held)} task(s) were created but are not in the journal (the next run "
            "adopts them from the file named above; never create these prompts again by hand):"
        )
        for index, task_id in sorted(self.held.items()):
            line = self.lines[index] if index < len(self.lines) else None
            where = f" line {line}" if line is not None else ""
            print(f"  {self._label(index)}{where} task {task_id}", file=sys.stderr, flush=True)

    async def _jobs(self) -> AsyncIterator[Job]:
        """The run's input, read lazily from the journal a chunk at a time (through the
        writer, off the event loop): first the tasks that exist (they hold account slots
        already: a create sent before them would be refused with 429), then the creates in
        index order."""
        journal, writer = self.journal, self.writer
        assert journal is not None and writer is not None
        after = 0
        while True:
            rows = await writer.read(
                functools.partial(journal.rows, after, self.total, *_LIVE, limit=READ_CHUNK)
            )
            if not rows:
                break
            after = rows[-1].index + 1
            for row in rows:
                if row.task_id is None:
                    continue
                if row.state is _S.DOWNLOADING:
                    # Files recorded whole before the last run stopped are kept, not fetched.
                    item = await writer.read(functools.partial(journal.get, row.index))
                    if item is not None and item.files:
                        self.recorded[row.index] = item.files
                yield Job(request_from_json(row.request_json), key=row.index, task_id=row.task_id)
        for start in range(0, self.total, READ_CHUNK):
            stop = min(start + READ_CHUNK, self.total)
            for row in await writer.read(functools.partial(journal.rows, start, stop)):
                job = self._job_to_create(row)
                if job is not None:
                    yield job

    def _job_to_create(self, row: ItemRow) -> Job | None:
        index, state = row.index, row.state
        if state in _LIVE or not self._will_create(state):
            return None
        request = request_from_json(row.request_json)
        price = self._price(request)
        if self.max_credits is not None and self.reserved + (price or 0) > self.max_credits:
            # Only reachable if the estimate changed since planning: never overspend.
            self.notes[index] = f"not sent: it would exceed --max-credits {self.max_credits}"
            return None
        self.reserved += price or 0
        if state is _S.UNKNOWN:
            self.resubmits.add(index)
        if state is _S.FAILED:
            self.retries.add(index)
        return Job(request, key=index)

    def _price(self, request: VideoRequest) -> int | None:
        return self.client.estimate_credits(request)

    def _filename(self, result: TaskResult, index: int, count: int) -> str:
        assert result.task_id is not None
        return f"{result.key:0{self.width}d}_{video_filename(result.task_id, index, count)}"

    async def _tick(self) -> None:
        next_manifest = time.monotonic()
        while True:
            if time.monotonic() >= next_manifest:
                started = time.monotonic()
                # Off the event loop: a big batch's manifest takes seconds to write.
                await anyio.to_thread.run_sync(self._write_manifest)
                took = time.monotonic() - started
                next_manifest = time.monotonic() + max(MANIFEST_INTERVAL, 20 * took)
            await anyio.sleep(REFRESH_INTERVAL)
            self.display.refresh()

    # -- the event hook: the journal writes, each awaited until it is on disk -----------------

    async def _write(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """One journal write through the run's group commit; returns once it is durable."""
        assert self.writer is not None
        return await self.writer.write(functools.partial(call, *args, **kwargs))

    async def _on_event(self, event: TaskEvent) -> None:
        index: int = event.key
        if event.kind is EventKind.CREATED:
            await self._created(index, event)
            return
        if index in self.held:
            self._held_event(index, event)
            return
        try:
            # One handler per kind, named after it: _creating, _rate_limited, _progress, ...
            handler = getattr(self, f"_{event.kind.value}")
            await handler(index, event)
        except JournalTransitionError as exc:
            if event.kind is EventKind.CREATING:
                raise  # the journal refuses this create: it must not be sent
            logger.warning("journal: %s", exc)
            self.notes[index] = _one_line(str(exc))
        except JournalError as exc:
            self._journal_failed(exc)
            if event.kind is EventKind.CREATING:
                raise  # no intent on disk: this create must not be sent
            # Anything else is already safe on disk up to this step: the run stops, the
            # manifest is written and a re-run goes on from the journal.

    async def _creating(self, index: int, event: TaskEvent) -> None:
        assert self.journal is not None and event.request is not None
        if index in self.intents:
            return  # already recorded for this create
        journal = self.journal
        resubmit, retry = index in self.resubmits, index in self.retries
        self.resubmits.discard(index)
        self.retries.discard(index)
        request = event.request
        request_json, price = request_to_json(request), self._price(request)

        def intent() -> None:
            # One savepoint: an explicit second payment and its intent are written together.
            if resubmit:
                journal.resubmit_unknown(index)
            if retry:
                journal.retry_failed(index)
            journal.record_intent(index, request_json, request.prompt, price)

        await self._write(intent)
        self.intents.add(index)
        self.tracker.move(index, Phase.CREATING)

    async def _created(self, index: int, event: TaskEvent) -> None:
        assert self.journal is not None and event.task_id is not None
        self.intents.discard(index)
        self.tracker.move(index, Phase.RUNNING)
        failure: JournalError | None = None
        for delay in (*JOURNAL_RETRY_DELAYS, None):
            try:
                # Awaited: the lifecycle starts polling the task only once this returns.
                await self._write(self.journal.record_created, index, event.task_id)
                return
            except JournalTransitionError as exc:
                logger.warning("journal: %s", exc)
                self.notes[index] = _one_line(str(exc))
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
        self._error(
            f"{self._label(index)} task {task_id} was created but the journal cannot record "
            f"it ({failure}); {where}"
        )
        if self.fatal is None:
            self.fatal = failure
        self._stop_creating(f"the journal cannot be written ({failure})")

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
        assert self.journal is not None and event.error is not None
        # Nothing was created: if the run stops before the retry, the item is plainly not
        # created (re-queued), never "unknown". The retry records its intent again.
        await self._write(self.journal.record_not_created, index, event.error)
        self.intents.discard(index)
        self.tracker.move(index, Phase.QUEUED)

    async def _progress(self, index: int, event: TaskEvent) -> None:
        assert event.status is not None
        # Not journaled: a re-run polls the task again whatever it was doing.
        self.tracker.move(index, Phase.RUNNING, start=Phase.RUNNING)
        self.tracker.set_progress(index, event.status.progress)

    async def _downloading(self, index: int, event: TaskEvent) -> None:
        assert self.journal is not None and event.result is not None
        urls = list(event.result.video_urls)
        self.fetching[index] = (urls, [])
        self.tracker.move(index, Phase.DOWNLOADING, start=Phase.RUNNING)
        # The success, before the first byte: a re-run knows the task is paid for and done
        # (it resumes the .part files without waiting for the task again).
        await self._write(self.journal.record_terminal, index, TaskState.SUCCEEDED, video_urls=urls)

    async def _downloaded(self, index: int, event: TaskEvent) -> None:
        assert event.file is not None
        _, files = self.fetching.setdefault(index, ([], []))
        files.append((self._relative(event.file.path), event.file.size, event.file.sha256))

    async def _succeeded(self, index: int, event: TaskEvent) -> None:
        assert self.journal is not None and event.result is not None
        result = event.result
        label = self._label(index)
        urls, files = self.fetching.pop(index, (list(result.video_urls), []))
        self.recorded.pop(index, None)
        if result.download_error is not None:
            await self._download_failed(index, result, result.download_error, urls, files)
            return
        # The end, every file and "succeeded" in one write: durable before the manifest.
        await self._write(self.journal.record_finished, index, urls or result.video_urls, files)
        self.notes.pop(index, None)
        self.tracker.move(index, Phase.SUCCEEDED, start=Phase.RUNNING)
        names = ", ".join(self._relative(f) for f in result.files)
        self.display.item(f"{label} succeeded {result.task_id}: {names}")

    async def _failed(self, index: int, event: TaskEvent) -> None:
        assert self.journal is not None and event.result is not None
        result = event.result
        label = self._label(index)
        error = _one_line(result.error)
        if result.task_id is None:
            await self._create_failed(index, result)
            return
        if index in self.fetching:
            # It failed after DOWNLOADING announced the success: its files failed, not the task.
            urls, files = self.fetching.pop(index)
            self.recorded.pop(index, None)
            cause = result.download_error or result.error
            await self._download_failed(index, result, cause, urls, files)
            return
        if result.exception is None:
            # The task itself failed on the server.
            await self._write(
                self.journal.record_terminal,
                index,
                TaskState.FAILED,
                error=result.error,
                refunded=result.refunded,
            )
            self.tracker.move(index, Phase.FAILED, start=Phase.RUNNING)
            self.display.item(
                f"{label} failed {result.task_id}: {error} ({_refund_text(result.refunded)})",
                problem=True,
            )
            return
        # Polling gave up (timeout, auth, network): the task lives on; a re-run picks it up.
        note = f"not seen finished: {error}; a re-run polls it again"
        self.notes[index] = note
        self.tracker.move(index, Phase.FAILED, start=Phase.RUNNING)
        self.display.item(f"{label} {result.task_id}: {note}", problem=True)

    async def _create_failed(self, index: int, result: TaskResult) -> None:
        assert self.journal is not None
        label = self._label(index)
        error = _one_line(result.error)
        exc = result.exception
        if index not in self.intents:
            # Refused before the request left (by the journal, or a check at send time).
            self.notes[index] = f"not sent: {error}"
            self.tracker.move(index, Phase.FAILED)
            self.display.item(f"{label} not sent: {error}", problem=True)
            return
        self.intents.discard(index)
        if isinstance(exc, JournalError):
            # The journal failed around a create that may have happened; the item is left
            # "creating", which the next run reports as unknown.
            self.notes[index] = f"outcome unknown: {error}"
            self.tracker.move(index, Phase.UNKNOWN)
            self.display.item(f"{label} {self.notes[index]}", problem=True)
            return
        journal = self.journal
        if exc is not None and refuses_every_create(exc):
            # Every other create would be refused alike: stop (before the write, which lets
            # the next job take the slot), keep the item for a re-run.
            self._stop_creating(f"{type(exc).__name__}: {error}")
            state = await self._write(journal.record_not_created, index, exc, terminal=False)
        elif exc is None:
            # No proof that nothing was made.
            state = await self._write(journal.record_unknown, index, error)
        else:
            state = await self._write(journal.record_create_error, index, exc)
        if state is _S.UNKNOWN:
            self.tracker.move(index, Phase.UNKNOWN)
            self.display.item(
                f"{label} unknown: {error}; not sent again without --resubmit-unknown",
                problem=True,
            )
        elif state is _S.NOT_CREATED:
            self.notes[index] = f"not created: {error}; a re-run sends it again"
            self.tracker.move(index, Phase.FAILED)
            self.display.item(f"{label} {self.notes[index]}", problem=True)
        else:
            self.tracker.move(index, Phase.FAILED)
            self.display.item(f"{label} failed (not created): {error}", problem=True)

    async def _download_failed(
        self,
        index: int,
        result: TaskResult,
        cause: str | None,
        urls: Sequence[str],
        files: Sequence[tuple[str, int, str]],
    ) -> None:
        """The task succeeded and is paid for; its files are not whole. The real cause is
        shown (not a journal complaint about the state), and a re-run fetches the rest."""
        assert self.journal is not None
        note = f"download failed: {_one_line(cause)}; a re-run resumes it"
        self.notes[index] = note
        self.tracker.move(index, Phase.FAILED, start=Phase.RUNNING)
        self.display.item(f"{self._label(index)} {result.task_id}: {note}", problem=True)
        # The success and the files that are whole: a re-run fetches only the rest.
        urls = urls or result.video_urls
        await self._write(self.journal.record_finished, index, urls, files, done=False)

    def _relative(self, path: str | os.PathLike[str]) -> str:
        """A path inside the output directory, as the journal records it."""
        try:
            return Path(path).relative_to(self.out).as_posix()
        except ValueError:
            return Path(os.path.relpath(path, self.out)).as_posix()

    def _recorded_file(self, result: TaskResult, path: Path) -> DownloadedFile | None:
        """A file an earlier run recorded whole (it stopped after recording it but before the
        item was done): it is kept, not fetched again."""
        relative = self._relative(path)
        for record in self.recorded.get(result.key, ()):
            if record.path == relative and _size_on_disk(path) == record.size:
                return DownloadedFile(
                    path=path, size=record.size, sha256=record.sha256, resumed=False
                )
        return None

    def _label(self, index: int) -> str:
        return f"[{index:0{self.width}d}]"

    # -- stopping ----------------------------------------------------------------------------

    def _stop_creating(self, reason: str) -> None:
        if self.stopped_creating is None:
            self.stopped_creating = reason
            self._warn(f"stopped creating: {reason}; the tasks already created run to the end")
        self.tracker.draining = True
        if self.run_handle is not None:
            self.run_handle.drain()

    def _journal_failed(self, exc: JournalError) -> None:
        if self.fatal is None:
            self.fatal = exc
            self._error(f"the journal cannot be written ({exc}); stopping")
        if self.run_handle is not None:
            self.run_handle.stop()

    async def _watch_signals(self) -> None:
        with contextlib.ExitStack() as stack:
            try:
                signals = stack.enter_context(anyio.open_signal_receiver(signal.SIGINT))
            except (NotImplementedError, RuntimeError, ValueError):
                return  # no handlers here (not the main thread, or Windows): Ctrl-C raises
            async for _ in signals:
                self._interrupted()

    def _interrupted(self) -> None:
        self.interrupts += 1
        if self.interrupts > 1:
            self._hard_exit()
        if self.run_handle is None:
            self.prepare_scope.cancel()
            return
        self.run_handle.drain()
        self.tracker.draining = True
        counts = self.tracker.counts
        live = counts[Phase.CREATING] + counts[Phase.RUNNING] + counts[Phase.DOWNLOADING]
        self._warn(
            f"interrupted: no new creates; waiting for {live} created task(s) to finish and "
            "download (Ctrl-C again stops at once; running the same command again resumes)"
        )

    def _hard_exit(self) -> NoReturn:
        """The second Ctrl-C: stop now. The journal has every step already committed."""
        with contextlib.suppress(Exception):
            self.display.stop()
        in_flight = len(self.intents)
        counts = self.tracker.counts
        live = counts[Phase.RUNNING] + counts[Phase.DOWNLOADING]
        if self.journal is not None:
            with contextlib.suppress(Exception):
                self._write_manifest()
            with contextlib.suppress(Exception):
                self.journal.close()
        with contextlib.suppress(Exception):
            self._report_held()
        message = "interrupted again: stopped at once; run the same command again to resume"
        if live:
            message += f" ({live} task(s) still running on the server are picked up then)"
        if in_flight:
            message += (
                f"; {in_flight} create(s) had no answer yet and will be reported as unknown "
                "(they may exist and be paid for)"
            )
        self._error(message)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)

    # -- reporting ---------------------------------------------------------------------------

    def _write_manifest(self) -> None:
        if self.journal is None or self.journal.closed:
            return
        try:
            write_manifest(
                self.journal,
                self.manifest_path,
                total=self.total,
                lines=self.lines,
                notes=self.notes,
                held=self.held,
            )
        except OSError as exc:
            self._warn(f"cannot write {self.manifest_path}: {exc.strerror or exc}")

    def _write_index(self) -> None:
        """``DIR/index.html``: every video of the batch with its prompt and state."""
        journal = self.journal
        if journal is None or journal.closed:
            return

        def rows() -> Iterator[dict[str, Any]]:
            for item in _stream(journal, self.total):
                index = item.index
                row = item.manifest_row()
                row["note"] = self.notes.get(index)
                if row["task_id"] is None and index in self.held:
                    row["task_id"] = self.held[index]
                yield row

        try:
            write_index(self.out, rows(), f"sora-async batch: {self.input_path.name}")
        except (OSError, JournalError) as exc:
            self._warn(f"cannot write {self.out / INDEX_NAME}: {exc}")

    def _report_unknown(self, plan: Plan) -> None:
        assert self.journal is not None
        if plan.retry:
            self._warn(
                f"--retry-failed: creating again {plan.retry} failed item(s); each is a new "
                "task and a new payment:"
            )
            self._list(
                self.journal.first_items(SHOWN_PROBLEMS, _S.FAILED),
                lambda item: _one_line(item.error, 160),
                plan.failed + plan.retry,
            )
        if plan.resubmit:
            self._warn(
                f"--resubmit-unknown: sending {plan.resubmit} item(s) again whose earlier "
                "create had an unknown outcome; each may be paid for twice"
            )
        if not plan.unknown:
            return
        self._warn(
            f"{plan.unknown} item(s) have an unknown create outcome: the create was sent but "
            "its answer was lost, so the task may exist and be paid for. They are not sent "
            "again; check the provider's console, then use --resubmit-unknown to send them "
            "again (which may pay twice):"
        )
        self._list(
            self.journal.first_items(SHOWN_PROBLEMS, _S.UNKNOWN),
            lambda item: _one_line(item.error, 160),
            plan.unknown,
        )

    def _list(self, items: Sequence[JournalItem], detail: Any, total: int) -> None:
        """The first SHOWN_PROBLEMS of ``total`` items, by name."""
        for item in items[:SHOWN_PROBLEMS]:
            print(f"  {self._describe(item)}: {detail(item)}", file=sys.stderr)
        if total > SHOWN_PROBLEMS:
            print(
                f"  ... and {total - SHOWN_PROBLEMS} more (see {self.manifest_path})",
                file=sys.stderr,
            )

    def _describe(self, item: JournalItem) -> str:
        line = self.lines[item.index] if item.index < len(self.lines) else None
        where = f" line {line}" if line is not None else ""
        return f"{self._label(item.index)}{where} {json.dumps(_one_line(item.prompt, 60))}"

    def _finish(self) -> int:
        assert self.journal is not None
        summary = self.journal.summary()
        self.final_counts = dict(summary)
        succeeded = summary[_S.SUCCEEDED.value]
        not_done = self.total - succeeded
        if not self.quiet:
            parts = [f"{succeeded}/{self.total} succeeded"]
            parts += [
                f"{summary[state.value]} {state.value}"
                for state in (_S.FAILED, _S.UNKNOWN)
                if summary[state.value]
            ]
            left = sum(summary[s.value] for s in (*_TO_CREATE, *_LIVE, _S.CREATING))
            if left:
                parts.append(f"{left} not finished")
            self._say(f"batch: {', '.join(parts)}; manifest: {self.manifest_path}")
        # Only what is listed by name is read: a big batch's failures stay on disk.
        reported = self.journal.first_items(SHOWN_PROBLEMS, _S.FAILED, _S.UNKNOWN)
        count = summary[_S.FAILED.value] + summary[_S.UNKNOWN.value]
        for index in sorted(self.notes):
            rows = self.journal.rows(index, index + 1)
            if rows and rows[0].state not in (_S.FAILED, _S.UNKNOWN, _S.SUCCEEDED):
                count += 1
                if len(reported) < SHOWN_PROBLEMS:
                    item = self.journal.get(index)
                    assert item is not None
                    reported.append(item)
        if count:
            self._warn(f"{count} item(s) did not succeed:")
            self._list(reported, self._problem, count)
        unsent = summary[_S.PENDING.value] + summary[_S.NOT_CREATED.value]
        if self.fatal is not None:
            return EXIT_FAILED
        if self.interrupts:
            self._warn(
                f"interrupted: {unsent} item(s) not created yet; run the same command again "
                "to finish the batch"
            )
            return EXIT_INTERRUPTED
        if self.stopped_creating is not None and unsent:
            self._warn(
                f"{unsent} item(s) not created because creating stopped "
                f"({self.stopped_creating}); fix that and run the same command again"
            )
        return EXIT_OK if not_done == 0 else EXIT_FAILED

    def _problem(self, item: JournalItem) -> str:
        note = self.notes.get(item.index)
        if item.state is _S.FAILED:
            head = f"failed{f' ({item.task_id})' if item.task_id else ' (not created)'}"
            refund = f" ({_refund_text(item.refunded)})" if item.task_id else ""
            return f"{head}: {_one_line(item.error, 160)}{refund}"
        if item.state is _S.UNKNOWN:
            return (
                f"unknown: {_one_line(item.error, 160)} (may have been charged; "
                "--resubmit-unknown sends it again)"
            )
        return f"{item.state.value}: {note}"

    def _say(self, text: str) -> None:
        """A line of the run's output (stdout)."""
        if isinstance(self.display, QuietDisplay):
            print(text, flush=True)
        else:
            self.display.note(text)

    def _warn(self, text: str) -> None:
        print(f"sora-async: {text}", file=sys.stderr, flush=True)

    def _error(self, text: str) -> None:
        print(f"sora-async: {text}", file=sys.stderr, flush=True)


def _visibility(public: bool | None) -> str:
    """What freesora does with the videos (it lists them publicly unless told otherwise)."""
    if public is None:
        return "public (freesora lists videos publicly unless told; --private keeps them unlisted)"
    if public:
        return "public (--public), unless a line of the input says otherwise"
    return "private (--private), unless a line of the input says otherwise"


def _size_on_disk(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None
