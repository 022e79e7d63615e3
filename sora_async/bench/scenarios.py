"""The scenarios: what each one asks of a client, and the exact tasks the mock will run.

Time is scaled so that the whole benchmark takes minutes. Every scenario has a base poll
interval (the SDK's ``poll_interval`` and the baseline's fixed sleep); its scale ``k`` is that
interval over freesora's real one (4 s), and every other time in the scenario is a real time
times ``k``: a 180 s task polled every 4 s becomes a 2 s task polled every 0.044 s at
``k = 1/90``. The SDK is told its own prior scaled the same way (``expected_duration = 180 k``):
the scenarios then decide how far the tasks really are from that prior.

Task durations do not come from the mock's random jitter: the harness draws them from its own
seeded generator and writes each into the prompt (``[seconds:X]``, see
:class:`sora_async.mock.MockConfig`), so the SDK and the baseline get the very same task for
the very same prompt, whatever order they create them in.
"""

from __future__ import annotations

import enum
import inspect
import random
from collections.abc import Sequence
from typing import Final

import attrs

from .. import LocalGovernor, RetryPolicy
from ..mock import Fault

__all__ = [
    "REAL_POLL_INTERVAL",
    "REAL_TASK_SECONDS",
    "FaultStep",
    "Job",
    "Kind",
    "Scenario",
    "catalogue",
]

#: freesora's document asks for a poll every 3-5 s; the SDK's base interval is 4 s.
REAL_POLL_INTERVAL: Final = 4.0
#: The SDK's prior for a freesora sora-2 task (polling.EXPECTED_DURATIONS), real seconds.
REAL_TASK_SECONDS: Final = 180.0
#: A Pro render takes about twice as long.
REAL_PRO_SECONDS: Final = 360.0
#: Most scenarios run at this scale: 180 s tasks take 2 s.
DEFAULT_SCALE: Final = 1 / 90


class Kind(str, enum.Enum):
    #: Many prompts through ``generate_many`` against the baseline's gather.
    FANOUT = "fanout"
    #: One ``sora-async generate`` from process start to exit, on a TTY.
    GENERATE = "generate"
    #: Zero-duration prompts by the hundred thousand: RSS and wall per 1,000.
    MEMORY = "memory"
    #: Client CPU per task against a raw aiohttp loop sending the same requests.
    CPU = "cpu"
    #: ``sora-async batch`` as a process against a plain batch script, at several sizes.
    BATCH = "batch"


@attrs.frozen
class Job:
    """One prompt as both clients send it, and what the mock will do with it."""

    prompt: str
    model: str
    #: Mock seconds from create to terminal.
    seconds: float
    fails_at_once: bool = False


@attrs.frozen(kw_only=True)
class FaultStep:
    """At ``at`` mock seconds after the server starts, queue ``fault`` for ``times`` requests."""

    at: float
    endpoint: str
    fault: Fault
    times: int = 1
    retry_after: float | None = None


@attrs.frozen(kw_only=True)
class Mix:
    """A share of the tasks: this model, this real duration."""

    model: str
    real_seconds: float
    share: float = 1.0


