"""PNG plots of a run (matplotlib, the ``bench`` extra): tasks alive on the mock over time,
and the detection-lag distribution, sora_async against the baseline (and the oracle where it
ran), one panel per fan-out scenario."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .measures import live_series
from .metrics import BASELINE, SDK
from .oracle import ORACLE
from .runner import BenchReport, ScenarioOutcome

__all__ = ["have_matplotlib", "write_plots"]

_COLOURS = {SDK: "tab:blue", BASELINE: "tab:orange", ORACLE: "tab:grey"}


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _grid(count: int) -> tuple[Any, list[Any]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 2 if count > 1 else 1
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 2.8 * rows), squeeze=False)
    flat = [axis for row in axes for axis in row]
    for axis in flat[count:]:
        axis.set_visible(False)
    return figure, flat[:count]


def _live(outcomes: list[ScenarioOutcome], path: Path) -> None:
    figure, axes = _grid(len(outcomes))
    for axis, outcome in zip(axes, outcomes, strict=False):
        scale = outcome.scenario.scale
        for metrics in outcome.fanout:
            times, counts = live_series(metrics.intervals, 0.0)
            axis.step(
                [t / scale for t in times],
                counts,
                where="post",
                label=metrics.client,
                color=_COLOURS.get(metrics.client),
                linewidth=1,
            )
        axis.axhline(outcome.scenario.cap, color="grey", linewidth=0.5, linestyle=":")
        axis.set_title(outcome.scenario.title, fontsize=9)
        axis.set_xlabel("real-scale s since start", fontsize=8)
        axis.set_ylabel("tasks alive on the mock", fontsize=8)
        axis.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def _lags(outcomes: list[ScenarioOutcome], path: Path) -> None:
    figure, axes = _grid(len(outcomes))
    for axis, outcome in zip(axes, outcomes, strict=False):
        scale = outcome.scenario.scale
        for metrics in outcome.fanout:
            lags = sorted(lag / scale for lag in metrics.lags)
            if not lags:
                continue
            shares = [(index + 1) / len(lags) for index in range(len(lags))]
            axis.step(
                lags,
                shares,
                where="post",
                label=metrics.client,
                color=_COLOURS.get(metrics.client),
            )
        axis.axvline(4.0, color="grey", linewidth=0.5, linestyle=":")
        axis.set_title(outcome.scenario.title, fontsize=9)
        axis.set_xlabel("detection lag, real-scale s (dotted: one base interval)", fontsize=8)
        axis.set_ylabel("share of tasks", fontsize=8)
        axis.set_xscale("symlog", linthresh=1.0)
        axis.set_xlim(left=0)
        axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def write_plots(report: BenchReport, stem: Path) -> dict[str, Path]:
    """Write ``<stem>-live.png`` and ``<stem>-lag.png``; caption -> path. Empty without
    matplotlib or without a fan-out scenario."""
    outcomes = [o for o in report.outcomes if o.fanout]
    if not outcomes or not have_matplotlib():
        return {}
    import matplotlib.pyplot as plt

    live = stem.with_name(stem.name + "-live.png")
    lag = stem.with_name(stem.name + "-lag.png")
    try:
        _live(outcomes, live)
        _lags(outcomes, lag)
    finally:
        plt.close("all")
    return {
        "tasks alive on the mock over time, sora_async against the baseline and the oracle": live,
        "detection lag distribution, sora_async against the baseline and the oracle": lag,
    }
