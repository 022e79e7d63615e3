"""Run the scenarios, one after another, and collect what they measured."""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from .batch import BatchRun, ResumeRun, measure_batch, measure_resume
from .clients import BaselineRun, observe_baseline, observe_oracle, observe_sdk
from .metrics import (
    BASELINE,
    SDK,
    ClientMetrics,
    CpuMetrics,
    GenerateMetrics,
    MemoryMetrics,
    analyse,
)
from .mockproc import MockProcess
from .oracle import ORACLE
from .scale import measure_cpu, measure_memory
from .scenarios import Kind, Scenario
from .single import measure_generate

__all__ = ["BenchReport", "ScenarioOutcome", "environment", "load_baseline", "run_benchmark"]


@attrs.frozen(kw_only=True)
class ScenarioOutcome:
    scenario: Scenario
    fanout: list[ClientMetrics] = attrs.field(factory=list)
    generate: list[GenerateMetrics] = attrs.field(factory=list)
    memory: list[MemoryMetrics] = attrs.field(factory=list)
    cpu: list[CpuMetrics] = attrs.field(factory=list)
    batch: list[BatchRun] = attrs.field(factory=list)
    resume: ResumeRun | None = None
    #: Why this scenario has no (or partial) numbers.
    error: str | None = None

    def client(self, name: str) -> ClientMetrics | None:
        return next((m for m in self.fanout if m.client == name), None)

    def as_dict(self) -> dict[str, Any]:
        scenario = attrs.asdict(self.scenario)
        scenario.update(scale=self.scenario.scale, sdk_prior=self.scenario.sdk_prior)
        return {
            "scenario": scenario,
            "fanout": [m.as_dict() for m in self.fanout],
            "generate": [m.as_dict() for m in self.generate],
            "memory": [m.as_dict() for m in self.memory],
            "cpu": [m.as_dict() for m in self.cpu],
            "batch": [m.as_dict() for m in self.batch],
            "resume": None if self.resume is None else self.resume.as_dict(),
            "error": self.error,
        }


@attrs.frozen(kw_only=True)
class BenchReport:
    quick: bool
    seed: int
    environment: dict[str, Any]
    outcomes: list[ScenarioOutcome]
    wall_seconds: float
    profile: str | None = attrs.field(default=None, repr=False)

    @property
    def problems(self) -> list[str]:
        return [f"{o.scenario.name}: {o.error}" for o in self.outcomes if o.error]

    def outcome(self, name: str) -> ScenarioOutcome | None:
        return next((o for o in self.outcomes if o.scenario.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": "sora-async bench",
            "quick": self.quick,
            "seed": self.seed,
            "environment": self.environment,
            "wall_seconds": self.wall_seconds,
            "problems": self.problems,
            "scenarios": {o.scenario.name: o.as_dict() for o in self.outcomes},
        }


def environment() -> dict[str, Any]:
    """The machine the numbers were measured on."""
    from .. import __version__

    return {
        "sora_async": __version__,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def load_baseline(path: Path) -> BaselineRun:
    """The ``run`` coroutine function of the baseline script at ``path``."""
    spec = importlib.util.spec_from_file_location("sora_async_bench_baseline", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load the baseline from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run: BaselineRun = module.run
    return run


async def run_benchmark(
    scenarios: Sequence[Scenario],
    *,
    baseline: Path,
    batch_script: Path | None = None,
    seed: int = 7,
    quick: bool = False,
    profile: bool = False,
    progress: Callable[[str], object] = lambda _: None,
) -> BenchReport:
    """Run each scenario for the SDK and the baseline; nothing is written."""
    began = time.monotonic()
    plain = load_baseline(baseline)
    outcomes: list[ScenarioOutcome] = []
    profile_text: str | None = None
    async with MockProcess() as mock:
        for scenario in scenarios:
            progress(
                f"{scenario.name}: {scenario.title} ({scenario.tasks} tasks, cap {scenario.cap})"
            )
            started = time.monotonic()
            try:
                if scenario.kind is Kind.FANOUT:
                    outcome = await _fanout(mock, scenario, seed, plain)
                elif scenario.kind is Kind.GENERATE:
                    generated = await measure_generate(mock, scenario, seed, baseline)
                    outcome = ScenarioOutcome(scenario=scenario, generate=generated)
                elif scenario.kind is Kind.MEMORY:
                    memory = await measure_memory(mock, scenario, seed, baseline)
                    outcome = ScenarioOutcome(scenario=scenario, memory=memory)
                elif scenario.kind is Kind.BATCH:
                    outcome = await _batch(mock, scenario, seed, batch_script, progress)
                else:
                    cpu, profile_text = await measure_cpu(mock, scenario, seed, profile=profile)
                    outcome = ScenarioOutcome(scenario=scenario, cpu=cpu)
            except Exception as exc:
                outcome = ScenarioOutcome(scenario=scenario, error=repr(exc))
            outcomes.append(outcome)
            progress(f"{scenario.name}: done in {time.monotonic() - started:.0f} s")
    return BenchReport(
        quick=quick,
        seed=seed,
        environment=environment(),
        outcomes=outcomes,
        wall_seconds=time.monotonic() - began,
        profile=profile_text,
    )


async def _fanout(
    mock: MockProcess, scenario: Scenario, seed: int, plain: BaselineRun
) -> ScenarioOutcome:
    """The SDK, the baseline, and (without faults, which it does not survive) the oracle."""
    jobs = scenario.jobs(seed)
    runs = [analyse(SDK, await observe_sdk(mock, scenario, jobs, seed), scenario, jobs)]
    try:
        observed = await observe_baseline(mock, scenario, jobs, seed, plain)
    except Exception as exc:
        return ScenarioOutcome(scenario=scenario, fanout=runs, error=f"{BASELINE} failed: {exc!r}")
    runs.append(analyse(BASELINE, observed, scenario, jobs))
    if not scenario.faults:
        try:
            observed = await observe_oracle(mock, scenario, jobs, seed)
        except Exception as exc:
            return ScenarioOutcome(
                scenario=scenario, fanout=runs, error=f"{ORACLE} failed: {exc!r}"
            )
        runs.append(analyse(ORACLE, observed, scenario, jobs))
    return ScenarioOutcome(scenario=scenario, fanout=runs)


async def _batch(
    mock: MockProcess,
    scenario: Scenario,
    seed: int,
    script: Path | None,
    progress: Callable[[str], object],
) -> ScenarioOutcome:
    if script is None:
        raise ValueError("the batch scenario needs the plain batch script (--batch-script)")
    runs = await measure_batch(
        mock, scenario, seed, script=script, sizes=scenario.sizes, progress=progress
    )
    resume = None
    if scenario.resume_items:
        progress(f"batch: resume of a {scenario.resume_items:,}-item journal, half done")
        resume = await measure_resume(mock, scenario, seed, scenario.resume_items)
    return ScenarioOutcome(scenario=scenario, batch=runs, resume=resume)
