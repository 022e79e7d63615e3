"""The reliability figures in one command: ``python benchmarks/reliability.py [--quick]``.

Runs, one after another, and reports in one file:

1. the fault soak (``sora_async.soak``): ``--tasks`` tasks (1,000; ``--quick`` 100) through
   ``generate_many`` against the mock's seeded faults;
2. the crash matrix (``sora_async.crashmatrix``): ``sora-async batch`` killed with SIGKILL at
   ``--points`` seeded points (20; ``--quick`` 6) and run again;
3. the decoder fuzzing (``tests/test_fuzz_decoders.py``): ``--fuzz-examples`` hypothesis examples
   (300; ``--quick`` 20) per property and decoder, the answers each decoder really got
   counted by ``benchmarks/fuzzcount.py``;
4. the checks that have no size (their test files, each test counted): hostile downloads, the
   callback receiver under abuse, the secrets canary, bad input, real networks (a proxy and a
   CA bundle) and the journal state machine at its CI size.

Writes ``reliability.json`` and ``reliability.md`` into ``--out`` (default
benchmarks/results/); ``--publish`` also puts the tables into README.md between its
``reliability`` markers. The tests are run from this checkout (pytest, the dev extra).

Exit status: 0 everything held, 1 something did not, 2 a bad option.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio

# Run as a script, this directory comes first on sys.path, not the checkout's root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sora_async.crashmatrix import MatrixReport, MatrixSettings, run_matrix
from sora_async.soak import SoakConfig, SoakReport, machine, run_soak

ROOT = Path(__file__).resolve().parent.parent

README_START = "<!-- reliability:start -->"
README_END = "<!-- reliability:end -->"
FUZZ_FILE = "tests/test_fuzz_decoders.py"
#: The checks run at their one size: (what, the test files or ids that check it).
CHECKS: list[tuple[str, list[str]]] = [
    ("hostile downloads", ["tests/test_download_hostile.py"]),
    ("callback receiver under abuse", ["tests/test_callbacks_abuse.py"]),
    ("secrets canary", ["tests/test_client_secrets.py", "tests/test_batch_secrets.py"]),
    (
        "bad input (Python API and CLI)",
        [
            "tests/test_client_validation.py",
            "tests/test_bad_input_matrix.py",
            "tests/test_bad_input_cli.py",
        ],
    ),
    ("real networks (proxy, CA bundle)", ["tests/test_network.py"]),
    (
        "journal state machine (60 runs of 50 steps)",
        [f"tests/test_journal.py::TestJournalStateMachineShard{n}" for n in (1, 2, 3)],
    ),
]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1: {text!r}")
    return value


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- pytest runs ---------------------------------------------------------------------------


def _pytest(targets: list[str], *, junit: Path, env: dict[str, str], workers: int) -> float:
    """Run pytest on ``targets`` from the checkout; the seconds it took."""
    began = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pytest", *targets, "-n", str(workers), f"--junitxml={junit}"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        check=False,
    )
    return time.monotonic() - began


def _cases(junit: Path) -> list[dict[str, Any]]:
    """Each test case of a JUnit file: its id (file::name), outcome and failure's first line."""
    if not junit.exists():
        return []
    cases = []
    for case in ET.parse(junit).iter("testcase"):  # noqa: S314 - pytest's report of this run
        parts = case.get("classname", "").split(".")
        # classname "tests.test_x" or "tests.test_x.TestClass"; the file is its first two.
        path = "/".join(parts[:2]) + ".py"
        inner = "::".join([*parts[2:], case.get("name", "")])
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        outcome = "failed" if failure is not None else "passed"
        if case.find("skipped") is not None:
            outcome = "skipped"
        message = (failure.get("message") or "") if failure is not None else ""
        cases.append(
            {"id": f"{path}::{inner}", "outcome": outcome, "failure": message.split("\n")[0]}
        )
    return cases


def _env(**extra: str) -> dict[str, str]:
    # A clean slate: none of this process's settings, nor of a pytest that may be running it.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SORA_", "PYTEST_"))
    }
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT)])
    env.update(extra)
    return env


