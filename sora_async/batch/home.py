"""Which journal an output directory belongs to.

A batch's journal is ``DIR/.sora-journal.sqlite3`` unless ``--journal PATH`` puts it elsewhere.
In that case ``DIR`` keeps a small pointer file naming the journal, so that running the same
batch again without ``--journal`` finds it instead of starting over and paying for every
prompt again. A directory whose manifest records tasks but whose journal cannot be found is
refused: creating its prompts again could pay twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..durable import write_lines_atomically
from ..errors import ConfigurationError
from .journal import default_journal_path

__all__ = ["POINTER_NAME", "locate_journal", "remember_journal"]

#: The pointer file inside DIR, written when the journal lives elsewhere.
POINTER_NAME = ".sora-journal-path"
_MANIFEST_NAME = "manifest.jsonl"


def _same(a: Path, b: Path) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


def _recorded(out: Path) -> Path | None:
    pointer = out / POINTER_NAME
    try:
        text = pointer.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {pointer}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)["journal"]
        if not isinstance(value, str) or not value:
            raise ValueError(value)
    except (ValueError, KeyError, TypeError):
        raise ConfigurationError(
            f"{pointer} is damaged; pass --journal PATH with the journal of this batch"
        ) from None
    return Path(value)


def _manifest_records_tasks(out: Path) -> bool:
    """Whether ``DIR/manifest.jsonl`` names a task or a create that may have happened."""
    try:
        with (out / _MANIFEST_NAME).open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and (
                    row.get("task_id") or row.get("state") in ("unknown", "creating")
                ):
                    return True
    except (OSError, UnicodeDecodeError):
        return False
    return False


def locate_journal(out: Path, given: Path | None) -> tuple[Path, str | None]:
    """The journal of the batch in ``out``, and a line to show when it was adopted.

    ``given`` is ``--journal`` (None when absent). Raises :class:`ConfigurationError` when
    ``out`` belongs to another journal than ``given``, or records tasks whose journal is gone.
    """
    default = default_journal_path(out)
    recorded = _recorded(out)
    if given is not None:
        if recorded is not None and not _same(recorded, given):
            raise ConfigurationError(
                f"--out {out} belongs to the journal {recorded}; pass --journal {recorded} "
                "to resume that batch, or use another --out directory"
            )
        if recorded is None and not _same(given, default) and default.exists():
            raise ConfigurationError(
                f"--out {out} belongs to the journal {default}; run without --journal to "
                "resume that batch, or use another --out directory"
            )
        return given, None
    if recorded is not None:
        if not recorded.exists():
            raise ConfigurationError(
                f"--out {out} belongs to the journal {recorded}, which is missing; restore it "
                f"(or pass --journal PATH where it now is): starting over would pay again "
                "for every prompt already created"
            )
        return recorded, f"resuming with the journal {recorded} (recorded in {out})"
    if not default.exists() and _manifest_records_tasks(out):
        raise ConfigurationError(
            f"{out / _MANIFEST_NAME} records tasks of an earlier batch, but its journal is not "
            f"in {out}; pass --journal PATH with that batch's journal (starting over would pay "
            "again for every prompt already created)"
        )
    return default, None


def remember_journal(out: Path, journal: Path) -> None:
    """Record in ``out`` where its journal is, when that is not the default place."""
    if _same(journal, default_journal_path(out)):
        return
    if _recorded(out) is not None:
        return
    content = json.dumps({"journal": os.path.abspath(journal)}) + "\n"
    try:
        write_lines_atomically(out / POINTER_NAME, [content])
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write {out / POINTER_NAME}: {exc.strerror or exc}"
        ) from None
