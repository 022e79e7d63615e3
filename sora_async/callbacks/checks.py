"""The receiver's settings checked before it is made: a bad one is a ConfigurationError."""

from __future__ import annotations

import re
import secrets
from typing import Final

from ..errors import ConfigurationError

__all__ = [
    "check_body_timeout",
    "check_port",
    "check_rewake_after",
    "require_positive_int",
    "token_or_new",
]

# A token must be a single URL path segment and long enough not to be guessed.
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_-]{16,256}")


def check_port(port: object) -> None:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigurationError(f"callback port must be an integer 0-65535, got {port!r}")


def require_positive_int(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"callback {name} must be a positive integer, got {value!r}")


def check_body_timeout(body_timeout: object) -> float:
    """The seconds a caller has to deliver a body: positive and finite."""
    if (
        isinstance(body_timeout, bool)
        or not isinstance(body_timeout, (int, float))
        or not 0 < body_timeout < float("inf")
    ):
        raise ConfigurationError(
            f"callback body_timeout must be a positive number of seconds, got {body_timeout!r}"
        )
    return float(body_timeout)


def check_rewake_after(rewake_after: object) -> float:
    """The seconds a repeat callback is ignored for: zero or more, finite."""
    if isinstance(rewake_after, bool) or not isinstance(rewake_after, (int, float)):
        raise ConfigurationError(
            f"callback rewake_after must be a number of seconds, got {rewake_after!r}"
        )
    if not 0 <= rewake_after < float("inf"):
        raise ConfigurationError(
            f"callback rewake_after must be >= 0 seconds, got {rewake_after!r}"
        )
    return float(rewake_after)


def token_or_new(token: object) -> str:
    """The token given, checked, or a fresh ``secrets.token_urlsafe(32)``."""
    if token is None:
        return secrets.token_urlsafe(32)
    if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
        # Never echo the value: it is a secret even when it is a bad one.
        raise ConfigurationError(
            "callback token must be 16-256 characters of A-Z, a-z, 0-9, '_' or '-'"
        )
    return token
