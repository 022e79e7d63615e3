"""``sora-async bench``: its options, and the command that runs, prints and writes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import ConfigurationError
from ..argtypes import positive_int
from .plots import have_matplotlib
from .publish import default_out_dir, publish, source_root, write_run
from .report import to_markdown
from .runner import run_benchmark
from .scenarios import catalogue

__all__ = ["add_arguments", "run_command"]

_NAMES = [scenario.name for scenario in catalogue()]


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in _NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(unknown) or repr(text)}: allowed {', '.join(_NAMES)}"
        )
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's options."""
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of seconds, not comparable numbers"
    )
    parser.add_argument(
        "--only",
        type=_names,
        metavar="NAME[,NAME...]",
        help=f"run only these scenarios: {', '.join(_NAMES)}",
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
    if args.publish and (args.quick or args.only):
        raise ConfigurationError("--publish: only a full run (no --quick, no --only) is published")
    if args.publish and root is None:
        raise ConfigurationError("--publish: needs the source checkout (README.md, benchmarks/)")
    scenarios = catalogue(quick=args.quick)
    if args.only:
        scenarios = [scenario for scenario in scenarios if scenario.name in args.only]
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
        written += publish(report, files, root)
    progress("wrote " + ", ".join(str(path) for path in written))
    return 1 if report.problems else 0
