"""The ``sora-async`` command line: argument parsing and the small commands.

Usage and configuration errors print one line on stderr and exit 2, never a traceback.
Exit codes: 0 all succeeded, 1 a task failed, 2 usage/configuration, 130 interrupted.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

import anyio
import attrs

from .. import __version__
from ..argtypes import fraction, non_negative_float, positive_float, positive_int
from ..client import SoraClient
from ..config import (
    ENV_CALLBACK_LISTEN,
    ENV_CALLBACK_PUBLIC_URL,
)
from ..durable import check_writable_dir, refuse_non_directory
from ..errors import ConfigurationError, SoraError, ValidationError
from ..eventlog import EVENT_LOGGER, JsonFormatter
from ..models import AspectRatio, Model, Quality, TaskResult, TaskStatus, VideoRequest
from ..providers import PROVIDER_NAMES
from .bench_options import add_arguments as add_bench_arguments
from .live import status_line
from .shutdown import leave

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main", "run"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

PROG = "sora-async"


class UsageError(Exception):
    """Bad command line: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage block; the contract asks for one line.
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def add_global_options(parser: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    """The options every command takes, before or after its name (the contract's globals).

    Added twice: to the main parser with their defaults, and to each command through a
    parent parser whose defaults are SUPPRESS, so an option given after the command
    overrides the one before it and an absent one leaves it alone. A new global option is
    one more line here.
    """

    def default(value: Any = None) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--provider", choices=PROVIDER_NAMES, default=default(), help="env SORA_PROVIDER"
    )
    parser.add_argument(
        "--api-key", default=default(), help="env SORA_API_KEY (prefer the environment)"
    )
    parser.add_argument(
        "--base-url", default=default(), help="env SORA_BASE_URL (default: the provider's)"
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=default(),
        help="account task cap, env SORA_MAX_CONCURRENT_TASKS (default 20)",
    )
    parser.add_argument(
        "--poll-interval",
        type=positive_float,
        default=default(),
        help="base poll interval in seconds",
    )
    parser.add_argument(
        "--redis-url",
        default=default(),
        help="share the account cap between workers via Redis, env SORA_REDIS_URL",
    )
    parser.add_argument(
        "--account",
        default=default(),
        help="account name in Redis, env SORA_ACCOUNT (default: from the key)",
    )
    parser.add_argument(
        "--callback-listen",
        metavar="HOST:PORT",
        default=default(),
        help="sora2api completion callbacks",
    )
    parser.add_argument(
        "--callback-public-url", metavar="URL", default=default(), help="public URL of the above"
    )
    parser.add_argument(
        "--proxy",
        metavar="URL",
        default=default(),
        help="HTTP proxy for every request, env HTTPS_PROXY / NO_PROXY",
    )
    parser.add_argument("-v", "--verbose", action="count", default=default(0), help="more logging")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=default(),
        help="log each task event to stderr: one line of text, or one JSON object, per event "
        "(json also turns batch's progress display off)",
    )


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
    _add_request_options(gen)
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
    _add_request_options(batch, defaults_only=True)

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


def _add_request_options(parser: argparse.ArgumentParser, *, defaults_only: bool = False) -> None:
    what = "default for lines that do not set it" if defaults_only else None

    def helptext(text: str) -> str:
        return f"{text} ({what})" if what else text

    parser.add_argument("--model", choices=[m.value for m in Model], help=helptext("model"))
    parser.add_argument(
        "--aspect-ratio",
        choices=[*(a.value for a in AspectRatio), "landscape", "portrait"],
        help=helptext("aspect ratio"),
    )
    parser.add_argument("--duration", type=int, choices=(10, 15), help=helptext("seconds"))
    parser.add_argument("--quality", choices=[q.value for q in Quality], help=helptext("quality"))
    visibility = parser.add_mutually_exclusive_group()
    visibility.add_argument(
        "--public",
        dest="public",
        action="store_const",
        const=True,
        help=helptext("list the video publicly (freesora's default)"),
    )
    visibility.add_argument(
        "--private",
        dest="public",
        action="store_const",
        const=False,
        help=helptext("keep the video unlisted (freesora)"),
    )
    if not defaults_only:
        parser.add_argument("--image", help="image-to-video: a local file or an http(s) URL")
        parser.add_argument("--watermark", help="watermark text (sora2api)")


def request_defaults(args: argparse.Namespace) -> dict[str, Any]:
    """VideoRequest fields given on the command line (None values left out)."""
    fields = {
        "model": args.model,
        "aspect_ratio": args.aspect_ratio,
        "duration": args.duration,
        "quality": args.quality,
        "public": args.public,
        "image": getattr(args, "image", None),
        "watermark": getattr(args, "watermark", None),
    }
    return {name: value for name, value in fields.items() if value is not None}


