"""The batch scenario's runs, paired by size: sora-async batch beside the plain script."""

from __future__ import annotations

from ..batch import BATCH_SCRIPT, BATCH_SDK, BatchRun
from ..runner import ScenarioOutcome

__all__ = ["batch_pairs"]


def batch_pairs(outcome: ScenarioOutcome) -> list[tuple[int, BatchRun | None, BatchRun | None]]:
    """(prompts, sora-async batch, plain script) per size, in the order run."""
    sizes = list(dict.fromkeys(run.prompts for run in outcome.batch))
    return [
        (
            size,
            next((r for r in outcome.batch if r.prompts == size and r.client == BATCH_SDK), None),
            next(
                (r for r in outcome.batch if r.prompts == size and r.client == BATCH_SCRIPT), None
            ),
        )
        for size in sizes
    ]
