"""Safe streaming downloads: stream to ``.part``, resume with Range, verify, then replace.

A destination file only ever appears whole: bytes go to ``<dest>.part``, the size is checked
against Content-Length (or the Content-Range total), the file is fsynced and only then renamed
over ``dest`` with :func:`os.replace`, which is atomic. An interrupted download leaves its
``.part`` behind and the next call resumes it with ``Range: bytes=N-``.

A whole small file (a 200 announcing at most 1 MiB) is read at once instead: checked like a
streamed one, then written to the ``.part``, fsynced, hashed and renamed in one trip to the
disk thread. A cut one leaves nothing to resume from (reading it again costs less than the
bookkeeping would); a real video is many megabytes, and streams.

Result URLs usually point at a storage host and are often signed in the query string, so:
no Authorization header is ever sent (the session carries none and none is added here), and
errors show the URL's scheme, host and path but never its query, fragment or user info.

Retries follow a :class:`~sora_async.retry.RetryPolicy`, with one twist suited to large
files: any attempt that received bytes renews the retry budget (attempts and deadline), so a
long transfer over a flaky link keeps going as long as it makes progress, and gives up only
after ``attempts`` tries in a row that brought nothing.

What a hostile or misconfigured host can send is bounded and checked: a file over
``max_bytes`` is refused (by its announced size before a byte is read, and again while
streaming); a ``text/*``, JSON or XML answer, or a body that starts like an HTML page, is
refused as "not a video"; an encoded (compressed) body is refused rather than decompressed;
redirects are followed here, by hand, at most :data:`MAX_REDIRECTS` times and only to http(s)
URLs. A resume never joins two different files: the strong ETag of the answer that began a
``.part`` is kept beside it in ``<dest>.part.etag``, every resume asks ``If-Range`` with it,
and a ``.part`` without one (its origin unknown) is started again.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import hashlib
import os
import re
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import NoReturn, TypeVar

import aiohttp
import attrs
from yarl import URL

from . import part_files, waits
from .calls import Endpoint, parse_retry_after
from .diskthread import disk_thread, sync_directory_later
from .errors import ConfigurationError, DownloadError, SoraError
from .requestspans import RequestSpan
from .retry import SAFE_CALLS, RetryPolicy, next_retry_delay
from .transport import translate_client_error

__all__ = [
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "MAX_REDIRECTS",
    "DownloadedFile",
    "download_file",
    "redact_url",
    "video_filename",
]

T = TypeVar("T")

#: A generated clip is tens of megabytes; 2 GiB is far above any real one and still bounds
#: what a misrouted URL (a disk image, an endless stream) can write to the user's disk.
DEFAULT_MAX_DOWNLOAD_BYTES = 2 * 1024**3
MAX_REDIRECTS = 5

_PART_SUFFIX = part_files.PART_SUFFIX
_ETAG_SUFFIX = ".etag"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: Types a video host may label a video with; anything else (text/html, application/json,
#: ...) is an error page, a sign-in page or a wrong link, never the file.
_OPAQUE_TYPES = frozenset(
    {"", "application/octet-stream", "binary/octet-stream", "application/mp4"}
)
_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]{1,64}/[a-z0-9!#$&^_.+-]{1,64}$")
#: How an HTML page, a JSON or XML document starts (after white space); no video container
#: starts like this.
_DOCUMENT_START = re.compile(rb"\s*(?:<!doctype|<html|<\?xml|<head|<body|\{|\[)", re.IGNORECASE)
_HASH_BLOCK = 1024 * 1024
#: An answer announced at most this long is read whole and written in one disk trip; a real
#: video (many megabytes) streams to the .part as it comes, and resumes from it.
_WHOLE_BODY_BYTES = 1024 * 1024
_OPEN_FLAGS = {
    mode: flags
    | os.O_WRONLY
    | os.O_CREAT
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
    for mode, flags in (("wb", os.O_TRUNC), ("ab", os.O_APPEND))
}
#: Received bytes go to the disk in batches of about this much, one disk-thread job each:
#: a trip per chunk (open, each write, close) cost more CPU than a small file's whole transfer.
_FLUSH_BYTES = 1024 * 1024
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,10}$")
#: Leaves room for "_<index>", a hash tag and the suffix within the usual 255-byte name limit.
_MAX_STEM = 150


@attrs.frozen(kw_only=True)
class DownloadedFile:
    """A file written whole: where, how big, its SHA-256, and whether a .part was resumed."""

    path: Path
    size: int
    sha256: str
    resumed: bool


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path`` of an http(s) URL, without query, fragment or user info.

    Raises :class:`DownloadError` (naming only the scheme) for anything but http and https.
    """
    return _parse_url(url, encoded=False)[1]


