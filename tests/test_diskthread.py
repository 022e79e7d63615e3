"""The disk thread: jobs in batches, one folder fsync a batch, one wake of the loop a batch.

- a job is reported done only once the folders it renamed into are durable, and each folder
  is fsynced once for all the jobs of a batch that renamed into it;
- a job that raises fails alone; a folder whose fsync fails fails the jobs that renamed there;
- a caller cancelled while it waits leaves its job to run, and the thread goes on;
- the thread ends once its loop is closed, and never holds the interpreter's exit;
- a download's file is reported only after its folder's fsync (through the mock server).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import anyio
import anyio.to_thread
import pytest

from sora_async.config import Secret
from sora_async.diskthread import (
    FILE_THREADS,
    DiskThread,
    disk_thread,
    set_disk_thread,
    sync_directory_later,
)
from sora_async.download import download_file
from sora_async.mock import MockConfig, MockServer
from sora_async.transport import Transport

pytestmark = pytest.mark.anyio


class Folders:
    """A sync_directory that records each folder and can hold the thread in it."""

    def __init__(self, *, hold: bool = False, failing: str | None = None) -> None:
        self.synced: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.failing = failing

    def __call__(self, folder: str) -> None:
        self.started.set()
        self.release.wait(30)
        if folder == self.failing:
            raise OSError(5, "Input/output error")
        self.synced.append(folder)


def renaming(folder: str, value: str) -> Callable[[], str]:
    def job() -> str:
        sync_directory_later(folder)
        return value

    return job


async def held(thread: DiskThread) -> threading.Event:
    """A job that holds the thread until the returned event is set: what is queued meanwhile
    makes one batch."""
    gate, running = threading.Event(), threading.Event()

    def hold() -> None:
        running.set()
        gate.wait(30)

    asyncio.get_running_loop().create_task(thread.run(hold))
    await anyio.to_thread.run_sync(running.wait, 30)
    return gate


async def test_a_batch_fsyncs_each_folder_once_and_reports_after_it() -> None:
    folders = Folders(hold=True)
    thread = DiskThread(asyncio.get_running_loop(), sync_directory=folders)
    gate = await held(thread)
    jobs = [
        asyncio.create_task(thread.run(renaming(folder, f"{folder}-{n}")))
        for n in range(3)
        for folder in ("a", "b")
    ]
    await asyncio.sleep(0)
    gate.set()
    await anyio.to_thread.run_sync(folders.started.wait, 30)
    for _ in range(5):  # a report sent before the fsync would arrive meanwhile
        await asyncio.sleep(0)
    assert not any(job.done() for job in jobs)

    folders.release.set()
    results = await asyncio.gather(*jobs)

    assert results == [f"{folder}-{n}" for n in range(3) for folder in ("a", "b")]
    assert sorted(folders.synced) == ["a", "b"]
    assert thread.batches == 2  # the holding job's, then the six queued behind it


async def test_a_failing_job_or_folder_fails_only_its_own_jobs() -> None:
    folders = Folders(failing="bad")
    thread = DiskThread(asyncio.get_running_loop(), sync_directory=folders)
    gate = await held(thread)

    def broken() -> None:
        raise ValueError("this job only")

    jobs = [
        asyncio.create_task(thread.run(renaming("good", "kept"))),
        asyncio.create_task(thread.run(broken)),
        asyncio.create_task(thread.run(renaming("bad", "lost"))),
        asyncio.create_task(thread.run(lambda: "plain")),
    ]
    await asyncio.sleep(0)
    gate.set()
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)

    assert outcomes[0] == "kept"
    assert isinstance(outcomes[1], ValueError)
    assert isinstance(outcomes[2], OSError)
    assert outcomes[3] == "plain"
    assert folders.synced == ["good"]
    assert await thread.run(lambda: "still serving") == "still serving"


async def test_a_cancelled_caller_leaves_its_job_to_run() -> None:
    thread = DiskThread(asyncio.get_running_loop(), sync_directory=Folders())
    gate = await held(thread)
    ran = threading.Event()

    def job() -> str:
        ran.set()
        raise ValueError("nobody hears this")

    with anyio.move_on_after(0):
        await thread.run(job)
    beside = asyncio.create_task(thread.run(lambda: "beside it"))
    await asyncio.sleep(0)
    gate.set()

    assert await beside == "beside it"  # in the same batch as the dropped one
    assert ran.is_set()
    assert await thread.run(lambda: "next") == "next"


async def test_the_loops_thread_is_one_and_serves_downloads(tmp_path: Path) -> None:
    folders = Folders()
    set_disk_thread(DiskThread(asyncio.get_running_loop(), sync_directory=folders))
    assert disk_thread() is disk_thread()
    async with MockServer(MockConfig(task_seconds=0, file_size=4096)) as mock:
        task = mock.state.create_task(
            provider="freesora", key="k", prompt="a kite", params={}, cost=0, origin=mock.base_url
        )
        async with Transport(mock.freesora_url, Secret("k")) as transport:
            session: aiohttp.ClientSession = transport.session
            dest = tmp_path / "videos" / "clip.mp4"
            url = f"{mock.base_url}/files/{task.task_id}.mp4"

            done = await download_file(session, url, dest)

    assert done.path == dest and dest.stat().st_size == 4096
    # The new name was made durable before download_file said the file is there.
    assert folders.synced == [str(dest.parent)]


def _threads_named(name: str) -> int:
    return sum(thread.name == name for thread in threading.enumerate())


async def test_one_thread_serves_while_it_keeps_up() -> None:
    # Every thread more takes the GIL from the loop at each system call it returns from.
    disk = DiskThread(asyncio.get_running_loop(), threads=4, name="keeping-up")
    for _ in range(3):
        await asyncio.gather(*(disk.run(time.sleep, 0.001) for _ in range(5)))
        await asyncio.sleep(0.05)  # longer than a growth's look: a slow job would have grown
    assert _threads_named("keeping-up") == 1
    disk.stop()


async def test_the_files_threads_write_side_by_side() -> None:
    # A job that waits for the next one to run: it finishes only if another thread runs that
    # one meanwhile (fsyncs issued together are committed together). The second thread starts
    # because the second job waits too long for the first.
    assert FILE_THREADS >= 2
    both = threading.Barrier(2, timeout=30)
    running = threading.Event()

    def first() -> int:
        running.set()
        return both.wait()

    waiting = asyncio.create_task(disk_thread().run(first))
    await anyio.to_thread.run_sync(running.wait, 30)
    second = await disk_thread().run(both.wait)
    assert sorted([await waiting, second]) == [0, 1]


def loop_thread() -> threading.Thread:
    async def one() -> threading.Thread:
        # Never idle long enough to end on its own: only the closed loop can end it.
        set_disk_thread(DiskThread(asyncio.get_running_loop(), idle_end=float("inf")))
        return await disk_thread().run(threading.current_thread)

    return anyio.run(one)


def test_the_thread_ends_with_its_loop() -> None:
    first = loop_thread()
    first.join(30)
    assert not first.is_alive()
    second = loop_thread()
    assert second is not first
    second.join(30)
    assert not second.is_alive()


SCRIPT = """
import asyncio, sys, threading
from sora_async.diskthread import DiskThread

