"""Batch input parsing: plain text and JSONL, defaults, line numbers, streaming, fingerprint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sora_async.batch.input import BatchInputError, InputItem, InputReader, is_jsonl
from sora_async.batch.journal import fingerprint_bytes
from sora_async.errors import ConfigurationError
from sora_async.models import AspectRatio, Model, VideoRequest


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def test_plain_text_is_one_prompt_per_non_empty_line(tmp_path: Path) -> None:
    source = write(tmp_path / "p.txt", "\ufeffa kite\r\n\n   \n  a fox in snow  \nlast line")
    reader = InputReader(source)

    items = list(reader)

    assert items == [
        InputItem(0, 1, VideoRequest("a kite")),
        InputItem(1, 4, VideoRequest("a fox in snow")),
        InputItem(2, 5, VideoRequest("last line")),
    ]
    assert reader.count == 3
    assert reader.fingerprint == fingerprint_bytes(source.read_bytes())


def test_a_jsonl_line_sets_fields_and_defaults_fill_the_rest(tmp_path: Path) -> None:
    source = write(
        tmp_path / "b.JSONL",
        '{"prompt": "a kite", "model": "sora-2-pro"}\n'
        '{"prompt": "a fox", "model": null, "aspect_ratio": "portrait", "duration": "15"}\n',
    )
    reader = InputReader(source, {"model": "sora-2", "aspect_ratio": "16:9"})

    first, second = (item.request for item in reader)

    assert first == VideoRequest("a kite", model=Model.SORA_2_PRO, aspect_ratio="16:9")
    assert second == VideoRequest(
        "a fox", model=Model.SORA_2, aspect_ratio=AspectRatio.PORTRAIT, duration=15
    )


def test_a_relative_image_path_is_relative_to_the_input_file(tmp_path: Path) -> None:
    folder = tmp_path / "inputs"
    folder.mkdir()
    source = write(
        folder / "b.jsonl",
        '{"prompt": "a", "image": "pics/kite.png"}\n'
        '{"prompt": "b", "image": "https://example.com/kite.png"}\n'
        f'{{"prompt": "c", "image": "{tmp_path / "abs.png"}"}}\n',
    )

    images = [item.request.image for item in InputReader(source)]

    assert images == [
        os.fspath(folder / "pics" / "kite.png"),
        "https://example.com/kite.png",
        os.fspath(tmp_path / "abs.png"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('{"prompt": "a"}\n{"prompt": "b"\n', 2, "not valid JSON"),
        ('{"prompt": "a"}\n\n7\n', 3, "JSON object"),
        ('{"prompt": "a", "seed": 1}\n', 1, "unknown key(s) 'seed'"),
        ('{"prompt": "   "}\n', 1, "empty prompt"),
        ('{"model": "sora-2"}\n', 1, "prompt"),
        ('{"prompt": "a", "model": "sora-3"}\n', 1, "model"),
        ('{"prompt": "a", "public": "yes"}\n', 1, "public"),
    ],
)
def test_a_bad_line_names_its_number(tmp_path: Path, text: str, line: int, words: str) -> None:
    source = write(tmp_path / "b.jsonl", text)

    with pytest.raises(BatchInputError) as caught:
        list(InputReader(source))

    assert caught.value.line == line
    assert str(caught.value).startswith(f"{source}:{line}: ")
    assert words in str(caught.value)
    assert isinstance(caught.value, ConfigurationError)  # the CLI's exit 2


def test_bytes_that_are_not_utf8_name_their_line(tmp_path: Path) -> None:
    source = write(tmp_path / "p.txt", b"ok\n\xc3\x28 broken\n")

    with pytest.raises(BatchInputError, match=r"p\.txt:2: not UTF-8"):
        list(InputReader(source))


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError, match="cannot read the input file"):
        list(InputReader(tmp_path / "nope.txt"))


def test_items_are_read_lazily(tmp_path: Path) -> None:
    # The bad line is only reached when the iteration gets there.
    source = write(tmp_path / "b.jsonl", '{"prompt": "a"}\n{"prompt": "b"}\n{oops\n')
    items = iter(InputReader(source))

    assert next(items).request.prompt == "a"
    assert next(items).request.prompt == "b"
    with pytest.raises(BatchInputError):
        next(items)


def test_each_iteration_reads_the_file_again(tmp_path: Path) -> None:
    source = write(tmp_path / "p.txt", "one\ntwo\n")
    reader = InputReader(source)
    first = list(reader)
    fingerprint = reader.fingerprint

    source.write_text("one\ntwo\nthree\n", encoding="utf-8")
    second = list(reader)

    assert len(first) == 2 and len(second) == 3
    assert reader.fingerprint != fingerprint
    assert reader.fingerprint == fingerprint_bytes(source.read_bytes())


def test_the_format_comes_from_the_suffix() -> None:
    assert is_jsonl("a/b.jsonl") and is_jsonl("B.JSONL")
    assert not is_jsonl("prompts.txt") and not is_jsonl("prompts.json")


def test_defaults_must_be_request_fields(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="colour"):
        InputReader(tmp_path / "p.txt", {"colour": "red"})


def test_a_csv_row_is_read_by_its_header_and_numbered_by_its_first_line(tmp_path: Path) -> None:
    source = write(
        tmp_path / "b.csv",
        'prompt,aspect_ratio,public\n"a kite,\nover the sea",16:9,yes\n\n"a fox",,\n',
    )

    items = list(InputReader(source))

    assert items == [
        InputItem(0, 2, VideoRequest("a kite,\nover the sea", aspect_ratio="16:9", public=True)),
        InputItem(1, 5, VideoRequest("a fox")),
    ]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("prompt,colour\na,red\n", 1, "'colour'"),
        ("model\nsora-2\n", 1, "prompt"),
        ("prompt,duration\na,10\nb,ten\n", 3, "duration"),
        ("prompt,public\na,maybe\n", 2, "public"),
        ("prompt,model\na\n", 2, "cells"),
    ],
)
def test_a_bad_csv_names_its_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    source = write(tmp_path / "b.csv", text)
    with pytest.raises(BatchInputError) as caught:
        list(InputReader(source))
    assert caught.value.line == line
    assert words in str(caught.value)


def test_a_txt_comment_is_not_a_prompt(tmp_path: Path) -> None:
    source = write(tmp_path / "p.txt", "# title\n  #indented\none\n")
    assert [item.request.prompt for item in InputReader(source)] == ["one"]


def test_a_csv_characters_cell_is_a_json_list(tmp_path: Path) -> None:
    source = write(
        tmp_path / "b.csv",
        'prompt,characters\na kite,"[[""https://example.com/a.png"", ""1,3""]]"\n',
    )
    [item] = InputReader(source)
    assert item.request.characters is not None
    assert [tuple(c) for c in item.request.characters] == [("https://example.com/a.png", "1,3")]
