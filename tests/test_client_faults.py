"""Network and server faults: polls ride them out, creates are never sent twice.

A status poll is idempotent, so 5xx answers, dropped connections, malformed bodies and 429s
are retried and ``wait`` still returns the right result. A create is not: once it may have
reached the server (an answer lost after the task was made) it raises
CreateOutcomeUnknownError and is not re-sent. Only a create that provably did not happen
(a refused connection, a 429) is sent again.
"""

from __future__ import annotations

import logging

import pytest
from helpers import (
    PROVIDERS,
    client_for,
    closed_port_url,
    running_mock,
    total_requests,
)

from sora_async import (
    ConnectError,
    ConnectionDroppedError,
    CreateOutcomeUnknownError,
    ServerError,
    SoraClient,
    VideoRequest,
)
from sora_async.mock import Fault

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_backoff_waits")]

STATUS_FAULTS = [Fault.SERVER_ERROR, Fault.DROP, Fault.MALFORMED, Fault.RATE_LIMIT]


def repeats(provider: str, fault: Fault) -> int:
    """How many faults in a row make the SDK itself retry.

    aiohttp re-sends a GET (sora2api's record-info) whose connection dropped before any
    answer, once, on its own: one drop more makes sure the SDK sees one. A 429 is cheap to wait
    out (its Retry-After is tiny here), so it comes twice.
    """
    if fault is Fault.RATE_LIMIT or (fault is Fault.DROP and provider == "sora2api"):
        return 2
    return 1


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fault", STATUS_FAULTS)
async def test_wait_survives_status_faults(provider: str, fault: Fault) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        request = VideoRequest("a kite in bad weather")
        task_id = await client.create(request)
        times = repeats(provider, fault)
        mock.inject("status", fault, times=times, retry_after=0.05)
        result = await client.wait(task_id)

        assert result.ok and result.task_id == task_id and result.request == request
        assert result.video_urls == [f"{mock.base_url}/files/{task_id}.mp4"]
        assert mock.pending_faults() == 0
        assert mock.counters.faults_by_kind[fault.value] == times
        # Only answers that were not faults reached the task.
        assert mock.counters.polls_by_task[task_id] == mock.counters.requests["status"] - times
        assert mock.counters.creates == 1
        assert client.governor.statistics().held == 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_wait_outlasts_a_status_call_that_gives_up(
    provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    # More faults in a row than one status call retries (six attempts): that call gives up,
    # and wait() polls again later instead of failing.
    caplog.set_level(logging.WARNING, logger="sora_async")
    async with running_mock() as mock, client_for(mock, provider) as client:
        task_id = await client.create(VideoRequest("a kite in a gale"))
        mock.inject("status", Fault.RATE_LIMIT, times=7, retry_after=0.05)
        result = await client.wait(task_id)
        assert result.ok and result.task_id == task_id
        assert mock.pending_faults() == 0
        assert mock.counters.faults_fired == 7
    gave_up = [r for r in caplog.records if "polling again" in r.getMessage()]
    assert len(gave_up) == 1 and task_id in gave_up[0].getMessage()


# -- creates -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("fault", "cause"),
    [(Fault.CREATED_THEN_500, ServerError), (Fault.CREATED_THEN_DROP, ConnectionDroppedError)],
)
async def test_a_create_whose_answer_is_lost_is_never_sent_twice(
    provider: str, fault: Fault, cause: type[Exception]
) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        mock.inject("create", fault)
        request = VideoRequest("a kite that may exist")
        with pytest.raises(CreateOutcomeUnknownError) as caught:
            await client.create(request)
        assert isinstance(caught.value.__cause__, cause)
        assert caught.value.request == request
        # The task was made and charged on the server, once.
        assert mock.counters.creates_by_prompt[request.prompt] == 1
        assert mock.counters.requests["create"] == 1
        (record,) = mock.tasks()
        assert record.prompt == request.prompt
        # Its slot stays taken: the task counts against the account.
        assert client.governor.statistics().held == 1
        assert client.unfinished_tasks == {}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_generate_does_not_resend_a_lost_create(provider: str) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        mock.inject("create", Fault.CREATED_THEN_DROP)
        with pytest.raises(CreateOutcomeUnknownError):
            await client.generate(VideoRequest("one kite only"))
        assert mock.counters.creates_by_prompt["one kite only"] == 1
        assert mock.counters.requests == {"create": 1}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_create_that_cannot_connect_raises_after_retries(
    provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sora_async")
    client = SoraClient(
        provider,
        "sk-test-unreachable-0001",
        base_url=closed_port_url(),
        poll_interval=0.2,
        expected_duration=0.5,
    )
    async with client:
        with pytest.raises(ConnectError) as caught:
            await client.create(VideoRequest("a kite"))
        assert caught.value.endpoint == "create"
        assert not isinstance(caught.value, CreateOutcomeUnknownError)
        # Nothing was sent, so the slot is free again.
        stats = client.governor.statistics()
        assert (stats.held, stats.live) == (0, 0)
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 2, retries  # three attempts in all
    assert any("giving up after 3 attempt(s)" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_rate_limited_create_is_retried_and_made_once(provider: str) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        mock.inject("create", Fault.RATE_LIMIT, retry_after=0.05)
        request = VideoRequest("a kite in a queue")
        task_id = await client.create(request)
        assert mock.task(task_id).prompt == request.prompt
        assert mock.counters.requests["create"] == 2
        assert mock.counters.rate_limited == 1
        assert mock.counters.creates_by_prompt[request.prompt] == 1
        assert (await client.wait(task_id)).ok
        assert total_requests(mock) == 2 + mock.counters.requests["status"]
