"""Hostile or broken storage hosts, over real HTTP on 127.0.0.1: what is refused, what restarts.

Each test names one guarantee of sora_async.download: a size cap, no documents saved as
videos, no decompression, redirects followed by hand (http(s) only, bounded), and resumes that
never join two different files (ETag kept beside the .part, If-Range, 416 handled).
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from helpers import storage_host

from sora_async.calls import Endpoint
from sora_async.download import MAX_REDIRECTS, download_file
from sora_async.errors import DownloadError
from sora_async.mock import MockConfig, MockServer
from sora_async.retry import RetryPolicy

PAYLOAD = bytes(range(256)) * 300
ETAG = '"payload-v1"'
FILE_SIZE = 64 * 1024
NO_RETRY = RetryPolicy(attempts=1)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    async with MockServer(MockConfig(task_seconds=0, file_size=FILE_SIZE)) as server:
        yield server


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir())


def write_part(dest: Path, data: bytes, etag: str | None) -> None:
    dest.with_name(dest.name + ".part").write_bytes(data)
    if etag is not None:
        dest.with_name(dest.name + ".part.etag").write_text(etag + "\n")


def new_task(mock: MockServer) -> tuple[str, str]:
    task = mock.state.create_task(
        provider="freesora", key="k", prompt="a kite", params={}, cost=0, origin=mock.base_url
    )
    return task.task_id, f"{mock.base_url}/files/{task.task_id}.mp4"


# -- size ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_announced_size_over_the_cap_is_refused_before_any_byte(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=PAYLOAD, content_type="video/mp4")

    async for server in storage_host(handler):
        dest = tmp_path / "f.mp4"
        with pytest.raises(DownloadError, match=r"over the limit of 1000 bytes \(max_bytes\)"):
            await download_file(session, str(server.make_url("/f.mp4")), dest, max_bytes=1000)
    assert leftovers(dest) == []


@pytest.mark.anyio
async def test_an_unannounced_body_is_cut_off_at_the_cap(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sent = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.enable_chunked_encoding()  # no Content-Length: the size is learnt by reading
        await response.prepare(request)
        for _ in range(64):
            await response.write(PAYLOAD[:4096])
            sent += 4096
        return response

    async for server in storage_host(handler):
        dest = tmp_path / "f.mp4"
        with pytest.raises(DownloadError, match="max_bytes"):
            await download_file(
                session, str(server.make_url("/f.mp4")), dest, max_bytes=10_000, chunk_size=4096
            )
    assert leftovers(dest) == []


# -- not a video ---------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("content_type", ["text/html", "application/json", "text/plain"])
async def test_a_document_content_type_is_refused(
    session: aiohttp.ClientSession, tmp_path: Path, content_type: str
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=PAYLOAD, content_type=content_type)

    async for server in storage_host(handler):
        dest = tmp_path / "f.mp4"
        with pytest.raises(DownloadError, match=f"sent {content_type}, not a video"):
            await download_file(session, str(server.make_url("/f.mp4")), dest, retry=NO_RETRY)
    assert leftovers(dest) == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body", [b"\n  <!DOCTYPE html><html><body>Sign in</body></html>", b'{"error": "expired"}']
)
async def test_a_document_labelled_as_bytes_is_refused_by_its_first_bytes(
    session: aiohttp.ClientSession, tmp_path: Path, body: bytes
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/octet-stream")

    async for server in storage_host(handler):
        dest = tmp_path / "f.mp4"
        with pytest.raises(DownloadError, match="is a document"):
            await download_file(session, str(server.make_url("/f.mp4")), dest)
    assert leftovers(dest) == []


@pytest.mark.anyio
async def test_a_compressed_body_is_refused_not_decompressed(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    encodings: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        encodings.append(request.headers.get("Accept-Encoding"))
        headers = {"Content-Encoding": "gzip", "Content-Type": "video/mp4"}
        return web.Response(body=gzip.compress(PAYLOAD), headers=headers)

    async for server in storage_host(handler):
        dest = tmp_path / "f.mp4"
        with pytest.raises(DownloadError, match="encoded body"):
            await download_file(session, str(server.make_url("/f.mp4")), dest)
    assert encodings == ["identity"]
    assert leftovers(dest) == []


# -- redirects -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_redirects_are_followed_by_hand_with_the_same_headers(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    seen: list[tuple[str, str | None]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append((request.path, request.headers.get("Accept-Encoding")))
        if request.path == "/a":
            raise web.HTTPFound("/b?sig=1")  # relative
        if request.path == "/b":
            raise web.HTTPTemporaryRedirect(str(request.url.with_path("/c").with_query(None)))
        return web.Response(body=PAYLOAD, content_type="video/mp4")

    async for server in storage_host(handler):
        dest = tmp_path / "f.mp4"
        result = await download_file(session, str(server.make_url("/a")), dest)
    assert [path for path, _ in seen] == ["/a", "/b", "/c"]
    assert {encoding for _, encoding in seen} == {"identity"}
    assert dest.read_bytes() == PAYLOAD and result.size == len(PAYLOAD)


@pytest.mark.anyio
async def test_a_redirect_loop_stops_after_the_limit(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    hops = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal hops
        hops += 1
        raise web.HTTPFound(f"/hop{hops}")

    async for server in storage_host(handler):
        dest = tmp_path / "f.mp4"
        with pytest.raises(DownloadError, match=f"more than {MAX_REDIRECTS}"):
            await download_file(session, str(server.make_url("/start")), dest)
    assert hops == MAX_REDIRECTS + 1
    assert leftovers(dest) == []


@pytest.mark.anyio
@pytest.mark.parametrize("target", ["ftp://127.0.0.1/f.mp4", "data:video/mp4;base64,AAAA"])
async def test_a_redirect_off_http_is_refused(
    session: aiohttp.ClientSession, tmp_path: Path, target: str
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently(target)

    async for server in storage_host(handler):
        with pytest.raises(DownloadError, match="non-http"):
            await download_file(session, str(server.make_url("/f.mp4")), tmp_path / "f.mp4")


# -- resumes that never splice -------------------------------------------------------------


@pytest.mark.anyio
async def test_the_etag_is_kept_beside_the_part_while_it_grows(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # Over a megabyte: written in more than one trip to the disk, so a .part stays between two.
    body = PAYLOAD * 20

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, headers={"ETag": ETAG, "Content-Type": "video/mp4"})

    dest = tmp_path / "clip.mp4"
    marker = tmp_path / "clip.mp4.part.etag"
    # (marker there, file in place) at each progress report
    seen: list[tuple[bool, bool]] = []
    async for server in storage_host(handler):
        await download_file(
            session,
            str(server.make_url("/clip.mp4")),
            dest,
            on_progress=lambda done, total: seen.append((marker.exists(), dest.exists())),
        )
    growing = [there for there, placed in seen if not placed]
    assert growing and all(growing)  # beside the .part from its first bytes on
    assert seen[-1] == (False, True)  # the last write put the file in place, marker gone
    assert dest.read_bytes() == body


@pytest.mark.anyio
async def test_a_part_without_its_etag_is_started_again(
    mock: MockServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    task_id, url = new_task(mock)
    dest = tmp_path / "clip.mp4"
    write_part(dest, mock.file_bytes(task_id)[:30_000], etag=None)
    result = await download_file(session, url, dest)
    assert result.resumed is False
    assert dest.read_bytes() == mock.file_bytes(task_id)
    assert mock.counters.download_bytes == FILE_SIZE  # no Range was asked


@pytest.mark.anyio
async def test_a_part_of_another_version_is_replaced_whole_via_if_range(
    mock: MockServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    task_id, url = new_task(mock)
    dest = tmp_path / "clip.mp4"
    write_part(dest, b"\x00" * 30_000, etag='"an-older-version"')
    result = await download_file(session, url, dest)
    assert result.resumed is False
    assert dest.read_bytes() == mock.file_bytes(task_id)
    assert mock.counters.download_bytes == FILE_SIZE


@pytest.mark.anyio
async def test_a_host_ignoring_if_range_is_caught_by_the_etag_of_its_range(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    new = bytes(reversed(PAYLOAD))
    ranges: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        wanted = request.headers.get("Range")
        ranges.append(wanted)
        headers = {"ETag": '"payload-v2"', "Content-Type": "video/mp4"}
        if wanted == "bytes=1000-":  # served from the new version, If-Range ignored
            headers["Content-Range"] = f"bytes 1000-{len(new) - 1}/{len(new)}"
            return web.Response(status=206, body=new[1000:], headers=headers)
        return web.Response(body=new, headers=headers)

    async for server in storage_host(handler):
        dest = tmp_path / "f.mp4"
        write_part(dest, PAYLOAD[:1000], ETAG)
        result = await download_file(session, str(server.make_url("/f.mp4")), dest)
    assert ranges == ["bytes=1000-", None]
    assert dest.read_bytes() == new and result.resumed is False


@pytest.mark.anyio
async def test_a_complete_part_answered_416_is_kept(
    mock: MockServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Killed after the last byte, before the rename: nothing is fetched again."""
    task_id, url = new_task(mock)
    dest = tmp_path / "clip.mp4"
    write_part(dest, mock.file_bytes(task_id), etag=f'"{task_id}-{FILE_SIZE}"')
    result = await download_file(session, url, dest)
    assert dest.read_bytes() == mock.file_bytes(task_id)
    assert result.size == FILE_SIZE
    assert mock.counters.download_bytes == 0
    assert mock.counters.requests[Endpoint.DOWNLOAD] == 1
