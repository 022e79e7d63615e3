"""Creates on kept-alive connections: reused only while the server cannot have closed them.

The server here is a few lines of HTTP/1.1 over 127.0.0.1 that closes a connection once it has
been idle for ``IDLE_CLOSE`` seconds, with the one property that makes that dangerous: the
close reaches the client late. A request that arrives on a connection idle that long is the
request that crossed the server's close: it is cut off unanswered, as a real server's RST
would cut it. A create sent that way fails as "dropped" (an unknown outcome, paid or not?)
when the server never saw it; the transport must not send one that way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from sora_async.calls import ApiCall, Endpoint, RawResponse
from sora_async.config import Secret
from sora_async.errors import ConnectionDroppedError, ProtocolError, SoraError
from sora_async.transport import Transport

pytestmark = pytest.mark.anyio

KEY = Secret("sk-keepalive-0123456789")
CREATE = ApiCall(Endpoint.CREATE, "POST", "/v1/video/sora-video", json={"prompt": "a kite"})
#: The server's idle timeout, and a create bound well under it.
IDLE_CLOSE = 0.5
UNDER = 0.1
#: Pauses between rounds of creates, below, around and above the server's timeout. The
#: rounds right after another are what must reuse a connection: on a loaded machine even a
#: 0.05 s sleep has taken longer than UNDER, so that no gap looked fresh.
GAPS = (0.0, 0.0, 0.0, 0.05, 0.08, 0.15, 0.3, 0.45, 0.55, 0.7)
#: Creates sent at once in each round, so that the pool holds several connections.
ROUND = 3


class _Connection(asyncio.Protocol):
    def __init__(self, server: IdleClosingServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._answered_at: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server.connections += 1

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        idle = None if self._answered_at is None else self._loop_time() - self._answered_at
        if not self._buffer and idle is not None and idle >= self._server.idle_close:
            # This request crossed our close: it is never read, never answered.
            self._server.cut_off += 1
            self._transport.abort()
            return
        self._buffer += data
        head, found, rest = self._buffer.partition(b"\r\n\r\n")
        if not found:
            return
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(rest) < length:
            return
        self._buffer = b""
        self._server.requests += 1
        body = json.dumps({"code": 200, "data": {"id": f"task-{self._server.requests}"}})
        headers = [
            "HTTP/1.1 200 OK",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            *self._server.extra_headers,
        ]
        self._transport.write(("\r\n".join(headers) + "\r\n\r\n" + body).encode())
        self._answered_at = self._loop_time()

    @staticmethod
    def _loop_time() -> float:
        return asyncio.get_running_loop().time()


class IdleClosingServer:
    """Counts connections, answered requests and requests cut off by its idle close."""

    def __init__(self, idle_close: float, extra_headers: tuple[str, ...] = ()) -> None:
        self.idle_close = idle_close
        self.extra_headers = extra_headers
        self.connections = 0
        self.requests = 0
        self.cut_off = 0
        self.url = ""


@asynccontextmanager
async def idle_closing_server(
    idle_close: float = IDLE_CLOSE, extra_headers: tuple[str, ...] = ()
) -> AsyncIterator[IdleClosingServer]:
    state = IdleClosingServer(idle_close, extra_headers)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(state), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}/api"
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


def decode(raw: RawResponse) -> dict[str, Any]:
    value = json.loads(raw.body)
    if raw.status != 200 or not isinstance(value, dict):
        raise ProtocolError("unexpected answer", endpoint=raw.endpoint)
    return value


async def spaced_creates(transport: Transport) -> list[SoraError]:
    """Rounds of creates with the pauses of GAPS between them; the errors they met."""
    errors: list[SoraError] = []

    async def create() -> None:
        try:
            await transport.call(CREATE, decode, safe=False)
        except SoraError as exc:
            errors.append(exc)

    for gap in GAPS:
        await asyncio.sleep(gap)  # idle time for the pool, not a wait for a retry
        with anyio.fail_after(10):
            await asyncio.gather(*(create() for _ in range(ROUND)))
    return errors


async def test_creates_around_the_servers_idle_timeout_never_fail_as_dropped() -> None:
    async with (
        idle_closing_server() as server,
        Transport(server.url, KEY, create_reuse_idle=UNDER) as transport,
    ):
        errors = await spaced_creates(transport)
    assert errors == []
    assert server.cut_off == 0 and server.requests == ROUND * len(GAPS)
    # Kept-alive connections were used where they were fresh: not one connection a create.
    assert server.connections < server.requests


async def test_a_bound_above_the_servers_timeout_lets_creates_fail_as_dropped() -> None:
    # The control experiment: the same traffic with the bound above the server's timeout
    # reuses connections the server has closed, so the test above is not passing by luck.
    async with (
        idle_closing_server() as server,
        Transport(server.url, KEY, create_reuse_idle=5 * IDLE_CLOSE) as transport,
    ):
        errors = await spaced_creates(transport)
    assert server.cut_off > 0
    assert errors and all(isinstance(e, ConnectionDroppedError) for e in errors)


async def test_a_servers_keep_alive_timeout_lowers_the_bound() -> None:
    # The default bound (1 s) is above this server's 0.5 s; it says so in Keep-Alive.
    async with (
        idle_closing_server(extra_headers=(f"Keep-Alive: timeout={IDLE_CLOSE}",)) as server,
        Transport(server.url, KEY) as transport,
    ):
        errors = await spaced_creates(transport)
    assert errors == [] and server.cut_off == 0
    assert server.connections < server.requests


async def test_connection_close_from_the_server_is_honoured() -> None:
    # The server says it closes each connection after its answer (but its close is late):
    # no second request may go over any of them, whatever the bound.
    async with (
        idle_closing_server(idle_close=0.0, extra_headers=("Connection: close",)) as server,
        Transport(server.url, KEY, create_reuse_idle=5.0) as transport,
    ):
        for _ in range(4):
            await transport.call(CREATE, decode, safe=False)
            await transport.call(
                ApiCall(Endpoint.STATUS, "POST", "/status", json={}), decode, safe=True
            )
    assert server.cut_off == 0
    assert server.connections == server.requests == 8


async def test_a_bound_of_zero_opens_a_connection_for_every_create() -> None:
    async with (
        idle_closing_server() as server,
        Transport(server.url, KEY, create_reuse_idle=0.0) as transport,
    ):
        for _ in range(4):
            await transport.call(CREATE, decode, safe=False)
    assert server.connections == server.requests == 4
