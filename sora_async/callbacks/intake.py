"""One callback request: its token, method and capped body checked, then its task woken."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from typing import Final, NoReturn, Protocol

from aiohttp import web
from aiohttp.http_exceptions import PayloadEncodingError

from ..errors import ProtocolError

__all__ = ["CallbackBodyReader", "CallbackIntake"]

# The package's one logger: its records keep the name they had before the package was split.
logger = logging.getLogger("sora_async.callbacks")

# Reads are capped per call so the buffer never holds more than max_body_bytes + 1.
_READ_CHUNK: Final = 16 * 1024
_OK_BODY: Final = {"code": 200, "msg": "ok"}


class CallbackBodyReader(Protocol):
    """The provider side of a callback: which task a body names (its wire format, not ours)."""

    def callback_task_id(self, body: bytes) -> str:
        """The task id the body names; raise ProtocolError (its text is the reason) if none."""
        ...


class CallbackIntake:
    """The receiver's request handler; ``note`` wakes the task a valid callback names.

    ``counts`` is the receiver's own counters, shared: each request counts as received and,
    when refused here, in its ``rejected_*`` counter.
    """

    def __init__(
        self,
        *,
        token: str,
        reader: CallbackBodyReader,
        max_body_bytes: int,
        body_timeout: float,
        counts: dict[str, int],
        note: Callable[[str], None],
    ) -> None:
        self._token_bytes = token.encode("ascii")
        self._reader = reader
        self._max_body_bytes = max_body_bytes
        self._body_timeout = body_timeout
        self._counts = counts
        self._note = note

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # The route takes every method so that the token is checked first: without the token
        # a caller learns nothing, not even which methods exist.
        self._counts["received"] += 1
        supplied = request.match_info.get("token", "").encode("utf-8", "replace")
        if not hmac.compare_digest(supplied, self._token_bytes):
            # The supplied path is not logged: it may be a truncated copy of the real token.
            self._counts["rejected_token"] += 1
            logger.debug("callback rejected: wrong token")
            raise web.HTTPNotFound()
        if request.method != "POST":
            self._counts["rejected_method"] += 1
            logger.debug("callback rejected: method %s", request.method)
            raise web.HTTPMethodNotAllowed(request.method, ["POST"])
        body = await self._read_capped(request)
        try:
            task_id = self._reader.callback_task_id(body)
        except ProtocolError as exc:
            self._reject_body(str(exc))
        self._note(task_id)
        return web.json_response(_OK_BODY)

    async def _read_capped(self, request: web.Request) -> bytes:
        cap = self._max_body_bytes
        declared = request.content_length
        if declared is not None and declared > cap:
            self._reject_size(declared)
        # Content-Length may be absent (chunked) or wrong, and a compressed body grows when
        # decoded, so the read itself is capped too, in bytes and in time.
        body = bytearray()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._body_timeout
        try:
            while True:
                read = request.content.read(min(_READ_CHUNK, cap + 1 - len(body)))
                chunk = await asyncio.wait_for(read, max(0.0, deadline - loop.time()))
                if not chunk:
                    return bytes(body)
                body += chunk
                if len(body) > cap:
                    self._reject_size(len(body))
        except PayloadEncodingError:
            self._reject_body("malformed body encoding")
        except asyncio.TimeoutError:
            self._counts["rejected_timeout"] += 1
            logger.debug("callback rejected: body not received within %gs", self._body_timeout)
            raise web.HTTPRequestTimeout() from None

    def _reject_size(self, size: int) -> NoReturn:
        self._counts["rejected_size"] += 1
        logger.debug("callback rejected: body over %d bytes", self._max_body_bytes)
        raise web.HTTPRequestEntityTooLarge(max_size=self._max_body_bytes, actual_size=size)

    def _reject_body(self, reason: str) -> NoReturn:
        self._counts["rejected_body"] += 1
        logger.debug("callback rejected: %s", reason)
        raise web.HTTPBadRequest(text=reason)
