"""Every API error kind, reached through the HTTP status and through the envelope code.

The mock answers with an injected fault (``Fault.HTTP_ERROR`` with ``status=``, or an HTTP 200
whose envelope carries ``code=``) or for real (a restricted key set, an empty balance, the
account cap). A refused create gives its account slot back; a create whose outcome is unknown
keeps it; a 429 is waited out and the create is sent again, and made exactly once.
"""

from __future__ import annotations

import pytest
from helpers import KEY, PROVIDERS, client_for, created_elsewhere, running_mock, wait_until

from sora_async import (
    APIError,
    AuthenticationError,
    BadRequestError,
    CreateOutcomeUnknownError,
    InsufficientCreditsError,
    LocalGovernor,
    NotFoundError,
    RateLimitError,
    ServerError,
    SoraClient,
    VideoRequest,
)
from sora_async.mock import Fault, MockServer

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_backoff_waits")]

ROUTES = ("http", "envelope")
#: Refusals: the create did not happen, so it is neither retried nor counted against the cap.
REFUSALS = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (402, InsufficientCreditsError),
    (403, AuthenticationError),
    (404, NotFoundError),
]
SUCCESS_CODE = {"freesora": 0, "sora2api": 200}


def inject(mock: MockServer, endpoint: str, route: str, number: int, *, times: int = 1) -> None:
    """Make the next ``times`` answers of ``endpoint`` an error ``number`` by ``route``."""
    if route == "http":
        mock.inject(endpoint, Fault.HTTP_ERROR, status=number, times=times)
    else:
        mock.inject(endpoint, Fault.ENVELOPE_ERROR, code=number, times=times)


def check_route(exc: APIError, route: str, number: int, endpoint: str) -> None:
    assert exc.endpoint == endpoint
    if route == "http":
        assert exc.http_status == number
    else:
        # An HTTP 200 is still an error when the envelope says so.
        assert (exc.http_status, exc.code) == (200, number)


def assert_no_slot_held(client: SoraClient) -> None:
    stats = client.governor.statistics()
    assert (stats.held, stats.live, stats.waiting) == (0, 0, 0), stats


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("number", "error"), REFUSALS)
async def test_a_refused_create_raises_its_class_and_frees_the_slot(
    provider: str, route: str, number: int, error: type[APIError]
) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        inject(mock, "create", route, number)
        request = VideoRequest("a refused kite")
        with pytest.raises(error) as caught:
            await client.create(request)
        assert type(caught.value) is error
        check_route(caught.value, route, number, "create")
        assert mock.counters.requests["create"] == 1  # never re-sent
        assert mock.counters.creates == 0
        assert_no_slot_held(client)
        assert client.unfinished_tasks == {}
        # The client is still usable: the next create goes through.
        task_id = await client.create(request)
        assert mock.task(task_id).prompt == request.prompt
        assert mock.counters.creates_by_prompt[request.prompt] == 1


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("number", "error"), REFUSALS)
async def test_a_refused_status_raises_its_class_at_once(
    provider: str, route: str, number: int, error: type[APIError]
) -> None:
    # A long task polled rarely: the client's own follower must not poll (and take the
    # injected refusal) between the create and the status call, however loaded the machine.
    async with (
        running_mock(task_seconds=600) as mock,
        client_for(mock, provider, poll_interval=60, expected_duration=600) as client,
    ):
        task_id = await client.create(VideoRequest("a kite"))
        inject(mock, "status", route, number)
        with pytest.raises(error) as caught:
            await client.status(task_id)
        assert type(caught.value) is error
        check_route(caught.value, route, number, "status")
        assert mock.counters.requests["status"] == 1  # a refusal is not retried
        # The task is still alive and still counted until it is seen finished.
        assert client.governor.statistics().live == 1
        assert task_id in client.unfinished_tasks
        assert (await client.status(task_id)).task_id == task_id


@pytest.mark.parametrize("route", ROUTES)
async def test_freesora_credits_refusals_raise_their_class(route: str) -> None:
    async with running_mock() as mock, client_for(mock, "freesora") as client:
        for number, error in REFUSALS:
            inject(mock, "credits", route, number)
            with pytest.raises(error) as caught:
                await client.credits()
            check_route(caught.value, route, number, "credits")
        assert mock.counters.requests["credits"] == len(REFUSALS)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_wait_stops_at_an_authentication_error(provider: str) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        task_id = await client.create(VideoRequest("a kite"))
        inject(mock, "status", "http", 401)
        with pytest.raises(AuthenticationError):
            await client.wait(task_id)
        assert mock.counters.requests["status"] == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_unknown_envelope_code_is_an_api_error(provider: str) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        # On a create, a code we do not know does not prove that no task was made.
        mock.inject("create", Fault.ENVELOPE_ERROR, code=7)
        with pytest.raises(CreateOutcomeUnknownError) as unknown:
            await client.create(VideoRequest("a kite"))
        cause = unknown.value.__cause__
        assert type(cause) is APIError and cause.code == 7
        assert mock.counters.requests["create"] == 1
        assert client.governor.statistics().held == 1  # held a while: a task may exist
        # On a poll, it is the plain APIError.
        mock.inject("status", Fault.ENVELOPE_ERROR, code=7)
        with pytest.raises(APIError) as caught:
            await client.status("task_0123456789abcdef")
        assert type(caught.value) is APIError and caught.value.code == 7


