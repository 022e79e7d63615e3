"""Every target of the issue that a run could measure, with its figure and its verdict."""

from __future__ import annotations

import math

from ..metrics import BASELINE, SDK
from ..oracle import ORACLE
from ..runner import BenchReport, ScenarioOutcome
from ..scale import RAW, RAW_FRESH
from .batch_targets import batch_targets
from .cells import num, real
from .goals import (
    CPU_LIMIT,
    FAULT_MAKESPAN_LIMIT,
    GENERATE_SLACK,
    MAKESPAN_LIMIT,
    RSS_BAND,
    VERSUS_BASELINE,
    Target,
)
from .reach import baseline_reach, ideal_reach, in_phase

__all__ = ["targets"]


def _fanout_targets(outcome: ScenarioOutcome) -> list[Target]:
    name = outcome.scenario.name
    sdk, base = outcome.client(SDK), outcome.client(BASELINE)
    if sdk is None:
        return [Target(name, "every fan-out target", outcome.error or "no run", None)]
    oracle = outcome.client(ORACLE)
    limit = FAULT_MAKESPAN_LIMIT if outcome.scenario.faults else MAKESPAN_LIMIT
    found = [
        Target(
            name,
            f"makespan ≤ {limit:g} x ideal",
            f"{num(sdk.makespan_ratio)} x ideal",
            sdk.makespan_ratio <= limit,
            *ideal_reach(sdk, oracle, limit),
        )
    ]
    if outcome.scenario.faults:
        found.append(
            Target(
                name,
                "0 duplicate creates",
                f"{sdk.duplicate_creates} (baseline {base.duplicate_creates if base else '-'})",
                sdk.duplicate_creates == 0,
            )
        )
    if base is None:
        return [*found, Target(name, "against the baseline", outcome.error or "no run", None)]
    ratio = sdk.makespan / base.makespan if base.makespan > 0 else math.nan
    p95, base_p95 = real(outcome, sdk.lag_p95), real(outcome, base.lag_p95)
    found += [
        Target(
            name,
            f"makespan ≤ {VERSUS_BASELINE:g} x baseline's",
            f"{num(ratio)} x baseline's",
            ratio <= VERSUS_BASELINE,
            *baseline_reach(sdk, base, oracle),
        ),
        Target(
            name,
            "status polls per task ≤ baseline's",
            f"{num(sdk.polls_per_task, 1)} vs {num(base.polls_per_task, 1)}",
            sdk.polls_per_task <= base.polls_per_task,
        ),
        Target(
            name,
            "detection lag p95 ≤ baseline's",
            f"{num(p95, 1)} s vs {num(base_p95, 1)} s",
            None if p95 is None or base_p95 is None else p95 <= base_p95,
            in_phase(outcome.scenario),
        ),
    ]
    return found


def targets(report: BenchReport) -> list[Target]:
    """Every target of the issue that this run could measure, with its figure."""
    found: list[Target] = []
    for outcome in report.outcomes:
        name = outcome.scenario.name
        if outcome.fanout or (outcome.error and outcome.scenario.kind.value == "fanout"):
            found += _fanout_targets(outcome)
        for one in outcome.generate:
            if one.client != SDK:
                continue
            bound = one.task_seconds + one.base_interval + GENERATE_SLACK
            found.append(
                Target(
                    name,
                    f"wall ≤ task + base interval + {GENERATE_SLACK:g} s = {bound:.1f} s",
                    f"{one.wall:.1f} s",
                    one.wall <= bound,
                )
            )
            found.append(
                Target(
                    name,
                    "a progress line on a TTY",
                    "yes" if one.progress_line else "no",
                    one.progress_line,
                )
            )
        cpu = {m.client: m for m in outcome.cpu}
        if SDK in cpu and RAW in cpu:
            ratio = cpu[SDK].cpu_ms_per_task / cpu[RAW].cpu_ms_per_task
            found.append(
                Target(
                    name,
                    f"client CPU per task ≤ {CPU_LIMIT:g} x a raw aiohttp loop",
                    f"{ratio:.2f} x ({cpu[SDK].cpu_ms_per_task:.2f} vs "
                    f"{cpu[RAW].cpu_ms_per_task:.2f} ms)",
                    ratio <= CPU_LIMIT,
                )
            )
        if SDK in cpu and RAW_FRESH in cpu:
            ratio = cpu[SDK].cpu_ms_per_task / cpu[RAW_FRESH].cpu_ms_per_task
            found.append(
                Target(
                    name,
                    f"(the same, against the loop with a fresh connection per create, the "
                    f"SDK's policy) ≤ {CPU_LIMIT:g} x",
                    f"{ratio:.2f} x ({cpu[SDK].cpu_ms_per_task:.2f} vs "
                    f"{cpu[RAW_FRESH].cpu_ms_per_task:.2f} ms)",
                    ratio <= CPU_LIMIT,
                )
            )
        marks = outcome.scenario.checkpoints
        for memory in outcome.memory:
            if memory.client != SDK or len(marks) < 2:
                continue
            goal = f"peak RSS flat within ±{RSS_BAND:.0%} from {marks[0]:,} to {marks[-1]:,}"
            reached = [c.done for c in memory.checkpoints]
            if reached[-1:] != [marks[-1]] or len(reached) < 2:
                found.append(Target(name, goal, f"only {memory.done:,} done in time", None))
                continue
            growth = memory.rss_growth - 1
            found.append(Target(name, goal, f"{growth:+.1%}", abs(growth) <= RSS_BAND))
        found += batch_targets(outcome)
    return found
