"""Error answers: HTTP status and envelope code both decide, each maps to its error class."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from sora_async.calls import Endpoint, RawResponse
from sora_async.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    InsufficientCreditsError,
    NotFoundError,
    NotSupportedError,
    ProtocolError,
    RateLimitError,
    ServerError,
)
from sora_async.providers.freesora import FreeSora
from sora_async.providers.sora2api import Sora2Api

Provider = FreeSora | Sora2Api

PROVIDERS: list[tuple[Provider, int, str]] = [
    (FreeSora(), 0, "message"),
    (Sora2Api(), 200, "msg"),
]
IDS = ["freesora", "sora2api"]

CLASS_BY_STATUS: list[tuple[int, type[APIError]]] = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (403, AuthenticationError),
    (402, InsufficientCreditsError),
    (404, NotFoundError),
    (429, RateLimitError),
    (500, ServerError),
    (502, ServerError),
    (503, ServerError),
]


def raw(
    body: Any, status: int = 200, *, endpoint: str = Endpoint.CREATE, headers: Any = None
) -> RawResponse:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawResponse(endpoint=endpoint, status=status, headers=headers or {}, body=data)


def decoders(provider: Provider) -> list[Callable[[RawResponse], object]]:
    calls: list[Callable[[RawResponse], object]] = [
        provider.decode_create,
        lambda r: provider.decode_status("t1", r),
    ]
    if provider.supports_credits:
        calls.append(provider.decode_credits)
    return calls


@pytest.mark.parametrize(("provider", "ok_code", "msg_key"), PROVIDERS, ids=IDS)
@pytest.mark.parametrize(("code", "cls"), CLASS_BY_STATUS)
def test_http_200_with_an_error_code_in_the_envelope(
    provider: Provider, ok_code: int, msg_key: str, code: int, cls: type[APIError]
) -> None:
    body = {"code": code, msg_key: "nope", "data": None}
    for decode in decoders(provider):
        with pytest.raises(cls) as info:
            decode(raw(body, headers={"retry-after": "12"}))
        assert type(info.value) is cls
        assert (info.value.http_status, info.value.code) == (200, code)
        assert info.value.message == "nope"
        if cls is RateLimitError:
            assert isinstance(info.value, RateLimitError)
            assert info.value.retry_after == 12.0


@pytest.mark.parametrize(("provider", "ok_code", "msg_key"), PROVIDERS, ids=IDS)
@pytest.mark.parametrize(("status", "cls"), CLASS_BY_STATUS)
def test_error_statuses_with_a_json_envelope(
    provider: Provider, ok_code: int, msg_key: str, status: int, cls: type[APIError]
) -> None:
    body = {"code": status, msg_key: "Account doesn't have enough credits", "data": None}
    for decode in decoders(provider):
        with pytest.raises(cls) as info:
            decode(raw(body, status, headers={"retry-after": "3"}))
        assert type(info.value) is cls
        assert info.value.http_status == status
        assert info.value.message == "Account doesn't have enough credits"
        if isinstance(info.value, RateLimitError):
            assert info.value.retry_after == 3.0


@pytest.mark.parametrize(("provider", "ok_code", "msg_key"), PROVIDERS, ids=IDS)
def test_error_status_wins_over_a_success_envelope(
    provider: Provider, ok_code: int, msg_key: str
) -> None:
    with pytest.raises(ServerError):
        provider.decode_create(raw({"code": ok_code, "data": {"id": "x", "taskId": "x"}}, 500))


@pytest.mark.parametrize(("provider", "ok_code", "msg_key"), PROVIDERS, ids=IDS)
@pytest.mark.parametrize(("status", "cls"), CLASS_BY_STATUS)
def test_error_status_with_an_html_page_maps_by_status(
    provider: Provider, ok_code: int, msg_key: str, status: int, cls: type[APIError]
) -> None:
    page = (
        b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\x00\x1b[31m"
        b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>"
        + b"<p>padding</p>" * 500
        + b"</body>\r\n</html>\r\n"
    )
    with pytest.raises(cls) as info:
        provider.decode_create(raw(page, status))
    assert type(info.value) is cls
    message = info.value.message
    assert message.startswith("502 Bad Gateway 502 Bad Gateway nginx")
    assert "<" not in message and "\x00" not in message and "\x1b" not in message
    assert "\n" not in message
    assert len(message) <= 200


@pytest.mark.parametrize(("provider", "ok_code", "msg_key"), PROVIDERS, ids=IDS)
def test_error_status_with_an_empty_body_uses_the_status_phrase(
    provider: Provider, ok_code: int, msg_key: str
) -> None:
    with pytest.raises(ServerError, match="Service Unavailable"):
        provider.decode_create(raw(b"", 503))


@pytest.mark.parametrize(("provider", "ok_code", "msg_key"), PROVIDERS, ids=IDS)
def test_a_code_that_is_not_an_http_error_is_a_plain_api_error(
    provider: Provider, ok_code: int, msg_key: str
) -> None:
    # 0 and 200 are success codes, but only each for its own provider.
    for code in [c for c in (1001, -1, 7, "E_QUOTA", 200, 0) if c != ok_code]:
        with pytest.raises(APIError) as info:
            provider.decode_create(raw({"code": code, msg_key: "quota exceeded"}))
        assert type(info.value) is APIError
        assert info.value.code == code
        assert info.value.http_status == 200
        assert "quota exceeded" in str(info.value)


@pytest.mark.parametrize(("provider", "ok_code", "msg_key"), PROVIDERS, ids=IDS)
def test_a_numeric_text_code_counts_as_the_number(
    provider: Provider, ok_code: int, msg_key: str
) -> None:
    with pytest.raises(InsufficientCreditsError):
        provider.decode_create(raw({"code": "402", msg_key: "no credits"}))


@pytest.mark.parametrize(("provider", "ok_code", "msg_key"), PROVIDERS, ids=IDS)
@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"<html>oops</html>", b"\xff\xfe\x00", b"NaN", b'{"code": NaN}'],
)
def test_a_2xx_body_that_is_not_json_is_a_protocol_error(
    provider: Provider, ok_code: int, msg_key: str, body: bytes
) -> None:
    for decode in decoders(provider):
        with pytest.raises(ProtocolError):
            decode(raw(body))


@pytest.mark.parametrize(("provider", "ok_code", "msg_key"), PROVIDERS, ids=IDS)
@pytest.mark.parametrize(
    "body",
    [
        [],
        "ok",
        42,
        None,
        {"message": "no code", "data": {}},
        {"code": None, "data": {}},
        {"code": True, "data": {}},
        {"code": [0], "data": {}},
        {"code": 1.5, "data": {}},
    ],
)
def test_a_2xx_envelope_without_a_usable_code_is_a_protocol_error(
    provider: Provider, ok_code: int, msg_key: str, body: Any
) -> None:
    with pytest.raises(ProtocolError):
        provider.decode_create(raw(body))


@pytest.mark.parametrize(("provider", "ok_code", "msg_key"), PROVIDERS, ids=IDS)
@pytest.mark.parametrize("data", [None, {}, [], "task_1", {"id": 5, "taskId": 5}, {"id": ""}])
def test_a_success_envelope_without_a_task_id_is_a_protocol_error(
    provider: Provider, ok_code: int, msg_key: str, data: Any
) -> None:
    with pytest.raises(ProtocolError) as info:
        provider.decode_create(raw({"code": ok_code, msg_key: "ok", "data": data}))
    assert info.value.endpoint == "create"


def test_protocol_error_detail_names_the_field_and_the_types() -> None:
    body = {"code": 0, "data": {"progress": 3}}
    with pytest.raises(ProtocolError, match=r"required field missing @ \$\.data\.status"):
        FreeSora().decode_status("t", raw(body, endpoint=Endpoint.STATUS))
    body = {"code": 0, "data": {"status": "running", "credits_refunded": "false"}}
    expected = r"expected true or false or null, got a string @ \$\.data\.credits_refunded"
    with pytest.raises(ProtocolError, match=expected):
        FreeSora().decode_status("t", raw(body, endpoint=Endpoint.STATUS))
    body = {"code": 200, "data": {"successFlag": "1"}}
    with pytest.raises(
        ProtocolError, match=r"expected an integer, got a string @ \$\.data\.successFlag"
    ):
        Sora2Api().decode_status("t", raw(body, endpoint=Endpoint.STATUS))


def test_a_string_is_not_taken_for_a_list_of_urls() -> None:
    body = {"code": 0, "data": {"status": "succeeded", "result_urls": "https://x/v.mp4"}}
    with pytest.raises(ProtocolError, match="expected an array"):
        FreeSora().decode_status("t", raw(body, endpoint=Endpoint.STATUS))


def test_sora2api_has_no_credits() -> None:
    with pytest.raises(NotSupportedError, match="sora2api"):
        Sora2Api().credits_call()
    with pytest.raises(NotSupportedError):
        Sora2Api().decode_credits(raw({"code": 200, "data": {}}))
