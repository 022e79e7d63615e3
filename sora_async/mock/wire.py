"""Wire helpers shared by both providers: envelopes, error answers, body parsing, drops."""

from __future__ import annotations

import json
from typing import Any

import attrs
from aiohttp import web

__all__ = [
    "FILE_ROUTE",
    "FREESORA",
    "SORA2API",
    "ApiFailure",
    "Dialect",
    "bad_field",
    "drop_connection",
    "file_url",
    "format_seconds",
    "is_http_url",
    "json_response",
    "origin_of",
    "read_object",
]

#: Name of the result-file route, so URLs follow wherever the app is mounted.
FILE_ROUTE = "sora_async_mock_file"


class ApiFailure(Exception):
    """An error answer: HTTP ``status`` and an envelope whose code is the same number."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        self.status = status
        self.message = message
        self.retry_after = retry_after
        super().__init__(f"{status}: {message}")


@attrs.frozen
class Dialect:
    """How one provider wraps its answers."""

    name: str
    success_code: int
    message_key: str
    success_message: str

    def envelope(self, data: Any, message: str | None = None) -> dict[str, Any]:
        return {
            "code": self.success_code,
            self.message_key: message or self.success_message,
            "data": data,
        }

    def error_envelope(self, code: int, message: str) -> dict[str, Any]:
        return {"code": code, self.message_key: message, "data": None}


FREESORA = Dialect("freesora", 0, "message", "ok")
SORA2API = Dialect("sora2api", 200, "msg", "success")


def format_seconds(seconds: float) -> str:
    """A Retry-After value: whole seconds as an integer, fractions kept (tests use small ones)."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def json_response(
    payload: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload).encode(),
        content_type="application/json",
        headers=headers,
    )


def drop_connection(request: web.Request) -> web.Response:
    """Close the connection without a byte of answer.

    The returned response is never sent: aiohttp fails to write it to the closed transport and
    treats that as a client that went away, quietly.
    """
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=500)


async def read_object(request: web.Request) -> dict[str, Any]:
    """The JSON object in the body, or a 400 that says what is wrong with it."""
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiFailure(400, "malformed JSON in the request body") from None
    if not isinstance(body, dict):
        raise ApiFailure(400, "the request body must be a JSON object")
    return body


def bad_field(field: str, problem: str) -> ApiFailure:
    return ApiFailure(400, f"invalid parameter {field}: {problem}")


def is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    scheme, sep, rest = value.partition("://")
    return bool(sep) and scheme.lower() in ("http", "https") and bool(rest.strip("/"))


def origin_of(request: web.Request) -> str:
    """scheme://host[:port] as the client addressed us (result URLs are built from it)."""
    return f"{request.scheme}://{request.host}"


def file_url(app: web.Application, origin: str, task_id: str) -> str:
    """The absolute URL of a task's result file."""
    return origin + str(app.router[FILE_ROUTE].url_for(task_id=task_id))
