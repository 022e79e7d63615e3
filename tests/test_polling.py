"""The poll schedule (pure, simulated on a virtual clock) and the wait loop (fake clock)."""

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
from helpers import examples
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
    UnknownStatusError,
    WaitTimeoutError,
)
from sora_async.models import Model, Quality, TaskState, TaskStatus, VideoRequest
from sora_async.polling import (
    DurationKey,
    Observation,
    PollPlanner,
    PollProfile,
    PollSchedule,
    next_poll_delay,
    poll_until_terminal,
)
from sora_async.providers import get_provider
from sora_async.providers.freesora import POLL_PROFILE as FREESORA_PROFILE
from sora_async.providers.sora2api import POLL_PROFILE as SORA2API_PROFILE

RUNNING = TaskState.RUNNING
PENDING = TaskState.PENDING
FREESORA = PollPlanner(FREESORA_PROFILE).schedule(None)
SORA2API = PollPlanner(SORA2API_PROFILE).schedule(None)
# The same schedule without jitter or window, for exact expectations.
EXACT = attrs.evolve(FREESORA, jitter=0.0, expected_duration=None)


class FixedRandom:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


# -- profiles and planner ----------------------------------------------------------------------


def test_each_provider_declares_its_profile() -> None:
    assert get_provider("freesora").poll_profile is FREESORA_PROFILE
    assert get_provider("sora2api").poll_profile is SORA2API_PROFILE
    # freesora's document asks for a poll every 3-5 s.
    assert FREESORA_PROFILE.min_interval == 3.0
    assert 3.0 <= FREESORA_PROFILE.base_interval <= 5.0
    assert FREESORA_PROFILE.prior(None) == FREESORA_PROFILE.prior(Model.SORA_2.value) == 180.0
    assert FREESORA_PROFILE.prior(Model.SORA_2_PRO.value) == 360.0
    assert SORA2API_PROFILE.prior(None) == 300.0


def test_the_first_poll_comes_one_base_interval_after_the_create_whatever_the_prior() -> None:
    for schedule in (FREESORA, SORA2API):
        assert schedule.initial_delay == schedule.base_interval
        assert next_poll_delay(schedule, [], now=0.0, started_at=0.0) == schedule.base_interval
    pro = PollPlanner(FREESORA_PROFILE).schedule(VideoRequest("x", model="sora-2-pro"))
    assert pro.expected_duration == 360.0
    assert pro.initial_delay == 4.0


def test_a_small_poll_interval_scales_the_gaps_but_not_the_priors() -> None:
    s = PollPlanner(FREESORA_PROFILE, poll_interval=0.2).schedule(None)
    assert (s.base_interval, s.initial_delay) == (0.2, 0.2)
    assert s.min_interval == pytest.approx(0.15)  # 3 s / 4 s of it
    assert s.max_interval == 60.0  # the age cap keeps the gaps of short tasks short
    assert s.min_interval <= s.callback_fallback_interval <= s.max_interval
    assert s.expected_duration == 180.0
    slow = PollPlanner(SORA2API_PROFILE, poll_interval=30.0).schedule(None)
    assert (slow.base_interval, slow.min_interval, slow.max_interval) == (30.0, 15.0, 60.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"poll_interval": 0.0},
        {"poll_interval": math.nan},
        {"poll_interval": -1.0},
        {"expected_duration": -1.0},
        {"expected_duration": math.inf},
    ],
)
def test_bad_planner_settings_are_configuration_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        PollPlanner(FREESORA_PROFILE, **kwargs)


def test_a_planner_needs_a_profile_not_a_name() -> None:
    with pytest.raises(ConfigurationError, match="PollProfile"):
        PollPlanner("freesora")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_interval": 10.0},
        {"max_interval": 1.0},
        {"callback_fallback_interval": 600.0},
        {"expected_duration": 0.0},
        {"expected_durations": {"sora-2": -5.0}},
    ],
)
def test_inconsistent_profiles_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        attrs.evolve(FREESORA_PROFILE, **kwargs)


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


def learn(planner: PollPlanner, request: VideoRequest | None, seconds: float) -> None:
    # Seen running just before the end and done just after: the midpoint is ``seconds``.
    planner.learn(
        request,
        created_at=100.0,
        last_running_at=100.0 + seconds - 0.5,
        finished_seen_at=100.0 + seconds + 0.5,
        succeeded=True,
    )


