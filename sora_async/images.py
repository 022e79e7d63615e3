"""Reference images for image-to-video: local checks before anything is sent.

:func:`prepare_image` reads a local file (blocking I/O: the client runs it in a worker thread)
and checks it is a real, not too large image; a URL is passed through untouched. :func:`image_kind`
is the pure part, so providers can reject an image form they cannot send without touching disk.
"""

from __future__ import annotations

import base64
import os
import re
import stat
import urllib.parse
from typing import Any, Literal

import attrs

from .errors import ValidationError

__all__ = [
    "IMAGE_MIME_TYPES",
    "MAX_IMAGE_BYTES",
    "PreparedImage",
    "image_kind",
    "is_http_url",
    "prepare_image",
    "sniff_image_mime",
]

#: Largest local image sent inline (base64 in the JSON body grows it by a third).
MAX_IMAGE_BYTES = 10 * 1024 * 1024

IMAGE_MIME_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")

_FORMS = "an http(s) URL, a local image file path or image bytes"
_URL_ONLY = "an http(s) URL"
# A string that names a scheme is a URL, not a file name; `data:` has no slashes.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://|^data:", re.IGNORECASE)


@attrs.frozen
class PreparedImage:
    """A request's image after local checks: bytes with their MIME type, or a URL."""

    data: bytes | None = attrs.field(default=None, repr=lambda b: f"<{len(b or b'')} bytes>")
    mime: str | None = None
    url: str | None = None

    @property
    def data_url(self) -> str:
        assert self.data is not None and self.mime is not None
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def is_http_url(value: str) -> bool:
    """Whether ``value`` is an absolute http(s) URL with a host."""
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def image_kind(
    image: Any, *, accepts_bytes: bool = True, provider: str | None = None
) -> Literal["url", "bytes", "path"]:
    """How an image value will be sent, or ValidationError for a form that cannot be sent.

    Pure (no disk access): providers call it from ``check_request``.
    """
    allowed = _FORMS if accepts_bytes else _URL_ONLY
    if isinstance(image, str) and _SCHEME.match(image.strip()):
        if is_http_url(image.strip()):
            return "url"
        raise ValidationError(
            "image", image, allowed, reason="only http and https URLs are fetched"
        )
    if isinstance(image, (bytes, bytearray)):
        kind: Literal["bytes", "path"] = "bytes"
    elif isinstance(image, (str, os.PathLike)):
        kind = "path"
    else:
        raise ValidationError("image", image, allowed)
    if not accepts_bytes:
        who = provider or "this provider"
        raise ValidationError(
            "image", image, allowed, reason=f"{who} takes only http(s) image URLs"
        )
    return kind


def sniff_image_mime(head: bytes) -> str | None:
    """The MIME type from the leading magic bytes, for the formats we send; else None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _size_text(limit: int) -> str:
    return f"{limit / (1024 * 1024):g} MiB ({limit} bytes)"


def _allowed_image(limit: int) -> str:
    return f"a PNG, JPEG, GIF or WEBP image of 1 byte to {_size_text(limit)}"


def prepare_image(
    image: Any,
    *,
    accepts_bytes: bool,
    max_bytes: int = MAX_IMAGE_BYTES,
    provider: str | None = None,
) -> PreparedImage | None:
    """Check a request's image and load a local one; blocking, so run it off the event loop.

    ``None`` stays None, an http(s) URL is passed on as a URL, bytes and file paths are checked
    (exists, regular file, readable, not empty, at most ``max_bytes``, a PNG/JPEG/GIF/WEBP by its
    magic bytes) and returned with their MIME type. Every refusal is a ValidationError for the
    field ``image`` that names the value and what is allowed.
    """
    if image is None:
        return None
    kind = image_kind(image, accepts_bytes=accepts_bytes, provider=provider)
    if kind == "url":
        return PreparedImage(url=str(image).strip())
    if kind == "bytes":
        data = bytes(image)
        return PreparedImage(data=data, mime=_check_content(image, data, max_bytes))
    return _load_file(image, max_bytes)


def _check_content(shown: Any, data: bytes, max_bytes: int) -> str:
    allowed = _allowed_image(max_bytes)
    if not data:
        raise ValidationError("image", shown, allowed, reason="empty")
    if len(data) > max_bytes:
        raise ValidationError(
            "image",
            shown,
            allowed,
            reason=f"{len(data)} bytes is over the {_size_text(max_bytes)} limit",
        )
    mime = sniff_image_mime(data[:16])
    if mime is None:
        raise ValidationError("image", shown, allowed, reason="not a PNG, JPEG, GIF or WEBP image")
    return mime


def _load_file(image: str | os.PathLike[Any], max_bytes: int) -> PreparedImage:
    shown = os.fsdecode(image)
    allowed = _allowed_image(max_bytes)
    path = os.path.expanduser(shown)
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ValidationError("image", shown, allowed, reason="no such file") from None
    except PermissionError:
        raise ValidationError("image", shown, allowed, reason="permission denied") from None
    except (OSError, ValueError) as exc:
        raise ValidationError(
            "image", shown, allowed, reason=f"cannot read: {_os_reason(exc)}"
        ) from None
    if stat.S_ISDIR(info.st_mode):
        raise ValidationError("image", shown, allowed, reason="a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        # Reading a FIFO or a device could block forever or never end.
        raise ValidationError("image", shown, allowed, reason="not a regular file")
    if info.st_size == 0:
        raise ValidationError("image", shown, allowed, reason="empty file")
    if info.st_size > max_bytes:
        raise ValidationError(
            "image",
            shown,
            allowed,
            reason=f"{info.st_size} bytes is over the {_size_text(max_bytes)} limit",
        )
    try:
        with open(path, "rb") as handle:
            # One byte more than allowed tells a file that grew after the stat.
            data = handle.read(max_bytes + 1)
    except PermissionError:
        raise ValidationError("image", shown, allowed, reason="permission denied") from None
    except OSError as exc:
        raise ValidationError(
            "image", shown, allowed, reason=f"cannot read: {_os_reason(exc)}"
        ) from None
    return PreparedImage(data=data, mime=_check_content(shown, data, max_bytes))


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
