"""The verdicts: one row per target, met or missed, under a count of those met."""

from __future__ import annotations

from ..runner import BenchReport
from .targets import targets

__all__ = ["targets_table"]


def targets_table(report: BenchReport) -> list[str]:
    found = targets(report)
    if not found:
        return []
    marks = {True: "met", False: "**missed**", None: "not measured"}
    lines = ["| scenario | target | measured | | what this run shows |", "|---|---|---|---|---|"]
    lines += [
        f"| {t.scenario} | {t.goal} | {t.measured} | {marks[t.met]} | {t.note or ''} |"
        for t in found
    ]
    met = sum(t.met is True for t in found)
    summary = f"{met} of {len(found)} targets met."
    unreachable = sum(t.met is False and t.out_of_reach for t in found)
    if unreachable:
        summary += (
            f" {unreachable} of the {sum(t.met is False for t in found)} missed are out of "
            "reach in this run whatever the SDK does (the last column says why)."
        )
    return [summary, "", *lines]
