"""What a run shows about a target's reach: notes computed from the ideal, oracle and baseline."""

from __future__ import annotations

from ..metrics import ClientMetrics
from ..scenarios import Scenario
from .cells import num
from .goals import VERSUS_BASELINE

__all__ = ["baseline_reach", "ideal_reach", "in_phase"]

#: Durations within this share of a whole number of base intervals are in phase with a
#: fixed poller (its polls drift by their own round trips anyway).
_PHASE_TOLERANCE = 0.01


def in_phase(scenario: Scenario) -> str | None:
    """A note when every task lasts a whole number of base intervals: a fixed poller's polls,
    one every base interval from its create, then fall just after each end."""
    if scenario.jitter or len(scenario.mix) != 1 or scenario.fail_at_once:
        return None
    intervals = scenario.mix[0].real_seconds * scenario.scale / scenario.base_interval
    whole = round(intervals)
    if whole < 1 or abs(intervals - whole) > _PHASE_TOLERANCE * whole:
        return None
    return (
        f"every task lasts exactly {whole} base intervals, so the baseline's polls, one every "
        "base interval from its create, fall just after each end; with any spread of "
        "durations its lag would reach a whole base interval"
    )


def _reach(missed: bool, text: str | None, beyond: bool) -> tuple[str | None, bool]:
    """The note of a target, and whether it was missed where no client could meet it."""
    if text is None:
        return None, False
    out = missed and beyond
    return (f"out of reach here: {text}" if out else text), out


def ideal_reach(
    sdk: ClientMetrics, oracle: ClientMetrics | None, limit: float
) -> tuple[str | None, bool]:
    """How close to the ideal a client that knows every task's end came in the same run."""
    if oracle is None:
        return None, False
    reach = oracle.makespan_ratio
    return _reach(
        sdk.makespan_ratio > limit,
        f"the oracle (every end known, one poll a task) takes {num(reach)} x ideal",
        reach > limit,
    )


def baseline_reach(
    sdk: ClientMetrics, base: ClientMetrics, oracle: ClientMetrics | None
) -> tuple[str | None, bool]:
    """Why beating the baseline by the margin asked cannot happen, when this run shows it."""
    missed = sdk.makespan > VERSUS_BASELINE * base.makespan
    floor = VERSUS_BASELINE * base.makespan_ratio
    if floor < 1:
        return _reach(
            missed,
            f"the baseline takes {num(base.makespan_ratio)} x ideal, and {VERSUS_BASELINE:g} "
            f"x that is {num(floor)} x ideal, below the ideal itself (no client beats 1.00)",
            True,
        )
    if oracle is None or base.makespan <= 0:
        return None, False
    best = oracle.makespan / base.makespan
    return _reach(
        missed,
        f"the oracle (every end known) takes {num(best)} x the baseline's",
        best > VERSUS_BASELINE,
    )
