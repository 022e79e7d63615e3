"""The ``sora-async`` command line: the entry point, which parses and runs one command.

Usage and configuration errors print one line on stderr and exit 2, never a traceback.
Exit codes: 0 all succeeded, 1 a task failed, 2 usage/configuration, 130 interrupted.

Modules, one job each: :mod:`.parser` (every command and its options), :mod:`.global_options`
and :mod:`.request_options` (the options shared by several commands), :mod:`.bench_options`
(the benchmark's, read without importing the harness), :mod:`.task_commands` (generate,
status, wait, download), :mod:`.batch_commands` (batch, report), :mod:`.tool_commands`
(credits, mock-server, demo, bench), :mod:`.client_args` (the client from the global flags),
:mod:`.answers` (the JSON printed on stdout), :mod:`.live` (the status line),
:mod:`.stderr_lines` (logging and the CLI's own lines), :mod:`.exits` (exit codes, the usage
error) and :mod:`.shutdown` (leaving the process). What only one command needs (the batch
runner, the mock server, the benchmark harness) is imported when that command runs.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn

import anyio

from ..errors import ConfigurationError, SoraError, ValidationError
from .answers import result_json, status_json
from .batch_commands import cmd_batch, cmd_report
from .client_args import client_from_args
from .exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PROG, UsageError
from .global_options import add_global_options
from .parser import build_parser
from .request_options import request_defaults
from .shutdown import leave
from .stderr_lines import configure_logging, fail, say, wants_json
from .task_commands import cmd_download, cmd_generate, cmd_status, cmd_wait
from .tool_commands import cmd_bench, cmd_credits, cmd_demo, cmd_mock_server

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "GC_THRESHOLDS",
    "PROG",
    "UsageError",
    "add_global_options",
    "build_parser",
    "client_from_args",
    "main",
    "request_defaults",
    "result_json",
    "run",
    "status_json",
]


_COMMANDS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "generate": cmd_generate,
    "batch": cmd_batch,
    "status": cmd_status,
    "wait": cmd_wait,
    "download": cmd_download,
    "report": cmd_report,
    "credits": cmd_credits,
    "mock-server": cmd_mock_server,
    "demo": cmd_demo,
    "bench": cmd_bench,
}


#: The cyclic collector's thresholds in the CLI's own process (CPython's are 700, 10, 10).
#: Nearly everything a task makes dies young by reference counting, and a collection every 700
#: net allocations cost a 2,000-prompt batch 0.24 s of CPU (0.12 ms a task, 3 % of it) against
#: 0.02 s with these; cyclic garbage still goes, in fewer, larger collections. Only here, never
#: in the library: a caller's process keeps its own settings.
GC_THRESHOLDS: Final = (20_000, 20, 20)


def run() -> NoReturn:
    """The ``sora-async`` console script and ``python -m sora_async``: main(), then exit."""
    # What start-up made (modules, classes) stays: out of every later collection's way.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    status = main()
    leave(status, interrupted=status == EXIT_INTERRUPTED)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return fail(
            str(exc), EXIT_USAGE, as_json=wants_json(sys.argv[1:] if argv is None else argv)
        )
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()  # a bare `sora-async` lists the commands
        return EXIT_OK
    configure_logging(args.verbose, args.log_format)
    command = _COMMANDS[args.command]
    as_json = args.log_format == "json"
    try:
        return int(anyio.run(command, args))
    except KeyboardInterrupt:
        say("interrupted", as_json=as_json, level=logging.WARNING)
        return EXIT_INTERRUPTED
    except (ConfigurationError, ValidationError, UsageError) as exc:
        return fail(str(exc), EXIT_USAGE, as_json=as_json)
    except SoraError as exc:
        return fail(str(exc), EXIT_FAILED, as_json=as_json)
    except Exception as exc:  # never a traceback for the user; -vv logs it
        logging.getLogger("sora_async").debug("unexpected error", exc_info=True)
        return fail(f"unexpected {type(exc).__name__}: {exc}", EXIT_FAILED, as_json=as_json)