def run_fuzz(examples: int, workers: int) -> dict[str, Any]:
    """The decoder fuzzing at ``examples`` per property and decoder, with what each decoder
    really got."""
    with tempfile.TemporaryDirectory(prefix="sora-reliability-") as scratch:
        folder = Path(scratch)
        junit = folder / "fuzz.xml"
        env = _env(SORA_FUZZ_EXAMPLES=str(examples), SORA_RELIABILITY_COUNTS=str(folder))
        # pytest-timeout's 60 s per test is for CI's 20 examples: a large run takes longer,
        # and a timeout inside hypothesis reads as a flaky failure, not as a slow test.
        seconds = _pytest(
            [FUZZ_FILE, "-p", "fuzzcount", "--timeout=3600"], junit=junit, env=env, workers=workers
        )
        cases = _cases(junit)
        counts: Counter[str] = Counter()
        for file in folder.glob("*.json"):
            counts.update(json.loads(file.read_text()))
    decoders: dict[str, dict[str, int]] = {}
    for case in cases:
        name = case["id"].rsplit("::", 1)[-1]
        test, _, decoder = name.partition("[")
        if not decoder:
            continue
        row = decoders.setdefault(decoder.rstrip("]"), {})
        key = {
            "test_hostile_answers_raise_only_the_projects_errors": "hostile",
            "test_documented_answers_with_wrong_types_under_200": "wrong_types",
            "test_a_fixed_corpus_every_run": "corpus",
        }.get(test, test)
        row[key] = counts.get(case["id"], 0)
        row["failed"] = row.get("failed", 0) + (case["outcome"] == "failed")
    failures = [case for case in cases if case["outcome"] == "failed"]
    return {
        "examples_per_property": examples,
        "decoders": decoders,
        # The fuzz cases only (not the check that the documented answers decode).
        "answers": sum(n for row in decoders.values() for k, n in row.items() if k != "failed"),
        "tests": len(cases),
        "tests_failed": len(failures),
        "foreign_exceptions": [f"{case['id']}: {case['failure']}" for case in failures],
        "seconds": round(seconds, 1),
        "ok": bool(cases) and not failures,
    }


def run_checks(workers: int) -> list[dict[str, Any]]:
    """Each sizeless check: its tests, how many held, and any that did not."""
    targets = [target for _, files in CHECKS for target in files]
    with tempfile.TemporaryDirectory(prefix="sora-reliability-") as scratch:
        junit = Path(scratch) / "checks.xml"
        _pytest(targets, junit=junit, env=_env(), workers=workers)
        cases = _cases(junit)
    rows = []
    for what, files in CHECKS:
        mine = [case for case in cases if any(case["id"].startswith(f) for f in files)]
        failed = [case["id"] for case in mine if case["outcome"] == "failed"]
        rows.append(
            {
                "check": what,
                "files": files,
                "tests": len(mine),
                "passed": sum(case["outcome"] == "passed" for case in mine),
                "failed": failed,
                "ok": bool(mine) and not failed,
            }
        )
    return rows


# -- the report ----------------------------------------------------------------------------


def _held(ok: bool) -> str:
    return "held" if ok else "**FAILED**"


def summary_rows(
    soak: SoakReport, matrix: MatrixReport, fuzz: dict[str, Any], checks: list[dict[str, Any]]
) -> list[str]:
    totals = matrix.totals()
    decoders = len(fuzz["decoders"])
    rows = [
        "| test | size | result | figures |",
        "|---|---|---|---|",
        f"| fault soak | {soak.tasks:,} tasks, cap {soak.cap} | {_held(soak.ok)} | "
        f"{soak.duplicate_creates} duplicate creates, {soak.lost_tasks} lost, "
        f"{soak.correct_outcomes:.1f}% correct, max live {soak.max_live_tasks} (cap {soak.cap}), "
        f"{soak.retries_per_request:.2f} retries per request, "
        f"{soak.fd_leak} descriptors and {soak.socket_leak} sockets left, "
        f"RSS drift {soak.rss_mib_end - soak.rss_mib_warm:+.1f} MiB |",
        f"| crash matrix | {totals['points']} kill points, {totals['items']} items | "
        f"{_held(matrix.ok)} | {totals['duplicate_creates']} unasked duplicate creates, "
        f"{totals['lost_items']} lost, {totals['files_whole']} of {totals['items']} files "
        f"whole, {totals['unknown_items']} unknown outcomes re-sent only on "
        f"--resubmit-unknown ({totals['resubmitted_on_request']}) |",
        f"| decoder fuzzing | {fuzz['examples_per_property']:,} examples per property, "
        f"{decoders} decoders | {_held(fuzz['ok'])} | {fuzz['answers']:,} hostile answers "
        f"decoded, {len(fuzz['foreign_exceptions'])} foreign exceptions (failed tests) |",
    ]
    for check in checks:
        rows.append(
            f"| {check['check']} | {check['tests']} tests | {_held(check['ok'])} | "
            f"{check['passed']} of {check['tests']} held |"
        )
    return rows


