"""The report: the markdown tables and the issue's targets, each with its measured figure.

The targets are reported, never asserted: a miss is a finding, shown like any other number.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs

from .batch import BATCH_CORE, BATCH_SCRIPT, BATCH_SDK, BatchRun
from .metrics import BASELINE, SDK, ClientMetrics
from .oracle import ORACLE
from .runner import BenchReport, ScenarioOutcome
from .scale import RAW, RAW_FRESH
from .scenarios import REAL_POLL_INTERVAL, Scenario

__all__ = ["Target", "targets", "to_markdown"]

#: Makespan over ideal, without and with faults.
MAKESPAN_LIMIT = 1.03
FAULT_MAKESPAN_LIMIT = 1.5
#: Makespan against the baseline's.
VERSUS_BASELINE = 0.95
#: One generate: at most task time + one base interval + this.
GENERATE_SLACK = 0.5
CPU_LIMIT = 1.3
RSS_BAND = 0.10
#: ``sora-async batch`` against the plain batch script, at the same size.
BATCH_CPU_LIMIT = 2.0
BATCH_WALL_LIMIT = 1.5
#: RSS is compared from this size to the largest measured one.
BATCH_RSS_FROM = 10_000
#: Re-opening a big journal and deciding what to do takes seconds, not minutes.
RESUME_LIMIT = 60.0
#: Durations within this share of a whole number of base intervals are in phase with a
#: fixed poller (its polls drift by their own round trips anyway).
_PHASE_TOLERANCE = 0.01


@attrs.frozen
class Target:
    scenario: str
    goal: str
    measured: str
    #: None: could not be measured in this run.
    met: bool | None
    #: What this run shows about the target's reach (computed, never written by hand).
    note: str | None = None
    #: The run shows that no client could meet it here (the ideal, or the oracle, is beyond).
    out_of_reach: bool = False


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _real(outcome: ScenarioOutcome, seconds: float | None) -> float | None:
    """Mock seconds as real-scale seconds."""
    return None if seconds is None else seconds / outcome.scenario.scale


def _fanout_targets(outcome: ScenarioOutcome) -> list[Target]:
    name = outcome.scenario.name
    sdk, base = outcome.client(SDK), outcome.client(BASELINE)
    if sdk is None:
        return [Target(name, "every fan-out target", outcome.error or "no run", None)]
    oracle = outcome.client(ORACLE)
    limit = FAULT_MAKESPAN_LIMIT if outcome.scenario.faults else MAKESPAN_LIMIT
    found = [
        Target(
            name,
            f"makespan ≤ {limit:g} x ideal",
            f"{_num(sdk.makespan_ratio)} x ideal",
            sdk.makespan_ratio <= limit,
            *_ideal_reach(sdk, oracle, limit),
        )
    ]
    if outcome.scenario.faults:
        found.append(
            Target(
                name,
                "0 duplicate creates",
                f"{sdk.duplicate_creates} (baseline {base.duplicate_creates if base else '-'})",
                sdk.duplicate_creates == 0,
            )
        )
    if base is None:
        return [*found, Target(name, "against the baseline", outcome.error or "no run", None)]
    ratio = sdk.makespan / base.makespan if base.makespan > 0 else math.nan
    p95, base_p95 = _real(outcome, sdk.lag_p95), _real(outcome, base.lag_p95)
    found += [
        Target(
            name,
            f"makespan ≤ {VERSUS_BASELINE:g} x baseline's",
            f"{_num(ratio)} x baseline's",
            ratio <= VERSUS_BASELINE,
            *_baseline_reach(sdk, base, oracle),
        ),
        Target(
            name,
            "status polls per task ≤ baseline's",
            f"{_num(sdk.polls_per_task, 1)} vs {_num(base.polls_per_task, 1)}",
            sdk.polls_per_task <= base.polls_per_task,
        ),
        Target(
            name,
            "detection lag p95 ≤ baseline's",
            f"{_num(p95, 1)} s vs {_num(base_p95, 1)} s",
            None if p95 is None or base_p95 is None else p95 <= base_p95,
            _in_phase(outcome.scenario),
        ),
    ]
    return found


def _in_phase(scenario: Scenario) -> str | None:
    """A note when every task lasts a whole number of base intervals: a fixed poller's polls,
    one every base interval from its create, then fall just after each end."""
    if scenario.jitter or len(scenario.mix) != 1 or scenario.fail_at_once:
        return None
    intervals = scenario.mix[0].real_seconds * scenario.scale / scenario.base_interval
    whole = round(intervals)
    if whole < 1 or abs(intervals - whole) > _PHASE_TOLERANCE * whole:
        return None
    return (
        f"every task lasts exactly {whole} base intervals, so the baseline's polls, one every "
        "base interval from its create, fall just after each end; with any spread of "
        "durations its lag would reach a whole base interval"
    )


def _reach(missed: bool, text: str | None, beyond: bool) -> tuple[str | None, bool]:
    """The note of a target, and whether it was missed where no client could meet it."""
    if text is None:
        return None, False
    out = missed and beyond
    return (f"out of reach here: {text}" if out else text), out


def _ideal_reach(
    sdk: ClientMetrics, oracle: ClientMetrics | None, limit: float
) -> tuple[str | None, bool]:
    """How close to the ideal a client that knows every task's end came in the same run."""
    if oracle is None:
        return None, False
    reach = oracle.makespan_ratio
    return _reach(
        sdk.makespan_ratio > limit,
        f"the oracle (every end known, one poll a task) takes {_num(reach)} x ideal",
        reach > limit,
    )


