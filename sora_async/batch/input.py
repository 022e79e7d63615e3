"""The input of ``sora-async batch``, streamed one line at a time; the suffix picks the format.

- ``.txt``: one prompt per non-empty line (surrounding whitespace dropped); a line whose first
  non-blank character is ``#`` is a comment.
- ``.jsonl`` / ``.ndjson``: one JSON object per non-empty line whose keys are
  :class:`VideoRequest` field names.
- ``.csv``: a header row with a ``prompt`` column; the other columns are VideoRequest field
  names, and an empty cell leaves its field unset (``characters`` holds a JSON list).
- Anything else is refused before anything is sent: a ``.json`` file read as text would pay
  for each of its lines as a prompt.

A relative ``image`` path is taken relative to the input file's directory, so the same file
means the same requests from any working directory.

Command-line options give defaults for the fields a line does not set (a missing key or
``null``). The file is read as bytes and hashed while it is parsed: :class:`InputReader`
yields items lazily and knows the file's fingerprint once it has read to the end, so a file
of any size is never held in memory. Every problem is a :class:`BatchInputError` naming the
file and the 1-based line number.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from ..errors import ConfigurationError, ValidationError
from ..models import VideoRequest

__all__ = [
    "INPUT_FIELDS",
    "BatchInputError",
    "InputItem",
    "InputReader",
    "input_format",
    "is_jsonl",
    "request_from_fields",
]

#: The input formats by file suffix (lower case).
FORMATS: dict[str, str] = {".txt": "text", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_FORMAT_HELP = (
    ".txt (one prompt per line, # comments), .jsonl or .ndjson (one JSON object of request "
    "fields per line) or .csv (a header with a prompt column)"
)
_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})

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


def input_format(path: str | os.PathLike[str]) -> str:
    """``text``, ``jsonl`` or ``csv`` by the file's suffix; BatchInputError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        shown = f"{suffix!r}" if suffix else "no suffix"
        raise BatchInputError(
            Path(path), None, f"cannot tell the input format ({shown}): use {_FORMAT_HELP}"
        )
    return FORMATS[suffix]


