"""The benchmark's ``batch`` scenario: its verdicts, where it is published, and one smoke run of
``sora-async batch`` and the plain script as processes. No timing is asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from sora_async.bench import catalogue
from sora_async.bench.batch import BATCH_CORE, BATCH_SCRIPT, BATCH_SDK, BatchRun, ResumeRun
from sora_async.bench.publish import BATCH_BLOCK, README_END, README_START, publish, write_run
from sora_async.bench.report import targets, to_markdown
from sora_async.bench.runner import BenchReport, ScenarioOutcome, environment
from sora_async.cli import main

MIB = 2**20


def _run(client: str, prompts: int, **changes: Any) -> BatchRun:
    values: dict[str, Any] = {
        "client": client,
        "prompts": prompts,
        "exit_code": 0,
        "cpu_seconds": prompts / 1000,
        "wall": prompts / 100,
        "peak_rss": 50 * MIB,
        "succeeded": prompts,
        "creates": prompts,
        "status_requests": prompts,
        "downloads": prompts,
        "connections": 21,
    }
    return BatchRun(**{**values, **changes})


def _report(runs: list[BatchRun], resume: ResumeRun | None = None) -> BenchReport:
    scenario = next(s for s in catalogue() if s.name == "batch")
    outcome = ScenarioOutcome(scenario=scenario, batch=runs, resume=resume)
    return BenchReport(
        quick=False, seed=7, environment=environment(), outcomes=[outcome], wall_seconds=1.0
    )


def test_batch_runs_only_when_named_and_measures_three_sizes() -> None:
    batch = next(s for s in catalogue() if s.name == "batch")
    assert batch.only_when_named
    assert batch.sizes == (1_000, 10_000, 100_000) and batch.resume_items == 100_000
    assert batch.base_interval == 0.01 and batch.cap == 20


def test_batch_targets_are_ratios_to_the_script_at_each_size() -> None:
    runs = [
        _run(BATCH_SDK, 10_000, cpu_seconds=15.0, wall=140.0, peak_rss=50 * MIB),
        _run(BATCH_SCRIPT, 10_000, cpu_seconds=10.0, wall=100.0),
        _run(BATCH_SDK, 100_000, cpu_seconds=300.0, wall=1000.0, peak_rss=60 * MIB),
        _run(BATCH_SCRIPT, 100_000, cpu_seconds=100.0, wall=1000.0),
    ]
    resume = ResumeRun(
        journal_items=100_000,
        done_before=50_010,
        added=1000,
        to_first_create=4.5,
        build_wall=9,
        exit_code=130,
    )
    found = {t.goal: (t.measured, t.met) for t in targets(_report(runs, resume))}
    assert found["10,000: CPU per task ≤ 2 x the plain script's"][1] is True
    assert found["10,000: wall ≤ 1.5 x the plain script's"][1] is True
    assert found["100,000: CPU per task ≤ 2 x the plain script's"] == (
        "3.00 x (3.00 vs 1.00 ms)",
        False,
    )
    rss = found["peak RSS flat within ±10% from 10,000 to 100,000 prompts"]
    assert rss == ("+20.0% (50 → 60 MiB)", False)
    first = found["resume of a 100,000-item journal: first new create within 60 s"]
    assert first == ("4.5 s", True)
    text = to_markdown(_report(runs, resume))
    assert "| 100,000 | 3.00 / 1.00 | 3.00 | 1000.0 / 1000.0 | 1.00 | 60 / 50 | 1.20 |" in text
    assert "50,010 of them done" in text


def test_the_core_client_splits_the_batch_cost_per_size() -> None:
    runs = [
        _run(BATCH_SDK, 1000, cpu_seconds=4.5, loop_cpu_seconds=2.5),
        _run(BATCH_SCRIPT, 1000, cpu_seconds=1.5, loop_cpu_seconds=1.5),
        # Where the kernel does not tell a thread's CPU, the cell says so.
        _run(BATCH_CORE, 1000, cpu_seconds=3.0),
        # A size without the core client has no row in the split.
        _run(BATCH_SDK, 10_000, cpu_seconds=40.0),
        _run(BATCH_SCRIPT, 10_000, cpu_seconds=15.0),
    ]
    text = to_markdown(_report(runs))
    assert "| 1,000 | 1.50 | 3.00 (2.00 x) | 4.50 | +1.50 | +1.50 | 1.50 / - / 2.50 |" in text
    assert "| 10,000 | 15.00 |" not in text
    # The targets stay the batch against the plain script.
    goals = {t.goal: t.measured for t in targets(_report(runs))}
    assert goals["1,000: CPU per task ≤ 2 x the plain script's"].startswith("3.00 x")


def test_one_size_does_not_measure_rss_flatness() -> None:
    runs = [_run(BATCH_SDK, 1000), _run(BATCH_SCRIPT, 1000)]
    verdicts = {t.goal: t.met for t in targets(_report(runs))}
    assert verdicts["peak RSS flat from 10,000 prompts up"] is None


def test_a_batch_run_is_published_into_its_own_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        f"{README_START}\nmain table\n{README_END}\n"
        f"{BATCH_BLOCK.start}\nold batch\n{BATCH_BLOCK.end}\nrest\n"
    )
    report = _report([_run(BATCH_SDK, 1000), _run(BATCH_SCRIPT, 1000)])
    files = write_run(report, tmp_path / "benchmarks" / "results", plots=False)
    publish(report, files, tmp_path, block=BATCH_BLOCK)
    text = readme.read_text()
    assert "main table" in text and "old batch" not in text and text.endswith("rest\n")
    assert "| 1,000 | 1.00 / 1.00 |" in text
    assert (tmp_path / "benchmarks" / "results" / "latest-batch.json").is_file()


def test_quick_batch_smoke_runs_both_processes_and_a_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = ["--quick", "--scenario", "batch", "--sizes", "12", "--resume-items", "16"]
    code = main(["bench", *options, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    (json_path,) = tmp_path.glob("run-*-quick.json")
    batch = json.loads(json_path.read_text())["scenarios"]["batch"]
    runs = {run["client"]: run for run in batch["batch"]}
    assert set(runs) == {BATCH_SDK, BATCH_SCRIPT, BATCH_CORE}
    for run in runs.values():
        assert (run["exit_code"], run["succeeded"], run["downloads"]) == (0, 12, 12)
        assert run["cpu_seconds"] > 0 and run["peak_rss"] > 0
        if sys.platform == "linux":  # the main thread's CPU, read before the process is reaped
            assert 0 < run["loop_cpu_seconds"] <= run["cpu_seconds"]
    resume = batch["resume"]
    assert resume["journal_items"] == 16 and 8 <= resume["done_before"] <= 16
    assert resume["to_first_create"] > 0