def client_from_args(args: argparse.Namespace, **overrides: Any) -> SoraClient:
    """A SoraClient from the global flags (flag > environment > default)."""
    env = dict(os.environ)
    if args.callback_listen:
        env[ENV_CALLBACK_LISTEN] = args.callback_listen
    if args.callback_public_url:
        env[ENV_CALLBACK_PUBLIC_URL] = args.callback_public_url
    options: dict[str, Any] = {
        "provider": args.provider,
        "api_key": args.api_key,
        "base_url": args.base_url,
        "max_concurrent_tasks": args.concurrency,
        "poll_interval": args.poll_interval,
        "redis_url": args.redis_url,
        "account": args.account,
        "proxy": args.proxy,
        "env": env,
    }
    options.update(overrides)
    return SoraClient(**options)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def status_json(status: TaskStatus) -> dict[str, Any]:
    return {
        "task_id": status.task_id,
        "state": status.state.value,
        "progress": status.progress,
        "video_urls": list(status.video_urls),
        "error": status.error,
        "refunded": status.refunded,
    }


def result_json(result: TaskResult, files: Sequence[Path] = ()) -> dict[str, Any]:
    return {
        "task_id": result.task_id,
        "state": result.state.value,
        "video_urls": list(result.video_urls),
        "error": result.error,
        "refunded": result.refunded,
        "expires_at": result.expires_at.isoformat() if result.expires_at else None,
        "files": [str(path) for path in files] or [str(path) for path in result.files],
    }


async def _cmd_generate(args: argparse.Namespace) -> int:
    request = VideoRequest(args.prompt, **request_defaults(args))
    if args.out is not None:
        check_writable_dir(args.out, "--out")
    async with client_from_args(args) as client:
        if args.log_format is None:
            task_id = await client.create(request)
            print(f"created {task_id}", file=sys.stderr)
            result = await _wait_showing(client, task_id, args.timeout)
        else:
            # The event records tell the task's story, and stderr stays in one format.
            result = await client.generate(request, timeout=args.timeout)
        files: list[Path] = []
        if result.ok and args.out is not None:
            files = await client.download(result, args.out)
        _print_json(result_json(result, files))
        return EXIT_OK if result.ok else EXIT_FAILED


async def _wait_showing(
    client: SoraClient,
    task_id: str,
    timeout: float | None,  # noqa: ASYNC109 - client.wait names the task in its error
) -> TaskResult:
    """``client.wait``, with a live status line on stderr when it is a terminal."""
    async with status_line(sys.stderr, task_id) as line:
        return await client.wait(
            task_id, timeout=timeout, on_progress=line.update if line is not None else None
        )


async def _cmd_status(args: argparse.Namespace) -> int:
    async with client_from_args(args) as client:
        _print_json(status_json(await client.status(args.task_id)))
    return EXIT_OK


async def _cmd_wait(args: argparse.Namespace) -> int:
    if args.out is not None:
        check_writable_dir(args.out, "--out")
    async with client_from_args(args) as client:
        if args.log_format == "json":  # stderr holds JSON records only: no status line
            result = await client.wait(args.task_id, timeout=args.timeout)
        else:
            result = await _wait_showing(client, args.task_id, args.timeout)
        files: list[Path] = []
        if result.ok and args.out is not None:
            files = await client.download(result, args.out)
        _print_json(result_json(result, files))
        return EXIT_OK if result.ok else EXIT_FAILED


async def _cmd_download(args: argparse.Namespace) -> int:
    check_writable_dir(args.out, "--out")
    async with client_from_args(args) as client:
        status = await client.status(args.task_id)
        if not status.is_terminal:
            raise UsageError(
                f"task {args.task_id} is {status.state.value}, not finished; "
                f"'{PROG} wait {args.task_id} --out {args.out}' waits for it and downloads it"
            )
        result = await client.wait(args.task_id)
        if not result.ok:
            _print_json(result_json(result))
            return EXIT_FAILED
        files = await client.download(result, args.out)
        _print_json(result_json(result, files))
        return EXIT_OK


async def _cmd_report(args: argparse.Namespace) -> int:
    from ..batch.report import print_report

    return print_report(args.dir, args.journal)


async def _cmd_credits(args: argparse.Namespace) -> int:
    async with client_from_args(args) as client:
        _print_json(attrs.asdict(await client.credits()))
    return EXIT_OK


async def _cmd_mock_server(args: argparse.Namespace) -> int:
    from ..mock import MockConfig, MockServer, serve

    config = MockConfig(
        task_seconds=args.task_seconds,
        failure_rate=args.failure_rate,
        cap=args.cap,
        seed=args.seed,
    )

    def ready(server: MockServer) -> None:
        print(f"freesora base URL: {server.freesora_url}", flush=True)
        print(f"sora2api base URL: {server.sora2api_url}", flush=True)
        print("any API key is accepted; Ctrl-C stops", file=sys.stderr, flush=True)

    try:
        await serve(args.host, args.port, config, ready=ready)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror}"
        ) from None
    return EXIT_OK


