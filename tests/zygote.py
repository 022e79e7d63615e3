"""Start ``python -m ...`` programs the tests kill, without paying interpreter start-up each time.

:func:`open_process` and :func:`run_process` take the same arguments as anyio's. A command
``[sys.executable, "-m" | "-c" | SCRIPT, ...]`` is forked by the run's fork server
(zygote_server.py: one for a whole xdist run, started by the controller and shared by its
workers; under ``-n 0`` one started on first use), which has already imported
sora_async, aiohttp and the batch; the test gets a real process (its own pid, killable with
SIGKILL or SIGINT, its exit status as subprocess reports it) whose streams are the pipes or
files the test gave. Any other command, and every command when ``SORA_ASYNC_TESTS_SUBPROCESS=1``
or in the slow run (helpers.SLOW), is a plain subprocess: the same test then checks a freshly
started interpreter. The pytest worker itself never forks: execnet runs threads in it.

What a forked child does not share with a fresh interpreter: modules already imported (their
import-time code ran in the fork server, under the pytest environment), the hash seed, and
stdin, which is always /dev/null. A test whose point is what a fresh interpreter imports runs
a plain subprocess (anyio.run_process) instead.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.abc
from helpers import SLOW

SERVER = Path(__file__).with_name("zygote_server.py")
ENABLED = not SLOW and os.environ.get("SORA_ASYNC_TESTS_SUBPROCESS", "") in ("", "0")
_HEADER = struct.Struct("!I")
#: How long a hung child is given to write its threads' stacks before it is killed.
_DUMP_GRACE = 1.0

#: What anyio.open_process accepts for a stream: PIPE, DEVNULL, STDOUT (stderr only), a file
#: object, a file descriptor or None (this process's own).
Stream = int | IO[Any] | None


#: Set by the xdist controller (:func:`start_shared`): the socket of the fork server that its
#: workers share, inherited by each of them.
SHARED = "SORA_ASYNC_TESTS_FORK_SERVER"
#: How long a worker waits for the shared server to be listening before it starts its own.
_SHARED_GUARD = 30.0


def _launch(stdout: int) -> tuple[subprocess.Popen[bytes], str, str]:
    folder = tempfile.mkdtemp(prefix="sora-zygote-")
    path = os.path.join(folder, "socket")
    process = subprocess.Popen(
        [sys.executable, str(SERVER), path],
        stdin=subprocess.PIPE,  # its end of file tells the server its owner is gone
        stdout=stdout,
    )
    return process, folder, path


def start_shared() -> None:
    """Start the one fork server of an xdist run, before the workers start.

    Its imports (about 1 CPU-s) are paid once for the run, not once a worker. It is not waited
    for here: its socket appears once it is listening, and a worker waits for that on its
    first use (long after collection, as a rule).
    """
    if not ENABLED:
        return
    process, folder, path = _launch(subprocess.DEVNULL)
    atexit.register(_Server._stop, process, folder)
    os.environ[SHARED] = path


def _listening(path: str) -> bool:
    deadline = time.monotonic() + _SHARED_GUARD
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class _Server:
    """The fork server this process asks: the run's shared one (:func:`start_shared`), or,
    without one (``-n 0``), its own, started on first use and ended with this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self.path = ""

    def ensure(self) -> str:
        with self._lock:
            shared = os.environ.get(SHARED)
            if self._process is None and shared and _listening(shared):
                return shared
            if self._process is None or self._process.poll() is not None:
                self._start()
            return self.path

    def _start(self) -> None:
        process, folder, self.path = _launch(subprocess.PIPE)
        assert process.stdout is not None
        line = process.stdout.readline()
        process.stdout.close()
        if line != b"ready\n":
            process.kill()
            process.wait()
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeError(f"the fork server did not start: {line!r}")
        self._process = process
        atexit.register(self._stop, process, folder)

    @staticmethod
    def _stop(process: subprocess.Popen[bytes], folder: str) -> None:
        assert process.stdin is not None
        process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        shutil.rmtree(folder, ignore_errors=True)


_SERVER = _Server()


