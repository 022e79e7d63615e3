"""The command line's parser: every command and its options, the globals after any of them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

from .. import __version__
from ..argtypes import fraction, non_negative_float, positive_float, positive_int
from .bench_options import add_arguments as add_bench_arguments
from .exits import PROG, UsageError
from .global_options import add_global_options
from .request_options import add_request_options

__all__ = ["build_parser"]


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage block; the contract asks for one line.
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


class _Commands:
    """Adds commands that each take the global options too."""

    def __init__(self, action: Any, common: argparse.ArgumentParser) -> None:
        self._action = action
        self._common = common

    def add_parser(self, name: str, **options: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._action.add_parser(
            name, parents=[self._common], **options
        )
        return parser


def build_parser() -> argparse.ArgumentParser:
    """The command line. argparse rather than click: the console script works with the core
    install alone (no extra dependency), and the benchmark harness shares its parser pieces;
    parent parsers give the global options after the command."""
    parser = _Parser(
        prog=PROG,
        description="Generate Sora 2 videos through freesora or sora2api, safely and fast.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    add_global_options(parser)
    common = argparse.ArgumentParser(add_help=False)
    add_global_options(common, defaults=False)
    sub = _Commands(
        parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser), common
    )

    gen = sub.add_parser("generate", help="generate one video and download it")
    gen.add_argument("prompt")
    add_request_options(gen)
    gen.add_argument("--out", type=Path, help="download the video into this directory")
    gen.add_argument("--timeout", type=positive_float, help="give up waiting after S seconds")

    batch = sub.add_parser(
        "batch",
        help="generate many videos from a file, resumably",
        description=(
            "Create, poll and download one video per input item, journaled so that running the "
            "same command again after a crash or Ctrl-C resumes without paying twice. Writes "
            "DIR/<index>_<task id>.mp4 and DIR/manifest.jsonl. Ctrl-C once: no new creates, "
            "running tasks finish; twice: stop at once. Exit 0 all succeeded, 1 any did not, "
            "2 usage or configuration, 130 interrupted."
        ),
    )
    batch.add_argument(
        "file",
        type=Path,
        help="plain text (one prompt per line) or .jsonl (one object of VideoRequest fields "
        "per line; a relative image path is relative to the file)",
    )
    batch.add_argument("--out", type=Path, required=True, help="directory for videos + manifest")
    batch.add_argument("--journal", type=Path, help="journal path (default: inside --out)")
    batch.add_argument(
        "--resubmit-unknown",
        action="store_true",
        help="create again the items whose earlier create had an unknown outcome (may pay twice)",
    )
    batch.add_argument(
        "--retry-failed",
        action="store_true",
        help="create again the items that failed (each a new task and a new payment)",
    )
    batch.add_argument(
        "--max-credits",
        type=positive_int,
        help="cap on the estimated credits of the items this run creates (freesora prices)",
    )
    batch.add_argument("--dry-run", action="store_true", help="print the estimate, send nothing")
    batch.add_argument("--quiet", action="store_true", help="no progress display")
    batch.add_argument("--timeout", type=positive_float, help="per-task wait limit in seconds")
    add_request_options(batch, defaults_only=True)

    _add_task_commands(sub)
    _add_tool_commands(sub)
    return parser


def _add_task_commands(sub: _Commands) -> None:
    """The commands about one task created anywhere, and the batch report."""
    status = sub.add_parser("status", help="print one task's status as JSON")
    status.add_argument("task_id")

    wait = sub.add_parser(
        "wait", help="wait for a task created anywhere; print its result, download with --out"
    )
    wait.add_argument("task_id")
    wait.add_argument("--out", type=Path, help="download the videos into this directory")
    wait.add_argument("--timeout", type=positive_float, help="give up waiting after S seconds")

    download = sub.add_parser("download", help="download a succeeded task's videos")
    download.add_argument("task_id")
    download.add_argument("--out", type=Path, required=True, help="directory for the videos")

    report = sub.add_parser(
        "report", help="summarise a batch from its journal (counts, failures, credits)"
    )
    report.add_argument("dir", type=Path, help="the batch's --out directory")
    report.add_argument("--journal", type=Path, help="the batch's journal, if not inside DIR")


def _add_tool_commands(sub: _Commands) -> None:
    """The account, the mock server, the demo and the benchmark."""
    sub.add_parser("credits", help="print the account balance as JSON (freesora)")

    mock = sub.add_parser("mock-server", help="serve both providers' APIs locally")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=8765)
    mock.add_argument("--task-seconds", type=non_negative_float, default=5.0)
    mock.add_argument("--failure-rate", type=fraction, default=0.0)
    mock.add_argument("--cap", type=positive_int, default=20, help="live tasks per account")
    mock.add_argument("--seed", type=int, default=0)

    demo = sub.add_parser("demo", help="the main job end to end on the embedded mock server")
    demo.add_argument("--out", type=Path, help="keep the videos here (default: a temp dir)")
    demo.add_argument("--count", type=positive_int, default=12, help="number of prompts")

    add_bench_arguments(sub.add_parser("bench", help="measure fan-out against the ideal schedule"))
