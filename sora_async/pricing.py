"""Moved: freesora's price table lives in :mod:`sora_async.providers.freesora`.

Kept so that code importing ``sora_async.pricing`` keeps working; import from the provider
module instead.
"""

from __future__ import annotations

from .providers.freesora import DEFAULT_DURATION, FREESORA_PRICES, freesora_price

__all__ = ["DEFAULT_DURATION", "FREESORA_PRICES", "freesora_price"]