def test_durations_are_learned_per_provider_model_duration_and_quality() -> None:
    planner = PollPlanner(FREESORA_PROFILE)
    stable15 = VideoRequest("a", model="sora-2-stable", duration=15)
    learn(planner, stable15, 90.0)
    learn(planner, None, 20.0)
    learn(planner, VideoRequest("b", model="sora-2"), 30.0)  # the default model, same kind
    planner.learn(None, created_at=0.0, last_running_at=1.0, finished_seen_at=2.0, succeeded=False)
    assert planner.learned == {
        DurationKey("freesora", "sora-2-stable", 15, None): 90.0,
        DurationKey("freesora", "sora-2", None, None): 25.0,
    }
    assert planner.schedule(stable15).expected_duration == 90.0
    assert planner.schedule(VideoRequest("c", model="sora-2-stable")).expected_duration == 180.0
    hd = PollPlanner(SORA2API_PROFILE)
    learn(hd, VideoRequest("d", quality=Quality.HD), 400.0)
    assert set(hd.learned) == {DurationKey("sora2api", "sora-2", None, "hd")}


@pytest.mark.parametrize("factor", [0.1, 10.0])
def test_observations_override_the_prior_in_either_direction(factor: float) -> None:
    planner = PollPlanner(FREESORA_PROFILE, expected_duration=180.0)
    truth = 180.0 * factor
    rng = random.Random(3)
    for _ in range(3):
        learn(planner, None, truth * rng.uniform(0.9, 1.1))
    schedule = planner.schedule(None)
    assert schedule.expected_duration == pytest.approx(truth, rel=0.1)
    window = schedule.window()
    assert window is not None and window[0] < truth < window[1] < 180.0 * max(1.0, factor) * 2


def test_the_learned_mean_follows_a_change_within_a_few_dozen_tasks() -> None:
    planner = PollPlanner(SORA2API_PROFILE)
    for _ in range(50):
        learn(planner, None, 300.0)
    for _ in range(30):
        learn(planner, None, 60.0)
    assert planner.learned[DurationKey("sora2api", "sora-2", None, None)] < 75.0


# -- the pure schedule, case by case -----------------------------------------------------------


def test_an_adopted_task_of_unknown_age_is_polled_soon_but_not_below_the_floor() -> None:
    assert next_poll_delay(EXACT, [], now=1000.0, started_at=0.0) == EXACT.min_interval


def test_a_young_task_is_polled_every_base_interval_then_the_gap_grows_with_its_age() -> None:
    obs: list[Observation] = []
    times = []
    t = 0.0
    while t < 400.0:
        t += next_poll_delay(EXACT, obs, now=t, started_at=0.0)
        times.append(t)
        obs.append(Observation(t, RUNNING, None))
    gaps = [b - a for a, b in itertools.pairwise([0.0, *times])]
    # Up to ten base intervals, exactly a fixed poller; then 10% of the age, up to 60 s.
    assert gaps[:10] == pytest.approx([4.0] * 10)
    for at, gap in zip(times[9:], gaps[10:], strict=False):
        assert gap == pytest.approx(min(60.0, max(4.0, 0.1 * at)))
    assert gaps == sorted(gaps)


def test_progress_predicts_the_finish_and_the_poll_lands_just_after_it() -> None:
    # 30% after 36 s: the task will end near 120 s. Trusted only half its age ahead (18 s).
    obs = [Observation(36.0, RUNNING, 30)]
    assert next_poll_delay(EXACT, obs, now=36.0, started_at=0.0, polls=1) == pytest.approx(18.0)
    # 60% after 72 s: the finish is 46 s away, further than half its age: 36 s for now.
    obs.append(Observation(72.0, RUNNING, 60))
    assert next_poll_delay(EXACT, obs, now=72.0, started_at=0.0, polls=2) == pytest.approx(36.0)
    # 90% after 108 s: the finish lies between what the fastest rate the whole percentages
    # allow says (61 points in the 72 s since the first reading that moved) and what the
    # slowest says (59 points): 1.6 s apart, more than a third of a base interval, so a poll
    # a floor (3 s) before the earliest narrows it down first.
    obs.append(Observation(108.0, RUNNING, 90))
    delay = next_poll_delay(EXACT, obs, now=108.0, started_at=0.0, polls=3)
    assert 0.35 * 4.0 < 10 / (59 / 72) - 9 / (61 / 72) < 0.5 * 4.0
    assert delay == pytest.approx(9 / (61 / 72) - 3.0)
    # 96% then: the slowest rate (65 points in the 79.6 s since the first reading that moved)
    # and the fastest (67) are within a third of a base interval, so the poll is aimed at the
    # latest finish they allow, which is a bound: nothing is added to it.
    approach = 108.0 + delay
    obs.append(Observation(approach, RUNNING, 96))
    delay = next_poll_delay(EXACT, obs, now=approach, started_at=0.0, polls=4)
    span = approach - 36.0
    assert 4 / (65 / span) - 3 / (67 / span) < 0.35 * 4.0
    assert delay == pytest.approx(4 / (65 / span))
    assert 120.0 <= approach + delay < 120.6
    # Answered 2 s after it was sent, the 90% may be 2 s younger: the finish is known less
    # closely still, and the poll that narrows it down comes a floor before the earliest.
    answered = [*obs[:2], Observation(108.0, RUNNING, 90, answered_at=110.0)]
    delay = next_poll_delay(EXACT, answered, now=110.0, started_at=0.0, polls=3)
    assert delay == pytest.approx(108.0 + 9 / (61 / 72) - 3.0 - 110.0)


