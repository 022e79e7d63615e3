"""The receiver a client's ``callback_receiver=`` option, or its environment, asks for."""

from __future__ import annotations

from collections.abc import Mapping

from ..config import ENV_CALLBACK_LISTEN, ENV_CALLBACK_PUBLIC_URL
from ..errors import ConfigurationError
from .receiver import CallbackReceiver

__all__ = ["receiver_from_settings"]


def receiver_from_settings(
    option: bool | CallbackReceiver | None, environ: Mapping[str, str]
) -> CallbackReceiver | None:
    """The receiver a client's ``callback_receiver=`` (or its environment) asks for, if any."""
    if isinstance(option, CallbackReceiver):
        return option
    if option is True:
        return CallbackReceiver()
    if option is None and environ.get(ENV_CALLBACK_LISTEN):
        host, _, port = environ[ENV_CALLBACK_LISTEN].rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(
                f"{ENV_CALLBACK_LISTEN} must be HOST:PORT, got {environ[ENV_CALLBACK_LISTEN]!r}"
            )
        return CallbackReceiver(host, int(port), environ.get(ENV_CALLBACK_PUBLIC_URL) or None)
    if option is None and environ.get(ENV_CALLBACK_PUBLIC_URL):
        raise ConfigurationError(
            f"{ENV_CALLBACK_PUBLIC_URL} needs {ENV_CALLBACK_LISTEN} (HOST:PORT to listen on)"
        )
    return None
