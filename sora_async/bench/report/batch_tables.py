"""The batch scenario's tables: each size against the plain script, where CPU goes, resume."""

from __future__ import annotations

from collections.abc import Callable

from ..batch import BATCH_CORE, BATCH_SCRIPT, BATCH_SDK, BatchRun
from ..runner import BenchReport, ScenarioOutcome
from .batch_runs import batch_pairs
from .cells import num, safe_ratio

__all__ = ["batch_table"]


def batch_table(report: BenchReport) -> list[str]:
    lines: list[str] = []
    for o in report.outcomes:
        for size, sdk, script in batch_pairs(o):
            if not lines:
                lines = [
                    f"Each cell: **{BATCH_SDK} / {BATCH_SCRIPT}** "
                    "([`benchmarks/batch_script.py`](benchmarks/batch_script.py)), each a process "
                    f"of its own; zero-duration tasks, 1 KB files, cap {o.scenario.cap}, "
                    f"poll interval {o.scenario.base_interval:g} s. CPU is user + system of the "
                    "client process.",
                    "",
                    "| prompts | CPU ms per task | ratio | wall, s | ratio | peak RSS, MiB | "
                    "ratio | TCP connections | succeeded | exit |",
                    "|---|---|---|---|---|---|---|---|---|---|",
                ]

            lines.append(_batch_row(size, sdk, script))
        lines += _batch_split(o)
        resume = o.resume
        if resume is not None:
            took = (
                f"no create came (exit {resume.exit_code})"
                if resume.to_first_create is None
                else (f"**{resume.to_first_create:.1f} s** from its start to the first new create")
            )
            lines += [
                "",
                f"Resume: a journal of {resume.journal_items:,} items, {resume.done_before:,} "
                f"of them done (a run stopped with Ctrl-C after {resume.build_wall:.0f} s), "
                f"{resume.added:,} prompts appended, the same command again: {took}.",
            ]
    return lines


def _batch_split(outcome: ScenarioOutcome) -> list[str]:
    """Where the batch's CPU goes, per size: the plain script, the SDK's core client (the
    client and its downloads, no journal) and the batch, each in ms per task."""
    rows = []
    for size, sdk, script in batch_pairs(outcome):
        core = next(
            (r for r in outcome.batch if r.prompts == size and r.client == BATCH_CORE), None
        )
        if core is None or sdk is None or script is None:
            continue
        client = core.cpu_ms_per_task - script.cpu_ms_per_task
        journal = sdk.cpu_ms_per_task - core.cpu_ms_per_task
        loops = " / ".join(num(r.loop_cpu_ms_per_task, 2) for r in (script, core, sdk))
        rows.append(
            f"| {size:,} | {script.cpu_ms_per_task:.2f} | {core.cpu_ms_per_task:.2f} "
            f"({safe_ratio(core.cpu_ms_per_task, script.cpu_ms_per_task):.2f} x) | "
            f"{sdk.cpu_ms_per_task:.2f} | {client:+.2f} | {journal:+.2f} | {loops} |"
        )
    if not rows:
        return []
    return [
        "",
        f"Where the batch's CPU goes (ms per task): {BATCH_CORE} is the SDK's client with its "
        "downloads and no journal ([`benchmarks/batch_core.py`](benchmarks/batch_core.py)). "
        "The last column is the main thread's share alone (the event loop; the rest is the "
        "disk and journal threads), script / core / batch: on zero-duration tasks the wall "
        "follows it.",
        "",
        f"| prompts | {BATCH_SCRIPT} | {BATCH_CORE} | {BATCH_SDK} | the client adds | "
        "the journal and bookkeeping add | event loop thread |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def _batch_row(size: int, sdk: BatchRun | None, script: BatchRun | None) -> str:
    def pair(cell: Callable[[BatchRun], str]) -> str:
        return f"{cell(sdk) if sdk else '-'} / {cell(script) if script else '-'}"

    def ratio(value: Callable[[BatchRun], float]) -> str:
        if sdk is None or script is None:
            return "-"
        return f"{safe_ratio(value(sdk), value(script)):.2f}"

    cells = [
        f"{size:,}",
        pair(lambda r: f"{r.cpu_ms_per_task:.2f}"),
        ratio(lambda r: r.cpu_ms_per_task),
        pair(lambda r: f"{r.wall:.1f}"),
        ratio(lambda r: r.wall),
        pair(lambda r: f"{r.peak_rss / 2**20:,.0f}"),
        ratio(lambda r: r.peak_rss),
        pair(lambda r: f"{r.connections:,}"),
        pair(lambda r: f"{r.succeeded:,}"),
        pair(lambda r: str(r.exit_code)),
    ]
    return "| " + " | ".join(cells) + " |"
