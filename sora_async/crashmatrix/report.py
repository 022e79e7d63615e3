"""The matrix's figures: totals over every point, as JSON and as a markdown table."""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from .points import draw_points
from .run import MatrixSettings, PointResult, run_point

__all__ = ["MatrixReport", "run_matrix"]


async def run_matrix(
    seed: int,
    points: int,
    settings: MatrixSettings,
    *,
    say: Callable[[str], object] = lambda line: print(line, file=sys.stderr),
) -> MatrixReport:
    """Every one of ``points`` seeded kill points, one after another, in a scratch folder;
    ``say`` hears one line per point as it ends."""
    drawn = draw_points(seed, points, settings.items)
    results: list[PointResult] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sora-crash-matrix-") as scratch:
        for number, point in enumerate(drawn, start=1):
            result = await run_point(point, Path(scratch) / f"point-{number:02d}", settings)
            verdict = "ok" if result.ok else "FAILED: " + "; ".join(result.problems)
            say(f"{number:2d}/{len(drawn)} {point.label()}: {verdict}")
            results.append(result)
    return MatrixReport(
        seed=seed, settings=settings, results=results, seconds=round(time.monotonic() - began, 1)
    )


@attrs.frozen
class MatrixReport:
    seed: int
    settings: MatrixSettings
    results: list[PointResult]
    seconds: float

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(result.ok for result in self.results)

    def totals(self) -> dict[str, Any]:
        results = self.results
        kinds = Counter(result.point.kind.value for result in results)
        return {
            "points": len(results),
            "points_ok": sum(result.ok for result in results),
            "kills_landed": sum(result.killed for result in results),
            "points_by_kind": dict(sorted(kinds.items())),
            "items": len(results) * self.settings.items,
            "duplicate_creates": sum(result.duplicates for result in results),
            "lost_items": sum(result.lost for result in results),
            "files_whole": sum(result.files_whole for result in results),
            "files_bad": sum(result.files_bad for result in results),
            "unknown_items": sum(result.unknown for result in results),
            "unknown_created_by_server": sum(result.unknown_created for result in results),
            "resubmitted_on_request": sum(result.resubmitted for result in results),
            "creates": sum(result.creates for result in results),
            "left_at_end": sum(len(result.left_at_end) for result in results),
            "cli_cpu_seconds": round(sum(result.cli_cpu_seconds for result in results), 1),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "settings": attrs.asdict(self.settings),
            "totals": self.totals(),
            "ok": self.ok,
            "seconds": self.seconds,
            "machine": _machine(),
            "points": [result.as_dict() for result in self.results],
        }

    def markdown(self, *, per_point: bool = True) -> str:
        """The totals' table, then (``per_point``) one row per kill point."""
        totals = self.totals()
        items = self.settings.items
        lines = [
            f"Crash matrix: `sora-async batch` ({items} prompts, concurrency "
            f"{self.settings.concurrency}) killed with SIGKILL at {totals['points']} seeded "
            f"points (seed {self.seed}), then run again.",
            "",
            "| figure | value |",
            "|---|---|",
            f"| points (kill landed) | {totals['points']} ({totals['kills_landed']}) |",
            "| points by kind | "
            + ", ".join(f"{kind} {n}" for kind, n in totals["points_by_kind"].items())
            + " |",
            f"| items | {totals['items']} |",
            f"| duplicate creates (not asked for) | {totals['duplicate_creates']} |",
            f"| lost items | {totals['lost_items']} |",
            f"| files whole (sha256 = the mock's) | {totals['files_whole']} of "
            f"{totals['items']} ({totals['files_bad']} bad) |",
            f"| unknown outcomes reported by the re-run | {totals['unknown_items']} "
            f"(the server had created {totals['unknown_created_by_server']}) |",
            f"| creates sent again on --resubmit-unknown | {totals['resubmitted_on_request']} |",
            f"| creates at the mock in all | {totals['creates']} |",
            f"| partial or temporary files left at the end | {totals['left_at_end']} |",
            f"| wall time (CPU of the CLI processes) | {self.seconds:.1f} s "
            f"({totals['cli_cpu_seconds']:.1f} s) |",
            f"| machine | {_machine()} |",
        ]
        text = "\n".join(lines) + "\n"
        return text + "\n" + self.points_markdown() if per_point else text

    def points_markdown(self) -> str:
        """One row per kill point: its exits, what the kill left, and the verdict."""
        lines = [
            "| # | kill point | exits | left by the kill | unknown | creates | ok |",
            "|---|---|---|---|---|---|---|",
        ]
        for number, result in enumerate(self.results, start=1):
            left = ", ".join(result.left_by_kill) or "-"
            exits = " / ".join(str(code) for code in result.exits)
            verdict = "yes" if result.ok else "NO: " + "; ".join(result.problems)
            lines.append(
                f"| {number} | {result.point.label()} | {exits} | {left} | {result.unknown} | "
                f"{result.creates} | {verdict} |"
            )
        return "\n".join(lines) + "\n"


def _machine() -> str:
    cpus = os.cpu_count() or 0
    return f"{platform.system()} {platform.machine()}, {cpus} CPUs, Python {sys.version.split()[0]}"
