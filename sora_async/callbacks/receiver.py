"""CallbackReceiver: its addresses, its route (mounted or standalone) and its server's life."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Final

import attrs
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ..errors import ConfigurationError
from ..providers.sora2api import Sora2Api
from .addresses import normalize_prefix, normalize_public_url, url_host
from .checks import (
    check_body_timeout,
    check_port,
    check_rewake_after,
    require_positive_int,
    token_or_new,
)
from .defaults import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_REMEMBERED,
    DEFAULT_PATH_PREFIX,
    DEFAULT_REWAKE_AFTER,
)
from .intake import CallbackBodyReader, CallbackIntake
from .redaction import redacting_access_logger
from .statistics import CallbackStatistics
from .wake_hint import WakeHint
from .wakes import Wakes

__all__ = ["CallbackReceiver"]

# The package's one logger: its records keep the name they had before the package was split.
logger = logging.getLogger("sora_async.callbacks")

# Handlers are tiny, so a long graceful-shutdown wait would only delay the client's exit.
_SHUTDOWN_TIMEOUT: Final = 5.0


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
        check_port(port)
        require_positive_int(max_body_bytes, "max_body_bytes")
        require_positive_int(max_remembered, "max_remembered")
        body_timeout = check_body_timeout(body_timeout)
        rewake_after = check_rewake_after(rewake_after)
        token = token_or_new(token)
        self._host = host
        self._port = port
        self._public_url = normalize_public_url(public_url) if public_url is not None else None
        self._prefix = normalize_prefix(path_prefix)
        self._max_body_bytes = max_body_bytes
        self._token = token
        fingerprint = hashlib.sha256(token.encode("ascii")).hexdigest()[:8]
        self._redaction = f"<redacted:{fingerprint}>"
        self._counts: dict[str, int] = dict.fromkeys(attrs.fields_dict(CallbackStatistics), 0)
        self._wakes = Wakes(
            max_remembered=max_remembered,
            rewake_after=rewake_after,
            clock=clock,
            counts=self._counts,
        )
        self._intake = CallbackIntake(
            token=token,
            reader=reader if reader is not None else Sora2Api(),
            max_body_bytes=max_body_bytes,
            body_timeout=body_timeout,
            counts=self._counts,
            note=self._wakes.note_callback,
        )
        self._runner: web.AppRunner | None = None
        self._bound_base: str | None = None
        self._bound_port: int | None = None
        self._mount_app: web.Application | None = None
        self._mounted = False
        self._access_log_class: type[AbstractAccessLogger] | None = None

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
        """Route definitions for ``app.add_routes(...)`` (every method: see ``CallbackIntake``)."""
        return [web.route("*", f"{self._prefix}/{{token}}", self._intake.handle)]

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
            self._access_log_class = redacting_access_logger(
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
        self._bound_base = f"http://{url_host(str(sock_host))}:{self._bound_port}"
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
        return self._wakes.watch(task_id)

    def unwatch(self, task_id: str, hint: WakeHint | None = None) -> None:
        """Forget ``hint`` (or every hint) for ``task_id``. Unknown ids are ignored."""
        self._wakes.unwatch(task_id, hint)

    def statistics(self) -> CallbackStatistics:
        return CallbackStatistics(**self._counts)

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<CallbackReceiver {self.redacted_callback_url} {state}>"
