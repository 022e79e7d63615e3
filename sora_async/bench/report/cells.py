"""How a figure is written in a cell: numbers, shares, ratios, mock seconds at real scale."""

from __future__ import annotations

import math

from ..runner import ScenarioOutcome

__all__ = ["num", "pct", "real", "safe_ratio"]


def num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def real(outcome: ScenarioOutcome, seconds: float | None) -> float | None:
    """Mock seconds as real-scale seconds."""
    return None if seconds is None else seconds / outcome.scenario.scale


def safe_ratio(left: float, right: float) -> float:
    return left / right if right > 0 else math.nan


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
