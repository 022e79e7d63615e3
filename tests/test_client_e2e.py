"""SoraClient end to end against the mock server, for both providers, over 127.0.0.1.

Text-to-video and image-to-video, success and failure, progress, downloads, credits and the
client's lifecycle. What the mock received (``mock.task``) and counted (``mock.counters``) is
the evidence; nothing inside the SDK is patched.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import IMAGE_URL, KEY, PROVIDERS, client_for, running_mock, tiny_png, total_requests

from sora_async import (
    ConfigurationError,
    DownloadError,
    Model,
    NotSupportedError,
    SoraClient,
    TaskFailedError,
    TaskResult,
    TaskState,
    TaskStatus,
    VideoRequest,
)
from sora_async.mock import MockConfig, MockServer
from sora_async.models import RETENTION
from sora_async.polling import DurationKey
from sora_async.providers.freesora import freesora_price

pytestmark = pytest.mark.anyio

INITIAL_CREDITS = 1_000_000


def file_url(mock: MockServer, task_id: str) -> str:
    return f"{mock.base_url}/files/{task_id}.mp4"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- text to video -------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_text_to_video_succeeds(provider: str) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        request = VideoRequest("a red kite over the sea")
        before = dt.datetime.now(dt.timezone.utc)
        result = await client.generate(request)
        after = dt.datetime.now(dt.timezone.utc)

        assert result.ok and result.state == "succeeded"
        assert result.task_id is not None and result.request == request
        assert result.video_urls == [file_url(mock, result.task_id)]
        assert result.error is None
        record = mock.task(result.task_id)
        assert record.provider == provider and record.prompt == request.prompt
        assert record.state == "succeeded"
        assert mock.counters.creates == 1 and mock.counters.requests["create"] == 1
        assert mock.counters.creates_by_prompt == {request.prompt: 1}
        # Files are kept 15 days from completion, which happened while generate() ran
        # (sora2api's completeTime has whole seconds).
        assert result.expires_at is not None
        assert before.replace(microsecond=0) + RETENTION <= result.expires_at <= after + RETENTION
        assert result.raise_for_state() is result
        assert client.unfinished_tasks == {}
        assert client.governor.statistics().held == 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_create_status_wait_step_by_step(provider: str) -> None:
    async with running_mock(task_seconds=0.6) as mock, client_for(mock, provider) as client:
        task_id = await client.create(VideoRequest("a lighthouse at dusk"))
        assert mock.task(task_id).prompt == "a lighthouse at dusk"
        assert client.unfinished_tasks == {task_id: VideoRequest("a lighthouse at dusk")}
        assert client.governor.statistics().live == 1

        status = await client.status(task_id)
        assert isinstance(status, TaskStatus)
        assert status.task_id == task_id
        assert status.state in ("pending", "running") and not status.is_terminal
        assert status.video_urls == [] and status.error is None

        result = await client.wait(task_id)
        assert result.ok and result.task_id == task_id
        assert result.request == VideoRequest("a lighthouse at dusk")
        assert result.video_urls == [file_url(mock, task_id)]
        # A terminal status gives the slot back.
        assert client.governor.statistics().held == 0 and client.unfinished_tasks == {}
        assert mock.counters.creates == 1
        assert mock.counters.polls_by_task[task_id] == mock.counters.requests["status"]


async def test_request_fields_reach_freesora() -> None:
    async with running_mock() as mock, client_for(mock, "freesora") as client:
        request = VideoRequest(
            "a city at night",
            model="sora-2-stable",
            aspect_ratio="portrait",
            duration=15,
            public=False,
        )
        result = await client.generate(request)
        assert result.ok and result.task_id is not None
        assert mock.task(result.task_id).params == {
            "model": "sora-2-stable",
            "prompt": "a city at night",
            "aspectRatio": "9:16",
            "duration": 15,
            "isPublic": False,
        }
        assert mock.task(result.task_id).cost == freesora_price(Model.SORA_2_STABLE, 15)


async def test_request_fields_reach_sora2api() -> None:
    async with running_mock() as mock, client_for(mock, "sora2api") as client:
        request = VideoRequest(
            "a city at night", aspect_ratio="16:9", quality="hd", watermark="My Mark"
        )
        result = await client.generate(request)
        assert result.ok and result.task_id is not None
        assert mock.task(result.task_id).params == {
            "prompt": "a city at night",
            "aspectRatio": "landscape",
            "quality": "hd",
            "watermark": "My Mark",
        }


# -- image to video ------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["path", "pathlike", "bytes"])
async def test_freesora_sends_a_local_image_as_a_data_url(source: str, tmp_path: Path) -> None:
    png = tiny_png()
    image_file = tmp_path / "frame.png"
    image_file.write_bytes(png)
    image: Any = {"path": str(image_file), "pathlike": image_file, "bytes": png}[source]
    async with running_mock() as mock, client_for(mock, "freesora") as client:
        result = await client.generate(VideoRequest("animate this frame", image=image))
        assert result.ok and result.task_id is not None
        params = mock.task(result.task_id).params
        assert params["imageData"] == "data:image/png;base64," + base64.b64encode(png).decode()
        assert "url" not in params


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_image_url_is_passed_on(provider: str) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        result = await client.generate(VideoRequest("animate this frame", image=IMAGE_URL))
        assert result.ok and result.task_id is not None
        params = mock.task(result.task_id).params
        if provider == "freesora":
            assert params["url"] == IMAGE_URL and "imageData" not in params
        else:
            assert params["imageUrls"] == [IMAGE_URL]


# -- failure -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_failed_task_is_returned_not_raised(provider: str) -> None:
    async with running_mock(sora2api_price=7) as mock, client_for(mock, provider) as client:
        before = await client.credits() if provider == "freesora" else None
        result = await client.generate(VideoRequest("a storm [fail]"))

        assert result.state == "failed" and not result.ok
        assert result.task_id is not None and result.video_urls == []
        assert result.error and result.expires_at is None
        assert mock.task(result.task_id).outcome == "fail_generation"
        with pytest.raises(TaskFailedError) as caught:
            result.raise_for_state()
        assert caught.value.task_id == result.task_id
        assert client.governor.statistics().held == 0
        # The failed task's credits came back: the balance is what it was before the create.
        assert mock.credits(KEY) == INITIAL_CREDITS
        if provider == "freesora":
            assert result.refunded is True
            assert before is not None and before.left_credits == INITIAL_CREDITS
            assert (await client.credits()).left_credits == INITIAL_CREDITS
        else:
            assert result.refunded is None  # sora2api says nothing about refunds
        assert mock.counters.refunds == 1


async def test_a_sora2api_creation_failure_is_reported() -> None:
    async with running_mock() as mock, client_for(mock, "sora2api") as client:
        result = await client.generate(VideoRequest("a storm [fail:create]"))
        assert result.state == "failed" and result.error is not None
        assert "creation failed" in result.error
        assert result.task_id is not None and mock.task(result.task_id).outcome == "fail_create"


# -- progress ------------------------------------------------------------------------------


async def test_freesora_wait_reports_rising_progress() -> None:
    seen: list[TaskStatus] = []
    async with running_mock(task_seconds=0.8) as mock, client_for(mock, "freesora") as client:
        task_id = await client.create(VideoRequest("a slow sunrise"))
        result = await client.wait(task_id, on_progress=seen.append)

    assert result.ok
    assert all(status.task_id == task_id for status in seen)
    progress = [status.progress for status in seen]
    assert None not in progress
    assert progress == sorted(progress), progress  # type: ignore[type-var]
    assert progress[-1] == 100 and seen[-1].state == "succeeded"
    assert any(0 < p < 100 for p in progress if p is not None), progress
    assert len(seen) == mock.counters.polls_by_task[task_id]


async def test_sora2api_wait_reports_every_status_without_progress() -> None:
    seen: list[TaskStatus] = []
    async with running_mock() as mock, client_for(mock, "sora2api") as client:
        task_id = await client.create(VideoRequest("a slow sunrise"))
        result = await client.wait(task_id, on_progress=seen.append)
    assert result.ok and seen[-1].state == "succeeded"
    assert all(status.progress is None for status in seen)
    assert len(seen) == mock.counters.polls_by_task[task_id]


# -- downloads -----------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_download_writes_the_served_bytes(provider: str, tmp_path: Path) -> None:
    async with running_mock(file_size=300_000) as mock, client_for(mock, provider) as client:
        result = await client.generate(VideoRequest("a kite"))
        assert result.task_id is not None
        paths = await client.download(result, tmp_path / "videos")

        assert paths == [tmp_path / "videos" / f"{result.task_id}.mp4"]
        assert sha256(paths[0].read_bytes()) == sha256(mock.file_bytes(result.task_id))
        assert os.listdir(tmp_path / "videos") == [f"{result.task_id}.mp4"]  # no .part left
        assert mock.counters.downloads == 1
        assert mock.counters.download_bytes == 300_000


async def test_download_names_files_as_asked(tmp_path: Path) -> None:
    async with running_mock() as mock, client_for(mock, "freesora") as client:
        result = await client.generate(VideoRequest("a kite"))
        assert result.task_id is not None
        paths = await client.download(
            result, tmp_path, filename=lambda res, index, count: f"clip-{index}-of-{count}.mp4"
        )
        assert paths == [tmp_path / "clip-0-of-1.mp4"]
        assert paths[0].read_bytes() == mock.file_bytes(result.task_id)


async def test_download_of_a_failed_result_sends_nothing(tmp_path: Path) -> None:
    async with running_mock() as mock, client_for(mock, "sora2api") as client:
        result = await client.generate(VideoRequest("a storm [fail]"))
        with pytest.raises(DownloadError):
            await client.download(result, tmp_path)
        assert mock.counters.requests["download"] == 0
        assert os.listdir(tmp_path) == []


# -- credits -------------------------------------------------------------------------------


async def test_freesora_credits_follow_the_price_table() -> None:
    async with running_mock() as mock, client_for(mock, "freesora") as client:
        start = await client.credits()
        assert start.left_credits == INITIAL_CREDITS == mock.credits(KEY)

        requests = [
            VideoRequest("a kite"),
            VideoRequest("a kite", model="sora-2-stable", duration=15),
            VideoRequest("a kite", model="sora-2-pro"),
        ]
        for request in requests:
            await client.create(request)
        spent = sum(freesora_price(r.model or Model.SORA_2, r.duration) for r in requests)
        assert spent == 100 + 150 + 375
        assert [client.estimate_credits(r) for r in requests] == [100, 150, 375]

        now = await client.credits()
        assert now.left_credits == INITIAL_CREDITS - spent == mock.credits(KEY)

        mock.set_credits(KEY, 42)
        assert (await client.credits()).left_credits == 42
        assert mock.counters.requests["credits"] == 3


async def test_sora2api_credits_are_not_supported_and_send_nothing() -> None:
    async with running_mock() as mock, client_for(mock, "sora2api") as client:
        with pytest.raises(NotSupportedError, match="sora2api"):
            await client.credits()
        assert client.estimate_credits(VideoRequest("a kite")) is None
        assert total_requests(mock) == 0


# -- lifecycle -----------------------------------------------------------------------------


def _uses(client: SoraClient, tmp_path: Path) -> dict[str, Any]:
    """One coroutine (or call) per public operation that needs an open client."""
    finished = TaskResult(
        task_id="task_x", request=None, state=TaskState.SUCCEEDED, video_urls=[IMAGE_URL]
    )
    return {
        "create": lambda: client.create(VideoRequest("a kite")),
        "status": lambda: client.status("task_x"),
        "wait": lambda: client.wait("task_x"),
        "generate": lambda: client.generate(VideoRequest("a kite")),
        "credits": client.credits,
        "download": lambda: client.download(finished, tmp_path),
        "adopt": lambda: client.adopt("task_x"),
    }


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_client_must_be_opened_first(provider: str, tmp_path: Path) -> None:
    async with running_mock() as mock:
        client = client_for(mock, provider)
        assert "unopened" in repr(client)
        for name, use in _uses(client, tmp_path).items():
            with pytest.raises(RuntimeError, match="not open"):
                await use()
            assert total_requests(mock) == 0, name
        with pytest.raises(RuntimeError, match="not open"):
            client.generate_many([VideoRequest("a kite")])
        assert total_requests(mock) == 0
        await client.aclose()  # closing an unopened client is allowed and final
        with pytest.raises(RuntimeError):
            await client.__aenter__()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_closed_client_stays_closed(provider: str, tmp_path: Path) -> None:
    async with running_mock() as mock:
        client = client_for(mock, provider)
        async with client:
            result = await client.generate(VideoRequest("a kite"))
        assert result.ok
        assert "closed" in repr(client)
        seen = mock.counters.snapshot().requests
        for name, use in _uses(client, tmp_path).items():
            with pytest.raises(RuntimeError, match="closed"):
                await use()
            assert mock.counters.requests == seen, name
        with pytest.raises(RuntimeError, match="closed"):
            client.generate_many([VideoRequest("a kite")])
        with pytest.raises(RuntimeError, match="closed"):
            async with client:
                pass
        await client.aclose()  # idempotent
        assert mock.counters.requests == seen


async def test_a_client_cannot_be_entered_twice() -> None:
    async with running_mock() as mock, client_for(mock, "freesora") as client:
        with pytest.raises(RuntimeError, match="opened"):
            await client.__aenter__()
        # The failed second entry did not close the first one.
        assert (await client.generate(VideoRequest("a kite"))).ok


async def test_the_client_learns_how_long_tasks_take() -> None:
    # The first poll comes one poll interval after the create, whatever the 180 s prior says;
    # what is seen is learned per kind of task (the schedule itself is tested in test_polling).
    async with (
        MockServer(MockConfig(task_seconds=0.3, jitter=0.0)) as mock,
        SoraClient("freesora", "k", base_url=mock.freesora_url, poll_interval=0.05) as client,
    ):
        assert client.learned_durations == {}
        started = time.monotonic()
        first = await client.generate(VideoRequest("a kite"))
        took = time.monotonic() - started
        kind = DurationKey("freesora", "sora-2", None, None)
        learned = client.learned_durations[kind]
        # Somewhere between creation and the poll that saw it done, never the 180 s guess.
        assert 0 < learned <= took
        assert mock.task(first.task_id or "").duration < took

        await client.generate(VideoRequest("a fox"))
        # An average: a second observation moves it.
        assert client.learned_durations[kind] != learned
        assert set(client.learned_durations) == {kind}


async def test_the_retry_policy_of_safe_calls_is_the_callers() -> None:
    from sora_async import RetryPolicy, ServerError
    from sora_async.mock import Fault

    quick = RetryPolicy(attempts=2, initial=0.01, maximum=0.01, timeout=5)
    async with (
        MockServer(MockConfig(task_seconds=0.1)) as mock,
        SoraClient("freesora", "k", base_url=mock.freesora_url, retry=quick) as client,
    ):
        mock.inject("credits", Fault.SERVER_ERROR, times=3)
        with pytest.raises(ServerError):
            await client.credits()
        assert mock.counters.requests["credits"] == 2  # two attempts, as the policy says
        assert (await client.credits()).left_credits == mock.credits("k")


@pytest.mark.parametrize("status", [409, 418])
async def test_an_unexpected_answer_to_a_create_leaves_its_outcome_unknown(status: int) -> None:
    # Only 400/401/403/402/404 (and 429) prove that no task was made; anything else may have
    # made one, so it is neither retried nor counted as "not created".
    from sora_async import CreateOutcomeUnknownError
    from sora_async.mock import Fault

    async with (
        MockServer(MockConfig(task_seconds=0.2)) as mock,
        SoraClient("freesora", "k", base_url=mock.freesora_url, env={}) as client,
    ):
        mock.inject("create", Fault.HTTP_ERROR, status=status)
        with pytest.raises(CreateOutcomeUnknownError):
            await client.create(VideoRequest("a kite"))
        assert mock.counters.requests["create"] == 1
        assert client.governor.statistics().held == 1  # held a while: a task may exist


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_generate_with_download_to_writes_the_files(provider: str, tmp_path: Path) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        result = await client.generate("a plain prompt", download_to=tmp_path / "videos")
        assert result.ok and result.task_id is not None
        [path] = result.files
        assert path.parent == tmp_path / "videos"
        assert path.read_bytes() == mock.file_bytes(result.task_id)


async def test_generate_into_a_file_not_a_folder_pays_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    async with running_mock() as mock, client_for(mock, "freesora") as client:
        with pytest.raises(ConfigurationError, match="download_to"):
            await client.generate("a kite", download_to=blocker / "videos")
        assert total_requests(mock) == 0
