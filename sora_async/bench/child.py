"""A Python child process that runs the functions it is sent, one at a time, in its own
event loop (:mod:`.worker` is its side).

Used for the mock server (so it never shares the client's loop or CPU) and for the runs
whose memory and CPU time must be a process's own. A plain subprocess with a socket pair
rather than ``multiprocessing``: a spawned ``multiprocessing`` child imports the parent's
``__main__`` again, which breaks any caller without an ``if __name__ == "__main__"`` guard.
Functions travel by reference (module and name), so they must be module-level. POSIX only.
"""

from __future__ import annotations

import multiprocessing.connection
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

import anyio
import anyio.abc

__all__ = ["Child", "ChildError", "child_env"]

_EXIT_TIMEOUT: Final = 10.0
_C = TypeVar("_C", bound="Child")


class ChildError(RuntimeError):
    """A function sent to the child raised; the message carries its traceback."""


class Child:
    """``async with Child() as child: result = await child.call(function, *args)``"""

    def __init__(self) -> None:
        self._process: anyio.abc.Process | None = None
        self._conn: multiprocessing.connection.Connection | None = None
        self._lock = anyio.Lock()

    async def __aenter__(self: _C) -> _C:
        ours, theirs = socket.socketpair()
        fd = theirs.fileno()
        self._process = await anyio.open_process(
            [sys.executable, "-m", "sora_async.bench.worker", str(fd)],
            stdin=None,
            stdout=None,
            stderr=None,
            pass_fds=(fd,),
            env=child_env(),
        )
        theirs.close()
        self._conn = multiprocessing.connection.Connection(ours.detach())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            process, conn = self._process, self._conn
            if process is None or conn is None:
                return
            try:
                with anyio.move_on_after(_EXIT_TIMEOUT):
                    async with self._lock:
                        await anyio.to_thread.run_sync(_exchange, conn, None)
            except (OSError, EOFError):
                pass
            conn.close()
            with anyio.move_on_after(_EXIT_TIMEOUT):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.aclose()

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the child so far (None where /proc does not tell)."""
        if self._process is None:
            return None
        try:
            with open(f"/proc/{self._process.pid}/stat", encoding="ascii") as stat:
                # Fields after the command name (which may hold spaces), from the third on.
                fields = stat.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` in the child (awaited there if it is a coroutine function)."""
        if self._conn is None:
            raise RuntimeError("the child is not started")
        async with self._lock:
            reply = await anyio.to_thread.run_sync(
                _exchange, self._conn, (function, args), abandon_on_cancel=True
            )
        if isinstance(reply, ChildError):
            raise reply
        return reply


def _exchange(conn: multiprocessing.connection.Connection, message: Any) -> Any:
    conn.send(message)
    return conn.recv()


def child_env() -> dict[str, str]:
    """Our environment, with this package importable even when it is not installed."""
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    return env
