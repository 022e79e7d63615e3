"""What a batch run leaves behind and says around the run: ``manifest.jsonl`` and
``index.html`` streamed from the journal (a chunk of items at a time, whatever the batch's
size), the plan's warnings before the run, and the summary and exit status at its end."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from ..durable import write_lines_atomically
from .console import SHOWN_PROBLEMS, Console, one_line, refund_text
from .feed import READ_CHUNK
from .journal import ItemState, Journal, JournalError, JournalItem
from .options import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from .plan import LIVE, TO_CREATE, Plan
from .report import INDEX_NAME, manifest_rows, write_index

__all__ = ["MANIFEST_NAME", "Summary", "write_manifest"]

MANIFEST_NAME = "manifest.jsonl"
_S = ItemState
#: json.dumps(row, ensure_ascii=False), without a new encoder for each of a big batch's rows.
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


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
        known = len(lines)
        for row in _stream(journal, total):
            index = row["index"]
            if row["task_id"] is None and index in held:
                row["task_id"] = held[index]
            # The manifest's first keys, then the row's others in their order, then the note:
            # one dict display (a comprehension and an update are two calls a row).
            yield (
                _ENCODE(
                    {
                        "index": index,
                        "line": lines[index] if index < known else None,
                        "prompt": row["prompt"],
                        "task_id": row["task_id"],
                        "state": row["state"],
                        "files": row["files"],
                        "error": row["error"],
                        "refunded": row["refunded"],
                        **row,
                        "note": notes.get(index),
                    }
                )
                + "\n"
            )

    write_lines_atomically(path, rows())


def _stream(journal: Journal, total: int) -> Iterator[dict[str, Any]]:
    """The manifest rows of items ``0 .. total-1`` in index order, read a chunk at a time
    (memory stays flat, and the journal is free between two chunks)."""
    for start in range(0, total, READ_CHUNK):
        yield from journal.manifest_rows(start, min(start + READ_CHUNK, total))


class Summary:
    """The manifest, index.html and the run's messages about its items, from the journal."""

    def __init__(
        self,
        *,
        journal: Journal,
        console: Console,
        out: Path,
        input_path: Path,
        total: int,
        notes: MutableMapping[int, str],
        held: Mapping[int, str],
    ) -> None:
        self.journal = journal
        self.console = console
        self.out = out
        self.manifest_path = console.manifest_path
        self.input_path = input_path
        self.total = total
        self.notes = notes
        self.held = held
        #: Items by journal state, as finish() found them.
        self.final_counts: dict[str, int] = {}

    def write_manifest(self) -> bool:
        """Rewrite the manifest from the journal; whether it was written."""
        if self.journal.closed:
            return False
        try:
            write_manifest(
                self.journal,
                self.manifest_path,
                total=self.total,
                lines=self.console.lines,
                notes=self.notes,
                held=self.held,
            )
        except OSError as exc:
            self.console.warn(f"cannot write {self.manifest_path}: {exc.strerror or exc}")
            return False
        return True

    def write_index(self, *, after_manifest: bool = False) -> None:
        """``DIR/index.html``: every video of the batch with its prompt and state.

        ``after_manifest``: the manifest was just written from the journal, notes and held
        task ids as they are: its rows are read back (a JSON line each) rather than the
        journal's again (a query, a row and its files, its expiry and its URLs each).
        """
        journal = self.journal
        if journal.closed:
            return

        def rows() -> Iterator[dict[str, Any]]:
            for row in _stream(journal, self.total):
                index = row["index"]
                row["note"] = self.notes.get(index)
                if row["task_id"] is None and index in self.held:
                    row["task_id"] = self.held[index]
                yield row

        try:
            source = manifest_rows(self.manifest_path) if after_manifest else rows()
            write_index(self.out, source, f"sora-async batch: {self.input_path.name}")
        except (OSError, JournalError) as exc:
            self.console.warn(f"cannot write {self.out / INDEX_NAME}: {exc}")

    def report_plan(self, plan: Plan) -> None:
        """Before the run: the explicit second payments, and the unknown outcomes left alone."""
        if plan.retry:
            self.console.warn(
                f"--retry-failed: creating again {plan.retry} failed item(s); each is a new "
                "task and a new payment:"
            )
            self.console.list(
                self.journal.first_items(SHOWN_PROBLEMS, _S.FAILED),
                lambda item: one_line(item.error, 160),
                plan.retry,
            )
        if plan.resubmit:
            self.console.warn(
                f"--resubmit-unknown: sending {plan.resubmit} item(s) again whose earlier "
                "create had an unknown outcome; each may be paid for twice"
            )
        if not plan.unknown:
            return
        self.console.warn(
            f"{plan.unknown} item(s) have an unknown create outcome: the create was sent but "
            "its answer was lost, so the task may exist and be paid for. They are not sent "
            "again; check the provider's console, then use --resubmit-unknown to send them "
            "again (which may pay twice):"
        )
        self.console.list(
            self.journal.first_items(SHOWN_PROBLEMS, _S.UNKNOWN),
            lambda item: one_line(item.error, 160),
            plan.unknown,
        )

    def finish(
        self, *, fatal: BaseException | None, interrupted: bool, stopped_creating: str | None
    ) -> int:
        """The closing summary and the run's exit status."""
        summary = self.journal.summary()
        self.final_counts = dict(summary)
        succeeded = summary[_S.SUCCEEDED.value]
        not_done = self.total - succeeded
        parts = [f"{succeeded}/{self.total} succeeded"]
        parts += [
            f"{summary[state.value]} {state.value}"
            for state in (_S.FAILED, _S.UNKNOWN)
            if summary[state.value]
        ]
        left = sum(summary[s.value] for s in (*TO_CREATE, *LIVE, _S.CREATING))
        if left:
            parts.append(f"{left} not finished")
        self.console.summary(
            f"batch: {', '.join(parts)}; manifest: {self.manifest_path}",
            total=self.total,
            succeeded=succeeded,
            failed=summary[_S.FAILED.value],
            unknown=summary[_S.UNKNOWN.value],
            not_finished=left,
            manifest=str(self.manifest_path),
        )
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
            self.console.warn(f"{count} item(s) did not succeed:")
            self.console.list(reported, self.problem, count)
        unsent = summary[_S.PENDING.value] + summary[_S.NOT_CREATED.value]
        if fatal is not None:
            return EXIT_FAILED
        if interrupted:
            self.console.warn(
                f"interrupted: {unsent} item(s) not created yet; run the same command again "
                "to finish the batch"
            )
            return EXIT_INTERRUPTED
        if stopped_creating is not None and unsent:
            self.console.warn(
                f"{unsent} item(s) not created because creating stopped "
                f"({stopped_creating}); fix that and run the same command again"
            )
        return EXIT_OK if not_done == 0 else EXIT_FAILED

    def problem(self, item: JournalItem) -> str:
        note = self.notes.get(item.index)
        if item.state is _S.FAILED:
            head = f"failed{f' ({item.task_id})' if item.task_id else ' (not created)'}"
            refund = f" ({refund_text(item.refunded)})" if item.task_id else ""
            return f"{head}: {one_line(item.error, 160)}{refund}"
        if item.state is _S.UNKNOWN:
            return (
                f"unknown: {one_line(item.error, 160)} (may have been charged; "
                "--resubmit-unknown sends it again)"
            )
        return f"{item.state.value}: {note}"

    def report_held(self) -> None:
        if not self.held:
            return
        self.console.error(
            f"{len(self.held)} task(s) were created but are not in the journal (the next run "
            "adopts them from the file named above; never create these prompts again by hand):"
        )
        for index, task_id in sorted(self.held.items()):
            line = self.console.line_of(index)
            where = f" line {line}" if line is not None else ""
            self.console.detail(
                f"{self.console.label(index)}{where} task {task_id}",
                index=index,
                line=line,
                task_id=task_id,
            )
