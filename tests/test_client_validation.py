"""Bad input is refused before anything is sent, and the error says which field and why.

Every case runs against a live mock whose counters must stay at zero: no request of any kind,
no task, no slot taken. Field errors are ValidationError naming ``field`` and the allowed
values; configuration errors are ConfigurationError, raised by the constructor.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import attrs
import pytest
from helpers import KEY, PROVIDERS, client_for, running_mock, tiny_png, total_requests

from sora_async import (
    ConfigurationError,
    SoraClient,
    SoraError,
    ValidationError,
    VideoRequest,
)
from sora_async.images import MAX_IMAGE_BYTES
from sora_async.mock import MockServer

pytestmark = pytest.mark.anyio


def assert_names(exc: ValidationError, field: str, *allowed: str) -> None:
    """The error names the field and the allowed values, as attributes and in its message."""
    assert exc.field == field, exc
    assert exc.allowed and exc.allowed in str(exc)
    assert f"invalid {field}=" in str(exc)
    for value in allowed:
        assert value in exc.allowed, (value, exc.allowed)


def assert_nothing_sent(mock: MockServer, client: SoraClient | None = None) -> None:
    assert total_requests(mock) == 0, mock.counters.requests
    assert mock.counters.creates == 0 and mock.tasks() == []
    if client is not None:
        stats = client.governor.statistics()
        assert (stats.held, stats.live, stats.waiting) == (0, 0, 0)
        assert client.unfinished_tasks == {}


# -- fields every provider refuses: the request cannot even be built ------------------------

MODELS = ("sora-2", "sora-2-pro", "sora-2-stable")


@pytest.mark.parametrize(
    ("fields", "field", "allowed"),
    [
        ({"prompt": ""}, "prompt", ["non-empty"]),
        ({"prompt": "   \n\t"}, "prompt", ["non-empty"]),
        ({"prompt": None}, "prompt", ["string"]),
        ({"model": "sora-3"}, "model", MODELS),
        ({"model": ""}, "model", MODELS),
        ({"duration": 12}, "duration", ["10", "15"]),
        ({"duration": 0}, "duration", ["10", "15"]),
        ({"duration": "12"}, "duration", ["10", "15"]),
        ({"duration": True}, "duration", ["10", "15"]),
        ({"aspect_ratio": "4:3"}, "aspect_ratio", ["16:9", "9:16", "landscape", "portrait"]),
        ({"aspect_ratio": "square"}, "aspect_ratio", ["16:9", "9:16"]),
        ({"quality": "ultra"}, "quality", ["standard", "hd"]),
        ({"image": 42}, "image", ["path", "bytes", "URL"]),
        ({"image": b""}, "image", ["path", "bytes", "URL"]),
        ({"public": "yes"}, "public", ["true or false"]),
        ({"watermark": 7}, "watermark", ["string"]),
        ({"callback_url": 7}, "callback_url", ["string"]),
    ],
)
async def test_a_bad_field_is_refused_before_any_request(
    fields: dict[str, Any], field: str, allowed: list[str]
) -> None:
    async with running_mock() as mock:
        request = {"prompt": "a kite", **fields}
        with pytest.raises(ValidationError) as caught:
            VideoRequest(**request)
        assert_names(caught.value, field, *allowed)
        assert isinstance(caught.value, ValueError)
        assert_nothing_sent(mock)


def test_of_several_bad_fields_the_first_in_field_order_is_named() -> None:
    bad: dict[str, Any] = {
        "duration": 12,
        "image": 42,
        "watermark": 7,
        "public": "yes",
        "callback_url": 7,
        "remix_target_id": "has spaces",
    }
    names = list(bad)
    for first in range(len(names)):
        fields = {name: bad[name] for name in names[first:]}
        with pytest.raises(ValidationError) as caught:
            VideoRequest("a kite", **fields)
        assert_names(caught.value, names[first])
    with pytest.raises(ValidationError) as caught:
        VideoRequest("", **bad)  # the prompt before them all
    assert_names(caught.value, "prompt")
    with pytest.raises(ValidationError) as caught:
        attrs.evolve(VideoRequest("a kite"), public="yes")  # a copy is checked as well
    assert_names(caught.value, "public")


# -- fields one provider cannot honour ----------------------------------------------------

PNG = tiny_png()
UNSET = "unset (None)"


def _image_file(tmp_path: Path, kind: str) -> str:
    """A local image argument of the given kind, made in ``tmp_path``."""
    path = tmp_path / f"{kind}.png"
    if kind == "missing":
        return str(path)
    if kind == "directory":
        path.mkdir()
    elif kind == "text":
        path.write_text("this is not an image\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "too-large":
        with path.open("wb") as handle:
            handle.write(PNG)
            handle.truncate(MAX_IMAGE_BYTES + 1)  # sparse: nothing big is written
    elif kind == "png":
        path.write_bytes(PNG)
    return str(path)


FREESORA_CASES: list[tuple[str, dict[str, Any], str, list[str]]] = [
    ("duration of sora-2", {"duration": 10}, "duration", ["sora-2-stable"]),
    ("duration of sora-2-pro", {"model": "sora-2-pro", "duration": 15}, "duration", ["10 or 15"]),
    ("quality", {"quality": "hd"}, "quality", [UNSET]),
    ("watermark", {"watermark": "My Mark"}, "watermark", [UNSET]),
    ("callback_url", {"callback_url": "https://hooks.example.com/x"}, "callback_url", [UNSET]),
    ("ftp image", {"image": "ftp://files.example.com/a.png"}, "image", ["http(s) URL"]),
    ("data URL image", {"image": "data:image/png;base64,AAAA"}, "image", ["http(s) URL"]),
    ("bytes not an image", {"image": b"GIF-ish but not"}, "image", ["PNG, JPEG, GIF or WEBP"]),
    ("bytes too large", {"image": PNG + bytes(MAX_IMAGE_BYTES)}, "image", ["10 MiB"]),
]
SORA2API_CASES: list[tuple[str, dict[str, Any], str, list[str]]] = [
    ("model sora-2-pro", {"model": "sora-2-pro"}, "model", ["sora-2"]),
    ("model sora-2-stable", {"model": "sora-2-stable"}, "model", ["sora-2"]),
    ("duration", {"duration": 10}, "duration", [UNSET]),
    ("public", {"public": True}, "public", [UNSET]),
    ("image bytes", {"image": PNG}, "image", ["http(s) URL"]),
    ("blank watermark", {"watermark": "  "}, "watermark", ["non-empty"]),
    ("callback_url not a URL", {"callback_url": "hooks.example.com"}, "callback_url", ["http"]),
    ("ftp image", {"image": "ftp://files.example.com/a.png"}, "image", ["http(s) URL"]),
]


@pytest.mark.parametrize(
    ("provider", "fields", "field", "allowed"),
    [pytest.param("freesora", *case[1:], id=f"freesora-{case[0]}") for case in FREESORA_CASES]
    + [pytest.param("sora2api", *case[1:], id=f"sora2api-{case[0]}") for case in SORA2API_CASES],
)
async def test_a_field_the_provider_cannot_honour_is_refused(
    provider: str, fields: dict[str, Any], field: str, allowed: list[str]
) -> None:
    request = VideoRequest("a kite", **fields)
    async with running_mock() as mock, client_for(mock, provider) as client:
        with pytest.raises(ValidationError) as caught:
            await client.create(request)
        assert_names(caught.value, field, *allowed)
        with pytest.raises(ValidationError):
            await client.generate(request)
        with pytest.raises(ValidationError):
            await client.prepare(request)
        assert_nothing_sent(mock, client)


@pytest.mark.parametrize(
    ("provider", "kind", "reason"),
    [
        ("freesora", "missing", "no such file"),
        ("freesora", "directory", "a directory"),
        ("freesora", "text", "not a PNG"),
        ("freesora", "empty", "empty"),
        ("freesora", "too-large", "over the"),
        ("sora2api", "png", "only http(s) image URLs"),
        ("sora2api", "missing", "only http(s) image URLs"),
    ],
)
async def test_a_local_image_that_cannot_be_sent_is_refused(
    provider: str, kind: str, reason: str, tmp_path: Path
) -> None:
    image = _image_file(tmp_path, kind)
    async with running_mock() as mock, client_for(mock, provider) as client:
        with pytest.raises(ValidationError) as caught:
            await client.create(VideoRequest("animate this", image=image))
        assert_names(caught.value, "image")
        assert caught.value.reason is not None and reason in caught.value.reason
        # The value refused is kept and shown; the message cuts a long one (tmp_path's length
        # depends on the machine and the xdist worker), so only its start is looked for.
        assert caught.value.value == image
        assert repr(image)[:40] in str(caught.value)
        if provider == "freesora":
            assert "PNG, JPEG, GIF or WEBP" in caught.value.allowed
        else:
            assert caught.value.allowed == "an http(s) URL"
        assert_nothing_sent(mock, client)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_other_bad_arguments_send_nothing(provider: str) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        with pytest.raises(ValidationError) as caught:
            await client.create(42)  # type: ignore[arg-type]
        assert caught.value.field == "request"
        for task_id in ("", "   "):
            with pytest.raises(SoraError):
                await client.status(task_id)
            with pytest.raises(SoraError):
                await client.wait(task_id)
        assert_nothing_sent(mock, client)


# -- configuration -------------------------------------------------------------------------


async def test_a_missing_api_key_is_a_configuration_error() -> None:
    async with running_mock() as mock:
        url = mock.url_for("freesora")
        for key in (None, "", "   "):
            with pytest.raises(ConfigurationError, match="SORA_API_KEY"):
                SoraClient("freesora", key, base_url=url, env={})
        # An empty variable is no key either.
        with pytest.raises(ConfigurationError, match="SORA_API_KEY"):
            SoraClient("freesora", base_url=url, env={"SORA_API_KEY": ""})
        assert_nothing_sent(mock)


@pytest.mark.parametrize(
    ("options", "env", "words"),
    [
        ({"provider": "openai"}, {}, ["openai", "freesora, sora2api"]),
        ({"provider": "freesora "}, {}, ["freesora, sora2api"]),
        ({}, {"SORA_PROVIDER": "runway"}, ["runway", "freesora, sora2api"]),
        ({"base_url": "ftp://127.0.0.1/api"}, {}, ["base_url", "http"]),
        ({"base_url": "127.0.0.1:8080/api"}, {}, ["base_url", "http"]),
        ({"base_url": ""}, {}, ["base_url"]),
        ({}, {"SORA_BASE_URL": "file:///etc/passwd"}, ["base_url"]),
        ({"max_concurrent_tasks": 0}, {}, ["max_concurrent_tasks", "positive"]),
        ({"max_concurrent_tasks": -2}, {}, ["max_concurrent_tasks"]),
        ({}, {"SORA_MAX_CONCURRENT_TASKS": "0"}, ["max_concurrent_tasks"]),
        ({}, {"SORA_MAX_CONCURRENT_TASKS": "lots"}, ["max_concurrent_tasks"]),
        ({"poll_interval": 0}, {}, ["poll_interval"]),
        ({"poll_interval": -1.0}, {}, ["poll_interval"]),
        ({"poll_interval": math.nan}, {}, ["poll_interval"]),
        ({"wait_timeout": 0}, {}, ["wait_timeout"]),
        ({"max_downloads": 0}, {}, ["max_downloads"]),
        ({"redis_url": "http://127.0.0.1:6379/0"}, {}, ["redis_url", "redis://"]),
        ({"callback_receiver": True}, {}, ["callback"]),
    ],
)
async def test_bad_configuration_is_refused_by_the_constructor(
    options: dict[str, Any], env: dict[str, str], words: list[str]
) -> None:
    async with running_mock() as mock:
        settings: dict[str, Any] = {
            "provider": "freesora",
            "api_key": KEY,
            "base_url": mock.url_for("freesora"),
            **options,
        }
        for name in ("SORA_PROVIDER", "SORA_BASE_URL"):
            if name in env:
                settings.pop(name.removeprefix("SORA_").lower(), None)
        with pytest.raises(ConfigurationError) as caught:
            SoraClient(env=env, **settings)
        for word in words:
            assert word in str(caught.value), (word, str(caught.value))
        assert_nothing_sent(mock)


async def test_the_environment_is_used_when_no_argument_is_given() -> None:
    # The counterpart of the errors above: the same settings by environment are accepted.
    async with running_mock() as mock:
        env = {
            "SORA_PROVIDER": "sora2api",
            "SORA_API_KEY": KEY,
            "SORA_BASE_URL": mock.url_for("sora2api") + "/",
            "SORA_MAX_CONCURRENT_TASKS": "3",
            "SORA_POLL_INTERVAL": "0.2",
        }
        async with SoraClient(env=env, expected_duration=0.5) as client:
            assert client.provider == "sora2api"
            assert client.governor.statistics().total == 3
            assert (await client.generate(VideoRequest("a kite"))).ok
        assert mock.counters.creates == 1


@pytest.mark.parametrize("expected_duration", [-5.0, 0.0, float("nan"), float("inf")])
def test_a_bad_expected_duration_is_refused_before_anything_is_created(
    expected_duration: float,
) -> None:
    with pytest.raises(ConfigurationError, match="expected_duration"):
        SoraClient("freesora", KEY, expected_duration=expected_duration, env={})


def test_a_callback_public_url_without_a_listen_address_is_refused() -> None:
    env = {"SORA_CALLBACK_PUBLIC_URL": "https://hooks.example.test/cb"}
    with pytest.raises(ConfigurationError, match="SORA_CALLBACK_LISTEN"):
        SoraClient("sora2api", KEY, env=env)
