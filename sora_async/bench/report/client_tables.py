"""The tables of one generate, of memory over a long run, and of CPU on the same requests."""

from __future__ import annotations

import math

from ..metrics import SDK
from ..runner import BenchReport
from .cells import num

__all__ = ["cpu_table", "generate_table", "memory_table"]


def generate_table(report: BenchReport) -> list[str]:
    lines: list[str] = []
    for o in report.outcomes:
        for m in o.generate:
            if not lines:
                lines = [
                    "| one video | task, s | base interval, s | wall, s | create → exit, s | "
                    "status polls | progress line on a TTY |",
                    "|---|---|---|---|---|---|---|",
                ]
            lines.append(
                f"| {m.client} | {m.task_seconds:g} | {m.base_interval:g} | {m.wall:.2f} | "
                f"{num(m.create_to_exit)} | {m.status_requests} | "
                f"{('yes' if m.progress_line else 'no') if m.client == SDK else '-'} |"
            )
    return lines


def memory_table(report: BenchReport) -> list[str]:
    lines: list[str] = []
    for o in report.outcomes:
        marks = o.scenario.checkpoints
        for m in o.memory:
            if not lines:
                heads = " | ".join(f"peak RSS at {mark:,}" for mark in marks)
                lines = [
                    f"| zero-duration prompts | RSS at start | {heads} | growth | "
                    "wall per 1,000, s | done |",
                    "|---|---|" + "---|" * len(marks) + "---|---|---|",
                ]
            reached = {c.done: c for c in m.checkpoints}
            rss = " | ".join(
                f"{reached[mark].peak_rss / 2**20:,.0f} MiB" if mark in reached else "-"
                for mark in marks
            )
            growth = "-" if math.isnan(m.rss_growth) else f"{m.rss_growth - 1:+.1%}"
            done = f"{m.done:,}" + (f" (stopped at {m.wall:.0f} s)" if m.stopped else "")
            lines.append(
                f"| {m.client} | {m.start_rss / 2**20:,.0f} MiB | {rss} | {growth} | "
                f"{num(m.wall_per_1000)} | {done} |"
            )
    return lines


def cpu_table(report: BenchReport) -> list[str]:
    lines: list[str] = []
    for o in report.outcomes:
        for m in o.cpu:
            if not lines:
                lines = [
                    "| same requests | tasks | CPU ms per task | creates | status requests | "
                    "wall, s |",
                    "|---|---|---|---|---|---|",
                ]
            lines.append(
                f"| {m.client} | {m.tasks:,} | {m.cpu_ms_per_task:.2f} | {m.creates:,} | "
                f"{m.status_requests:,} | {m.wall:.1f} |"
            )
    return lines
