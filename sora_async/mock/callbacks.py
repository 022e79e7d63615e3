"""sora2api completion callbacks: POST the record-info payload to callBackUrl, in the background.

Tasks end lazily (on the clock), so a dispatcher wakes every ``tick_interval`` to settle them
even when nobody polls; each delivery runs as its own task and is cancelled with the server.
A failed delivery is logged (host and path only: a callback URL may carry a token) and counted;
it never reaches the request handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import web
from yarl import URL

from .sora2api import record_data
from .state import MockState
from .tasks import Task
from .wire import file_url

__all__ = ["CallbackDispatcher"]

log = logging.getLogger("sora_async.mock")


def _safe_url(url: str) -> str:
    try:
        parsed = URL(url)
    except ValueError:
        return "<invalid URL>"
    return str(parsed.with_query(None).with_fragment(None).with_user(None))


class CallbackDispatcher:
    """Sends the callbacks that :class:`MockState` queues as tasks end."""

    def __init__(self, app: web.Application, state: MockState, session: aiohttp.ClientSession):
        self._app = app
        self._state = state
        self._session = session
        self._deliveries: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Until cancelled: settle due tasks and start their deliveries."""
        state = self._state
        try:
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(state.wake.wait(), state.config.tick_interval)
                state.wake.clear()
                state.settle()
                while state.callback_queue:
                    self._start(state.callback_queue.popleft())
        finally:
            await self.cancel_deliveries()

    def _start(self, task: Task) -> None:
        delivery = asyncio.create_task(self._deliver(task), name=f"callback {task.task_id}")
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)

    async def cancel_deliveries(self) -> None:
        pending = list(self._deliveries)
        for delivery in pending:
            delivery.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _deliver(self, task: Task) -> None:
        assert task.callback_url is not None
        state = self._state
        url = file_url(self._app, task.origin, task.task_id)
        data = record_data(task, state, state.now(), url)
        payload = {"code": 200, "msg": "success", "data": data}
        timeout = aiohttp.ClientTimeout(total=state.config.callback_timeout)
        try:
            async with self._session.post(task.callback_url, json=payload, timeout=timeout) as rsp:
                await rsp.read()
                status = rsp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            state.counters.callbacks_failed += 1
            log.warning(
                "callback for %s to %s failed: %s",
                task.task_id,
                _safe_url(task.callback_url),
                type(exc).__name__,
            )
            return
        if 200 <= status < 300:
            state.counters.callbacks_sent += 1
            log.debug("callback for %s delivered", task.task_id)
        else:
            state.counters.callbacks_failed += 1
            log.warning(
                "callback for %s to %s answered HTTP %d",
                task.task_id,
                _safe_url(task.callback_url),
                status,
            )
