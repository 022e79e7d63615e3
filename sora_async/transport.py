"""The HTTP transport: one aiohttp session, per-call timeouts, retries of safe calls.

This is the one place where aiohttp's exceptions become ours. aiohttp's exceptions and their
reprs can carry the request (URL, headers, so the Authorization header), so each one is
translated into a :class:`~sora_async.errors.TransportError` that keeps only the endpoint and a
message, and the new error is raised *outside* the ``except`` block: it has no ``__context__``
to leak through, not even one hidden by ``from None``.

The transport knows nothing of providers: it sends an :class:`ApiCall`, hands the
:class:`RawResponse` to the caller's ``decode`` and retries according to ``safe``:

- ``safe=True`` (status, credits): connect errors, timeouts, dropped connections, malformed
  answers, 429 and 5xx/408 are retried with backoff, Retry-After honoured, within one deadline.
- ``safe=False`` (create): only a :class:`ConnectError`, which proves nothing was sent. No
  provider takes an idempotency key, so anything else must reach the caller unchanged.

Every call and download shares one kept-alive pool. A create rides a pooled connection only
when that connection's last answer came less than :data:`CREATE_REUSE_IDLE` ago; otherwise it
opens a fresh one (see :class:`_PoolConnector`).
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
import math
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import attrs

from . import requestspans, waits
from ._version import __version__
from .calls import ApiCall, Endpoint, RawResponse
from .config import Network, Secret
from .errors import (
    APIError,
    ConfigurationError,
    ConnectError,
    ConnectionDroppedError,
    ProtocolError,
    RateLimitError,
    ReadTimeoutError,
    ServerError,
    SoraError,
    TransportError,
    UnknownStatusError,
    create_may_be_resent,
)
from .retry import CREATE_CONNECT, SAFE_CALLS, RetryPolicy, next_retry_delay

__all__ = [
    "CREATE_REUSE_IDLE",
    "DEFAULT_USER_AGENT",
    "MAX_ANSWER_BYTES",
    "CallTimeouts",
    "Transport",
    "translate_client_error",
]

logger = logging.getLogger("sora_async.transport")

T = TypeVar("T")
_TransportT = TypeVar("_TransportT", bound="Transport")


DEFAULT_USER_AGENT = f"sora-async/{__version__}"

#: An API answer is a small JSON envelope; anything bigger is a misrouted request (an HTML page,
#: a file) and is refused instead of being buffered whole in memory.
MAX_ANSWER_BYTES = 8 * 1024 * 1024

#: Keys at least this long are masked wherever an answer echoes them (see Transport._redact).
_MIN_MASKED_KEY = 12

#: Never give an attempt less than this, even right at the deadline: aiohttp treats a zero
#: total as "no timeout at all".
_MIN_ATTEMPT_SECONDS = 1.0

#: Distinct per-call timeouts kept for reuse (see Transport._call_timeout).
_KEPT_CALL_TIMEOUTS = 16

#: A create rides a pooled keep-alive connection only if that connection's last answer came
#: less than this many seconds ago; otherwise it opens a fresh one. A server closes an idle
#: connection on its own schedule, and a create sent into a close it has not yet seen fails
#: as "dropped": an unknown outcome (paid or not?) when nothing was sent. Servers' idle
#: timeouts are 2 s (gunicorn), 5 s (uvicorn, node) and 60-75 s (load balancers, nginx,
#: aiohttp), so a connection answered within the last second has not been closed for idleness.
#: A ``Keep-Alive: timeout=N`` from the server lowers it to N/2 (see Transport._learn_keepalive).
CREATE_REUSE_IDLE = 1.0

#: Methods aiohttp re-sends by itself, once, when a kept-alive connection turns out dropped.
#: A call that must never be re-sent and has one of these methods always gets a fresh
#: connection (the providers' creates are POSTs, which aiohttp never re-sends).
_RESENT_BY_AIOHTTP = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

_KEEPALIVE_TIMEOUT = re.compile(r"(?:^|[,;\s])timeout\s*=\s*([0-9]+(?:\.[0-9]*)?)", re.I)

#: What a safe call retries. ProtocolError is here because a malformed body from an idempotent
#: endpoint is usually a proxy or gateway hiccup; asking again costs nothing.
_SAFE_RETRYABLE: tuple[type[SoraError], ...] = (
    TransportError,
    ProtocolError,
    RateLimitError,
    ServerError,
)


def _may_retry(error: SoraError, *, safe: bool) -> bool:
    if safe:
        # A well-formed answer naming a state we do not know is not a glitch a retry fixes:
        # the poll loop counts those answers and gives the task up after a few.
        return isinstance(error, _SAFE_RETRYABLE) and not isinstance(error, UnknownStatusError)
    # Whether a create may be re-sent is errors.py's policy, asked and not restated here. A
    # 429 is the one re-sendable create the transport leaves alone: the client holds the slot
    # and decides how long to wait for the account, so a second retry loop here would hide it.
    return create_may_be_resent(error) and not isinstance(error, RateLimitError)


def _positive_seconds(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive number of seconds, got {value!r}")


@attrs.frozen(kw_only=True)
class CallTimeouts:
    """Timeouts fitted to each kind of call, in seconds.

    connect:       to open one TCP (+TLS) connection. A healthy host answers in well under a
                   second; 10 s rides out a lost SYN (retransmitted after 1 s, then 3 s) and a
                   slow resolver without stalling a poll loop.
    create:        whole create exchange. Generous because a create that times out has an
                   unknown outcome and cannot be retried; the body may carry an inline image.
    status:        whole status or credits exchange. A poll answer is a few hundred bytes; if
                   it takes 30 s something is wrong and a fresh retry does better than waiting.
    download_read: longest silence while streaming a file. There is no total: a large video
                   over a slow link may take minutes and still be healthy.
    """

    connect: float = attrs.field(default=10.0, validator=_positive_seconds)
    create: float = attrs.field(default=60.0, validator=_positive_seconds)
    status: float = attrs.field(default=30.0, validator=_positive_seconds)
    download_read: float = attrs.field(default=60.0, validator=_positive_seconds)

    def total_for(self, endpoint: str) -> float:
        """The whole-exchange budget of one API call to ``endpoint``."""
        return self.create if endpoint == Endpoint.CREATE else self.status


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


class _Exchange:
    """Per-request marker, set once a connection is in hand.

    Before that, nothing can have been written to the server, so any failure (even a total
    timeout spent waiting for a pooled connection) is provably a connect error.

    ``max_idle`` (calls that must not be re-sent): a pooled connection is taken only if its
    last answer came less than this many seconds ago.

    A plain class with class-level defaults: made with no __init__ of ours run, once a request.
    """

    max_idle: float | None = None
    connected: bool = False


#: The exchange this task is sending now. aiohttp asks the connector for a connection inside
#: the caller's task, so the connector finds the exchange here without any per-request hook.
_CURRENT_EXCHANGE: contextvars.ContextVar[_Exchange | None] = contextvars.ContextVar(
    "sora_async_exchange", default=None
)


class _PoolConnector(aiohttp.TCPConnector):
    """The one pool of API calls and downloads, with two additions to aiohttp's connector.

    It marks the calling task's exchange once it hands out a connection. (A trace hook could
    do the same, but a session with any trace config runs aiohttp's whole trace machinery on
    every request: about a dozen signal sends, measured at a fifth of the CPU of a small
    request, downloads included.)

    And an exchange with a ``max_idle`` (a create) is handed only the most recently answered
    pooled connection, and only if that answer is younger than ``max_idle``; otherwise
    aiohttp opens a fresh connection for it. aiohttp's own choice cannot be used: it takes the
    oldest pooled connection (the newest in some versions) and trusts it up to its
    ``keepalive_timeout`` (15 s), and it sees a server's close only once the FIN has been
    read. Polls and downloads keep aiohttp's choice: a dropped one is simply asked again.
    """

    async def _get(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        # A pooled connection handed out is the exchange's connection in hand: aiohttp's
        # connect() returns it with no await between. (Marked here rather than around
        # connect(), which would be one more coroutine and context read a request.)
        exchange = _CURRENT_EXCHANGE.get()
        if exchange is None:
            return await super()._get(key, *args, **kwargs)
        if exchange.max_idle is None:
            connection = await super()._get(key, *args, **kwargs)  # aiohttp's own choice
        else:
            connection = await self._get_fresh(key, exchange.max_idle, *args, **kwargs)
        if connection is not None:
            exchange.connected = True
        return connection

    async def _create_connection(self, *args: Any, **kwargs: Any) -> Any:
        # A new connection: connect() hands it out next unless the pool closed meanwhile.
        protocol = await super()._create_connection(*args, **kwargs)
        exchange = _CURRENT_EXCHANGE.get()
        if exchange is not None and not self.closed:
            exchange.connected = True
        return protocol

    async def _get_fresh(self, key: Any, max_idle: float, *args: Any, **kwargs: Any) -> Any:
        # aiohttp's pool (private, hence the guard): per key, a sequence of (protocol, the
        # time.monotonic() of its release), appended on release, so the newest is last.
        pooled = getattr(self, "_conns", {}).get(key)
        if not pooled:
            return None
        try:
            protocol, released = pooled[-1]
            fresh = time.monotonic() - released < max_idle and protocol.is_connected()
        except (TypeError, ValueError, AttributeError):
            fresh = False  # a pool shaped otherwise: the safe answer is a fresh connection
        if not fresh:
            return None
        # Offer aiohttp that one connection alone (it takes from either end, by version),
        # and put the others back whatever it does with it.
        self._conns[key] = type(pooled)([pooled.pop()])
        try:
            return await super()._get(key, *args, **kwargs)
        finally:
            if pooled:
                left = self._conns.get(key)
                if left:
                    pooled.extend(left)
                self._conns[key] = pooled


def translate_client_error(
    exc: BaseException,
    endpoint: str,
    *,
    connected: bool = True,
    total: float | None = None,
    connect_timeout: float | None = None,
) -> SoraError:
    """Our error for an aiohttp (or timeout) exception, without its request info or headers.

    ``connected=False`` says no connection was ever obtained, which makes any failure a
    :class:`ConnectError`. The result must be raised outside the ``except`` block that caught
    ``exc``, or with ``from None``.
    """
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return ConfigurationError(f"{endpoint}: not a usable http(s) URL")
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc, (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError)):
            reason = f"TLS failure: {type(exc).__name__}"
        else:
            reason = exc.os_error.strerror or type(exc.os_error).__name__
        return ConnectError(
            f"cannot connect to {exc.host}:{exc.port} ({reason})", endpoint=endpoint
        )
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        limit = f" within {connect_timeout:g}s" if connect_timeout else ""
        return ConnectError(f"no connection could be made{limit}", endpoint=endpoint)
    if not connected:
        return ConnectError(
            f"no connection could be made ({_what(exc, total)}); nothing was sent",
            endpoint=endpoint,
        )
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return ReadTimeoutError("the server stopped sending (read timeout)", endpoint=endpoint)
    if isinstance(exc, asyncio.TimeoutError):
        return ReadTimeoutError(_what(exc, total), endpoint=endpoint)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ConnectionDroppedError(
            "the server closed the connection before answering", endpoint=endpoint
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ConnectionDroppedError("the answer was cut short", endpoint=endpoint)
    if isinstance(exc, aiohttp.ClientConnectionResetError):
        return ConnectionDroppedError("the connection was reset", endpoint=endpoint)
    if isinstance(exc, aiohttp.ClientOSError):
        reason = exc.strerror or type(exc).__name__
        return ConnectionDroppedError(f"connection failed: {reason}", endpoint=endpoint)
    if isinstance(exc, aiohttp.ClientResponseError):
        # The parser's own words can quote the answer, so only the status is kept.
        return ProtocolError(f"malformed HTTP answer (status {exc.status})", endpoint=endpoint)
    return ConnectionDroppedError(f"the exchange failed ({type(exc).__name__})", endpoint=endpoint)


def _what(exc: BaseException, total: float | None) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return f"no complete answer within {total:g}s" if total else "timed out"
    return type(exc).__name__


def _describe(error: BaseException) -> str:
    """Error class and HTTP status only: server messages may echo what we sent."""
    if isinstance(error, APIError) and error.http_status is not None:
        return f"{type(error).__name__} (HTTP {error.http_status})"
    return type(error).__name__


def _read_answer(response: aiohttp.ClientResponse, endpoint: str) -> Awaitable[bytes]:
    """The answer's whole body, to be awaited (a plain function: the usual answer, of a
    checked length and not compressed, is read by aiohttp's own coroutine, with none of ours
    around it; Transport._exchange does that one itself)."""
    length = response.content_length
    if length is not None and length > MAX_ANSWER_BYTES:
        raise ProtocolError(
            f"answer too large ({length} bytes, HTTP {response.status})", endpoint=endpoint
        )
    if length is not None and not response.headers.get("Content-Encoding"):
        # The parser lets through no more than the declared (and checked) size, so one read
        # to the end is bounded; the chunked loop below is for answers of unknown size.
        return response.content.read()
    return _read_chunks(response, endpoint)


async def _read_chunks(response: aiohttp.ClientResponse, endpoint: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise ProtocolError(
                f"answer larger than {MAX_ANSWER_BYTES} bytes (HTTP {response.status})",
                endpoint=endpoint,
            )
        parts.append(chunk)
    return b"".join(parts)


class Transport:
    """Sends API calls over one aiohttp session; use as ``async with Transport(...) as t:``.

    ``max_connections`` bounds simultaneous HTTP requests: creates, status and credits calls
    *and* downloads made with :attr:`session`, all over one kept-alive pool. A create takes a
    pooled connection only if its last answer came less than ``create_reuse_idle`` seconds ago
    (default :data:`CREATE_REUSE_IDLE`; 0: a fresh connection for every create), so a
    connection the server has closed for idleness cannot turn a create into an unknown outcome.

    The API key goes into each API call's Authorization header, never into the session
    defaults, so requests to other hosts (video storage) never carry it.
    """

    def __init__(
        self,
        base_url: str,
        api_key: Secret,
        *,
        max_connections: int = 20,
        user_agent: str = DEFAULT_USER_AGENT,
        timeouts: CallTimeouts | None = None,
        network: Network | None = None,
        sleep: Callable[[float], Awaitable[object]] = waits.sleep,
        clock: Callable[[], float] = waits.clock,
        create_reuse_idle: float = CREATE_REUSE_IDLE,
    ) -> None:
        if not base_url.lower().startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must be an http(s) URL, got {base_url!r}")
        if not isinstance(api_key, Secret):
            raise TypeError("api_key must be a sora_async.config.Secret")
        if isinstance(max_connections, bool) or max_connections < 1:
            raise ConfigurationError(f"max_connections must be >= 1, got {max_connections!r}")
        if not (create_reuse_idle >= 0 and math.isfinite(create_reuse_idle)):
            raise ConfigurationError(
                f"create_reuse_idle must be >= 0 seconds, got {create_reuse_idle!r}"
            )
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._credentials = _Credentials(api_key)
        self._max_connections = max_connections
        self._user_agent = user_agent
        self._timeouts = timeouts or CallTimeouts()
        # Proxies are chosen per request here, never by aiohttp's trust_env: that would also
        # read ~/.netrc and send its passwords to API and storage hosts.
        self._network = network or Network()
        # Every API call goes to this host, so its proxy is chosen once (the settings are
        # frozen), not by parsing each call's URL again.
        self._api_proxy = self._network.proxy_for(self._base_url)
        self._sleep = sleep
        self._clock = clock
        self._call_timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._create_reuse_idle = create_reuse_idle
        #: The idle bound creates use now: create_reuse_idle, lowered by a Keep-Alive hint.
        self._create_idle = create_reuse_idle
        self._keepalive_hint: str | None = None
        self._state = _State.UNOPENED
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"Transport(base_url={self._base_url!r}, state={self._state.value})"

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def timeouts(self) -> CallTimeouts:
        return self._timeouts

    @property
    def max_connections(self) -> int:
        return self._max_connections

    @property
    def network(self) -> Network:
        return self._network

    def proxy_for(self, url: str) -> str | None:
        """The proxy a request for ``url`` goes through (None: direct); downloads ask too."""
        return self._network.proxy_for(url)

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared aiohttp session, for the downloader. It carries no credentials."""
        session = self._session
        if session is None or self._state is not _State.OPENED:
            return self._require_open()
        return session

    async def __aenter__(self: _TransportT) -> _TransportT:
        if self._state is _State.OPENED:
            raise RuntimeError("this Transport is already open")
        if self._state is _State.CLOSED:
            raise RuntimeError("this Transport was closed and cannot be reopened")
        # The session binds to the running loop, so it is made here and not in __init__.
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self._timeouts.connect,
            sock_read=self._timeouts.download_read,
        )
        tls: ssl.SSLContext | bool = self._network.ssl_context or True
        self._session = aiohttp.ClientSession(
            connector=_PoolConnector(limit=self._max_connections, ssl=tls),
            headers={"User-Agent": self._user_agent},
            timeout=timeout,
            # An SDK keeps no cookies: nothing from the API host can follow us elsewhere.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._state = _State.OPENED
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session. Idempotent; the transport cannot be used afterwards."""
        session, self._session = self._session, None
        self._state = _State.CLOSED
        if session is not None:
            await session.close()

    def _require_open(self) -> aiohttp.ClientSession:
        if self._state is _State.UNOPENED or self._session is None:
            if self._state is _State.CLOSED:
                raise RuntimeError("this Transport is closed")
            raise RuntimeError("this Transport is not open: use 'async with Transport(...)'")
        return self._session

    async def call(
        self,
        call: ApiCall,
        decode: Callable[[RawResponse], T],
        *,
        safe: bool,
        retry: RetryPolicy | None = None,
    ) -> T:
        """Send ``call``, hand the whole answer to ``decode`` and return what it returns.

        ``safe=True`` retries failures that cannot do harm when repeated; ``safe=False`` retries
        only connect errors. ``retry`` overrides the policy (default :data:`SAFE_CALLS` or
        :data:`CREATE_CONNECT`). The last error is raised when the policy gives up.
        """
        session = self._session
        if session is None or self._state is not _State.OPENED:
            session = self._require_open()
        policy = retry if retry is not None else (SAFE_CALLS if safe else CREATE_CONNECT)
        tracer = requestspans.current()
        span = tracer.start(call.method, call.endpoint) if tracer is not None else None
        started = self._clock()
        # The endpoint's budget: CallTimeouts.total_for, read without a call a request.
        timeouts = self._timeouts
        budget = timeouts.create if call.endpoint == Endpoint.CREATE else timeouts.status
        attempt = 0
        try:
            while True:
                attempt += 1
                total = budget
                # One deadline for the whole call: a late attempt gets only what is left. The
                # first has all of it, so the clock is read again only when that is less.
                if safe and policy.timeout is not None and (attempt > 1 or policy.timeout < total):
                    total = self._time_left(budget, policy.timeout, started)
                raw: RawResponse | None = None
                try:
                    raw = await self._exchange(session, call, total, attempt, safe=safe)
                    answer = decode(raw)
                except SoraError as exc:
                    if not _may_retry(exc, safe=safe):
                        if span is not None:
                            span.attempt(raw.status if raw is not None else None, exc)
                        raise
                    error: SoraError = exc
                else:
                    if span is not None:
                        span.attempt(raw.status, None)
                        span.end(None)
                    return answer
                elapsed = self._clock() - started
                retry_after = error.retry_after if isinstance(error, RateLimitError) else None
                if retry_after is None and raw is not None:
                    retry_after = raw.retry_after  # a 503 may carry one as well
                delay = next_retry_delay(policy, attempt, elapsed=elapsed, retry_after=retry_after)
                if span is not None:
                    span.attempt(raw.status if raw is not None else None, error, retry_in=delay)
                if delay is None:
                    logger.debug(
                        "%s %s %s: giving up after %d attempt(s) in %.3fs: %s",
                        call.method, call.endpoint, call.path, attempt, elapsed, _describe(error),
                    )  # fmt: skip
                    raise error
                logger.debug(
                    "%s %s %s: attempt %d failed (%s), retrying in %.3fs",
                    call.method, call.endpoint, call.path, attempt, _describe(error), delay,
                )  # fmt: skip
                await self._sleep(delay)
        except BaseException as exc:
            if span is not None:  # given up, refused, or cancelled
                span.end(exc)
            raise

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        call: ApiCall,
        total: float,
        attempt: int,
        *,
        safe: bool,
    ) -> RawResponse:
        exchange = _Exchange()
        if not safe:
            exchange.max_idle = 0.0 if call.method in _RESENT_BY_AIOHTTP else self._create_idle
        marking = _CURRENT_EXCHANGE.set(exchange)
        # Timed for the debug log only: a clock read a request is not free at this rate.
        debug = logger.isEnabledFor(logging.DEBUG)
        started = self._clock() if debug else 0.0
        url = self._base_url + call.path
        proxy = self._api_proxy
        try:
            timeout = self._call_timeouts[total]
        except KeyError:
            timeout = self._call_timeout(total)
        try:
            async with session.request(
                call.method,
                url,
                proxy=proxy,
                json=call.json,
                params=call.params,
                headers=self._credentials.headers,
                timeout=timeout,
                # A redirect would turn a POST into a GET; an API answer is handed over as is.
                allow_redirects=False,
            ) as response:
                # A comprehension: dict(zip(map(str.lower, keys), values)) makes fewer calls
                # but took half as long again (multidict's views), measured with timeit.
                lowered = {name.lower(): value for name, value in response.headers.items()}
                length = response.content_length
                if (
                    length is not None
                    and length <= MAX_ANSWER_BYTES
                    and not lowered.get("content-encoding")
                ):
                    # The parser lets through no more than the declared (and checked) size,
                    # so one read to the end is bounded: aiohttp's own coroutine, no frame
                    # of ours around it.
                    body = await response.content.read()
                else:
                    body = await _read_answer(response, call.endpoint)
                # A gateway or a debug endpoint may echo the request headers into its answer,
                # whose text then reaches error messages, the journal and the manifest: the
                # key is masked first (see _Credentials; inline: no frame of ours holds it).
                if self._credentials.mask in body:
                    body = body.replace(self._credentials.mask, b"[redacted]")
                raw = RawResponse(
                    endpoint=call.endpoint, status=response.status, headers=lowered, body=body
                )
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            error = translate_client_error(
                exc,
                call.endpoint,
                connected=exchange.connected,
                total=total,
                connect_timeout=self._timeouts.connect,
            )
        else:
            if debug:
                logger.debug(
                    "%s %s %s -> HTTP %d (attempt %d, %.3fs)",
                    call.method, call.endpoint, call.path, raw.status, attempt,
                    self._clock() - started,
                )  # fmt: skip
            if "keep-alive" in lowered and lowered["keep-alive"] != self._keepalive_hint:
                self._learn_keepalive(lowered["keep-alive"])
            if raw.status == 407 and proxy is not None:
                # Only a proxy answers 407: the request never reached the API, so a create
                # was provably not sent (not an unknown outcome that might have been paid).
                raise ConnectError(
                    "the proxy wants credentials (HTTP 407): put them in the proxy URL "
                    "(http://user:password@host:port); nothing reached the API",
                    endpoint=call.endpoint,
                )
            return raw
        finally:
            _CURRENT_EXCHANGE.reset(marking)
        if debug:
            logger.debug(
                "%s %s %s -> %s (attempt %d, %.3fs)",
                call.method, call.endpoint, call.path, _describe(error), attempt,
                self._clock() - started,
            )  # fmt: skip
        raise error

    def _time_left(self, budget: float, deadline: float, started: float) -> float:
        remaining = deadline - (self._clock() - started)
        return min(budget, max(_MIN_ATTEMPT_SECONDS, remaining))

    def _learn_keepalive(self, hint: str) -> None:
        # "Keep-Alive: timeout=N" is the server saying when it closes an idle connection: a
        # create then rides only a connection answered within half of that (never above the
        # configured bound), so even a server that closes after 1 s cannot catch one in flight.
        self._keepalive_hint = hint
        found = _KEEPALIVE_TIMEOUT.search(hint)
        if found is not None:
            self._create_idle = min(self._create_reuse_idle, float(found.group(1)) / 2)

    def _call_timeout(self, total: float) -> aiohttp.ClientTimeout:
        # One per budget, made once: a call's budget is the endpoint's, or what is left of a
        # retried call's deadline (a few values, bounded below).
        timeout = self._call_timeouts.get(total)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=total, sock_connect=self._timeouts.connect)
            if len(self._call_timeouts) < _KEPT_CALL_TIMEOUTS:
                self._call_timeouts[total] = timeout
        return timeout


class _Credentials:
    """What each API call needs of the key, made once a transport; its repr never shows it.

    ``headers``: the Authorization header, a plain dict (aiohttp copies an exact dict fastest
    into each request's own headers). ``mask``: what an answer's body is searched for, to be
    masked (see Transport._exchange): a short key (a test's "k") would match ordinary text, so
    it is masked only where it follows "Bearer "; a real key is long enough to mask wherever
    it stands.
    """

    __slots__ = ("headers", "mask")

    def __init__(self, api_key: Secret) -> None:
        self.headers = {"Authorization": f"Bearer {api_key.reveal()}"}
        key = api_key.reveal().encode()
        self.mask = key if len(key) >= _MIN_MASKED_KEY else b"Bearer " + key

    def __repr__(self) -> str:
        return "_Credentials('********')"

    __str__ = __repr__