loop = asyncio.new_event_loop()
thread = DiskThread(loop, idle_end=float("inf"), threads=2, start_with=2)
print(loop.run_until_complete(thread.run(lambda: "done")))
# The loop is never closed: only the interpreter's exit can end the thread.
"""


def test_an_idle_thread_never_holds_the_exit() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"


def _spin(seconds: float) -> None:
    """Run Python (holding the GIL) for ``seconds``."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


def test_a_thread_woken_for_a_job_another_took_still_ends() -> None:
    """CPython's SimpleQueue.get(timeout=...) waits forever in a thread woken for an item that
    another thread took once its deadline has passed; a disk thread stuck there once held a
    finished CLI's exit for good. Here thread A, busy with a job, is first in line for the GIL
    when a second job wakes the idle thread W, and the GIL is held past W's idle check (0.1 s),
    so that A takes the job W was woken for. Each round, both threads must still end once the
    loop is closed."""

    async def race(disk: DiskThread) -> None:
        await disk.run(lambda: None)  # both threads started; then idle in get(timeout)
        await asyncio.sleep(0.05)
        first = asyncio.ensure_future(disk.run(time.sleep, 0.01))
        await asyncio.sleep(0.005)  # A took it and sleeps, without the GIL
        switch = sys.getswitchinterval()
        sys.setswitchinterval(1.0)
        try:
            _spin(0.03)  # A's sleep is over: A waits for the GIL
            queued = disk.run(lambda: None)
            second = queued.send(None)  # queued, and W woken, behind A in the GIL's line
            _spin(0.3)
        finally:
            sys.setswitchinterval(switch)
        await first
        await asyncio.wait([second])  # driven by hand above: not awaitable as a future again
        queued.close()

    for _ in range(4):
        loop = asyncio.new_event_loop()
        disk = DiskThread(loop, threads=2, start_with=2, idle_end=float("inf"), name="race")
        loop.run_until_complete(race(disk))
        loop.close()
        ending = time.monotonic() + 10
        while any(t.name == "race" for t in threading.enumerate()):
            if time.monotonic() > ending:
                disk.stop()  # wakes a stuck thread: the failure must not hang the run's exit
                pytest.fail("a disk thread never saw its loop closed")
            time.sleep(0.02)
