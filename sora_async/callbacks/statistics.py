"""CallbackStatistics: a snapshot of a receiver's counters, one outcome per request."""

from __future__ import annotations

import attrs

__all__ = ["CallbackStatistics"]


@attrs.frozen
class CallbackStatistics:
    """A snapshot of a receiver's counters.

    Every HTTP request that reaches the receiver's route counts in ``received`` and in exactly
    one of ``accepted``, ``duplicates`` or a ``rejected_*`` counter. ``unwatched`` counts the
    accepted callbacks whose task had no watcher yet (early or unknown tasks).
    """

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    unwatched: int = 0
    rejected_token: int = 0
    rejected_method: int = 0
    rejected_size: int = 0
    rejected_body: int = 0
    rejected_timeout: int = 0
