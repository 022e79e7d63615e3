"""Whatever a server sends, a decoder returns a value or raises a SoraError, nothing else."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sora_async.calls import Endpoint, RawResponse
from sora_async.errors import APIError, NotSupportedError, ProtocolError, RateLimitError, SoraError
from sora_async.models import Credits, TaskState, TaskStatus
from sora_async.providers.freesora import FreeSora
from sora_async.providers.sora2api import Sora2Api

GOLDEN = Path(__file__).parent / "golden"
FUZZ = settings(
    max_examples=examples(50, 1000),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def golden_data(name: str) -> dict[str, Any]:
    data = json.loads((GOLDEN / name).read_text())["data"]
    assert isinstance(data, dict)
    return data


DATA_SHAPES = [
    golden_data(name)
    for name in (
        "freesora_create_response.json",
        "freesora_check_result_response.json",
        "freesora_credits_response.json",
        "sora2api_generate_response.json",
        "sora2api_record_info_response.json",
    )
]


@st.composite
def fuzzed_data(draw: st.DrawFn) -> dict[str, Any]:
    """A documented ``data`` object with each field kept, dropped or replaced, plus extras."""
    shape = draw(st.sampled_from(DATA_SHAPES))
    data: dict[str, Any] = {}
    for key, value in shape.items():
        action = draw(st.sampled_from(["keep", "keep", "drop", "replace"]))
        if action == "keep":
            data[key] = value
        elif action == "replace":
            data[key] = draw(json_values)
    data.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
    return data


codes = st.sampled_from([0, 200, 400, 401, 402, 403, 404, 429, 500, 503, 1001, -1]) | json_values
envelopes = st.fixed_dictionaries(
    {"code": codes},
    optional={
        "message": json_values,
        "msg": json_values,
        "data": fuzzed_data() | json_values,
    },
)
statuses = st.sampled_from([200, 200, 200, 201, 204, 400, 401, 402, 404, 429, 500, 502]) | (
    st.integers(min_value=100, max_value=599)
)
headers = st.fixed_dictionaries({}, optional={"retry-after": st.text(max_size=40)})


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


bodies = (
    envelopes.map(encode)
    | json_values.map(encode)
    | st.binary(max_size=64)
    | envelopes.map(lambda e: encode(e)[: len(encode(e)) // 2])
)

Decoder = Callable[[RawResponse], object]


def decoders() -> list[tuple[str, Decoder]]:
    out: list[tuple[str, Decoder]] = []
    for provider in (FreeSora(), Sora2Api(), FreeSora(strict=True), Sora2Api(strict=True)):
        out.append((Endpoint.CREATE, provider.decode_create))
        out.append((Endpoint.STATUS, lambda r, p=provider: p.decode_status("sora2_task_1", r)))
        out.append((Endpoint.CREDITS, provider.decode_credits))
    return out


DECODERS = decoders()


def check_outcome(endpoint: str, decode: Decoder, response: RawResponse) -> None:
    try:
        value = decode(response)
    except (ProtocolError, APIError, NotSupportedError) as exc:
        assert isinstance(exc, SoraError)
        str(exc)  # the message itself must be buildable
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            assert 0.0 <= exc.retry_after <= 3600.0
        return
    assert 200 <= response.status < 300, "an error status must never decode as success"
    if endpoint == Endpoint.CREATE:
        assert isinstance(value, str) and value.strip() == value and value
    elif endpoint == Endpoint.STATUS:
        assert isinstance(value, TaskStatus)
        assert isinstance(value.state, TaskState)
        assert value.progress is None or 0 <= value.progress <= 100
        assert all(isinstance(url, str) and url for url in value.video_urls)
        assert len(set(value.video_urls)) == len(value.video_urls)
        assert (value.error is not None) == (value.state is TaskState.FAILED)
    else:
        assert isinstance(value, Credits)


@FUZZ
@given(body=bodies, status=statuses, header=headers)
def test_any_answer_decodes_or_raises_a_sora_error(
    body: bytes, status: int, header: dict[str, str]
) -> None:
    for endpoint, decode in DECODERS:
        response = RawResponse(endpoint=endpoint, status=status, headers=header, body=body)
        check_outcome(endpoint, decode, response)


@FUZZ
@given(data=fuzzed_data(), header=headers)
def test_success_envelopes_with_fuzzed_data(data: dict[str, Any], header: dict[str, str]) -> None:
    for code in (0, 200):
        body = encode({"code": code, "message": "ok", "data": data})
        for endpoint, decode in DECODERS:
            response = RawResponse(endpoint=endpoint, status=200, headers=header, body=body)
            check_outcome(endpoint, decode, response)


@FUZZ
@given(body=st.binary(max_size=256), status=st.integers(min_value=-1, max_value=1000))
def test_arbitrary_bytes_and_statuses(body: bytes, status: int) -> None:
    for endpoint, decode in DECODERS:
        response = RawResponse(endpoint=endpoint, status=status, headers={}, body=body)
        check_outcome(endpoint, decode, response)
