"""Shared fixtures: every async test runs on asyncio through anyio's pytest plugin."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sora_async import waits


def _share_compiled_modules() -> None:
    """With PYTHONDONTWRITEBYTECODE set, keep the suite's compiled modules out of the tree.

    The suite starts its xdist workers and about ninety Python subprocesses (the CLI, the Redis
    workers, the journal's kill -9 children). Without bytecode files each of them compiles the
    package again, and each worker rewrites and compiles every test module (about 5 CPU-s).
    The compiled files go to a directory of their own (PYTHONPYCACHEPREFIX, inherited by the
    workers and the subprocesses), never next to the sources, which is what
    PYTHONDONTWRITEBYTECODE is usually set to prevent.
    """
    if not os.environ.get("PYTHONDONTWRITEBYTECODE") or os.environ.get("PYTHONPYCACHEPREFIX"):
        return
    prefix = str(Path(tempfile.gettempdir()) / f"sora-async-pycache-{os.getuid()}")
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    os.environ["PYTHONPYCACHEPREFIX"] = prefix
    sys.dont_write_bytecode = False
    sys.pycache_prefix = prefix


# At import: this conftest is read before the xdist workers start, so they inherit it.
_share_compiled_modules()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def no_backoff_waits() -> Iterator[None]:
    """Retries without waiting (``sora_async.waits.set_testing``): the same tries, at once."""
    waits.set_testing(True)
    try:
        yield
    finally:
        waits.set_testing(False)
