"""Provider registry: each provider's wire format lives in exactly one module here."""

from __future__ import annotations

from ..calls import ApiCall, Endpoint, RawResponse
from ..errors import ConfigurationError
from ..images import PreparedImage
from ..models import check_task_id
from .base import Provider

__all__ = [
    "PROVIDER_NAMES",
    "ApiCall",
    "Endpoint",
    "PreparedImage",
    "Provider",
    "RawResponse",
    "check_task_id",
    "get_provider",
]

PROVIDER_NAMES = ("freesora", "sora2api")


def get_provider(name: str) -> Provider:
    """The provider implementation for ``name``, or a ConfigurationError naming the choices."""
    if name == "freesora":
        from .freesora import FreeSora

        return FreeSora()
    if name == "sora2api":
        from .sora2api import Sora2Api

        return Sora2Api()
    raise ConfigurationError(f"unknown provider {name!r}: allowed {', '.join(PROVIDER_NAMES)}")
