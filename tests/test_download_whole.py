"""Small files read whole and written in one disk trip; large ones still stream and resume.

What a small answer (Content-Length at most 1 MiB, a 200) keeps of the streamed path's
guarantees, over real HTTP on 127.0.0.1:

- a body cut short, or longer than its Content-Length, fails the file with a DownloadError and
  leaves neither the file nor a .part;
- an HTML or JSON answer is refused, by its type or by its first bytes, whole or streamed;
- the size cap holds, to the byte;
- the file is fsynced as a .part, renamed, and its folder synced, all before success is
  reported;
- a file over the limit streams to its .part, and a cut one resumes from it with Range.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from helpers import storage_host

from sora_async.calls import Endpoint
from sora_async.config import Secret
from sora_async.diskthread import DiskThread, set_disk_thread
from sora_async.download import download_file
from sora_async.errors import DownloadError
from sora_async.mock import Fault, MockConfig, MockServer
from sora_async.retry import RetryPolicy
from sora_async.transport import Transport

pytestmark = pytest.mark.anyio

PAYLOAD = bytes(range(256)) * 40
NO_RETRY = RetryPolicy(attempts=1)
#: Over the whole-body limit (1 MiB): streamed.
LARGE = 1024 * 1024 + 4096


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def raw_storage(answer: bytes) -> AsyncIterator[str]:
    """A host that answers every request with ``answer`` as it is, then hangs up: what no
    HTTP server library would send."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)  # one write: the client reads it all at once
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/f.mp4"
    finally:
        server.close()
        await server.wait_closed()


def new_task(mock: MockServer) -> str:
    task = mock.state.create_task(
        provider="freesora", key="k", prompt="a kite", params={}, cost=0, origin=mock.base_url
    )
    return task.task_id


def file_url(mock: MockServer, task_id: str) -> str:
    return f"{mock.base_url}/files/{task_id}.mp4"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- the body's length ---------------------------------------------------------------------


async def test_a_small_body_cut_short_fails_and_leaves_nothing(tmp_path: Path) -> None:
    async with MockServer(MockConfig(task_seconds=0, file_size=8192)) as mock:
        task_id = new_task(mock)
        mock.inject(Endpoint.DOWNLOAD, Fault.MALFORMED)  # half the body, then a hang-up
        async with aiohttp.ClientSession() as session:
            with pytest.raises(DownloadError, match="cut short"):
                await download_file(
                    session, file_url(mock, task_id), tmp_path / "f.mp4", retry=NO_RETRY
                )
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "answer",
    [
        # 20 bytes after a Content-Length of 10.
        b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 10\r\n\r\n" + b"x" * 20,
        # A chunked body of 20 bytes that also claims 10.
        b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 10\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n14\r\n" + b"y" * 20 + b"\r\n0\r\n\r\n",
    ],
    ids=["after-the-length", "chunked-with-a-length"],
)
async def test_a_small_body_longer_than_announced_fails_and_leaves_nothing(
    session: aiohttp.ClientSession, tmp_path: Path, answer: bytes
) -> None:
    dest = tmp_path / "f.mp4"
    async for url in raw_storage(answer):
        with pytest.raises(DownloadError, match="malformed HTTP answer") as caught:
            await download_file(session, url, dest, retry=RetryPolicy(attempts=2))
    assert "gave up after 2 attempt" in str(caught.value)
    assert leftovers(tmp_path) == []


# -- not a video ---------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(
    "body", [b" \r\n\t<!doctype HTML><html>Sign in</html>", b'[{"error": "expired"}]']
)
async def test_a_document_is_refused_whole_or_streamed(
    session: aiohttp.ClientSession, tmp_path: Path, body: bytes, streamed: bool
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "binary/octet-stream"})
        if streamed:
            response.enable_chunked_encoding()  # no length: never read whole
        else:
            response.content_length = len(body)
        await response.prepare(request)
        await response.write(body)
        return response

    async for server in storage_host(handler):
        dest = tmp_path / "f.mp4"
        with pytest.raises(DownloadError, match="is a document"):
            await download_file(session, str(server.make_url("/f.mp4")), dest)
    assert leftovers(tmp_path) == []