def _baseline_reach(
    sdk: ClientMetrics, base: ClientMetrics, oracle: ClientMetrics | None
) -> tuple[str | None, bool]:
    """Why beating the baseline by the margin asked cannot happen, when this run shows it."""
    missed = sdk.makespan > VERSUS_BASELINE * base.makespan
    floor = VERSUS_BASELINE * base.makespan_ratio
    if floor < 1:
        return _reach(
            missed,
            f"the baseline takes {_num(base.makespan_ratio)} x ideal, and {VERSUS_BASELINE:g} "
            f"x that is {_num(floor)} x ideal, below the ideal itself (no client beats 1.00)",
            True,
        )
    if oracle is None or base.makespan <= 0:
        return None, False
    best = oracle.makespan / base.makespan
    return _reach(
        missed,
        f"the oracle (every end known) takes {_num(best)} x the baseline's",
        best > VERSUS_BASELINE,
    )


def targets(report: BenchReport) -> list[Target]:
    """Every target of the issue that this run could measure, with its figure."""
    found: list[Target] = []
    for outcome in report.outcomes:
        name = outcome.scenario.name
        if outcome.fanout or (outcome.error and outcome.scenario.kind.value == "fanout"):
            found += _fanout_targets(outcome)
        for one in outcome.generate:
            if one.client != SDK:
                continue
            bound = one.task_seconds + one.base_interval + GENERATE_SLACK
            found.append(
                Target(
                    name,
                    f"wall ≤ task + base interval + {GENERATE_SLACK:g} s = {bound:.1f} s",
                    f"{one.wall:.1f} s",
                    one.wall <= bound,
                )
            )
            found.append(
                Target(
                    name,
                    "a progress line on a TTY",
                    "yes" if one.progress_line else "no",
                    one.progress_line,
                )
            )
        cpu = {m.client: m for m in outcome.cpu}
        if SDK in cpu and RAW in cpu:
            ratio = cpu[SDK].cpu_ms_per_task / cpu[RAW].cpu_ms_per_task
            found.append(
                Target(
                    name,
                    f"client CPU per task ≤ {CPU_LIMIT:g} x a raw aiohttp loop",
                    f"{ratio:.2f} x ({cpu[SDK].cpu_ms_per_task:.2f} vs "
                    f"{cpu[RAW].cpu_ms_per_task:.2f} ms)",
                    ratio <= CPU_LIMIT,
                )
            )
        if SDK in cpu and RAW_FRESH in cpu:
            ratio = cpu[SDK].cpu_ms_per_task / cpu[RAW_FRESH].cpu_ms_per_task
            found.append(
                Target(
                    name,
                    f"(the same, against the loop with a fresh connection per create, the "
                    f"SDK's policy) ≤ {CPU_LIMIT:g} x",
                    f"{ratio:.2f} x ({cpu[SDK].cpu_ms_per_task:.2f} vs "
                    f"{cpu[RAW_FRESH].cpu_ms_per_task:.2f} ms)",
                    ratio <= CPU_LIMIT,
                )
            )
        marks = outcome.scenario.checkpoints
        for memory in outcome.memory:
            if memory.client != SDK or len(marks) < 2:
                continue
            goal = f"peak RSS flat within ±{RSS_BAND:.0%} from {marks[0]:,} to {marks[-1]:,}"
            reached = [c.done for c in memory.checkpoints]
            if reached[-1:] != [marks[-1]] or len(reached) < 2:
                found.append(Target(name, goal, f"only {memory.done:,} done in time", None))
                continue
            growth = memory.rss_growth - 1
            found.append(Target(name, goal, f"{growth:+.1%}", abs(growth) <= RSS_BAND))
        found += _batch_targets(outcome)
    return found


