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


def _no_machine_ca_bundle() -> None:
    """Take the machine's ``SSL_CERT_FILE`` out of the suite's environment.

    A client reads it when it is made and parses the bundle it names (60 ms of CPU for the
    usual 140 certificates): the 800 or so clients the suite makes cost 50 of its 157 CPU-s,
    spent on a trust store that no test uses (every test talks to 127.0.0.1; the TLS tests of
    test_network.py give their own CA, ``SSL_CERT_FILE`` included). Without it the tests also
    see the same environment on a machine that sets it and on one that does not.
    """
    os.environ.pop("SSL_CERT_FILE", None)


# At import: this conftest is read before the xdist workers start, so they inherit both.
_share_compiled_modules()
_no_machine_ca_bundle()


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
