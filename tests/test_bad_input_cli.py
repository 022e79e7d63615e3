"""The command line's bad-input matrix: every request field and every input file kind.

Each case is refused with exit 2 and one stderr line (``sora-async: error: ...``) that names
the field, flag or line, with no traceback and 0 requests at the mock. The CLI's ``main`` runs
in a worker thread of this process (its own event loop there), so the matrix costs no
interpreter start per case; the subprocess runs of the same entry point are in test_cli.py.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread
import attrs
import pytest
from helpers import total_requests
from inprocess_cli import environment
from inprocess_cli import run_main as run_in_process

from sora_async.mock import MockConfig, MockServer
from sora_async.models import MAX_PROMPT_CHARS

pytestmark = pytest.mark.anyio

KEY = "sk-bad-input-cli-0123456789"


@attrs.frozen
class Ran:
    code: int
    stdout: str
    stderr: str


async def run_main(*argv: str) -> Ran:
    with anyio.fail_after(60):  # a hang guard, not a timing assertion
        done = await run_in_process(argv, environment())
    return Ran(done.returncode, done.stdout, done.stderr)


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    async with MockServer(MockConfig(task_seconds=0.2, file_size=4096)) as server:
        yield server


def png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def refused(ran: Ran, *words: str) -> str:
    assert ran.code == 2, ran
    lines = [line for line in ran.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, ran.stderr
    assert lines[0].startswith("sora-async: error: "), lines
    assert "Traceback" not in ran.stderr + ran.stdout
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def base(mock: MockServer, provider: str = "freesora") -> list[str]:
    return ["--provider", provider, "--api-key", KEY, "--base-url", mock.url_for(provider)]


# (provider, argv after the globals, words the error line must hold)
GENERATE_CASES: list[tuple[str, list[str], list[str]]] = [
    ("freesora", ["generate", "a kite \x1b[2J"], ["prompt", "U+001B"]),
    ("freesora", ["generate", "k" * (MAX_PROMPT_CHARS + 1)], ["prompt", "over the limit"]),
    ("freesora", ["generate", "   "], ["prompt"]),
    ("freesora", ["generate", "a kite", "--model", "sora-9"], ["--model"]),
    ("freesora", ["generate", "a kite", "--aspect-ratio", "4:3"], ["--aspect-ratio"]),
    ("freesora", ["generate", "a kite", "--duration", "12"], ["--duration"]),
    ("freesora", ["generate", "a kite", "--quality", "hd"], ["quality"]),
    ("freesora", ["generate", "a kite", "--watermark", "mine"], ["watermark"]),
    ("freesora", ["generate", "a kite", "--image", "{missing}"], ["image"]),
    ("freesora", ["generate", "a kite", "--image", "{dir}"], ["image"]),
    ("freesora", ["generate", "a kite", "--image", "{text}"], ["image"]),
    ("freesora", ["generate", "a kite", "--image", "{empty}"], ["image"]),
    ("freesora", ["generate", "a kite", "--image", "ftp://example.com/a.png"], ["image"]),
    ("freesora", ["generate", "a kite", "--out", "{file}"], ["not a directory"]),
    ("sora2api", ["generate", "a kite", "--watermark", "bell\x07"], ["watermark", "U+0007"]),
    ("sora2api", ["generate", "a kite", "--image", "{png}"], ["image"]),
    ("sora2api", ["generate", "a kite", "--duration", "15"], ["duration"]),
    ("freesora", ["download", "task_0a1b2c3d", "--out", "{file}"], ["not a directory"]),
    ("freesora", ["wait", "   "], ["task_id"]),
    ("freesora", ["status", ""], ["task_id"]),
]


def fill(argv: list[str], tmp_path: Path) -> list[str]:
    (tmp_path / "adir").mkdir(exist_ok=True)
    (tmp_path / "notes.png").write_text("not an image at all\n")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "cat.png").write_bytes(png())
    (tmp_path / "afile").write_text("x\n")
    names = {
        "{missing}": tmp_path / "missing.png",
        "{dir}": tmp_path / "adir",
        "{text}": tmp_path / "notes.png",
        "{empty}": tmp_path / "empty.png",
        "{png}": tmp_path / "cat.png",
        "{file}": tmp_path / "afile",
    }
    return [str(names[arg]) if arg in names else arg for arg in argv]


@pytest.mark.parametrize(
    ("provider", "argv", "words"),
    GENERATE_CASES,
    ids=[f"{p}:{' '.join(a)[:40]}" for p, a, _ in GENERATE_CASES],
)
async def test_a_bad_flag_or_field_is_one_line_exit_2_and_no_request(
    mock: MockServer, tmp_path: Path, provider: str, argv: list[str], words: list[str]
) -> None:
    ran = await run_main(*base(mock, provider), *fill(argv, tmp_path))

    refused(ran, *words)
    assert total_requests(mock) == 0, mock.counters.requests


# (file name, its bytes, words the error line must hold)
BATCH_FILES: list[tuple[str, bytes, list[str]]] = [
    ("p.json", b'{"prompt": "a kite"}\n', ["p.json"]),
    ("p.yaml", b"- a kite\n", ["p.yaml"]),
    ("p.txt", b"", ["no prompts"]),
    ("p.txt", b"a kite\nan \xff fox\n", [":2:", "UTF-8"]),
    ("p.txt", b"a kite\na\x00fox\n", [":2:", "prompt", "U+0000"]),
    ("p.txt", b"a kite\n" + b"k" * (MAX_PROMPT_CHARS + 1) + b"\n", [":2:", "prompt"]),
    ("p.jsonl", b'{"prompt": "a kite"}\n{"prompt": 42}\n', [":2:", "prompt"]),
    ("p.jsonl", b'{"prompt": "a\\u0000kite"}\n', [":1:", "prompt", "U+0000"]),
    ("p.jsonl", b'{"prompt": "a \\ud800 kite"}\n', [":1:", "prompt", "surrogate"]),
    ("p.jsonl", b'{"prompt": "a kite", "model": "sora-9"}\n', [":1:", "model"]),
    ("p.jsonl", b'{"prompt": "a kite", "aspect_ratio": "4:3"}\n', [":1:", "aspect_ratio"]),
    ("p.jsonl", b'{"prompt": "a kite", "duration": 12}\n', [":1:", "duration"]),
    ("p.jsonl", b'{"prompt": "a kite", "quality": "hd"}\n', [":1:", "quality"]),
    ("p.jsonl", b'{"prompt": "a kite", "image": "missing.png"}\n', [":1:", "image"]),
    ("p.jsonl", b'{"prompt": "a kite", "watermark": "mine"}\n', [":1:", "watermark"]),
    ("p.jsonl", b'{"prompt": "a kite", "public": "yes"}\n', [":1:", "public"]),
    (
        "p.jsonl",
        b'{"prompt": "a kite", "callback_url": "https://x.example"}\n',
        [":1:", "callback"],
    ),
    ("p.jsonl", b'{"prompt": "a kite", "remix_target_id": "s 1"}\n', [":1:", "remix_target_id"]),
    ("p.jsonl", b'{"prompt": "a kite", "characters": "bob"}\n', [":1:", "characters"]),
    ("p.jsonl", b'{"prompt": "a kite", "colour": "red"}\n', [":1:", "colour"]),
    ("p.jsonl", b'["a kite"]\n', [":1:", "JSON object"]),
    ("p.ndjson", b'{"prompt": "a kite",}\n', [":1:", "JSON"]),
    ("p.csv", b"text\na kite\n", ["prompt"]),
    ("p.csv", b"prompt,duration\na kite,12\n", [":2:", "duration"]),
    ("p.csv", b'prompt,characters\na kite,"[1, 2]"\n', [":2:", "characters"]),
]


@pytest.mark.parametrize(
    ("name", "data", "words"), BATCH_FILES, ids=[f"{n}:{w[-1]}" for n, _, w in BATCH_FILES]
)
async def test_every_input_file_kind_is_refused_before_any_request(
    mock: MockServer, tmp_path: Path, name: str, data: bytes, words: list[str]
) -> None:
    source, out = tmp_path / name, tmp_path / "out"
    source.write_bytes(data)

    ran = await run_main(*base(mock), "batch", str(source), "--out", str(out))

    refused(ran, *words)
    assert total_requests(mock) == 0, mock.counters.requests
    assert not out.exists()


async def test_a_missing_input_a_folder_as_input_and_a_file_as_out(
    mock: MockServer, tmp_path: Path
) -> None:
    source = tmp_path / "p.txt"
    source.write_text("a kite\n")
    afile = tmp_path / "afile"
    afile.write_text("x\n")
    (tmp_path / "folder.txt").mkdir()
    for argv, words in (
        (["batch", str(tmp_path / "none.txt"), "--out", str(tmp_path / "o1")], ["none.txt"]),
        (["batch", str(tmp_path / "folder.txt"), "--out", str(tmp_path / "o2")], ["folder.txt"]),
        (["batch", str(source), "--out", str(afile)], ["--out", "not a directory"]),
    ):
        refused(await run_main(*base(mock), *argv), *words)
    assert total_requests(mock) == 0
    assert afile.read_text() == "x\n"