def forkable(command: Sequence[str]) -> bool:
    """True when the fork server can run ``command`` (a Python program, the option on)."""
    if not ENABLED or len(command) < 2 or command[0] != sys.executable:
        return False
    option = command[1]
    return option in ("-m", "-c") or (not option.startswith("-") and option.endswith(".py"))


class _PipeReader(anyio.abc.ByteReceiveStream):
    """The reading end of a child's pipe, as anyio's process streams are."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            if self._fd < 0:
                raise anyio.ClosedResourceError
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                continue
            if not data:
                raise anyio.EndOfStream
            return data

    async def aclose(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class ForkedProcess(anyio.abc.Process):
    """A child of the fork server: a real process, though not a child of this one."""

    def __init__(self, answers: _Answers, pid: int, stdout: int | None, stderr: int | None) -> None:
        self._answers = answers
        self._pid = pid
        self._returncode: int | None = None
        self._stdout = _PipeReader(stdout) if stdout is not None else None
        self._stderr = _PipeReader(stderr) if stderr is not None else None
        self._waiting = threading.Lock()
        self._async_waiting = anyio.Lock()

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    @property
    def stdin(self) -> None:
        return None

    @property
    def stdout(self) -> anyio.abc.ByteReceiveStream | None:
        return self._stdout

    @property
    def stderr(self) -> anyio.abc.ByteReceiveStream | None:
        return self._stderr

    def _settle(self, line: bytes) -> None:
        self._returncode = int(line)
        self._answers.conn.close()

    async def wait(self) -> int:
        async with self._async_waiting:
            while self._returncode is None:
                line = self._answers.line(blocking=False)
                if line is None:
                    await anyio.wait_readable(self._answers.conn)
                else:
                    self._settle(line)
        return self._returncode

    def wait_blocking(self) -> int:
        """:meth:`wait` for a synchronous test."""
        with self._waiting:
            if self._returncode is None:
                line = self._answers.line(blocking=True)
                assert line is not None
                self._settle(line)
        assert self._returncode is not None
        return self._returncode

    def send_signal(self, signal_number: int) -> None:
        if self._returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal_number)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def aclose(self) -> None:
        for stream in (self._stdout, self._stderr):
            if stream is not None:
                await stream.aclose()
        await self.wait()


class _Answers:
    """The fork server's answer lines on one connection: the child's pid, then its status."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self._buffer = b""

    def line(self, *, blocking: bool) -> bytes | None:
        """The next line; None if it has not come yet (and ``blocking`` is false)."""
        while b"\n" not in self._buffer:
            try:
                chunk = self.conn.recv(64, 0 if blocking else socket.MSG_DONTWAIT)
            except BlockingIOError:
                return None
            if not chunk:
                raise ConnectionError("the fork server closed the connection before answering")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line


def _fd_of(stream: Stream, default: int, opened: list[int], ours: list[int]) -> tuple[int, int]:
    """The descriptor the child gets for ``stream``, and the one this side reads (or -1)."""
    if stream is None:
        return default, -1
    if stream == subprocess.DEVNULL:
        fd = os.open(os.devnull, os.O_RDWR)
        opened.append(fd)
        return fd, -1
    if stream == subprocess.PIPE:
        read, write = os.pipe()
        opened.append(write)
        ours.append(read)
        return write, read
    if isinstance(stream, int):
        return stream, -1
    return stream.fileno(), -1


