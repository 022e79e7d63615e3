"""The poll schedule (pure, simulated) and the wait loop (fake clock, no real sleeping)."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Sequence

import anyio
import anyio.lowlevel
import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sora_async.callbacks import WakeHint
from sora_async.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServerError,
    WaitTimeoutError,
)
from sora_async.models import TaskState, TaskStatus
from sora_async.polling import (
    Observation,
    PollSchedule,
    next_poll_delay,
    poll_until_terminal,
)

RUNNING = TaskState.RUNNING
PENDING = TaskState.PENDING
FREESORA = PollSchedule.for_provider("freesora")
SORA2API = PollSchedule.for_provider("sora2api")
# The same schedule without jitter, for exact expectations.
EXACT = attrs.evolve(FREESORA, jitter=0.0)


class FixedRandom:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


# -- schedule construction ---------------------------------------------------------------------


def test_freesora_defaults_follow_its_document_and_the_model() -> None:
    s = FREESORA
    assert (s.base_interval, s.min_interval, s.max_interval) == (4.0, 3.0, 60.0)
    assert s.expected_duration == 180.0
    assert s.initial_delay == pytest.approx(36.0)  # 20% of three minutes
    pro = PollSchedule.for_provider("freesora", model="sora-2-pro")
    assert pro.expected_duration == 360.0
    assert pro.initial_delay == 60.0  # 72 s clamped to max_interval


def test_sora2api_defaults() -> None:
    s = SORA2API
    assert (s.base_interval, s.min_interval, s.max_interval) == (10.0, 5.0, 60.0)
    assert s.initial_delay == pytest.approx(60.0)
    assert s.callback_fallback_interval == 60.0


def test_poll_interval_override_scales_a_fast_mock_down() -> None:
    s = PollSchedule.for_provider("freesora", poll_interval=0.2, expected_duration=3.0)
    assert s.base_interval == 0.2
    assert s.min_interval == 0.2
    assert s.max_interval == pytest.approx(3.0)  # 60 s * 0.2 / 4
    assert s.initial_delay == pytest.approx(0.6)
    assert s.min_interval <= s.callback_fallback_interval <= s.max_interval
    slow = PollSchedule.for_provider("sora2api", poll_interval=30.0)
    assert (slow.base_interval, slow.min_interval, slow.max_interval) == (30.0, 5.0, 60.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "openai"},
        {"name": "freesora", "poll_interval": 0.0},
        {"name": "freesora", "poll_interval": math.nan},
        {"name": "sora2api", "expected_duration": -1.0},
    ],
)
def test_bad_provider_settings_are_configuration_errors(kwargs: dict[str, object]) -> None:
    name = str(kwargs.pop("name"))
    with pytest.raises(ConfigurationError):
        PollSchedule.for_provider(name, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_interval": 10.0, "base_interval": 5.0},
        {"base_interval": 100.0, "max_interval": 60.0},
        {"backoff": 0.5},
        {"jitter": 1.0},
        {"callback_fallback_interval": 600.0},
        {"initial_delay": -1.0},
        {"max_interval": math.inf},
    ],
)
def test_inconsistent_schedules_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PollSchedule(**kwargs)


# -- the pure schedule, case by case -----------------------------------------------------------


def test_first_poll_waits_for_the_initial_delay_measured_from_creation() -> None:
    assert next_poll_delay(EXACT, [], now=0.0, started_at=0.0) == pytest.approx(36.0)
    # Polling began 30 s after the create: only 6 s are left.
    assert next_poll_delay(EXACT, [], now=30.0, started_at=0.0) == pytest.approx(6.0)
    # Resuming a task created long ago: poll soon, but not below the floor.
    assert next_poll_delay(EXACT, [], now=1000.0, started_at=0.0) == EXACT.min_interval


def test_progress_predicts_the_finish_and_the_poll_lands_just_after_it() -> None:
    # 30% after 36 s: the task will end at 120 s. Not trusted further ahead than its age (36 s).
    obs = [Observation(36.0, RUNNING, 30)]
    assert next_poll_delay(EXACT, obs, now=36.0, started_at=0.0) == pytest.approx(36.0)
    # 60% after 72 s: still 120 s. Now 48 s ahead is within both caps: aim just past 120.
    obs.append(Observation(72.0, RUNNING, 60))
    delay = next_poll_delay(EXACT, obs, now=72.0, started_at=0.0)
    assert 48.0 < delay <= 48.0 + EXACT.min_interval


def test_time_spent_pending_at_zero_does_not_slow_the_estimate() -> None:
    obs = [Observation(36.0, PENDING, 0), Observation(56.0, RUNNING, 20)]
    # 20% in the 20 s since it started moving: 80 s to go, but a rate measured over 20 s is
    # not extrapolated further than 20 s.
    assert next_poll_delay(EXACT, obs, now=56.0, started_at=0.0) == pytest.approx(20.0)
    obs.append(Observation(116.0, RUNNING, 80))
    # Measured since creation the rate would say 145 s; since it started moving, 136 s.
    assert 20.0 < next_poll_delay(EXACT, obs, now=116.0, started_at=0.0) < 20.0 + 3.0


def test_overdue_task_is_polled_briskly_then_less_if_it_stalls() -> None:
    obs = [Observation(60.0, RUNNING, 50), Observation(120.0, RUNNING, 99)]
    first = next_poll_delay(EXACT, obs, now=121.0, started_at=0.0)
    assert first == EXACT.min_interval
    delays = []
    t = 121.0
    for _ in range(12):
        obs.append(Observation(t, RUNNING, 99))
        d = next_poll_delay(EXACT, obs, now=t, started_at=0.0)
        delays.append(d)
        t += d
    assert delays == sorted(delays)
    assert delays[1] > EXACT.min_interval
    # A stalled task settles at the no-progress cadence, far below max_interval.
    assert delays[-1] <= EXACT.latency_fraction * t + 1e-9


def test_without_progress_backoff_grows_from_base_and_resets_on_news() -> None:
    obs: list[Observation] = []
    delays = []
    t = 1000.0  # old enough that only max_interval caps the backoff
    for _ in range(4):
        obs.append(Observation(t, PENDING, None))
        d = next_poll_delay(EXACT, obs, now=t, started_at=0.0)
        delays.append(d)
        t += d
    assert delays == pytest.approx([4.0, 6.0, 9.0, 13.5])
    obs.append(Observation(t, RUNNING, None))  # news: the task started running
    assert next_poll_delay(EXACT, obs, now=t, started_at=0.0) == pytest.approx(4.0)


def test_without_progress_no_gap_exceeds_a_fraction_of_the_age() -> None:
    obs = [Observation(40.0 + i, RUNNING, None) for i in range(20)]
    # After 20 unchanged answers raw backoff is enormous; at age 60 s the cap is 15% = 9 s.
    assert next_poll_delay(EXACT, obs, now=60.0, started_at=0.0) == pytest.approx(9.0)
    # Young tasks may still use base_interval.
    assert next_poll_delay(EXACT, obs[:3], now=10.0, started_at=0.0) == pytest.approx(4.0)


def test_retry_after_wins_only_when_longer() -> None:
    obs = [Observation(100.0, RUNNING, None)]
    assert next_poll_delay(EXACT, obs, now=100.0, started_at=0.0, retry_after=120.0) == 120.0
    assert next_poll_delay(EXACT, obs, now=100.0, started_at=0.0, retry_after=1.0) == 4.0
    assert next_poll_delay(EXACT, obs, now=100.0, started_at=0.0, retry_after=math.inf) == 4.0


def test_expected_callback_means_slow_fallback_polling() -> None:
    obs = [Observation(100.0, RUNNING, None)]
    d = next_poll_delay(SORA2API, obs, now=100.0, started_at=0.0, callback_expected=True)
    assert d == SORA2API.callback_fallback_interval
    jittered = next_poll_delay(
        SORA2API, [], now=0.0, started_at=0.0, callback_expected=True, rng=FixedRandom(0.0)
    )
    assert jittered == pytest.approx(60.0 * 0.9)


def test_jitter_spreads_both_ways_by_its_fraction() -> None:
    obs = [Observation(1000.0, RUNNING, None)]
    low = next_poll_delay(FREESORA, obs, now=1000.0, started_at=0.0, rng=FixedRandom(0.0))
    high = next_poll_delay(FREESORA, obs, now=1000.0, started_at=0.0, rng=FixedRandom(0.9999))
    assert low == pytest.approx(4.0 * 0.9)
    assert high == pytest.approx(4.0 * 1.1, rel=1e-3)


finite = st.floats(min_value=-1e7, max_value=1e7, allow_nan=False, allow_infinity=False)


@st.composite
def schedules(draw: st.DrawFn) -> PollSchedule:
    lo = draw(st.floats(min_value=0.01, max_value=10.0))
    base = draw(st.floats(min_value=lo, max_value=lo * 10))
    hi = draw(st.floats(min_value=base, max_value=base * 50))
    return PollSchedule(
        min_interval=lo,
        base_interval=base,
        max_interval=hi,
        initial_delay=draw(st.floats(min_value=0.0, max_value=1e4)),
        backoff=draw(st.floats(min_value=1.0, max_value=1e3)),
        jitter=draw(st.floats(min_value=0.0, max_value=0.99)),
        latency_fraction=draw(st.floats(min_value=1e-3, max_value=10.0)),
        callback_fallback_interval=draw(st.floats(min_value=lo, max_value=hi)),
    )


observations = st.lists(
    st.builds(
        Observation,
        finite,
        st.sampled_from([PENDING, RUNNING]),
        st.none() | st.integers(-5, 120) | st.floats(-5.0, 150.0),
    ),
    max_size=30,
)


@settings(max_examples=400, deadline=None)
@given(
    schedule=st.sampled_from([FREESORA, SORA2API]) | schedules(),
    obs=observations,
    now=finite,
    started_at=finite,
    retry_after=st.none() | st.floats(allow_nan=True),
    rng=st.randoms(use_true_random=False),
    callback_expected=st.booleans(),
)
def test_delay_is_finite_and_within_its_bounds(
    *,
    schedule: PollSchedule,
    obs: list[Observation],
    now: float,
    started_at: float,
    retry_after: float | None,
    rng: random.Random,
    callback_expected: bool,
) -> None:
    obs.sort(key=lambda o: o.time)
    delay = next_poll_delay(
        schedule,
        obs,
        now=now,
        started_at=started_at,
        retry_after=retry_after,
        rng=rng,
        callback_expected=callback_expected,
    )
    assert math.isfinite(delay)
    upper = schedule.max_interval
    if retry_after is not None and math.isfinite(retry_after):
        upper = max(upper, retry_after)
    assert schedule.min_interval <= delay <= upper


# -- simulated tasks: fewer polls than fixed-interval polling, small detection latency ----------


def simulate(
    schedule: PollSchedule,
    duration: float,
    *,
    progress: bool,
    rng: random.Random | None,
    pending: float = 0.0,
) -> tuple[int, float]:
    """Polls until a task created at 0 and done at ``duration`` is seen done.

    Returns (status requests, detection latency). Progress rises linearly after ``pending``
    seconds in the queue, reported as a whole percentage the way freesora does.
    """
    t = 0.0
    seen: list[Observation] = []
    polls = 0
    while True:
        t += next_poll_delay(schedule, seen, now=t, started_at=0.0, rng=rng)
        polls += 1
        if t >= duration:
            return polls, t - duration
        if t < pending:
            seen.append(Observation(t, PENDING, 0 if progress else None))
        else:
            pct = int(100 * (t - pending) / (duration - pending)) if progress else None
            seen.append(Observation(t, RUNNING, pct))


def fixed_interval(interval: float, duration: float) -> tuple[int, float]:
    polls = math.ceil(duration / interval)
    return polls, polls * interval - duration


def test_a_120s_task_with_progress_needs_a_tenth_of_the_polls() -> None:
    polls, latency = simulate(FREESORA, 120.0, progress=True, rng=random.Random(7))
    fixed_polls, _ = fixed_interval(4.0, 120.0)
    assert fixed_polls == 30
    assert polls <= 4
    assert latency <= FREESORA.min_interval  # seen within one floor interval of finishing


def test_a_120s_task_without_progress_needs_a_third_of_the_polls() -> None:
    runs = [simulate(FREESORA, 120.0, progress=False, rng=random.Random(i)) for i in range(50)]
    mean_polls = statistics.mean(p for p, _ in runs)
    mean_latency = statistics.mean(lat for _, lat in runs)
    assert mean_polls <= 30 / 2.5
    assert mean_latency <= 0.1 * 120.0
    assert max(lat for _, lat in runs) <= 0.15 * 120.0 * 1.1  # the age cap, plus jitter


@pytest.mark.parametrize("progress", [True, False])
def test_over_a_spread_of_durations_both_properties_hold(progress: bool) -> None:
    rng = random.Random(2024)
    ours: list[tuple[int, float]] = []
    fixed: list[tuple[int, float]] = []
    durations: list[float] = []
    for _ in range(300):
        duration = rng.uniform(60.0, 300.0)
        durations.append(duration)
        pending = rng.uniform(0.0, 20.0)
        ours.append(simulate(FREESORA, duration, progress=progress, rng=rng, pending=pending))
        fixed.append(fixed_interval(FREESORA.base_interval, duration))
        # Worst cases: without progress, every gap is at most 15% of the age (+10% jitter);
        # with progress, a single reading after an unseen pending time over-estimates the
        # remaining time by at most the time the task has been seen moving.
        assert ours[-1][1] <= 0.2 * duration
    our_polls = statistics.mean(p for p, _ in ours)
    fixed_polls = statistics.mean(p for p, _ in fixed)
    our_latency = statistics.mean(lat / d for (_, lat), d in zip(ours, durations, strict=True))
    fixed_latency = statistics.mean(lat for _, lat in fixed)
    if progress:
        # Measured: 4.3 polls vs 45.5, mean latency 1.8 s vs 2.1 s.
        assert our_polls < fixed_polls / 8
        assert statistics.mean(lat for _, lat in ours) <= fixed_latency
    else:
        # Measured: 12.9 polls vs 46.8, mean latency 7.4% of the duration.
        assert our_polls < fixed_polls / 3
        assert our_latency <= 0.1


def test_sora2api_without_progress_beats_fixed_10s_polling() -> None:
    runs = [simulate(SORA2API, 300.0, progress=False, rng=random.Random(i)) for i in range(50)]
    assert statistics.mean(p for p, _ in runs) < fixed_interval(10.0, 300.0)[0] / 2
    assert statistics.mean(lat for _, lat in runs) <= 0.1 * 300.0


# -- the wait loop -------------------------------------------------------------------------------


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        await anyio.lowlevel.checkpoint()


def status(state: TaskState, progress: int | None = None, task_id: str = "t1") -> TaskStatus:
    return TaskStatus(task_id=task_id, state=state, progress=progress)


class ScriptedFetch:
    """Answers from a script; an exception in the script is raised. Records poll times."""

    def __init__(self, time: FakeTime, script: Sequence[TaskStatus | Exception]) -> None:
        self.time = time
        self.script = list(script)
        self.times: list[float] = []

    async def __call__(self) -> TaskStatus:
        self.times.append(self.time.now)
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, Exception):
            raise item
        return item


@pytest.mark.anyio
async def test_polls_on_schedule_until_terminal_and_reports_every_status() -> None:
    time = FakeTime()
    fetch = ScriptedFetch(
        time,
        [status(RUNNING, 30), status(RUNNING, 60), status(TaskState.SUCCEEDED, 100)],
    )
    seen: list[TaskStatus] = []
    result = await poll_until_terminal(
        fetch,
        EXACT,
        timeout=600.0,
        on_status=seen.append,
        clock=time.clock,
        sleep=time.sleep,
    )
    assert result.state is TaskState.SUCCEEDED
    assert [s.progress for s in seen] == [30, 60, 100]
    assert fetch.times[0] == pytest.approx(36.0)
    assert fetch.times[1] == pytest.approx(72.0)
    assert 120.0 < fetch.times[2] <= 123.0


@pytest.mark.anyio
async def test_the_deadline_raises_with_the_last_state_after_a_last_poll() -> None:
    time = FakeTime()
    fetch = ScriptedFetch(time, [status(PENDING)])
    with pytest.raises(WaitTimeoutError) as info:
        await poll_until_terminal(
            fetch, EXACT, timeout=100.0, task_id="t1", clock=time.clock, sleep=time.sleep
        )
    assert info.value.task_id == "t1"
    assert info.value.timeout == 100.0
    assert info.value.last_state == "pending"
    assert fetch.times[-1] == pytest.approx(100.0)
    assert time.now == pytest.approx(100.0)


@pytest.mark.anyio
async def test_zero_timeout_raises_before_any_poll() -> None:
    time = FakeTime()
    fetch = ScriptedFetch(time, [status(RUNNING)])
    with pytest.raises(WaitTimeoutError) as info:
        await poll_until_terminal(
            fetch, EXACT, timeout=0.0, task_id="t9", clock=time.clock, sleep=time.sleep
        )
    assert info.value.task_id == "t9"
    assert info.value.last_state is None
    assert fetch.times == []


@pytest.mark.anyio
async def test_transient_errors_do_not_end_the_wait() -> None:
    time = FakeTime()
    errors: list[Exception] = [
        ConnectError("refused", endpoint="status"),
        ServerError("bad gateway", http_status=502),
        ProtocolError("not json"),
    ]
    fetch = ScriptedFetch(time, [*errors, status(RUNNING), status(TaskState.FAILED)])
    result = await poll_until_terminal(
        fetch, EXACT, timeout=None, clock=time.clock, sleep=time.sleep
    )
    assert result.state is TaskState.FAILED
    gaps = [b - a for a, b in itertools.pairwise(fetch.times)]
    # Consecutive failures back off: 4 s, then 6 s (not the first-poll cadence again).
    assert gaps[0] >= EXACT.base_interval
    assert gaps[1] >= EXACT.base_interval * EXACT.backoff


@pytest.mark.anyio
async def test_a_429_on_the_poll_honours_retry_after() -> None:
    time = FakeTime()
    fetch = ScriptedFetch(
        time, [RateLimitError("slow down", retry_after=45.0), status(TaskState.SUCCEEDED)]
    )
    await poll_until_terminal(fetch, EXACT, timeout=None, clock=time.clock, sleep=time.sleep)
    assert fetch.times[1] - fetch.times[0] == pytest.approx(45.0)


@pytest.mark.parametrize(
    "error",
    [NotFoundError("no such task", http_status=404), AuthenticationError("bad key")],
)
@pytest.mark.anyio
async def test_other_errors_propagate_at_once(error: Exception) -> None:
    time = FakeTime()
    fetch = ScriptedFetch(time, [status(RUNNING), error])
    with pytest.raises(type(error)):
        await poll_until_terminal(fetch, EXACT, timeout=None, clock=time.clock, sleep=time.sleep)
    assert len(fetch.times) == 2


@pytest.mark.anyio
async def test_errors_until_the_deadline_end_in_a_timeout_chained_to_the_last_error() -> None:
    time = FakeTime()
    fetch = ScriptedFetch(time, [status(RUNNING, 10), ServerError("down", http_status=503)])
    with pytest.raises(WaitTimeoutError) as info:
        await poll_until_terminal(fetch, EXACT, timeout=300.0, clock=time.clock, sleep=time.sleep)
    assert info.value.last_state == "running"
    assert isinstance(info.value.__cause__, ServerError)
    # Backed off, not hammering: far fewer polls than one per base interval.
    assert len(fetch.times) < 300.0 / EXACT.base_interval / 2


class BlockingTime(FakeTime):
    """A clock whose sleeps never end on their own: only a wake hint can cut them short."""

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        await anyio.sleep_forever()


@pytest.mark.anyio
async def test_a_wake_hint_cuts_the_sleep_short_and_the_poll_decides() -> None:
    time = BlockingTime()
    hint = WakeHint()
    answers = [status(RUNNING), status(TaskState.SUCCEEDED)]
    fetch = ScriptedFetch(time, answers)
    results: list[TaskStatus] = []

    async def run() -> None:
        results.append(
            await poll_until_terminal(
                fetch, SORA2API, timeout=None, wake=hint, clock=time.clock, sleep=time.sleep
            )
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await anyio.wait_all_tasks_blocked()
        # While a callback is expected, the poller sleeps the slow fallback interval.
        assert time.sleeps == [pytest.approx(SORA2API.callback_fallback_interval, rel=0.11)]
        assert fetch.times == []
        hint.set()  # a callback arrived: poll now
        await anyio.wait_all_tasks_blocked()
        assert len(fetch.times) == 1  # answered "running": the callback body is not trusted
        assert results == []
        assert not hint.is_set()  # re-armed for the next cycle
        hint.set()
    assert results == [answers[1]]
    assert len(fetch.times) == 2


@pytest.mark.anyio
async def test_a_wake_during_a_poll_is_kept_for_the_next_sleep() -> None:
    time = BlockingTime()
    hint = WakeHint()
    calls = 0

    async def fetch() -> TaskStatus:
        nonlocal calls
        calls += 1
        if calls == 1:
            hint.set()  # the callback lands while the first poll is in flight
            return status(RUNNING)
        return status(TaskState.SUCCEEDED)

    hint.set()  # an early callback (before the wait began) also polls at once
    with anyio.fail_after(5):  # a safety net against a hang, not a timing assertion
        result = await poll_until_terminal(
            fetch, SORA2API, timeout=None, wake=hint, clock=time.clock, sleep=time.sleep
        )
    assert result.state is TaskState.SUCCEEDED
    assert calls == 2
    assert time.sleeps == []  # neither poll had to sleep
