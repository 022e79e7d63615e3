"""The mock server, driven over 127.0.0.1 with a plain aiohttp client (not the SDK).

Time is a ManualClock: tests move it instead of sleeping. The document samples below are
copied from ../shared/seeds (000: freesora, 001: sora2api); answers must have their shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import attrs
import pytest
from aiohttp import web

from sora_async.mock import (
    Fault,
    ManualClock,
    MockConfig,
    MockServer,
    create_app,
    serve,
    state_of,
)

pytestmark = pytest.mark.anyio

KEY = "sk-mock-key-one-4f1c"
OTHER = "sk-mock-key-two-9b2e"
HANG_GUARD = 30  # seconds; only reached if something hangs

FREESORA_CREATE_SAMPLE = {"code": 0, "message": "ok", "data": {"id": "task_1234567890"}}
FREESORA_CHECK_SAMPLE = {
    "code": 0,
    "message": "Success",
    "data": {
        "status": "running",
        "progress": 35,
        "result_url": "https://your-domain.com/storage/videos/xxx.mp4",
        "result_urls": ["https://your-domain.com/storage/videos/xxx.mp4"],
        "failure_reason": "",
        "error_message": None,
        "credits_refunded": False,
        "refund_trans_no": None,
        "result_pid": "s_xxx",
        "result_pids": ["s_xxx"],
        "metadata": {
            "remixTargetId": "s_prev",
            "characters": [{"url": "https://.../hero.mp4", "timestamps": "0,3"}],
        },
    },
}
FREESORA_CREDITS_SAMPLE = {
    "code": 0,
    "message": "ok",
    "data": {"left_credits": 120, "is_recharged": True, "is_pro": True, "is_vip": False},
}
SORA2API_GENERATE_SAMPLE = {
    "code": 200,
    "msg": "success",
    "data": {"taskId": "sora2_task_abcdef123456"},
}
SORA2API_RECORD_SAMPLE = {
    "code": 200,
    "msg": "success",
    "data": {
        "taskId": "sora2_task_abcdef123456",
        "paramJson": '{"prompt": "A cute kitten", "aspectRatio": "landscape", "quality": "hd"}',
        "completeTime": "2024-03-20 10:30:00",
        "response": {"imageUrl": "https://cdn.sora2api.ai/videos/example_video.mp4"},
        "successFlag": 1,
        "errorCode": 0,
        "errorMessage": None,
        "createTime": "2024-03-20 10:25:00",
    },
}
TIME_FORMAT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


def assert_same_shape(actual: Any, sample: Any, where: str = "$") -> None:
    """Same keys at every level, same JSON types wherever both sides are not null."""
    if isinstance(sample, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not an object"
        assert set(actual) == set(sample), f"{where}: keys {sorted(actual)} != {sorted(sample)}"
        for name, value in sample.items():
            assert_same_shape(actual[name], value, f"{where}.{name}")
    elif isinstance(sample, list):
        assert isinstance(actual, list), f"{where}: {actual!r} is not an array"
        if sample and actual:
            assert_same_shape(actual[0], sample[0], f"{where}[0]")
    elif sample is not None and actual is not None:
        assert type(actual) is type(sample), f"{where}: {actual!r} vs sample {sample!r}"


@attrs.frozen
class Reply:
    status: int
    headers: Any
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Api:
    """Both providers' endpoints, sent the way their documents show."""

    def __init__(self, session: aiohttp.ClientSession, mock: MockServer) -> None:
        self.session = session
        self.mock = mock

    async def send(
        self,
        method: str,
        url: str,
        *,
        key: str | None = KEY,
        body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        async with self.session.request(
            method, url, json=body, params=params, headers=sent
        ) as response:
            return Reply(response.status, response.headers, await response.read())

    async def fs_create(self, body: Any, key: str | None = KEY) -> Reply:
        return await self.send(
            "POST", self.mock.freesora_url + "/v1/video/sora-video", key=key, body=body
        )

    async def fs_status(self, task_id: str, key: str | None = KEY) -> Reply:
        url = self.mock.freesora_url + "/video-generations/check-result"
        return await self.send("POST", url, key=key, body={"taskId": task_id})

    async def fs_credits(self, key: str | None = KEY) -> Reply:
        return await self.send("POST", self.mock.freesora_url + "/get-user-credits", key=key)

    async def s2_generate(self, body: Any, key: str | None = KEY) -> Reply:
        return await self.send("POST", self.mock.sora2api_url + "/generate", key=key, body=body)

    async def s2_record(self, task_id: str, key: str | None = KEY) -> Reply:
        url = self.mock.sora2api_url + "/record-info"
        return await self.send("GET", url, key=key, params={"taskId": task_id})

    async def create(self, provider: str, prompt: str = "a red kite", key: str = KEY) -> str:
        """Create one task; its id."""
        if provider == "freesora":
            reply = await self.fs_create({"model": "sora-2", "prompt": prompt}, key)
            assert reply.status == 200, reply.body
            return str(reply.json["data"]["id"])
        reply = await self.s2_generate({"prompt": prompt}, key)
        assert reply.status == 200, reply.body
        return str(reply.json["data"]["taskId"])

    async def status(self, provider: str, task_id: str, key: str = KEY) -> Reply:
        if provider == "freesora":
            return await self.fs_status(task_id, key)
        return await self.s2_record(task_id, key)

    async def credits_or_status(self, provider: str, endpoint: str) -> Reply:
        """One request to ``endpoint`` of ``provider`` that succeeds when no fault fires."""
        if endpoint == "create":
            if provider == "freesora":
                return await self.fs_create({"model": "sora-2", "prompt": "faulty"})
            return await self.s2_generate({"prompt": "faulty"})
        if endpoint == "credits":
            return await self.fs_credits()
        task_id = await self.create(provider)
        return await self.status(provider, task_id)


@contextlib.asynccontextmanager
async def running(config: MockConfig) -> AsyncIterator[Api]:
    async with MockServer(config) as mock, aiohttp.ClientSession() as session:
        yield Api(session, mock)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1000.0)


@pytest.fixture
def config(clock: ManualClock) -> MockConfig:
    return MockConfig(task_seconds=10.0, jitter=0.0, clock=clock)


