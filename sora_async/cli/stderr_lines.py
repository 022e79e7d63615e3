"""Where the CLI's own lines and the task events go on stderr: text, or one JSON record each."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from ..eventlog import EVENT_LOGGER, JsonFormatter
from .exits import PROG

__all__ = ["configure_logging", "fail", "say", "wants_json"]

_TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"


def configure_logging(verbosity: int, log_format: str | None = None) -> None:
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


def fail(message: str, code: int, *, as_json: bool = False) -> int:
    say(f"error: {message}", as_json=as_json, level=logging.ERROR)
    return code


def say(text: str, *, as_json: bool, level: int) -> None:
    """One line of the command's own on stderr: a JSON record with ``--log-format json``."""
    if as_json:
        record = logging.LogRecord("sora_async.cli", level, __file__, 0, "%s", (text,), None)
        print(JsonFormatter().format(record), file=sys.stderr)
    else:
        print(f"{PROG}: {text}", file=sys.stderr)


def wants_json(argv: Sequence[str]) -> bool:
    """``--log-format json`` among arguments that could not be parsed (its last word wins)."""
    words = list(argv)
    chosen = None
    for position, word in enumerate(words):
        if word == "--log-format" and position + 1 < len(words):
            chosen = words[position + 1]
        elif word.startswith("--log-format="):
            chosen = word.partition("=")[2]
    return chosen == "json"
