"""The API key never leaks: not into logs, reprs, results, or any error and its traceback.

A canary key goes through every path the other client tests take (success, refusals, server
errors, lost answers, connect errors, timeouts, failed downloads). Every log record of every
logger at DEBUG, the repr and str of every object handed back, and each error's message,
repr, attributes and full traceback (chained causes and contexts, and the frames' locals as
error reporters capture them) are searched for it.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from helpers import PROVIDERS, client_for, closed_port_url, running_mock

from sora_async import (
    AuthenticationError,
    BadRequestError,
    CallTimeouts,
    ConnectError,
    ConnectionDroppedError,
    CreateOutcomeUnknownError,
    DownloadError,
    InsufficientCreditsError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ReadTimeoutError,
    RetryPolicy,
    ServerError,
    SoraClient,
    SoraError,
    TaskEvent,
    TaskResult,
    ValidationError,
    VideoRequest,
    WaitTimeoutError,
)
from sora_async.eventlog import JsonFormatter
from sora_async.mock import Fault, MockServer

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_backoff_waits")]

CANARY = "sk-CANARY-0123456789"
#: Any recognisable piece of the key counts as a leak, not only the whole of it.
PIECES = (CANARY, "CANARY", "0123456789")
#: Stands for the signature of a signed storage URL.
SIGNATURE = "sig-hush-4242"


def assert_clean(text: str, what: str = "text") -> None:
    for piece in PIECES:
        assert piece not in text, f"{piece!r} leaked into {what}: {text[:2000]}"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of every logger at DEBUG; checked for the key after the test."""
    caplog.set_level(logging.DEBUG)
    for name in ("aiohttp", "aiohttp.access", "aiohttp.client", "aiohttp.server", "sora_async"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog
    # At teardown caplog.records holds only the teardown's records: ask for the test's own.
    records = caplog.get_records("setup") + caplog.get_records("call")
    assert records, "nothing was logged: the capture is not working"
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    as_json = JsonFormatter()  # the CLI's --log-format json: task events' fields included
    for record in records:
        assert_clean(formatter.format(record), f"the log record of {record.name}")
        assert_clean(as_json.format(record), f"the JSON log line of {record.name}")
        assert_clean(repr(record.args), f"the log arguments of {record.name}")


def chain(exc: BaseException) -> list[BaseException]:
    """The error and every cause and context behind it."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return seen


def assert_error_clean(exc: BaseException) -> None:
    assert_clean(str(exc), "the message")
    assert_clean(repr(exc), "the repr")
    assert_clean("".join(traceback.format_exception(exc)), "the traceback")
    # What error reporters (Sentry, rich, pytest --showlocals) capture: every frame's locals.
    with_locals = traceback.TracebackException.from_exception(exc, capture_locals=True)
    assert_clean("".join(with_locals.format()), "the traceback with locals")
    for link in chain(exc):
        assert_clean(repr(link.args), "the error's args")
        for name, value in vars(link).items():
            assert_clean(repr(value), f"{type(link).__name__}.{name}")


def canary_client(mock: MockServer | None, provider: str, **options: Any) -> SoraClient:
    if mock is None:
        return SoraClient(provider, CANARY, base_url=closed_port_url(), **options)
    return client_for(mock, provider, key=CANARY, **options)


async def raised(action: Callable[[], Awaitable[object]], kind: type[SoraError]) -> SoraError:
    with pytest.raises(kind) as caught:
        await action()
    return caught.value


# -- objects handed back -------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_key_is_in_no_object_handed_back(
    provider: str, logs: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    async with running_mock() as mock:
        client = canary_client(mock, provider)
        shown: list[object] = [client, client.settings, client.settings.api_key, client.governor]
        async with client:
            request = VideoRequest("a kite", image="https://images.example.com/kite.png")
            task_id = await client.create(request)
            status = await client.status(task_id)
            result = await client.wait(task_id)
            paths = await client.download(result, tmp_path)
            failed = await client.generate(VideoRequest("a storm [fail]"))
            shown += [client, request, task_id, status, status.raw, result, result.status, paths]
            shown += [failed, failed.status, client.unfinished_tasks]
            if provider == "freesora":
                shown.append(await client.credits())
        shown.append(client)
    assert result.ok and not failed.ok
    # The key did reach the server (so there was something to leak).
    assert mock.counters.unauthorized == 0 and mock.tasks(CANARY)
    for item in shown:
        assert_clean(repr(item), f"repr of {type(item).__name__}")
        assert_clean(str(item), f"str of {type(item).__name__}")
    assert_clean(repr(attrs.asdict(client.settings)), "the settings as a dict")
    # The logs were really captured at DEBUG, from the SDK and from aiohttp.
    names = {record.name for record in logs.records if record.levelno == logging.DEBUG}
    assert "sora_async.transport" in names
    assert any(record.name.startswith("aiohttp") for record in logs.records)


async def test_a_key_from_the_environment_is_hidden_too(logs: pytest.LogCaptureFixture) -> None:
    async with running_mock() as mock:
        env = {"SORA_API_KEY": CANARY, "SORA_BASE_URL": mock.url_for("sora2api")}
        client = SoraClient("sora2api", env=env, poll_interval=0.2, expected_duration=0.5)
        async with client:
            result = await client.generate(VideoRequest("a kite"))
        assert result.ok and mock.tasks(CANARY)
        for item in (client, client.settings, result):
            assert_clean(repr(item))
            assert_clean(str(item))
        # The account name for a shared governor is derived from the key, never the key.
        assert_clean(client.settings.account, "the account name")


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_authentication_errors_hide_the_key(
    provider: str, logs: pytest.LogCaptureFixture
) -> None:
    async with running_mock(api_keys={"sk-the-only-known-key"}) as mock:
        async with canary_client(mock, provider) as client:
            errors = [
                await raised(lambda: client.create(VideoRequest("a kite")), AuthenticationError),
                await raised(lambda: client.status("task_0a1b2c3d4e5f"), AuthenticationError),
            ]
            if provider == "freesora":
                errors.append(await raised(client.credits, AuthenticationError))
        assert mock.counters.unauthorized == len(errors)
    for exc in errors:
        assert_error_clean(exc)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("fault", "options", "kind"),
    [
        (Fault.HTTP_ERROR, {"status": 400}, BadRequestError),
        (Fault.HTTP_ERROR, {"status": 402}, InsufficientCreditsError),
        (Fault.ENVELOPE_ERROR, {"code": 401}, AuthenticationError),
        (Fault.SERVER_ERROR, {}, CreateOutcomeUnknownError),
        (Fault.ENVELOPE_ERROR, {"code": 503}, CreateOutcomeUnknownError),
        (Fault.MALFORMED, {}, CreateOutcomeUnknownError),
        (Fault.CREATED_THEN_500, {}, CreateOutcomeUnknownError),
        (Fault.CREATED_THEN_DROP, {}, CreateOutcomeUnknownError),
    ],
)
async def test_create_errors_hide_the_key(
    provider: str,
    fault: Fault,
    options: dict[str, Any],
    kind: type[SoraError],
    logs: pytest.LogCaptureFixture,
) -> None:
    async with running_mock() as mock, canary_client(mock, provider) as client:
        mock.inject("create", fault, **options)
        exc = await raised(lambda: client.create(VideoRequest("a kite")), kind)
        assert mock.pending_faults() == 0
    assert_error_clean(exc)
    if isinstance(exc, CreateOutcomeUnknownError):
        assert exc.__cause__ is not None  # the chain is checked, not only the outer error


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_status_errors_hide_the_key(provider: str, logs: pytest.LogCaptureFixture) -> None:
    async with running_mock() as mock, canary_client(mock, provider) as client:
        mock.inject("status", Fault.HTTP_ERROR, status=429, retry_after=0.01, times=6)
        errors = [
            await raised(lambda: client.status("task_0a1b2c3d4e5f"), RateLimitError),
            await raised(lambda: client.status("task_0a1b2c3d4e5f"), NotFoundError),
        ]
        task_id = await client.create(VideoRequest("a long kite"))
        mock.inject("status", Fault.RATE_LIMIT, retry_after=0.01, times=50)
        # Long enough for the client's follower to have seen a poll fail (its cause).
        errors.append(await raised(lambda: client.wait(task_id, timeout=1.5), WaitTimeoutError))
    for exc in errors:
        assert_error_clean(exc)
    assert errors[-1].__cause__ is not None


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_connect_errors_hide_the_key(provider: str, logs: pytest.LogCaptureFixture) -> None:
    async with canary_client(None, provider) as client:
        exc = await raised(lambda: client.create(VideoRequest("a kite")), ConnectError)
    assert_error_clean(exc)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_download_errors_hide_the_key(
    provider: str, logs: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    async with running_mock() as mock, canary_client(mock, provider) as client:
        result = await client.generate(VideoRequest("a kite"))
        mock.inject("download", Fault.HTTP_ERROR, status=404)
        missing = await raised(lambda: client.download(result, tmp_path), DownloadError)
        failed = await client.generate(VideoRequest("a storm [fail]"))
        nothing = await raised(lambda: client.download(failed, tmp_path), DownloadError)
        signed = TaskResult(
            task_id="task_x",
            request=None,
            state=result.state,
            video_urls=[f"ftp://user:{SIGNATURE}@files.example.com/x.mp4?sig={SIGNATURE}"],
        )
        refused = await raised(lambda: client.download(signed, tmp_path), DownloadError)
    for exc in (missing, nothing, refused):
        assert_error_clean(exc)
    # A result URL's credentials and signature are not shown either.
    assert SIGNATURE not in "".join(traceback.format_exception(refused))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_validation_errors_hide_the_key(
    provider: str, logs: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    async with running_mock() as mock, canary_client(mock, provider) as client:
        bad = VideoRequest("a kite", image=str(tmp_path / "missing.png"))
        exc = await raised(lambda: client.create(bad), ValidationError)
        assert mock.counters.requests == {}
    assert_error_clean(exc)


# -- every error kind, by status and by envelope (added with the reliability work) ----------

NO_RETRY = RetryPolicy(attempts=1, initial=0.0, maximum=0.0, timeout=None)

STATUS_ERRORS: list[tuple[Fault, dict[str, Any], type[SoraError]]] = [
    *((Fault.HTTP_ERROR, {"status": s}, SoraError) for s in (400, 401, 402, 403, 404, 408, 409)),
    *((Fault.HTTP_ERROR, {"status": s}, SoraError) for s in (422, 429, 500, 502, 503, 504)),
    *((Fault.ENVELOPE_ERROR, {"code": c}, SoraError) for c in (400, 401, 402, 404, 429, 500, 1)),
    (Fault.SERVER_ERROR, {}, ServerError),
    (Fault.MALFORMED, {}, ProtocolError),
    (Fault.DROP, {"times": 2}, ConnectionDroppedError),
]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_every_status_error_kind_hides_the_key(
    provider: str, logs: pytest.LogCaptureFixture
) -> None:
    errors: list[SoraError] = []
    async with running_mock() as mock:
        # Made by a client that is gone, so that no poller of the client under test takes a
        # fault meant for client.status (one did, on a loaded machine).
        async with canary_client(mock, provider) as creator:
            task_id = await creator.create(VideoRequest("a kite"))
        async with canary_client(mock, provider, retry=NO_RETRY) as client:
            for fault, options, kind in STATUS_ERRORS:
                mock.inject("status", fault, retry_after=0.01, **options)
                errors.append(await raised(lambda: client.status(task_id), kind))
                mock.clear_faults()
        assert mock.counters.faults_fired >= len(STATUS_ERRORS)
    assert {type(e) for e in errors} >= {ServerError, ProtocolError, RateLimitError}
    for exc in errors:
        assert_error_clean(exc)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_timeouts_hide_the_key(provider: str, logs: pytest.LogCaptureFixture) -> None:
    timeouts = CallTimeouts(create=0.2, status=0.2)
    async with (
        running_mock(slow_delay=2.0) as mock,
        canary_client(mock, provider, retry=NO_RETRY, timeouts=timeouts) as client,
    ):
        task_id = await client.create(VideoRequest("a kite"))
        mock.inject("status", Fault.SLOW)
        late_poll = await raised(lambda: client.status(task_id), ReadTimeoutError)
        mock.inject("create", Fault.SLOW)
        late_create = await raised(
            lambda: client.create(VideoRequest("a slow kite")), CreateOutcomeUnknownError
        )
    for exc in (late_poll, late_create):
        assert_error_clean(exc)
    assert isinstance(late_create.__cause__, ReadTimeoutError)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_faulty_fan_out_hides_the_key(
    provider: str, logs: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """generate_many through every fault: results, events and their errors stay clean."""
    events: list[TaskEvent] = []
    retry = RetryPolicy(attempts=3, initial=0.01, maximum=0.02, timeout=5.0)
    async with running_mock(cap=2, cap_retry_after=0.01) as mock:
        async with canary_client(mock, provider, retry=retry, max_concurrent_tasks=2) as client:
            mock.inject("create", Fault.RATE_LIMIT, retry_after=0.01, times=2)
            mock.inject("create", Fault.CREATED_THEN_500)
            for fault in (Fault.SERVER_ERROR, Fault.DROP, Fault.MALFORMED, Fault.RATE_LIMIT):
                mock.inject("status", fault, retry_after=0.01)
            mock.inject("download", Fault.HTTP_ERROR, status=500, times=3)
            prompts = [VideoRequest(f"kite {i}" + (" [fail]" if i == 3 else "")) for i in range(5)]
            results = [
                result
                async for result in client.generate_many(
                    prompts, on_event=events.append, download_to=tmp_path
                )
            ]
        shown: list[object] = [client, *results, *events]
    assert len(results) == 5 and mock.counters.faults_fired >= 8
    assert any(isinstance(r.exception, CreateOutcomeUnknownError) for r in results)
    assert any(r.state == "failed" and r.task_id for r in results)
    # The task events were logged as records too (checked by the fixture, text and JSON).
    logged = {getattr(r, "sora_event", {}).get("event") for r in logs.records}
    assert {"created", "rate_limited", "failed", "succeeded"} <= logged, logged
    for item in shown:
        assert_clean(repr(item), f"repr of {type(item).__name__}")
        assert_clean(str(item), f"str of {type(item).__name__}")
    for item in [*results, *events]:
        for exc in (getattr(item, "exception", None), getattr(item, "error", None)):
            if isinstance(exc, BaseException):
                assert_error_clean(exc)
    assert_files_clean(tmp_path)


def assert_files_clean(folder: Path) -> None:
    """Every file written (videos, partial files) is free of the key too."""
    for path in folder.rglob("*"):
        if path.is_file():
            assert_clean(path.read_bytes().decode("latin-1"), f"the file {path.name}")
