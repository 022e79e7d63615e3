"""The options every command takes, before or after its name (the contract's globals)."""

from __future__ import annotations

import argparse
from typing import Any

from ..argtypes import positive_float, positive_int
from ..providers import PROVIDER_NAMES

__all__ = ["add_global_options"]


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
