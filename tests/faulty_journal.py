"""Run ``sora-async`` with a journal whose disk fails, for the batch tests.

Usage: ``python tests/faulty_journal.py METHOD:MODE CLI-ARGS...``. The journal's disk fails
when ``Journal.METHOD`` writes:

- ``MODE`` a number N: its first N calls fail (a passing hiccup), the rest succeed;
- ``MODE`` ``dead``: its first call fails and so does every journal write after it (a full or
  broken disk). Reads still work, as they do on a full disk;
- ``MODE`` ``K+N`` or ``K+dead``: its first K calls succeed, then as above;
- ``MODE`` ``slow``: every call succeeds, a fifth of a second late (a slow disk).

``_commit`` as METHOD fails a transaction's COMMIT: with group commit, a whole group of writes.

The failure is raised where SQLite would raise it (the transaction of one write), as the
``JournalError`` the journal turns a failed commit into.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from sora_async.batch import journal as journal_module
from sora_async.cli import main

Journal = journal_module.Journal
#: Seconds a slow disk adds to each call (the CLI's own process waits, never a test).
SLOW_DISK = 0.2


def _disk_error() -> journal_module.JournalError:
    return journal_module.JournalError("journal write failed: disk I/O error")


def install(method: str, mode: str) -> None:
    state = {"calls": 0, "dead": False}
    original: Callable[..., Any] = getattr(Journal, method)
    original_write = Journal._write
    passing, _, mode = mode.rpartition("+")
    skip = int(passing or 0)

    @functools.wraps(original)
    def failing(self: Any, *args: Any, **kwargs: Any) -> Any:
        state["calls"] += 1
        if mode == "slow":
            time.sleep(SLOW_DISK)
            return original(self, *args, **kwargs)
        if state["calls"] <= skip:
            return original(self, *args, **kwargs)
        if mode == "dead" or state["calls"] - skip <= int(mode):
            state["dead"] = state["dead"] or mode == "dead"
            raise _disk_error()
        return original(self, *args, **kwargs)

    @contextlib.contextmanager
    def write(self: Any) -> Iterator[Any]:
        if state["dead"]:
            raise _disk_error()
        with original_write(self) as conn:
            yield conn

    setattr(Journal, method, failing)
    Journal._write = write  # type: ignore[method-assign]


if __name__ == "__main__":
    where, _, how = sys.argv[1].partition(":")
    install(where, how)
    sys.exit(main(sys.argv[2:]))
