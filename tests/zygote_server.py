"""The suite's fork server ("zygote"): ``python tests/zygote_server.py SOCKET``.

A test that must kill -9 (or interrupt) a real ``python -m sora_async ...`` pays about 0.8 CPU-s
of interpreter, aiohttp and sora_async start-up for each one. This process pays it once for
the run (the xdist workers share it): it imports what those programs import, then forks one
child per request, served one connection at a time. The
child becomes the program a fresh ``python`` would have run (argv, environment, working
directory, the std streams the test handed over, ``__main__``) and ends as an interpreter
ends; the test gets its real pid to kill and its exit status as ``subprocess`` reports it.

It stays single-threaded (a fork copies only the calling thread, so a thread holding a lock at
that moment would leave the child stuck): no event loop, no threads, blocking calls only.
The pytest process that started it holds its stdin; end of file there means that process is
gone, and so is this.

Protocol, one Unix socket connection per child: the request is a 4-byte length and a JSON
object ``{"argv": [...], "env": {...}, "cwd": "..."}`` (argv is what follows the interpreter:
``-m MODULE ...``, ``-c CODE ...`` or ``SCRIPT ...``), with three file descriptors (stdin,
stdout, stderr) attached; the answers are two lines, the child's pid and then its exit status.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
import threading
import types
from typing import Any

#: What the forked programs import (the CLI and its batch, the crash matrix's child, the
#: Redis workers); a module that is not installed is skipped, and imported by the child.
PRELOAD = (
    "aiohttp",
    "anyio",
    "sqlite3",
    "sora_async",
    "sora_async.cli",
    "sora_async.batch.run",
    "sora_async.batch.journal",
    "sora_async.batch.report",
    "sora_async.mock",
    "sora_async.crashmatrix.child",
    "sora_async.governor_redis",
    "redis.asyncio",
)
_HEADER = struct.Struct("!I")


class Job:
    """What one forked child runs, at the top level of this script, as ``python ARGV``."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str) -> None:
        self.argv = argv
        self.env = env
        self.cwd = cwd

    def run(self) -> None:
        # The test that waited too long asks for every thread's stack (zygote.run_process).
        faulthandler.register(signal.SIGUSR2, all_threads=True)
        os.chdir(self.cwd)
        os.environ.clear()
        os.environ.update(self.env)
        # Buffered as the interpreter would have chosen for these streams.
        sys.stdout.reconfigure(line_buffering=os.isatty(1))  # type: ignore[union-attr]
        option, *rest = self.argv
        if option == "-m":
            module, *args = rest
            sys.argv = [module, *args]  # run_module puts the module's file in argv[0]
            sys.path[0] = os.getcwd()
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        elif option == "-c":
            code, *args = rest
            sys.argv = ["-c", *args]
            sys.path[0] = ""
            main = types.ModuleType("__main__")
            sys.modules["__main__"] = main
            exec(compile(code, "<string>", "exec"), main.__dict__)  # noqa: S102
        else:
            sys.argv = [option, *rest]
            sys.path[0] = os.path.dirname(os.path.abspath(option))
            runpy.run_path(option, run_name="__main__")


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    conn.settimeout(10.0)
    data, fds, _flags, _address = socket.recv_fds(conn, 1 << 16, 3)
    if len(data) < _HEADER.size:
        raise ConnectionError("short request")
    (size,) = _HEADER.unpack_from(data)
    while len(data) < _HEADER.size + size:
        more = conn.recv(1 << 16)
        if not more:
            raise ConnectionError("request cut short")
        data += more
    return json.loads(data[_HEADER.size :]), list(fds)


def _answer(conn: socket.socket, value: int) -> None:
    # The test may be gone or no longer listening; the child is reaped all the same.
    with contextlib.suppress(OSError):
        conn.sendall(f"{value}\n".encode())


class Server:
    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bound under another name and renamed once listening: a client that waits for the
        # path to appear never finds it refusing connections.
        self.listener.bind(f"{path}.new")
        self.listener.listen(64)
        os.rename(f"{path}.new", path)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "reap")
        self.selector.register(0, selectors.EVENT_READ, "parent")
        self.children: dict[int, socket.socket] = {}

    def serve(self) -> Job | None:
        """Serve until the worker goes away (None); in a forked child, return its job."""
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        while True:
            for key, _events in self.selector.select():
                if key.data == "accept":
                    job = self._spawn()
                    if job is not None:
                        return job
                elif key.data == "reap":
                    self._reap()
                elif not os.read(0, 4096):
                    self._stop()
                    return None

    def _spawn(self) -> Job | None:
        conn, _ = self.listener.accept()
        try:
            request, fds = _receive(conn)
        except (OSError, ValueError):
            conn.close()
            return None
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            conn.close()
            return None
        assert threading.active_count() == 1, "a thread in the fork server: fork is unsafe"
        pid = os.fork()
        if pid == 0:
            self._become_child(conn, fds)
            return Job(request["argv"], request["env"], request["cwd"])
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn
        _answer(conn, pid)
        return None

    def _become_child(self, conn: socket.socket, fds: list[int]) -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.selector.close()
        self.listener.close()
        conn.close()
        for other in self.children.values():
            other.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in set(fds):
            if fd > 2:
                os.close(fd)

    def _reap(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                _answer(conn, os.waitstatus_to_exitcode(status))
                conn.close()

    def _stop(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def main(path: str) -> Job | None:
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    server = Server(path)
    # The children share the imported modules' pages until they write to them; a collection
    # touching every object would copy them all.
    gc.freeze()
    ready = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    ready.write("ready\n")
    ready.close()
    return server.serve()


if __name__ == "__main__":
    job = main(sys.argv[1])
    if job is not None:
        del main, Server
        job.run()
