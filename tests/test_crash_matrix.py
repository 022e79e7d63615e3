"""The crash matrix, bounded for CI: six seeded SIGKILLs of ``sora-async batch``, each re-run.

Each point is a real CLI process (forked by the fork server, zygote.py) killed with SIGKILL
(never in-process: a crash must lose the process's memory and its unflushed writes) before a
create's answer, right after one, half-way through a file, while the final manifest is
written, or a seeded time into the run.
The re-run (and --resubmit-unknown when the re-run reports unknown outcomes) must create no
prompt twice unasked, lose no item and leave every file identical to the mock's bytes.
``benchmarks/crash_matrix.py`` runs twenty points and publishes the figures.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
import zygote

from sora_async.crashmatrix import Kill, MatrixReport, MatrixSettings, draw_points, run_point
from sora_async.mock import MockConfig, MockServer, Trip

pytestmark = pytest.mark.anyio

#: Chosen so the six points hold every kind, with the kill right at a create's answer (no
#: delay) and at the rename that would publish the final manifest.
CI_SEED = 14
CI_POINTS = draw_points(CI_SEED, 6, MatrixSettings().items)


@pytest.mark.parametrize("point", CI_POINTS, ids=[p.label() for p in CI_POINTS])
async def test_a_kill_then_a_rerun_loses_nothing_and_pays_once(point, tmp_path: Path) -> None:
    # Under the suite's 60 s timeout, so that a hung CLI fails with its threads' stacks.
    settings = MatrixSettings(hang_guard=45.0)
    result = await run_point(point, tmp_path, settings, open_process=zygote.open_process)

    details = json.dumps(result.as_dict(), indent=1)
    assert result.killed, details
    assert result.problems == [], details
    assert result.duplicates == 0, details
    assert result.lost == 0, details
    assert result.files_whole == MatrixSettings().items and result.files_bad == 0, details
    assert result.left_at_end == [], details
    # A create whose answer the kill ate is reported, not sent again: only the explicit
    # --resubmit-unknown run pays for it a second time, once per item.
    assert result.resubmitted == result.unknown, details
    assert result.creates == MatrixSettings().items + result.unknown_created, details
    if point.kind is Kill.BEFORE_CREATE_ANSWER:
        assert result.unknown >= 1, details
    if point.variant == "manifest_replace":
        assert any(name.startswith(".manifest.jsonl.") for name in result.left_by_kill), details
    assert result.ok


def test_the_ci_points_hold_every_kind_and_the_first_create() -> None:
    kinds = Counter(point.kind for point in CI_POINTS)
    assert set(kinds) == set(Kill)
    first = CI_POINTS[0]
    assert first.kind is Kill.BEFORE_CREATE_ANSWER and first.n == 1
    assert any(p.kind is Kill.AFTER_CREATE_ANSWER and p.delay == 0 for p in CI_POINTS)
    assert any(p.variant == "manifest_replace" for p in CI_POINTS)


def test_points_are_reproducible_from_the_seed() -> None:
    assert draw_points(5, 20, 5) == draw_points(5, 20, 5)
    assert draw_points(5, 20, 5) != draw_points(6, 20, 5)
    twenty = draw_points(0, 20, 5)
    assert {p.variant for p in twenty if p.kind is Kill.FINAL_MANIFEST} == {
        "manifest_open",
        "manifest_replace",
        "index_open",
        "index_replace",
    }
    with pytest.raises(ValueError, match="count"):
        draw_points(0, 0, 5)


def test_a_report_counts_what_its_points_saw(tmp_path: Path) -> None:
    report = MatrixReport(seed=1, settings=MatrixSettings(), results=[], seconds=0.0)
    assert not report.ok  # no point run proves nothing
    assert report.totals()["points"] == 0
    assert "| points (kill landed) | 0 (0) |" in report.markdown()


async def test_trips_fire_at_the_create_answer_and_half_a_file() -> None:
    seen: list[tuple[str, int]] = []
    config = MockConfig(task_seconds=0.0, file_size=4096)
    async with MockServer(config) as mock, aiohttp.ClientSession() as session:
        for trip in Trip:
            mock.on(trip, lambda count, trip=trip: seen.append((trip.value, count)))
        headers = {"Authorization": "Bearer sk-trip-test"}
        body = {"prompt": "a cat", "model": "sora-2"}
        async with session.post(
            mock.freesora_url + "/v1/video/sora-video", json=body, headers=headers
        ) as answer:
            created = await answer.json()
        task_id = created["data"]["id"]
        async with session.get(f"{mock.base_url}/files/{task_id}.mp4") as answer:
            data = await answer.read()

        assert data == mock.file_bytes(task_id)
        assert seen == [("create_received", 1), ("create_answered", 1), ("download_half", 1)]
        assert mock.counters.download_bytes == 4096
