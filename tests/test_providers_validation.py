"""What each provider refuses before sending, and how task states and results are read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sora_async.calls import Endpoint, RawResponse
from sora_async.errors import (
    NotSupportedError,
    ProtocolError,
    UnknownStatusError,
    ValidationError,
)
from sora_async.images import PreparedImage
from sora_async.models import Model, TaskState, VideoRequest
from sora_async.providers.freesora import FreeSora, freesora_price
from sora_async.providers.sora2api import Sora2Api

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


def reject(provider: FreeSora | Sora2Api, request: VideoRequest, field: str) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        provider.check_request(request)
    assert info.value.field == field
    assert field in str(info.value)
    assert "allowed" in str(info.value)
    # create_call checks too: a client that forgets check_request still sends nothing wrong.
    with pytest.raises(ValidationError):
        provider.create_call(request, None)
    return info.value


# --- freesora ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [None, "sora-2", "sora-2-pro"])
@pytest.mark.parametrize("duration", [10, 15])
def test_freesora_duration_only_with_sora_2_stable(model: str | None, duration: int) -> None:
    error = reject(FreeSora(), VideoRequest("x", model=model, duration=duration), "duration")
    assert error.value == duration
    assert "sora-2-stable" in str(error)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quality", "hd"),
        ("quality", "standard"),
        ("watermark", "mine"),
        ("callback_url", "https://example.com/hook"),
    ],
)
def test_freesora_refuses_what_it_does_not_support(field: str, value: str) -> None:
    error = reject(FreeSora(), VideoRequest("x", **{field: value}), field)
    assert "freesora does not support" in str(error)


@pytest.mark.parametrize(
    "image", ["ftp://example.com/a.png", "data:image/png;base64,AAAA", "file:///etc/passwd"]
)
def test_freesora_refuses_image_urls_of_other_schemes(image: str) -> None:
    error = reject(FreeSora(), VideoRequest("x", image=image), "image")
    assert error.value == image


def test_freesora_accepts_every_supported_field() -> None:
    request = VideoRequest(
        "x",
        model="sora-2-stable",
        duration=10,
        aspect_ratio="portrait",
        public=False,
        image=PNG,
    )
    FreeSora().check_request(request)
    call = FreeSora().create_call(request, PreparedImage(data=PNG, mime="image/png"))
    assert call.json is not None
    assert call.json["duration"] == 10
    assert call.json["aspectRatio"] == "9:16"
    assert call.json["isPublic"] is False
    assert str(call.json["imageData"]).startswith("data:image/png;base64,")


def test_freesora_local_image_must_be_prepared_first() -> None:
    with pytest.raises(ValidationError) as info:
        FreeSora().create_call(VideoRequest("x", image=PNG), None)
    assert info.value.field == "image"


@pytest.mark.parametrize(
    ("model", "duration", "expected"),
    [
        (None, None, 100),
        ("sora-2", None, 100),
        ("sora-2-pro", None, 375),
        ("sora-2-stable", None, 100),
        ("sora-2-stable", 10, 100),
        ("sora-2-stable", 15, 150),
    ],
)
def test_freesora_estimate_credits(model: str | None, duration: int | None, expected: int) -> None:
    request = VideoRequest("x", model=model, duration=duration)
    assert FreeSora().estimate_credits(request) == expected
    assert expected == freesora_price(request.model or Model.SORA_2, duration)


# --- sora2api ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["sora-2-pro", "sora-2-stable"])
def test_sora2api_runs_only_sora_2(model: str) -> None:
    error = reject(Sora2Api(), VideoRequest("x", model=model), "model")
    assert error.value == model
    assert "sora-2" in error.allowed


@pytest.mark.parametrize(("field", "value"), [("duration", 10), ("duration", 15), ("public", True)])
def test_sora2api_refuses_what_it_does_not_support(field: str, value: Any) -> None:
    error = reject(Sora2Api(), VideoRequest("x", **{field: value}), field)
    assert "sora2api does not support" in str(error)


@pytest.mark.parametrize("image", [PNG, "cat.png", Path("cat.png"), "/srv/cat.png"])
def test_sora2api_takes_only_image_urls(image: Any) -> None:
    error = reject(Sora2Api(), VideoRequest("x", image=image), "image")
    assert "sora2api takes only http(s) image URLs" in str(error)


@pytest.mark.parametrize("image", ["ftp://example.com/a.png", "data:image/png;base64,AAAA"])
def test_sora2api_refuses_image_urls_of_other_schemes(image: str) -> None:
    reject(Sora2Api(), VideoRequest("x", image=image), "image")


@pytest.mark.parametrize("url", ["hook", "ftp://example.com/hook", "https://", "/relative"])
def test_sora2api_callback_must_be_an_http_url(url: str) -> None:
    reject(Sora2Api(), VideoRequest("x", callback_url=url), "callback_url")


def test_sora2api_watermark_must_not_be_blank() -> None:
    reject(Sora2Api(), VideoRequest("x", watermark="  "), "watermark")


def test_sora2api_accepts_every_supported_field() -> None:
    request = VideoRequest(
        "x",
        model="sora-2",
        aspect_ratio="9:16",
        quality="standard",
        watermark="w",
        callback_url="http://127.0.0.1:8080/cb",
        image="http://example.com/a.jpg",
    )
    Sora2Api().check_request(request)
    assert Sora2Api().create_call(request, PreparedImage(url="http://example.com/a.jpg")).json == {
        "prompt": "x",
        "imageUrls": ["http://example.com/a.jpg"],
        "aspectRatio": "portrait",
        "quality": "standard",
        "watermark": "w",
        "callBackUrl": "http://127.0.0.1:8080/cb",
    }
    assert Sora2Api().estimate_credits(request) is None


def test_sora2api_credits_is_not_supported() -> None:
    with pytest.raises(NotSupportedError, match="sora2api has no credits endpoint"):
        Sora2Api().credits_call()


@pytest.mark.parametrize("provider", [FreeSora(), Sora2Api()], ids=["freesora", "sora2api"])
@pytest.mark.parametrize("task_id", ["", "   "])
def test_status_call_needs_a_task_id(provider: FreeSora | Sora2Api, task_id: str) -> None:
    with pytest.raises(ValidationError) as info:
        provider.status_call(task_id)
    assert info.value.field == "task_id"


# --- task states ---------------------------------------------------------------------------


def status_raw(data: dict[str, Any], code: int) -> RawResponse:
    body = json.dumps({"code": code, "message": "ok", "data": data}).encode()
    return RawResponse(endpoint=Endpoint.STATUS, status=200, headers={}, body=body)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("pending", TaskState.PENDING),
        ("Queued", TaskState.PENDING),
        ("waiting", TaskState.PENDING),
        ("SUBMITTED", TaskState.PENDING),
        ("running", TaskState.RUNNING),
        ("processing", TaskState.RUNNING),
        ("generating", TaskState.RUNNING),
        ("in_progress", TaskState.RUNNING),
        ("In-Progress", TaskState.RUNNING),
        ("succeeded", TaskState.SUCCEEDED),
        ("success", TaskState.SUCCEEDED),
        (" Completed ", TaskState.SUCCEEDED),
        ("failed", TaskState.FAILED),
        ("error", TaskState.FAILED),
        ("cancelled", TaskState.FAILED),
    ],
)
def test_freesora_states(status: str, state: TaskState) -> None:
    result = FreeSora().decode_status("t", status_raw({"status": status}, 0))
    assert result.state is state
    assert (result.error is not None) == (state is TaskState.FAILED)


@pytest.mark.parametrize("status", ["canceled", "timeout", "levitating", ""])
def test_freesora_unknown_status_is_a_protocol_surprise_naming_it(status: str) -> None:
    # Not "still running": the poller asks again a few times, then gives the task up.
    with pytest.raises(UnknownStatusError) as info:
        FreeSora().decode_status("t", status_raw({"status": status}, 0))
    assert info.value.status == status
    assert repr(status) in str(info.value)
    assert isinstance(info.value, ProtocolError)


@pytest.mark.parametrize(
    ("progress", "expected"),
    [(35, 35), (-5, 0), (250, 100), (42.6, 43), (0, 0), (100, 100), (None, None)],
)
def test_freesora_progress_is_clamped(progress: float | None, expected: int | None) -> None:
    data: dict[str, Any] = {"status": "running", "progress": progress}
    assert FreeSora().decode_status("t", status_raw(data, 0)).progress == expected


def test_freesora_absent_progress_is_none() -> None:
    assert FreeSora().decode_status("t", status_raw({"status": "running"}, 0)).progress is None


def test_freesora_success_urls_are_deduplicated_in_order() -> None:
    data = {
        "status": "succeeded",
        "result_url": "https://cdn/b.mp4",
        "result_urls": ["https://cdn/a.mp4", "https://cdn/b.mp4", "", "https://cdn/a.mp4"],
    }
    status = FreeSora().decode_status("t", status_raw(data, 0))
    assert status.video_urls == ["https://cdn/b.mp4", "https://cdn/a.mp4"]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"failure_reason": "content policy", "error_message": "x"}, "content policy: x"),
        ({"failure_reason": "same", "error_message": "same"}, "same"),
        ({"failure_reason": "", "error_message": "timeout upstream"}, "timeout upstream"),
        ({"failure_reason": None}, "task ended with status 'failed'"),
    ],
)
def test_freesora_failure_reason_and_refund(data: dict[str, Any], error: str) -> None:
    body = {"status": "failed", "credits_refunded": True, "refund_trans_no": "R1", **data}
    status = FreeSora().decode_status("t", status_raw(body, 0))
    assert status.state is TaskState.FAILED
    assert status.error == error
    assert status.refunded is True


def test_freesora_create_accepts_task_id_spelling() -> None:
    body = json.dumps({"code": 0, "message": "ok", "data": {"taskId": "task_9"}}).encode()
    assert FreeSora().decode_create(RawResponse(Endpoint.CREATE, 200, {}, body)) == "task_9"


def record(flag: Any, **extra: Any) -> dict[str, Any]:
    return {"taskId": "t", "successFlag": flag, **extra}


@pytest.mark.parametrize(
    ("flag", "state"),
    [
        (0, TaskState.RUNNING),
        (1, TaskState.SUCCEEDED),
        (2, TaskState.FAILED),
        (3, TaskState.FAILED),
        (4, TaskState.RUNNING),
        (-1, TaskState.RUNNING),
    ],
)
def test_sora2api_states(flag: int, state: TaskState) -> None:
    status = Sora2Api().decode_status("t", status_raw(record(flag), 200))
    assert status.state is state
    assert status.progress is None


def test_sora2api_failures_say_which_kind() -> None:
    created = Sora2Api().decode_status(
        "t", status_raw(record(2, errorMessage="bad prompt", errorCode=400), 200)
    )
    assert created.error == "task creation failed: bad prompt (error code 400)"
    generated = Sora2Api().decode_status("t", status_raw(record(3, errorCode=0), 200))
    assert generated.error == "video generation failed"


@pytest.mark.parametrize(
    ("response", "urls"),
    [
        (None, []),
        ({}, []),
        ({"imageUrl": None}, []),
        ({"imageUrl": "https://cdn/v.mp4"}, ["https://cdn/v.mp4"]),
        (
            {"imageUrl": "https://cdn/v.mp4", "resultUrls": ["https://cdn/v.mp4", "https://cdn/w"]},
            ["https://cdn/v.mp4", "https://cdn/w"],
        ),
        ({"resultUrls": ["https://cdn/w"]}, ["https://cdn/w"]),
    ],
)
def test_sora2api_video_urls(response: Any, urls: list[str]) -> None:
    data = record(1) if response is None else record(1, response=response)
    assert Sora2Api().decode_status("t", status_raw(data, 200)).video_urls == urls


def test_sora2api_null_response_is_tolerated() -> None:
    status = Sora2Api().decode_status("t", status_raw(record(0, response=None), 200))
    assert status.video_urls == []


def test_sora2api_answer_about_another_task_is_refused() -> None:
    with pytest.raises(ProtocolError, match="other"):
        Sora2Api().decode_status("mine", status_raw({"taskId": "other", "successFlag": 1}, 200))
