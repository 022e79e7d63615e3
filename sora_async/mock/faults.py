"""Injected faults: what can go wrong, and the per-endpoint FIFO queues that hold them."""

from __future__ import annotations

import enum
import math
from collections import deque

import attrs

from ..calls import Endpoint

__all__ = ["ENDPOINTS", "PROVIDERS", "Fault", "FaultQueue", "FaultSpec"]

ENDPOINTS = (Endpoint.CREATE, Endpoint.STATUS, Endpoint.CREDITS, Endpoint.DOWNLOAD)
PROVIDERS = ("freesora", "sora2api")


class Fault(str, enum.Enum):
    """One way an answer can go wrong.

    Every fault answers *instead of* the request (nothing is created, charged or read) except
    SLOW, which delays the real answer, and the CREATED_THEN_* faults, which run the create for
    real and then lose or delay its answer.
    """

    #: HTTP 500 with the provider's error envelope (plain text for a download).
    SERVER_ERROR = "server_error"
    #: The connection is closed with no answer at all.
    DROP = "drop"
    #: HTTP 200 with a truncated JSON body; a download sends half its bytes, then closes.
    MALFORMED = "malformed"
    #: HTTP 429 with Retry-After.
    RATE_LIMIT = "rate_limit"
    #: The real answer, after ``delay`` seconds.
    SLOW = "slow"
    #: Create only: the task is created and charged, then the answer is a 500.
    CREATED_THEN_500 = "created_then_500"
    #: Create only: the task is created and charged, then the connection is dropped.
    CREATED_THEN_DROP = "created_then_drop"
    #: Create only: the task is created and charged, then the answer waits ``delay`` seconds
    #: (a caller that gives up meanwhile leaves a task it paid for).
    CREATED_THEN_SLOW = "created_then_slow"
    #: HTTP 200 whose envelope carries error code ``code`` (not for downloads).
    ENVELOPE_ERROR = "envelope_error"
    #: HTTP status ``status`` with a matching envelope (plain text for a download).
    HTTP_ERROR = "http_error"

    def __str__(self) -> str:
        return self.value


_CREATE_ONLY = frozenset({Fault.CREATED_THEN_500, Fault.CREATED_THEN_DROP, Fault.CREATED_THEN_SLOW})


@attrs.frozen(kw_only=True)
class FaultSpec:
    """One queued fault and its parameters (None: the documented default)."""

    fault: Fault
    endpoint: str
    provider: str | None = None
    retry_after: float | None = None
    delay: float | None = None
    code: int | None = None
    status: int | None = None

    def matches(self, endpoint: str, provider: str | None) -> bool:
        return self.endpoint == endpoint and (self.provider is None or self.provider == provider)


def _check(spec: FaultSpec, times: int) -> None:
    if spec.endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {spec.endpoint!r}: allowed {', '.join(ENDPOINTS)}")
    if spec.provider is not None and spec.provider not in PROVIDERS:
        raise ValueError(f"unknown provider {spec.provider!r}: allowed {', '.join(PROVIDERS)}")
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise ValueError(f"times must be an int >= 1: {times!r}")
    if spec.fault in _CREATE_ONLY and spec.endpoint != Endpoint.CREATE:
        raise ValueError(f"{spec.fault.name} applies to the create endpoint only")
    if spec.fault is Fault.ENVELOPE_ERROR and spec.endpoint == Endpoint.DOWNLOAD:
        raise ValueError("a download has no envelope: use HTTP_ERROR or SERVER_ERROR")
    if spec.fault is Fault.HTTP_ERROR and (spec.status is None or not 400 <= spec.status <= 599):
        raise ValueError(f"HTTP_ERROR needs status= between 400 and 599: {spec.status!r}")
    for name in ("retry_after", "delay"):
        value = getattr(spec, name)
        if value is not None and (not math.isfinite(value) or value < 0):
            raise ValueError(f"{name} must be a finite number >= 0: {value!r}")


@attrs.define
class _Queued:
    spec: FaultSpec
    remaining: int


class FaultQueue:
    """Faults waiting to fire, first in first out per endpoint; each spec fires ``times`` times."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[_Queued]] = {name: deque() for name in ENDPOINTS}

    def add(self, spec: FaultSpec, times: int = 1) -> None:
        spec = attrs.evolve(spec, fault=Fault(spec.fault))
        _check(spec, times)
        # One entry per inject() call, so the order of calls is the order of firing.
        self._queues[spec.endpoint].append(_Queued(spec, times))

    def take(self, endpoint: str, provider: str | None) -> FaultSpec | None:
        """The next fault for this request, consuming one of its repetitions, or None."""
        queue = self._queues.get(endpoint)
        if not queue:
            return None
        for entry in queue:
            if entry.spec.matches(endpoint, provider):
                entry.remaining -= 1
                if entry.remaining <= 0:
                    queue.remove(entry)
                return entry.spec
        return None

    def pending(self, endpoint: str | None = None) -> int:
        """Repetitions still queued (for one endpoint, or all)."""
        names = ENDPOINTS if endpoint is None else (endpoint,)
        return sum(entry.remaining for name in names for entry in self._queues.get(name, ()))

    def clear(self) -> None:
        for queue in self._queues.values():
            queue.clear()
