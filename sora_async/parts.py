"""The pieces one SoraClient is made of: built from its arguments, opened and closed together.

:class:`~sora_async.client.SoraClient` keeps the public coroutines. This module turns the
settings into a provider, a transport, a governor, a callback receiver and the task runtime,
refuses bad options before anything exists, and knows the one order in which the pieces open
and close (the shared governor and the receiver only where the client made them itself).
"""

from __future__ import annotations

import math
import os
import ssl as _ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from .config import (
    ENV_CALLBACK_LISTEN,
    ENV_CALLBACK_PUBLIC_URL,
    Secret,
    Settings,
    resolve_network,
    resolve_settings,
)
from .errors import ConfigurationError
from .governor import Governor, LocalGovernor
from .lifecycle import TaskRuntime
from .polling import PollPlanner
from .providers import Provider, get_provider
from .retry import RetryPolicy
from .transport import CallTimeouts, Transport

if TYPE_CHECKING:
    from .callbacks import CallbackReceiver
    from .governor_redis import RedisGovernor

__all__ = ["ClientParts", "build_parts"]


@attrs.define(eq=False)
class ClientParts:
    """What a client holds between ``__aenter__`` and ``aclose()``."""

    settings: Settings
    provider: Provider
    transport: Transport
    governor: Governor
    runtime: TaskRuntime
    receiver: CallbackReceiver | None
    #: The shared governor the client made from ``redis_url`` (opened and closed with it).
    owned_governor: RedisGovernor | None
    owns_receiver: bool = False

    async def open(self) -> None:
        """Open the session, the client's own governor and receiver; on failure, undo."""
        await self.transport.__aenter__()
        try:
            if self.owned_governor is not None:
                await self.owned_governor.open()
            receiver = self.receiver
            if receiver is not None and not receiver.is_running and not receiver.is_mounted:
                await receiver.start()
                self.owns_receiver = True
        except BaseException:
            if self.owned_governor is not None:
                await self.owned_governor.aclose()
            await self.transport.aclose()
            raise

    async def close(self) -> None:
        """Report unfinished tasks and close everything, even while being cancelled."""
        with anyio.CancelScope(shield=True):
            self.runtime.close()
            if self.owns_receiver and self.receiver is not None:
                await self.receiver.aclose()
            await self.transport.aclose()
        # After the slots above were released, and outside the shield (its task group must
        # be the innermost scope when it exits).
        if self.owned_governor is not None:
            await self.owned_governor.aclose()


def build_parts(
    *,
    provider: str | None,
    api_key: str | Secret | None,
    base_url: str | None,
    max_concurrent_tasks: int | None,
    poll_interval: float | None,
    redis_url: str | None,
    account: str | None,
    callback_receiver: bool | CallbackReceiver | None,
    max_connections: int | None,
    max_downloads: int,
    download_max_bytes: int | None,
    wait_timeout: float | None,
    expected_duration: float | None,
    governor: Governor | None,
    timeouts: CallTimeouts | None,
    retry: RetryPolicy | None,
    proxy: str | None,
    ssl: str | os.PathLike[str] | _ssl.SSLContext | None,
    env: Mapping[str, str] | None,
    spawn: Callable[..., Any],
) -> ClientParts:
    """The pieces of a client from ``SoraClient``'s arguments (see its docstring).

    Settings follow the contract's precedence (argument > environment > default); every
    option is checked here, before anything is opened or sent.
    """
    environ = os.environ if env is None else env
    settings = resolve_settings(
        provider=provider,
        api_key=api_key,
        base_url=base_url,
        max_concurrent_tasks=max_concurrent_tasks,
        poll_interval=poll_interval,
        redis_url=redis_url,
        account=account,
        env=environ,
    )
    # The shared governor (redis_url): built here, opened and closed with the client.
    owned_governor: RedisGovernor | None = None
    if settings.redis_url is not None and governor is None:
        from .governor_redis import RedisGovernor

        governor = owned_governor = RedisGovernor(
            settings.redis_url, settings.account, settings.max_concurrent_tasks
        )
    the_provider = get_provider(settings.provider)
    _check_options(max_downloads, download_max_bytes, wait_timeout, expected_duration)
    receiver = _receiver(callback_receiver, environ)
    if receiver is not None and not the_provider.supports_callbacks:
        raise ConfigurationError(
            f"callback_receiver: {the_provider.name} offers no completion callbacks"
        )
    transport = Transport(
        settings.base_url or the_provider.default_base_url,
        settings.api_key,
        max_connections=max_connections or max(settings.max_concurrent_tasks + 4, 10),
        timeouts=timeouts,
        # Proxy (proxy= > HTTPS_PROXY/HTTP_PROXY, NO_PROXY) and CA bundle (ssl= >
        # SSL_CERT_FILE): one Network for API calls and downloads alike.
        network=resolve_network(proxy=proxy, ssl=ssl, env=environ),
    )
    governor = governor or LocalGovernor(settings.max_concurrent_tasks)
    runtime = TaskRuntime(
        provider=the_provider,
        transport=transport,
        governor=governor,
        planner=PollPlanner(
            the_provider.poll_profile,
            poll_interval=settings.poll_interval,
            expected_duration=expected_duration,
        ),
        receiver=receiver,
        max_downloads=max_downloads,
        download_max_bytes=download_max_bytes,
        # For safe calls (status, credits); None: the transport's SAFE_CALLS policy.
        retry=retry,
        spawn=spawn,
    )
    return ClientParts(
        settings=settings,
        provider=the_provider,
        transport=transport,
        governor=governor,
        runtime=runtime,
        receiver=receiver,
        owned_governor=owned_governor,
    )


def _check_options(
    max_downloads: int,
    download_max_bytes: int | None,
    wait_timeout: float | None,
    expected_duration: float | None,
) -> None:
    if isinstance(max_downloads, bool) or max_downloads < 1:
        raise ConfigurationError(f"max_downloads must be >= 1, got {max_downloads!r}")
    if download_max_bytes is not None and (
        isinstance(download_max_bytes, bool)
        or not isinstance(download_max_bytes, int)
        or download_max_bytes < 1
    ):
        raise ConfigurationError(
            f"download_max_bytes must be an int >= 1 (bytes) or None for no limit, "
            f"got {download_max_bytes!r}"
        )
    if wait_timeout is not None and not wait_timeout > 0:
        raise ConfigurationError(f"wait_timeout must be > 0 or None, got {wait_timeout!r}")
    if expected_duration is not None and not (
        expected_duration > 0 and math.isfinite(expected_duration)
    ):
        # Checked here, not at the first wait: by then a task would be created and paid.
        raise ConfigurationError(
            f"expected_duration must be a positive number of seconds or None, "
            f"got {expected_duration!r}"
        )


def _receiver(
    option: bool | CallbackReceiver | None, environ: Mapping[str, str]
) -> CallbackReceiver | None:
    """The callback receiver asked for, if any. The receiver is an aiohttp web server: its
    module is imported only when one is asked for, so a client (and every CLI run) that never
    listens does not pay for importing aiohttp.web at start-up."""
    if option is False or (option is None and not _callback_env(environ)):
        return None
    from .callbacks import receiver_from_settings

    return receiver_from_settings(option, environ)


def _callback_env(environ: Mapping[str, str]) -> bool:
    return bool(environ.get(ENV_CALLBACK_LISTEN) or environ.get(ENV_CALLBACK_PUBLIC_URL))