@attrs.frozen(kw_only=True)
class Scenario:
    name: str
    title: str
    kind: Kind
    tasks: int
    cap: int = 20
    #: Base poll interval, mock seconds (the SDK's poll_interval, the baseline's sleep).
    base_interval: float = REAL_POLL_INTERVAL * DEFAULT_SCALE
    mix: tuple[Mix, ...] = (Mix(model="sora-2", real_seconds=REAL_TASK_SECONDS),)
    #: Each duration is drawn uniformly in seconds x (1 +- jitter).
    jitter: float = 0.3
    #: Share of the tasks that fail at once (duration 0, failed before generating).
    fail_at_once: float = 0.0
    #: Inject faults from this plan (see :func:`fault_plan`).
    faults: bool = False
    #: MEMORY: report RSS and wall when this many tasks are done.
    checkpoints: tuple[int, ...] = ()
    #: MEMORY: real seconds each client may take before it is stopped (a client that is
    #: quadratic in N would otherwise hold the whole benchmark).
    budget: float | None = None
    #: MEMORY: the SDK's own budget (None: ``budget``), long enough to reach the last
    #: checkpoint, which the RSS target needs; the baseline keeps ``budget``.
    sdk_budget: float | None = None
    #: BATCH: the numbers of prompts, one pair of runs each.
    sizes: tuple[int, ...] = ()
    #: BATCH: the items of the journal whose resume is timed (0: not timed).
    resume_items: int = 0
    #: Runs only when named (``--scenario``): it takes far longer than the rest together.
    only_when_named: bool = False

    @property
    def scale(self) -> float:
        """Mock seconds per real second."""
        return self.base_interval / REAL_POLL_INTERVAL

    @property
    def sdk_prior(self) -> float:
        """The SDK's own prior for a sora-2 task, scaled: its ``expected_duration``."""
        return REAL_TASK_SECONDS * self.scale

    def sdk_governor(self) -> LocalGovernor:
        """The SDK's in-process governor with its default 429 pauses scaled like every time."""
        defaults = inspect.signature(LocalGovernor).parameters
        return LocalGovernor(
            self.cap,
            **{
                name: defaults[name].default * self.scale
                for name in ("default_pause", "max_default_pause", "min_pause")
            },
        )

    def sdk_retry(self) -> RetryPolicy:
        """The SDK's default retry policy for safe calls, its waits scaled like every time."""
        default = RetryPolicy()
        return attrs.evolve(
            default,
            initial=default.initial * self.scale,
            maximum=default.maximum * self.scale,
            timeout=None if default.timeout is None else default.timeout * self.scale,
        )

    def jobs(self, seed: int) -> list[Job]:
        """The prompts in input order, with the durations the mock will give them."""
        rng = random.Random(f"{seed}/{self.name}")
        weights = [mix.share for mix in self.mix]
        jobs = []
        for index in range(self.tasks):
            mix = rng.choices(self.mix, weights)[0]
            seconds = mix.real_seconds * self.scale * (1 + rng.uniform(-self.jitter, self.jitter))
            fails = rng.random() < self.fail_at_once
            if fails:
                seconds = 0.0
            # Rounded as written into the prompt, so the harness and the mock agree exactly.
            seconds = round(seconds, 6)
            marks = f"[seconds:{seconds:.6f}]" + (" [fail:create]" if fails else "")
            jobs.append(Job(f"bench {self.name} #{index} {marks}", mix.model, seconds, fails))
        return jobs

    def fault_plan(self, seed: int, horizon: float) -> list[FaultStep]:
        """Faults spread over ``horizon`` mock seconds: one every two base intervals' worth of
        a real 4 s, in a seeded order of every kind the issue names."""
        if not self.faults:
            return []
        rng = random.Random(f"{seed}/{self.name}/faults")
        kinds: Sequence[tuple[str, Fault, int, float | None]] = (
            ("status", Fault.SERVER_ERROR, 2, None),
            ("status", Fault.DROP, 1, None),
            ("status", Fault.MALFORMED, 1, None),
            # A rate limit, not the account cap: a short Retry-After (0.2 s at a 0.5 s base).
            ("create", Fault.RATE_LIMIT, 3, round(0.4 * self.base_interval, 4)),
            ("create", Fault.CREATED_THEN_500, 1, None),
            ("create", Fault.SERVER_ERROR, 1, None),
            ("create", Fault.DROP, 1, None),
        )
        period = 20 * self.base_interval
        steps = []
        at = period / 2
        while at < horizon:
            endpoint, fault, times, retry_after = rng.choice(kinds)
            steps.append(
                FaultStep(
                    at=round(at, 4),
                    endpoint=endpoint,
                    fault=fault,
                    times=times,
                    retry_after=retry_after,
                )
            )
            at += period
        return steps


