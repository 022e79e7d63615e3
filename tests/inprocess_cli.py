"""Run ``sora-async`` inside the test process, as a user would see it from a shell.

A subprocess costs a second of interpreter and aiohttp start-up; most CLI tests need only what
the command prints and returns. :func:`run_main` calls :func:`sora_async.cli.main` in a worker
thread (it runs its own event loop there, beside the test's loop that serves the mock), with
the environment, stdout, stderr and the root logger as a fresh process would have them. What
does need a real process (kill -9, SIGINT, the interpreter's own exit) stays a subprocess.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import os
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence

import anyio

from sora_async.cli import main

#: One command at a time per test process: the environment and the std streams are global.
_ONE_AT_A_TIME = threading.Lock()


@contextlib.contextmanager
def _as_a_fresh_process(env: Mapping[str, str]) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    out, err = io.StringIO(), io.StringIO()
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
            yield out, err
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        os.environ.clear()
        os.environ.update(saved_env)


def _run(argv: Sequence[str], env: Mapping[str, str]) -> tuple[int, str, str]:
    with _ONE_AT_A_TIME, _as_a_fresh_process(env) as (out, err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


async def run_main(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``sora-async ARGV`` with environment ``env``, as ``subprocess.run`` would report it."""
    # An empty context: the worker thread must not look like it runs the test's event loop.
    fresh = contextvars.Context()
    code, out, err = await anyio.to_thread.run_sync(fresh.run, _run, argv, env)
    return subprocess.CompletedProcess(["sora-async", *argv], code, out, err)


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without the SORA_* settings, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("SORA_")}
    env.update(extra)
    return env