def is_jsonl(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is read as JSON lines (``.jsonl`` or ``.ndjson``)."""
    return FORMATS.get(Path(path).suffix.lower()) == "jsonl"


def request_from_fields(fields: Mapping[str, Any]) -> VideoRequest:
    """A VideoRequest from field values (None: the provider's default); ValidationError if bad."""
    # Taken as it is when nothing is None (a line of the input file): a comprehension is a
    # call, and this runs for every item of a batch.
    values = (
        {name: value for name, value in fields.items() if value is not None}
        if None in fields.values()
        else fields
    )
    if "prompt" not in values:
        raise ValidationError("prompt", None, "a non-empty string", reason="missing")
    return VideoRequest(**values)


def _shorten(text: str) -> str:
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


class InputReader:
    """Iterate a batch file's items; each iteration reads the file again from the start.

    ``defaults`` holds VideoRequest fields for lines that do not set them. After an iteration
    has run to the end, :attr:`fingerprint` is the file's ``sha256:`` digest (the same value as
    :func:`sora_async.batch.journal.fingerprint_bytes` of its bytes) and :attr:`count` its
    item count.
    """

    def __init__(self, path: str | os.PathLike[str], defaults: Mapping[str, Any] | None = None):
        self.path = Path(path)
        self.format = input_format(self.path)
        unknown = sorted(set(defaults or {}) - set(INPUT_FIELDS))
        if unknown:
            raise ValueError(f"unknown request fields in defaults: {', '.join(unknown)}")
        self._defaults = dict(defaults or {})
        self._base_dir = self.path.parent
        self.fingerprint: str | None = None
        self.count: int | None = None
        self._hasher: Any = None

    def fingerprint_so_far(self) -> str:
        """The ``sha256:`` digest of the bytes read so far: right after an item is yielded,
        those of the file up to the end of that item's line."""
        digest: str = self._hasher.hexdigest()
        return "sha256:" + digest

    def __iter__(self) -> Iterator[InputItem]:
        request = self.request
        rows = self._rows()
        return (InputItem(index, number, request(given, number)) for index, number, given in rows)

    def given(self) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """``(index, line, fields)`` of each item, ``fields`` as its line gives them (without
        :attr:`defaults`); no request is built (:meth:`request` builds one)."""
        return self._rows()

    @property
    def defaults(self) -> dict[str, Any]:
        """The fields a line does not set (a copy)."""
        return dict(self._defaults)

    def _rows(self) -> Iterator[tuple[int, int, dict[str, Any]]]:
        self.fingerprint = None
        self.count = None
        hasher = self._hasher = hashlib.sha256()
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise self._unreadable(exc) from None
        index = 0
        with handle:
            if self.format == "csv":
                for number, fields in self._csv_rows(self._texts(handle, hasher)):
                    yield index, number, fields
                    index += 1
            else:
                # One generator for the usual formats, not four stacked: the batch reads its
                # input twice, and each layer is a call a line a pass.
                jsonl = self.format == "jsonl"
                number = 0
                try:
                    for raw in handle:
                        number += 1
                        hasher.update(raw)
                        try:
                            text = raw.decode("utf-8").rstrip("\r\n")
                        except UnicodeDecodeError:
                            text = self._decode(raw, number)  # raises, saying where
                        if number == 1:
                            text = text.removeprefix(_BOM)
                        stripped = text.strip()
                        if not stripped:
                            continue
                        if jsonl:
                            yield index, number, self._json_fields(text, number)
                        elif stripped[0] != "#":
                            yield index, number, {"prompt": stripped}
                        else:
                            continue
                        index += 1
                except OSError as exc:
                    raise self._unreadable(exc) from None
        self.fingerprint = "sha256:" + hasher.hexdigest()
        self.count = index

    def _texts(self, handle: Any, hasher: Any) -> Iterator[tuple[int, str]]:
        for number, raw in enumerate(self._lines(handle), start=1):
            hasher.update(raw)
            yield number, self._decode(raw, number)

    def _csv_rows(self, texts: Iterator[tuple[int, str]]) -> Iterator[tuple[int, dict[str, Any]]]:
        consumed = 0

        def lines() -> Iterator[str]:
            nonlocal consumed
            for number, text in texts:
                consumed = number
                yield text + "\n"

        reader = csv.reader(lines(), strict=True)
        try:
            header = next(reader, None)
            if header is None:
                return
            names = self._csv_header(header)
            while True:
                start = consumed + 1
                row = next(reader, None)
                if row is None:
                    return
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(names):
                    raise BatchInputError(
                        self.path,
                        start,
                        f"expected {len(names)} cells (the header's columns), got {len(row)}",
                    )
                cells = {name: cell.strip() for name, cell in zip(names, row, strict=True)}
                yield start, self._csv_fields(cells, start)
        except csv.Error as exc:
            raise BatchInputError(self.path, consumed, f"not valid CSV ({exc})") from None

    def _csv_header(self, header: list[str]) -> list[str]:
        names = [name.strip() for name in header]
        unknown = sorted({name for name in names if name not in INPUT_FIELDS})
        if unknown:
            raise BatchInputError(
                self.path,
                1,
                f"unknown column(s) {', '.join(map(repr, unknown))}: "
                f"allowed {', '.join(INPUT_FIELDS)}",
            )
        if len(set(names)) != len(names):
            raise BatchInputError(self.path, 1, "a column name appears twice in the header")
        if "prompt" not in names:
            raise BatchInputError(self.path, 1, 'the header has no "prompt" column')
        return names

    def _csv_fields(self, cells: Mapping[str, str], number: int) -> dict[str, Any]:
        fields: dict[str, Any] = {name: value for name, value in cells.items() if value}
        if "duration" in fields:
            try:
                fields["duration"] = int(fields["duration"])
            except ValueError:
                raise BatchInputError(
                    self.path, number, f"duration must be a whole number, got {cells['duration']!r}"
                ) from None
        if "characters" in fields:
            # A list in one cell: JSON, e.g. [["https://.../a.png", "1,3"]].
            try:
                fields["characters"] = json.loads(fields["characters"])
            except ValueError:
                raise BatchInputError(
                    self.path,
                    number,
                    "characters must be a JSON list in its cell, e.g. "
                    '[["https://example.com/a.png", "1,3"]]',
                ) from None
        if "public" in fields:
            flag = fields["public"].lower()
            if flag not in _TRUE | _FALSE:
                raise BatchInputError(
                    self.path, number, f"public must be true or false, got {cells['public']!r}"
                )
            fields["public"] = flag in _TRUE
        return self._relative_image(fields)

    def _lines(self, handle: Any) -> Iterator[bytes]:
        try:
            yield from handle
        except OSError as exc:
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: OSError) -> BatchInputError:
        reason = exc.strerror or exc
        return BatchInputError(self.path, None, f"cannot read the input file: {reason}")

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

    def request(self, given: Mapping[str, Any], number: int) -> VideoRequest:
        """The request of the line ``number`` that gives ``given`` (see :meth:`given`), with
        :attr:`defaults` for the fields it does not set; BatchInputError if it is bad."""
        try:
            return request_from_fields({**self._defaults, **given})
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
        return self._relative_image({key: item for key, item in value.items() if item is not None})

    def _relative_image(self, fields: dict[str, Any]) -> dict[str, Any]:
        image = fields.get("image")
        if (
            isinstance(image, str)
            and image
            and not image.lower().startswith(("http://", "https://"))
        ):
            fields["image"] = os.fspath(self._base_dir / os.path.expanduser(image))
        return fields
