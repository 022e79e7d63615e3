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

    It is set empty rather than removed: OpenSSL then loads no file for its default trust
    store, where without it the system's bundle is parsed by every interpreter that imports
    aiohttp (its verified context is made at import: 0.1 CPU-s, in the xdist workers, the fork
    servers and the twenty-odd fresh interpreters the suite starts), and the SDK reads an
    empty ``SSL_CERT_FILE`` as unset.
    """
    os.environ["SSL_CERT_FILE"] = ""


#: Where the scratch files go when the machine has it and TMPDIR does not say otherwise.
_MEMORY_FS = Path("/dev/shm")  # noqa: S108 - a base for tempfile and pytest, which make private dirs


def _scratch_in_memory() -> None:
    """Put the tests' scratch files (tmp_path, tempfile, the subprocesses' TMPDIR) in memory.

    The batch's journal commits with ``synchronous=FULL``: each commit of a create is an
    fsync, a few hundred in the suite, each a wait on the disk and system CPU (the batch,
    journal and crash tests: 4.6 -> 2.8 system CPU-s, and a shorter run). No test checks
    what a disk does that memory does not: fsyncs are counted by the journal itself, and
    a kill -9 loses no written page on either. A TMPDIR the caller set is kept.
    """
    if os.environ.get("TMPDIR") or not _MEMORY_FS.is_dir() or not os.access(_MEMORY_FS, os.W_OK):
        return
    os.environ["TMPDIR"] = str(_MEMORY_FS)
    tempfile.tempdir = None  # gettempdir() computed again, from TMPDIR


# At import: this conftest is read before the xdist workers start, so they inherit these.
_share_compiled_modules()
_no_machine_ca_bundle()
_scratch_in_memory()


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


def pytest_configure(config: pytest.Config) -> None:
    # The xdist controller, before its workers start: one fork server for them all.
    if not hasattr(config, "workerinput") and getattr(config.option, "tx", None):
        import zygote  # here only: a worker or -n 0 run starts its own on first use

        zygote.start_shared()


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: half as many workers again as cores.

    About a third of the suite's time is waiting (fresh interpreters starting, sockets, a mock
    task's seconds), during which one worker per core leaves its core idle; a third worker on
    two cores fills those gaps. PYTEST_XDIST_AUTO_NUM_WORKERS still decides when set.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) * 3 // 2)


#: Tests that take one to fifteen seconds each, longest first. Each worker starts with its
#: share of them: xdist's worksteal hands worker k the k-th contiguous block of the collection,
#: and stealing moves only tests not yet started, so a long test begun when the others are
#: about to finish makes the whole run wait for it.
LONGEST_FIRST = (
    "test_bench_batch.py::test_quick_batch_smoke",
    "test_governor_redis_workers.py::",
    "test_journal.py::TestJournalStateMachine",
    "test_bench.py::test_quick_smoke",
    "test_reliability_command.py::test_the_fuzzing",
    "test_cli.py::test_demo_runs",
    "test_batch_json_log.py::test_a_faulty_batch",
    "test_providers_fuzz.py::test_any_answer",
    "test_fanout.py::test_200_tasks",
    "test_fanout.py::test_a_second_client",
    "test_batch_group_commit.py::",
    "test_cli_live.py::test_generate_on_a_terminal",
    "test_crash_matrix.py::test_a_kill_then",
    "test_batch_hundred.py::",
    "test_soak.py::test_a_hundred_tasks",
    "test_callbacks_e2e.py::",
)


def _rank(item: pytest.Item) -> int:
    name = item.nodeid.rpartition("/")[2]
    for rank, prefix in enumerate(LONGEST_FIRST):
        if name.startswith(prefix):
            return rank
    return len(LONGEST_FIRST)


def _block_starts(total: int, workers: int) -> list[int]:
    """Where each worker's first block begins (xdist's WorkStealingScheduling split)."""
    starts, left = [], total
    for remaining in range(workers, 0, -1):
        starts.append(total - left)
        left -= left // remaining
    return starts


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Every worker computes the same order from the same collection, as xdist requires.
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    ranked = sorted(range(len(items)), key=lambda i: _rank(items[i]))
    long = [items[i] for i in ranked if _rank(items[i]) < len(LONGEST_FIRST)]
    rest = [items[i] for i in sorted(ranked[len(long) :])]
    # Dealt round robin, longest first, to the front of each worker's block.
    dealt: list[list[pytest.Item]] = [long[k::workers] for k in range(workers)]
    starts = [*_block_starts(len(items), workers), len(items)]
    ordered: list[pytest.Item] = []
    for k in range(workers):
        take = max(0, starts[k + 1] - starts[k] - len(dealt[k]))
        ordered += dealt[k] + rest[:take]
        del rest[:take]
    items[:] = ordered + rest
