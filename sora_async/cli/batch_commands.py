"""The batch commands: run a batch from a file, resumably, and report on one from its journal."""

from __future__ import annotations

import argparse

from ..durable import refuse_non_directory
from .client_args import client_from_args
from .request_options import request_defaults

__all__ = ["cmd_batch", "cmd_report"]


async def cmd_batch(args: argparse.Namespace) -> int:
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


async def cmd_report(args: argparse.Namespace) -> int:
    from ..batch.report import print_report

    return print_report(args.dir, args.journal)
