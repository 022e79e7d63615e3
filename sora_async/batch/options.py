"""What one ``sora-async batch`` run is asked (:class:`BatchOptions`) and how it ended
(:class:`BatchOutcome`): the batch wing's public types, free of argparse."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

__all__ = ["BatchOptions", "BatchOutcome"]

#: Exit statuses (BatchOutcome.status).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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
    #: ``--log-format json``: the run's own warnings and summary go to stderr as JSON records.
    log_json: bool = False
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
    #: Journal transactions this run committed, registering the input included: what group
    #: commit saves is measured here.
    journal_commits: int = 0
    #: Of those (and the run's last sync), the ones that fsync'd the journal: the groups that
    #: held a create's intent or outcome, and the first registrations.
    journal_fsyncs: int = 0