async def test_a_json_answer_to_a_small_file_is_refused(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "the link expired"})

    async for server in storage_host(handler):
        dest = tmp_path / "f.mp4"
        with pytest.raises(DownloadError, match="sent application/json, not a video"):
            await download_file(session, str(server.make_url("/f.mp4")), dest)
    assert leftovers(tmp_path) == []


# -- the cap -------------------------------------------------------------------------------


@pytest.mark.parametrize("over", [1, 0])
async def test_the_cap_holds_to_the_byte(
    session: aiohttp.ClientSession, tmp_path: Path, over: int
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=PAYLOAD, content_type="video/mp4")

    cap = len(PAYLOAD) - over
    async for server in storage_host(handler):
        dest = tmp_path / "f.mp4"
        url = str(server.make_url("/f.mp4"))
        if over:
            with pytest.raises(DownloadError, match=f"over the limit of {cap} bytes"):
                await download_file(session, url, dest, max_bytes=cap)
            assert leftovers(tmp_path) == []
        else:
            result = await download_file(session, url, dest, max_bytes=cap)
            assert result.size == cap and dest.read_bytes() == PAYLOAD


# -- durable before success ----------------------------------------------------------------


class Disk:
    """What reached the disk, in order: each file fsync (its inode, size, and whether the
    destination existed yet) and each folder fsync."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.events: list[tuple[str, object]] = []

    def fsync_file(self, fd: int) -> None:
        info = os.fstat(fd)
        self.events.append(("file", (info.st_ino, info.st_size, self.dest.exists())))

    def fsync_folder(self, folder: str) -> None:
        self.events.append(("folder", folder))


async def test_a_small_file_is_fsynced_renamed_and_its_folder_synced_before_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "videos" / "clip.mp4"
    disk = Disk(dest)
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        # A file's fsync cannot be seen from outside the process; the folder's is handed in.
        disk.fsync_file(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    set_disk_thread(DiskThread(asyncio.get_running_loop(), sync_directory=disk.fsync_folder))
    async with MockServer(MockConfig(task_seconds=0, file_size=8192)) as mock:
        task_id = new_task(mock)
        async with Transport(mock.freesora_url, Secret("k")) as transport:
            result = await download_file(transport.session, file_url(mock, task_id), dest)
            expected = mock.file_bytes(task_id)

    # By the time download_file returned: the bytes fsynced under the .part name (the file
    # not yet there), then the rename's folder synced; the file is that inode.
    assert disk.events == [
        ("file", (dest.stat().st_ino, len(expected), False)),
        ("folder", str(dest.parent)),
    ]
    assert dest.read_bytes() == expected
    assert result.sha256 == hashlib.sha256(expected).hexdigest() and result.size == 8192
    assert leftovers(dest.parent) == ["clip.mp4"]


# -- large files still stream --------------------------------------------------------------


async def test_a_large_file_streams_and_a_cut_resumes_from_its_part(tmp_path: Path) -> None:
    async with MockServer(MockConfig(task_seconds=0, file_size=LARGE)) as mock:
        task_id = new_task(mock)
        mock.inject(Endpoint.DOWNLOAD, Fault.MALFORMED)  # half the body, then a hang-up
        seen: list[int] = []
        async with Transport(mock.freesora_url, Secret("k")) as transport:
            dest = tmp_path / "big.mp4"
            result = await download_file(
                transport.session,
                file_url(mock, task_id),
                dest,
                chunk_size=64 * 1024,
                on_progress=lambda done, _: seen.append(done),
                sleep=lambda _: asyncio.sleep(0),
            )
        expected = mock.file_bytes(task_id)
        # The first half was kept and not sent again.
        assert mock.counters.download_bytes == LARGE
        assert mock.counters.requests[Endpoint.DOWNLOAD] == 2
    assert result.resumed is True
    assert dest.read_bytes() == expected
    assert result.sha256 == hashlib.sha256(expected).hexdigest()
    assert 0 < seen[0] < LARGE and seen[-1] == LARGE
    assert leftovers(tmp_path) == ["big.mp4"]
