"""Local image checks: every way a file can be wrong is a ValidationError naming the image."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from sora_async.errors import ValidationError
from sora_async.images import (
    MAX_IMAGE_BYTES,
    PreparedImage,
    image_kind,
    prepare_image,
    sniff_image_mime,
)

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32
GIF = b"GIF89a" + b"\x00" * 32
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32


def refused(image: Any, **kwargs: Any) -> ValidationError:
    kwargs.setdefault("accepts_bytes", True)
    with pytest.raises(ValidationError) as info:
        prepare_image(image, **kwargs)
    error = info.value
    assert error.field == "image"
    assert "allowed" in str(error)
    return error


def test_none_stays_none() -> None:
    assert prepare_image(None, accepts_bytes=True) is None
    assert prepare_image(None, accepts_bytes=False) is None


@pytest.mark.parametrize("accepts_bytes", [True, False])
@pytest.mark.parametrize(
    "url", ["https://example.com/a.png", "http://127.0.0.1:8080/x.jpg?sig=1", "HTTPS://EX.COM/A"]
)
def test_http_urls_pass_through(url: str, accepts_bytes: bool) -> None:
    assert prepare_image(url, accepts_bytes=accepts_bytes) == PreparedImage(url=url)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.png",
        "data:image/png;base64,iVBORw0KGgo=",
        "DATA:image/png;base64,iVBORw0KGgo=",
        "file:///etc/hosts",
        "s3://bucket/key.png",
        "https://",
        "http:///path-only.png",
    ],
)
def test_other_schemes_are_refused(url: str) -> None:
    error = refused(url)
    assert error.value == url
    assert "http(s) URL" in error.allowed


@pytest.mark.parametrize(
    ("data", "mime"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp")],
)
def test_good_bytes(data: bytes, mime: str) -> None:
    prepared = prepare_image(data, accepts_bytes=True)
    assert prepared == PreparedImage(data=data, mime=mime)
    assert prepared.data_url.startswith(f"data:{mime};base64,")


@pytest.mark.parametrize(
    ("data", "mime"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp")],
)
def test_good_files(tmp_path: Path, data: bytes, mime: str) -> None:
    path = tmp_path / "picture.bin"  # the name says nothing: the magic bytes decide
    path.write_bytes(data)
    for value in (path, str(path)):
        assert prepare_image(value, accepts_bytes=True) == PreparedImage(data=data, mime=mime)


def test_home_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "cat.png").write_bytes(PNG)
    prepared = prepare_image("~/cat.png", accepts_bytes=True)
    assert prepared is not None and prepared.mime == "image/png"


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    error = refused(missing)
    assert error.value == str(missing)
    assert "no such file" in str(error)


def test_missing_parent_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(PNG)
    assert "no such file" in str(refused(tmp_path / "file" / "child.png"))


def test_directory(tmp_path: Path) -> None:
    assert "directory" in str(refused(tmp_path))


def _refusal_as_nobody(path: str, conn: Any) -> None:
    # A forked child drops root, so no interpreter has to be started as "nobody".
    os.setgid(65534)
    os.setuid(65534)
    try:
        prepare_image(path, accepts_bytes=True)
    except ValidationError as error:
        conn.send((error.field, str(error)))
    else:
        conn.send(None)
    conn.close()


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "locked.png"
    path.write_bytes(PNG)
    path.chmod(0)
    try:
        if os.geteuid() != 0:
            assert "permission denied" in str(refused(path))
            return
        # Root reads files whatever their mode: check as "nobody", who may reach the file.
        for folder in (tmp_path, *tmp_path.parents):
            if folder == Path("/"):
                break
            folder.chmod(folder.stat().st_mode | 0o111)
        context = multiprocessing.get_context("fork")
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(target=_refusal_as_nobody, args=(str(path), sender))
        child.start()
        answer = receiver.recv() if receiver.poll(30) else "no answer"
        child.join(30)
        assert answer is not None and answer != "no answer"
        field, message = answer
        assert field == "image"
        assert "permission denied" in message
    finally:
        path.chmod(0o600)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_fifo_is_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    # Reading would block forever with no writer: the check must refuse before opening.
    assert "not a regular file" in str(refused(fifo))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert "empty" in str(refused(path))


def test_empty_bytes() -> None:
    assert "empty" in str(refused(b""))


def test_too_large_file_is_refused_by_its_size(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    with path.open("wb") as handle:
        handle.write(PNG)
        # Sparse: costs no disk, and a read of it would show as the real bytes, not a PNG.
        handle.truncate(MAX_IMAGE_BYTES + 1)
    error = refused(path)
    assert "10 MiB" in str(error)
    assert str(MAX_IMAGE_BYTES + 1) in str(error)


def test_custom_limit(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    error = refused(path, max_bytes=len(PNG) - 1)
    assert f"{len(PNG) - 1} bytes" in str(error)
    prepared = prepare_image(path, accepts_bytes=True, max_bytes=len(PNG))
    assert prepared is not None and prepared.data == PNG


def test_too_large_bytes() -> None:
    assert "limit" in str(refused(PNG + b"\x00" * 100, max_bytes=64))


@pytest.mark.parametrize(
    "content",
    [b"hello, world", b"%PDF-1.7\n", b"\x89PN", b"RIFF\x00\x00\x00\x00WAVE", b"\x00" * 64],
)
def test_not_an_image(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.png"
    path.write_bytes(content)
    error = refused(path)
    assert "not a PNG, JPEG, GIF or WEBP image" in str(error)
    assert error.value == str(path)
    assert "not a PNG" in str(refused(content))


@pytest.mark.parametrize("image", [PNG, "cat.png", Path("cat.png")])
def test_bytes_and_paths_when_only_urls_are_taken(image: Any) -> None:
    error = refused(image, accepts_bytes=False, provider="sora2api")
    assert "sora2api takes only http(s) image URLs" in str(error)


def test_only_urls_without_a_provider_name() -> None:
    assert "takes only http(s) image URLs" in str(refused(PNG, accepts_bytes=False))


@pytest.mark.parametrize("value", [42, 3.5, ["a.png"], {"url": "x"}])
def test_other_types(value: Any) -> None:
    refused(value)


def test_image_kind_is_pure() -> None:
    assert image_kind("https://example.com/a.png") == "url"
    assert image_kind(PNG) == "bytes"
    # Not checked on disk: that is prepare_image's job, off the event loop.
    assert image_kind("/no/such/file.png") == "path"
    assert image_kind(Path("/no/such/file.png")) == "path"


def test_sniff() -> None:
    assert sniff_image_mime(PNG) == "image/png"
    assert sniff_image_mime(b"RIFF\x00\x00\x00\x00WEBP") == "image/webp"
    assert sniff_image_mime(b"RIFF\x00\x00\x00\x00AVI ") is None
    assert sniff_image_mime(b"") is None
