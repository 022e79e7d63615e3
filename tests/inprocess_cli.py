"""Run ``sora-async`` inside the test process, as a user would see it from a shell.

A subprocess costs a second of interpreter and aiohttp start-up; most CLI tests need only what
the command prints and returns. :func:`run_main` calls :func:`sora_async.cli.main` in a worker
thread (it runs its own event loop there, beside the test's loop that serves the mock), with
the environment, stdout, stderr and the root logger as a fresh process would have them. What
does need a real process (kill -9, SIGINT, the interpreter's own exit) is one, forked by the
fork server (zygote.py), and the slow run (``SORA_ASYNC_SLOW_TESTS=1``) runs every command as
a plain subprocess.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TextIO

import anyio
from helpers import SLOW

from sora_async.cli import main

REPO = str(Path(__file__).resolve().parent.parent)

#: One command at a time per test process: the environment and the std streams are global.
_ONE_AT_A_TIME = threading.Lock()


class _Routed(io.TextIOBase):
    """A std stream that keeps what the command writes and passes the test's own writes on.

    The test's thread serves the mock; whatever it writes or logs (an aiohttp traceback for a
    connection a killed client left) is not the command's output, as with a real subprocess.
    Every other thread is the command's (its event loop and its worker threads).
    """

    def __init__(self, test_thread: int, passed_on: TextIO) -> None:
        self.kept = io.StringIO()
        self._test_thread = test_thread
        self._passed_on = passed_on

    def _target(self) -> TextIO:
        return self._passed_on if threading.get_ident() == self._test_thread else self.kept

    @property
    def encoding(self) -> str:
        return "utf-8"

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return False  # a pipe, as under subprocess


@contextlib.contextmanager
def _as_a_fresh_process(
    env: Mapping[str, str], test_thread: int
) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    out = _Routed(test_thread, sys.stdout)
    err = _Routed(test_thread, sys.stderr)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_env = dict(os.environ)
    # The CLI configures logging with basicConfig, which does nothing on a root logger that
    # already has handlers (pytest's): hand it an empty one, so its log lines reach stderr.
    root.handlers.clear()
    os.environ.clear()
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield out.kept, err.kept
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        os.environ.clear()
        os.environ.update(saved_env)


def _run(argv: Sequence[str], env: Mapping[str, str], test_thread: int) -> tuple[int, str, str]:
    with _ONE_AT_A_TIME, _as_a_fresh_process(env, test_thread) as (out, err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


async def run_main(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``sora-async ARGV`` with environment ``env``, as ``subprocess.run`` would report it.

    The slow run (helpers.SLOW) starts ``python -m sora_async`` instead: the same checks then
    also hold for a real process.
    """
    if SLOW:
        done = await anyio.run_process(
            [sys.executable, "-m", "sora_async", *argv],
            env={**env, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))},
            stdin=subprocess.DEVNULL,
            check=False,
        )
        return subprocess.CompletedProcess(
            ["sora-async", *argv], done.returncode, done.stdout.decode(), done.stderr.decode()
        )
    # An empty context: the worker thread must not look like it runs the test's event loop.
    fresh = contextvars.Context()
    test_thread = threading.get_ident()
    code, out, err = await anyio.to_thread.run_sync(fresh.run, _run, argv, env, test_thread)
    return subprocess.CompletedProcess(["sora-async", *argv], code, out, err)


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without the SORA_* settings, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("SORA_")}
    env.update(extra)
    return env
