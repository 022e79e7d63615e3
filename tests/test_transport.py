"""The transport over real HTTP on 127.0.0.1: error translation, retries, secrecy, lifecycle."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import traceback
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from sora_async.calls import ApiCall, Endpoint, RawResponse
from sora_async.config import Secret
from sora_async.errors import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    ConnectionDroppedError,
    ProtocolError,
    RateLimitError,
    ReadTimeoutError,
    ServerError,
    SoraError,
)
from sora_async.mock import Fault, MockConfig, MockServer
from sora_async.providers.base import error_for_status
from sora_async.retry import RetryPolicy
from sora_async.transport import (
    DEFAULT_USER_AGENT,
    CallTimeouts,
    Transport,
    translate_client_error,
)

pytestmark = pytest.mark.anyio

CANARY = "sk-CANARY-7f3a9e1c5b"
CREDITS = ApiCall(Endpoint.CREDITS, "POST", "/get-user-credits", json={})
CREATE = ApiCall(Endpoint.CREATE, "POST", "/v1/video/sora-video", json={"prompt": "a kite"})
NO_RETRY = RetryPolicy(attempts=1)


def decode_json(raw: RawResponse) -> dict[str, Any]:
    """A stand-in for a provider decoder: HTTP status first, then JSON or ProtocolError."""
    if raw.status >= 400:
        raise error_for_status(
            raw.status,
            f"HTTP {raw.status}",
            endpoint=raw.endpoint,
            http_status=raw.status,
            retry_after=raw.retry_after,
        )
    try:
        value = json.loads(raw.body)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ProtocolError("not a JSON object", endpoint=raw.endpoint)
    return value


class Sleeps:
    """Records the waits the transport asks for, and never really sleeps."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    async with MockServer(MockConfig(task_seconds=0, api_keys={CANARY})) as server:
        yield server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def all_text_of(error: BaseException) -> str:
    """Everything a user could see of an error: str, repr, the whole printed chain."""
    parts = [str(error), repr(error), *traceback.format_exception(error)]
    seen: BaseException | None = error
    while seen is not None:
        parts += [str(seen), repr(seen), repr(vars(seen))]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def assert_no_canary(error: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    assert CANARY not in all_text_of(error)
    for record in caplog.records:
        assert CANARY not in record.getMessage()
        assert CANARY not in repr(record.args)


# -- success path and what is sent -------------------------------------------------------


async def test_call_sends_the_key_and_hands_the_whole_answer_to_decode(mock: MockServer) -> None:
    seen: list[RawResponse] = []

    def decode(raw: RawResponse) -> dict[str, Any]:
        seen.append(raw)
        return decode_json(raw)

    async with Transport(mock.freesora_url, Secret(CANARY)) as transport:
        answer = await transport.call(CREDITS, decode, safe=True)
    # The mock only knows the canary key: a valid answer proves the header was sent.
    assert answer["data"]["left_credits"] > 0
    (raw,) = seen
    assert raw.status == 200 and raw.endpoint == Endpoint.CREDITS
    assert json.loads(raw.body) == answer
    assert raw.headers["content-type"].startswith("application/json")
    assert all(name == name.lower() for name in raw.headers)


async def test_what_the_transport_keeps_of_the_key_never_shows_it(mock: MockServer) -> None:
    # The header and the mask are made once a transport: what a debugger, an error reporter
    # or a careless log of the object's attributes shows of them is masked.
    async with Transport(mock.freesora_url, Secret(CANARY)) as transport:
        await transport.call(CREDITS, decode_json, safe=True)
        kept = vars(transport)
        shown = [repr(kept), str(kept), *(repr(value) for value in kept.values())]
        shown += [str(value) for value in kept.values()]
    for text in shown:
        assert CANARY not in text


async def test_wrong_key_is_an_authentication_error_raised_at_once(
    mock: MockServer, sleeps: Sleeps
) -> None:
    async with Transport(mock.freesora_url, Secret("sk-wrong"), sleep=sleeps) as transport:
        with pytest.raises(AuthenticationError):
            await transport.call(CREDITS, decode_json, safe=True)
    assert mock.counters.requests[Endpoint.CREDITS] == 1
    assert sleeps.delays == []


async def test_the_session_carries_no_credentials_and_our_user_agent(mock: MockServer) -> None:
    async with Transport(mock.freesora_url, Secret(CANARY)) as transport:
        assert "Authorization" not in transport.session.headers
        assert transport.session.headers["User-Agent"] == DEFAULT_USER_AGENT
        assert DEFAULT_USER_AGENT.startswith("sora-async/")


async def test_what_goes_on_the_wire(sleeps: Sleeps) -> None:
    seen: list[tuple[str, str, dict[str, str], dict[str, str], bytes]] = []

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((request.method, request.path, dict(request.query), dict(request.headers),
                     body))  # fmt: skip
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    async with TestServer(app, host="127.0.0.1") as server:
        base = str(server.make_url("/api/v1/sora2")) + "/"  # a trailing slash is tolerated
        async with Transport(base, Secret(CANARY), user_agent="test-agent/1") as transport:
            status = ApiCall(Endpoint.STATUS, "GET", "/record-info", params={"taskId": "t 1"})
            create = ApiCall(Endpoint.CREATE, "POST", "/generate", json={"prompt": "p"})
            await transport.call(status, decode_json, safe=True)
            await transport.call(create, decode_json, safe=False)
    (get_method, get_path, get_query, get_headers, get_body), post = seen
    assert (get_method, get_path, get_query, get_body) == (
        "GET", "/api/v1/sora2/record-info", {"taskId": "t 1"}, b""
    )  # fmt: skip
    assert get_headers["Authorization"] == f"Bearer {CANARY}"
    assert get_headers["User-Agent"] == "test-agent/1"
    assert post[0:2] == ("POST", "/api/v1/sora2/generate")
    assert json.loads(post[4]) == {"prompt": "p"}
    assert post[3]["Content-Type"] == "application/json"
    assert post[3]["Authorization"] == f"Bearer {CANARY}"


# -- error translation -------------------------------------------------------------------


async def test_connection_refused_is_a_connect_error(
    sleeps: Sleeps, debug_logs: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/api"
    async with Transport(url, Secret(CANARY), sleep=sleeps) as transport:
        with pytest.raises(ConnectError) as caught:
            await transport.call(CREDITS, decode_json, safe=True, retry=NO_RETRY)
    assert caught.value.endpoint == Endpoint.CREDITS
    assert "127.0.0.1" in str(caught.value)
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    assert_no_canary(caught.value, debug_logs)


async def test_dropped_connection_is_connection_dropped(
    mock: MockServer, debug_logs: pytest.LogCaptureFixture
) -> None:
    mock.inject(Endpoint.CREDITS, Fault.DROP)
    async with Transport(mock.freesora_url, Secret(CANARY)) as transport:
        with pytest.raises(ConnectionDroppedError) as caught:
            await transport.call(CREDITS, decode_json, safe=True, retry=NO_RETRY)
    assert caught.value.__context__ is None
    assert_no_canary(caught.value, debug_logs)


async def test_malformed_body_is_a_protocol_error(mock: MockServer) -> None:
    mock.inject(Endpoint.CREDITS, Fault.MALFORMED)
    async with Transport(mock.freesora_url, Secret(CANARY)) as transport:
        with pytest.raises(ProtocolError):
            await transport.call(CREDITS, decode_json, safe=True, retry=NO_RETRY)


async def test_server_error_and_rate_limit_reach_decode(mock: MockServer) -> None:
    mock.inject(Endpoint.CREDITS, Fault.SERVER_ERROR)
    mock.inject(Endpoint.CREDITS, Fault.RATE_LIMIT, retry_after=7)
    async with Transport(mock.freesora_url, Secret(CANARY)) as transport:
        with pytest.raises(ServerError):
            await transport.call(CREDITS, decode_json, safe=True, retry=NO_RETRY)
        with pytest.raises(RateLimitError) as caught:
            await transport.call(CREDITS, decode_json, safe=True, retry=NO_RETRY)
    assert caught.value.retry_after == 7.0


async def test_answer_slower_than_the_timeout_is_a_read_timeout(
    mock: MockServer, debug_logs: pytest.LogCaptureFixture
) -> None:
    mock.inject(Endpoint.CREDITS, Fault.SLOW, delay=30)
    timeouts = CallTimeouts(status=0.2)
    async with Transport(mock.freesora_url, Secret(CANARY), timeouts=timeouts) as transport:
        with pytest.raises(ReadTimeoutError) as caught:
            await transport.call(CREDITS, decode_json, safe=True, retry=NO_RETRY)
    assert "0.2s" in str(caught.value)
    assert_no_canary(caught.value, debug_logs)


async def test_timeout_while_waiting_for_a_pooled_connection_is_a_connect_error(
    mock: MockServer,
) -> None:
    """With one connection busy, a call that never got one provably sent nothing."""
    mock.inject(Endpoint.CREDITS, Fault.SLOW, delay=30)
    timeouts = CallTimeouts(status=0.2)
    async with (
        Transport(
            mock.freesora_url, Secret(CANARY), max_connections=1, timeouts=timeouts
        ) as transport,
        anyio.create_task_group() as group,
    ):

        async def hold_the_connection() -> None:
            # The pooled session itself (downloads use it too), with a long timeout.
            async with transport.session.post(
                mock.freesora_url + CREDITS.path,
                json={},
                headers={"Authorization": f"Bearer {CANARY}"},
                timeout=aiohttp.ClientTimeout(total=60),
            ) as response:
                await response.read()

        group.start_soon(hold_the_connection)
        # The mock's counter is the only sign that the slow request holds the connection.
        while mock.counters.requests[Endpoint.CREDITS] == 0:  # noqa: ASYNC110
            await anyio.sleep(0.01)
        with pytest.raises(ConnectError, match="nothing was sent"):
            await transport.call(CREDITS, decode_json, safe=True, retry=NO_RETRY)
        group.cancel_scope.cancel()
    assert mock.counters.requests[Endpoint.CREDITS] == 1


async def test_a_malformed_http_answer_is_a_protocol_error() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"this is not HTTP at all\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Transport(f"http://127.0.0.1:{port}/api", Secret(CANARY)) as transport:
            with pytest.raises(ProtocolError) as caught:
                await transport.call(CREDITS, decode_json, safe=True, retry=NO_RETRY)
    finally:
        server.close()
        await server.wait_closed()
    assert caught.value.__context__ is None
    assert CANARY not in all_text_of(caught.value)


def _request_info() -> aiohttp.RequestInfo:
    headers = CIMultiDictProxy(CIMultiDict({"Authorization": f"Bearer {CANARY}"}))
    url = URL("http://127.0.0.1/api/get-user-credits?sig=secret")
    return aiohttp.RequestInfo(url, "POST", headers, url)


@pytest.mark.parametrize(
    ("exc", "connected", "expected"),
    [
        (aiohttp.ConnectionTimeoutError("Connection timeout to host http://x/?sig=1"), True,
         ConnectError),
        (asyncio.TimeoutError(), False, ConnectError),
        (asyncio.TimeoutError(), True, ReadTimeoutError),
        (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), True,
         ReadTimeoutError),
        (aiohttp.ServerDisconnectedError(), True, ConnectionDroppedError),
        (aiohttp.ClientPayloadError("Response payload is not completed"), True,
         ConnectionDroppedError),
        (aiohttp.ClientConnectionResetError("Connection reset"), True, ConnectionDroppedError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), True, ConnectionDroppedError),
        (aiohttp.ClientConnectionError("Connection closed"), True, ConnectionDroppedError),
        (aiohttp.ClientResponseError(_request_info(), (), status=400, message="Bad status"),
         True, ProtocolError),
        (aiohttp.InvalidURL("http://[bad"), False, ConfigurationError),
    ],
)  # fmt: skip
def test_translation_table(exc: BaseException, connected: bool, expected: type[SoraError]) -> None:
    error = translate_client_error(exc, Endpoint.STATUS, connected=connected, total=30.0)
    assert type(error) is expected
    assert str(error).startswith("status") or isinstance(error, ConfigurationError)
    assert CANARY not in all_text_of(error)
    assert "sig=" not in str(error)