def test_a_due_task_is_polled_briskly_until_even_the_slowest_rate_would_be_done() -> None:
    obs = [Observation(60.0, RUNNING, 50), Observation(119.0, RUNNING, 98)]
    # Due by the fastest rate (99 points in 119 s), not yet by the slowest (97 in 119 s).
    assert next_poll_delay(EXACT, obs, now=119.0, started_at=0.0, polls=10) == 3.0
    obs.append(Observation(122.0, RUNNING, 98))
    # Past any plausible finish at that rate: stalled, polled like a task without progress.
    stalled = next_poll_delay(EXACT, obs, now=122.0, started_at=0.0, polls=11)
    assert stalled == pytest.approx(12.2)


def test_a_task_stuck_at_99_percent_falls_back_to_sparse_polls() -> None:
    # 98% then 99%: one point apart, the two readings bound no slowest rate; counted from the
    # create, 99% by 104 s means done by 106 s at the latest. At 300 s it is stalled.
    obs = [Observation(100.0, RUNNING, 98), *(Observation(t, RUNNING, 99) for t in (104, 300))]
    assert next_poll_delay(EXACT, obs, now=300.0, started_at=0.0, polls=10) == pytest.approx(30.0)


def test_the_budget_keeps_polls_at_or_below_a_fixed_pollers() -> None:
    # Twelve polls made by 40 s (say, callbacks woke the poller): none before 4 s x 13 = 52 s.
    obs = [Observation(40.0, RUNNING, 99)]
    assert next_poll_delay(EXACT, obs, now=40.0, started_at=0.0, polls=12) == pytest.approx(12.0)


def test_inside_the_expected_window_polls_are_denser_than_outside() -> None:
    s = attrs.evolve(EXACT, expected_duration=100.0, expected_spread=10.0)
    assert s.window() == (75.0, 125.0)
    young = [Observation(60.0, RUNNING, None)]
    # Sparse would be 6 s and stay short of the window: sparse it is.
    assert next_poll_delay(s, young, now=60.0, started_at=0.0, polls=15) == pytest.approx(6.0)
    near = [Observation(70.0, RUNNING, None)]
    assert next_poll_delay(s, near, now=70.0, started_at=0.0, polls=15) == pytest.approx(5.0)
    inside = [Observation(90.0, RUNNING, None)]
    # Midway between the floor (3 s) and the base (4 s), within the budget saved before.
    assert next_poll_delay(s, inside, now=90.0, started_at=0.0, polls=15) == pytest.approx(3.5)
    assert next_poll_delay(s, inside, now=90.0, started_at=0.0, polls=23) == pytest.approx(6.0)
    beyond = [Observation(130.0, RUNNING, None)]
    assert next_poll_delay(s, beyond, now=130.0, started_at=0.0, polls=25) == pytest.approx(13.0)


def test_retry_after_wins_only_when_longer() -> None:
    obs = [Observation(100.0, RUNNING, None)]
    assert next_poll_delay(EXACT, obs, now=100.0, started_at=0.0, retry_after=120.0) == 120.0
    assert next_poll_delay(EXACT, obs, now=100.0, started_at=0.0, retry_after=1.0) == 10.0
    assert next_poll_delay(EXACT, obs, now=100.0, started_at=0.0, retry_after=math.inf) == 10.0