def _batch_pairs(outcome: ScenarioOutcome) -> list[tuple[int, BatchRun | None, BatchRun | None]]:
    """(prompts, sora-async batch, plain script) per size, in the order run."""
    sizes = list(dict.fromkeys(run.prompts for run in outcome.batch))
    return [
        (
            size,
            next((r for r in outcome.batch if r.prompts == size and r.client == BATCH_SDK), None),
            next(
                (r for r in outcome.batch if r.prompts == size and r.client == BATCH_SCRIPT), None
            ),
        )
        for size in sizes
    ]


def _ratio(left: float, right: float) -> float:
    return left / right if right > 0 else math.nan


def _batch_targets(outcome: ScenarioOutcome) -> list[Target]:
    name = outcome.scenario.name
    found = []
    for size, sdk, script in _batch_pairs(outcome):
        if sdk is None or script is None:
            continue
        cpu = _ratio(sdk.cpu_ms_per_task, script.cpu_ms_per_task)
        wall = _ratio(sdk.wall, script.wall)
        found += [
            Target(
                name,
                f"{size:,}: CPU per task ≤ {BATCH_CPU_LIMIT:g} x the plain script's",
                f"{cpu:.2f} x ({sdk.cpu_ms_per_task:.2f} vs {script.cpu_ms_per_task:.2f} ms)",
                cpu <= BATCH_CPU_LIMIT,
            ),
            Target(
                name,
                f"{size:,}: wall ≤ {BATCH_WALL_LIMIT:g} x the plain script's",
                f"{wall:.2f} x ({sdk.wall:.1f} vs {script.wall:.1f} s)",
                wall <= BATCH_WALL_LIMIT,
            ),
        ]
    measured = sorted(
        (r for r in outcome.batch if r.client == BATCH_SDK and r.prompts >= BATCH_RSS_FROM),
        key=lambda r: r.prompts,
    )
    if len(measured) >= 2:
        first, last = measured[0], measured[-1]
        growth = _ratio(last.peak_rss, first.peak_rss) - 1
        found.append(
            Target(
                name,
                f"peak RSS flat within ±{RSS_BAND:.0%} from {first.prompts:,} to "
                f"{last.prompts:,} prompts",
                f"{growth:+.1%} ({first.peak_rss / 2**20:,.0f} → {last.peak_rss / 2**20:,.0f} MiB)",
                abs(growth) <= RSS_BAND,
            )
        )
    elif outcome.batch:
        found.append(
            Target(name, f"peak RSS flat from {BATCH_RSS_FROM:,} prompts up", "one size", None)
        )
    resume = outcome.resume
    if resume is not None:
        took = resume.to_first_create
        found.append(
            Target(
                name,
                f"resume of a {resume.journal_items:,}-item journal: first new create "
                f"within {RESUME_LIMIT:g} s",
                "no create" if took is None else f"{took:.1f} s",
                None if took is None else took <= RESUME_LIMIT,
            )
        )
    return found


# -- markdown --------------------------------------------------------------------------------


def _pair(
    outcome: ScenarioOutcome, cell: Callable[[ClientMetrics], str], bold_lower: bool = False
) -> str:
    sdk, base = outcome.client(SDK), outcome.client(BASELINE)
    left = cell(sdk) if sdk else "-"
    right = cell(base) if base else "-"
    return f"{left} / {right}"


