"""The receiver's defaults: its path, a callback's size and time, re-waking, ids remembered."""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_REMEMBERED",
    "DEFAULT_PATH_PREFIX",
    "DEFAULT_REWAKE_AFTER",
]

DEFAULT_PATH_PREFIX: Final = "/sora-async/callback"
DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024
#: Seconds a caller has to deliver a callback's body: a sender that trickles bytes or stalls
#: would otherwise hold a handler (and its connection) for as long as it likes.
DEFAULT_BODY_TIMEOUT: Final = 10.0
#: Seconds after a task's callback during which a repeat is ignored. A repeat after that wakes
#: the poller again: an early forged or replayed callback must not swallow the real one (the
#: poll it caused found the task running), while a flood still costs at most one poll per task
#: per interval.
DEFAULT_REWAKE_AFTER: Final = 2.0
#: How many task ids with a callback are remembered (for early callbacks and duplicates).
DEFAULT_MAX_REMEMBERED: Final = 10_000