# -- the same errors, for real -------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_key_the_server_does_not_know_is_refused(provider: str) -> None:
    async with running_mock(api_keys={KEY}) as mock:
        async with client_for(mock, provider, key="sk-not-a-known-key-000") as client:
            with pytest.raises(AuthenticationError) as caught:
                await client.create(VideoRequest("a kite"))
            assert caught.value.http_status == 401 and caught.value.endpoint == "create"
            assert_no_slot_held(client)
            with pytest.raises(AuthenticationError):
                await client.status("task_0123456789abcdef")
            if provider == "freesora":
                with pytest.raises(AuthenticationError):
                    await client.credits()
        assert mock.counters.creates == 0
        assert mock.counters.unauthorized == sum(mock.counters.requests.values())
        assert mock.counters.unauthorized == (3 if provider == "freesora" else 2)
        # The same calls with the known key go through.
        async with client_for(mock, provider) as client:
            assert (await client.generate(VideoRequest("a kite"))).ok


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_empty_balance_refuses_the_create(provider: str) -> None:
    async with running_mock(sora2api_price=100) as mock, client_for(mock, provider) as client:
        mock.set_credits(KEY, 0)
        with pytest.raises(InsufficientCreditsError) as caught:
            await client.create(VideoRequest("an expensive kite"))
        assert caught.value.http_status == 402
        assert mock.counters.requests["create"] == 1 and mock.counters.creates == 0
        assert_no_slot_held(client)
        assert mock.credits(KEY) == 0
        mock.set_credits(KEY, 100)
        assert (await client.generate(VideoRequest("an expensive kite"))).ok
        assert mock.credits(KEY) == 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_unknown_task_is_not_found(provider: str) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.status("task_00000000deadbeef")
        assert caught.value.http_status == 404
        assert mock.counters.requests["status"] == 1


# -- server errors -------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("route", "number"), [("http", 500), ("http", 503), ("envelope", 500)])
async def test_a_server_error_on_create_has_an_unknown_outcome(
    provider: str, route: str, number: int
) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        inject(mock, "create", route, number)
        request = VideoRequest("a kite in a storm")
        with pytest.raises(CreateOutcomeUnknownError) as caught:
            await client.create(request)
        cause = caught.value.__cause__
        assert isinstance(cause, ServerError)
        check_route(cause, route, number, "create")
        assert caught.value.request == request
        assert mock.counters.requests["create"] == 1  # never re-sent
        # A task may exist, so its slot stays taken for a while.
        assert client.governor.statistics().held == 1
        assert client.governor.statistics().live == 0


async def test_the_slot_of_an_unknown_outcome_is_given_back_later() -> None:
    async with running_mock() as mock, client_for(mock, "freesora") as client:
        mock.inject("create", Fault.SERVER_ERROR)
        with pytest.raises(CreateOutcomeUnknownError):
            await client.create(VideoRequest("a kite"))
        assert client.governor.statistics().held == 1
        await wait_until(lambda: client.governor.statistics().held == 0)
        assert mock.counters.requests["create"] == 1


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("route", ROUTES)
async def test_server_errors_on_status_are_retried(provider: str, route: str) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        task_id = await created_elsewhere(mock, provider)
        inject(mock, "status", route, 503)
        status = await client.status(task_id)
        assert status.task_id == task_id
        assert mock.counters.requests["status"] == 2
        assert mock.counters.polls_by_task[task_id] == 1


# -- rate limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("route", ROUTES)
async def test_a_rate_limited_status_is_retried(provider: str, route: str) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        task_id = await created_elsewhere(mock, provider)
        if route == "http":
            mock.inject("status", Fault.HTTP_ERROR, status=429, retry_after=0.05, times=2)
        else:
            mock.inject("status", Fault.ENVELOPE_ERROR, code=429)
        status = await client.status(task_id)
        assert status.task_id == task_id
        assert mock.counters.requests["status"] == (3 if route == "http" else 2)
        assert mock.counters.polls_by_task[task_id] == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_status_rate_limited_past_its_retries_raises(provider: str) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        mock.inject("status", Fault.HTTP_ERROR, status=429, retry_after=0.05, times=6)
        with pytest.raises(RateLimitError) as caught:
            await client.status("task_0123456789abcdef")
        assert caught.value.http_status == 429 and caught.value.retry_after == 0.05
        assert mock.counters.requests["status"] == 6
        assert mock.pending_faults() == 0


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("route", ROUTES)
async def test_a_rate_limited_create_waits_and_is_made_once(provider: str, route: str) -> None:
    # Without Retry-After (the envelope route) the governor pauses for its default.
    governor = LocalGovernor(20, default_pause=0.1)
    async with running_mock() as mock, client_for(mock, provider, governor=governor) as client:
        if route == "http":
            mock.inject("create", Fault.HTTP_ERROR, status=429, retry_after=0.1)
        else:
            mock.inject("create", Fault.ENVELOPE_ERROR, code=429)
        request = VideoRequest("a patient kite")
        result = await client.generate(request)
        assert result.ok
        assert mock.counters.requests["create"] == 2
        assert mock.counters.creates == 1
        assert mock.counters.creates_by_prompt[request.prompt] == 1
        assert_no_slot_held(client)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_full_account_is_waited_out(provider: str) -> None:
    # The account cap is 1 and a task is alive: the server refuses the next create with 429
    # until that task ends; the client waits, asks again and makes the task once.
    config = {"cap": 1, "cap_retry_after": 0.1, "task_seconds": 0.5}
    async with running_mock(**config) as mock, client_for(mock, provider) as client:
        first = await client.create(VideoRequest("the first kite"))
        second = await client.create(VideoRequest("the second kite"))
        rejections = mock.counters.cap_rejections
        assert rejections >= 1
        assert mock.counters.requests["create"] == 2 + rejections
        assert mock.counters.creates_by_prompt == {"the first kite": 1, "the second kite": 1}
        assert mock.counters.max_live_tasks == 1
        assert mock.task(first).state == "succeeded"
        assert (await client.wait(second)).ok
        assert (await client.wait(first)).ok
        assert_no_slot_held(client)
