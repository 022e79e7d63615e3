"""The issue's goals: the limit each target is judged by, and a Target with its verdict."""

from __future__ import annotations

import attrs

__all__ = [
    "BATCH_CPU_LIMIT",
    "BATCH_RSS_FROM",
    "BATCH_WALL_LIMIT",
    "CPU_LIMIT",
    "FAULT_MAKESPAN_LIMIT",
    "GENERATE_SLACK",
    "MAKESPAN_LIMIT",
    "RESUME_LIMIT",
    "RSS_BAND",
    "VERSUS_BASELINE",
    "Target",
]

#: Makespan over ideal, without and with faults.
MAKESPAN_LIMIT = 1.03
FAULT_MAKESPAN_LIMIT = 1.5
#: Makespan against the baseline's.
VERSUS_BASELINE = 0.95
#: One generate: at most task time + one base interval + this.
GENERATE_SLACK = 0.5
CPU_LIMIT = 1.3
RSS_BAND = 0.10
#: ``sora-async batch`` against the plain batch script, at the same size.
BATCH_CPU_LIMIT = 2.0
BATCH_WALL_LIMIT = 1.5
#: RSS is compared from this size to the largest measured one.
BATCH_RSS_FROM = 10_000
#: Re-opening a big journal and deciding what to do takes seconds, not minutes.
RESUME_LIMIT = 60.0


@attrs.frozen
class Target:
    scenario: str
    goal: str
    measured: str
    #: None: could not be measured in this run.
    met: bool | None
    #: What this run shows about the target's reach (computed, never written by hand).
    note: str | None = None
    #: The run shows that no client could meet it here (the ideal, or the oracle, is beyond).
    out_of_reach: bool = False
