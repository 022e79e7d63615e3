"""The result-file "storage": GET/HEAD /files/{task_id}.mp4 with single-range support."""

from __future__ import annotations

from aiohttp import web

from ..calls import Endpoint
from .faults import Fault, FaultSpec
from .files import Unsatisfiable, parse_range
from .state import STATE_KEY, MockState
from .trips import Trip
from .wire import ApiFailure, drop_connection, format_seconds

__all__ = ["serve_file"]


def _plain(
    state: MockState, status: int, text: str, retry_after: float | None = None
) -> web.Response:
    headers: dict[str, str] = {}
    if status == 429:
        state.counters.rate_limited += 1
        seconds = state.config.cap_retry_after if retry_after is None else retry_after
        headers["Retry-After"] = format_seconds(seconds)
    return web.Response(status=status, text=text, headers=headers)


async def _file_fault(
    request: web.Request, state: MockState, spec: FaultSpec
) -> web.StreamResponse | None:
    fault = spec.fault
    if fault is Fault.SERVER_ERROR:
        return _plain(state, 500, "internal server error")
    if fault is Fault.DROP:
        return drop_connection(request)
    if fault is Fault.RATE_LIMIT:
        return _plain(state, 429, "too many requests", spec.retry_after)
    if fault is Fault.HTTP_ERROR:
        assert spec.status is not None
        return _plain(state, spec.status, f"HTTP {spec.status}", spec.retry_after)
    if fault is Fault.SLOW:
        delay = state.config.slow_delay if spec.delay is None else spec.delay
        if not await state.pause(delay):
            return drop_connection(request)
    return None


async def serve_file(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    state.note_request(request, Endpoint.DOWNLOAD)
    task_id = request.match_info["task_id"]
    known = state.lookup(task_id)
    spec = state.faults.take(Endpoint.DOWNLOAD, known.provider if known else None)
    if spec is not None:
        state.note_fault(spec)
        early = await _file_fault(request, state, spec)
        if early is not None:
            return early
    try:
        data = state.downloadable(task_id)
    except ApiFailure as failure:
        return _plain(state, failure.status, failure.message)
    size = len(data)
    etag = f'"{task_id}-{size}"'
    headers = {"Accept-Ranges": "bytes", "ETag": etag, "Content-Type": "video/mp4"}
    wanted = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != etag:
        # The client holds another version: it gets the whole current file.
        wanted = None
    try:
        span = parse_range(wanted, size)
    except Unsatisfiable:
        headers["Content-Range"] = f"bytes */{size}"
        return web.Response(status=416, headers=headers)
    status = 200
    if span is not None:
        first, last = span
        data = data[first : last + 1]
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    if request.method == "HEAD":
        # aiohttp sends the headers of this body (its Content-Length) but not the body.
        return web.Response(status=status, body=data, headers=headers)
    state.counters.downloads += 1
    if spec is not None and spec.fault is Fault.MALFORMED:
        return await _send_truncated(request, state, status, headers, data)
    if state.trips.watched(Trip.DOWNLOAD_HALF):
        return await _send_in_halves(request, state, status, headers, data)
    state.counters.download_bytes += len(data)
    return web.Response(status=status, body=data, headers=headers)


async def _send_half(
    request: web.Request, state: MockState, status: int, headers: dict[str, str], data: bytes
) -> tuple[web.StreamResponse, int]:
    """Promise the whole body and send its first half; the response and the bytes sent."""
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = len(data)
    await response.prepare(request)
    half = len(data) // 2
    await response.write(data[:half])
    state.counters.download_bytes += half
    return response, half


async def _send_truncated(
    request: web.Request, state: MockState, status: int, headers: dict[str, str], data: bytes
) -> web.StreamResponse:
    """Promise the whole body, send half of it, then hang up."""
    response, _ = await _send_half(request, state, status, headers, data)
    if request.transport is not None:
        request.transport.close()
    return response


async def _send_in_halves(
    request: web.Request, state: MockState, status: int, headers: dict[str, str], data: bytes
) -> web.StreamResponse:
    """The whole body in two writes, with the DOWNLOAD_HALF trip between them."""
    response, half = await _send_half(request, state, status, headers, data)
    state.trips.fire(Trip.DOWNLOAD_HALF)
    try:
        await response.write(data[half:])
        await response.write_eof()
    except ConnectionError:  # the trip's callback may have killed the client
        return response
    state.counters.download_bytes += len(data) - half
    return response
