"""When to ask for a task's status again: a pure schedule, what it learns, and the wait loop.

Each provider module declares a :class:`PollProfile` (its documented cadence and its prior
guesses of how long a task takes). A client's :class:`PollPlanner` turns the profile, the
user's settings and the durations it has *seen* into one :class:`PollSchedule` per task, and
:func:`next_poll_delay` answers "how long until the next poll?" as a pure function of the
schedule and what has been observed so far.

Two promises hold for every task, whatever the priors or the learned durations say (priors
are hints, never promises), and a property test checks them over true durations from 0.1 s
to two hours and any base interval ``b``:

* **Lag.** A task is seen finished at most ``max(b, latency_fraction * its duration)`` after
  it finished (``latency_fraction`` is 10%): no gap is longer than ``b`` or than that
  fraction of the task's age at the last poll, unless progress predicts the finish. When
  each answer takes ``L`` to come back, the lag is at most ``max(b, 10% of its duration, L)
  + L``: gaps are counted between the *sends* of two polls (``min_interval`` too), and an
  observation is timed by its send, so a slow answer neither pushes the next poll back nor
  makes the task look slower than it is.
* **Cost.** By any moment, no more polls were made than a poller asking every ``b`` seconds
  from the create would have made: the k-th poll never comes before ``initial_delay + (k-1)
  * b`` (the *budget*). So the first poll comes no later, and no sooner, than ``b`` after the
  create (``initial_delay``, which only a server hint could lower), and a task that fails at
  once is seen within one base interval.

Between those two bounds, what was observed decides where the polls go:

* **Progress** (freesora reports 0-100): the rate since the task started moving predicts its
  finish, between the earliest the fastest rate the whole-number percentages allow says and
  the latest the slowest says (each reading true anywhere between its send and its answer,
  and a 1% perhaps less: providers round a task that has begun up to 1%). When
  those are within a third of a base interval, the next poll is aimed at the latest, so that one
  poll sees the task done, a little after its finish; when not, a ``min_interval`` before the
  earliest, where a reading narrows the finish down and leaves room for a poll aimed at it.
  A prediction is trusted no further ahead than ``progress_fraction`` of the task's age nor
  than it has been seen moving, unless the task was seen moving twice and the prediction
  falls in the window where tasks of its kind were seen to finish (below), after
  ``_TRUSTED_AFTER`` of them: then the polls go straight towards the finish, evenly spaced
  when ``max_interval`` caps a gap. A task of 4 base intervals that learned tasks of its
  kind took is polled 3 times (after one base interval, two, and just after its finish),
  where a fixed poller needs 4 and finds it up to a base interval late. A task that stalls
  falls back to the rule below.
* **Without progress** (sora2api, or a task still at 0%): outside the window in which the
  task is expected to finish (``expected_duration`` +- 2.5 ``expected_spread``), polls are
  sparse: the gap grows with the task's age, ``max(b, latency_fraction * age)``, capped by
  ``max_interval``, so a long task costs a logarithmic number of polls. Inside the window,
  polls come midway between ``min_interval`` and ``b`` (never closer than 0.1% of the task's
  age), a little more often than a fixed poller's, paid for by the sparse polls before (the
  budget still caps the count), so the usual lag is smaller than its. The window comes from
  the durations the planner has seen for this kind of task; before any is seen, from the
  provider's prior with a wide spread.
  A prior that is ten times off in either direction costs nothing but the window's density
  in the wrong place; the lag promise still holds, and the first finished task replaces it.
* **Completion callback expected** (sora2api ``callBackUrl``): after the first poll, polls
  only guard against a lost callback, every ``callback_fallback_interval``.
* **Retry-After** from the server wins whenever it is longer. Jitter (a fraction) spreads
  the sparse polls of tasks created together; it only ever shortens a gap, within the bounds.

:func:`poll_until_terminal` runs the loop: it sleeps (cut short by a wake hint when a callback
arrives), fetches, and returns the first terminal status. A callback body is never trusted: the
wake only triggers a poll. Transient failures that survived the fetch's own retries (transport,
5xx, 429, undecodable answer) do not end the wait: polling goes on, with backoff, until the
overall deadline, which raises :class:`~sora_async.errors.WaitTimeoutError`. A status the
provider module does not know (:class:`~sora_async.errors.UnknownStatusError`) is asked again
a few times, then the wait ends with that error, naming the status: a task in a state nobody
can interpret should not hold an account slot for an hour.

Modules: ``policy`` (the values: :class:`PollProfile`, :class:`PollSchedule`), ``planner``
(:class:`PollPlanner`, what it learns), ``delay`` (:func:`next_poll_delay`'s arithmetic) and
``loop`` (:func:`poll_until_terminal`).
"""

from __future__ import annotations

from .delay import Observation, next_poll_delay
from .loop import TRANSIENT_POLL_ERRORS, UNKNOWN_STATUS_LIMIT, WakeSignal, poll_until_terminal
from .planner import LEARNING_RATE, DurationKey, PollPlanner
from .policy import PollProfile, PollSchedule

__all__ = [
    "LEARNING_RATE",
    "TRANSIENT_POLL_ERRORS",
    "UNKNOWN_STATUS_LIMIT",
    "DurationKey",
    "Observation",
    "PollPlanner",
    "PollProfile",
    "PollSchedule",
    "WakeSignal",
    "next_poll_delay",
    "poll_until_terminal",
]