def _fanout_table(report: BenchReport) -> list[str]:
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
            return _num(_real(o, m.lag_p50 if q == 0.5 else m.lag_p95), 1)

        lines.append(
            "| "
            + " | ".join(
                [
                    o.scenario.title,
                    f"{o.scenario.tasks}, {o.scenario.cap}",
                    _pair(o, lambda m: _num(m.makespan_ratio)),
                    _pair(o, lambda m: _num(m.polls_per_task, 1)),
                    _pair(o, lambda m: lag(m, 0.5)),
                    _pair(o, lambda m: lag(m, 0.95)),
                    _pair(o, lambda m: str(m.max_live_tasks)),
                    _pair(o, lambda m: str(m.duplicate_creates)),
                    _pair(o, lambda m: _num(m.cpu_ms_per_task, 1)),
                    _pair(o, lambda m: _num(m.mock_cpu_ms_per_task, 1)),
                    _pair(
                        o,
                        lambda m: _num(
                            None if m.loop_late_p95 is None else 1000 * m.loop_late_p95, 0
                        ),
                    ),
                    _pair(o, lambda m: _num(m.load_average, 1)),
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
    p50, p95 = _real(outcome, oracle.lag_p50), _real(outcome, oracle.lag_p95)
    return f"{_num(oracle.makespan_ratio)}, {_num(p50, 1)} / {_num(p95, 1)}"


def _slot_table(report: BenchReport) -> list[str]:
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
                f"{_pct(m.share(m.idle_mean))} = {_pct(m.share(seeing))} + {_pct(m.share(rest))}"
                f"; {_pct(m.share(m.start_delay))}, {_pct(m.share(m.end_delay))}"
            )
        lines.append(
            f"| {o.scenario.name} | {_num(_real(o, task_mean), 1)} | " + " | ".join(cells) + " |"
        )
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _generate_table(report: BenchReport) -> list[str]:
    lines: list[str] = []
    for o in report.outcomes:
        for m in o.generate:
            if not lines:
                lines = [
                    "| one video | task, s | base interval, s | wall, s | create → exit, s | "
                    "status polls | progress line on a TTY |",
                    "|---|---|---|---|---|---|---|",
                ]
            lines.append(
                f"| {m.client} | {m.task_seconds:g} | {m.base_interval:g} | {m.wall:.2f} | "
                f"{_num(m.create_to_exit)} | {m.status_requests} | "
                f"{('yes' if m.progress_line else 'no') if m.client == SDK else '-'} |"
            )
    return lines


def _memory_table(report: BenchReport) -> list[str]:
    lines: list[str] = []
    for o in report.outcomes:
        marks = o.scenario.checkpoints
        for m in o.memory:
            if not lines:
                heads = " | ".join(f"peak RSS at {mark:,}" for mark in marks)
                lines = [
                    f"| zero-duration prompts | RSS at start | {heads} | growth | "
                    "wall per 1,000, s | done |",
                    "|---|---|" + "---|" * len(marks) + "---|---|---|",
                ]
            reached = {c.done: c for c in m.checkpoints}
            rss = " | ".join(
                f"{reached[mark].peak_rss / 2**20:,.0f} MiB" if mark in reached else "-"
                for mark in marks
            )
            growth = "-" if math.isnan(m.rss_growth) else f"{m.rss_growth - 1:+.1%}"
            done = f"{m.done:,}" + (f" (stopped at {m.wall:.0f} s)" if m.stopped else "")
            lines.append(
                f"| {m.client} | {m.start_rss / 2**20:,.0f} MiB | {rss} | {growth} | "
                f"{_num(m.wall_per_1000)} | {done} |"
            )
    return lines


def _cpu_table(report: BenchReport) -> list[str]:
    lines: list[str] = []
    for o in report.outcomes:
        for m in o.cpu:
            if not lines:
                lines = [
                    "| same requests | tasks | CPU ms per task | creates | status requests | "
                    "wall, s |",
                    "|---|---|---|---|---|---|",
                ]
            lines.append(
                f"| {m.client} | {m.tasks:,} | {m.cpu_ms_per_task:.2f} | {m.creates:,} | "
                f"{m.status_requests:,} | {m.wall:.1f} |"
            )
    return lines


def _batch_table(report: BenchReport) -> list[str]:
    lines: list[str] = []
    for o in report.outcomes:
        for size, sdk, script in _batch_pairs(o):
            if not lines:
                lines = [
                    f"Each cell: **{BATCH_SDK} / {BATCH_SCRIPT}** "
                    "([`benchmarks/batch_script.py`](benchmarks/batch_script.py)), each a process "
                    f"of its own; zero-duration tasks, 1 KB files, cap {o.scenario.cap}, "
                    f"poll interval {o.scenario.base_interval:g} s. CPU is user + system of the "
                    "client process.",
                    "",
                    "| prompts | CPU ms per task | ratio | wall, s | ratio | peak RSS, MiB | "
                    "ratio | TCP connections | succeeded | exit |",
                    "|---|---|---|---|---|---|---|---|---|---|",
                ]

            lines.append(_batch_row(size, sdk, script))
        lines += _batch_split(o)
        resume = o.resume
        if resume is not None:
            took = (
                f"no create came (exit {resume.exit_code})"
                if resume.to_first_create is None
                else (f"**{resume.to_first_create:.1f} s** from its start to the first new create")
            )
            lines += [
                "",
                f"Resume: a journal of {resume.journal_items:,} items, {resume.done_before:,} "
                f"of them done (a run stopped with Ctrl-C after {resume.build_wall:.0f} s), "
                f"{resume.added:,} prompts appended, the same command again: {took}.",
            ]
    return lines


def _batch_split(outcome: ScenarioOutcome) -> list[str]:
    """Where the batch's CPU goes, per size: the plain script, the SDK's core client (the
    client and its downloads, no journal) and the batch, each in ms per task."""
    rows = []
    for size, sdk, script in _batch_pairs(outcome):
        core = next(
            (r for r in outcome.batch if r.prompts == size and r.client == BATCH_CORE), None
        )
        if core is None or sdk is None or script is None:
            continue
        client = core.cpu_ms_per_task - script.cpu_ms_per_task
        journal = sdk.cpu_ms_per_task - core.cpu_ms_per_task
        loops = " / ".join(_num(r.loop_cpu_ms_per_task, 2) for r in (script, core, sdk))
        rows.append(
            f"| {size:,} | {script.cpu_ms_per_task:.2f} | {core.cpu_ms_per_task:.2f} "
            f"({_ratio(core.cpu_ms_per_task, script.cpu_ms_per_task):.2f} x) | "
            f"{sdk.cpu_ms_per_task:.2f} | {client:+.2f} | {journal:+.2f} | {loops} |"
        )
    if not rows:
        return []
    return [
        "",
        f"Where the batch's CPU goes (ms per task): {BATCH_CORE} is the SDK's client with its "
        "downloads and no journal ([`benchmarks/batch_core.py`](benchmarks/batch_core.py)). "
        "The last column is the main thread's share alone (the event loop; the rest is the "
        "disk and journal threads), script / core / batch: on zero-duration tasks the wall "
        "follows it.",
        "",
        f"| prompts | {BATCH_SCRIPT} | {BATCH_CORE} | {BATCH_SDK} | the client adds | "
        "the journal and bookkeeping add | event loop thread |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def _batch_row(size: int, sdk: BatchRun | None, script: BatchRun | None) -> str:
    def pair(cell: Callable[[BatchRun], str]) -> str:
        return f"{cell(sdk) if sdk else '-'} / {cell(script) if script else '-'}"

    def ratio(value: Callable[[BatchRun], float]) -> str:
        if sdk is None or script is None:
            return "-"
        return f"{_ratio(value(sdk), value(script)):.2f}"

    cells = [
        f"{size:,}",
        pair(lambda r: f"{r.cpu_ms_per_task:.2f}"),
        ratio(lambda r: r.cpu_ms_per_task),
        pair(lambda r: f"{r.wall:.1f}"),
        ratio(lambda r: r.wall),
        pair(lambda r: f"{r.peak_rss / 2**20:,.0f}"),
        ratio(lambda r: r.peak_rss),
        pair(lambda r: f"{r.connections:,}"),
        pair(lambda r: f"{r.succeeded:,}"),
        pair(lambda r: str(r.exit_code)),
    ]
    return "| " + " | ".join(cells) + " |"


def _targets_table(report: BenchReport) -> list[str]:
    found = targets(report)
    if not found:
        return []
    marks = {True: "met", False: "**missed**", None: "not measured"}
    lines = ["| scenario | target | measured | | what this run shows |", "|---|---|---|---|---|"]
    lines += [
        f"| {t.scenario} | {t.goal} | {t.measured} | {marks[t.met]} | {t.note or ''} |"
        for t in found
    ]
    met = sum(t.met is True for t in found)
    summary = f"{met} of {len(found)} targets met."
    unreachable = sum(t.met is False and t.out_of_reach for t in found)
    if unreachable:
        summary += (
            f" {unreachable} of the {sum(t.met is False for t in found)} missed are out of "
            "reach in this run whatever the SDK does (the last column says why)."
        )
    return [summary, "", *lines]


def headline(report: BenchReport) -> str:
    env = report.environment
    kind = "quick smoke run (not comparable)" if report.quick else "full run"
    return (
        f"{kind}, seed {report.seed}: sora_async {env.get('sora_async')}, "
        f"{env.get('implementation')} {env.get('python')} on {env.get('platform')}, "
        f"{env.get('cpus')} CPUs, {env.get('date')}; the whole benchmark took "
        f"{report.wall_seconds:.0f} s."
    )


def to_markdown(report: BenchReport, *, images: dict[str, str] | None = None) -> str:
    """The whole report; ``images`` maps a caption to a PNG path to show under the tables."""
    sections: list[list[str]] = [
        [headline(report)],
        _fanout_table(report),
        _slot_table(report),
        _generate_table(report),
        _memory_table(report),
        _cpu_table(report),
        _batch_table(report),
        _targets_table(report),
    ]
    if images:
        sections.append([f"![{caption}]({path})" for caption, path in images.items()])
    if report.problems:
        sections.append(["Problems: " + "; ".join(report.problems)])
    return "\n\n".join("\n".join(section) for section in sections if section) + "\n"