def spawn_blocking(
    command: Sequence[str],
    *,
    stdout: Stream = subprocess.PIPE,
    stderr: Stream = subprocess.PIPE,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> ForkedProcess:
    """Ask the fork server for ``command`` (see :func:`forkable`); blocks for a moment."""
    path = _SERVER.ensure()
    opened: list[int] = []
    ours: list[int] = []
    try:
        stdin_fd, _ = _fd_of(subprocess.DEVNULL, 0, opened, ours)
        out_fd, out_read = _fd_of(stdout, 1, opened, ours)
        if stderr == subprocess.STDOUT:
            err_fd, err_read = out_fd, -1
        else:
            err_fd, err_read = _fd_of(stderr, 2, opened, ours)
        request = json.dumps(
            {
                "argv": list(command[1:]),
                "env": dict(os.environ if env is None else env),
                "cwd": os.fspath(cwd) if cwd is not None else os.getcwd(),
            }
        ).encode()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        answers = _Answers(conn)
        try:
            conn.connect(path)
            socket.send_fds(
                conn, [_HEADER.pack(len(request)) + request], [stdin_fd, out_fd, err_fd]
            )
            line = answers.line(blocking=True)
            assert line is not None
        except BaseException:
            conn.close()
            raise
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        for fd in opened:
            os.close(fd)
    return ForkedProcess(
        answers, int(line), out_read if out_read >= 0 else None, err_read if err_read >= 0 else None
    )


async def open_process(
    command: Sequence[str],
    *,
    stdin: Stream = subprocess.PIPE,
    stdout: Stream = subprocess.PIPE,
    stderr: Stream = subprocess.PIPE,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> anyio.abc.Process:
    """anyio.open_process, forked by the fork server when it can run ``command``.

    A forked child's stdin is /dev/null whatever ``stdin`` says (no test writes to one).
    """
    if not forkable(command):
        return await anyio.open_process(
            list(command), stdin=stdin, stdout=stdout, stderr=stderr, env=env, cwd=cwd
        )
    return await anyio.to_thread.run_sync(
        lambda: spawn_blocking(command, stdout=stdout, stderr=stderr, env=env, cwd=cwd)
    )


async def run_process(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = False,
    stdin: Stream = subprocess.DEVNULL,
    hang_guard: float = 45.0,
) -> subprocess.CompletedProcess[bytes]:
    """anyio.run_process, forked by the fork server when it can run ``command``.

    A forked child still running after ``hang_guard`` seconds is asked for the stacks of its
    threads (SIGUSR2: faulthandler, see zygote_server.py), then killed, and the test fails
    with those stacks: a hang in CI says where it hung, not only that the test timed out.
    """
    if not forkable(command):
        return await anyio.run_process(list(command), env=env, cwd=cwd, check=check, stdin=stdin)
    process = await open_process(command, env=env, cwd=cwd)
    output = {"stdout": bytearray(), "stderr": bytearray()}

    async def drain(stream: anyio.abc.ByteReceiveStream | None, into: bytearray) -> None:
        if stream is not None:
            async for chunk in stream:
                into.extend(chunk)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(drain, process.stdout, output["stdout"])
            group.start_soon(drain, process.stderr, output["stderr"])
            with anyio.move_on_after(hang_guard) as guard:
                await process.wait()
            if guard.cancelled_caught:
                process.send_signal(signal.SIGUSR2)
                await anyio.sleep(_DUMP_GRACE)
                process.kill()
        if guard.cancelled_caught:
            stderr = output["stderr"][-20_000:].decode(errors="replace")
            raise TimeoutError(
                f"{list(command)[1:4]} still running after {hang_guard} s; its threads and "
                f"the end of its stderr:\n{stderr}"
            )
        code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()
        await process.aclose()
    done = subprocess.CompletedProcess(
        list(command), code, bytes(output["stdout"]), bytes(output["stderr"])
    )
    if check:
        done.check_returncode()
    return done


class TextChild:
    """What a synchronous test needs of ``subprocess.Popen(..., stdout=PIPE, text=True)``:
    its stdout as text, a signal, the exit status. Forked when :func:`forkable` says so."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self._popen: subprocess.Popen[str] | None = None
        self._forked: ForkedProcess | None = None
        if forkable(command):
            read, write = os.pipe()
            try:
                self._forked = spawn_blocking(command, stdout=write, stderr=None, env=env, cwd=cwd)
            except BaseException:
                os.close(read)
                raise
            finally:
                os.close(write)
            self.stdout: IO[str] = os.fdopen(read, "r")
        else:
            self._popen = subprocess.Popen(
                list(command), stdout=subprocess.PIPE, text=True, env=env, cwd=cwd
            )
            assert self._popen.stdout is not None
            self.stdout = self._popen.stdout

    def send_signal(self, signal_number: int) -> None:
        if self._forked is not None:
            self._forked.send_signal(signal_number)
        else:
            assert self._popen is not None
            self._popen.send_signal(signal_number)

    def wait(self) -> int:
        if self._forked is not None:
            return self._forked.wait_blocking()
        assert self._popen is not None
        return self._popen.wait()
