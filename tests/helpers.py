"""Shared pieces of the SoraClient integration tests: a mock on 127.0.0.1 and clients for it.

Everything goes over real HTTP to :class:`sora_async.mock.MockServer`; nothing inside the SDK
is patched. A task takes 0.05 s and polls come every 0.05 s, so a test that waits for a task
waits a tenth of a second (0.33 s a generate with 0.2 s tasks and polls); a test that needs a
task alive for longer says so with its own ``task_seconds``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from aiohttp import web
from aiohttp.test_utils import TestServer

from sora_async import SoraClient, VideoRequest
from sora_async.mock import MockConfig, MockServer

#: The slow run (``SORA_ASYNC_SLOW_TESTS=1 python -m pytest``): every property test at its full
#: count of examples, and every CLI test as a real subprocess. CI runs the default counts.
SLOW = os.environ.get("SORA_ASYNC_SLOW_TESTS", "") not in ("", "0")


def examples(ci: int, slow: int) -> int:
    """A property test's number of examples: ``ci`` by default, ``slow`` in the slow run."""
    return slow if SLOW else ci


PROVIDERS = ("freesora", "sora2api")
KEY = "sk-test-0123456789abcdef"
#: Only reached when something hangs; never a measure of speed.
HANG_GUARD = 30.0
#: A public image URL: the mock checks its form and never fetches it.
IMAGE_URL = "https://images.example.com/source/kite.png?size=large"


def tiny_png() -> bytes:
    """A valid 1x1 PNG (signature, IHDR, IDAT, IEND), built here so no file is needed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@contextlib.asynccontextmanager
async def running_mock(**config: Any) -> AsyncIterator[MockServer]:
    """A mock server with fast tasks (override any MockConfig field), guarded against hangs."""
    settings: dict[str, Any] = {"task_seconds": 0.05, "jitter": 0.0, **config}
    with anyio.fail_after(HANG_GUARD):
        async with MockServer(MockConfig(**settings)) as mock:
            yield mock


def client_for(mock: MockServer, provider: str, key: str = KEY, **options: Any) -> SoraClient:
    """A client of ``provider`` on ``mock``, tuned for sub-second tasks."""
    settings: dict[str, Any] = {
        "base_url": mock.url_for(provider),
        "poll_interval": 0.05,
        "expected_duration": 0.1,
        **options,
    }
    return SoraClient(provider, key, **settings)


def closed_port_url(path: str = "/api") -> str:
    """An http URL on 127.0.0.1 where nothing listens: connecting is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def total_requests(mock: MockServer) -> int:
    """Every request the mock has seen, on any endpoint."""
    return sum(mock.counters.requests.values())


async def wait_until(condition: Callable[[], bool]) -> None:
    """Look at ``condition`` until it holds (background work announces nothing)."""
    with anyio.fail_after(HANG_GUARD):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.02)


async def created_elsewhere(mock: MockServer, provider: str, prompt: str = "a kite") -> str:
    """A task made by another client, which is gone: nobody here follows (polls) it, so a
    test can count exactly the status requests it sends itself."""
    async with client_for(mock, provider) as creator:
        return await creator.create(VideoRequest(prompt))


async def storage_host(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[TestServer]:
    """A storage host on 127.0.0.1 answering every path with ``handler``, for what the mock's
    own storage never sends (``async for server in storage_host(handler):``)."""
    app = web.Application()
    app.router.add_route("*", "/{name:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()
