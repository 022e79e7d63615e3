"""The fan-out tables: each client's figures beside the baseline's, and where slot time goes."""

from __future__ import annotations

from collections.abc import Callable

from ..metrics import BASELINE, SDK, ClientMetrics
from ..oracle import ORACLE
from ..runner import BenchReport, ScenarioOutcome
from ..scenarios import REAL_POLL_INTERVAL
from .cells import num, pct, real
from .goals import MAKESPAN_LIMIT

__all__ = ["fanout_table", "slot_table"]


def _pair(
    outcome: ScenarioOutcome, cell: Callable[[ClientMetrics], str], bold_lower: bool = False
) -> str:
    sdk, base = outcome.client(SDK), outcome.client(BASELINE)
    left = cell(sdk) if sdk else "-"
    right = cell(base) if base else "-"
    return f"{left} / {right}"


def fanout_table(report: BenchReport) -> list[str]:
    rows = [o for o in report.outcomes if o.scenario.kind.value == "fanout"]
    if not rows:
        return []
    lines = [
        "| scenario | tasks, cap | makespan / ideal | status polls per task | detection lag p50, "
        "s | lag p95, s | max live tasks | duplicate creates | client CPU ms per task | "
        "mock CPU ms per task | client loop late p95, ms | load average | "
        "succeeded / failed / unknown | oracle: makespan / ideal, lag p50 / p95, s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in rows:

        def lag(m: ClientMetrics, q: float, o: ScenarioOutcome = o) -> str:
            return num(real(o, m.lag_p50 if q == 0.5 else m.lag_p95), 1)

        lines.append(
            "| "
            + " | ".join(
                [
                    o.scenario.title,
                    f"{o.scenario.tasks}, {o.scenario.cap}",
                    _pair(o, lambda m: num(m.makespan_ratio)),
                    _pair(o, lambda m: num(m.polls_per_task, 1)),
                    _pair(o, lambda m: lag(m, 0.5)),
                    _pair(o, lambda m: lag(m, 0.95)),
                    _pair(o, lambda m: str(m.max_live_tasks)),
                    _pair(o, lambda m: str(m.duplicate_creates)),
                    _pair(o, lambda m: num(m.cpu_ms_per_task, 1)),
                    _pair(o, lambda m: num(m.mock_cpu_ms_per_task, 1)),
                    _pair(
                        o,
                        lambda m: num(
                            None if m.loop_late_p95 is None else 1000 * m.loop_late_p95, 0
                        ),
                    ),
                    _pair(o, lambda m: num(m.load_average, 1)),
                    _pair(o, lambda m: f"{m.succeeded}/{m.failed}/{m.unknown}"),
                    _oracle_cell(o),
                ]
            )
            + " |"
        )
    return [
        "Each cell: **sora_async / baseline**. Lags are real-scale seconds (mock seconds ÷ the "
        f"scenario's scale k; one base interval is {REAL_POLL_INTERVAL:g} s). The last columns "
        "say how busy the machine was: the mock's CPU per task (in its own process), how late "
        "a 20 ms sleep in the client's loop woke (95th percentile, in real ms: at k = 1/90 "
        "every 10 ms of it is almost a second of lag), and the 1-minute load average at the "
        "end of the run. The oracle is a third client, run where no fault is injected: told "
        "every task's duration, it polls each task once, when it has surely ended, on a "
        "kept-alive connection; what it loses against the ideal is the cost of the round "
        "trips on this machine, which no poll schedule wins back.",
        "",
        *lines,
    ]


def _oracle_cell(outcome: ScenarioOutcome) -> str:
    oracle = outcome.client(ORACLE)
    if oracle is None:
        return "-"
    p50, p95 = real(outcome, oracle.lag_p50), real(outcome, oracle.lag_p95)
    return f"{num(oracle.makespan_ratio)}, {num(p50, 1)} / {num(p95, 1)}"


def slot_table(report: BenchReport) -> list[str]:
    """Where the time beyond the ideal goes, task by task: the slot's idle time between two
    tasks on the mock, split into seeing the end and the rest (hand-off, the create's trip)."""
    rows = [o for o in report.outcomes if o.fanout]
    if not rows:
        return []
    clients = [SDK, BASELINE, ORACLE]
    lines = [
        f"Slot time between two tasks on the mock, as a share of a mean task (the makespan "
        f"target {MAKESPAN_LIMIT:g} x ideal leaves about {MAKESPAN_LIMIT - 1:.0%}): from a "
        "task's end to the create that takes its slot again = seeing the end (end → result "
        "handed over) + the rest (the slot's hand-off and the next create's trip to the "
        "server; negative when the next create left before the result was handed over). "
        "Means over the tasks whose slot was taken again. Then, once per run: from its start "
        "to the first create on the mock, and from the last end to the run's end (last result "
        "handed over, client closed).",
        "",
        "| scenario | mean task, s | "
        + " | ".join(f"{name}: idle = seeing + rest; start, finish" for name in clients)
        + " |",
        "|---|---|" + "---|" * len(clients),
    ]
    for o in rows:
        cells = []
        task_mean = next((m.task_mean for m in o.fanout if m.task_mean), None)
        for name in clients:
            m = o.client(name)
            if m is None or m.idle_mean is None:
                cells.append("-")
                continue
            seeing = m.seeing_mean
            rest = None if seeing is None else m.idle_mean - seeing
            cells.append(
                f"{pct(m.share(m.idle_mean))} = {pct(m.share(seeing))} + {pct(m.share(rest))}"
                f"; {pct(m.share(m.start_delay))}, {pct(m.share(m.end_delay))}"
            )
        lines.append(
            f"| {o.scenario.name} | {num(real(o, task_mean), 1)} | " + " | ".join(cells) + " |"
        )
    return lines
