"""freesora's published price table, in one place (credits per model and duration).

From the provider's document: Sora 2 and Sora 2 Stable cost 100/150 credits for 10s/15s, Sora 2
Pro 375/675; storyboard (not a model this SDK sends) 375/675/875 for 10s/15s/25s. Failed jobs are
refunded automatically. sora2api publishes no prices.
"""

from __future__ import annotations

from collections.abc import Mapping

from .models import Model

__all__ = ["DEFAULT_DURATION", "FREESORA_PRICES", "freesora_price"]

#: A request without a duration runs for this long (freesora's default).
DEFAULT_DURATION = 10

FREESORA_PRICES: Mapping[tuple[Model, int], int] = {
    (Model.SORA_2, 10): 100,
    (Model.SORA_2, 15): 150,
    (Model.SORA_2_STABLE, 10): 100,
    (Model.SORA_2_STABLE, 15): 150,
    (Model.SORA_2_PRO, 10): 375,
    (Model.SORA_2_PRO, 15): 675,
}


def freesora_price(model: Model, duration: int | None) -> int:
    """Credits freesora deducts for one task of this model and duration."""
    return FREESORA_PRICES[(model, duration or DEFAULT_DURATION)]
