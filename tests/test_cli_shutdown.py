"""An interrupted command leaves even when a worker thread would never end.

A Ctrl-C at the wrong moment can leave an idle anyio worker thread waiting for a stop that
never comes; the interpreter joins such threads at exit, so the command printed "interrupted"
and hung (seen in the bench's batch smoke run). These run a real interpreter with a real
stuck thread: the status must come back, and a thread finishing its step must finish it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sora_async.cli import EXIT_INTERRUPTED
from sora_async.cli.shutdown import leave

PRELUDE = """
import queue, sys, threading, time
import sora_async.cli.shutdown as leaving
leaving.THREADS_GRACE = 0.3
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + code],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_an_interrupted_command_leaves_past_a_thread_that_never_ends() -> None:
    done = _run(
        """
stuck = queue.Queue()
threading.Thread(target=stuck.get, name="AnyIO worker thread").start()
sys.stdout.write("said before leaving")
leaving.leave(130, interrupted=True)
"""
    )
    assert done.returncode == EXIT_INTERRUPTED, done.stderr
    assert done.stdout == "said before leaving"  # flushed, although os._exit skips the flush


def test_a_thread_finishing_its_step_finishes_it_before_the_exit(tmp_path: Path) -> None:
    marker = tmp_path / "written"
    done = _run(
        f"""
def step():
    time.sleep(0.05)
    open({str(marker)!r}, "w").write("whole")
threading.Thread(target=step).start()
leaving.leave(130, interrupted=True)
"""
    )
    assert done.returncode == EXIT_INTERRUPTED, done.stderr
    assert marker.read_text() == "whole"


def test_an_ordinary_exit_is_a_system_exit_with_the_status() -> None:
    with pytest.raises(SystemExit) as exited:
        leave(1, interrupted=False)
    assert exited.value.code == 1
