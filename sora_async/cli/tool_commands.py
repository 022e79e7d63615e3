"""The tool commands: the account's credits, the mock server, the demo and the benchmark."""

from __future__ import annotations

import argparse
import sys

import attrs

from ..errors import ConfigurationError
from .answers import print_json
from .client_args import client_from_args
from .exits import EXIT_OK

__all__ = ["cmd_bench", "cmd_credits", "cmd_demo", "cmd_mock_server"]


async def cmd_credits(args: argparse.Namespace) -> int:
    async with client_from_args(args) as client:
        print_json(attrs.asdict(await client.credits()))
    return EXIT_OK


async def cmd_mock_server(args: argparse.Namespace) -> int:
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


async def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return await run_demo(count=args.count, out=args.out)


async def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench import run_command

    return await run_command(args)