def catalogue(*, quick: bool = False) -> list[Scenario]:
    """Every scenario, in the order they run; ``quick`` shrinks them to a smoke test."""
    pro = (
        Mix(model="sora-2", real_seconds=REAL_TASK_SECONDS, share=0.5),
        Mix(model="sora-2-pro", real_seconds=REAL_PRO_SECONDS, share=0.5),
    )
    # Quick: a quarter of the time scale, a quarter of the cap, a tenth of the tasks.
    base = REAL_POLL_INTERVAL * DEFAULT_SCALE / (4 if quick else 1)
    cap, many, few = (5, 20, 5) if quick else (20, 200, 40)
    scenarios = [
        Scenario(
            name="priors",
            base_interval=base,
            title="durations as the priors say",
            kind=Kind.FANOUT,
            tasks=many,
            cap=cap,
        ),
        Scenario(
            name="shorter",
            base_interval=base,
            title="10x shorter than the priors",
            kind=Kind.FANOUT,
            tasks=many,
            cap=cap,
            mix=(Mix(model="sora-2", real_seconds=REAL_TASK_SECONDS / 10),),
        ),
        Scenario(
            name="longer",
            base_interval=base,
            title="10x longer than the priors",
            kind=Kind.FANOUT,
            tasks=few,
            cap=cap,
            mix=(Mix(model="sora-2", real_seconds=REAL_TASK_SECONDS * 10),),
        ),
        Scenario(
            name="mixed",
            title="mixed models",
            kind=Kind.FANOUT,
            tasks=many,
            cap=cap,
            base_interval=base,
            mix=pro,
        ),
        Scenario(
            name="fail-now",
            base_interval=base,
            title="20% of tasks failing at once",
            kind=Kind.FANOUT,
            tasks=many,
            cap=cap,
            fail_at_once=0.2,
        ),
        Scenario(
            name="generate",
            title="one `generate` (3 s task, default 4 s interval)",
            kind=Kind.GENERATE,
            tasks=1,
            cap=1,
            # Real time: the CLI runs with its defaults.
            base_interval=0.5 if quick else REAL_POLL_INTERVAL,
            # 3 s at the full run's scale of 1, 0.375 s at the quick one's 1/8.
            mix=(Mix(model="sora-2", real_seconds=3.0),),
            jitter=0.0,
        ),
        Scenario(
            name="thousand",
            title="1000 tasks of 0.2 s, 0.05 s base interval",
            kind=Kind.FANOUT,
            tasks=50 if quick else 1000,
            cap=cap,
            base_interval=0.05,
            # 0.2 mock s at the 0.05 / 4 scale.
            mix=(Mix(model="sora-2", real_seconds=0.2 * REAL_POLL_INTERVAL / 0.05),),
            jitter=0.0,
        ),
        Scenario(
            name="faults",
            base_interval=base,
            title="faults: 5xx, drops, malformed, 429 bursts, created-then-500",
            kind=Kind.FANOUT,
            tasks=many // 2 if not quick else many,
            cap=cap,
            faults=True,
        ),
        Scenario(
            name="memory",
            title="zero-duration prompts: RSS and wall",
            kind=Kind.MEMORY,
            tasks=600 if quick else 100_000,
            cap=cap,
            base_interval=0.01,
            mix=(Mix(model="sora-2", real_seconds=0.0),),
            jitter=0.0,
            checkpoints=(200, 400, 600) if quick else (10_000, 50_000, 100_000),
            budget=60.0 if quick else 300.0,
            # About 7 s per 1,000 on 2 shared cores: 100,000 fit with room to spare.
            sdk_budget=60.0 if quick else 1200.0,
        ),
        Scenario(
            name="cpu",
            title="client CPU per task vs a raw aiohttp loop",
            kind=Kind.CPU,
            tasks=200 if quick else 2_000,
            cap=cap,
            base_interval=0.01,
            mix=(Mix(model="sora-2", real_seconds=0.0),),
            jitter=0.0,
        ),
        Scenario(
            name="batch",
            title="`sora-async batch` against a plain batch script, 1 KB files",
            kind=Kind.BATCH,
            tasks=0,
            cap=cap,
            base_interval=0.01,
            mix=(Mix(model="sora-2", real_seconds=0.0),),
            jitter=0.0,
            sizes=(100,) if quick else (1_000, 10_000, 100_000),
            resume_items=200 if quick else 100_000,
            only_when_named=True,
        ),
    ]
    return scenarios
