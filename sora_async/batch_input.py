"""The input of ``sora-async batch``: plain text or JSONL, streamed one line at a time.

- Plain text: one prompt per non-empty line (surrounding whitespace dropped).
- ``.jsonl``: one JSON object per non-empty line whose keys are :class:`VideoRequest` field
  names. A relative ``image`` path is taken relative to the input file's directory, so the
  same file means the same requests from any working directory.

Command-line options give defaults for the fields a line does not set (a missing key or
``null``). The file is read as bytes and hashed while it is parsed: :class:`InputReader`
yields items lazily and knows the file's fingerprint once it has read to the end, so a file
of any size is never held in memory. Every problem is a :class:`BatchInputError` naming the
file and the 1-based line number.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from .errors import ConfigurationError, ValidationError
from .models import VideoRequest

__all__ = [
    "INPUT_FIELDS",
    "BatchInputError",
    "InputItem",
    "InputReader",
    "is_jsonl",
    "request_from_fields",
]

#: The keys a JSONL line may use: the VideoRequest field names.
INPUT_FIELDS: tuple[str, ...] = tuple(field.name for field in attrs.fields(VideoRequest))
_BOM = "\ufeff"
#: A line is shown in an error message up to this many characters.
_SHOWN = 60


class BatchInputError(ConfigurationError):
    """A line of the batch input cannot become a request; nothing has been sent."""

    def __init__(self, path: Path, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


@attrs.frozen
class InputItem:
    """One request of the batch: its 0-based position among the items and its line."""

    index: int
    line: int
    request: VideoRequest


def is_jsonl(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is read as JSONL (by its ``.jsonl`` suffix) rather than plain text."""
    return Path(path).suffix.lower() == ".jsonl"


def request_from_fields(fields: Mapping[str, Any]) -> VideoRequest:
    """A VideoRequest from field values (None: the provider's default); ValidationError if bad."""
    values = {name: value for name, value in fields.items() if value is not None}
    if "prompt" not in values:
        raise ValidationError("prompt", None, "a non-empty string", reason="missing")
    prompt = values.pop("prompt")
    return VideoRequest(prompt, **values)


def _shorten(text: str) -> str:
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


class InputReader:
    """Iterate a batch file's items; each iteration reads the file again from the start.

    ``defaults`` holds VideoRequest fields for lines that do not set them. After an iteration
    has run to the end, :attr:`fingerprint` is the file's ``sha256:`` digest (the same value as
    :func:`sora_async.journal.fingerprint_bytes` of its bytes) and :attr:`count` its item count.
    """

    def __init__(self, path: str | os.PathLike[str], defaults: Mapping[str, Any] | None = None):
        self.path = Path(path)
        self.jsonl = is_jsonl(self.path)
        unknown = sorted(set(defaults or {}) - set(INPUT_FIELDS))
        if unknown:
            raise ValueError(f"unknown request fields in defaults: {', '.join(unknown)}")
        self._defaults = dict(defaults or {})
        self._base_dir = self.path.parent
        self.fingerprint: str | None = None
        self.count: int | None = None

    def __iter__(self) -> Iterator[InputItem]:
        return self._read()

    def _read(self) -> Iterator[InputItem]:
        self.fingerprint = None
        self.count = None
        hasher = hashlib.sha256()
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise BatchInputError(
                self.path, None, f"cannot read the input file: {exc.strerror or exc}"
            ) from None
        index = 0
        with handle:
            for number, raw in enumerate(self._lines(handle), start=1):
                hasher.update(raw)
                text = self._decode(raw, number)
                if not text.strip():
                    continue
                request = self._parse(text, number)
                yield InputItem(index, number, request)
                index += 1
        self.fingerprint = "sha256:" + hasher.hexdigest()
        self.count = index

    def _lines(self, handle: Any) -> Iterator[bytes]:
        try:
            yield from handle
        except OSError as exc:
            raise BatchInputError(
                self.path, None, f"cannot read the input file: {exc.strerror or exc}"
            ) from None

    def _decode(self, raw: bytes, number: int) -> str:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BatchInputError(
                self.path, number, f"not UTF-8 text (byte {exc.start + 1} of the line)"
            ) from None
        if number == 1:
            text = text.removeprefix(_BOM)
        return text.rstrip("\r\n")

    def _parse(self, text: str, number: int) -> VideoRequest:
        fields = dict(self._defaults)
        if self.jsonl:
            fields.update(self._json_fields(text, number))
        else:
            fields["prompt"] = text.strip()
        try:
            return request_from_fields(fields)
        except ValidationError as exc:
            raise BatchInputError(self.path, number, str(exc)) from None

    def _json_fields(self, text: str, number: int) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BatchInputError(
                self.path,
                number,
                f"not valid JSON ({exc.msg} at column {exc.colno}): {_shorten(text.strip())!r}",
            ) from None
        except ValueError as exc:  # e.g. a number too long to convert
            raise BatchInputError(self.path, number, f"not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise BatchInputError(
                self.path,
                number,
                f'expected a JSON object with a "prompt", got {type(value).__name__}',
            )
        unknown = sorted(key for key in value if key not in INPUT_FIELDS)
        if unknown:
            raise BatchInputError(
                self.path,
                number,
                f"unknown key(s) {', '.join(map(repr, unknown))}: "
                f"allowed {', '.join(INPUT_FIELDS)}",
            )
        fields = {key: item for key, item in value.items() if item is not None}
        image = fields.get("image")
        if (
            isinstance(image, str)
            and image
            and not image.lower().startswith(("http://", "https://"))
        ):
            fields["image"] = os.fspath(self._base_dir / os.path.expanduser(image))
        return fields
