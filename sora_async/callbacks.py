"""Completion-callback receiver for sora2api's ``callBackUrl``.

sora2api POSTs to ``callBackUrl`` when a task is done. Callbacks are not signed, so their body is
never trusted: a callback only *wakes* the poller of that task, which then asks ``record-info``
for the real state. A forged callback can therefore cost at most one early poll, never a wrong
result. The URL carries a per-run secret token so that strangers cannot even do that.

Standalone (local use, tests, or a host the provider can reach directly)::

    async with CallbackReceiver(host="0.0.0.0", port=8080,
                                public_url="https://hooks.example.com") as receiver:
        url = receiver.callback_url          # put this into the request's callBackUrl
        hint = receiver.watch(task_id)       # woken when that task's callback arrives
        ...
        receiver.unwatch(task_id, hint)

Inside your own aiohttp application (``public_url`` is then required: it is the external URL
of the root of the application the routes are added to)::

    receiver = CallbackReceiver(public_url="https://app.example.com")
    receiver.mount(app)                      # or app.add_routes(receiver.routes())
    # or as a sub-application, with the sub-app prefix in public_url:
    #   CallbackReceiver(public_url="https://app.example.com/hooks")
    #   app.add_subapp("/hooks", receiver.app)
    runner = web.AppRunner(app, access_log_class=receiver.access_log_class)

The callback path embeds the token, so an ordinary access log would write it out; the standalone
server logs through :attr:`CallbackReceiver.access_log_class`, which redacts it, and a mounting
application should pass that class to its own ``AppRunner`` as shown.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Final, NoReturn, Protocol

import attrs
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import PayloadEncodingError
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from yarl import URL

from .config import ENV_CALLBACK_LISTEN, ENV_CALLBACK_PUBLIC_URL
from .errors import ConfigurationError, ProtocolError
from .providers.sora2api import Sora2Api

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_REMEMBERED",
    "DEFAULT_PATH_PREFIX",
    "DEFAULT_REWAKE_AFTER",
    "CallbackBodyReader",
    "CallbackReceiver",
    "CallbackStatistics",
    "WakeHint",
    "receiver_from_settings",
]

logger = logging.getLogger(__name__)

DEFAULT_PATH_PREFIX: Final = "/sora-async/callback"
DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024
#: Seconds a caller has to deliver a callback's body: a sender that trickles bytes or stalls
#: would otherwise hold a handler (and its connection) for as long as it likes.
DEFAULT_BODY_TIMEOUT: Final = 10.0
#: Seconds after a task's callback during which a repeat is ignored. A repeat after that wakes
#: the poller again: an early forged or replayed callback must not swallow the real one (the
#: poll it caused found the task running), while a flood still costs at most one poll per task
#: per interval.
DEFAULT_REWAKE_AFTER: Final = 2.0
#: How many task ids with a callback are remembered (for early callbacks and duplicates).
DEFAULT_MAX_REMEMBERED: Final = 10_000

# Reads are capped per call so the buffer never holds more than max_body_bytes + 1.
_READ_CHUNK: Final = 16 * 1024
# A token must be a single URL path segment and long enough not to be guessed.
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_-]{16,256}")
# Literal path segments only: aiohttp would read "{...}" as a route variable.
_PREFIX_SEGMENT_RE: Final = re.compile(r"[A-Za-z0-9._~-]+")
_OK_BODY: Final = {"code": 200, "msg": "ok"}
# Handlers are tiny, so a long graceful-shutdown wait would only delay the client's exit.
_SHUTDOWN_TIMEOUT: Final = 5.0


class CallbackBodyReader(Protocol):
    """The provider side of a callback: which task a body names (its wire format, not ours)."""

    def callback_task_id(self, body: bytes) -> str:
        """The task id the body names; raise ProtocolError (its text is the reason) if none."""
        ...


class WakeHint:
    """A wake-up flag for one waiting poller: set by a callback, awaited by the poller.

    Setting it is a hint only (the poller still confirms the state with the provider), so it
    carries no data. ``clear()`` re-arms it.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        self._event.clear()

    async def wait(self) -> None:
        await self._event.wait()

    def __repr__(self) -> str:
        return f"<WakeHint {'set' if self.is_set() else 'unset'}>"