def test_expected_callback_means_one_early_poll_then_slow_fallback_polling() -> None:
    first = next_poll_delay(SORA2API, [], now=0.0, started_at=0.0, callback_expected=True)
    assert first == SORA2API.base_interval
    obs = [Observation(100.0, RUNNING, None)]
    d = next_poll_delay(SORA2API, obs, now=100.0, started_at=0.0, callback_expected=True)
    assert d == SORA2API.callback_fallback_interval
    jittered = next_poll_delay(
        SORA2API, obs, now=100.0, started_at=0.0, callback_expected=True, rng=FixedRandom(0.999)
    )
    assert jittered == pytest.approx(60.0 * 0.9, rel=1e-3)


def test_jitter_only_shortens_a_sparse_gap() -> None:
    obs = [Observation(300.0, RUNNING, None)]
    jittery = attrs.evolve(EXACT, jitter=0.1)
    low = next_poll_delay(jittery, obs, now=300.0, started_at=0.0, rng=FixedRandom(0.9999))
    assert low == pytest.approx(30.0 * 0.9, rel=1e-3)
    young = [Observation(4.0, RUNNING, None)]
    assert next_poll_delay(FREESORA, young, now=4.0, started_at=0.0, rng=FixedRandom(0.9)) == 4.0


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
        progress_fraction=draw(st.floats(min_value=1e-3, max_value=10.0)),
        expected_duration=draw(st.none() | st.floats(min_value=0.01, max_value=1e5)),
        expected_spread=draw(st.none() | st.floats(min_value=0.01, max_value=1e5)),
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


@settings(max_examples=examples(60, 1000), deadline=None)
@given(
    schedule=st.sampled_from([FREESORA, SORA2API]) | schedules(),
    obs=observations,
    now=finite,
    started_at=finite,
    retry_after=st.none() | st.floats(allow_nan=True),
    rng=st.randoms(use_true_random=False),
    callback_expected=st.booleans(),
    polls=st.none() | st.integers(0, 10**6),
    since_last_poll=st.none() | st.floats(min_value=0.0, max_value=1e7),
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
    polls: int | None,
    since_last_poll: float | None,
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
        polls=polls,
        last_poll_at=None if since_last_poll is None else now - since_last_poll,
    )
    assert math.isfinite(delay)
    upper = schedule.max_interval
    if retry_after is not None and math.isfinite(retry_after):
        upper = max(upper, retry_after)
    # The floor separates two sends: what an answer took already counts towards it.
    floor = schedule.min_interval
    if since_last_poll is not None:
        floor = max(0.0, schedule.min_interval - since_last_poll)
    assert floor * (1 - 1e-9) - 1e-9 <= delay <= upper


# -- simulated tasks on a virtual clock ---------------------------------------------------------


def simulate(
    schedule: PollSchedule,
    duration: float,
    *,
    progress: str | None,
    rng: random.Random | None,
    pending: float = 0.0,
) -> tuple[int, float]:
    """Polls until a task created at 0 and done at ``duration`` is seen done.

    Returns (status requests, detection lag). ``progress``: None (sora2api), "create" (0%
    while pending, then the whole percentage of the time since the create, like the mock) or
    "start" (0-100% over the running time only).
    """
    polls, seen_at, _ = follow(schedule, duration, progress=progress, rng=rng, pending=pending)
    return polls, seen_at - duration


def follow(
    schedule: PollSchedule,
    duration: float,
    *,
    progress: str | None,
    rng: random.Random | None,
    pending: float = 0.0,
) -> tuple[int, float, float | None]:
    """:func:`simulate`, returning (status requests, when the task was seen done, when it was
    last seen running or None)."""
    t = 0.0
    seen: list[Observation] = []
    polls = 0
    while True:
        t += next_poll_delay(schedule, seen, now=t, started_at=0.0, rng=rng, polls=polls)
        polls += 1
        if t >= duration:
            return polls, t, seen[-1].time if seen else None
        if t < pending:
            seen.append(Observation(t, PENDING, None if progress is None else 0))
            continue
        pct: int | None = None
        if progress == "create":
            pct = max(1, min(99, int(100 * t / duration)))
        elif progress == "start":
            pct = min(99, int(100 * (t - pending) / (duration - pending)))
        seen.append(Observation(t, RUNNING, pct))


