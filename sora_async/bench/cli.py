"""``sora-async bench``: the command that runs, prints and writes (its options are
:mod:`sora_async.cli.bench_options`, which the command line reads without importing this)."""

from __future__ import annotations

import argparse
import sys

import attrs

from .. import ConfigurationError
from ..cli.bench_options import add_arguments
from .plots import have_matplotlib
from .publish import BATCH_BLOCK, MAIN_BLOCK, default_out_dir, publish, source_root, write_run
from .report import to_markdown
from .runner import run_benchmark
from .scenarios import Kind, Scenario, catalogue

__all__ = ["add_arguments", "run_command"]


async def run_command(args: argparse.Namespace) -> int:
    """Run, print the markdown, write the files. 1 when a scenario could not be measured."""
    root = source_root()
    baseline = args.baseline
    if baseline is None and root is not None:
        baseline = root / "benchmarks" / "baseline.py"
    if baseline is None or not baseline.is_file():
        raise ConfigurationError(
            "--baseline: benchmarks/baseline.py not found (not a source checkout); "
            "give its path with --baseline"
        )
    batch_only = args.only == ["batch"]
    if args.publish and (args.quick or (args.only and not batch_only)):
        raise ConfigurationError(
            "--publish: only a full run (no --quick, no --only) or --scenario batch alone "
            "is published"
        )
    if args.publish and root is None:
        raise ConfigurationError("--publish: needs the source checkout (README.md, benchmarks/)")
    batch_script = args.batch_script
    if batch_script is None and root is not None:
        batch_script = root / "benchmarks" / "batch_script.py"
    scenarios = catalogue(quick=args.quick)
    if args.only:
        scenarios = [scenario for scenario in scenarios if scenario.name in args.only]
    else:
        scenarios = [scenario for scenario in scenarios if not scenario.only_when_named]
    scenarios = [_batch_settings(scenario, args) for scenario in scenarios]
    if args.profile:
        try:
            import pyinstrument  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "--profile: pyinstrument is not installed (pip install 'sora_async[bench]')"
            ) from None

    def progress(line: str) -> None:
        print(f"bench: {line}", file=sys.stderr, flush=True)

    report = await run_benchmark(
        scenarios,
        baseline=baseline,
        batch_script=batch_script,
        seed=args.seed,
        quick=args.quick,
        profile=args.profile,
        progress=progress,
    )
    out_dir = args.out if args.out is not None else default_out_dir()
    files = write_run(report, out_dir)
    print(to_markdown(report), end="")
    written = [files.json, files.markdown, *files.plots.values()]
    if not have_matplotlib():
        progress("no plots: matplotlib is not installed (pip install 'sora_async[bench]')")
    if args.publish:
        assert root is not None
        written += publish(report, files, root, block=BATCH_BLOCK if batch_only else MAIN_BLOCK)
    progress("wrote " + ", ".join(str(path) for path in written))
    return 1 if report.problems else 0


def _batch_settings(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    if scenario.kind is not Kind.BATCH:
        return scenario
    if args.sizes:
        scenario = attrs.evolve(scenario, sizes=args.sizes)
    if args.resume_items is not None:
        scenario = attrs.evolve(scenario, resume_items=max(0, args.resume_items))
    return scenario
