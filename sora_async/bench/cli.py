"""``sora-async bench``: its options, and the command that runs, prints and writes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import attrs

from .. import ConfigurationError
from ..argtypes import positive_int
from .plots import have_matplotlib
from .publish import BATCH_BLOCK, MAIN_BLOCK, default_out_dir, publish, source_root, write_run
from .report import to_markdown
from .runner import run_benchmark
from .scenarios import Kind, Scenario, catalogue

__all__ = ["add_arguments", "run_command"]

_NAMES = [scenario.name for scenario in catalogue()]
_ON_REQUEST = [scenario.name for scenario in catalogue() if scenario.only_when_named]


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in _NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(unknown) or repr(text)}: allowed {', '.join(_NAMES)}"
        )
    return names


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"not a list of positive counts: {text!r}")
    return sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's options."""
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of seconds, not comparable numbers"
    )
    parser.add_argument(
        "--only",
        "--scenario",
        type=_names,
        metavar="NAME[,NAME...]",
        help=f"run only these scenarios: {', '.join(_NAMES)} ({', '.join(_ON_REQUEST)} runs "
        "only when named: at 100,000 prompts it takes the better part of an hour)",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        metavar="N[,N...]",
        help="batch: the numbers of prompts (default 1000,10000,100000)",
    )
    parser.add_argument(
        "--resume-items",
        type=int,
        metavar="N",
        help="batch: time the resume of an N-item journal, half done (default 100000; 0: skip)",
    )
    parser.add_argument(
        "--batch-script",
        type=Path,
        help="batch: the plain script (default: benchmarks/batch_script.py of the checkout)",
    )
    parser.add_argument("--seed", type=positive_int, default=7, help="(default %(default)s)")
    parser.add_argument(
        "--out",
        type=Path,
        help="directory for the run's files (default: benchmarks/results in a source "
        "checkout, else a new temporary directory)",
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="also replace benchmarks/results/latest.* and the README table (full runs only)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="the baseline script (default: benchmarks/baseline.py of the source checkout)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the SDK in the CPU scenario with pyinstrument (the bench extra)",
    )


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