def fixed_polls(interval: float, duration: float) -> int:
    """Polls of a poller asking every ``interval`` from the create until it sees the end."""
    count = max(1, math.ceil(duration / interval))
    while count * interval < duration:
        count += 1
    return count


@settings(max_examples=examples(100, 2000), deadline=None)
@given(
    duration=st.floats(min_value=0.1, max_value=7200.0),
    base=st.floats(min_value=0.05, max_value=60.0),
    profile=st.sampled_from([FREESORA_PROFILE, SORA2API_PROFILE]),
    prior=st.none() | st.floats(min_value=0.1, max_value=7200.0),
    # A few durations, or a kind of task seen finishing in the same time again and again
    # (then trusted when progress agrees with it), near this task's duration or not.
    learned=st.lists(st.floats(min_value=0.1, max_value=7200.0), max_size=4)
    | st.tuples(st.floats(min_value=0.5, max_value=2.0), st.integers(3, 8)),
    progress=st.sampled_from([None, "create", "start"]),
    pending=st.floats(min_value=0.0, max_value=0.5),
    seed=st.integers(0, 2**32),
)
def test_lag_and_polls_stay_within_the_promise_for_any_duration(
    *,
    duration: float,
    base: float,
    profile: PollProfile,
    prior: float | None,
    learned: list[float] | tuple[float, int],
    progress: str | None,
    pending: float,
    seed: int,
) -> None:
    # Whatever the priors and the learned durations say about this task: they are hints.
    planner = PollPlanner(profile, poll_interval=base, expected_duration=prior)
    if isinstance(learned, tuple):
        factor, times = learned
        learned = [duration * factor] * times
    for seconds in learned:
        learn(planner, None, seconds)
    schedule = planner.schedule(None)
    polls, lag = simulate(
        schedule, duration, progress=progress, rng=random.Random(seed), pending=pending * duration
    )
    assert lag <= max(base, 0.1 * duration) * (1 + 1e-9)
    # (A task ending within rounding error of a multiple of the base may cost one more.)
    assert polls <= fixed_polls(base, duration * (1 + 1e-9))


@settings(max_examples=examples(100, 2000), deadline=None)
@given(
    base=st.floats(min_value=0.05, max_value=10.0),
    bases=st.floats(min_value=4.0, max_value=40.0),
    progress=st.sampled_from(["create", "start"]),
    pending=st.floats(min_value=0.0, max_value=0.99),
    prior_factor=st.sampled_from([0.1, 1.0, 10.0]),
    seed=st.integers(0, 2**32),
)
def test_a_kind_of_task_seen_finishing_before_is_caught_just_after_it_ends(
    *,
    base: float,
    bases: float,
    progress: str,
    pending: float,
    prior_factor: float,
    seed: int,
) -> None:
    """Tasks that all take the same time, from 4 to 40 base intervals, with progress: once a
    few were seen finishing, each is seen done within half a base interval (a fixed poller:
    up to a whole one), with no more polls than a fixed poller's, and far fewer when long.

    The first poll still comes one base interval after the create and the next one a base
    interval later (two readings give the rate); then the learned durations and the progress
    agree, and the polls go straight towards the finish, evenly spaced when a gap is capped.
    """
    duration = base * bases
    planner = PollPlanner(
        FREESORA_PROFILE, poll_interval=base, expected_duration=duration * prior_factor
    )
    rng = random.Random(seed)
    # Pending shorter than one base interval, so that two readings come before the end.
    start_after = pending * base

    def one() -> tuple[int, float]:
        polls, seen_at, last_running = follow(
            planner.schedule(None), duration, progress=progress, rng=rng, pending=start_after
        )
        # As the lifecycle reports it: created at 0 (here 100), last seen running, seen done.
        planner.learn(
            None,
            created_at=100.0,
            last_running_at=None if last_running is None else 100.0 + last_running,
            finished_seen_at=100.0 + seen_at,
            succeeded=True,
        )
        return polls, seen_at - duration

    for _ in range(3):
        one()
    polls, lag = one()
    assert lag <= 0.55 * base
    fixed = fixed_polls(base, duration * (1 + 1e-9))
    assert polls <= fixed
    assert polls <= 4 + fixed // 4


