"""The documents' own payloads: answers decode strictly, requests come out as the samples."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from sora_async.calls import Endpoint, RawResponse
from sora_async.errors import ProtocolError
from sora_async.images import PreparedImage
from sora_async.models import Credits, TaskState, VideoRequest
from sora_async.providers import get_provider
from sora_async.providers.freesora import FreeSora, FreeSoraTask
from sora_async.providers.sora2api import Sora2Api, Sora2ApiRecord, Sora2ApiResult

GOLDEN = Path(__file__).parent / "golden"
# The first bytes of a PNG: enough for the magic-byte check, and the base64 of the document's
# truncated sample ("iVBORw0KGgo...") starts the same way.
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24


def golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text())


def answer(name: str, endpoint: str) -> RawResponse:
    return RawResponse(
        endpoint=endpoint,
        status=200,
        headers={"content-type": "application/json"},
        body=(GOLDEN / name).read_bytes(),
    )


# --- freesora ------------------------------------------------------------------------------


def test_freesora_create_answer() -> None:
    raw = answer("freesora_create_response.json", Endpoint.CREATE)
    assert FreeSora(strict=True).decode_create(raw) == "task_1234567890"


def test_freesora_check_result_answer() -> None:
    status = FreeSora(strict=True).decode_status(
        "task_1234567890", answer("freesora_check_result_response.json", Endpoint.STATUS)
    )
    assert status.task_id == "task_1234567890"
    assert status.state is TaskState.RUNNING
    assert status.progress == 35
    # result_url and result_urls name the same file: one URL, not two.
    assert status.video_urls == ["https://your-domain.com/storage/videos/xxx.mp4"]
    assert status.error is None
    assert status.refunded is False
    assert isinstance(status.raw, FreeSoraTask)
    assert status.raw.result_pids == ["s_xxx"]
    assert status.raw.metadata == {
        "remixTargetId": "s_prev",
        "characters": [{"url": "https://.../hero.mp4", "timestamps": "0,3"}],
    }


def test_freesora_credits_answer() -> None:
    credits = FreeSora(strict=True).decode_credits(
        answer("freesora_credits_response.json", Endpoint.CREDITS)
    )
    assert credits == Credits(left_credits=120, is_recharged=True, is_pro=True, is_vip=False)


def test_freesora_strict_refuses_an_undocumented_field() -> None:
    body = golden("freesora_credits_response.json")
    body["data"]["bonus_credits"] = 5
    raw = RawResponse(Endpoint.CREDITS, 200, {}, json.dumps(body).encode())
    with pytest.raises(ProtocolError, match="bonus_credits"):
        FreeSora(strict=True).decode_credits(raw)
    # Production tolerates it: a provider adding a field must not break anyone.
    assert FreeSora().decode_credits(raw).left_credits == 120


def test_freesora_image_to_video_request_matches_the_sample() -> None:
    sample = golden("freesora_create_request.json")
    request = VideoRequest(
        sample["prompt"],
        model="sora-2-stable",
        image=PNG,
        aspect_ratio="9:16",
        duration=15,
        public=True,
    )
    call = FreeSora().create_call(request, PreparedImage(data=PNG, mime="image/png"))
    assert (call.method, call.path, call.endpoint) == ("POST", "/v1/video/sora-video", "create")
    assert call.json is not None
    payload = dict(call.json)
    image_data = payload.pop("imageData")
    expected_image = sample.pop("imageData")
    assert payload == sample
    # The document cuts its base64 short; the prefix and our own encoding are what can match.
    assert image_data.startswith(expected_image.removesuffix("..."))
    assert image_data == "data:image/png;base64," + base64.b64encode(PNG).decode()


def test_freesora_text_to_video_request_matches_the_sample_without_image() -> None:
    sample = golden("freesora_create_request.json")
    del sample["imageData"]
    request = VideoRequest(
        sample["prompt"], model="sora-2-stable", aspect_ratio="9:16", duration=15, public=True
    )
    call = FreeSora().create_call(request, None)
    assert call.json == sample


def test_freesora_minimal_request_omits_unset_fields() -> None:
    call = FreeSora().create_call(VideoRequest("a red kite"), None)
    assert call.json == {"model": "sora-2", "prompt": "a red kite"}


def test_freesora_image_url_goes_in_the_legacy_url_field() -> None:
    url = "https://example.com/a.png"
    request = VideoRequest("a red kite", image=url, aspect_ratio="landscape", public=False)
    call = FreeSora().create_call(request, PreparedImage(url=url))
    assert call.json == {
        "model": "sora-2",
        "prompt": "a red kite",
        "url": url,
        "aspectRatio": "16:9",
        "isPublic": False,
    }


def test_freesora_status_and_credits_calls() -> None:
    call = FreeSora().status_call("task_1234567890")
    assert (call.method, call.path, call.endpoint) == (
        "POST",
        "/video-generations/check-result",
        "status",
    )
    assert call.json == golden("freesora_check_result_request.json")
    assert call.params is None
    credits = FreeSora().credits_call()
    assert (credits.method, credits.path, credits.endpoint) == (
        "POST",
        "/get-user-credits",
        "credits",
    )


# --- sora2api ------------------------------------------------------------------------------


def test_sora2api_generate_answer() -> None:
    assert (
        Sora2Api(strict=True).decode_create(
            answer("sora2api_generate_response.json", Endpoint.CREATE)
        )
        == "sora2_task_abcdef123456"
    )


def test_sora2api_record_info_answer() -> None:
    status = Sora2Api(strict=True).decode_status(
        "sora2_task_abcdef123456", answer("sora2api_record_info_response.json", Endpoint.STATUS)
    )
    assert status.state is TaskState.SUCCEEDED
    assert status.video_urls == ["https://cdn.sora2api.ai/videos/example_video.mp4"]
    assert status.progress is None
    assert status.error is None
    assert status.refunded is None
    assert isinstance(status.raw, Sora2ApiRecord)
    assert status.raw.response == Sora2ApiResult(
        image_url="https://cdn.sora2api.ai/videos/example_video.mp4"
    )
    assert status.raw.create_time == "2024-03-20 10:25:00"
    assert status.raw.error_code == 0


def test_sora2api_strict_refuses_an_undocumented_field() -> None:
    body = golden("sora2api_record_info_response.json")
    body["data"]["response"]["thumbnailUrl"] = "https://cdn.example/x.jpg"
    raw = RawResponse(Endpoint.STATUS, 200, {}, json.dumps(body).encode())
    with pytest.raises(ProtocolError, match="thumbnailUrl"):
        Sora2Api(strict=True).decode_status("sora2_task_abcdef123456", raw)
    assert Sora2Api().decode_status("sora2_task_abcdef123456", raw).state is TaskState.SUCCEEDED


@pytest.mark.parametrize(
    ("golden_name", "request_kwargs"),
    [
        (
            "sora2api_generate_request_text.json",
            {"aspect_ratio": "landscape", "quality": "hd"},
        ),
        (
            "sora2api_generate_request_image.json",
            {
                "aspect_ratio": "landscape",
                "quality": "hd",
                "image": "https://example.com/source-image.jpg",
            },
        ),
        (
            "sora2api_generate_request_watermark.json",
            {"aspect_ratio": "portrait", "quality": "hd", "watermark": "My Watermark"},
        ),
        (
            "sora2api_generate_request_callback.json",
            {
                "aspect_ratio": "16:9",
                "quality": "hd",
                "callback_url": "https://your-app.com/webhook/sora2-callback",
            },
        ),
    ],
)
def test_sora2api_requests_match_the_samples(
    golden_name: str, request_kwargs: dict[str, Any]
) -> None:
    sample = golden(golden_name)
    request = VideoRequest(sample["prompt"], **request_kwargs)
    image = request.image
    prepared = PreparedImage(url=image) if isinstance(image, str) else None
    call = Sora2Api().create_call(request, prepared)
    assert (call.method, call.path, call.endpoint) == ("POST", "/generate", "create")
    assert call.json == sample


def test_sora2api_image_url_without_a_prepared_image() -> None:
    request = VideoRequest("x", image="https://example.com/source-image.jpg")
    call = Sora2Api().create_call(request, None)
    assert call.json == {"prompt": "x", "imageUrls": ["https://example.com/source-image.jpg"]}


def test_sora2api_status_call_is_a_get_with_the_task_id_as_query() -> None:
    call = Sora2Api().status_call("sora2_task_abcdef123456")
    assert (call.method, call.path, call.endpoint) == ("GET", "/record-info", "status")
    assert call.params == {"taskId": "sora2_task_abcdef123456"}
    assert call.json is None


# --- both ----------------------------------------------------------------------------------


def test_registry_gives_lenient_instances_with_the_documented_settings() -> None:
    freesora = get_provider("freesora")
    sora2api = get_provider("sora2api")
    assert isinstance(freesora, FreeSora)
    assert isinstance(sora2api, Sora2Api)
    assert freesora.default_base_url == "https://freesoragenerator.com/api"
    assert sora2api.default_base_url == "https://api.sora2api.ai/api/v1/sora2"
    assert 3.0 <= freesora.poll_profile.base_interval <= 5.0
    assert (freesora.supports_credits, freesora.supports_callbacks) == (True, False)
    assert (sora2api.supports_credits, sora2api.supports_callbacks) == (False, True)
    assert (freesora.accepts_image_bytes, sora2api.accepts_image_bytes) == (True, False)
