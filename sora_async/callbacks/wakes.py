"""Which pollers wait for which task, and which tasks already had a callback (and when)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

from .wake_hint import WakeHint

__all__ = ["Wakes"]

# The package's one logger: its records keep the name they had before the package was split.
logger = logging.getLogger("sora_async.callbacks")


class Wakes:
    """The receiver's book of watchers and of the task ids that had a callback.

    ``counts`` is the receiver's own counters, shared: a callback noted here counts as
    accepted, duplicate or unwatched.
    """

    def __init__(
        self,
        *,
        max_remembered: int,
        rewake_after: float,
        clock: Callable[[], float],
        counts: dict[str, int],
    ) -> None:
        self._max_remembered = max_remembered
        self._rewake_after = rewake_after
        self._clock = clock
        self._counts = counts
        self._watchers: dict[str, list[WakeHint]] = {}
        # Task ids that already had a callback, oldest first; the bound keeps forged ids from
        # growing it without limit.
        self._seen: OrderedDict[str, float] = OrderedDict()  # task id -> when it last woke

    def watch(self, task_id: str) -> WakeHint:
        """A new hint for ``task_id``, set at once if its callback came first."""
        hint = WakeHint()
        if task_id in self._seen:
            hint.set()
        self._watchers.setdefault(task_id, []).append(hint)
        return hint

    def unwatch(self, task_id: str, hint: WakeHint | None = None) -> None:
        hints = self._watchers.get(task_id)
        if hints is None:
            return
        if hint is None:
            hints.clear()
        else:
            # Identity, not equality: two hints for one task are distinct watchers.
            hints[:] = [h for h in hints if h is not hint]
        if not hints:
            del self._watchers[task_id]

    def note_callback(self, task_id: str) -> None:
        """Wake the watchers of ``task_id``, unless its last callback was too recent."""
        now = self._clock()
        last = self._seen.get(task_id)
        if last is not None and now - last < self._rewake_after:
            # Ignored so that repeats (provider retries, or a flood) cost no extra polls.
            self._seen.move_to_end(task_id)
            self._counts["duplicates"] += 1
            logger.debug("duplicate callback for task %r ignored", task_id)
            return
        self._seen[task_id] = now
        self._seen.move_to_end(task_id)
        while len(self._seen) > self._max_remembered:
            self._seen.popitem(last=False)
        self._counts["accepted"] += 1
        hints = self._watchers.get(task_id)
        if hints:
            for hint in hints:
                hint.set()
            logger.debug("callback for task %r: waking %d watcher(s)", task_id, len(hints))
        else:
            self._counts["unwatched"] += 1
            logger.debug("callback for unwatched task %r remembered", task_id)