class SlowAnswers:
    """A task's server whose answers take ``latency`` to come back, on a :class:`FakeTime`.

    The task exists from ``theta * latency`` after the create was sent (``started_at`` 0) and
    ends ``duration`` later; a poll sent at ``t`` reports the task as of ``t + theta *
    latency`` (theta 0: a slow client that reads its answers late; 1: a slow server that
    answers at once what it found after the delay), with progress counted like the mock's.
    With ``wobble``, each answer reports the task as of a moment drawn anywhere between its
    send and its arrival instead (a loaded machine's requests and answers queue unevenly).
    """

    def __init__(
        self,
        time: FakeTime,
        duration: float,
        latency: float,
        theta: float,
        wobble: random.Random | None = None,
    ) -> None:
        self.time, self.duration, self.latency, self.theta = time, duration, latency, theta
        self.wobble = wobble
        self.polls = 0

    @property
    def ends_at(self) -> float:
        return self.theta * self.latency + self.duration

    async def __call__(self) -> TaskStatus:
        self.polls += 1
        # The snapshot and the task's start are both theta * latency late: its age is the send.
        age = self.time.now
        if self.wobble is not None:
            age += (self.wobble.random() - self.theta) * self.latency
        self.time.now += self.latency
        await anyio.lowlevel.checkpoint()
        if age >= self.duration:
            return status(TaskState.SUCCEEDED, 100)
        return status(RUNNING, max(1, min(99, int(100 * age / self.duration))))


@settings(max_examples=examples(60, 1000), deadline=None)
@given(
    duration=st.floats(min_value=0.1, max_value=7200.0),
    base=st.floats(min_value=0.05, max_value=60.0),
    # Up to four base intervals: the first wave of a benchmark on a loaded machine.
    latency_in_bases=st.floats(min_value=0.0, max_value=4.0),
    theta=st.floats(min_value=0.0, max_value=1.0),
    prior_factor=st.sampled_from([0.1, 1.0, 10.0]),
    wobble=st.booleans(),
    # Tasks of this kind seen finishing before (then a prediction that agrees is trusted).
    seen_before=st.sampled_from([0, 4]),
    seed=st.integers(0, 2**32),
)
def test_a_slow_answer_delays_the_sighting_by_itself_only(
    *,
    duration: float,
    base: float,
    latency_in_bases: float,
    theta: float,
    prior_factor: float,
    wobble: bool,
    seen_before: int,
    seed: int,
) -> None:
    """The real wait loop against answers that take ``L``: the lag stays within
    ``max(b, 10% of the duration, L) + L`` and the polls at or below a fixed poller's.

    Timing an observation by its answer's arrival and counting the floor from there (as the
    loop did) lets each slow answer push the next poll back by itself plus the floor: the
    first wave of the "10x shorter" benchmark was seen four to six base intervals late.
    """
    latency = latency_in_bases * base
    planner = PollPlanner(
        FREESORA_PROFILE, poll_interval=base, expected_duration=duration * prior_factor
    )
    for _ in range(seen_before):
        learn(planner, None, duration + theta * latency)
    time = FakeTime()
    server = SlowAnswers(time, duration, latency, theta, random.Random(seed) if wobble else None)

    async def main() -> TaskStatus:
        return await poll_until_terminal(
            server,
            planner.schedule(None),
            timeout=None,
            started_at=0.0,
            clock=time.clock,
            sleep=time.sleep,
            rng=random.Random(seed),
        )

    assert anyio.run(main).state is TaskState.SUCCEEDED
    lag = time.now - server.ends_at
    assert lag <= (max(base, 0.1 * duration, latency) + latency) * (1 + 1e-9)
    # A wobbly answer may report the task as of up to one latency before it ends.
    assert server.polls <= fixed_polls(base, (duration + wobble * latency) * (1 + 1e-9))


def test_a_task_that_fails_at_once_is_seen_after_one_base_interval() -> None:
    for schedule in (FREESORA, SORA2API):
        polls, lag = simulate(schedule, 0.5, progress=None, rng=random.Random(1))
        assert (polls, lag) == (1, pytest.approx(schedule.base_interval - 0.5))