@pytest.fixture
async def api(config: MockConfig) -> AsyncIterator[Api]:
    async with running(config) as client:
        yield client


# -- shapes -------------------------------------------------------------------------------


async def test_freesora_answers_have_the_documented_shapes(api: Api, clock: ManualClock) -> None:
    created = await api.fs_create(
        {
            "model": "sora-2-stable",
            "prompt": "A cinematic shot of a futuristic city at sunset",
            "aspectRatio": "16:9",
            "duration": 15,
            "isPublic": False,
            "remixTargetId": "s_prev",
            "characters": [{"url": "https://example.com/hero.mp4", "timestamps": "0,3"}],
        }
    )
    assert created.status == 200
    assert created.headers["Content-Type"].startswith("application/json")
    assert_same_shape(created.json, FREESORA_CREATE_SAMPLE)
    assert created.json["message"] == "ok"
    task_id = created.json["data"]["id"]
    assert re.fullmatch(r"task_[0-9a-f]+", task_id)

    clock.advance(10)
    status = await api.fs_status(task_id)
    assert status.status == 200
    assert_same_shape(status.json, FREESORA_CHECK_SAMPLE)
    data = status.json["data"]
    assert status.json["message"] == "Success"
    assert data["status"] == "succeeded" and data["progress"] == 100
    assert data["result_urls"] == [data["result_url"]]
    assert data["result_url"] == f"{api.mock.base_url}/files/{task_id}.mp4"
    assert data["result_pids"] == [data["result_pid"]]
    assert data["metadata"] == {
        "remixTargetId": "s_prev",
        "characters": [{"url": "https://example.com/hero.mp4", "timestamps": "0,3"}],
    }

    credits = await api.fs_credits()
    assert_same_shape(credits.json, FREESORA_CREDITS_SAMPLE)
    assert credits.json["data"]["left_credits"] == 1_000_000 - 150


async def test_sora2api_answers_have_the_documented_shapes(api: Api, clock: ManualClock) -> None:
    body = {"prompt": "A cute kitten", "aspectRatio": "landscape", "quality": "hd"}
    created = await api.s2_generate(body)
    assert created.status == 200
    assert_same_shape(created.json, SORA2API_GENERATE_SAMPLE)
    task_id = created.json["data"]["taskId"]
    assert re.fullmatch(r"sora2_task_[0-9a-f]+", task_id)

    clock.advance(10)
    record = await api.s2_record(task_id)
    assert record.status == 200
    assert_same_shape(record.json, SORA2API_RECORD_SAMPLE)
    data = record.json["data"]
    assert data["taskId"] == task_id
    assert data["paramJson"] == json.dumps(body)
    assert data["successFlag"] == 1 and data["errorCode"] == 0 and data["errorMessage"] is None
    assert data["response"] == {"imageUrl": f"{api.mock.base_url}/files/{task_id}.mp4"}
    assert TIME_FORMAT.match(data["createTime"]) and TIME_FORMAT.match(data["completeTime"])
    assert data["completeTime"] > data["createTime"]
    assert "progress" not in data


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "text to video", "aspectRatio": "portrait", "quality": "standard"},
        {
            "prompt": "Animate this image with natural motion effects",
            "imageUrls": ["https://example.com/source-image.jpg"],
            "aspectRatio": "landscape",
            "quality": "hd",
        },
        {"prompt": "kitten", "aspectRatio": "portrait", "quality": "hd", "watermark": "My Mark"},
    ],
)
async def test_sora2api_echoes_every_generation_mode_in_param_json(
    api: Api, body: dict[str, Any]
) -> None:
    created = await api.s2_generate(body)
    assert created.status == 200, created.body
    record = await api.s2_record(created.json["data"]["taskId"])
    assert json.loads(record.json["data"]["paramJson"]) == body


async def test_result_urls_follow_the_host_the_client_used(api: Api, clock: ManualClock) -> None:
    task_id = await api.create("freesora")
    clock.advance(10)
    url = api.mock.freesora_url + "/video-generations/check-result"
    reply = await api.send(
        "POST", url, body={"taskId": task_id}, headers={"Host": "videos.example:8443"}
    )
    assert reply.json["data"]["result_url"] == f"http://videos.example:8443/files/{task_id}.mp4"


# -- lifecycle ----------------------------------------------------------------------------


async def test_freesora_task_goes_pending_running_succeeded(api: Api, clock: ManualClock) -> None:
    task_id = await api.create("freesora")
    seen = []
    for step in (0.0, 0.5, 0.5, 4.0, 4.9, 0.1):
        clock.advance(step)
        data = (await api.fs_status(task_id)).json["data"]
        seen.append((data["status"], data["progress"]))
    assert seen == [
        ("pending", 0),
        ("pending", 0),
        ("running", 10),
        ("running", 50),
        ("running", 99),
        ("succeeded", 100),
    ]
    assert api.mock.task(task_id).state == "succeeded"
    assert api.mock.counters.polls_by_task[task_id] == 6


async def test_sora2api_task_reports_generating_then_success(api: Api, clock: ManualClock) -> None:
    task_id = await api.create("sora2api")
    first = (await api.s2_record(task_id)).json["data"]
    assert (first["successFlag"], first["completeTime"], first["response"]) == (0, None, None)
    clock.advance(9.99)
    assert (await api.s2_record(task_id)).json["data"]["successFlag"] == 0
    clock.advance(0.01)
    assert (await api.s2_record(task_id)).json["data"]["successFlag"] == 1


async def test_zero_task_seconds_finish_at_once(clock: ManualClock) -> None:
    async with running(MockConfig(task_seconds=0, clock=clock)) as api:
        for provider in ("freesora", "sora2api"):
            task_id = await api.create(provider)
            assert api.mock.task(task_id).state == "succeeded"
        assert api.mock.live_tasks() == 0


async def test_run_times_are_jittered_from_the_seed(clock: ManualClock) -> None:
    config = MockConfig(task_seconds=10, jitter=0.2, seed=7, cap=None, clock=clock)
    durations = []
    for _ in range(2):
        async with running(config) as api:
            ids = [await api.create("sora2api") for _ in range(8)]
            durations.append([api.mock.task(task_id).duration for task_id in ids])
    assert durations[0] == durations[1]
    assert all(8.0 <= d <= 12.0 for d in durations[0])
    assert len(set(durations[0])) > 1


