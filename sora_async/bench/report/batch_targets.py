"""The batch scenario's targets: CPU and wall against the plain script, flat RSS, resume."""

from __future__ import annotations

from ..batch import BATCH_SDK
from ..runner import ScenarioOutcome
from .batch_runs import batch_pairs
from .cells import safe_ratio
from .goals import BATCH_CPU_LIMIT, BATCH_RSS_FROM, BATCH_WALL_LIMIT, RESUME_LIMIT, RSS_BAND, Target

__all__ = ["batch_targets"]


def batch_targets(outcome: ScenarioOutcome) -> list[Target]:
    name = outcome.scenario.name
    found = []
    for size, sdk, script in batch_pairs(outcome):
        if sdk is None or script is None:
            continue
        cpu = safe_ratio(sdk.cpu_ms_per_task, script.cpu_ms_per_task)
        wall = safe_ratio(sdk.wall, script.wall)
        found += [
            Target(
                name,
                f"{size:,}: CPU per task ≤ {BATCH_CPU_LIMIT:g} x the plain script's",
                f"{cpu:.2f} x ({sdk.cpu_ms_per_task:.2f} vs {script.cpu_ms_per_task:.2f} ms)",
                cpu <= BATCH_CPU_LIMIT,
            ),
            Target(
                name,
                f"{size:,}: wall ≤ {BATCH_WALL_LIMIT:g} x the plain script's",
                f"{wall:.2f} x ({sdk.wall:.1f} vs {script.wall:.1f} s)",
                wall <= BATCH_WALL_LIMIT,
            ),
        ]
    measured = sorted(
        (r for r in outcome.batch if r.client == BATCH_SDK and r.prompts >= BATCH_RSS_FROM),
        key=lambda r: r.prompts,
    )
    if len(measured) >= 2:
        first, last = measured[0], measured[-1]
        growth = safe_ratio(last.peak_rss, first.peak_rss) - 1
        found.append(
            Target(
                name,
                f"peak RSS flat within ±{RSS_BAND:.0%} from {first.prompts:,} to "
                f"{last.prompts:,} prompts",
                f"{growth:+.1%} ({first.peak_rss / 2**20:,.0f} → {last.peak_rss / 2**20:,.0f} MiB)",
                abs(growth) <= RSS_BAND,
            )
        )
    elif outcome.batch:
        found.append(
            Target(name, f"peak RSS flat from {BATCH_RSS_FROM:,} prompts up", "one size", None)
        )
    resume = outcome.resume
    if resume is not None:
        took = resume.to_first_create
        found.append(
            Target(
                name,
                f"resume of a {resume.journal_items:,}-item journal: first new create "
                f"within {RESUME_LIMIT:g} s",
                "no create" if took is None else f"{took:.1f} s",
                None if took is None else took <= RESUME_LIMIT,
            )
        )
    return found