def measure(
    profile: PollProfile, truth: float, *, progress: str | None, tasks: int = 200, seed: int = 7
) -> dict[str, float]:
    """A stream of tasks of ``truth`` +-30% on a planner that learns as it goes, against a
    fixed poller at the same base interval: polls per task and lag p50/p95 of both."""
    rng = random.Random(seed)
    planner = PollPlanner(profile)
    base = profile.base_interval
    ours: list[tuple[int, float]] = []
    fixed: list[tuple[int, float]] = []
    for _ in range(tasks):
        duration = truth * rng.uniform(0.7, 1.3)
        polls, lag = simulate(
            planner.schedule(None), duration, progress=progress, rng=rng, pending=0.1 * duration
        )
        ours.append((polls, lag))
        count = fixed_polls(base, duration)
        fixed.append((count, count * base - duration))
        learn(planner, None, duration)

    def pct(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]

    our_lags, fixed_lags = [lag for _, lag in ours], [lag for _, lag in fixed]
    return {
        "polls": statistics.mean(p for p, _ in ours),
        "fixed_polls": statistics.mean(p for p, _ in fixed),
        "lag_p50": pct(our_lags, 0.5),
        "lag_p95": pct(our_lags, 0.95),
        "fixed_lag_p50": pct(fixed_lags, 0.5),
        "fixed_lag_p95": pct(fixed_lags, 0.95),
    }


@pytest.mark.parametrize("factor", [0.1, 1.0, 10.0])
@pytest.mark.parametrize(
    ("profile", "progress"), [(FREESORA_PROFILE, "create"), (SORA2API_PROFILE, None)]
)
def test_against_a_fixed_poller_when_the_prior_is_right_or_ten_times_off(
    profile: PollProfile, progress: str | None, factor: float
) -> None:
    m = measure(profile, profile.prior(None) * factor, progress=progress)
    # The promise, in aggregate: never more polls, and a p95 lag no worse (2% slack for the
    # first tasks, placed by a prior ten times off).
    assert m["polls"] <= m["fixed_polls"]
    assert m["lag_p95"] <= m["fixed_lag_p95"] * 1.02
    if progress is not None and factor >= 1.0:
        # Progress earns most: a quarter of the polls or fewer.
        assert m["polls"] <= m["fixed_polls"] / 3.5


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
        [status(PENDING), status(RUNNING), status(RUNNING), status(TaskState.SUCCEEDED)],
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
    assert [s.state for s in seen] == [PENDING, RUNNING, RUNNING, TaskState.SUCCEEDED]
    assert fetch.times == pytest.approx([4.0, 8.0, 12.0, 16.0])


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
        # The first poll still comes one base interval after the create (a lost callback of a
        # task that failed at once costs no more).
        assert time.sleeps == [SORA2API.base_interval]
        assert fetch.times == []
        hint.set()  # a callback arrived: poll now
        await anyio.wait_all_tasks_blocked()
        assert len(fetch.times) == 1  # answered "running": the callback body is not trusted
        assert results == []
        assert not hint.is_set()  # re-armed for the next cycle
        # While a callback is expected, the poller then sleeps the slow fallback interval.
        assert time.sleeps[1] == pytest.approx(SORA2API.callback_fallback_interval, rel=0.11)
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


@pytest.mark.anyio
async def test_an_unknown_status_is_asked_again_then_ends_the_wait_naming_it() -> None:
    time = FakeTime()
    odd = UnknownStatusError("canceled", endpoint="status")
    fetch = ScriptedFetch(time, [status(RUNNING), odd, odd, ServerError("x"), odd, odd])
    with pytest.raises(UnknownStatusError) as info:
        await poll_until_terminal(
            fetch, EXACT, timeout=None, task_id="t1", clock=time.clock, sleep=time.sleep
        )
    assert info.value.status == "canceled"
    assert (info.value.task_id, info.value.times) == ("t1", 3)
    assert "'canceled'" in str(info.value) and "t1" in str(info.value)
    assert isinstance(info.value, ProtocolError)
    # A 5xx in between neither counts nor resets: three unknown answers, five polls.
    assert len(fetch.times) == 5


@pytest.mark.anyio
async def test_a_known_status_between_unknown_ones_resets_the_count() -> None:
    time = FakeTime()
    odd = UnknownStatusError("timeout")
    script: list[TaskStatus | Exception] = [odd, odd, status(RUNNING), odd, odd]
    fetch = ScriptedFetch(time, [*script, status(TaskState.SUCCEEDED)])
    result = await poll_until_terminal(
        fetch, EXACT, timeout=None, clock=time.clock, sleep=time.sleep
    )
    assert result.state is TaskState.SUCCEEDED
    with pytest.raises(ValueError):
        await poll_until_terminal(fetch, EXACT, timeout=None, unknown_status_limit=0)
