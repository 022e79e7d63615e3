"""The Python API's bad-input matrix, method arguments and per-field: one clear error, 0 requests.

tests/test_client_validation.py covers each VideoRequest field at construction; this matrix
adds what only the client can judge (fields a provider cannot honour, sent through create,
generate and generate_many) and the arguments of the methods themselves. Every case must raise
ValidationError naming the field, before any request reaches the mock (generate_many yields it
as a failed result instead, also with nothing sent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from helpers import PROVIDERS, client_for, running_mock, total_requests

from sora_async import SoraClient, TaskState, ValidationError, VideoRequest

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
