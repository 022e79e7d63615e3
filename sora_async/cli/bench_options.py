"""The ``bench`` subcommand's options, kept off the benchmark harness's import path.

Every ``sora-async`` run builds the whole parser, so these options must not import
:mod:`sora_async.bench` (its mock, plots and runners cost most of a second at start-up); the
harness is imported only when ``bench`` runs. The scenario names are written here, and a test
checks that they are the catalogue's.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

from ..argtypes import positive_int

__all__ = ["ON_REQUEST", "SCENARIO_NAMES", "add_arguments"]

#: Every scenario of ``sora_async.bench.catalogue()``, in its order.
SCENARIO_NAMES: Final = (
    "priors",
    "shorter",
    "longer",
    "mixed",
    "fail-now",
    "generate",
    "thousand",
    "faults",
    "memory",
    "cpu",
    "batch",
)
#: The scenarios that run only when named (``Scenario.only_when_named``).
ON_REQUEST: Final = ("batch",)


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIO_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(unknown) or repr(text)}: "
            f"allowed {', '.join(SCENARIO_NAMES)}"
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
        help=f"run only these scenarios: {', '.join(SCENARIO_NAMES)} ({', '.join(ON_REQUEST)} "
        "runs only when named: at 100,000 prompts it takes the better part of an hour)",
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
