"""The Python API's bad-input matrix, method arguments and per-field: one clear error, 0 requests.

tests/test_client_validation.py covers each VideoRequest field at construction; this matrix
adds what only the client can judge (fields a provider cannot honour, sent through create,
generate and generate_many) and the arguments of the methods themselves. Every case must raise
ValidationError naming the field, before any request reaches the mock (generate_many yields it
as a failed result instead, also with nothing sent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import PROVIDERS, client_for, running_mock, total_requests

from sora_async import (
    ConfigurationError,
    DownloadError,
    SoraClient,
    TaskState,
    ValidationError,
    VideoRequest,
)
from sora_async.models import MAX_PROMPT_CHARS, MAX_WATERMARK_CHARS

pytestmark = pytest.mark.anyio

BAD_TIMEOUTS: list[Any] = [-1, 0, 0.0, float("nan"), float("-inf"), True, "10"]

#: Fields one provider refuses when the request is sent (built fine, refused by the client).
PROVIDER_FIELDS: dict[str, list[tuple[dict[str, Any], str]]] = {
    "freesora": [
        ({"callback_url": "https://hooks.example.com/done"}, "callback_url"),
        ({"watermark": "mine"}, "watermark"),
        ({"image": "ftp://images.example.com/a.png"}, "image"),
    ],
    "sora2api": [
        ({"callback_url": "ftp://hooks.example.com/done"}, "callback_url"),
        ({"callback_url": "not a url"}, "callback_url"),
        ({"watermark": ""}, "watermark"),
        ({"image": "ftp://images.example.com/a.png"}, "image"),
        ({"remix_target_id": "s_prev"}, "remix_target_id"),
        ({"characters": [{"url": "https://cdn.example.com/a.mp4", "timestamps": "0,3"}]},
         "characters"),
    ],
}  # fmt: skip

Call = Callable[[SoraClient], Awaitable[object]]


async def first_result(client: SoraClient, items: list[Any], **options: Any) -> Any:
    async for result in client.generate_many(items, **options):
        return result
    raise AssertionError("generate_many yielded nothing")


def method_cases() -> list[tuple[str, Call, str]]:
    cases: list[tuple[str, Call, str]] = []
    for value in BAD_TIMEOUTS:
        cases += [
            (f"wait timeout={value!r}", lambda c, v=value: c.wait("task_0a1b2c3d4e5f", timeout=v),
             "timeout"),
            (f"generate timeout={value!r}", lambda c, v=value: c.generate("a kite", timeout=v),
             "timeout"),
            (f"generate_many timeout={value!r}",
             lambda c, v=value: first_result(c, ["a kite"], timeout=v), "timeout"),
        ]  # fmt: skip
    for value in (42, None, "", "   ", b"task_1"):
        cases += [
            (f"status {value!r}", lambda c, v=value: c.status(v), "task_id"),
            (f"wait {value!r}", lambda c, v=value: c.wait(v), "task_id"),
        ]
    for value in (42, None, b"a kite", ["a kite"]):
        cases += [
            (f"create {value!r}", lambda c, v=value: c.create(v), "request"),
            (f"generate {value!r}", lambda c, v=value: c.generate(v), "request"),
        ]
    return cases


METHOD_CASES = method_cases()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_every_bad_method_argument_is_refused_before_any_request(provider: str) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        for name, call, field in METHOD_CASES:
            with pytest.raises(ValidationError) as caught:
                await call(client)
            assert caught.value.field == field, (name, caught.value)
            assert f"invalid {field}=" in str(caught.value) and caught.value.allowed, name
        assert total_requests(mock) == 0, mock.counters.requests
        assert mock.tasks() == [] and client.unfinished_tasks == {}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_every_field_a_provider_refuses_sends_nothing_on_every_path(provider: str) -> None:
    async with running_mock() as mock, client_for(mock, provider) as client:
        for fields, field in PROVIDER_FIELDS[provider]:
            request = VideoRequest("a kite", **fields)
            for call in (client.create, client.generate):
                with pytest.raises(ValidationError) as caught:
                    await call(request)
                assert caught.value.field == field, (fields, caught.value)
            result = await first_result(client, [request])
            assert result.state is TaskState.FAILED and result.task_id is None
            assert isinstance(result.exception, ValidationError)
            assert result.exception.field == field
        # Bad items in a fan-out fail alone; nothing is sent for them.
        results = [r async for r in client.generate_many([42, "", "  "])]
        assert [r.state for r in results] == [TaskState.FAILED] * 3
        assert all(isinstance(r.exception, ValidationError) for r in results)
        assert total_requests(mock) == 0, mock.counters.requests
        assert client.governor.statistics().held == 0


# -- text fields no provider can take, files and knobs ---------------------------------------

BAD_TEXT: list[tuple[str, str]] = [
    ("a kite\x00over the sea", "control character U+0000"),
    ("a kite \x1b[31mred", "control character U+001B"),
    ("a kite\x7f", "control character U+007F"),
    ("a kite \ud800", "lone surrogate"),
    ("k" * (MAX_PROMPT_CHARS + 1), f"over the limit of {MAX_PROMPT_CHARS}"),
]


@pytest.mark.parametrize(("prompt", "reason"), BAD_TEXT, ids=[r for _, r in BAD_TEXT])
async def test_a_prompt_no_provider_can_take_is_refused_on_every_path(
    prompt: str, reason: str
) -> None:
    with pytest.raises(ValidationError, match="prompt") as caught:
        VideoRequest(prompt)
    assert reason in str(caught.value)
    assert len(str(caught.value)) < 400  # a huge prompt is not echoed whole
    async with running_mock() as mock, client_for(mock, "freesora") as client:
        with pytest.raises(ValidationError) as from_generate:
            await client.generate(prompt)
        assert from_generate.value.field == "prompt"
        result = await first_result(client, [prompt])
        assert result.state is TaskState.FAILED and result.task_id is None
        assert isinstance(result.exception, ValidationError)
        assert result.exception.field == "prompt"
        assert total_requests(mock) == 0


def test_line_breaks_and_tabs_stay_allowed_in_a_prompt() -> None:
    assert VideoRequest("a kite\n\tover the sea\r\n").prompt.startswith("a kite")
    assert len(VideoRequest("k" * MAX_PROMPT_CHARS).prompt) == MAX_PROMPT_CHARS


@pytest.mark.parametrize(
    "watermark", ["mine\x00", "w" * (MAX_WATERMARK_CHARS + 1), 42], ids=["nul", "huge", "int"]
)
def test_a_watermark_no_provider_can_take_is_refused(watermark: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        VideoRequest("a kite", watermark=watermark)
    assert caught.value.field == "watermark"


async def test_a_download_into_a_file_is_a_clear_error(tmp_path: Path) -> None:
    afile = tmp_path / "hostname"
    afile.write_text("not a folder\n")
    async with running_mock(file_size=4096) as mock, client_for(mock, "freesora") as client:
        result = await client.generate("a kite")
        before = total_requests(mock)
        for dest in (afile, afile / "below"):
            with pytest.raises(ConfigurationError, match="dest_dir") as caught:
                await client.download(result, dest)
            assert not isinstance(caught.value, OSError)
        with pytest.raises(ConfigurationError, match="download_to"):
            await client.generate("a fox", download_to=afile)
        with pytest.raises(ConfigurationError, match=r"download_to.*not a directory"):
            client.generate_many(["a fox"], download_to=afile)
        assert total_requests(mock) == before  # nothing was created or fetched for them
        assert afile.read_text() == "not a folder\n"


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "1000"])
def test_a_bad_download_cap_is_refused(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="download_max_bytes"):
        SoraClient("freesora", "sk-test-0123456789", download_max_bytes=value)


async def test_the_download_cap_knob_bounds_every_download(tmp_path: Path) -> None:
    async with (
        running_mock(file_size=4096) as mock,
        client_for(mock, "freesora", download_max_bytes=1000) as client,
    ):
        result = await client.generate("a kite")
        with pytest.raises(DownloadError, match="over the limit of 1000 bytes"):
            await client.download(result, tmp_path)
        assert not any(tmp_path.glob("*.mp4"))  # noqa: ASYNC240
    async with (
        running_mock(file_size=4096) as mock,
        client_for(mock, "freesora", download_max_bytes=None) as client,
    ):
        result = await client.generate("a kite", download_to=tmp_path)
        assert [path.stat().st_size for path in result.files] == [4096]
