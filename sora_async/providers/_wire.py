"""Decoding helpers shared by the provider modules: JSON, envelopes, strict cattrs converters.

Each provider declares its wire classes (attrs) and gets two converters from
:func:`make_converters`: a lenient one for production (unknown fields ignored, so a provider
adding a field never breaks a poll) and a strict one (``forbid_extra_keys``) that the golden
tests use to prove the classes match the documents exactly. Both refuse wrong JSON types: the
stock cattrs hooks would turn ``"false"`` into ``True`` and ``"abc"`` into ``["a", "b", "c"]``.

Everything that can go wrong while reading an answer becomes a :class:`ProtocolError` or an
:class:`APIError`; no json, cattrs or Python error escapes from here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http
import json
import logging
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ..calls import RawResponse
from ..errors import APIError, ProtocolError
from ..models import check_task_id
from .base import error_for_status

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "Codec",
    "FastReader",
    "Unusual",
    "WireTypeError",
    "check_task_id",
    "dedupe_urls",
    "flag",
    "integer",
    "make_converters",
    "note_unknown",
    "parse_wire_time",
    "sanitize",
    "text",
    "texts",
    "wire",
]

T = TypeVar("T")

#: Metadata key holding a field's name on the wire, when it differs from the Python name.
WIRE_NAME = "sora_async.wire_name"

_SCALARS: tuple[type, ...] = (str, int, float, bool, type(None))
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]+")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_TAG = re.compile(r"<[^>]{0,500}>")
_SPACE = re.compile(r"\s+")
_INT_TEXT = re.compile(r"-?\d{1,9}")
_EPOCH_TEXT = re.compile(r"\d{9,13}(\.\d+)?")
_MAX_MESSAGE = 200
_MAX_UNKNOWN_NOTED = 64


def wire(name: str) -> dict[str, str]:
    """Field metadata naming the JSON key of a renamed field: ``attrs.field(metadata=wire(..))``."""
    return {WIRE_NAME: name}


class WireTypeError(TypeError):
    """A JSON value of the wrong type; its message says what was expected and what came."""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _expect(what: str, value: Any) -> WireTypeError:
    return WireTypeError(f"expected {what}, got {_json_type(value)}")


def _structure_str(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    raise _expect("a string", value)


def _structure_int(value: Any, _: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _expect("an integer", value)


def _structure_float(value: Any, _: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an int past a float's range: JSON numbers have any length
            raise WireTypeError("expected a number, got one beyond a float's range") from None
    raise _expect("a number", value)


def _structure_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _expect("true or false", value)


def _is_scalar_union(tp: Any) -> bool:
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return False
    return all(arg in _SCALARS for arg in typing.get_args(tp))


def _scalar_union_hook(tp: Any) -> Callable[[Any, Any], Any]:
    members = typing.get_args(tp)
    words = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    shown = [words.get(m, "null") for m in members if not (m is int and float in members)]
    names = " or ".join(shown)

    def structure(value: Any, _: Any) -> Any:
        # bool is an int subclass in Python but not in JSON: keep them apart.
        for member in members:
            if member is type(None) and value is None:
                return None
            if member is bool and isinstance(value, bool):
                return value
            if member in (int, float) and isinstance(value, (int, float)):
                if isinstance(value, bool) or (member is int and isinstance(value, float)):
                    continue
                return value
            if member is str and isinstance(value, str):
                return value
        raise _expect(names, value)

    return structure


def _is_list(tp: Any) -> bool:
    return typing.get_origin(tp) is list


def _strict_list_factory(tp: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    from cattrs.cols import list_structure_factory

    inner = list_structure_factory(tp, converter)

    def structure(value: Any, cl: Any) -> Any:
        if not isinstance(value, list):
            raise _expect("an array", value)
        return inner(value, cl)

    return structure


def _base_converter(*, strict: bool) -> cattrs.Converter:
    import cattrs

    converter = cattrs.Converter(forbid_extra_keys=strict, detailed_validation=True)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook_factory(_is_scalar_union, _scalar_union_hook)
    converter.register_structure_hook_factory(_is_list, _strict_list_factory)
    return converter


def _register_wire_class(converter: cattrs.Converter, cls: type[Any]) -> None:
    from cattrs.gen import make_dict_structure_fn, override

    # Typed loosely: mypy would match a str-keyed dict against the _cattrs_* flags too.
    renames: dict[str, Any] = {
        field.name: override(rename=field.metadata[WIRE_NAME])
        for field in attrs.fields(cls)
        if WIRE_NAME in field.metadata
    }
    generated = make_dict_structure_fn(cls, converter, **renames)

    def structure(value: Any, cl: Any) -> Any:
        # The generated function would probe a list or a number with `in` and fail obscurely.
        if not isinstance(value, dict):
            raise _expect("an object", value)
        return generated(value, cl)

    converter.register_structure_hook(cls, structure)


class LazyConverter:
    """A converter that knows some wire classes, made at its first use.

    Most answers never reach one (the fast readers take the usual ones), and making the
    converters (cattrs' import, then a generated function a class) cost every process tens of
    milliseconds of CPU at start-up, a thousand-prompt batch's share of a task included.
    """

    __slots__ = ("_classes", "_made", "_strict")

    def __init__(self, classes: tuple[type[Any], ...], *, strict: bool) -> None:
        self._classes = classes
        self._strict = strict
        self._made: cattrs.Converter | None = None

    def structure(self, data: Any, cls: type[T]) -> T:
        made = self._made
        if made is None:
            made = self._made = _base_converter(strict=self._strict)
            # make_dict_structure_fn reads forbid_extra_keys when it generates, so each
            # converter needs its own generated hooks.
            for wire_class in self._classes:
                _register_wire_class(made, wire_class)
        return made.structure(data, cls)


def make_converters(*classes: type[Any]) -> tuple[LazyConverter, LazyConverter]:
    """A (lenient, strict) pair of converters that know the given wire classes' renames."""
    return LazyConverter(classes, strict=False), LazyConverter(classes, strict=True)


def sanitize(text: str, *, limit: int = _MAX_MESSAGE, strip_tags: bool = False) -> str:
    """Server text made safe to show: no control characters or markup, one line, short."""
    if strip_tags:
        text = _TAG.sub(" ", text)
    text = _SPACE.sub(" ", _CONTROL.sub(" ", _ANSI.sub("", text))).strip()
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _body_snippet(body: bytes, limit: int = _MAX_MESSAGE) -> str:
    # Only the head matters and decoding a huge page just to cut it is wasteful.
    return sanitize(
        body[: limit * 20].decode("utf-8", errors="replace"), strip_tags=True, limit=limit
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _NotJson:
    pass


_NOT_JSON = _NotJson()


# One decoder for every answer: json.loads with any option builds a new one each call, which
# cost as much as parsing a status answer.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
#: What JSON counts as whitespace (str.strip() with no argument strips more).
_JSON_SPACE = " \t\n\r"


def _parse_json(body: bytes) -> Any:
    try:
        # What json.loads does with bytes (UTF-8, -16 or -32, told apart by the first bytes);
        # an object whose second byte is not NUL is UTF-8, as detect_encoding would say.
        if body[:1] == b"{" and body[1:2] not in (b"", b"\x00"):
            # No leading whitespace to skip: raw_decode is decode() without its two regular
            # expression matches, and only JSON's own whitespace may follow the object.
            text = body.decode("utf-8", "surrogatepass")
            parsed, end = _DECODER.raw_decode(text)
            rest = text[end:]
            return _NOT_JSON if rest and rest.strip(_JSON_SPACE) else parsed
        return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except (ValueError, RecursionError):
        return _NOT_JSON


_INVALID_CODE = object()


def _normalize_code(raw: Any) -> Any:
    """The envelope code as int or short text, None if absent, _INVALID_CODE if unusable."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        return _INVALID_CODE
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        return int(raw) if math.isfinite(raw) and raw.is_integer() else _INVALID_CODE
    if isinstance(raw, str):
        text = raw.strip()
        if _INT_TEXT.fullmatch(text):
            return int(text)
        text = sanitize(text, limit=64)
        return text or _INVALID_CODE
    return _INVALID_CODE


def _status_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "HTTP error"


def note_unknown(logger: logging.Logger, seen: set[str], what: str, value: object) -> None:
    """Log an unknown value once per process at DEBUG; the set is bounded against junk."""
    key = sanitize(repr(value), limit=80)
    if key in seen or len(seen) >= _MAX_UNKNOWN_NOTED:
        return
    seen.add(key)
    logger.debug("unknown %s %s: treated as still in progress", what, key)


#: Epoch numbers above this are milliseconds (1e11 s is the year 5138).
_EPOCH_MS_ABOVE = 1e11
_USUAL_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)", re.ASCII)
_WIRE_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S")


def parse_wire_time(value: object) -> dt.datetime | None:
    """An aware UTC datetime from a provider's time field, or None when it is not one.

    Takes "YYYY-MM-DD HH:MM:SS" (the documents' form), ISO 8601, and epoch seconds or
    milliseconds. A time without a zone is read as UTC: the documents name none. A field we
    cannot read is dropped, never a reason to fail a poll.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str) and _EPOCH_TEXT.fullmatch(value.strip()):
        value = float(value.strip())
    if isinstance(value, (int, float)):
        # An int past a float's range (JSON allows any length) overflows in isfinite itself.
        try:
            if not math.isfinite(value) or value <= 0:
                return None
            seconds = value / 1000 if value > _EPOCH_MS_ABOVE else value
            return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    usual = _USUAL_TIME.fullmatch(text)
    if usual is not None:
        # The documents' form, read without strptime (15 us a call).
        year, month, day, hour, minute, second = map(int, usual.groups())
        with contextlib.suppress(ValueError):  # a 31st of April: left to the formats below
            return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.timezone.utc)
    parsed: dt.datetime | None = None
    for form in _WIRE_TIME_FORMATS:
        try:
            parsed = dt.datetime.strptime(text, form)
            break
        except ValueError:
            continue
    if parsed is None:
        try:
            # Python 3.10's fromisoformat takes no "Z".
            parsed = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


def dedupe_urls(candidates: Iterable[str | None]) -> list[str]:
    """Non-empty URLs in their first-seen order, each once."""
    urls: list[str] = []
    for candidate in candidates:
        url = (candidate or "").strip()
        if url and url not in urls:
            urls.append(url)
    return urls


#: Reads a wire class's ``data`` without the converter, for the answer as the provider usually
#: sends it: every field of the type the class declares, read exactly as the lenient converter
#: would (unknown fields ignored). Anything else (a wrong type, a field missing, a number
#: where the document has text) gives None, and the converter reads it instead: that is what
#: names a bad field in a ProtocolError. The converter's hooks cost 10-20 us an answer, and a
#: task's life is two or three answers (tests/test_fast_decode.py checks both agree).
FastReader = Callable[[Any], Any]


class Unusual(Exception):
    """Raised inside a fast reader when a value is not of the usual type (caught by it)."""


def text(value: Any) -> str | None:
    """A JSON string or null, else :class:`Unusual`."""
    if value is None or type(value) is str:
        return value
    raise Unusual


def texts(value: Any) -> list[str] | None:
    """A JSON array of strings (a new list, as the converter makes) or null."""
    if value is None:
        return None
    if type(value) is list and all(type(item) is str for item in value):
        return list(value)
    raise Unusual


def integer(value: Any) -> int | None:
    """A JSON integer (never a boolean) or null."""
    if value is None or type(value) is int:
        return value
    raise Unusual


def flag(value: Any) -> bool | None:
    """true, false or null."""
    if value is None or type(value) is bool:
        return value
    raise Unusual


@attrs.frozen
class Codec:
    """One provider's way of reading answers: envelope rules plus its converter."""

    provider: str
    success_code: int
    #: Envelope keys that may hold the human message, preferred first.
    message_keys: tuple[str, ...]
    converter: LazyConverter
    strict: bool = False
    #: Hand-written readers of a class's usual answer (see :data:`FastReader`), tried before
    #: the converter except in strict mode (they ignore undocumented fields).
    fast: Mapping[type, FastReader] = attrs.field(factory=dict)

    def decode(self, response: RawResponse, cls: type[T]) -> T:
        """The envelope's ``data`` as ``cls``, or the error the answer stands for."""
        parsed = _parse_json(response.body)
        if not self.strict and type(parsed) is dict and 200 <= response.status < 300:
            # The usual answer, read here with no helper of the general path: an object whose
            # code is the success code as a JSON integer (what _normalize_code keeps as is),
            # its data read by the class's fast reader when it takes it.
            code = parsed.get("code")
            if type(code) is int and code == self.success_code:
                data = parsed.get("data")
                read = self.fast.get(cls)
                found = read(data) if read is not None else None
                if found is not None:
                    return typing.cast(T, found)
                return self._convert(data, cls, endpoint=response.endpoint)
        data = self._envelope_data(response, parsed)
        return self.structure(data, cls, endpoint=response.endpoint)

    def open_envelope(self, response: RawResponse) -> Any:
        """The envelope's ``data`` of a successful answer; raise for anything else."""
        return self._envelope_data(response, _parse_json(response.body))

    def _envelope_data(self, response: RawResponse, parsed: Any) -> Any:
        ok_status = 200 <= response.status < 300
        if not ok_status:
            raise self._status_error(response, parsed)
        if isinstance(parsed, _NotJson):
            raise ProtocolError(
                f"{self.provider} answered HTTP {response.status} with a body that is not JSON",
                endpoint=response.endpoint,
                body=_body_snippet(response.body),
            )
        if not isinstance(parsed, dict):
            raise ProtocolError(
                f"{self.provider} answered {_json_type(parsed)} where a JSON object was expected",
                endpoint=response.endpoint,
                body=_body_snippet(response.body),
            )
        code = _normalize_code(parsed.get("code"))
        if code is None or code is _INVALID_CODE:
            raise ProtocolError(
                f"{self.provider} answer has no usable envelope code "
                f"(got {sanitize(repr(parsed.get('code')), limit=40)})",
                endpoint=response.endpoint,
                body=_body_snippet(response.body),
            )
        if code != self.success_code:
            raise self._code_error(response, parsed, code)
        if self.strict:
            extra = set(parsed) - {"code", "data", *self.message_keys}
            if extra:
                raise ProtocolError(
                    f"{self.provider} envelope has unexpected fields: {', '.join(sorted(extra))}",
                    endpoint=response.endpoint,
                )
        return parsed.get("data")

    def structure(self, data: Any, cls: type[T], *, endpoint: str) -> T:
        """``data`` as ``cls`` through the converter, or a ProtocolError saying what is wrong."""
        if not self.strict:
            read = self.fast.get(cls)
            if read is not None:
                found = read(data)
                if found is not None:
                    return typing.cast(T, found)
        return self._convert(data, cls, endpoint=endpoint)

    def _convert(self, data: Any, cls: type[T], *, endpoint: str) -> T:
        """``data`` as ``cls`` through the converter (no fast reader)."""
        try:
            return self.converter.structure(data, cls)
        except Exception as exc:  # the edge: whatever fails while decoding is a ProtocolError
            detail = "; ".join(_describe(exc))
            raise ProtocolError(
                f"{self.provider} answer does not match the documented shape: {detail}",
                endpoint=endpoint,
            ) from None

    def _message(self, parsed: Any) -> str | None:
        if isinstance(parsed, dict):
            for key in self.message_keys:
                value = parsed.get(key)
                if isinstance(value, str) and sanitize(value):
                    return sanitize(value)
        elif isinstance(parsed, str) and sanitize(parsed):
            return sanitize(parsed, strip_tags=True)
        return None

    def _status_error(self, response: RawResponse, parsed: Any) -> APIError:
        if isinstance(parsed, _NotJson):
            message = _body_snippet(response.body) or _status_phrase(response.status)
            code = None
        else:
            message = self._message(parsed) or _status_phrase(response.status)
            code = _normalize_code(parsed.get("code")) if isinstance(parsed, dict) else None
            if code is _INVALID_CODE:
                code = None
        return error_for_status(
            response.status,
            message,
            endpoint=response.endpoint,
            http_status=response.status,
            code=code,
            retry_after=response.retry_after,
        )

    def _code_error(self, response: RawResponse, parsed: Mapping[str, Any], code: Any) -> APIError:
        message = self._message(parsed) or f"{self.provider} reported an error"
        if isinstance(code, int) and 400 <= code <= 599:
            return error_for_status(
                code,
                message,
                endpoint=response.endpoint,
                http_status=response.status,
                code=code,
                retry_after=response.retry_after,
            )
        return APIError(message, endpoint=response.endpoint, http_status=response.status, code=code)


def _format(exc: BaseException, tp: type | None) -> str:
    from cattrs.v import format_exception  # loaded with the converter that raised

    if isinstance(exc, WireTypeError):
        return str(exc)
    return format_exception(exc, tp)


def _wire_names(cl: Any) -> dict[str, str]:
    if not attrs.has(cl):
        return {}
    return {f.name: f.metadata.get(WIRE_NAME, f.name) for f in attrs.fields(cl)}


def _paths(exc: BaseException, path: str) -> list[str]:
    """cattrs.transform_error, but a path names JSON keys (``successFlag``), not attributes."""
    import cattrs  # loaded with the converter that raised

    lines: list[str] = []
    if isinstance(exc, (cattrs.ClassValidationError, cattrs.IterableValidationError)):
        if isinstance(exc, cattrs.ClassValidationError):
            names = _wire_names(exc.cl)
            noted = [
                (e, f"{path}.{names.get(n.name, n.name)}", n.type)
                for e, n in exc.group_exceptions()[0]
            ]
        else:
            noted = [(e, f"{path}[{n.index!r}]", n.type) for e, n in exc.group_exceptions()[0]]
        for inner, inner_path, tp in noted:
            if isinstance(inner, (cattrs.ClassValidationError, cattrs.IterableValidationError)):
                lines.extend(_paths(inner, inner_path))
            else:
                lines.append(f"{_format(inner, tp)} @ {inner_path}")
        lines.extend(f"{_format(e, None)} @ {path}" for e in exc.group_exceptions()[1])
    else:
        lines.append(f"{_format(exc, None)} @ {path}")
    return lines


def _describe(exc: BaseException) -> list[str]:
    try:
        lines = _paths(exc, "$.data")
    except Exception:  # a formatter failure must not hide the decoding failure
        lines = [f"{type(exc).__name__}: {exc}"]
    shown = [sanitize(line) for line in lines[:5]]
    if len(lines) > 5:
        shown.append(f"and {len(lines) - 5} more")
    return shown