@attrs.frozen
class CallbackStatistics:
    """A snapshot of a receiver's counters.

    Every HTTP request that reaches the receiver's route counts in ``received`` and in exactly
    one of ``accepted``, ``duplicates`` or a ``rejected_*`` counter. ``unwatched`` counts the
    accepted callbacks whose task had no watcher yet (early or unknown tasks).
    """

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    unwatched: int = 0
    rejected_token: int = 0
    rejected_method: int = 0
    rejected_size: int = 0
    rejected_body: int = 0
    rejected_timeout: int = 0


class CallbackReceiver:
    """Receives sora2api completion callbacks and wakes the matching task's poller.

    ``host``/``port`` are where the standalone server listens (``port=0``: a free port, read
    back after start). ``public_url`` is the externally reachable base URL; without it the
    standalone server's own address is used, which only a local (mock) provider can reach.
    ``token`` defaults to a fresh ``secrets.token_urlsafe(32)`` per receiver. ``reader``
    reads the body; the default is sora2api, the one provider with callbacks.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        public_url: str | None = None,
        *,
        path_prefix: str = DEFAULT_PATH_PREFIX,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        token: str | None = None,
        max_remembered: int = DEFAULT_MAX_REMEMBERED,
        reader: CallbackBodyReader | None = None,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        rewake_after: float = DEFAULT_REWAKE_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ConfigurationError(f"callback port must be an integer 0-65535, got {port!r}")
        _require_positive_int(max_body_bytes, "max_body_bytes")
        _require_positive_int(max_remembered, "max_remembered")
        if (
            isinstance(body_timeout, bool)
            or not isinstance(body_timeout, (int, float))
            or not 0 < body_timeout < float("inf")
        ):
            raise ConfigurationError(
                f"callback body_timeout must be a positive number of seconds, got {body_timeout!r}"
            )
        self._body_timeout = float(body_timeout)
        if isinstance(rewake_after, bool) or not isinstance(rewake_after, (int, float)):
            raise ConfigurationError(
                f"callback rewake_after must be a number of seconds, got {rewake_after!r}"
            )
        if not 0 <= rewake_after < float("inf"):
            raise ConfigurationError(
                f"callback rewake_after must be >= 0 seconds, got {rewake_after!r}"
            )
        self._rewake_after = float(rewake_after)
        self._clock = clock
        if token is None:
            token = secrets.token_urlsafe(32)
        elif not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
            # Never echo the value: it is a secret even when it is a bad one.
            raise ConfigurationError(
                "callback token must be 16-256 characters of A-Z, a-z, 0-9, '_' or '-'"
            )
        self._reader: CallbackBodyReader = reader if reader is not None else Sora2Api()
        self._host = host
        self._port = port
        self._public_url = _normalize_public_url(public_url) if public_url is not None else None
        self._prefix = _normalize_prefix(path_prefix)
        self._max_body_bytes = max_body_bytes
        self._max_remembered = max_remembered
        self._token = token
        self._token_bytes = token.encode("ascii")
        fingerprint = hashlib.sha256(self._token_bytes).hexdigest()[:8]
        self._redaction = f"<redacted:{fingerprint}>"
        self._watchers: dict[str, list[WakeHint]] = {}
        # Task ids that already had a callback, oldest first; the bound keeps forged ids from
        # growing it without limit.
        self._seen: OrderedDict[str, float] = OrderedDict()  # task id -> when it last woke
        self._counts: dict[str, int] = dict.fromkeys(attrs.fields_dict(CallbackStatistics), 0)
        self._runner: web.AppRunner | None = None
        self._bound_base: str | None = None
        self._bound_port: int | None = None
        self._mount_app: web.Application | None = None
        self._mounted = False
        self._access_log_class: type[AbstractAccessLogger] | None = None

    # -- addresses --------------------------------------------------------------------------

    @property
    def callback_url(self) -> str:
        """The URL to send as ``callBackUrl``. Contains the secret token: do not log it."""
        return f"{self._base_url()}{self._prefix}/{self._token}"

    @property
    def redacted_callback_url(self) -> str:
        """:attr:`callback_url` with the token replaced by a short fingerprint, for logs."""
        base = self._public_url or self._bound_base or "<not started>"
        return f"{base}{self._prefix}/{self._redaction}"

    @property
    def public_url(self) -> str | None:
        return self._public_url

    @property
    def path_prefix(self) -> str:
        return self._prefix

    @property
    def max_body_bytes(self) -> int:
        return self._max_body_bytes

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound port while running standalone, else the configured one."""
        return self._bound_port if self._bound_port is not None else self._port

    @property
    def is_running(self) -> bool:
        return self._runner is not None

    @property
    def is_mounted(self) -> bool:
        """Whether the route was handed to another application (``mount()`` or ``app``)."""
        return self._mounted

    def _base_url(self) -> str:
        if self._public_url is not None:
            return self._public_url
        if self._bound_base is not None:
            return self._bound_base
        raise ConfigurationError(
            "the callback receiver has no address yet: start it (async with) or give public_url"
        )

    # -- mounting ---------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        """Route definitions for ``app.add_routes(...)`` (every method: see ``_handle``)."""
        return [web.route("*", f"{self._prefix}/{{token}}", self._handle)]

    def mount(self, app: web.Application) -> None:
        """Add the callback route to ``app`` (before it starts); ``public_url`` is required."""
        if self._public_url is None:
            raise ConfigurationError(
                "a mounted callback receiver needs public_url: the external URL of the root of "
                "the application it is mounted in"
            )
        app.add_routes(self.routes())
        self._mounted = True

    @property
    def app(self) -> web.Application:
        """An application holding only the callback route, for ``add_subapp()``.

        The sub-application prefix must be part of ``public_url``. This is not the application
        the standalone server runs (each start builds its own), so both can be used.
        """
        if self._mount_app is None:
            self._mount_app = self._make_app()
        self._mounted = True
        return self._mount_app

    @property
    def access_log_class(self) -> type[AbstractAccessLogger]:
        """An aiohttp access logger that never writes the token; pass it to ``AppRunner``."""
        if self._access_log_class is None:
            self._access_log_class = _redacting_access_logger(
                self._prefix, self._token, self._redaction
            )
        return self._access_log_class

    def _make_app(self) -> web.Application:
        # The handler caps the body itself (a mounting app's limit may be larger); this only
        # makes the standalone app agree with it.
        app = web.Application(client_max_size=self._max_body_bytes)
        app.add_routes(self.routes())
        return app

    # -- standalone lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``host:port``; with ``port=0`` the chosen port is read back."""
        if self._runner is not None:
            raise RuntimeError("the callback receiver is already running")
        runner = web.AppRunner(
            self._make_app(),
            access_log_class=self.access_log_class,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
            # A body refused or cut off (408, 413) ends its connection: reading and discarding
            # the rest for aiohttp's default 10 s would let a sender that never finishes hold
            # the connection, and the receiver's shutdown, for the whole grace period.
            lingering_time=0,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigurationError(
                f"cannot listen for callbacks on {self._host}:{self._port}: {exc.strerror or exc}"
            ) from None
        except BaseException:
            await runner.cleanup()
            raise
        sock_host, sock_port = runner.addresses[0][:2]
        self._runner = runner
        self._bound_port = int(sock_port)
        self._bound_base = f"http://{_url_host(str(sock_host))}:{self._bound_port}"
        logger.info("callback receiver listening; callback URL %s", self.redacted_callback_url)

    async def aclose(self) -> None:
        """Stop the standalone server. Watchers stay registered; pollers keep polling."""
        runner, self._runner = self._runner, None
        self._bound_base = None
        self._bound_port = None
        if runner is not None:
            await runner.cleanup()
            logger.info("callback receiver stopped")

    async def __aenter__(self) -> CallbackReceiver:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- waking -----------------------------------------------------------------------------

    def watch(self, task_id: str) -> WakeHint:
        """A hint that is set when a callback for ``task_id`` arrives.

        If one already arrived (the callback can beat the processing of the create answer),
        the hint is returned already set. Each call returns a new hint; release it with
        :meth:`unwatch`.
        """
        hint = WakeHint()
        if task_id in self._seen:
            hint.set()
        self._watchers.setdefault(task_id, []).append(hint)
        return hint

    def unwatch(self, task_id: str, hint: WakeHint | None = None) -> None:
        """Forget ``hint`` (or every hint) for ``task_id``. Unknown ids are ignored."""
        hints = self._watchers.get(task_id)
        if hints is None:
            return
        if hint is None:
            hints.clear()
        else:
            # Identity, not equality: two hints for one task are distinct watchers.
            hints[:] = [h for h in hints if h is not hint]
        if not hints:
            del self._watchers[task_id]

    def statistics(self) -> CallbackStatistics:
        return CallbackStatistics(**self._counts)

    def _note_callback(self, task_id: str) -> None:
        now = self._clock()
        last = self._seen.get(task_id)
        if last is not None and now - last < self._rewake_after:
            # Ignored so that repeats (provider retries, or a flood) cost no extra polls.
            self._seen.move_to_end(task_id)
            self._counts["duplicates"] += 1
            logger.debug("duplicate callback for task %r ignored", task_id)
            return
        self._seen[task_id] = now
        self._seen.move_to_end(task_id)
        while len(self._seen) > self._max_remembered:
            self._seen.popitem(last=False)
        self._counts["accepted"] += 1
        hints = self._watchers.get(task_id)
        if hints:
            for hint in hints:
                hint.set()
            logger.debug("callback for task %r: waking %d watcher(s)", task_id, len(hints))
        else:
            self._counts["unwatched"] += 1
            logger.debug("callback for unwatched task %r remembered", task_id)

    # -- HTTP -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
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
        self._note_callback(task_id)
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

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<CallbackReceiver {self.redacted_callback_url} {state}>"


def _redacting_access_logger(
    prefix: str, token: str, replacement: str
) -> type[AbstractAccessLogger]:
    # The segment after the prefix is hidden even when it is not the token: a wrong one may be a
    # truncated copy of it. Mounted as a sub-app, the prefix sits further along the path.
    segment_after_prefix = re.compile(re.escape(prefix) + r"/[^/]*")

    def hide(match: re.Match[str]) -> str:
        segment = match.group(0)[len(prefix) + 1 :]
        return f"{prefix}/{replacement if segment == token else '<redacted>'}"

    class RedactingAccessLogger(AbstractAccessLogger):
        """Logs method, path (token redacted), status and duration; never headers or query."""

        @property
        def enabled(self) -> bool:
            return self.logger.isEnabledFor(logging.INFO)

        def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
            path = segment_after_prefix.sub(hide, request.path).replace(token, replacement)
            self.logger.info(
                '%s "%s %s" %d %.3fs', request.remote, request.method, path, response.status, time
            )

    return RedactingAccessLogger


def _normalize_prefix(prefix: str) -> str:
    segments = [s for s in prefix.split("/") if s]
    for segment in segments:
        if not _PREFIX_SEGMENT_RE.fullmatch(segment):
            raise ConfigurationError(
                f"callback path_prefix {prefix!r}: segments may use A-Z, a-z, 0-9 and . _ ~ -"
            )
    return "".join(f"/{s}" for s in segments)


def _normalize_public_url(public_url: str) -> str:
    try:
        url = URL(public_url)
    except (TypeError, ValueError):
        raise ConfigurationError(f"callback public_url {public_url!r} is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"callback public_url {public_url!r} must be an absolute http(s) URL"
        )
    if url.query_string or url.fragment:
        raise ConfigurationError(f"callback public_url {public_url!r} must not have a query")
    return public_url.rstrip("/")


def _url_host(sock_host: str) -> str:
    """The host part of a URL that reaches a socket bound to ``sock_host``."""
    try:
        address = ipaddress.ip_address(sock_host.split("%", 1)[0])
    except ValueError:
        return sock_host
    if address.is_unspecified:
        # Bound to every interface: loopback reaches it; remote callers need public_url anyway.
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    return f"[{address}]" if address.version == 6 else str(address)


def _require_positive_int(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"callback {name} must be a positive integer, got {value!r}")


def receiver_from_settings(
    option: bool | CallbackReceiver | None, environ: Mapping[str, str]
) -> CallbackReceiver | None:
    """The receiver a client's ``callback_receiver=`` (or its environment) asks for, if any."""
    if isinstance(option, CallbackReceiver):
        return option
    if option is True:
        return CallbackReceiver()
    if option is None and environ.get(ENV_CALLBACK_LISTEN):
        host, _, port = environ[ENV_CALLBACK_LISTEN].rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(
                f"{ENV_CALLBACK_LISTEN} must be HOST:PORT, got {environ[ENV_CALLBACK_LISTEN]!r}"
            )
        return CallbackReceiver(host, int(port), environ.get(ENV_CALLBACK_PUBLIC_URL) or None)
    if option is None and environ.get(ENV_CALLBACK_PUBLIC_URL):
        raise ConfigurationError(
            f"{ENV_CALLBACK_PUBLIC_URL} needs {ENV_CALLBACK_LISTEN} (HOST:PORT to listen on)"
        )
    return None
