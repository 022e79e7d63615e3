"""Downloads over real HTTP on 127.0.0.1: whole, verified, resumable, and never leaking."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import os
import re
import socket
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from sora_async import part_files
from sora_async.calls import Endpoint
from sora_async.config import Secret
from sora_async.diskthread import DiskThread, set_disk_thread
from sora_async.download import DownloadedFile, download_file, redact_url, video_filename
from sora_async.errors import DownloadError
from sora_async.mock import Fault, MockConfig, MockServer
from sora_async.retry import RetryPolicy
from sora_async.transport import Transport

CANARY = "sk-CANARY-download-41c7"
SIGNATURE = "X-Signature=TOPSECRET"
FILE_SIZE = 96 * 1024
NO_RETRY = RetryPolicy(attempts=1)
T = TypeVar("T")


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    async with MockServer(MockConfig(task_seconds=0, file_size=FILE_SIZE)) as server:
        yield server


@pytest.fixture
async def session(mock: MockServer) -> AsyncIterator[aiohttp.ClientSession]:
    """The session of a real Transport holding a key, as the client will use it."""
    async with Transport(mock.freesora_url, Secret(CANARY)) as transport:
        yield transport.session


def new_task(mock: MockServer) -> str:
    task = mock.state.create_task(
        provider="freesora", key=CANARY, prompt="a kite", params={}, cost=0, origin=mock.base_url
    )
    return task.task_id


def file_url(mock: MockServer, task_id: str) -> str:
    return f"{mock.base_url}/files/{task_id}.mp4?{SIGNATURE}"


def write_part(dest: Path, data: bytes, etag: str | None) -> None:
    """A .part left by an earlier run, with the ETag it was begun with beside it."""
    dest.with_name(dest.name + ".part").write_bytes(data)
    if etag is not None:
        dest.with_name(dest.name + ".part.etag").write_text(etag + "\n")


def mock_etag(task_id: str) -> str:
    return f'"{task_id}-{FILE_SIZE}"'


def full_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error)


def assert_whole(result: DownloadedFile, dest: Path, expected: bytes) -> None:
    assert result.path == dest
    assert dest.read_bytes() == expected
    assert result.size == len(expected)
    assert result.sha256 == hashlib.sha256(expected).hexdigest()
    assert not dest.with_name(dest.name + ".part").exists()
    assert not dest.with_name(dest.name + ".part.etag").exists()


# -- whole files ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_download_is_byte_identical_with_its_sha256(
    mock: MockServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    task_id = new_task(mock)
    seen: list[tuple[int, int | None]] = []
    dest = tmp_path / "videos" / "clip.mp4"
    result = await download_file(
        session,
        file_url(mock, task_id),
        dest,
        chunk_size=16 * 1024,
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert_whole(result, dest, mock.file_bytes(task_id))
    assert result.resumed is False
    assert mock.counters.requests[Endpoint.DOWNLOAD] == 1
    assert seen[-1] == (FILE_SIZE, FILE_SIZE)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


@pytest.mark.anyio
async def test_resume_sends_range_and_appends_the_rest(
    mock: MockServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    task_id = new_task(mock)
    expected = mock.file_bytes(task_id)
    dest = tmp_path / "clip.mp4"
    write_part(dest, expected[:40_000], mock_etag(task_id))
    result = await download_file(session, file_url(mock, task_id), dest)
    assert_whole(result, dest, expected)
    assert result.resumed is True
    # Only the missing tail crossed the wire.
    assert mock.counters.download_bytes == FILE_SIZE - 40_000


@pytest.mark.anyio
async def test_resume_false_starts_over(
    mock: MockServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    task_id = new_task(mock)
    dest = tmp_path / "clip.mp4"
    write_part(dest, b"stale bytes from another file", mock_etag(task_id))
    result = await download_file(session, file_url(mock, task_id), dest, resume=False)
    assert_whole(result, dest, mock.file_bytes(task_id))
    assert result.resumed is False
    assert mock.counters.download_bytes == FILE_SIZE


# -- faults --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_short_body_is_a_download_error_when_retries_are_used_up(
    mock: MockServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    task_id = new_task(mock)
    dest = tmp_path / "clip.mp4"
    dest.write_bytes(b"an older whole copy")
    mock.inject(Endpoint.DOWNLOAD, Fault.MALFORMED)
    with pytest.raises(DownloadError, match="cut short") as caught:
        await download_file(session, file_url(mock, task_id), dest, retry=NO_RETRY)
    # An existing file is replaced only by a verified one.
    assert dest.read_bytes() == b"an older whole copy"
    assert "TOPSECRET" not in full_text(caught.value)
    assert f"/files/{task_id}.mp4" in str(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "fault", [Fault.MALFORMED, Fault.DROP, Fault.SERVER_ERROR, Fault.RATE_LIMIT, Fault.SLOW]
)
async def test_transient_faults_are_retried_to_a_whole_file(
    mock: MockServer, session: aiohttp.ClientSession, tmp_path: Path, fault: Fault
) -> None:
    task_id = new_task(mock)
    dest = tmp_path / "clip.mp4"
    mock.inject(Endpoint.DOWNLOAD, fault, times=2, retry_after=3, delay=30)
    sleeps = Sleeps()
    result = await download_file(
        session, file_url(mock, task_id), dest, read_timeout=0.2, sleep=sleeps
    )
    assert_whole(result, dest, mock.file_bytes(task_id))
    assert mock.counters.requests[Endpoint.DOWNLOAD] == 3
    # aiohttp itself re-sends a GET once, at once, when the server hangs up without answering.
    assert len(sleeps.delays) == (1 if fault is Fault.DROP else 2)
    if fault is Fault.RATE_LIMIT:
        assert all(delay >= 3 for delay in sleeps.delays)


@pytest.mark.anyio
async def test_persistent_server_errors_give_up_with_a_download_error(
    mock: MockServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    task_id = new_task(mock)
    mock.inject(Endpoint.DOWNLOAD, Fault.SERVER_ERROR, times=20)
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=4)
    with pytest.raises(DownloadError, match=r"HTTP 500 \(gave up after 4 attempt"):
        await download_file(
            session, file_url(mock, task_id), tmp_path / "c.mp4", retry=policy, sleep=sleeps
        )
    assert mock.counters.requests[Endpoint.DOWNLOAD] == 4
    assert len(sleeps.delays) == 3


@pytest.mark.anyio
async def test_missing_file_fails_at_once_without_the_query(
    mock: MockServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sleeps = Sleeps()
    with pytest.raises(DownloadError, match="HTTP 404") as caught:
        await download_file(
            session, file_url(mock, "task_unknown"), tmp_path / "c.mp4", sleep=sleeps
        )
    assert sleeps.delays == []
    assert "TOPSECRET" not in full_text(caught.value)
    assert "127.0.0.1" in str(caught.value) and "/files/task_unknown.mp4" in str(caught.value)


@pytest.mark.anyio
async def test_connection_refused_names_host_and_path_but_not_the_query(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/files/x.mp4?{SIGNATURE}"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DownloadError, match="cannot connect") as caught:
            await download_file(session, url, tmp_path / "x.mp4", retry=RetryPolicy(attempts=2),
                                sleep=Sleeps())  # fmt: skip
    text = full_text(caught.value)
    assert "TOPSECRET" not in text and "sig" not in text.lower()
    assert f"127.0.0.1:{port}/files/x.mp4" in str(caught.value)
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url",
    ["ftp://{host}/files/x.mp4", "file:///etc/passwd", "{host}/files/x.mp4", "data:,hello"],
)
async def test_non_http_urls_are_refused_before_any_request(
    mock: MockServer, session: aiohttp.ClientSession, tmp_path: Path, url: str
) -> None:
    host = mock.base_url.removeprefix("http://")
    with pytest.raises(DownloadError, match="only http and https") as caught:
        await download_file(session, url.format(host=host), tmp_path / "sub" / "x.mp4")
    scheme = url.partition(":")[0]
    if "/" not in scheme and "{" not in scheme:
        assert repr(scheme) in str(caught.value)
    assert mock.counters.requests[Endpoint.DOWNLOAD] == 0
    assert not (tmp_path / "sub").exists()


@pytest.mark.anyio
async def test_a_local_write_failure_is_a_download_error(
    mock: MockServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    task_id = new_task(mock)
    (tmp_path / "clip.mp4.part").mkdir()  # a .part that cannot be written, even by root
    with pytest.raises(DownloadError, match="cannot write"):
        await download_file(session, file_url(mock, task_id), tmp_path / "clip.mp4")
    assert not (tmp_path / "clip.mp4").exists()


# -- what goes over the wire, with a tiny storage host --------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PAYLOAD = bytes(range(256)) * 300
ETAG = '"payload-v1"'


async def storage(handler: Handler) -> TestServer:
    app = web.Application()
    app.router.add_route("*", "/{name:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.mark.anyio
async def test_no_authorization_header_reaches_the_storage_host(
    mock: MockServer, tmp_path: Path
) -> None:
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        if request.path == "/start":
            raise web.HTTPFound("/file.mp4?sig=2")
        return web.Response(body=PAYLOAD)

    server = await storage(handler)
    try:
        async with Transport(mock.freesora_url, Secret(CANARY)) as transport:
            url = str(server.make_url("/start")) + "?sig=1"
            result = await download_file(transport.session, url, tmp_path / "f.mp4")
    finally:
        await server.close()
    assert result.size == len(PAYLOAD)
    assert len(seen) == 2  # the redirect was followed
    for headers in seen:
        assert "Authorization" not in headers
        assert CANARY not in repr(headers)
        assert headers["Accept-Encoding"] == "identity"


@pytest.mark.anyio
async def test_redirect_to_a_non_http_scheme_is_refused(tmp_path: Path) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("file:///etc/passwd")

    server = await storage(handler)
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(DownloadError, match="non-http"):
                await download_file(session, str(server.make_url("/x.mp4")), tmp_path / "x.mp4")
    finally:
        await server.close()


@pytest.mark.anyio
async def test_a_server_that_ignores_range_makes_us_start_over(tmp_path: Path) -> None:
    ranges: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ranges.append(request.headers.get("Range"))
        return web.Response(body=PAYLOAD)  # always 200, whole file

    server = await storage(handler)
    dest = tmp_path / "f.mp4"
    write_part(dest, PAYLOAD[:1000], ETAG)
    try:
        async with aiohttp.ClientSession() as session:
            result = await download_file(session, str(server.make_url("/f.mp4")), dest)
    finally:
        await server.close()
    assert ranges == ["bytes=1000-"]
    assert_whole(result, dest, PAYLOAD)
    assert result.resumed is False


@pytest.mark.anyio
async def test_a_part_longer_than_the_file_gets_416_and_starts_over_once(tmp_path: Path) -> None:
    # Our own host: the mock answers an open range past the end with 200 instead of 416.
    ranges: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ranges.append(request.headers.get("Range"))
        if request.headers.get("Range"):
            headers = {"Content-Range": f"bytes */{len(PAYLOAD)}"}
            return web.Response(status=416, headers=headers)
        return web.Response(body=PAYLOAD)

    server = await storage(handler)
    dest = tmp_path / "f.mp4"
    write_part(dest, b"x" * (len(PAYLOAD) + 10), ETAG)
    try:
        async with aiohttp.ClientSession() as session:
            result = await download_file(session, str(server.make_url("/f.mp4")), dest)
    finally:
        await server.close()
    assert ranges == [f"bytes={len(PAYLOAD) + 10}-", None]
    assert_whole(result, dest, PAYLOAD)


@pytest.mark.anyio
async def test_a_range_starting_elsewhere_makes_us_start_over(tmp_path: Path) -> None:
    ranges: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ranges.append(request.headers.get("Range"))
        if request.headers.get("Range"):
            headers = {"Content-Range": f"bytes 5-9/{len(PAYLOAD)}"}
            return web.Response(status=206, body=PAYLOAD[5:10], headers=headers)
        return web.Response(body=PAYLOAD)

    server = await storage(handler)
    dest = tmp_path / "f.mp4"
    write_part(dest, PAYLOAD[:1000], ETAG)
    try:
        async with aiohttp.ClientSession() as session:
            result = await download_file(session, str(server.make_url("/f.mp4")), dest)
    finally:
        await server.close()
    assert ranges == ["bytes=1000-", None]
    assert_whole(result, dest, PAYLOAD)


@pytest.mark.anyio
async def test_content_range_total_catches_a_short_file_and_resume_completes_it(
    tmp_path: Path,
) -> None:
    """A 206 whose body is whole by Content-Length but short of the Content-Range total."""
    ranges: list[str | None] = []
    half = len(PAYLOAD) // 2

    async def handler(request: web.Request) -> web.StreamResponse:
        wanted = request.headers.get("Range")
        ranges.append(wanted)
        match = re.fullmatch(r"bytes=(\d+)-", wanted or "bytes=0-")
        assert match is not None
        first = int(match.group(1))
        last = max(first, half - 1) if first == 0 else len(PAYLOAD) - 1
        headers = {"Content-Range": f"bytes {first}-{last}/{len(PAYLOAD)}"}
        return web.Response(status=206, body=PAYLOAD[first : last + 1], headers=headers)

    server = await storage(handler)
    dest = tmp_path / "f.mp4"
    sleeps = Sleeps()
    try:
        async with aiohttp.ClientSession() as session:
            result = await download_file(
                session, str(server.make_url("/f.mp4")), dest, sleep=sleeps
            )
    finally:
        await server.close()
    assert ranges == [None, f"bytes={half}-"]
    assert_whole(result, dest, PAYLOAD)
    assert result.resumed is True


@pytest.mark.anyio
async def test_a_server_that_never_gets_further_runs_out_of_attempts(tmp_path: Path) -> None:
    """Always 200 and always cut off half-way: refilled bytes are not progress."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = len(PAYLOAD)
        await response.prepare(request)
        await response.write(PAYLOAD[: len(PAYLOAD) // 2])
        assert request.transport is not None
        request.transport.close()
        return response

    server = await storage(handler)
    sleeps = Sleeps()
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(DownloadError, match="gave up after 3 attempt"):
                await download_file(
                    session,
                    str(server.make_url("/f.mp4")),
                    tmp_path / "f.mp4",
                    retry=RetryPolicy(attempts=3),
                    sleep=sleeps,
                )
    finally:
        await server.close()
    assert len(sleeps.delays) == 2


# -- names ---------------------------------------------------------------------------------


def test_redact_url_keeps_scheme_host_port_and_path_only() -> None:
    url = "https://user:pw@cdn.example.com:8443/v/a%20b.mp4?X-Amz-Signature=abc#frag"
    assert redact_url(url) == "https://cdn.example.com:8443/v/a%20b.mp4"
    assert redact_url("http://example.com/x.mp4?sig=1") == "http://example.com/x.mp4"
    assert redact_url("HTTP://[::1]:8080/x?sig=1") == "http://[::1]:8080/x"


@pytest.mark.parametrize(
    ("task_id", "index", "count", "expected"),
    [
        ("task_0fc8f5a40c5a03f5", 0, 1, "task_0fc8f5a40c5a03f5.mp4"),
        ("abc", 0, 2, "abc_1.mp4"),
        ("abc", 1, 2, "abc_2.mp4"),
        ("sora2_task-1.2", 0, 1, "sora2_task-1.2.mp4"),
    ],
)
def test_video_filename_keeps_plain_ids(
    task_id: str, index: int, count: int, expected: str
) -> None:
    assert video_filename(task_id, index, count) == expected


@pytest.mark.parametrize(
    "task_id", ["../../etc/passwd", "..", ".", "", "a/b", "a\\b", "\u00e9t\u00e9"]
)
def test_video_filename_makes_hostile_ids_safe(task_id: str) -> None:
    name = video_filename(task_id, 0, 1)
    assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*\.mp4", name)
    assert "/" not in name and "\\" not in name and ".." not in name.removesuffix(".mp4")


def test_video_filename_keeps_different_ids_apart() -> None:
    assert video_filename("a/b", 0, 1) != video_filename("ab", 0, 1)
    assert video_filename("a/b", 0, 1) != video_filename("a\\b", 0, 1)


@given(task_id=st.text(max_size=300), count=st.integers(1, 5), data=st.data())
def test_video_filename_is_always_a_plain_safe_name(
    task_id: str, count: int, data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, count - 1))
    name = video_filename(task_id, index, count, suffix=".webm")
    assert re.fullmatch(r"[A-Za-z0-9._-]+", name)
    assert name.endswith(".webm") and not name.startswith(".")
    assert name not in (".", "..") and len(name.encode()) <= 255


@pytest.mark.parametrize(
    ("index", "count", "suffix"), [(1, 1, ".mp4"), (-1, 2, ".mp4"), (0, 0, ".mp4"),
                                   (0, 1, "mp4"), (0, 1, "./x"), (0, 1, ""), (False, 1, ".mp4"),
                                   (0, True, ".mp4"), (0.0, 1, ".mp4"), (0, 1.0, ".mp4")],
)  # fmt: skip
def test_video_filename_refuses_bad_arguments(index: int, count: int, suffix: str) -> None:
    with pytest.raises(ValueError):
        video_filename("abc", index, count, suffix=suffix)


def test_video_filename_takes_an_int_subclass() -> None:
    class Number(int):
        pass

    assert video_filename("abc", Number(1), Number(2)) == "abc_2.mp4"


@pytest.mark.anyio
async def test_a_missing_folder_is_made_with_the_first_bytes(
    mock: MockServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    task_id = new_task(mock)
    dest = tmp_path / "new" / "deeper" / "clip.mp4"
    result = await download_file(session, file_url(mock, task_id), dest)
    assert_whole(result, dest, mock.file_bytes(task_id))


@pytest.mark.anyio
async def test_a_folder_that_cannot_be_made_is_a_download_error(
    mock: MockServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    task_id = new_task(mock)
    (tmp_path / "taken").write_text("a file where the folder should be")
    with pytest.raises(DownloadError, match="cannot write"):
        await download_file(session, file_url(mock, task_id), tmp_path / "taken" / "clip.mp4")


# -- the .part look: once a folder, and never missing this process's own -----------------


class CountingDiskThread(DiskThread):
    """The loop's disk thread, counting the jobs it runs by their function's name."""

    def __init__(self) -> None:
        super().__init__(asyncio.get_running_loop())
        self.calls: collections.Counter[str] = collections.Counter()

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        self.calls[getattr(call, "__name__", type(call).__name__)] += 1
        return await super().run(call, *args)


@pytest.mark.anyio
async def test_a_folder_is_looked_at_for_a_part_once_not_once_a_file(
    mock: MockServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    disk = CountingDiskThread()
    set_disk_thread(disk)
    try:
        for name in ("a.mp4", "b.mp4", "c.mp4"):
            task_id = new_task(mock)
            result = await download_file(session, file_url(mock, task_id), tmp_path / name)
            assert_whole(result, tmp_path / name, mock.file_bytes(task_id))
    finally:
        disk.stop()
    # One look (which lists the folder), then each small file's one trip to the disk.
    assert disk.calls == {"_prepare": 1, "_write_whole": 3}


@pytest.mark.anyio
async def test_a_part_this_process_left_is_resumed_by_its_next_download(
    tmp_path: Path,
) -> None:
    """The folder is listed before the first download leaves its .part: the index must still
    know of it, or the second download would start over."""
    ranges: list[str | None] = []
    half = len(PAYLOAD) // 2

    async def handler(request: web.Request) -> web.StreamResponse:
        wanted = request.headers.get("Range")
        ranges.append(wanted)
        if wanted is None:  # the whole file, unsized, cut off half-way
            response = web.StreamResponse(headers={"ETag": ETAG})
            await response.prepare(request)
            await response.write(PAYLOAD[:half])
            assert request.transport is not None
            request.transport.close()
            return response
        first = int(wanted.removeprefix("bytes=").removesuffix("-"))
        headers = {
            "ETag": ETAG,
            "Content-Range": f"bytes {first}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}",
        }
        return web.Response(status=206, body=PAYLOAD[first:], headers=headers)

    server = await storage(handler)
    dest = tmp_path / "f.mp4"
    try:
        async with aiohttp.ClientSession() as session:
            url = str(server.make_url("/f.mp4"))
            with pytest.raises(DownloadError, match="gave up after 1 attempt"):
                await download_file(session, url, dest, retry=NO_RETRY)
            assert dest.with_name("f.mp4.part").stat().st_size == half
            result = await download_file(session, url, dest, retry=NO_RETRY)
    finally:
        await server.close()
    assert ranges == [None, f"bytes={half}-"]
    assert_whole(result, dest, PAYLOAD)
    assert result.resumed is True


def test_a_forked_child_lists_a_folder_again(tmp_path: Path) -> None:
    """A listing made before a fork may miss .parts other processes made since: the child
    looks on disk until it lists the folder itself."""
    folder = str(tmp_path)
    part = os.path.join(folder, "a.mp4.part")
    part_files.learn(folder)
    assert not part_files.may_exist(part, folder)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's answer is its exit status
        os._exit(0 if part_files.may_exist(part, folder) else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not part_files.may_exist(part, folder)  # the parent's listing stands