def _parse_url(url: str, *, encoded: bool) -> tuple[URL, str]:
    """The URL parsed (``encoded``: taken as it is, the way it is sent), and redacted."""
    parsed: URL | None
    try:
        parsed = URL(url, encoded=encoded)
    except (TypeError, ValueError):  # its message quotes the URL, query and all
        parsed = None
    if parsed is None:
        raise DownloadError("refusing to download: not a valid URL")
    scheme = parsed.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"a {scheme!r} URL" if scheme else "a URL without a scheme"
        raise DownloadError(f"refusing to download {shown}: only http and https are allowed")
    if not parsed.host:
        raise DownloadError(f"refusing to download: the {scheme} URL has no host")
    host = parsed.raw_host or ""
    host = f"[{host}]" if ":" in host else host  # an IPv6 literal
    port = f":{parsed.explicit_port}" if parsed.explicit_port is not None else ""
    return parsed, f"{scheme}://{host}{port}{parsed.raw_path}"


def video_filename(task_id: str, index: int, count: int, suffix: str = ".mp4") -> str:
    """A safe file name for video ``index`` (0-based) of ``count`` for a task.

    ``<task_id>.mp4`` for a task with one video, ``<task_id>_<index + 1>.mp4`` otherwise.
    Characters outside ``[A-Za-z0-9._-]`` (path separators included) are removed, as are
    leading dots (no hidden files, never ``.`` or ``..``); an id that had to be changed gets a
    short hash of the original, so two different ids never share a name. Never empty.
    """
    # A plain int is one without asking isinstance (an int subclass, never a bool, is too).
    if (type(count) is not int and (isinstance(count, bool) or not isinstance(count, int))) or (
        count < 1
    ):
        raise ValueError(f"count must be an int >= 1, got {count!r}")
    if (type(index) is not int and (isinstance(index, bool) or not isinstance(index, int))) or (
        not 0 <= index < count
    ):
        raise ValueError(f"index must be an int in 0..{count - 1}, got {index!r}")
    if suffix != ".mp4" and not _SUFFIX.match(suffix):
        raise ValueError(f"suffix must look like '.mp4', got {suffix!r}")
    stem = _UNSAFE_NAME_CHARS.sub("", task_id).lstrip(".")[:_MAX_STEM]
    if not stem or stem != task_id:
        tag = hashlib.sha256(task_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        stem = f"{stem}-{tag}" if stem else f"task-{tag}"
    number = f"_{index + 1}" if count > 1 else ""
    return f"{stem}{number}{suffix}"


class _Retry(Exception):
    """One attempt failed in a way that a later attempt may fix."""

    def __init__(
        self, reason: str, *, retry_after: float | None = None, cause: SoraError | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.cause = cause


class _Restart(Exception):
    """The server cannot continue our .part (416, or a range that starts elsewhere)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Refused(Exception):
    """What the server sent is not something to keep: the .part goes, nothing is retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@attrs.frozen
class _Fetched:
    """The body ended cleanly: the size it should have, whether it extended a .part, and the
    .part's size on disk once the last bytes were written."""

    expected: int | None
    appended: bool
    size: int
    #: Already made durable and renamed over the destination (in the last write's trip).
    committed: bool = False


@attrs.define
class _Progress:
    """What is on disk in the .part and how much of it the running hash covers."""

    hasher: hashlib._Hash = attrs.field(factory=hashlib.sha256)
    hashed: int = 0
    #: Strong ETag of the answer that began the .part: resumes ask If-Range with it, so a
    #: file that changed on the server comes back whole (200) instead of being spliced.
    etag: str | None = None
    #: The whole file's size as the answer that began the .part announced it: a later range
    #: of a file with another size is from another file.
    total: int | None = None
    #: The HTTP status of the last answer (after redirects), for the request's span.
    status: int | None = None


def _parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    match = _CONTENT_RANGE.match(value or "")
    if match is None:
        return None
    first, last, total = match.groups()
    return int(first), int(last), None if total == "*" else int(total)


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _folder(path: str) -> str:
    return os.path.dirname(path) or os.curdir


def _unlink(path: str) -> None:
    # Not contextlib.suppress: a file's marker is removed this way, and a context manager
    # costs three calls more on the disk thread.
    try:  # noqa: SIM105
        os.unlink(path)
    except FileNotFoundError:
        pass


def _hash_prefix(path: str, size: int) -> hashlib._Hash:
    hasher = hashlib.sha256()
    remaining = size
    with open(path, "rb") as handle:
        while remaining > 0:
            block = handle.read(min(_HASH_BLOCK, remaining))
            if not block:
                break
            hasher.update(block)
            remaining -= len(block)
    return hasher


def _commit(part: str, dest: str) -> None:
    """Make the .part durable, then atomically put it in place of ``dest``."""
    with open(part, "ab") as handle:
        handle.flush()
        os.fsync(handle.fileno())
    _replace(part, dest)


def _replace(part: str, dest: str) -> None:
    """Put the durable .part in place of ``dest`` (atomic); the new name is durable before
    the job is reported done (one folder fsync for all the files of the disk thread's batch)."""
    os.replace(part, dest)
    folder = _folder(dest)
    part_files.forget(part, folder)
    _unlink(part + _ETAG_SUFFIX)
    sync_directory_later(folder)


def _write_whole(part: str, dest: str, body: bytes) -> str:
    """A whole small body's one trip to the disk: a new .part, fsynced, renamed over ``dest``
    (its folder synced with the batch); the body's SHA-256. A failure leaves no .part."""
    try:
        fd = _in_its_folder(part, partial(_open_new, part))
        try:
            _write_all(fd, [body])
            os.fsync(fd)
        finally:
            os.close(fd)
        _replace(part, dest)
    except BaseException:
        _unlink(part)
        raise
    return hashlib.sha256(body).hexdigest()


def _open_new(part: str) -> int:
    """A .part opened empty for writing (its folder made if missing, see _in_its_folder)."""
    # os-level calls, not open(): each call releases the GIL and takes it back from the busy
    # event loop, and a buffered file adds a stat, a tty check and a flush of its own.
    return os.open(part, _OPEN_FLAGS["wb"], 0o666)


def _in_its_folder(part: str, start: Callable[[], T]) -> T:
    """``start()``, which begins the new file ``part``; when it finds no folder, the folder is
    made and ``start()`` run again. Made only when the open says so, not before the request:
    looking for it each time cost more than making it the few times it is missing."""
    try:
        return start()
    except FileNotFoundError:
        if os.path.isdir(_folder(part)):
            raise
    os.makedirs(_folder(part), exist_ok=True)
    return start()


def _is_retryable_status(status: int) -> bool:
    return status in (408, 425, 429) or status >= 500


def _refuse_type(media_type: str) -> NoReturn:
    # The header is the server's text: quote it only when it is a plain media type.
    shown = media_type if _MEDIA_TYPE.match(media_type) else "an unexpected Content-Type"
    raise _Refused(f"the server sent {shown}, not a video (an error or sign-in page?)")


_DOCUMENT_REASON = "the body is a document (HTML, JSON or XML), not a video"


def _looks_like_a_document(first_chunk: bytes) -> bool:
    # A match, not lstrip(): a whole body is not copied to look at its first bytes.
    return _DOCUMENT_START.match(first_chunk) is not None


def _over_cap(size: int, max_bytes: int | None) -> bool:
    return max_bytes is not None and size > max_bytes


def _cap_reason(size: int | str, max_bytes: int) -> str:
    return f"the file is {size} bytes, over the limit of {max_bytes} bytes (max_bytes)"


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def _prepare(part: str, where: str, resume: bool) -> tuple[str | None, int]:
    """Before the first request: read the .part's ETag (a .part without one is removed:
    nothing says which file its bytes came from), and the .part's size. A .part that cannot be
    removed is a DownloadError.

    Run on the disk thread: usually one lookup (no .part), but the lookup of a name not yet
    there waits for the folder's lock, which the other files' creates and renames hold while
    the file system commits (on the event loop, in the batch of 2,000 1 KB files: 0.44 ms a file
    on average, 1.5 ms at the 90th percentile, 0.05 ms of it CPU), so it is asked only when the
    folder's index says the .part may be there, and lists a folder new to it (part_files). A
    missing folder is made with the first bytes (see _append)."""
    folder = _folder(part)
    part_files.learn(folder)
    if not os.path.lexists(part):
        # Nothing to resume. A marker left without its .part is replaced, or removed, with the
        # first bytes (see _append), as the answer that begins the file has its own ETag.
        return None, 0
    etag = _read_etag(part + _ETAG_SUFFIX) if resume else None
    if etag is None:
        try:
            _unlink(part)
            part_files.forget(part, folder)
            _unlink(part + _ETAG_SUFFIX)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            failure = _failed(where, f"cannot write {part}: {reason}")
        else:
            return None, _file_size(part)
        raise failure  # outside the except block: the error carries no context
    return etag, _file_size(part)


def _append(
    part: str,
    chunks: list[bytes],
    *,
    mode: str,
    etag: tuple[str | None] | None,
    commit: tuple[str, int] | None = None,
) -> tuple[int, bool]:
    """Write ``chunks`` to the .part (``mode`` "wb" starts it); its size afterwards, and
    whether it was committed.

    ``etag``, given with the first bytes of a new .part, is written beside it first (or a stale
    one removed), so the marker is there before the first byte is. ``commit=(dest, size)``:
    the body ended whole at ``size`` bytes; a .part of that size is fsynced and renamed over
    ``dest`` in this same trip to the disk (one trip a file, not two). The marker, which only a
    .part left behind needs, is then written only if the .part stays.
    """
    write = partial(_write_part, part, chunks, mode=mode, etag=etag, commit=commit)
    # Only a new .part ("wb") may find its folder missing; an appended one was there.
    return _in_its_folder(part, write) if mode == "wb" else write()


def _write_part(
    part: str,
    chunks: list[bytes],
    *,
    mode: str,
    etag: tuple[str | None] | None,
    commit: tuple[str, int] | None,
) -> tuple[int, bool]:
    if etag is not None and commit is None:
        _mark(part, etag)
    if mode == "wb":
        part_files.remember(part, _folder(part))
    # os-level calls, not open(): each call releases the GIL and takes it back from the busy
    # event loop, and a buffered file adds a stat, a tty check and a flush of its own.
    fd = os.open(part, _OPEN_FLAGS[mode], 0o666)
    try:
        _write_all(fd, chunks)
        size = os.fstat(fd).st_size
        whole = commit is not None and size == commit[1]
        if whole:
            os.fsync(fd)
    finally:
        os.close(fd)
    if whole:
        assert commit is not None
        _replace(part, commit[0])
        return size, True
    if etag is not None and commit is not None:
        _mark(part, etag)
    return size, False


def _write_all(fd: int, chunks: list[bytes]) -> None:
    data = memoryview(chunks[0] if len(chunks) == 1 else b"".join(chunks))
    while data:
        written = os.write(fd, data)
        if not written:
            raise OSError(errno.EIO, "the file took no more bytes")
        data = data[written:]


def _mark(part: str, etag: tuple[str | None]) -> None:
    """Write the ETag the .part was begun with beside it (or remove a stale one)."""
    (value,) = etag
    marker = part + _ETAG_SUFFIX
    if value is None:
        _unlink(marker)
    else:
        _write_text(marker, value + "\n")


def _read_etag(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return text if text.startswith('"') and text.endswith('"') and len(text) <= 512 else None


async def _follow_redirects(
    session: aiohttp.ClientSession,
    response: aiohttp.ClientResponse,
    current: URL,
    where: str,
    *,
    headers: dict[str, str],
    client_timeout: aiohttp.ClientTimeout,
    proxy_for: Callable[[str], str | None] | None,
) -> aiohttp.ClientResponse:
    """The first non-redirect answer after the redirect ``response`` (an answer to
    ``current``); the caller releases it.

    Followed here rather than by aiohttp so that every hop is checked the same way: http(s)
    only, a bounded number of hops, and the same headers (never credentials: the session
    carries none).
    """
    for _ in range(MAX_REDIRECTS):
        current = _next_hop(response, current, where)
        proxy = proxy_for(str(current)) if proxy_for is not None else None
        response = await session.get(
            current, headers=headers, timeout=client_timeout, allow_redirects=False, proxy=proxy
        )
        if response.status not in _REDIRECTS:
            return response
    _next_hop(response, current, where)  # a last hop without a Location fails as such
    raise _failed(where, f"too many redirects (more than {MAX_REDIRECTS})")


def _next_hop(response: aiohttp.ClientResponse, current: URL, where: str) -> URL:
    """Where the redirect ``response`` (released here) points: an http(s) URL."""
    location = response.headers.get("Location")
    response.release()
    if not location:
        raise _failed(where, f"HTTP {response.status} redirect without a Location")
    try:
        target = current.join(URL(location))
        redact_url(str(target))
    except (TypeError, ValueError, DownloadError):
        raise _failed(where, "redirected to a non-http(s) or invalid URL") from None
    return target


def _check_answer(
    response: aiohttp.ClientResponse,
    offset: int,
    where: str,
    progress: _Progress,
    max_bytes: int | None,
) -> tuple[int, int | None] | None:
    """Where the body starts in the file and the file's size; None: the .part is complete."""
    status = response.status
    if status not in (200, 206):
        _check_other_status(response, status, offset, where, progress)
        return None
    headers = response.headers
    encoding = headers.get("Content-Encoding")
    if encoding is not None and encoding.strip().lower() not in ("", "identity"):
        # Refused, not decoded: a decompressed size is unbounded and matches no header.
        shown = encoding.strip().lower()[:32]
        raise _Refused(f"the server sent an encoded body ({shown!r})")
    content_type = headers.get("Content-Type", "")
    # A type that begins "video/" as sent is one after the cut, strip and lower-casing too.
    if content_type[:6] != "video/":
        media_type = content_type.partition(";")[0].strip().lower()
        if not media_type.startswith("video/") and media_type not in _OPAQUE_TYPES:
            _refuse_type(media_type)
    if status == 206:
        content_range = _parse_content_range(response.headers.get("Content-Range"))
        if content_range is None:
            raise _Restart("HTTP 206 without a usable Content-Range")
        start, _, expected = content_range
        if start not in (0, offset):
            raise _Restart(f"asked for bytes from {offset}, got a range from {start}")
        etag = response.headers.get("ETag", "").strip()
        if start and etag and progress.etag is not None and etag != progress.etag:
            # A host that ignored If-Range: these bytes belong to another version of the file.
            raise _Restart("the range came from another version of the file (ETag changed)")
        if start and progress.total is not None and expected != progress.total:
            raise _Restart(f"the file is now {expected} bytes, not {progress.total}")
    else:
        start = 0
        expected = response.content_length
    if expected is not None and max_bytes is not None and expected > max_bytes:
        raise _Refused(_cap_reason(expected, max_bytes))
    return start, expected


def _check_other_status(
    response: aiohttp.ClientResponse, status: int, offset: int, where: str, progress: _Progress
) -> None:
    """An answer other than 200 or 206: returns only when it says the .part was complete."""
    if status == 416:
        refused_range = response.headers.get("Content-Range", "")
        if offset and progress.etag is not None and refused_range.strip() == f"bytes */{offset}":
            # If-Range matched (a changed file would have come back whole, as a 200), and
            # the file is exactly as long as the .part: it was complete already.
            return
        raise _Restart("the server refused to resume (HTTP 416)")
    if _is_retryable_status(status):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise _Retry(f"HTTP {status}", retry_after=retry_after)
    hint = " (the link may have expired)" if status in (403, 404, 410) else ""
    raise _failed(where, f"HTTP {status}{hint}")


async def _fetch_once(
    session: aiohttp.ClientSession,
    target: URL,
    part: str,
    dest: str,
    where: str,
    *,
    offset: int,
    progress: _Progress,
    client_timeout: aiohttp.ClientTimeout,
    chunk_size: int,
    max_bytes: int | None,
    on_progress: Callable[[int, int | None], None] | None,
    proxy: str | None,
    proxy_for: Callable[[str], str | None] | None,
) -> _Fetched | tuple[int, str]:
    """One GET, into the .part (which holds ``offset`` bytes); returns when the body ended
    cleanly: how it ended, or ``(size, sha256)`` of a small file already put in place."""
    progress.status = None
    # identity: sizes and ranges must be those of the file itself, not of a compressed form.
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if progress.etag is not None:
            headers["If-Range"] = progress.etag
    response = await session.get(
        target, headers=headers, timeout=client_timeout, allow_redirects=False, proxy=proxy
    )
    if response.status in _REDIRECTS:
        response = await _follow_redirects(
            session,
            response,
            target,
            where,
            headers=headers,
            client_timeout=client_timeout,
            proxy_for=proxy_for,
        )
    status = progress.status = response.status
    try:
        checked = _check_answer(response, offset, where, progress, max_bytes)
    except BaseException:
        response.release()
        raise
    if status == 200 and checked is not None:
        expected = checked[1]
        if expected is not None and expected <= _WHOLE_BODY_BYTES:
            # A small whole file, the usual case: read at once and written, fsynced and put
            # in place in one trip to the disk (streaming it cost more calls than the file).
            # read() releases the connection, or closes it on a failure.
            body = await response.read()
            size = len(body)
            if size != expected:  # aiohttp holds the length; never seen, still checked
                raise _Retry(f"got {size} bytes where {expected} were announced")
            if _looks_like_a_document(body):
                raise _Refused(_DOCUMENT_REASON)
            digest: str = await disk_thread().run(_write_whole, part, dest, body)
            if size and on_progress is not None:
                on_progress(size, expected)
            return size, digest
    async with response:
        if checked is None:
            return _Fetched(expected=offset, appended=True, size=offset)
        return await _stream(
            response,
            part,
            dest,
            checked,
            progress=progress,
            chunk_size=chunk_size,
            max_bytes=max_bytes,
            on_progress=on_progress,
        )


async def _stream(
    response: aiohttp.ClientResponse,
    part: str,
    dest: str,
    checked: tuple[int, int | None],
    *,
    progress: _Progress,
    chunk_size: int,
    max_bytes: int | None,
    on_progress: Callable[[int, int | None], None] | None,
) -> _Fetched:
    """The body streamed into the .part as it comes (a large file, or one of unknown size)."""
    start, expected = checked
    # Beside the .part before its first byte, so a later run knows what it holds.
    etag: tuple[str | None] | None = None
    if start == 0:
        progress.hasher, progress.hashed = hashlib.sha256(), 0
        progress.total = expected
        found = response.headers.get("ETag", "").strip()
        strong = found.startswith('"') and found.endswith('"') and 2 <= len(found) <= 512
        progress.etag = found if strong else None
        etag = (progress.etag,)
    elif progress.hashed != start:
        # A .part from an earlier run: hash what is already there before appending.
        progress.hasher = await disk_thread().run(_hash_prefix, part, start)
        progress.hashed = start
    writer = _Writer(
        part, start=start, mode="ab" if start else "wb", etag=etag, on_progress=on_progress
    )
    done = start
    first = start == 0
    try:
        async for chunk in response.content.iter_chunked(chunk_size):
            if first and chunk:
                first = False
                if _looks_like_a_document(chunk):
                    raise _Refused(_DOCUMENT_REASON)
            done += len(chunk)
            if _over_cap(done, max_bytes):
                assert max_bytes is not None
                raise _Refused(_cap_reason(f"more than {max_bytes}", max_bytes))
            progress.hasher.update(chunk)
            progress.hashed += len(chunk)
            await writer.add(chunk, done, expected)
    except (aiohttp.ClientError, asyncio.TimeoutError):
        # What did arrive is kept, so the next attempt asks only for the rest.
        await writer.flush(done, expected)
        raise
    # The body ended whole and hashed: the last write also puts the file in place.
    whole = (expected is None or done == expected) and progress.hashed == done
    size = await writer.flush(done, expected, commit=(dest, done) if whole else None)
    return _Fetched(expected=expected, appended=start > 0, size=size, committed=writer.committed)


class _Writer:
    """Batches received chunks into few disk-thread jobs (see _FLUSH_BYTES)."""

    def __init__(
        self,
        part: str,
        *,
        start: int,
        mode: str,
        etag: tuple[str | None] | None,
        on_progress: Callable[[int, int | None], None] | None,
    ) -> None:
        self._part = part
        self._mode = mode
        self._etag = etag
        self._on_progress = on_progress
        self._chunks: list[bytes] = []
        self._pending = 0
        #: The .part's size: what it held before this answer until the first write says more.
        self._size = start
        #: The last flush put the file in place of its destination.
        self.committed = False

    async def add(self, chunk: bytes, done: int, expected: int | None) -> None:
        self._chunks.append(chunk)
        self._pending += len(chunk)
        if self._pending >= _FLUSH_BYTES:
            await self.flush(done, expected)

    async def flush(
        self, done: int, expected: int | None, *, commit: tuple[str, int] | None = None
    ) -> int:
        """Write what is pending (the first call creates or truncates the .part even with
        nothing pending); the .part's size afterwards. ``commit``: see :func:`_append`."""
        if self._chunks or self._mode == "wb" or self._etag is not None or commit is not None:
            chunks, self._chunks, self._pending = self._chunks, [], 0
            self._size, self.committed = await disk_thread().run(
                partial(
                    _append, self._part, chunks, mode=self._mode, etag=self._etag, commit=commit
                )
            )
            self._mode, self._etag = "ab", None
            if chunks and self._on_progress is not None:
                self._on_progress(done, expected)
        return self._size


async def download_file(
    session: aiohttp.ClientSession,
    url: str,
    dest: str | os.PathLike[str],
    *,
    read_timeout: float = 60.0,
    connect_timeout: float = 10.0,
    chunk_size: int = 256 * 1024,
    max_bytes: int | None = DEFAULT_MAX_DOWNLOAD_BYTES,
    resume: bool = True,
    retry: RetryPolicy = SAFE_CALLS,
    on_progress: Callable[[int, int | None], None] | None = None,
    proxy_for: Callable[[str], str | None] | None = None,
    sleep: Callable[[float], Awaitable[object]] = waits.sleep,
    clock: Callable[[], float] = waits.clock,
    span: RequestSpan | None = None,
) -> DownloadedFile:
    """Fetch ``url`` into ``dest`` whole and verified; see the module docstring.

    ``resume=False`` ignores (deletes) a ``.part`` left by an earlier run; retries within this
    call always continue from what this call wrote. A ``.part`` from an earlier run is resumed
    only if the ETag it was begun with is beside it. ``max_bytes`` (None: no limit) bounds the
    file's size. ``on_progress(done, total)`` is called
    after every chunk with the bytes on disk and the expected size (None when unknown).
    ``proxy_for(url)`` picks the proxy of each request, redirects included (None: direct; the
    client passes :meth:`Transport.proxy_for`). ``span`` hears of each attempt's status and
    failure (the caller starts and ends it).
    Raises :class:`DownloadError` (with the cause chained) when the file cannot be had whole.
    """
    target, where = _checked_arguments(url, chunk_size, max_bytes)
    # Plain strings inside: a path object a step cost more calls than the rest of a file.
    path = dest if isinstance(dest, Path) else Path(dest)
    name = str(path)
    part = name + _PART_SUFFIX
    etag, on_disk = (
        await disk_thread().run(_prepare, part, where, resume)
        if part_files.may_exist(part, _folder(name))
        else (None, 0)
    )
    progress = _Progress(etag=etag)
    client_timeout = _client_timeout(connect_timeout, read_timeout)
    proxy = proxy_for(url) if proxy_for is not None else None
    restarts_left = 1
    budget = _Budget(retry, clock, high_water=on_disk)
    while True:
        outcome: _Fetched | tuple[int, str] | _Retry | _Restart | _Refused | DownloadError
        # Each attempt's outcome as a value: nothing raised from here carries aiohttp's context.
        try:
            outcome = await _fetch_once(
                session,
                target,
                part,
                name,
                where,
                offset=on_disk,
                progress=progress,
                client_timeout=client_timeout,
                chunk_size=chunk_size,
                max_bytes=max_bytes,
                on_progress=on_progress,
                proxy=proxy,
                proxy_for=proxy_for,
            )
        except (_Restart, _Retry, _Refused, DownloadError) as exc:
            outcome = exc
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            outcome = _client_failure(exc, where, connect_timeout)
        except OSError as exc:  # after ClientError: aiohttp's own OSErrors are handled above
            outcome = _failed(where, f"cannot write {part}: {exc.strerror or type(exc).__name__}")
        if span is not None:
            _tell(span, progress.status, outcome)
        if isinstance(outcome, tuple):
            size, digest = outcome
            return DownloadedFile(path=path, size=size, sha256=digest, resumed=False)
        if isinstance(outcome, DownloadError):
            raise outcome
        if isinstance(outcome, _Refused):
            await _discard(part, progress)
            raise _failed(where, outcome.reason)
        if isinstance(outcome, _Restart):
            if restarts_left <= 0:
                raise _failed(where, f"{outcome.reason}, even after starting over")
            restarts_left -= 1
            await _discard(part, progress)
            on_disk = 0
            continue
        if isinstance(outcome, _Fetched):
            settled = await _settle(outcome, part, name, path, progress)
            if isinstance(settled, DownloadedFile):
                return settled
            outcome = settled
        on_disk = await disk_thread().run(_file_size, part)
        delay = budget.after_failure(on_disk, outcome.retry_after)
        if delay is None:
            reason = f"{outcome.reason} (gave up after {budget.failures} attempt(s))"
            raise _failed(where, reason) from outcome.cause
        await sleep(delay)


class _Budget:
    """The retry budget of one download: renewed (attempts and deadline) by any attempt that
    got the .part further than ever, so only attempts in a row that brought nothing use it up."""

    def __init__(self, retry: RetryPolicy, clock: Callable[[], float], *, high_water: int) -> None:
        self._retry = retry
        self._clock = clock
        self._high_water = high_water
        self._window_started = clock()
        self.failures = 0

    def after_failure(self, on_disk: int, retry_after: float | None) -> float | None:
        """The wait before the next attempt, given the .part's size now; None: give up."""
        self.failures += 1
        if on_disk > self._high_water:
            # The file grew past anything seen before: a slow or flaky transfer, not a dead
            # one. (Bytes that only refill a restarted .part do not count, so a server that
            # ignores Range and always breaks off half-way still runs out of attempts.)
            self._high_water, self.failures, self._window_started = on_disk, 1, self._clock()
        elapsed = self._clock() - self._window_started
        return next_retry_delay(
            self._retry, self.failures, elapsed=elapsed, retry_after=retry_after
        )


def _checked_arguments(url: str, chunk_size: int, max_bytes: int | None) -> tuple[URL, str]:
    """The URL as it is sent, and as errors show it; raised before any I/O for anything but an
    http(s) URL."""
    target, where = _parse_url(url, encoded=True)  # once: it is sent as it was given
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    if max_bytes is not None and (isinstance(max_bytes, bool) or max_bytes < 1):
        raise ValueError(f"max_bytes must be an int >= 1 or None, got {max_bytes!r}")
    return target, where


async def _settle(
    outcome: _Fetched, part: str, dest: str, path: Path, progress: _Progress
) -> DownloadedFile | _Retry:
    """A streamed body that ended cleanly: the file in place, or why to try again."""
    size = outcome.size
    if outcome.expected is None or size == outcome.expected:
        return await _finish(
            part, dest, path, size, progress, resumed=outcome.appended, done=outcome.committed
        )
    if size > outcome.expected:
        # More than the server says the file holds: the .part cannot be trusted.
        await _discard(part, progress)
        return _Retry(f"got {size} bytes, more than the {outcome.expected} announced")
    return _Retry(f"short body: got {size} of {outcome.expected} bytes")


@functools.lru_cache(maxsize=16)
def _client_timeout(connect_timeout: float, read_timeout: float) -> aiohttp.ClientTimeout:
    """The timeouts of a download's requests (one object for each pair: made a file, they
    cost a dozen calls)."""
    return aiohttp.ClientTimeout(
        total=None, connect=None, sock_connect=connect_timeout, sock_read=read_timeout
    )


def _client_failure(
    exc: aiohttp.ClientError | asyncio.TimeoutError, where: str, connect_timeout: float
) -> _Retry | DownloadError:
    failure = translate_client_error(exc, Endpoint.DOWNLOAD, connect_timeout=connect_timeout)
    reason = str(failure).removeprefix(f"{Endpoint.DOWNLOAD}: ")
    if isinstance(failure, ConfigurationError):
        return _failed(where, reason)
    return _Retry(reason, cause=failure)


def _tell(
    span: RequestSpan,
    status: int | None,
    outcome: _Fetched | tuple[int, str] | _Retry | _Restart | _Refused | DownloadError,
) -> None:
    """Tell a request's span how one attempt went: a class name, never the URL or the server's
    words."""
    if isinstance(outcome, tuple):
        span.attempt(status, None)
    elif isinstance(outcome, _Fetched):
        whole = outcome.expected is None or outcome.size == outcome.expected
        span.attempt(status, None if whole else "IncompleteBody")
    elif isinstance(outcome, _Retry) and outcome.cause is not None:
        span.attempt(status, type(outcome.cause).__name__)
    else:
        span.attempt(status, type(outcome).__name__.lstrip("_"))


def _failed(where: str, reason: str) -> DownloadError:
    return DownloadError(f"download {where} failed: {reason}")


def _remove_part(part: str) -> None:
    _unlink(part)
    part_files.forget(part, _folder(part))
    _unlink(part + _ETAG_SUFFIX)


async def _discard(part: str, progress: _Progress) -> None:
    await disk_thread().run(_remove_part, part)
    progress.hasher, progress.hashed = hashlib.sha256(), 0
    progress.etag = progress.total = None


async def _finish(
    part: str,
    dest: str,
    path: Path,
    size: int,
    progress: _Progress,
    *,
    resumed: bool,
    done: bool,
) -> DownloadedFile:
    """The file in place (``done``: the last write already put it there, hashed whole)."""
    if done:
        return DownloadedFile(
            path=path, size=size, sha256=progress.hasher.hexdigest(), resumed=resumed
        )
    if progress.hashed != size:  # never expected; re-read rather than report a wrong digest
        progress.hasher = await disk_thread().run(_hash_prefix, part, size)
    digest = progress.hasher.hexdigest()
    await disk_thread().run(_commit, part, dest)
    return DownloadedFile(path=path, size=size, sha256=digest, resumed=resumed)
