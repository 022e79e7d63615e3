"""The fault soak: ``python benchmarks/soak.py [--tasks N] [--seed S] [--out DIR]``.

Runs N tasks (default 1,000, split between both providers) through
``SoraClient.generate_many`` against the embedded mock on 127.0.0.1 with 10 % 5xx, 5 % dropped
connections and 3 % malformed bodies on polls, 429 bursts with Retry-After on creates and
polls, 3 % created-then-500 on creates and slow answers on both. Prints a markdown table and
writes ``soak.json`` and ``soak.md`` into ``--out`` (default: benchmarks/results/).

Exit status: 0 every invariant held (no duplicate create, nothing lost, every outcome matches
the mock's record, never more live tasks than the cap, no descriptor left open), 1 one did not,
2 a bad option.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import anyio

# Run as a script, this directory comes first on sys.path, not the checkout's root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sora_async.soak import PROVIDERS, SoakConfig, run_soak


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1: {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0: {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=_positive_int, default=1000)
    parser.add_argument("--cap", type=_positive_int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task-seconds", type=_positive_float, default=0.3)
    parser.add_argument("--poll-interval", type=_positive_float, default=0.05)
    parser.add_argument("--provider", choices=[*PROVIDERS, "both"], default="both")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    config = SoakConfig(
        tasks=args.tasks,
        cap=args.cap,
        seed=args.seed,
        task_seconds=args.task_seconds,
        poll_interval=args.poll_interval,
        providers=PROVIDERS if args.provider == "both" else (args.provider,),
    )
    report = anyio.run(run_soak, config)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    (args.out / "soak.md").write_text(report.markdown())
    print(report.markdown(), end="")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