async def test_fail_marker_fails_and_refunds_freesora(api: Api, clock: ManualClock) -> None:
    reply = await api.fs_create({"model": "sora-2-pro", "prompt": "storm [fail]"})
    task_id = reply.json["data"]["id"]
    assert api.mock.credits(KEY) == 1_000_000 - 375
    running_data = (await api.fs_status(task_id)).json["data"]
    assert running_data["credits_refunded"] is False and running_data["refund_trans_no"] is None
    clock.advance(10)
    data = (await api.fs_status(task_id)).json["data"]
    assert data["status"] == "failed"
    assert data["failure_reason"] and data["error_message"]
    assert data["credits_refunded"] is True and data["refund_trans_no"]
    assert data["result_url"] is None and data["result_urls"] == []
    assert_same_shape(data, FREESORA_CHECK_SAMPLE["data"])
    assert api.mock.credits(KEY) == 1_000_000
    assert api.mock.counters.refunds == 1


class LeapClock(ManualClock):
    """A ManualClock that can move on by itself right after one reading: time passing in the
    middle of an answer, as it does when the machine is loaded."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self._leap = 0.0

    def leap_after_next_reading(self, seconds: float) -> None:
        self._leap = seconds

    def __call__(self) -> float:
        now = super().__call__()
        leap, self._leap = self._leap, 0.0
        if leap:
            self.advance(leap)
        return now


@pytest.mark.parametrize("provider", ["freesora", "sora2api"])
async def test_a_status_answer_is_of_one_instant(provider: str) -> None:
    # A failed task's refund is settled when the mock first sees it ended. A poll that settled
    # before the task's end and read its state after it answered "failed" with
    # credits_refunded false (the e2e refund test, once under load): one reading per answer.
    # The callback dispatcher is kept from reading the clock (it settles on each tick).
    clock = LeapClock(1000.0)
    config = MockConfig(
        task_seconds=10.0, jitter=0.0, clock=clock, tick_interval=3600.0, sora2api_price=7
    )
    async with running(config) as api:
        task_id = await api.create(provider, "storm [fail]")
        clock.advance(9.0)
        clock.leap_after_next_reading(5.0)  # the task ends while its first answer is made
        answers = 0
        while True:
            answers += 1
            data = (await api.status(provider, task_id)).json["data"]
            if data.get("status") == "failed" or data.get("successFlag") == 3:
                break
            assert answers < 3
        # Said failed: its refund is already made, and said so.
        assert api.mock.counters.refunds == 1
        if provider == "freesora":
            assert data["credits_refunded"] is True and data["refund_trans_no"]
        assert answers == 2  # the first answer was made before the leap: still running
        assert api.mock.credits(KEY) == 1_000_000


async def test_sora2api_failures_use_flags_2_and_3(api: Api, clock: ManualClock) -> None:
    generation = await api.create("sora2api", "storm [fail]")
    creation = await api.create("sora2api", "storm [fail:create]")
    clock.advance(1.0)  # the pending phase: creation failures end here
    early = (await api.s2_record(creation)).json["data"]
    assert early["successFlag"] == 2 and early["errorCode"] != 0 and early["errorMessage"]
    assert early["completeTime"] is not None and early["response"] is None
    assert (await api.s2_record(generation)).json["data"]["successFlag"] == 0
    clock.advance(9.0)
    late = (await api.s2_record(generation)).json["data"]
    assert late["successFlag"] == 3 and late["errorCode"] != 0 and late["errorMessage"]


async def test_failure_rate_is_seeded(clock: ManualClock) -> None:
    config = MockConfig(task_seconds=0, failure_rate=0.5, seed=3, cap=None, clock=clock)
    outcomes = []
    for _ in range(2):
        async with running(config) as api:
            ids = [await api.create("freesora") for _ in range(16)]
            outcomes.append([api.mock.task(task_id).state for task_id in ids])
    assert outcomes[0] == outcomes[1]
    assert {"succeeded", "failed"} == set(outcomes[0])


async def test_failure_rate_one_fails_everything(clock: ManualClock) -> None:
    async with running(MockConfig(task_seconds=0, failure_rate=1.0, clock=clock)) as api:
        task_id = await api.create("freesora")
        assert (await api.fs_status(task_id)).json["data"]["status"] == "failed"


# -- account cap and credits --------------------------------------------------------------


async def test_cap_answers_429_with_retry_after_until_a_task_ends(clock: ManualClock) -> None:
    config = MockConfig(task_seconds=10, jitter=0, cap=2, cap_retry_after=0.25, clock=clock)
    async with running(config) as api:
        await api.create("freesora")
        await api.create("sora2api")
        refused = await api.fs_create({"model": "sora-2", "prompt": "third"})
        assert refused.status == 429
        assert refused.headers["Retry-After"] == "0.25"
        assert refused.json == {"code": 429, "message": refused.json["message"], "data": None}
        refused_s2 = await api.s2_generate({"prompt": "third"})
        assert refused_s2.status == 429 and refused_s2.json["code"] == 429
        assert api.mock.credits(KEY) == 1_000_000 - 100  # a refused create is not charged
        # The cap is per account: another key is not held back.
        await api.create("freesora", key=OTHER)
        counters = api.mock.counters
        assert (counters.cap_rejections, counters.rate_limited, counters.creates) == (2, 2, 3)
        assert counters.max_live_tasks == 2
        assert api.mock.live_tasks(KEY) == 2 and api.mock.live_tasks() == 3
        clock.advance(10)
        assert api.mock.live_tasks() == 0
        await api.create("freesora", "fourth")


async def test_default_retry_after_is_one_second(clock: ManualClock) -> None:
    async with running(MockConfig(task_seconds=10, cap=1, clock=clock)) as api:
        await api.create("sora2api")
        refused = await api.s2_generate({"prompt": "more"})
        assert (refused.status, refused.headers["Retry-After"]) == (429, "1")
        assert refused.json == {"code": 429, "msg": refused.json["msg"], "data": None}


async def test_no_cap_when_cap_is_none(clock: ManualClock) -> None:
    async with running(MockConfig(task_seconds=10, cap=None, clock=clock)) as api:
        for _ in range(25):
            await api.create("sora2api")
        assert api.mock.counters.max_live_tasks == 25


@pytest.mark.parametrize(
    ("body", "price"),
    [
        ({"model": "sora-2"}, 100),
        ({"model": "sora-2-pro"}, 375),
        ({"model": "sora-2-stable"}, 100),
        ({"model": "sora-2-stable", "duration": 10}, 100),
        ({"model": "sora-2-stable", "duration": 15}, 150),
    ],
)
async def test_freesora_charges_the_price_table(api: Api, body: dict[str, Any], price: int) -> None:
    reply = await api.fs_create({**body, "prompt": "priced"})
    assert reply.status == 200
    assert (await api.fs_credits()).json["data"]["left_credits"] == 1_000_000 - price
    assert api.mock.task(reply.json["data"]["id"]).cost == price


async def test_short_balance_answers_402_and_creates_nothing(api: Api) -> None:
    api.mock.set_credits(KEY, 99)
    reply = await api.fs_create({"model": "sora-2", "prompt": "too dear"})
    assert reply.status == 402
    assert reply.json == {"code": 402, "message": reply.json["message"], "data": None}
    assert api.mock.counters.creates == 0 and api.mock.credits(KEY) == 99
    credits = (await api.fs_credits()).json["data"]
    assert credits["left_credits"] == 99 and credits["is_recharged"] is True


async def test_sora2api_price_and_refund(clock: ManualClock) -> None:
    config = MockConfig(task_seconds=10, jitter=0, sora2api_price=30, clock=clock)
    async with running(config) as api:
        api.mock.set_credits(KEY, 40)
        failing = await api.create("sora2api", "[fail] once")
        short = await api.s2_generate({"prompt": "second"})
        assert short.status == 402 and short.json["code"] == 402 and short.json["data"] is None
        clock.advance(10)
        assert (await api.s2_record(failing)).json["data"]["successFlag"] == 3
        assert api.mock.credits(KEY) == 40
        await api.create("sora2api", "now affordable")


# -- authentication and ownership ---------------------------------------------------------


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer    ", "Basic dXNlcjpwYXNz", "Token abc"]
)
async def test_every_api_endpoint_needs_a_bearer_key(api: Api, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    calls = [
        (
            "POST",
            api.mock.freesora_url + "/v1/video/sora-video",
            {"model": "sora-2", "prompt": "x"},
        ),
        ("POST", api.mock.freesora_url + "/video-generations/check-result", {"taskId": "task_1"}),
        ("POST", api.mock.freesora_url + "/get-user-credits", None),
        ("POST", api.mock.sora2api_url + "/generate", {"prompt": "x"}),
        ("GET", api.mock.sora2api_url + "/record-info?taskId=sora2_task_1", None),
    ]
    for method, url, body in calls:
        reply = await api.send(method, url, key=None, body=body, headers=headers)
        assert reply.status == 401, url
        assert reply.json["code"] == 401 and reply.json["data"] is None
    assert api.mock.counters.creates == 0
    assert api.mock.counters.unauthorized == len(calls)


async def test_api_keys_restrict_the_accepted_keys(clock: ManualClock) -> None:
    async with running(MockConfig(api_keys={"good-key"}, clock=clock)) as api:
        assert (await api.fs_credits(key="other-key")).status == 401
        assert (await api.fs_credits(key="good-key")).status == 200


async def test_tasks_of_another_account_are_not_found(api: Api) -> None:
    for provider in ("freesora", "sora2api"):
        task_id = await api.create(provider)
        assert (await api.status(provider, task_id)).status == 200
        stranger = await api.status(provider, task_id, key=OTHER)
        assert stranger.status == 404 and stranger.json["code"] == 404
        assert stranger.json["data"] is None
        unknown = await api.status(provider, task_id + "00")
        assert unknown.status == 404
    fs_id = await api.create("freesora")
    assert (await api.s2_record(fs_id)).status == 404  # a freesora id is no sora2api task
    assert api.mock.counters.polls == 2


async def test_the_key_never_reaches_the_logs(
    caplog: pytest.LogCaptureFixture, clock: ManualClock
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(MockConfig(task_seconds=1, api_keys={KEY}, clock=clock)) as api:
        task_id = await api.create("freesora", "[fail] logged")
        clock.advance(5)
        await api.fs_status(task_id)
        await api.fs_credits(key=OTHER)
    assert caplog.records, "the mock logs nothing at DEBUG: this test checks nothing"
    assert KEY not in caplog.text and OTHER not in caplog.text


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "no model"}, "model"),
        ({"model": "sora-3", "prompt": "x"}, "model"),
        ({"model": "sora-2"}, "prompt"),
        ({"model": "sora-2", "prompt": "  "}, "prompt"),
        ({"model": "sora-2", "prompt": "x", "imageData": "https://a/b.png"}, "imageData"),
        ({"model": "sora-2", "prompt": "x", "imageData": "data:text/plain;base64,AA"}, "imageData"),
        ({"model": "sora-2", "prompt": "x", "imageData": "data:image/png,raw"}, "imageData"),
        ({"model": "sora-2", "prompt": "x", "url": "ftp://a/b.png"}, "url"),
        ({"model": "sora-2", "prompt": "x", "aspectRatio": "1:1"}, "aspectRatio"),
        ({"model": "sora-2", "prompt": "x", "aspectRatio": "landscape"}, "aspectRatio"),
        ({"model": "sora-2", "prompt": "x", "duration": 10}, "duration"),
        ({"model": "sora-2-stable", "prompt": "x", "duration": 12}, "duration"),
        ({"model": "sora-2-stable", "prompt": "x", "duration": "15"}, "duration"),
        ({"model": "sora-2", "prompt": "x", "isPublic": "yes"}, "isPublic"),
        ({"model": "sora-2", "prompt": "x", "remixTargetId": 5}, "remixTargetId"),
        ({"model": "sora-2", "prompt": "x", "characters": "hero"}, "characters"),
        (["model", "prompt"], "JSON object"),
    ],
)
async def test_freesora_rejects_bad_fields_naming_them(api: Api, body: Any, field: str) -> None:
    reply = await api.fs_create(body)
    assert reply.status == 400
    assert reply.json["code"] == 400 and reply.json["data"] is None
    assert field in reply.json["message"]
    assert api.mock.counters.creates == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"aspectRatio": "landscape"}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "aspectRatio": "16:9"}, "aspectRatio"),
        ({"prompt": "x", "quality": "4k"}, "quality"),
        ({"prompt": "x", "imageUrls": "https://example.com/a.jpg"}, "imageUrls"),
        ({"prompt": "x", "imageUrls": ["file:///etc/passwd"]}, "imageUrls"),
        ({"prompt": "x", "watermark": 7}, "watermark"),
        ({"prompt": "x", "callBackUrl": "not a url"}, "callBackUrl"),
    ],
)
async def test_sora2api_rejects_bad_fields_naming_them(api: Api, body: Any, field: str) -> None:
    reply = await api.s2_generate(body)
    assert reply.status == 400
    assert reply.json["code"] == 400 and reply.json["data"] is None
    assert field in reply.json["msg"]
    assert api.mock.counters.creates == 0


async def test_bad_json_and_missing_task_ids_are_400(api: Api) -> None:
    url = api.mock.freesora_url + "/v1/video/sora-video"
    async with api.session.post(
        url, data=b"{not json", headers={"Authorization": f"Bearer {KEY}"}
    ) as response:
        assert response.status == 400
        assert "JSON" in (await response.json())["message"]
    no_id = await api.send(
        "POST", api.mock.freesora_url + "/video-generations/check-result", body={}
    )
    assert no_id.status == 400 and "taskId" in no_id.json["message"]
    no_query = await api.send("GET", api.mock.sora2api_url + "/record-info")
    assert no_query.status == 400 and "taskId" in no_query.json["msg"]


async def test_documented_optional_fields_are_accepted(api: Api) -> None:
    reply = await api.fs_create(
        {
            "model": "sora-2-stable",
            "prompt": "A cinematic shot of a futuristic city at sunset, captured in 4K.",
            "imageData": "data:image/png;base64,iVBORw0KGgoAAA...",  # truncated in the doc
            "url": "https://example.com/legacy.png",
            "aspectRatio": "9:16",
            "duration": 15,
            "isPublic": True,
        }
    )
    assert reply.status == 200, reply.body


async def test_unknown_api_paths_answer_in_the_envelope(api: Api) -> None:
    missing = await api.send("POST", api.mock.freesora_url + "/v1/video/nothing")
    assert missing.status == 404 and missing.json["code"] == 404 and "message" in missing.json
    wrong_method = await api.send("GET", api.mock.sora2api_url + "/generate")
    assert wrong_method.status == 405 and wrong_method.json["code"] == 405
    assert "msg" in wrong_method.json


# -- faults -------------------------------------------------------------------------------

PROVIDER_ENDPOINTS = [
    ("freesora", "create"),
    ("freesora", "status"),
    ("freesora", "credits"),
    ("sora2api", "create"),
    ("sora2api", "status"),
]


def _message_key(provider: str) -> str:
    return "message" if provider == "freesora" else "msg"


@pytest.mark.parametrize(("provider", "endpoint"), PROVIDER_ENDPOINTS)
async def test_server_error_fault(api: Api, provider: str, endpoint: str) -> None:
    api.mock.inject(endpoint, Fault.SERVER_ERROR)
    reply = await api.credits_or_status(provider, endpoint)
    assert reply.status == 500
    assert reply.json == {
        "code": 500,
        _message_key(provider): reply.json[_message_key(provider)],
        "data": None,
    }
    assert api.mock.counters.faults_fired == 1
    assert api.mock.counters.faults_by_kind["server_error"] == 1
    if endpoint == "create":
        assert api.mock.counters.creates == 0
    assert (await api.credits_or_status(provider, endpoint)).status == 200


@pytest.mark.parametrize(("provider", "endpoint"), PROVIDER_ENDPOINTS)
async def test_drop_fault_closes_without_an_answer(api: Api, provider: str, endpoint: str) -> None:
    # Recent aiohttp re-sends a GET once on a dropped keep-alive connection: drop it twice.
    method_is_get = (provider, endpoint) == ("sora2api", "status")
    api.mock.inject(endpoint, Fault.DROP, times=2 if method_is_get else 1)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.credits_or_status(provider, endpoint)
    assert api.mock.counters.faults_by_kind["drop"] >= 1
    api.mock.clear_faults()
    if endpoint == "create":
        assert api.mock.counters.creates == 0
    assert (await api.credits_or_status(provider, endpoint)).status == 200


@pytest.mark.parametrize(("provider", "endpoint"), PROVIDER_ENDPOINTS)
async def test_malformed_fault_is_200_without_json(api: Api, provider: str, endpoint: str) -> None:
    api.mock.inject(endpoint, Fault.MALFORMED)
    reply = await api.credits_or_status(provider, endpoint)
    assert reply.status == 200
    with pytest.raises(ValueError):
        json.loads(reply.body)
    assert reply.body.startswith(b'{"code": ')


@pytest.mark.parametrize(("provider", "endpoint"), PROVIDER_ENDPOINTS)
async def test_rate_limit_fault(api: Api, provider: str, endpoint: str) -> None:
    api.mock.inject(endpoint, Fault.RATE_LIMIT, retry_after=3)
    api.mock.inject(endpoint, Fault.RATE_LIMIT)
    first = await api.credits_or_status(provider, endpoint)
    second = await api.credits_or_status(provider, endpoint)
    assert (first.status, first.headers["Retry-After"], first.json["code"]) == (429, "3", 429)
    assert (second.status, second.headers["Retry-After"]) == (429, "1")
    assert api.mock.counters.rate_limited == 2 and api.mock.counters.cap_rejections == 0


@pytest.mark.parametrize(("provider", "endpoint"), PROVIDER_ENDPOINTS)
async def test_envelope_error_fault_is_http_200(api: Api, provider: str, endpoint: str) -> None:
    api.mock.inject(endpoint, Fault.ENVELOPE_ERROR, code=40001)
    api.mock.inject(endpoint, Fault.ENVELOPE_ERROR)
    first = await api.credits_or_status(provider, endpoint)
    second = await api.credits_or_status(provider, endpoint)
    assert (first.status, first.json["code"], first.json["data"]) == (200, 40001, None)
    assert (second.status, second.json["code"]) == (200, 500)
    assert _message_key(provider) in first.json


@pytest.mark.parametrize(("provider", "endpoint"), PROVIDER_ENDPOINTS)
async def test_http_error_fault(api: Api, provider: str, endpoint: str) -> None:
    api.mock.inject(endpoint, Fault.HTTP_ERROR, status=503)
    api.mock.inject(endpoint, Fault.HTTP_ERROR, status=429, retry_after=2)
    first = await api.credits_or_status(provider, endpoint)
    second = await api.credits_or_status(provider, endpoint)
    assert (first.status, first.json["code"], first.json["data"]) == (503, 503, None)
    assert (second.status, second.json["code"], second.headers["Retry-After"]) == (429, 429, "2")


@pytest.mark.parametrize("provider", ["freesora", "sora2api"])
async def test_created_then_500_really_creates_and_charges(api: Api, provider: str) -> None:
    api.mock.inject("create", Fault.CREATED_THEN_500)
    reply = await api.credits_or_status(provider, "create")
    assert reply.status == 500 and reply.json["code"] == 500
    (task,) = api.mock.tasks(KEY)
    assert api.mock.counters.creates == 1
    if provider == "freesora":
        assert api.mock.credits(KEY) == 1_000_000 - 100
    assert (await api.status(provider, task.task_id)).status == 200
    assert api.mock.live_tasks(KEY) == 1


@pytest.mark.parametrize("provider", ["freesora", "sora2api"])
async def test_created_then_drop_really_creates(api: Api, provider: str) -> None:
    api.mock.inject("create", Fault.CREATED_THEN_DROP)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.credits_or_status(provider, "create")
    assert [task.prompt for task in api.mock.tasks(KEY)] == ["faulty"]
    assert api.mock.counters.creates_by_prompt["faulty"] == 1


async def test_slow_fault_delays_the_real_answer(api: Api) -> None:
    api.mock.inject("status", Fault.SLOW, delay=60)
    api.mock.inject("create", Fault.SLOW, delay=0.01)
    task_id = await api.create("sora2api")
    assert api.mock.counters.creates == 1  # the slow create did happen
    timeout = aiohttp.ClientTimeout(total=0.2)
    with pytest.raises(asyncio.TimeoutError):
        async with api.session.get(
            api.mock.sora2api_url + "/record-info",
            params={"taskId": task_id},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=timeout,
        ) as response:
            await response.read()
    assert api.mock.counters.faults_by_kind["slow"] == 2


async def test_closing_the_server_ends_slow_answers(clock: ManualClock) -> None:
    async with aiohttp.ClientSession() as session:
        mock = MockServer(MockConfig(clock=clock))
        await mock.start()
        mock.inject("create", Fault.SLOW, delay=3600)
        request = asyncio.ensure_future(
            session.post(
                mock.sora2api_url + "/generate",
                json={"prompt": "never"},
                headers={"Authorization": f"Bearer {KEY}"},
            )
        )
        await _wait_for(lambda: mock.counters.faults_fired)
        with anyio.fail_after(HANG_GUARD):
            await mock.close()
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await request
        assert mock.counters.creates == 0


async def test_faults_fire_in_order_and_can_be_cleared(api: Api) -> None:
    api.mock.inject("credits", Fault.SERVER_ERROR, times=2)
    api.mock.inject("credits", Fault.RATE_LIMIT)
    api.mock.inject("status", Fault.SERVER_ERROR)
    statuses = [(await api.fs_credits()).status for _ in range(4)]
    assert statuses == [500, 500, 429, 200]
    assert api.mock.pending_faults() == 1 and api.mock.pending_faults("status") == 1
    api.mock.clear_faults()
    assert api.mock.pending_faults() == 0
    task_id = await api.create("freesora")
    assert (await api.fs_status(task_id)).status == 200
    assert api.mock.counters.faults_fired == 3


async def test_faults_can_target_one_provider(api: Api) -> None:
    api.mock.inject("create", Fault.SERVER_ERROR, provider="sora2api")
    await api.create("freesora")
    assert (await api.s2_generate({"prompt": "x"})).status == 500


@pytest.mark.parametrize(
    ("endpoint", "fault", "kwargs"),
    [
        ("status", Fault.CREATED_THEN_500, {}),
        ("download", Fault.CREATED_THEN_DROP, {}),
        ("download", Fault.ENVELOPE_ERROR, {}),
        ("create", Fault.HTTP_ERROR, {}),
        ("create", Fault.HTTP_ERROR, {"status": 200}),
        ("create", Fault.SLOW, {"delay": -1}),
        ("create", Fault.DROP, {"times": 0}),
        ("upload", Fault.DROP, {}),
        ("create", "explode", {}),
        ("create", Fault.DROP, {"provider": "openai"}),
    ],
)
async def test_inject_rejects_nonsense(
    api: Api, endpoint: str, fault: Any, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        api.mock.inject(endpoint, fault, **kwargs)
    assert api.mock.pending_faults() == 0


# -- result files -------------------------------------------------------------------------


async def _finished(api: Api, clock: ManualClock, provider: str = "sora2api") -> tuple[str, str]:
    task_id = await api.create(provider)
    clock.advance(10)
    reply = await api.status(provider, task_id)
    if provider == "freesora":
        return task_id, reply.json["data"]["result_url"]
    return task_id, reply.json["data"]["response"]["imageUrl"]


async def _get(api: Api, url: str, headers: dict[str, str] | None = None) -> Reply:
    return await api.send("GET", url, key=None, headers=headers)


async def test_files_are_served_whole_with_content_length(api: Api, clock: ManualClock) -> None:
    task_id, url = await _finished(api, clock)
    reply = await _get(api, url)
    assert reply.status == 200
    assert reply.body == api.mock.file_bytes(task_id)
    assert int(reply.headers["Content-Length"]) == len(reply.body) == 256 * 1024
    assert reply.body[4:8] == b"ftyp"
    assert reply.headers["Content-Type"] == "video/mp4"
    assert reply.headers["Accept-Ranges"] == "bytes"
    counters = api.mock.counters
    assert (counters.downloads, counters.download_bytes) == (1, 256 * 1024)


async def test_single_ranges(api: Api, clock: ManualClock) -> None:
    task_id, url = await _finished(api, clock, "freesora")
    data = api.mock.file_bytes(task_id)
    size = len(data)
    cases = [
        ("bytes=100-199", 100, 199),
        ("bytes=1000-", 1000, size - 1),
        ("bytes=-50", size - 50, size - 1),
        ("bytes=10-99999999", 10, size - 1),
    ]
    for header, first, last in cases:
        reply = await _get(api, url, {"Range": header})
        assert reply.status == 206, header
        assert reply.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
        assert int(reply.headers["Content-Length"]) == last - first + 1
        assert reply.body == data[first : last + 1]
    assert api.mock.counters.download_bytes == sum(last - first + 1 for _, first, last in cases)


async def test_unsatisfiable_and_ignored_ranges(api: Api, clock: ManualClock) -> None:
    task_id, url = await _finished(api, clock)
    size = len(api.mock.file_bytes(task_id))
    unsatisfiable = await _get(api, url, {"Range": f"bytes={size}-"})
    assert unsatisfiable.status == 416
    assert unsatisfiable.headers["Content-Range"] == f"bytes */{size}"
    for ignored in ("bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=abc"):
        assert (await _get(api, url, {"Range": ignored})).status == 200, ignored


async def test_if_range_guards_resumes(api: Api, clock: ManualClock) -> None:
    _, url = await _finished(api, clock)
    etag = (await _get(api, url)).headers["ETag"]
    assert (await _get(api, url, {"Range": "bytes=5-", "If-Range": etag})).status == 206
    assert (await _get(api, url, {"Range": "bytes=5-", "If-Range": '"old"'})).status == 200


async def test_head_gives_the_size_without_the_body(api: Api, clock: ManualClock) -> None:
    _, url = await _finished(api, clock)
    reply = await api.send("HEAD", url, key=None)
    assert reply.status == 200 and reply.body == b""
    assert int(reply.headers["Content-Length"]) == 256 * 1024
    assert api.mock.counters.downloads == 0


async def test_only_finished_unexpired_files_exist(clock: ManualClock) -> None:
    config = MockConfig(task_seconds=10, jitter=0, retention_seconds=100, clock=clock)
    async with running(config) as api:
        pending = await api.create("sora2api")
        failed = await api.create("sora2api", "[fail]")
        base = api.mock.base_url + "/files/"
        assert (await _get(api, f"{base}{pending}.mp4")).status == 404
        clock.advance(10)
        assert (await _get(api, f"{base}{pending}.mp4")).status == 200
        assert (await _get(api, f"{base}{failed}.mp4")).status == 404
        assert (await _get(api, f"{base}sora2_task_unknown.mp4")).status == 404
        clock.advance(100)
        assert (await _get(api, f"{base}{pending}.mp4")).status == 404


async def test_file_bytes_are_deterministic_per_seed_and_task() -> None:
    a = MockServer(MockConfig(seed=1, file_size=4096))
    b = MockServer(MockConfig(seed=1, file_size=4096))
    c = MockServer(MockConfig(seed=2, file_size=4096))
    assert a.file_bytes("task_x") == b.file_bytes("task_x")
    assert a.file_bytes("task_x") != a.file_bytes("task_y")
    assert a.file_bytes("task_x") != c.file_bytes("task_x")
    assert len(a.file_bytes("task_x")) == 4096


@pytest.mark.parametrize(
    ("fault", "kwargs", "status"),
    [
        (Fault.SERVER_ERROR, {}, 500),
        (Fault.RATE_LIMIT, {"retry_after": 4}, 429),
        (Fault.HTTP_ERROR, {"status": 410}, 410),
    ],
)
async def test_download_error_faults(
    api: Api, clock: ManualClock, fault: Fault, kwargs: dict[str, Any], status: int
) -> None:
    _, url = await _finished(api, clock)
    api.mock.inject("download", fault, **kwargs)
    reply = await _get(api, url)
    assert reply.status == status
    if status == 429:
        assert reply.headers["Retry-After"] == "4"
    assert (await _get(api, url)).status == 200


async def test_download_drop_and_truncation(api: Api, clock: ManualClock) -> None:
    task_id, url = await _finished(api, clock)
    api.mock.inject("download", Fault.DROP, times=2)  # aiohttp may re-send a GET once
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await _get(api, url)
    api.mock.clear_faults()
    api.mock.inject("download", Fault.MALFORMED)
    with pytest.raises(aiohttp.ClientPayloadError):
        await _get(api, url)
    assert api.mock.counters.download_bytes == len(api.mock.file_bytes(task_id)) // 2
    assert (await _get(api, url)).body == api.mock.file_bytes(task_id)


async def test_file_size_is_configurable(clock: ManualClock) -> None:
    async with running(MockConfig(task_seconds=0, file_size=1000, clock=clock)) as api:
        task_id = await api.create("sora2api")
        record = (await api.s2_record(task_id)).json["data"]
        reply = await _get(api, record["response"]["imageUrl"])
        assert len(reply.body) == 1000 == len(api.mock.file_bytes(task_id))


# -- callbacks ----------------------------------------------------------------------------


class Receiver:
    """A tiny webhook endpoint that records what it is sent."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[Any] = []
        self.arrived = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _hook(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        self.arrived.set()
        return web.Response(status=self.status, text="ok")

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/webhook/sora2-callback", self._hook)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/webhook/sora2-callback"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def _wait_for(condition: Any) -> None:
    with anyio.fail_after(HANG_GUARD):
        # Counters announce nothing, so look at them until the background work shows.
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.01)


