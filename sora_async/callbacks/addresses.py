"""The receiver's addresses: its path prefix and public URL checked, a bound socket's URL host."""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from yarl import URL

from ..errors import ConfigurationError

__all__ = ["normalize_prefix", "normalize_public_url", "url_host"]

# Literal path segments only: aiohttp would read "{...}" as a route variable.
_PREFIX_SEGMENT_RE: Final = re.compile(r"[A-Za-z0-9._~-]+")


def normalize_prefix(prefix: str) -> str:
    segments = [s for s in prefix.split("/") if s]
    for segment in segments:
        if not _PREFIX_SEGMENT_RE.fullmatch(segment):
            raise ConfigurationError(
                f"callback path_prefix {prefix!r}: segments may use A-Z, a-z, 0-9 and . _ ~ -"
            )
    return "".join(f"/{s}" for s in segments)


def normalize_public_url(public_url: str) -> str:
    try:
        url = URL(public_url)
    except (TypeError, ValueError):
        raise ConfigurationError(f"callback public_url {public_url!r} is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"callback public_url {public_url!r} must be an absolute http(s) URL"
        )
    if url.query_string or url.fragment:
        raise ConfigurationError(f"callback public_url {public_url!r} must not have a query")
    return public_url.rstrip("/")


def url_host(sock_host: str) -> str:
    """The host part of a URL that reaches a socket bound to ``sock_host``."""
    try:
        address = ipaddress.ip_address(sock_host.split("%", 1)[0])
    except ValueError:
        return sock_host
    if address.is_unspecified:
        # Bound to every interface: loopback reaches it; remote callers need public_url anyway.
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    return f"[{address}]" if address.version == 6 else str(address)
