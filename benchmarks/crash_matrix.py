"""The crash matrix: ``python benchmarks/crash_matrix.py [--points N] [--seed S] [--out DIR]``.

Kills ``sora-async batch`` (a real subprocess against the mock on 127.0.0.1) with SIGKILL at N
seeded points (default 20): before a create's answer, between a create's answer and its
journal write, half-way through a file, during the final manifest or index.html, or a seeded
time into the run; re-runs it each time (and with --resubmit-unknown when the re-run reports
unknown outcomes), then checks the mock's evidence: no prompt created twice unasked, no item
lost, every file's sha256 equal to the mock's bytes. Prints a markdown table and writes
``crash_matrix.json`` and ``crash_matrix.md`` into ``--out`` (default: benchmarks/results/).

Exit status: 0 every point held, 1 one did not, 2 a bad option.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import anyio

# Run as a script, this directory comes first on sys.path, not the checkout's root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sora_async.crashmatrix import MatrixSettings, run_matrix


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1: {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=_positive_int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--items", type=_positive_int, default=MatrixSettings().items)
    parser.add_argument("--concurrency", type=_positive_int, default=MatrixSettings().concurrency)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    settings = MatrixSettings(items=args.items, concurrency=args.concurrency)
    report = anyio.run(run_matrix, args.seed, args.points, settings)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "crash_matrix.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    (args.out / "crash_matrix.md").write_text(report.markdown())
    print(report.markdown(), end="")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
