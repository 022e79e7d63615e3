"""The mock server in a child process (:mod:`.child`), so that it never shares the client's
event loop or CPU time, and its own records (O(N) by design) never count against the
client's memory.

The parent starts and stops one fresh server per measured run, and gets back the mock's task
records (when each task was created and ended, on the machine's monotonic clock, which parent
and child share) and its counters.
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs

from ..mock import MockConfig, MockCounters, MockServer, TaskRecord
from .child import Child
from .scenarios import FaultStep

__all__ = ["MockProcess", "ServerLog"]


@attrs.frozen
class ServerLog:
    """What one server saw: its task records (None when not asked for) and its counters."""

    records: list[TaskRecord] | None
    counters: MockCounters


class MockProcess(Child):
    """``async with MockProcess() as mock:``, then ``url = await mock.start({...})`` and
    ``log = await mock.stop()`` around each run."""

    async def start(self, config: dict[str, Any], plan: list[FaultStep] | None = None) -> str:
        """A fresh server with ``MockConfig(**config)`` playing ``plan``: its freesora URL."""
        url = await self.call(_start, config, plan or [])
        assert isinstance(url, str)
        return url

    async def counters(self) -> MockCounters:
        """A copy of the running server's counters, without stopping it."""
        counters = await self.call(_counters)
        assert isinstance(counters, MockCounters)
        return counters

    async def first_create_after(self, moment: float) -> float | None:
        """When the first task created after ``moment`` (monotonic clock) was created."""
        found = await self.call(_first_create_after, moment)
        assert found is None or isinstance(found, float)
        return found

    async def stop(self, *, records: bool = True) -> ServerLog:
        """Stop the running server; what it saw."""
        log = await self.call(_stop, records)
        assert isinstance(log, ServerLog)
        return log


# -- in the child ----------------------------------------------------------------------------


@attrs.define
class _Running:
    server: MockServer
    player: asyncio.Task[None]


_running: list[_Running] = []


async def _play(server: MockServer, plan: list[FaultStep]) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    for step in plan:
        await asyncio.sleep(max(0.0, began + step.at - loop.time()))
        server.inject(step.endpoint, step.fault, times=step.times, retry_after=step.retry_after)


async def _start(config: dict[str, Any], plan: list[FaultStep]) -> str:
    if _running:
        raise RuntimeError("a mock server is already running in this child")
    server = MockServer(MockConfig(**config))
    await server.start()
    _running.append(_Running(server, asyncio.create_task(_play(server, plan))))
    return server.freesora_url


def _server() -> MockServer:
    if not _running:
        raise RuntimeError("no mock server is running in this child")
    return _running[-1].server


def _counters() -> MockCounters:
    return _server().counters.snapshot()


def _first_create_after(moment: float) -> float | None:
    # Tasks are kept in creation order: the first one past the moment is the answer.
    return next((t.created_at for t in _server().tasks() if t.created_at > moment), None)


async def _stop(records: bool) -> ServerLog:
    if not _running:
        raise RuntimeError("no mock server is running in this child")
    running = _running.pop()
    running.player.cancel()
    log = ServerLog(running.server.tasks() if records else None, running.server.counters.snapshot())
    await running.server.close()
    return log
