"""``sora-async batch FILE --out DIR``: bulk generation that survives crashes and Ctrl-C.

The run, in order (each step's module in brackets):

1. **Validate** the input (:mod:`.input`), streamed: every line becomes a request and passes
   the provider's checks (``client.prepare``), while the file is fingerprinted. Any bad line
   stops here with its line number (exit 2) before anything is written or sent [:mod:`.plan`].
2. **Open the journal** (:mod:`.journal`; default ``DIR/.sora-journal.sqlite3``). A journal of
   another input file, provider or base URL is refused (exit 2) [:mod:`.plan`].
3. **Register and plan**: a second streamed read adds every item to the journal (items known
   from an earlier run are kept as they are, and must have the same request) and counts what
   is left to create, to resume and already done, with the estimated credits [:mod:`.plan`].
4. **Cost guard**: refuse what ``--max-credits`` or the balance (freesora) cannot pay for;
   ``--dry-run`` stops here [:mod:`.plan`].
5. **Run** ``client.generate_many`` over the journal's items, read a chunk at a time: an item
   with a task is adopted (polled, never created again), an item never sent is created, an
   item whose create had an unknown outcome is left alone unless ``--resubmit-unknown``
   [:mod:`.feed`]. The event hook writes the journal through the run's group commit and
   awaits each write: the intent before the request leaves, the task id before the first
   poll, the success before its files are fetched, the files and "succeeded" before the
   manifest says so [:mod:`.recorder`].
6. **Report**: ``DIR/manifest.jsonl`` (rewritten atomically now and then, and at the end) and
   ``DIR/index.html``, streamed from the journal, a summary of every failure, and the exit
   status (0 all succeeded, 1 any not, 2 usage or configuration, 130 interrupted)
   [:mod:`.summary`].

This module is the run loop: it runs those steps, the writer, the display and the manifest's
rewrites, and answers Ctrl-C. Once drains (no new creates; created tasks finish and download);
twice stops at once. Every journal write is committed before the step it records goes on, so
stopping at once, or ``kill -9``, loses nothing: the next run resumes, and a create that was on
the wire becomes "unknown" instead of being sent again.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, NoReturn

import anyio
import anyio.to_thread

from ..download import video_filename
from ..errors import SoraError
from ..models import TaskResult
from .console import Console
from .feed import Feed
from .journal import GroupCommit, Journal, JournalError
from .options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    BatchOptions,
    BatchOutcome,
)
from .plan import Plan, Planner, request_from_json
from .progress import Phase, Tracker, open_display
from .recorder import Recorder
from .report import INDEX_NAME
from .summary import MANIFEST_NAME, Summary, write_manifest

if TYPE_CHECKING:
    from ..client import SoraClient
    from ..fanout import GenerationRun

__all__ = [
    "MANIFEST_NAME",
    "BatchOptions",
    "BatchOutcome",
    "Plan",
    "request_from_json",
    "run_batch",
    "write_manifest",
]

logger = logging.getLogger("sora_async")

#: Seconds between manifest rewrites during a run (at least; a big journal waits longer).
MANIFEST_INTERVAL = 10.0
#: A rewrite waits at least this many times as long as the last one took. Each reads and writes
#: every item (4.4 s of CPU at 100,000): at 20, as before, the rewrites took 5 % of the run's
#: time in a worker thread (about 0.4 ms of CPU a task at 10,000 or 100,000 prompts); at 100, 1 %.
MANIFEST_SPACING = 100
#: Display redraws per second.
REFRESH_INTERVAL = 0.25

#: The temporary files of the manifest and index.html (write_lines_atomically) start so.
_TMP_PREFIXES = (f".{MANIFEST_NAME}.", f".{INDEX_NAME}.")


async def run_batch(client: SoraClient, options: BatchOptions) -> BatchOutcome:
    """Run one batch with an open ``client``; usage errors raise ConfigurationError."""
    batch = _Batch(client, options)
    status = await batch.run()
    return BatchOutcome(
        status=status,
        counts=batch.summary.final_counts if batch.summary is not None else {},
        manifest=batch.console.manifest_path if batch.planner.journal is not None else None,
        held_task_ids=dict(batch.held),
        journal_commits=batch.journal_commits,
        journal_fsyncs=batch.journal_fsyncs,
    )


class _Batch:
    """One invocation of ``sora-async batch``: the run loop, its stops and its signals."""

    def __init__(self, client: SoraClient, options: BatchOptions) -> None:
        self.client = client
        self.options = options
        self.out = options.out
        self.console = Console(
            quiet=options.quiet, manifest_path=self.out / MANIFEST_NAME, log_json=options.log_json
        )
        self.planner = Planner(options, self.console)
        self.summary: Summary | None = None
        self.run_handle: GenerationRun | None = None
        self.tracker = Tracker(0)
        #: Why an item is not done, when the journal's state alone does not say it.
        self.notes: dict[int, str] = {}
        #: Task ids the journal could not take, by index: shown at every exit.
        self.held: dict[int, str] = {}
        #: Items whose create was sent and has no answer yet (the recorder's, while it runs).
        self.intents: set[int] = set()
        self.interrupts = 0
        self.stopped_creating: str | None = None
        self.fatal: BaseException | None = None
        self.prepare_scope = anyio.CancelScope()
        self.journal_commits = 0
        self.journal_fsyncs = 0

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
            self.console.display.stop()
            journal = self.planner.journal
            if journal is not None:
                self.journal_commits, self.journal_fsyncs = journal.commits, journal.fsyncs
                logger.info(
                    "journal: %d commits (transactions) in this run, %d of them fsync'd",
                    journal.commits,
                    journal.fsyncs,
                )
                journal.close()
        if failure is not None:
            raise failure
        return code

    async def _main(self) -> int:
        plan: Plan | None = None
        with self.prepare_scope:
            plan = await self.planner.prepare(self.client)
        if plan is None or self.interrupts:
            self.console.error("interrupted before anything was sent")
            return EXIT_INTERRUPTED
        if self.options.dry_run:
            self.console.say("dry run: nothing was sent")
            # The status the real run would have: a refused batch is a usage error.
            return EXIT_USAGE if self.planner.refused else EXIT_OK
        journal = self.planner.journal
        assert journal is not None
        self.summary = Summary(
            journal=journal,
            console=self.console,
            out=self.out,
            input_path=self.options.input_path,
            total=self.planner.total,
            notes=self.notes,
            held=self.held,
        )
        return await self._execute(journal, self.summary, plan)

    # -- the run -----------------------------------------------------------------------------

    async def _execute(self, journal: Journal, summary: Summary, plan: Plan) -> int:
        tracker = self.tracker = Tracker(plan.total)
        tracker.seed(Phase.QUEUED, plan.to_create)
        tracker.seed(Phase.RUNNING, plan.to_resume)
        tracker.seed(Phase.SUCCEEDED, plan.succeeded)
        tracker.seed(Phase.FAILED, plan.failed)
        tracker.seed(Phase.UNKNOWN, plan.unknown)
        summary.report_plan(plan)
        for prefix in _TMP_PREFIXES:
            for stale in self.out.glob(f"{glob.escape(prefix)}*.tmp"):
                # Left by a run killed while it rewrote the manifest or index.html.
                with contextlib.suppress(OSError):
                    stale.unlink()
        try:
            if plan.to_create or plan.to_resume:
                await self._run(journal, summary, tracker)
        finally:
            # Every exit writes the manifest, and shows the task ids the journal lacks.
            self.console.display.stop()
            summary.write_index(after_manifest=summary.write_manifest())
            summary.report_held()
        return summary.finish(
            fatal=self.fatal,
            interrupted=bool(self.interrupts),
            stopped_creating=self.stopped_creating,
        )

    async def _run(self, journal: Journal, summary: Summary, tracker: Tracker) -> None:
        self.console.display = open_display(tracker, quiet=self.console.quiet)
        self.console.display.start()
        writer = GroupCommit(journal)
        feed = Feed(
            journal=journal,
            writer=writer,
            total=self.planner.total,
            out=self.out,
            policy=self.planner.policy,
            price=self.client.estimate_credits,
            max_credits=self.options.max_credits,
            notes=self.notes,
        )
        recorder = Recorder(
            journal=journal,
            writer=writer,
            console=self.console,
            tracker=tracker,
            out=self.out,
            control=self,
            price=self.client.estimate_credits,
            prices=feed.prices,
            second_payments=feed.second_payments,
            notes=self.notes,
            held=self.held,
        )
        self.intents = recorder.intents
        run = self.client.generate_many(
            feed.jobs(),
            on_event=recorder.on_event,
            download_to=self.out,
            filename=self._filename,
            reuse_file=feed.recorded_file,
            timeout=self.options.timeout,
        )
        self.run_handle = run
        if self.interrupts:
            run.drain()
        failure: SoraError | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(writer.run)
            # The manifest is rewritten now and then, off the event loop.
            group.start_soon(self._tick, summary)
            try:
                async with run:
                    async for _ in run:
                        pass  # every outcome was handled by the event hook
            except SoraError as exc:  # the journal failed under the input: raised below
                failure = exc
            finally:
                try:
                    # Every hook has returned; the ends they posted are committed and
                    # fsync'd before the manifest reports them.
                    await writer.settle()
                except JournalError as exc:
                    self.journal_failed(exc)
                finally:
                    group.cancel_scope.cancel()
        if failure is not None:
            raise failure

    def _filename(self, result: TaskResult, index: int, count: int) -> str:
        assert result.task_id is not None
        width = self.console.width
        return f"{result.key:0{width}d}_{video_filename(result.task_id, index, count)}"

    async def _tick(self, summary: Summary) -> None:
        # A new batch's manifest is written at once; a resumed one keeps the last run's until
        # the first rewrite (a big journal's manifest must not slow its first creates).
        fresh = not self.console.manifest_path.exists()
        next_manifest = time.monotonic() + (0 if fresh else MANIFEST_INTERVAL)
        while True:
            if time.monotonic() >= next_manifest:
                started = time.monotonic()
                # Off the event loop: a big batch's manifest takes seconds to write.
                await anyio.to_thread.run_sync(summary.write_manifest)
                took = time.monotonic() - started
                next_manifest = time.monotonic() + max(MANIFEST_INTERVAL, MANIFEST_SPACING * took)
            await anyio.sleep(REFRESH_INTERVAL)
            self.console.display.refresh()

    # -- stopping (the recorder's RunControl) ----------------------------------------------

    def stop_creating(self, reason: str) -> None:
        if self.stopped_creating is None:
            self.stopped_creating = reason
            self.console.warn(
                f"stopped creating: {reason}; the tasks already created run to the end"
            )
        self.tracker.draining = True
        if self.run_handle is not None:
            self.run_handle.drain()

    def journal_failed(self, exc: JournalError) -> None:
        if self.fatal is None:
            self.fatal = exc
            self.console.error(f"the journal cannot be written ({exc}); stopping")
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
        self.console.warn(
            f"interrupted: no new creates; waiting for {live} created task(s) to finish and "
            "download (Ctrl-C again stops at once; running the same command again resumes)"
        )

    def _hard_exit(self) -> NoReturn:
        """The second Ctrl-C: stop now. The journal has every create's step committed; an end
        still queued (a task's success, its files) is lost, and a re-run polls that task."""
        with contextlib.suppress(Exception):
            self.console.display.stop()
        in_flight = len(self.intents)
        counts = self.tracker.counts
        live = counts[Phase.RUNNING] + counts[Phase.DOWNLOADING]
        if self.summary is not None:
            with contextlib.suppress(Exception):
                self.summary.write_manifest()
            with contextlib.suppress(Exception):
                self.summary.journal.close()
            with contextlib.suppress(Exception):
                self.summary.report_held()
        message = "interrupted again: stopped at once; run the same command again to resume"
        if live:
            message += f" ({live} task(s) still running on the server are picked up then)"
        if in_flight:
            message += (
                f"; {in_flight} create(s) had no answer yet and will be reported as unknown "
                "(they may exist and be paid for)"
            )
        self.console.error(message)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
