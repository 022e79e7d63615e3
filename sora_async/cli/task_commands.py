"""The commands about one task: generate, status, wait and download."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..client import SoraClient
from ..durable import check_writable_dir
from ..models import TaskResult, VideoRequest
from .answers import print_json, result_json, status_json
from .client_args import client_from_args
from .exits import EXIT_FAILED, EXIT_OK, PROG, UsageError
from .live import status_line
from .request_options import request_defaults

__all__ = ["cmd_download", "cmd_generate", "cmd_status", "cmd_wait"]


async def cmd_generate(args: argparse.Namespace) -> int:
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
        print_json(result_json(result, files))
        return EXIT_OK if result.ok else EXIT_FAILED


async def _wait_showing(
    client: SoraClient,
    task_id: str,
    timeout: float | None,
) -> TaskResult:
    """``client.wait``, with a live status line on stderr when it is a terminal."""
    async with status_line(sys.stderr, task_id) as line:
        return await client.wait(
            task_id, timeout=timeout, on_progress=line.update if line is not None else None
        )


async def cmd_status(args: argparse.Namespace) -> int:
    async with client_from_args(args) as client:
        print_json(status_json(await client.status(args.task_id)))
    return EXIT_OK


async def cmd_wait(args: argparse.Namespace) -> int:
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
        print_json(result_json(result, files))
        return EXIT_OK if result.ok else EXIT_FAILED


async def cmd_download(args: argparse.Namespace) -> int:
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
            print_json(result_json(result))
            return EXIT_FAILED
        files = await client.download(result, args.out)
        print_json(result_json(result, files))
        return EXIT_OK
