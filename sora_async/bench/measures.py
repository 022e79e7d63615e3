"""Pure measures over what a run left behind: no I/O, no clock."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence

__all__ = ["ideal_makespan", "live_series", "quantile"]


def ideal_makespan(durations: Sequence[float], cap: int) -> float:
    """Makespan of greedy list scheduling: each task, in input order, starts on the first free
    slot. The ideal client: no request latency, every end noticed the instant it happens."""
    if not durations:
        return 0.0
    free_at = [0.0] * min(cap, len(durations))
    for duration in durations:
        start = heapq.heappop(free_at)
        heapq.heappush(free_at, start + duration)
    return max(free_at)


def quantile(values: Iterable[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile (0 < q <= 1), or None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def live_series(
    intervals: Iterable[tuple[float, float]], origin: float
) -> tuple[list[float], list[int]]:
    """How many intervals are open over time, as a step function: (times since ``origin``,
    count from that time on). An interval ending when another starts frees its slot first."""
    events: list[tuple[float, int]] = []
    for begin, end in intervals:
        events.append((begin - origin, 1))
        events.append((end - origin, -1))
    # At equal times the -1 sorts first.
    events.sort()
    times: list[float] = []
    counts: list[int] = []
    live = 0
    for moment, step in events:
        live += step
        if times and times[-1] == moment:
            counts[-1] = live
        else:
            times.append(moment)
            counts.append(live)
    return times, counts