# -- retries of safe calls -----------------------------------------------------------------


async def test_safe_call_succeeds_after_every_kind_of_transient_fault(
    mock: MockServer, sleeps: Sleeps, debug_logs: pytest.LogCaptureFixture
) -> None:
    for fault in (Fault.DROP, Fault.MALFORMED, Fault.SERVER_ERROR, Fault.RATE_LIMIT):
        mock.inject(Endpoint.CREDITS, fault, retry_after=0.25)
    async with Transport(mock.freesora_url, Secret(CANARY), sleep=sleeps) as transport:
        answer = await transport.call(CREDITS, decode_json, safe=True)
    assert answer["data"]["left_credits"] > 0
    assert mock.counters.requests[Endpoint.CREDITS] == 5
    assert len(sleeps.delays) == 4
    assert 0.25 <= sleeps.delays[3] <= 0.25 + 0.5  # Retry-After, plus a little spread
    messages = [record.getMessage() for record in debug_logs.records]
    assert any(
        "POST credits /get-user-credits -> HTTP 200 (attempt 5," in message for message in messages
    )
    assert any("attempt 4 failed (RateLimitError (HTTP 429)), retrying in" in m for m in messages)
    for record in debug_logs.records:
        assert CANARY not in record.getMessage()


async def test_safe_call_honours_retry_after_of_a_503(sleeps: Sleeps) -> None:
    # The mock sends Retry-After only with 429, so a two-line server plays the gateway.
    answers = [
        web.Response(status=503, headers={"Retry-After": "4"}),
        web.json_response({"code": 0, "data": {}}),
    ]

    async def handler(request: web.Request) -> web.Response:
        return answers.pop(0)

    app = web.Application()
    app.router.add_post("/api/get-user-credits", handler)
    async with TestServer(app, host="127.0.0.1") as server:
        base = str(server.make_url("/api"))
        async with Transport(base, Secret(CANARY), sleep=sleeps) as transport:
            await transport.call(CREDITS, decode_json, safe=True)
    (delay,) = sleeps.delays
    assert 4.0 <= delay <= 4.5