async def _cmd_batch(args: argparse.Namespace) -> int:
    from ..batch.run import BatchOptions, run_batch

    # Only this: a refused input must leave --out unmade, so the folder is made later.
    refuse_non_directory(args.out, "--out")
    options = BatchOptions(
        input_path=args.file,
        out=args.out,
        journal=args.journal,
        defaults=request_defaults(args),
        resubmit_unknown=args.resubmit_unknown,
        retry_failed=args.retry_failed,
        max_credits=args.max_credits,
        dry_run=args.dry_run,
        # JSON lines on stderr stay machine-readable: no progress display between them.
        quiet=args.quiet or args.log_format == "json",
        log_json=args.log_format == "json",
        timeout=args.timeout,
    )
    # A batch downloads every file: as many at once as tasks may run, each beside a pool that
    # still has room for every task's polls (the client's default of 4 downloads made a run of
    # short tasks wait for files, not for the server). Nothing is opened before `async with`.
    cap = client_from_args(args).settings.max_concurrent_tasks
    async with client_from_args(args, max_downloads=cap, max_connections=2 * cap + 4) as client:
        outcome = await run_batch(client, options)
    return outcome.status


async def _cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return await run_demo(count=args.count, out=args.out)


async def _cmd_bench(args: argparse.Namespace) -> int:
    from ..bench import run_command

    return await run_command(args)


_COMMANDS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "generate": _cmd_generate,
    "batch": _cmd_batch,
    "status": _cmd_status,
    "wait": _cmd_wait,
    "download": _cmd_download,
    "report": _cmd_report,
    "credits": _cmd_credits,
    "mock-server": _cmd_mock_server,
    "demo": _cmd_demo,
    "bench": _cmd_bench,
}


_TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"


def _configure_logging(verbosity: int, log_format: str | None = None) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    if log_format is None:
        logging.basicConfig(level=level, format=_TEXT_FORMAT)
        # As -v says, even where an earlier command of this process asked for the events.
        logging.getLogger(EVENT_LOGGER).setLevel(logging.NOTSET)
    else:
        handler = logging.StreamHandler(sys.stderr)
        formatter = JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT_FORMAT)
        handler.setFormatter(formatter)
        logging.basicConfig(level=level, handlers=[handler])
        # Asked for, the task events are logged whatever -v says.
        logging.getLogger(EVENT_LOGGER).setLevel(min(level, logging.INFO))
    if verbosity < 2:
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _fail(message: str, code: int, *, as_json: bool = False) -> int:
    _say(f"error: {message}", as_json=as_json, level=logging.ERROR)
    return code


def _say(text: str, *, as_json: bool, level: int) -> None:
    """One line of the command's own on stderr: a JSON record with ``--log-format json``."""
    if as_json:
        record = logging.LogRecord("sora_async.cli", level, __file__, 0, "%s", (text,), None)
        print(JsonFormatter().format(record), file=sys.stderr)
    else:
        print(f"{PROG}: {text}", file=sys.stderr)


def _wants_json(argv: Sequence[str]) -> bool:
    """``--log-format json`` among arguments that could not be parsed (its last word wins)."""
    words = list(argv)
    chosen = None
    for position, word in enumerate(words):
        if word == "--log-format" and position + 1 < len(words):
            chosen = words[position + 1]
        elif word.startswith("--log-format="):
            chosen = word.partition("=")[2]
    return chosen == "json"


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
        return _fail(
            str(exc), EXIT_USAGE, as_json=_wants_json(sys.argv[1:] if argv is None else argv)
        )
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()  # a bare `sora-async` lists the commands
        return EXIT_OK
    _configure_logging(args.verbose, args.log_format)
    command = _COMMANDS[args.command]
    as_json = args.log_format == "json"
    try:
        return int(anyio.run(command, args))
    except KeyboardInterrupt:
        _say("interrupted", as_json=as_json, level=logging.WARNING)
        return EXIT_INTERRUPTED
    except (ConfigurationError, ValidationError, UsageError) as exc:
        return _fail(str(exc), EXIT_USAGE, as_json=as_json)
    except SoraError as exc:
        return _fail(str(exc), EXIT_FAILED, as_json=as_json)
    except Exception as exc:  # never a traceback for the user; -vv logs it
        logging.getLogger("sora_async").debug("unexpected error", exc_info=True)
        return _fail(f"unexpected {type(exc).__name__}: {exc}", EXIT_FAILED, as_json=as_json)
