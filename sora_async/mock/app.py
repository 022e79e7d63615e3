"""create_app: one aiohttp application serving both providers and the result files."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from ..calls import Endpoint
from . import freesora, sora2api
from .callbacks import CallbackDispatcher
from .config import MockConfig
from .faults import Fault, FaultSpec
from .state import STATE_KEY, MockState
from .storage import serve_file
from .trips import Trip
from .wire import (
    FILE_ROUTE,
    FREESORA,
    SORA2API,
    ApiFailure,
    Dialect,
    drop_connection,
    format_seconds,
    json_response,
)

__all__ = ["STATE_KEY", "create_app", "state_of"]

log = logging.getLogger("sora_async.mock")

ApiHandler = Callable[[web.Request, MockState, str], Awaitable[Any]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_DEFAULT_ENVELOPE_CODE = 500


def state_of(app: web.Application) -> MockState:
    """The state behind an application made by :func:`create_app` (counters, faults, ...)."""
    return app[STATE_KEY]


def create_app(config: MockConfig | None = None) -> web.Application:
    """The mock as an aiohttp application, to run or to mount in another one.

    Paths: freesora under ``/api`` (``/api/v1/video/sora-video``,
    ``/api/video-generations/check-result``, ``/api/get-user-credits``), sora2api under
    ``/api/v1/sora2`` (``/generate``, ``/record-info``), files at ``/files/{task_id}.mp4``.
    """
    state = MockState(config or MockConfig())
    app = web.Application(middlewares=[_envelope_http_errors])
    app[STATE_KEY] = state
    add = app.router.add_route
    add("POST", "/api/v1/video/sora-video", _api(FREESORA, Endpoint.CREATE, freesora.create))
    add(
        "POST",
        "/api/video-generations/check-result",
        _api(FREESORA, Endpoint.STATUS, freesora.check_result, message="Success"),
    )
    add("POST", "/api/get-user-credits", _api(FREESORA, Endpoint.CREDITS, freesora.user_credits))
    add("POST", "/api/v1/sora2/generate", _api(SORA2API, Endpoint.CREATE, sora2api.generate))
    add("GET", "/api/v1/sora2/record-info", _api(SORA2API, Endpoint.STATUS, sora2api.record_info))
    app.router.add_get("/files/{task_id:[A-Za-z0-9_-]+}.mp4", serve_file, name=FILE_ROUTE)
    app.on_shutdown.append(_on_shutdown)
    app.cleanup_ctx.append(_callbacks_running)
    return app


async def _on_shutdown(app: web.Application) -> None:
    # Before aiohttp waits for open handlers: slow answers give up instead of holding it.
    app[STATE_KEY].closing.set()


async def _callbacks_running(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE_KEY]
    async with aiohttp.ClientSession() as session:
        dispatcher = CallbackDispatcher(app, state, session)
        runner = asyncio.create_task(dispatcher.run(), name="sora_async.mock callbacks")
        try:
            yield
        finally:
            state.closing.set()
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)


# -- API endpoints ----------------------------------------------------------------------


def _api_key(request: web.Request, state: MockState) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    key = token.strip()
    if scheme.lower() != "bearer" or not key or not state.key_allowed(key):
        raise ApiFailure(401, "missing or invalid API key")
    return key


def _failure(state: MockState, dialect: Dialect, failure: ApiFailure) -> web.Response:
    headers: dict[str, str] = {}
    if failure.status == 429:
        state.counters.rate_limited += 1
        retry_after = failure.retry_after
        headers["Retry-After"] = format_seconds(
            state.config.cap_retry_after if retry_after is None else retry_after
        )
    elif failure.status == 401:
        state.counters.unauthorized += 1
        headers["WWW-Authenticate"] = "Bearer"
    envelope = dialect.error_envelope(failure.status, failure.message)
    return json_response(envelope, status=failure.status, headers=headers)


async def _fault_first(
    request: web.Request, state: MockState, dialect: Dialect, spec: FaultSpec
) -> web.StreamResponse | None:
    """The answer a fault gives in place of the request, or None to go on with it."""
    fault = spec.fault
    if fault is Fault.SERVER_ERROR:
        return _failure(state, dialect, ApiFailure(500, "internal server error"))
    if fault is Fault.DROP:
        return drop_connection(request)
    if fault is Fault.MALFORMED:
        text = json.dumps(dialect.envelope({"status": "running"}))
        return web.Response(
            status=200, body=text[: len(text) // 2].encode(), content_type="application/json"
        )
    if fault is Fault.RATE_LIMIT:
        return _failure(
            state, dialect, ApiFailure(429, "too many requests", retry_after=spec.retry_after)
        )
    if fault is Fault.ENVELOPE_ERROR:
        code = _DEFAULT_ENVELOPE_CODE if spec.code is None else spec.code
        return json_response(dialect.error_envelope(code, "request failed"))
    if fault is Fault.HTTP_ERROR:
        assert spec.status is not None
        failure = ApiFailure(spec.status, f"HTTP {spec.status}", retry_after=spec.retry_after)
        return _failure(state, dialect, failure)
    if fault is Fault.SLOW:
        delay = state.config.slow_delay if spec.delay is None else spec.delay
        if not await state.pause(delay):
            return drop_connection(request)
    return None


def _api(
    dialect: Dialect, endpoint: str, handler: ApiHandler, *, message: str | None = None
) -> Handler:
    """Wrap a provider handler: count, fire faults, authenticate, envelope the answer."""

    async def route(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE_KEY]
        state.note_request(request, endpoint)
        creating = endpoint == Endpoint.CREATE
        if creating:
            state.trips.fire(Trip.CREATE_RECEIVED)
        spec = state.faults.take(endpoint, dialect.name)
        if spec is not None:
            state.note_fault(spec)
        if not await state.pause(state.config.latency):
            return drop_connection(request)
        if spec is not None:
            early = await _fault_first(request, state, dialect, spec)
            if early is not None:
                return early
        try:
            key = _api_key(request, state)
            data = await handler(request, state, key)
            response = json_response(dialect.envelope(data, message))
        except ApiFailure as failure:
            response = _failure(state, dialect, failure)
        if spec is not None and spec.fault is Fault.CREATED_THEN_500:
            return _failure(state, dialect, ApiFailure(500, "internal server error"))
        if spec is not None and spec.fault is Fault.CREATED_THEN_DROP:
            return drop_connection(request)
        if spec is not None and spec.fault is Fault.CREATED_THEN_SLOW:
            delay = state.config.slow_delay if spec.delay is None else spec.delay
            if not await state.pause(delay):
                return drop_connection(request)
        if creating and response.status == 200 and state.trips.watched(Trip.CREATE_ANSWERED):
            # Sent whole before the callbacks, so they act after the client could read it.
            await response.prepare(request)
            await response.write_eof()
            state.trips.fire(Trip.CREATE_ANSWERED)
        return response

    return route


@web.middleware
async def _envelope_http_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown API paths and wrong methods answer in the provider's envelope, like the rest."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or "/api/" not in request.path:
            raise
        dialect = SORA2API if "/api/v1/sora2/" in request.path else FREESORA
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return json_response(
            dialect.error_envelope(exc.status, exc.reason), status=exc.status, headers=headers
        )