@pytest.mark.parametrize(("prompt", "flag"), [("a kite", 1), ("a kite [fail]", 3)])
async def test_callbacks_post_the_record_when_a_task_ends(
    api: Api, clock: ManualClock, prompt: str, flag: int
) -> None:
    async with Receiver() as receiver:
        body = {"prompt": prompt, "callBackUrl": receiver.url}
        task_id = (await api.s2_generate(body)).json["data"]["taskId"]
        clock.advance(10)
        # Nobody polls: the mock notices the end on its own.
        with anyio.fail_after(HANG_GUARD):
            await receiver.arrived.wait()
        (payload,) = receiver.received
        record = (await api.s2_record(task_id)).json["data"]
        assert payload == {"code": 200, "msg": "success", "data": record}
        assert payload["data"]["successFlag"] == flag
        assert json.loads(record["paramJson"])["callBackUrl"] == receiver.url
        assert api.mock.counters.callbacks_sent == 1


async def test_dropped_callbacks_are_counted_not_sent(clock: ManualClock) -> None:
    config = MockConfig(task_seconds=10, jitter=0, drop_callbacks=True, clock=clock)
    async with Receiver() as receiver, running(config) as api:
        task_id = (await api.s2_generate({"prompt": "x", "callBackUrl": receiver.url})).json
        clock.advance(10)
        await api.s2_record(task_id["data"]["taskId"])
        assert api.mock.counters.callbacks_dropped == 1
        assert api.mock.counters.callbacks_sent == 0 and receiver.received == []