def fuzz_rows(fuzz: dict[str, Any]) -> list[str]:
    rows = [
        "| decoder | hostile answers | documented answers, wrong types | fixed corpus | "
        "foreign exceptions |",
        "|---|---|---|---|---|",
    ]
    for decoder, row in sorted(fuzz["decoders"].items()):
        rows.append(
            f"| {decoder} | {row.get('hostile', 0):,} | {row.get('wrong_types', 0):,} | "
            f"{row.get('corpus', 0):,} | {row.get('failed', 0)} |"
        )
    return rows


def markdown(data: dict[str, Any], soak: SoakReport, matrix: MatrixReport) -> str:
    run, fuzz, checks = data["run"], data["fuzz"], data["checks"]
    lines = [
        f"`{run['command']}`: sora_async {run['version']}, {run['machine']}, {run['date']}; "
        f"the whole run took {run['seconds']:.0f} s.",
        "",
        *summary_rows(soak, matrix, fuzz, checks),
        "",
        f"Fault soak ({soak.tasks:,} tasks, seed {soak.config['seed']}):",
        "",
        soak.markdown().rstrip("\n"),
        "",
        matrix.markdown(per_point=False).rstrip("\n"),
        "",
        f"Decoder fuzzing ({fuzz['examples_per_property']:,} hypothesis examples per property "
        f"and decoder, {fuzz['seconds']:.0f} s; the answers each decoder was handed, counted):",
        "",
        *fuzz_rows(fuzz),
    ]
    return "\n".join(lines) + "\n"


def publish(table: str, readme: Path) -> None:
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"--publish: README.md has no {README_START} ... {README_END} block")
    head, _, rest = text.partition(README_START)
    _, _, tail = rest.partition(README_END)
    readme.write_text(f"{head}{README_START}\n{table}{README_END}{tail}")


def _command(argv: list[str]) -> str:
    """The command as a reader would type it: no --publish, no folder of this machine."""
    shown: list[str] = []
    skip = False
    for arg in argv:
        if skip or arg == "--publish" or arg.startswith("--out="):
            skip = False
            continue
        skip = arg == "--out"
        if not skip:
            shown.append(arg)
    return " ".join(["python benchmarks/reliability.py", *shown])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-like sizes, about a minute")
    parser.add_argument("--tasks", type=_positive_int, help="soak tasks (1,000; quick 100)")
    parser.add_argument("--points", type=_positive_int, help="crash points (20; quick 6)")
    parser.add_argument(
        "--fuzz-examples", type=_positive_int, help="per property and decoder (300; quick 20)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="pytest workers (0: none)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--publish", action="store_true", help="also update README.md")
    given = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(given)
    tasks = args.tasks or (100 if args.quick else 1000)
    points = args.points or (6 if args.quick else 20)
    examples = args.fuzz_examples or (20 if args.quick else 300)
    began = time.monotonic()

    _say(f"fault soak: {tasks} tasks")
    soak = anyio.run(run_soak, SoakConfig(tasks=tasks, seed=args.seed))
    _say(f"  {_held(soak.ok)} in {soak.seconds:.0f} s\ncrash matrix: {points} points")
    matrix = anyio.run(partial(run_matrix, args.seed, points, MatrixSettings(), say=_say))
    _say(f"  {_held(matrix.ok)} in {matrix.seconds:.0f} s\ndecoder fuzzing: {examples} examples")
    fuzz = run_fuzz(examples, args.workers)
    _say(f"  {_held(fuzz['ok'])} in {fuzz['seconds']:.0f} s\nchecks: {len(CHECKS)}")
    checks = run_checks(args.workers)
    ok = soak.ok and matrix.ok and fuzz["ok"] and all(check["ok"] for check in checks)
    data = {
        "run": {
            "command": _command(given),
            "version": metadata.version("sora_async"),
            "machine": machine(),
            "platform": platform.platform(),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "seconds": round(time.monotonic() - began, 1),
        },
        "ok": ok,
        "soak": soak.as_dict(),
        "crash_matrix": matrix.as_dict(),
        "fuzz": fuzz,
        "checks": checks,
    }
    table = markdown(data, soak, matrix)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reliability.json").write_text(json.dumps(data, indent=1) + "\n")
    points = f"\nCrash matrix, each kill point:\n\n{matrix.points_markdown()}"
    (args.out / "reliability.md").write_text(f"# Reliability\n\n{table}{points}")
    if args.publish:
        publish(table, ROOT / "README.md")
    print(table, end="")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
