"""freesora's VIP fields (remixTargetId, characters): validated, sent, refused for sora2api."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import client_for, running_mock, total_requests

from sora_async import ValidationError, VideoRequest
from sora_async.batch.journal import request_to_json
from sora_async.batch.run import request_from_json
from sora_async.models import Character
from sora_async.providers.freesora import FreeSora, FreeSoraTask

pytestmark = pytest.mark.anyio

# The document's example (check-result metadata): what a create with these fields carries.
HERO = {"url": "https://.../hero.mp4", "timestamps": "0,3"}
VIP = VideoRequest("a hero walks on", remix_target_id="s_prev", characters=[HERO])


def test_the_document_example_is_sent_as_printed() -> None:
    call = FreeSora().create_call(VIP, None)
    assert call.json is not None
    assert call.json["remixTargetId"] == "s_prev"
    assert call.json["characters"] == [HERO]
    assert VIP.characters == (Character("https://.../hero.mp4", "0,3"),)


@pytest.mark.parametrize(
    "characters",
    [
        [Character("https://cdn.example/a.mp4", "0,3")],
        [("https://cdn.example/a.mp4", "0,3")],
        [{"url": " https://cdn.example/a.mp4 ", "timestamps": [0, 3]}],
        ({"url": "https://cdn.example/a.mp4", "timestamps": " 0 , 3.0 "},),
    ],
)
def test_every_character_form_reads_the_same(characters: Any) -> None:
    request = VideoRequest("p", characters=characters)
    assert request.characters == (Character("https://cdn.example/a.mp4", "0,3"),)


@pytest.mark.parametrize(
    ("fields", "field", "allowed"),
    [
        ({"remix_target_id": ""}, "remix_target_id", "result_pid"),
        ({"remix_target_id": "s prev"}, "remix_target_id", "no spaces"),
        ({"remix_target_id": 42}, "remix_target_id", "result_pid"),
        ({"remix_target_id": "s" * 257}, "remix_target_id", "up to 256"),
        ({"characters": []}, "characters", "at least one"),
        ({"characters": HERO}, "characters", "a list of"),
        ({"characters": "https://x/a.mp4"}, "characters", "a list of"),
        ({"characters": [7]}, "characters[0]", "a list of"),
        ({"characters": [HERO, {"url": "ftp://x/a.mp4", "timestamps": "0,3"}]},
         "characters[1].url", "http(s) URL"),
        ({"characters": [{"timestamps": "0,3"}]}, "characters[0].url", "http(s) URL"),
        ({"characters": [{"url": "https://x/a", "timestamps": "3,1"}]},
         "characters[0].timestamps", "start < end"),
        ({"characters": [{"url": "https://x/a", "timestamps": "0"}]},
         "characters[0].timestamps", '"0,3"'),
        ({"characters": [{"url": "https://x/a", "timestamps": "-1,3"}]},
         "characters[0].timestamps", "0 <= start"),
        ({"characters": [{"url": "https://x/a", "timestamps": "0,nan"}]},
         "characters[0].timestamps", "start,end"),
        ({"characters": [{"url": "https://x/a", "timestamps": True}]},
         "characters[0].timestamps", "start,end"),
        ({"characters": [{"url": "https://x/a", "timestamps": [0, 10**400]}]},
         "characters[0].timestamps", "start,end"),
        ({"characters": [{"url": "https://x/a", "timestamps": "0,3", "name": "x"}]},
         "characters[0]", "url and timestamps"),
    ],
)  # fmt: skip
def test_bad_values_name_the_field_and_what_is_allowed(
    fields: dict[str, Any], field: str, allowed: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        VideoRequest("p", **fields)
    assert caught.value.field == field
    assert f"invalid {field}=" in str(caught.value)
    assert allowed in str(caught.value)


def test_a_journaled_request_keeps_them() -> None:
    assert request_from_json(request_to_json(VIP)) == VIP


async def test_freesora_sends_them_over_http() -> None:
    async with running_mock() as mock, client_for(mock, "freesora") as client:
        result = await client.generate(VIP)
    assert result.ok, result.error
    assert result.task_id is not None
    sent = mock.task(result.task_id).params
    assert (sent["remixTargetId"], sent["characters"]) == ("s_prev", [HERO])
    # The mock echoes them in check-result's metadata, as the document's example shows.
    assert isinstance(result.status and result.status.raw, FreeSoraTask)
    assert result.status is not None and result.status.raw.metadata == {
        "remixTargetId": "s_prev",
        "characters": [HERO],
    }


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"remix_target_id": "s_prev"}, "remix_target_id"), ({"characters": [HERO]}, "characters")],
)
async def test_sora2api_refuses_them_before_any_request(fields: dict[str, Any], field: str) -> None:
    async with running_mock() as mock, client_for(mock, "sora2api") as client:
        with pytest.raises(ValidationError) as caught:
            await client.generate(VideoRequest("p", **fields))
        assert total_requests(mock) == 0
    assert caught.value.field == field
    assert "sora2api does not support" in str(caught.value)
