"""Videos expire 15 days after the task finished on the server, not after we saw it finish."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import client_for, running_mock

from sora_async import VideoRequest
from sora_async.calls import Endpoint, RawResponse
from sora_async.models import RETENTION, TaskResult, TaskState, TaskStatus
from sora_async.providers._wire import parse_wire_time
from sora_async.providers.freesora import FreeSora
from sora_async.providers.sora2api import Sora2Api

UTC = dt.timezone.utc
GOLDEN = Path(__file__).parent / "golden"


def answer(body: Any) -> RawResponse:
    return RawResponse(Endpoint.STATUS, 200, {}, json.dumps(body).encode())


def golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text())


def test_sora2api_golden_record_expires_15_days_after_its_complete_time() -> None:
    status = Sora2Api(strict=True).decode_status(
        "sora2_task_abcdef123456", answer(golden("sora2api_record_info_response.json"))
    )
    # The document's example: "completeTime": "2024-03-20 10:30:00", no zone given.
    assert status.finished_at == dt.datetime(2024, 3, 20, 10, 30, tzinfo=UTC)
    seen = dt.datetime(2024, 3, 23, 8, 0, tzinfo=UTC)  # adopted three days later
    result = TaskResult.from_status(status, seen_at=seen)
    assert result.expires_at == dt.datetime(2024, 4, 4, 10, 30, tzinfo=UTC)


def test_sora2api_running_record_has_no_finish_time() -> None:
    body = golden("sora2api_record_info_response.json")
    body["data"].update(successFlag=0, response=None, completeTime="2024-03-20 10:30:00")
    status = Sora2Api().decode_status("sora2_task_abcdef123456", answer(body))
    assert status.state is TaskState.RUNNING and status.finished_at is None


def test_freesora_golden_counts_from_when_it_was_seen_finished() -> None:
    # The check-result document names no finish time: the expiry counts from our sighting.
    body = golden("freesora_check_result_response.json")
    body["data"]["status"] = "succeeded"
    status = FreeSora(strict=True).decode_status("task_1234567890", answer(body))
    assert status.finished_at is None
    seen = dt.datetime(2024, 3, 20, 10, 31, tzinfo=UTC)
    assert TaskResult.from_status(status, seen_at=seen).expires_at == seen + RETENTION


def test_a_finish_time_after_the_sighting_is_not_believed() -> None:
    # A zone-less server time read as UTC may be hours ahead of the truth: never expire later
    # than 15 days from when the task was seen finished.
    seen = dt.datetime(2024, 3, 20, 2, 31, tzinfo=UTC)
    status = TaskStatus(
        "t", TaskState.SUCCEEDED, finished_at=dt.datetime(2024, 3, 20, 10, 30, tzinfo=UTC)
    )
    assert TaskResult.from_status(status, seen_at=seen).expires_at == seen + RETENTION


def test_a_failed_task_has_no_expiry() -> None:
    status = TaskStatus("t", TaskState.FAILED, finished_at=dt.datetime(2024, 3, 20, tzinfo=UTC))
    assert TaskResult.from_status(status).expires_at is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-20 10:30:00", dt.datetime(2024, 3, 20, 10, 30, tzinfo=UTC)),
        ("2024-03-20T10:30:00Z", dt.datetime(2024, 3, 20, 10, 30, tzinfo=UTC)),
        ("2024-03-20T18:30:00+08:00", dt.datetime(2024, 3, 20, 10, 30, tzinfo=UTC)),
        (1710930600, dt.datetime(2024, 3, 20, 10, 30, tzinfo=UTC)),
        (1710930600000, dt.datetime(2024, 3, 20, 10, 30, tzinfo=UTC)),
        ("1710930600", dt.datetime(2024, 3, 20, 10, 30, tzinfo=UTC)),
        ("", None),
        ("yesterday", None),
        (None, None),
        (True, None),
        (-5, None),
        (float("nan"), None),
        (10**30, None),
        # Past a float's range (JSON numbers have any length): found by the decoder fuzzing.
        (10**400, None),
        (-(10**400), None),
    ],
)
def test_wire_times(value: object, expected: dt.datetime | None) -> None:
    assert parse_wire_time(value) == expected


@pytest.mark.anyio
async def test_an_old_task_expires_from_its_server_finish_time_over_http() -> None:
    three_days = 3 * 24 * 3600
    async with running_mock(task_seconds=0, wall_start=time.time() - three_days) as mock:
        for provider in ("sora2api", "freesora"):
            async with client_for(mock, provider) as client:
                result = await client.generate(VideoRequest("a lighthouse in fog"))
            assert result.ok and result.expires_at is not None
            left = result.expires_at - dt.datetime.now(UTC)
            if provider == "sora2api":
                # completeTime says three days ago: twelve days left, not fifteen.
                assert (
                    RETENTION - dt.timedelta(days=3, minutes=1)
                    < left
                    < RETENTION - dt.timedelta(days=2, hours=23)
                )
            else:
                assert RETENTION - dt.timedelta(minutes=1) < left <= RETENTION
