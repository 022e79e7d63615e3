"""The exit codes, the program's name, and the usage error any command may raise."""

from __future__ import annotations

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "PROG", "UsageError"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

PROG = "sora-async"


class UsageError(Exception):
    """Bad command line: one line on stderr, exit 2."""
