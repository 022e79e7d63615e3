"""A new batch registers its items without building each line's request again: the JSON it
records must be exactly what request_to_json makes of the line's request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sora_async.batch.input import BatchInputError, InputReader
from sora_async.batch.journal import request_to_json
from sora_async.batch.request_jsons import RequestJsons


def registered(source: Path, defaults: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(what RequestJsons made, what the line's request makes) for each line."""
    reader = InputReader(source, defaults)
    jsons = RequestJsons(reader)
    return [
        (jsons(line, given), request_to_json(reader.request(given, line)))
        for _, line, given in reader.given()
    ]


def test_text_lines_with_defaults_are_their_requests_json(tmp_path: Path) -> None:
    source = tmp_path / "p.txt"
    prompts = ['a "kite"', "back\\slash", "ünïcödé ☃ \u2028 sep", "tab\there", "plain"]
    source.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    defaults = {"model": "sora-2-pro", "aspect_ratio": "16:9", "duration": "15", "public": False}

    pairs = registered(source, defaults)

    assert len(pairs) == len(prompts)
    assert all(made == expected for made, expected in pairs)
    assert [json.loads(made)["prompt"] for made, _ in pairs] == prompts


def test_jsonl_lines_of_many_kinds_are_their_requests_json(tmp_path: Path) -> None:
    lines = [
        {"prompt": "one", "duration": 10},
        {"prompt": "two", "duration": "10"},  # another kind (a string), the same request
        {"prompt": "three", "duration": 10},
        {"prompt": "four", "image": "pics/a.png"},
        {"prompt": "five", "callback_url": "\u0000the prompt\u0000"},  # holds the mark
        {"prompt": "six", "characters": [["https://example.com/a.png", "1,3"]]},
        {"prompt": "seven"},
    ]
    source = tmp_path / "b.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")

    pairs = registered(source, {"model": "sora-2"})

    assert len(pairs) == len(lines)
    for made, expected in pairs:
        assert made == expected


def test_a_bad_line_is_refused_with_its_number(tmp_path: Path) -> None:
    source = tmp_path / "b.jsonl"
    source.write_text('{"prompt": "fine"}\n{"prompt": 5}\n{"duration": 10}\n', encoding="utf-8")
    reader = InputReader(source)
    jsons = RequestJsons(reader)
    rows = reader.given()
    _, line, given = next(rows)
    jsons(line, given)

    for expected_line in (2, 3):
        _, line, given = next(rows)
        with pytest.raises(BatchInputError, match=f"b.jsonl:{expected_line}: "):
            jsons(line, given)
