"""Settings: explicit argument, then environment variable, then default; and the secret wrapper."""

from __future__ import annotations

import functools
import hashlib
import math
import os
import ssl as _ssl
import urllib.request
from collections.abc import Mapping
from typing import Any

import attrs
from yarl import URL

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_MAX_CONCURRENT_TASKS",
    "DEFAULT_PROVIDER",
    "Network",
    "Secret",
    "Settings",
    "check_api_key",
    "resolve_network",
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
ENV_SSL_CERT_FILE = "SSL_CERT_FILE"
#: Checked in this order, as curl and requests do: the lower-case name wins.
_PROXY_ENV = {
    "http": ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"),
    "https": ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"),
}
_NO_PROXY_ENV = ("no_proxy", "NO_PROXY")


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


@attrs.frozen(kw_only=True, repr=False)
class Network:
    """How requests reach the internet: a proxy per URL, and the TLS trust to verify with.

    ``proxy`` (explicit) serves every URL; otherwise ``HTTPS_PROXY`` / ``HTTP_PROXY`` (and
    ``ALL_PROXY``) by the URL's scheme. ``NO_PROXY`` exempts hosts from either, as curl does.
    ``ssl_context`` is None for the system's trust store, else built from a CA bundle.
    """

    proxy: str | None = None
    env_proxies: Mapping[str, str] = attrs.field(factory=dict)
    no_proxy: str | None = None
    ssl_context: _ssl.SSLContext | None = None

    def proxy_for(self, url: str) -> str | None:
        """The proxy URL to send a request for ``url`` through, or None for a direct one."""
        if self.proxy is None and not self.env_proxies:
            return None  # the usual case, asked for each file: no URL parsed (a dozen calls)
        parsed = URL(url)
        host = parsed.raw_host or ""
        if self.no_proxy and host:
            hostport = f"{host}:{parsed.port}" if parsed.port is not None else host
            bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
            if bypass(hostport, {"no": self.no_proxy}):
                return None
        if self.proxy is not None:
            return self.proxy
        return self.env_proxies.get(parsed.scheme.lower())

    def __repr__(self) -> str:
        # A proxy URL may hold a user and password: only whether one is set is shown.
        proxy = "set" if self.proxy or self.env_proxies else "none"
        trust = "custom" if self.ssl_context is not None else "system"
        return f"Network(proxy={proxy}, no_proxy={self.no_proxy!r}, ca={trust})"


def _check_proxy_url(value: str, setting: str) -> str:
    try:
        url = URL(value)
    except (TypeError, ValueError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        # Not echoed: a proxy URL may carry a password.
        raise ConfigurationError(
            f"{setting} must be an http:// or https:// proxy URL with a host "
            "(for example http://proxy.example:3128)"
        )
    return value


def resolve_network(
    *,
    proxy: str | None = None,
    ssl: str | os.PathLike[str] | _ssl.SSLContext | None = None,
    env: Mapping[str, str] | None = None,
) -> Network:
    """Proxy and TLS settings: explicit argument, then the standard environment variables.

    ``ssl`` is a CA bundle file (PEM) or a ready ``ssl.SSLContext``; without it
    ``SSL_CERT_FILE`` names the bundle, and without that the system's trust store is used.
    """
    env = os.environ if env is None else env
    explicit = None if proxy is None else _check_proxy_url(str(proxy), "proxy")
    env_proxies: dict[str, str] = {}
    for scheme, names in _PROXY_ENV.items():
        for name in names:
            value = env.get(name)
            if value:
                env_proxies[scheme] = _check_proxy_url(value, f"the {name} environment variable")
                break
    no_proxy = next((env[name] for name in _NO_PROXY_ENV if env.get(name)), None)
    return Network(
        proxy=explicit,
        env_proxies=env_proxies,
        no_proxy=no_proxy,
        ssl_context=_ssl_context(ssl, env),
    )


def _ssl_context(
    ssl: str | os.PathLike[str] | _ssl.SSLContext | None, env: Mapping[str, str]
) -> _ssl.SSLContext | None:
    if isinstance(ssl, _ssl.SSLContext):
        return ssl
    if ssl is not None:
        cafile, setting = os.fspath(ssl), "ssl"
    elif env.get(ENV_SSL_CERT_FILE):
        cafile, setting = env[ENV_SSL_CERT_FILE], f"the {ENV_SSL_CERT_FILE} environment variable"
    else:
        return None  # aiohttp's default: the system trust store, verified
    try:
        found = os.stat(cafile)
        return _loaded_ca_bundle(cafile, (found.st_ino, found.st_size, found.st_mtime_ns))
    except (OSError, _ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigurationError(
            f"{setting}: cannot load the CA bundle {cafile!r} ({reason}); "
            "give a PEM file of trusted certificates"
        ) from None


@functools.lru_cache(maxsize=8)
def _loaded_ca_bundle(cafile: str, stamp: tuple[int, int, int]) -> _ssl.SSLContext:
    """One context per bundle file as it is now (``stamp``: inode, size, mtime).

    Parsing a system-sized bundle costs about 60 ms of CPU, and a service that makes a client
    per request with ``SSL_CERT_FILE`` set paid it every time. A context is safe to share
    between sessions; a rewritten or replaced file has a new stamp and is read again.
    """
    del stamp  # part of the cache's key only
    return _ssl.create_default_context(cafile=cafile)


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
