"""The SoraClient a command uses, made from the global flags (flag > environment > default)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..client import SoraClient
from ..config import ENV_CALLBACK_LISTEN, ENV_CALLBACK_PUBLIC_URL

__all__ = ["client_from_args"]


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
