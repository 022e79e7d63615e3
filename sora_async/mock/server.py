"""MockServer (start, stop, controls) and serve() for the ``mock-server`` command."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Callable
from types import TracebackType

from aiohttp import web

from .app import create_app, state_of
from .config import MockConfig
from .counters import MockCounters
from .faults import Fault
from .state import MockState
from .tasks import TaskRecord
from .trips import Trip, TripCallback

__all__ = ["FREESORA_PREFIX", "SORA2API_PREFIX", "MockServer", "serve"]

FREESORA_PREFIX = "/api"
SORA2API_PREFIX = "/api/v1/sora2"
_PREFIXES = {"freesora": FREESORA_PREFIX, "sora2api": SORA2API_PREFIX}
#: Real seconds aiohttp waits for open answers at close (slow faults give up at once anyway).
_SHUTDOWN_TIMEOUT = 2.0


def _url_host(host: str) -> str:
    """The host as a URL names it: wildcard binds become loopback, IPv6 gets brackets."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    return f"[{address}]" if address.version == 6 else str(address)


class MockServer:
    """The mock on a real socket: ``async with MockServer(config) as mock: ...``.

    ``port=0`` picks a free port; :attr:`base_url` tells which (https with ``ssl_context``).
    A server runs once: after :meth:`close` it cannot be started again.
    """

    def __init__(
        self,
        config: MockConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config or MockConfig()
        self.app = create_app(self.config)
        self.state: MockState = state_of(self.app)
        self._host = host
        self._requested_port = port
        # With a server context the mock speaks HTTPS (tests of CA bundles and proxies).
        self._ssl_context = ssl_context
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._closed:
            raise RuntimeError("this MockServer was closed; create a new one")
        if self._runner is not None:
            raise RuntimeError("this MockServer is already running")
        runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(
                runner, self._host, self._requested_port, ssl_context=self._ssl_context
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._closed = True
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def close(self) -> None:
        """Stop listening, end slow answers and callbacks, release everything. Idempotent."""
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> MockServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- addresses ----------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the MockServer is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``, the server root."""
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{_url_host(self._host)}:{self.port}"

    @property
    def freesora_url(self) -> str:
        """The freesora base URL (the API root its document gives, on this server)."""
        return self.base_url + FREESORA_PREFIX

    @property
    def sora2api_url(self) -> str:
        """The sora2api base URL."""
        return self.base_url + SORA2API_PREFIX

    def url_for(self, provider: str) -> str:
        """The base URL of ``provider`` ("freesora" or "sora2api") on this server."""
        try:
            return self.base_url + _PREFIXES[provider]
        except KeyError:
            raise ValueError(
                f"unknown provider {provider!r}: allowed {', '.join(_PREFIXES)}"
            ) from None

    # -- controls -----------------------------------------------------------------------

    @property
    def counters(self) -> MockCounters:
        """Live counters (take ``.snapshot()`` to keep a copy)."""
        return self.state.counters

    def inject(
        self,
        endpoint: str,
        fault: Fault | str,
        *,
        times: int = 1,
        retry_after: float | None = None,
        delay: float | None = None,
        code: int | None = None,
        status: int | None = None,
        provider: str | None = None,
    ) -> None:
        """Queue a fault for the next ``times`` requests to ``endpoint`` (FIFO per endpoint).

        ``endpoint``: "create", "status", "credits" or "download"; ``provider`` limits it to
        one provider's requests (default: whichever comes first). See :class:`Fault`.
        """
        self.state.inject(
            endpoint,
            fault,
            times=times,
            retry_after=retry_after,
            delay=delay,
            code=code,
            status=status,
            provider=provider,
        )

    def override_status(self, task_id: str, status: str | None) -> None:
        """Answer freesora status polls of ``task_id`` with ``status`` (say an undocumented
        "canceled") instead of its real state, until called again with None."""
        if status is None:
            self.state.status_overrides.pop(task_id, None)
        else:
            self.state.status_overrides[task_id] = status

    def on(self, trip: Trip | str, callback: TripCallback) -> None:
        """Call ``callback(count)`` each time ``trip`` happens (count 1 is the first): a crash
        test kills its client there. See :class:`~sora_async.mock.trips.Trip`."""
        self.state.trips.on(trip, callback)

    def clear_faults(self) -> None:
        self.state.faults.clear()

    def pending_faults(self, endpoint: str | None = None) -> int:
        """Fault repetitions not fired yet."""
        return self.state.faults.pending(endpoint)

    def file_bytes(self, task_id: str) -> bytes:
        """Exactly the bytes served at the task's result URL."""
        return self.state.file_bytes(task_id)

    def set_credits(self, key: str, credits: int) -> None:
        self.state.set_credits(key, credits)

    def credits(self, key: str) -> int:
        return self.state.credits(key)

    def task(self, task_id: str) -> TaskRecord:
        """A snapshot of one task (KeyError if the mock never created it)."""
        return self.state.task(task_id)

    def tasks(self, key: str | None = None) -> list[TaskRecord]:
        """Snapshots of every task, or of one account's, in creation order."""
        return self.state.tasks(key)

    def live_tasks(self, key: str | None = None) -> int:
        """Tasks not terminal at the clock's now (of one account, or of all)."""
        return self.state.live_tasks(key)


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    config: MockConfig | None = None,
    *,
    ready: Callable[[MockServer], object] | None = None,
) -> None:
    """Run the mock until cancelled; ``ready(server)`` is called once it listens."""
    async with MockServer(config, host=host, port=port) as server:
        if ready is not None:
            ready(server)
        await asyncio.Event().wait()
