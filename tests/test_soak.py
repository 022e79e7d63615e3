"""The fault soak, bounded for CI: invariants only (never timings).

100 tasks through ``generate_many`` on both providers against the mock with every fault of the
soak (5xx, drops, malformed bodies, 429 bursts, created-then-500, slow answers). No create is
sent twice, nothing is lost, every outcome matches the mock's record, the cap holds and no
descriptor stays open. ``benchmarks/soak.py`` runs the full 1,000.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sora_async.mock import Fault
from sora_async.soak import SoakConfig, fault_schedule, run_soak

pytestmark = pytest.mark.anyio


async def test_a_hundred_tasks_through_every_fault_keep_every_invariant() -> None:
    report = await run_soak(SoakConfig(tasks=100, seed=7, task_seconds=0.2, poll_interval=0.04))
    assert report.wrong_details == []
    assert report.results == report.tasks == 100
    assert report.duplicate_creates == 0
    assert report.lost_tasks == 0
    assert report.wrong_outcomes == 0 and report.correct_outcomes == 100.0
    assert report.max_live_tasks <= report.cap
    assert report.unfinished_tasks == 0
    assert report.fd_leak <= 0 and report.socket_leak <= 0
    # The faults really fired, on both endpoints, and the client really retried.
    kinds = set(report.faults_fired)
    assert {"status server_error", "status drop", "status malformed"} <= kinds
    assert {"status rate_limit", "create rate_limit"} <= kinds
    assert report.retries.get("status", 0) > 0
    # Each created-then-500 became an honest "unknown", never a second create.
    unknown = report.faults_fired.get("create created_then_500", 0)
    assert unknown > 0 and report.outcome_unknown == unknown
    assert report.succeeded + report.failed + report.outcome_unknown == report.tasks
    assert report.failed > 0  # failing prompts were in the mix and came back failed
    assert report.ok


def test_the_schedule_has_the_asked_rates_and_bursts() -> None:
    rates = [(Fault.SERVER_ERROR, 0.10), (Fault.DROP, 0.05), (Fault.SLOW, 0.02)]
    entries = list(fault_schedule(random.Random(1), 20_000, rates, burst=0.02, slow_delay=0.1))
    assert len(entries) >= 20_000
    kinds = Counter(fault for fault, delay in entries if not (fault is Fault.SLOW and delay == 0))
    singles = sum(1 for fault, _ in entries if fault is not Fault.RATE_LIMIT)
    assert kinds[Fault.SERVER_ERROR] / singles == pytest.approx(0.10, abs=0.01)
    assert kinds[Fault.DROP] / singles == pytest.approx(0.05, abs=0.01)
    assert kinds[Fault.SLOW] / singles == pytest.approx(0.02, abs=0.005)
    # 429s come in runs of two or more.
    runs = "".join("R" if fault is Fault.RATE_LIMIT else "." for fault, _ in entries).split(".")
    assert all(len(run) >= 2 for run in runs if run)


def test_bad_soak_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="tasks"):
        SoakConfig(tasks=0)
    with pytest.raises(ValueError, match="provider"):
        SoakConfig(providers=("openai",))
    with pytest.raises(ValueError, match="slow_delay"):
        SoakConfig(slow_delay=0.0)
