"""The benchmark harness: its pure measures, and one tiny run through ``sora-async bench``.

The smoke run uses equal task durations (no jitter), so the ideal schedule is the optimum
(``ceil(N / cap)`` waves of one duration) and no client that respects the cap can beat it:
that, not a wall-clock threshold, is what the makespan ratio is checked against.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sora_async.bench import (
    HANDROLLED,
    IDEAL,
    SDK,
    BenchConfig,
    find_handrolled,
    ideal_makespan,
    slot_utilisation,
)
from sora_async.cli import EXIT_USAGE, main

TASKS = 24
CAP = 4
TASK_SECONDS = 0.3
MEMORY_SIZES = (30, 150)


def test_ideal_makespan_is_greedy_list_scheduling_in_order() -> None:
    assert ideal_makespan([], 20) == 0.0
    assert ideal_makespan([5.0], 20) == 5.0
    # Slot A: 3; slot B: 1, 1, 1 -> both end at 3.
    assert ideal_makespan([3.0, 1.0, 1.0, 1.0], 2) == 3.0
    # In order, the long task comes last and runs alone: 1 + 1 then 4 -> 5 (not the optimum 4).
    assert ideal_makespan([1.0, 1.0, 1.0, 4.0], 2) == 5.0
    assert ideal_makespan([2.0] * 45, 20) == 6.0


def test_slot_utilisation_integrates_live_tasks_over_the_window() -> None:
    # Two slots for 4 s; live: one task for 4 s and one for 2 s -> 6 / 8.
    assert slot_utilisation([(0.0, 4.0), (1.0, 3.0)], 2, 0.0, 4.0) == 0.75
    # Parts outside the window do not count.
    assert slot_utilisation([(-5.0, 2.0), (3.0, 9.0)], 1, 0.0, 4.0) == 0.75
    assert slot_utilisation([(0.0, 1.0)], 1, 2.0, 2.0) == 0.0


def test_config_scales_real_time_down_to_the_mock_task() -> None:
    config = BenchConfig(task_seconds=2.0)
    assert config.scale == pytest.approx(2.0 / 180.0)
    assert config.poll_interval == pytest.approx(4.0 * 2.0 / 180.0)
    assert config.expected_duration == pytest.approx(2.0)


def test_bad_options_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--jitter", "1.5", "--out", str(tmp_path)])
    assert code == EXIT_USAGE
    assert "jitter" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_smoke_run_writes_the_table_and_sane_ratios(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert find_handrolled() is not None, "run the tests from the source checkout"
    code = main(
        [
            "bench",
            "--tasks",
            str(TASKS),
            "--cap",
            str(CAP),
            "--task-seconds",
            str(TASK_SECONDS),
            "--jitter",
            "0",
            "--memory-tasks",
            *map(str, MEMORY_SIZES),
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out

    table = (tmp_path / "latest.md").read_text()
    assert table.endswith(out)
    header = f"| metric | {IDEAL} | {SDK} | {HANDROLLED} |"
    assert header in out
    for label in ("makespan / ideal", "slot utilisation", "status polls per task"):
        assert f"| {label} |" in out
    assert f"tracemalloc peak, N={MEMORY_SIZES[0]} → N={MEMORY_SIZES[1]}" in out

    data = json.loads((tmp_path / "latest.json").read_text())
    assert data["problems"] == []
    config = data["config"]
    assert config["poll_interval"] == pytest.approx(4.0 * TASK_SECONDS / 180.0)
    runs = data["runs"]
    ideal, sdk, hand = runs[IDEAL], runs[SDK], runs[HANDROLLED]
    waves = math.ceil(TASKS / CAP)
    assert ideal["makespan"] == pytest.approx(waves * TASK_SECONDS)
    assert ideal["makespan_ratio"] == 1.0
    assert ideal["utilisation"] == pytest.approx(TASKS / (waves * CAP))
    for run in (sdk, hand):
        assert run["succeeded"] == TASKS
        assert run["ideal_makespan"] == pytest.approx(ideal["makespan"])
        # Equal durations under the cap: the ideal is the optimum, nobody beats it.
        assert run["makespan_ratio"] >= 1.0 - 1e-9
        assert 0.0 < run["utilisation"] <= ideal["utilisation"] + 1e-9
        assert run["polls_per_task"] >= 1.0
        assert run["mean_latency"] >= 0.0
        assert 0.0 <= run["latency_fraction"] < 1.0
        assert 1 <= run["max_live_tasks"] <= CAP
        assert run["rate_limited"] == 0
        assert run["max_creates_per_prompt"] == 1
        assert run["created_once"] is True
    # The script polls at a fixed 4 s-equivalent interval, about 45 times per 180 s task;
    # the SDK's schedule aims its polls at the predicted finish.
    assert sdk["polls_per_task"] < hand["polls_per_task"] / 2

    memory = data["memory"]
    for name in (SDK, HANDROLLED):
        assert memory[name]["small_tasks"] == MEMORY_SIZES[0]
        assert memory[name]["small_peak"] > 0
        assert memory[name]["large_peak"] > 0
    # gather() holds a coroutine and a result per prompt; the SDK holds O(cap) work.
    assert memory[SDK]["bytes_per_extra_task"] < memory[HANDROLLED]["bytes_per_extra_task"]