async def test_failed_deliveries_are_counted_and_logged_without_tokens(
    api: Api, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with Receiver(status=500) as receiver:
        await api.s2_generate({"prompt": "x", "callBackUrl": receiver.url + "?token=hush-123"})
        clock.advance(10)
        await _wait_for(lambda: api.mock.counters.callbacks_failed == 1)
        assert len(receiver.received) == 1
    closed_url = receiver.url  # the receiver is gone: the connection is refused
    await api.s2_generate({"prompt": "y", "callBackUrl": closed_url})
    clock.advance(10)
    await _wait_for(lambda: api.mock.counters.callbacks_failed == 2)
    assert api.mock.counters.callbacks_sent == 0
    assert "hush-123" not in caplog.text


# -- counters and controls ----------------------------------------------------------------


async def test_counters_add_up(api: Api, clock: ManualClock) -> None:
    first = await api.create("freesora", "same prompt")
    await api.create("sora2api", "same prompt")
    await api.create("sora2api", "other prompt")
    before = api.mock.counters.snapshot()
    for _ in range(3):
        await api.fs_status(first)
    await api.fs_credits()
    clock.advance(10)
    _, url = await _finished(api, clock)
    await _get(api, url)
    counters = api.mock.counters
    assert counters.requests == {"create": 4, "status": 4, "credits": 1, "download": 1}
    assert counters.creates == 4
    assert counters.creates_by_prompt == {"same prompt": 2, "other prompt": 1, "a red kite": 1}
    assert counters.polls == 4 and counters.polls_by_task[first] == 3
    assert counters.max_live_tasks == 3
    assert before.polls == 0 and before.requests["status"] == 0  # a snapshot does not move
    assert json.loads(json.dumps(counters.as_dict()))["creates"] == 4
    assert api.mock.task(first).polls == 3
    with pytest.raises(KeyError):
        api.mock.task("task_never")


async def test_set_credits_validates(api: Api) -> None:
    with pytest.raises(ValueError):
        api.mock.set_credits(KEY, -1)
    api.mock.set_credits(KEY, 5)
    assert api.mock.credits(KEY) == 5 and api.mock.credits(OTHER) == 1_000_000


# -- server, app, config ------------------------------------------------------------------


async def test_server_addresses_and_single_use(clock: ManualClock) -> None:
    mock = MockServer(MockConfig(clock=clock))
    with pytest.raises(RuntimeError):
        _ = mock.base_url
    async with mock:
        assert mock.port > 0
        assert mock.base_url == f"http://127.0.0.1:{mock.port}"
        assert mock.freesora_url == mock.url_for("freesora") == mock.base_url + "/api"
        assert mock.sora2api_url == mock.url_for("sora2api") == mock.base_url + "/api/v1/sora2"
        with pytest.raises(ValueError):
            mock.url_for("openai")
    await mock.close()
    with pytest.raises(RuntimeError):
        await mock.start()


async def test_serve_runs_until_cancelled() -> None:
    started: list[MockServer] = []
    async with anyio.create_task_group() as group:
        config = MockConfig(task_seconds=0)
        group.start_soon(functools.partial(serve, "127.0.0.1", 0, config, ready=started.append))
        await _wait_for(lambda: started)
        async with aiohttp.ClientSession() as session:
            api = Api(session, started[0])
            assert (await api.fs_credits()).status == 200
        group.cancel_scope.cancel()


async def test_create_app_mounts_under_a_prefix(clock: ManualClock) -> None:
    sub = create_app(MockConfig(task_seconds=0, clock=clock))
    parent = web.Application()
    parent.add_subapp("/mock/", sub)
    runner = web.AppRunner(parent)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    root = f"http://127.0.0.1:{runner.addresses[0][1]}/mock"
    headers = {"Authorization": f"Bearer {KEY}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.post(f"{root}/api/v1/sora2/generate", json={"prompt": "x"}) as rsp:
                task_id = (await rsp.json())["data"]["taskId"]
            async with session.get(f"{root}/api/v1/sora2/record-info?taskId={task_id}") as rsp:
                url = (await rsp.json())["data"]["response"]["imageUrl"]
            assert url == f"{root}/files/{task_id}.mp4"
            async with session.get(url) as rsp:
                assert await rsp.read() == state_of(sub).file_bytes(task_id)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"task_seconds": -1},
        {"task_seconds": float("nan")},
        {"jitter": 1.0},
        {"failure_rate": 1.5},
        {"cap": 0},
        {"cap": 2.5},
        {"file_size": 10},
        {"initial_credits": -1},
        {"fail_marker": ""},
        {"api_keys": {""}},
        {"clock": 5},
        {"tick_interval": 0},
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        MockConfig(**kwargs)


def test_config_defaults_and_key_privacy() -> None:
    config = MockConfig(api_keys="only-key")
    assert config.api_keys == frozenset({"only-key"})
    assert "only-key" not in repr(config)
    default = MockConfig()
    assert (default.task_seconds, default.jitter, default.cap, default.file_size) == (
        5.0,
        0.2,
        20,
        256 * 1024,
    )
    assert (default.fail_marker, default.cap_retry_after, default.initial_credits) == (
        "[fail]",
        1.0,
        1_000_000,
    )
    assert default.api_keys is None and default.drop_callbacks is False
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        default.cap = 5  # type: ignore[misc]
