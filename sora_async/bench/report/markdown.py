"""The whole report as markdown: the run's headline, then each table in its place."""

from __future__ import annotations

from ..runner import BenchReport
from .batch_tables import batch_table
from .client_tables import cpu_table, generate_table, memory_table
from .fanout_tables import fanout_table, slot_table
from .verdicts import targets_table

__all__ = ["headline", "to_markdown"]


def headline(report: BenchReport) -> str:
    env = report.environment
    kind = "quick smoke run (not comparable)" if report.quick else "full run"
    return (
        f"{kind}, seed {report.seed}: sora_async {env.get('sora_async')}, "
        f"{env.get('implementation')} {env.get('python')} on {env.get('platform')}, "
        f"{env.get('cpus')} CPUs, {env.get('date')}; the whole benchmark took "
        f"{report.wall_seconds:.0f} s."
    )


def to_markdown(report: BenchReport, *, images: dict[str, str] | None = None) -> str:
    """The whole report; ``images`` maps a caption to a PNG path to show under the tables."""
    sections: list[list[str]] = [
        [headline(report)],
        fanout_table(report),
        slot_table(report),
        generate_table(report),
        memory_table(report),
        cpu_table(report),
        batch_table(report),
        targets_table(report),
    ]
    if images:
        sections.append([f"![{caption}]({path})" for caption, path in images.items()])
    if report.problems:
        sections.append(["Problems: " + "; ".join(report.problems)])
    return "\n\n".join("\n".join(section) for section in sections if section) + "\n"
