"""The checks of what a caller passes to the journal, made before any SQL runs.

Each returns the value as the journal stores it (a request in canonical JSON, a file path in
the form recorded, a hash in lower case) or raises ``ValueError`` saying what was wrong.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import PurePosixPath

from .types import canonical_json

__all__ = [
    "check_credits",
    "check_file",
    "check_index",
    "check_progress",
    "check_request_json",
    "check_text",
    "check_urls",
]


def check_index(index: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be a non-negative int, got {index!r}")
    return index


def check_text(name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def check_request_json(request_json: str) -> str:
    try:
        value = json.loads(request_json)
    except (TypeError, ValueError):
        raise ValueError("request_json must be a JSON object (see request_to_json)") from None
    if not isinstance(value, dict):
        raise ValueError("request_json must be a JSON object (see request_to_json)")
    return canonical_json(value)


def check_credits(estimated_credits: int | None) -> None:
    if estimated_credits is not None and (
        isinstance(estimated_credits, bool) or not isinstance(estimated_credits, int)
    ):
        raise ValueError(f"estimated_credits must be an int, got {estimated_credits!r}")


def check_progress(progress: int | None) -> None:
    if progress is not None and (
        isinstance(progress, bool) or not isinstance(progress, int) or not 0 <= progress <= 100
    ):
        raise ValueError(f"progress must be an int from 0 to 100, got {progress!r}")


def _clean_relpath(relpath: str | os.PathLike[str]) -> str:
    text = os.fspath(relpath).replace(os.sep, "/")
    if "/" not in text and ":" not in text and text not in ("", ".", ".."):
        return text  # a plain file name, as a batch names its files: nothing to clean
    pure = PurePosixPath(text)
    parts = [p for p in pure.parts if p not in ("", ".")]
    if not parts or pure.is_absolute() or ".." in parts or ":" in parts[0]:
        raise ValueError(f"a file path must be relative to the output directory: {relpath!r}")
    return "/".join(parts)


_SHA256 = re.compile("[0-9a-f]{64}")


def _check_sha256(value: str) -> str:
    text = value.lower() if isinstance(value, str) else ""
    if _SHA256.fullmatch(text) is None:
        raise ValueError(f"sha256 must be 64 hex digits, got {value!r}")
    return text


def check_file(relpath: str | os.PathLike[str], size: int, sha256: str) -> tuple[str, int, str]:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"size must be a non-negative int, got {size!r}")
    return _clean_relpath(relpath), size, _check_sha256(sha256)


def check_urls(video_urls: Sequence[str]) -> list[str]:
    if isinstance(video_urls, str):
        raise ValueError("video_urls must be a sequence of URLs, not one string")
    return [check_text("video url", url) for url in video_urls]
