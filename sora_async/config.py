"""Settings: explicit argument, then environment variable, then default; and the secret wrapper."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from typing import Any

import attrs

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_MAX_CONCURRENT_TASKS",
    "DEFAULT_PROVIDER",
    "Secret",
    "Settings",
    "check_api_key",
    "resolve_settings",
]

DEFAULT_PROVIDER = "freesora"
DEFAULT_MAX_CONCURRENT_TASKS = 20

ENV_PROVIDER = "SORA_PROVIDER"
ENV_API_KEY = "SORA_API_KEY"
ENV_BASE_URL = "SORA_BASE_URL"
ENV_MAX_CONCURRENT_TASKS = "SORA_MAX_CONCURRENT_TASKS"
ENV_POLL_INTERVAL = "SORA_POLL_INTERVAL"
ENV_REDIS_URL = "SORA_REDIS_URL"
ENV_ACCOUNT = "SORA_ACCOUNT"
ENV_CALLBACK_LISTEN = "SORA_CALLBACK_LISTEN"
ENV_CALLBACK_PUBLIC_URL = "SORA_CALLBACK_PUBLIC_URL"


class Secret:
    """Holds the API key; its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself: only for the Authorization header."""
        return self._value

    def fingerprint(self) -> str:
        """A short one-way hash, safe to log and to name an account by."""
        return hashlib.sha256(self._value.encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("Secret cannot be pickled")


@attrs.frozen(kw_only=True)
class Settings:
    """Resolved configuration of one client."""

    provider: str
    api_key: Secret
    base_url: str | None
    max_concurrent_tasks: int
    poll_interval: float | None
    redis_url: str | None = None
    account: str

    def __repr__(self) -> str:
        return (
            f"Settings(provider={self.provider!r}, base_url={self.base_url!r}, "
            f"max_concurrent_tasks={self.max_concurrent_tasks}, "
            f"poll_interval={self.poll_interval!r}, account={self.account!r})"
        )


def _pick(explicit: Any, env: Mapping[str, str], name: str) -> Any:
    if explicit is not None:
        return explicit
    value = env.get(name)
    return value if value not in (None, "") else None


def _positive_int(value: Any, setting: str, source: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"{setting} must be a positive integer, got {value!r} (from {source})"
        ) from None
    if number < 1:
        raise ConfigurationError(f"{setting} must be a positive integer, got {number} ({source})")
    return number


def _positive_float(value: Any, setting: str, source: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"{setting} must be a positive number of seconds, got {value!r} (from {source})"
        ) from None
    if not (number > 0 and math.isfinite(number)):
        raise ConfigurationError(f"{setting} must be a positive number of seconds, got {value!r}")
    return number


def resolve_settings(
    *,
    provider: str | None = None,
    api_key: str | Secret | None = None,
    base_url: str | None = None,
    max_concurrent_tasks: int | None = None,
    poll_interval: float | None = None,
    redis_url: str | None = None,
    account: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every setting by precedence: explicit argument > environment > default."""
    from .providers import PROVIDER_NAMES

    env = os.environ if env is None else env
    provider_name = _pick(provider, env, ENV_PROVIDER) or DEFAULT_PROVIDER
    if provider_name not in PROVIDER_NAMES:
        raise ConfigurationError(
            f"unknown provider {provider_name!r}: allowed {', '.join(PROVIDER_NAMES)}"
        )
    key = _pick(api_key, env, ENV_API_KEY)
    if key is None:
        raise ConfigurationError(
            f"no API key: pass api_key=..., use --api-key, or set {ENV_API_KEY}"
        )
    secret = key if isinstance(key, Secret) else Secret(str(key))
    if not secret.reveal().strip():
        raise ConfigurationError(f"the API key is empty: pass api_key=... or set {ENV_API_KEY}")
    check_api_key(secret, _source(api_key, ENV_API_KEY))
    url = _pick(base_url, env, ENV_BASE_URL)
    if url is not None and not str(url).lower().startswith(("http://", "https://")):
        raise ConfigurationError(f"base_url must be an http(s) URL, got {url!r}")
    cap_raw = _pick(max_concurrent_tasks, env, ENV_MAX_CONCURRENT_TASKS)
    cap = (
        DEFAULT_MAX_CONCURRENT_TASKS
        if cap_raw is None
        else _positive_int(
            cap_raw, "max_concurrent_tasks", _source(max_concurrent_tasks, ENV_MAX_CONCURRENT_TASKS)
        )
    )
    interval_raw = _pick(poll_interval, env, ENV_POLL_INTERVAL)
    interval = (
        None
        if interval_raw is None
        else _positive_float(
            interval_raw, "poll_interval", _source(poll_interval, ENV_POLL_INTERVAL)
        )
    )
    redis = _pick(redis_url, env, ENV_REDIS_URL)
    account_name = _pick(account, env, ENV_ACCOUNT) or f"{provider_name}-{secret.fingerprint()}"
    return Settings(
        provider=provider_name,
        api_key=secret,
        base_url=str(url).rstrip("/") if url else None,
        max_concurrent_tasks=cap,
        poll_interval=interval,
        redis_url=redis,
        account=account_name,
    )


def check_api_key(key: Secret, source: str = "argument") -> None:
    """Refuse a key that cannot go into an Authorization header, before any request.

    Surrounding whitespace is refused, not stripped: a key read from a file with its newline
    is a mistake worth seeing once, and a stripped key that still fails would leave the user
    guessing which key was sent. httpx and openai-python do not strip either (they fail deep in
    the HTTP layer instead). The message says where the key came from and what is wrong with
    it, never the key itself.
    """
    value = key.reveal()
    setting = f"the API key (api_key / {ENV_API_KEY}, from {source})"
    if value != value.rstrip():
        end = value[len(value.rstrip()) :]
        what = "a trailing newline" if "\n" in end or "\r" in end else "trailing whitespace"
        raise ConfigurationError(
            f"{setting} has {what}, as a key read from a file often does: "
            "remove it (str.strip(), or $(tr -d '\\n' < keyfile)); nothing was sent"
        )
    if value != value.lstrip():
        raise ConfigurationError(f"{setting} starts with whitespace: remove it; nothing was sent")
    for position, char in enumerate(value, start=1):
        if not "!" <= char <= "~":
            if char.isspace() or not char.isprintable():
                kind = "a space or control character"
            else:
                kind = "a non-ASCII character"
            raise ConfigurationError(
                f"{setting} has {kind} at position {position}, which cannot go in an HTTP "
                "header: check the key; nothing was sent"
            )


def _source(explicit: Any, env_name: str) -> str:
    return "argument" if explicit is not None else f"environment {env_name}"