async def test_safe_call_raises_the_last_error_when_attempts_run_out(
    mock: MockServer, sleeps: Sleeps
) -> None:
    mock.inject(Endpoint.CREDITS, Fault.SERVER_ERROR, times=10)
    policy = RetryPolicy(attempts=3, initial=0.1, maximum=1.0)
    async with Transport(mock.freesora_url, Secret(CANARY), sleep=sleeps) as transport:
        with pytest.raises(ServerError):
            await transport.call(CREDITS, decode_json, safe=True, retry=policy)
    assert mock.counters.requests[Endpoint.CREDITS] == 3
    assert len(sleeps.delays) == 2


async def test_safe_call_stops_at_the_deadline(mock: MockServer) -> None:
    """A fake clock that each wait moves forward: the deadline ends the loop, not attempts."""
    now = [0.0]

    async def sleep(delay: float) -> None:
        now[0] += delay

    mock.inject(Endpoint.CREDITS, Fault.RATE_LIMIT, retry_after=20, times=10)
    policy = RetryPolicy(attempts=100, timeout=60.0)
    transport = Transport(mock.freesora_url, Secret(CANARY), sleep=sleep, clock=lambda: now[0])
    async with transport:
        with pytest.raises(RateLimitError):
            await transport.call(CREDITS, decode_json, safe=True, retry=policy)
    # Waits of 20 s (+ spread) at 0, ~20, ~40: a third would end past the 60 s deadline.
    assert mock.counters.requests[Endpoint.CREDITS] == 3


