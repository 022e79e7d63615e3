"""Trips: moments of the mock's traffic a test can act on, such as killing its client.

A crash test needs to stop the client at an exact point of the conversation (before a create
is answered, right after, half-way through a file). Only the server sees those moments from
outside the client, so the mock calls the test's callbacks there. With no callback registered
a trip costs one dictionary lookup and changes nothing about the answers.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from collections.abc import Callable

__all__ = ["Trip", "TripCallback", "Trips"]

log = logging.getLogger("sora_async.mock")

#: Called with the trip's running count (1 for the first time it happens).
TripCallback = Callable[[int], object]


class Trip(str, enum.Enum):
    """Where a callback may fire."""

    #: A create request arrived; it is handled (and may create a task) after the callbacks.
    CREATE_RECEIVED = "create_received"
    #: A create's success answer (with its task id) was written whole to the connection.
    CREATE_ANSWERED = "create_answered"
    #: The first half of a file's body was written; the rest follows the callbacks.
    DOWNLOAD_HALF = "download_half"

    def __str__(self) -> str:
        return self.value


class Trips:
    """Counts each trip and calls its callbacks, in the order they were added."""

    def __init__(self) -> None:
        self._callbacks: dict[Trip, list[TripCallback]] = {}
        self.counts: Counter[Trip] = Counter()

    def on(self, trip: Trip | str, callback: TripCallback) -> None:
        self._callbacks.setdefault(Trip(trip), []).append(callback)

    def watched(self, trip: Trip) -> bool:
        """Whether anything listens: the file and create answers take a slower path only then."""
        return trip in self._callbacks

    def fire(self, trip: Trip) -> None:
        self.counts[trip] += 1
        count = self.counts[trip]
        for callback in self._callbacks.get(trip, ()):
            try:
                callback(count)
            except Exception:  # a test's callback never breaks the server's answer
                log.exception("trip %s callback failed", trip)

    def clear(self) -> None:
        self._callbacks.clear()
