"""``sora-async bench``: the SDK against a plain script, in scenarios that do not share the
SDK's assumptions, with the mock server in a process of its own.

Modules, one job each: :mod:`.scenarios` (what runs, and the exact task of every prompt),
:mod:`.child` and :mod:`.mockproc` (child processes), :mod:`.clients` (the two clients of a
fan-out), :mod:`.single` (one ``generate``), :mod:`.scale` (RSS and CPU), :mod:`.measures`
(pure arithmetic), :mod:`.metrics` (what was measured), :mod:`.runner` (all scenarios),
:mod:`.report` (tables and targets), :mod:`.plots`, :mod:`.publish` (files, README) and
:mod:`.cli`. ``benchmarks/README.md`` explains the method.
"""

from __future__ import annotations

from .cli import add_arguments, run_command
from .measures import ideal_makespan, live_series, quantile
from .metrics import BASELINE, SDK
from .report import Target, targets, to_markdown
from .runner import BenchReport, run_benchmark
from .scenarios import Kind, Scenario, catalogue

__all__ = [
    "BASELINE",
    "SDK",
    "BenchReport",
    "Kind",
    "Scenario",
    "Target",
    "add_arguments",
    "catalogue",
    "ideal_makespan",
    "live_series",
    "quantile",
    "run_benchmark",
    "run_command",
    "targets",
    "to_markdown",
]
