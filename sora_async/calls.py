"""Neutral ground between the providers and the transport: what a call and its answer are.

A provider builds an :class:`ApiCall` and decodes a :class:`RawResponse`; the transport and the
downloader send calls and fill in answers. Both sides import this module and neither imports
the other, so the transport can stay ignorant of every wire format.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "ApiCall",
    "Endpoint",
    "RawResponse",
    "parse_retry_after",
]

#: The longest Retry-After honoured: a misconfigured server must not park a client for days.
MAX_RETRY_AFTER = 3600.0


class Endpoint:
    """Logical endpoint names used in errors, logs and the mock's counters."""

    CREATE = "create"
    STATUS = "status"
    CREDITS = "credits"
    DOWNLOAD = "download"


@attrs.frozen
class ApiCall:
    """One HTTP request to make, relative to the provider's base URL."""

    endpoint: str
    method: str
    path: str
    json: Mapping[str, Any] | None = None
    params: Mapping[str, str] | None = None


@attrs.frozen
class RawResponse:
    """What came back: status, headers (lower-cased names) and the whole body."""

    endpoint: str
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER))