async def test_client_errors_are_never_retried(mock: MockServer, sleeps: Sleeps) -> None:
    mock.inject(Endpoint.CREDITS, Fault.HTTP_ERROR, status=400)
    mock.inject(Endpoint.CREDITS, Fault.HTTP_ERROR, status=402)
    mock.inject(Endpoint.CREDITS, Fault.HTTP_ERROR, status=404)
    async with Transport(mock.freesora_url, Secret(CANARY), sleep=sleeps) as transport:
        for _ in range(3):
            with pytest.raises(SoraError) as caught:
                await transport.call(CREDITS, decode_json, safe=True)
            assert not isinstance(caught.value, (ServerError, RateLimitError))
    assert mock.counters.requests[Endpoint.CREDITS] == 3
    assert sleeps.delays == []


# -- unsafe calls (create) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.DROP, ConnectionDroppedError),
        (Fault.CREATED_THEN_DROP, ConnectionDroppedError),
        (Fault.SERVER_ERROR, ServerError),
        (Fault.CREATED_THEN_500, ServerError),
        (Fault.RATE_LIMIT, RateLimitError),
        (Fault.MALFORMED, ProtocolError),
    ],
)
async def test_unsafe_call_is_never_resent(
    mock: MockServer,
    sleeps: Sleeps,
    fault: Fault,
    expected: type[SoraError],
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    mock.inject(Endpoint.CREATE, fault, times=5)
    async with Transport(mock.freesora_url, Secret(CANARY), sleep=sleeps) as transport:
        with pytest.raises(expected) as caught:
            await transport.call(CREATE, decode_json, safe=False)
    assert mock.counters.requests[Endpoint.CREATE] == 1
    assert sleeps.delays == []
    assert_no_canary(caught.value, debug_logs)


async def test_unsafe_call_times_out_once(mock: MockServer, sleeps: Sleeps) -> None:
    mock.inject(Endpoint.CREATE, Fault.SLOW, delay=30)
    timeouts = CallTimeouts(create=0.2)
    transport = Transport(mock.freesora_url, Secret(CANARY), sleep=sleeps, timeouts=timeouts)
    async with transport:
        # A connection answered just now, which the create reuses: its 0.2 s can only run out
        # while it waits for the answer. (On a new connection a loop stalled past 0.2 s, as on
        # a machine at load 13, times the connect out instead, which is retried: never sent.)
        await transport.call(CREDITS, decode_json, safe=True)
        with pytest.raises(ReadTimeoutError):
            await transport.call(CREATE, decode_json, safe=False)
    assert mock.counters.requests[Endpoint.CREATE] == 1
    assert sleeps.delays == []


async def test_unsafe_call_is_retried_after_a_refused_connection() -> None:
    """Nothing listens at first; the server comes up during the backoff and gets one create."""
    port = closed_port()
    started: list[MockServer] = []

    async def start_server_then_wait(delay: float) -> None:
        if not started:
            server = MockServer(MockConfig(task_seconds=0), port=port)
            await server.start()
            started.append(server)

    try:
        url = f"http://127.0.0.1:{port}/api"
        async with Transport(url, Secret(CANARY), sleep=start_server_then_wait) as transport:
            await transport.call(CREDITS, decode_json, safe=False)
        assert started[0].counters.requests[Endpoint.CREDITS] == 1
    finally:
        for server in started:
            await server.close()


async def test_unsafe_call_gives_up_on_connect_errors_per_policy(sleeps: Sleeps) -> None:
    url = f"http://127.0.0.1:{closed_port()}/api"
    async with Transport(url, Secret(CANARY), sleep=sleeps) as transport:
        with pytest.raises(ConnectError):
            await transport.call(CREATE, decode_json, safe=False)
    assert len(sleeps.delays) == 2  # CREATE_CONNECT: three tries


# -- the key stays secret ----------------------------------------------------------------


async def test_key_never_appears_in_errors_or_debug_logs(
    mock: MockServer, sleeps: Sleeps, debug_logs: pytest.LogCaptureFixture
) -> None:
    errors: list[BaseException] = []
    timeouts = CallTimeouts(status=0.2)
    for fault in (Fault.DROP, Fault.MALFORMED, Fault.SERVER_ERROR, Fault.RATE_LIMIT, Fault.SLOW):
        mock.inject(Endpoint.CREDITS, fault, delay=30)
    transport = Transport(mock.freesora_url, Secret(CANARY), sleep=sleeps, timeouts=timeouts)
    async with transport:
        for _ in range(5):
            try:
                await transport.call(CREDITS, decode_json, safe=True, retry=NO_RETRY)
            except SoraError as caught:
                errors.append(caught)
        assert CANARY not in repr(transport)
    assert len(errors) == 5
    for error in errors:
        assert_no_canary(error, debug_logs)
    assert debug_logs.records  # the DEBUG output was really captured


# -- lifecycle -----------------------------------------------------------------------------


async def test_use_before_open_and_after_close_is_refused(mock: MockServer) -> None:
    transport = Transport(mock.freesora_url, Secret(CANARY))
    with pytest.raises(RuntimeError, match="not open"):
        await transport.call(CREDITS, decode_json, safe=True)
    with pytest.raises(RuntimeError, match="not open"):
        _ = transport.session
    async with transport:
        with pytest.raises(RuntimeError, match="already open"):
            await transport.__aenter__()
        session = transport.session
    assert transport.closed and session.closed
    with pytest.raises(RuntimeError, match="closed"):
        await transport.call(CREDITS, decode_json, safe=True)
    with pytest.raises(RuntimeError, match="cannot be reopened"):
        await transport.__aenter__()
    await transport.aclose()  # idempotent


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        Transport("ftp://example.com", Secret(CANARY))
    with pytest.raises(ConfigurationError):
        Transport("http://example.com", Secret(CANARY), max_connections=0)
    with pytest.raises(TypeError):
        Transport("http://example.com", CANARY)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CallTimeouts(connect=0)


def test_call_timeouts_are_fitted_to_each_call() -> None:
    timeouts = CallTimeouts()
    assert timeouts.total_for(Endpoint.CREATE) == 60.0
    assert timeouts.total_for(Endpoint.STATUS) == 30.0
    assert timeouts.total_for(Endpoint.CREDITS) == 30.0
    assert (timeouts.connect, timeouts.download_read) == (10.0, 60.0)


async def test_max_connections_bounds_simultaneous_requests(mock: MockServer) -> None:
    transport = Transport(mock.freesora_url, Secret(CANARY), max_connections=3)
    async with transport:
        connector = transport.session.connector
        assert connector is not None and connector.limit == 3


async def test_an_answer_that_echoes_the_key_is_masked_before_decoding() -> None:
    # A gateway or debug endpoint that echoes request headers must not put the key into our
    # error texts (which reach logs, the journal and the manifest).
    async def echo_headers(request: web.Request) -> web.Response:
        echoed = {"code": 400, "msg": f"bad request; headers: {dict(request.headers)}"}
        return web.json_response(echoed, status=400)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo_headers)
    seen: list[bytes] = []

    def decode(raw: RawResponse) -> dict[str, Any]:
        seen.append(raw.body)
        return decode_json(raw)

    async with (
        TestServer(app, host="127.0.0.1") as server,
        Transport(str(server.make_url("/api")), Secret(CANARY)) as transport,
    ):
        with pytest.raises(APIError):
            await transport.call(CREDITS, decode, safe=True, retry=NO_RETRY)
    [body] = seen
    assert b"Bearer [redacted]" in body
    assert CANARY.encode() not in body
