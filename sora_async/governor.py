"""The account slot pool: how many tasks this client may have alive on the server at once.

The providers cap an *account* at a number of live tasks (20), not a number of HTTP requests.
A task lives for minutes, so the unit the governor hands out is a **slot**: taken before the
create POST, and given back only when the task is seen terminal, or when the create is known
not to have happened (a refused request, a connect error). A create whose outcome is unknown
keeps its slot: the task may exist and count against the account.

How the in-process governor works
---------------------------------

* **Queue.** :meth:`LocalGovernor.acquire` waits in a first-in, first-out queue (an anyio
  ``CapacityLimiter``, borrowed on behalf of the slot, not of the calling task). A waiter that
  is cancelled leaves the queue without taking a slot; one cancelled just as a slot is handed
  to it either passes the slot on or returns it to its caller, never leaks it.
* **Release from anywhere.** A slot taken by ``create()`` in one task is usually given back by a
  later ``status()`` or ``wait()`` in another task, so :meth:`~LocalGovernor.release` works
  from any task and a second release of the same slot does nothing.
* **Resizing.** ``total`` (the configured cap) can be changed while running. Growing it lets
  waiters in at once; shrinking it never revokes a slot, it only stops new ones until enough
  tasks have finished.
* **A 429 on a create** is one of two things, and only one of them says anything about the
  account's room:

  - a **rate limit**: too many requests in a short window. The sora2api document lists 429
    only as "Too many requests - implement backoff strategy"; the mock's injected rate
    limits say "too many requests" with a Retry-After of a fraction of a second. It says
    nothing about how many tasks fit, so it **slows that request only**: the refused create
    waits its Retry-After (without one, 5 s doubling per consecutive refusal of *that*
    create, up to 60 s) while holding its slot, then is retried. Nobody else pauses, the
    window stays as it is.
  - the **account cap**: the account already has its 20 live tasks (freesora's document:
    "up to 20 video generation tasks simultaneously"), because another process or a task
    this process forgot uses the same account. Neither document says how a server words it;
    the evidence taken is (a) a message that speaks of concurrent tasks or the task limit
    (the mock: "too many concurrent tasks: the limit is 20"; see :func:`is_account_cap`),
    (b) a Retry-After longer than :data:`RATE_LIMIT_MAX_RETRY_AFTER` (a rate window that
    long outlasts the run's tasks, so it is as good as a full account), or (c) the same
    create refused :data:`CAP_EVIDENCE_REFUSALS` times in a row, each time after waiting as
    told (a rate limit would have let it through by then).

  Only the cap makes the governor

  1. **pause**: nobody starts a create before the time the server named in Retry-After (one
     deadline shared by every acquirer; without Retry-After, 5 s doubling per consecutive 429
     up to 60 s, reset by the next successful create);
  2. **shrink** its *effective* cap to ``live + 1``, where ``live`` counts the slots whose
     create succeeded and which are still held. The server has just accepted ``live`` of our
     tasks and refused one more, so ``live`` is what evidently fits right now; the ``+ 1`` is
     a single probe. Without it, room freed by the *other* process would stay unused until one
     of our own tasks ended (minutes away); with it, once the creates already in flight are
     answered, at most one create is refused per pause, and a refused create costs nothing
     (no task, no credits). Slots of creates still in flight
     are not counted: they are evidence neither way until they are answered;
  3. **grow back additively**: each create that succeeds after the pause adds one to the
     effective cap, up to ``total``. A success also proves the server holds ``live`` tasks, so
     the cap is never below ``live + 1``. The next cap 429 shrinks it again.

  The rate-limited caller awaits :meth:`~LocalGovernor.on_rate_limited` (with the server's
  ``message``), which returns when its slot may retry: after its own wait for a rate limit,
  or when the pause is over and the slot fits under the effective cap for the account cap.
  A slot that does not fit (say twenty creates refused at once with no task of ours alive)
  gives its place back and queues again behind the others, so after each pause exactly the
  allowed number of creates go out, not every refused one.
* **Invariant.** ``held`` (slots given out) never exceeds ``effective_total`` through a new
  acquisition or a retry: :meth:`~LocalGovernor.acquire` and
  :meth:`~LocalGovernor.on_rate_limited` return only when ``held <= effective_total``. Right
  after a shrink ``held`` may exceed it; it comes down as tasks end and as slots that no
  longer fit are queued again, and until it has, nobody new gets in.

The :class:`Governor` protocol is what the client uses, so that a distributed implementation
(Redis leases shared by processes) can replace :class:`LocalGovernor`. Its ``release`` and
``on_create_succeeded`` are synchronous on purpose: they run in cleanup paths, including under
cancellation, where an await would be cancelled at once; a networked implementation hands the
write to a background task of its own and relies on lease expiry for the rest.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final, Protocol

import anyio
import attrs

from . import waits

__all__ = [
    "CAP_EVIDENCE_REFUSALS",
    "DEFAULT_TOTAL",
    "RATE_LIMIT_MAX_RETRY_AFTER",
    "Governor",
    "GovernorStatistics",
    "LocalGovernor",
    "Slot",
    "is_account_cap",
    "request_pause",
]

#: Both providers document 20 concurrent tasks per account.
DEFAULT_TOTAL: Final = 20
#: The pause after a 429 without Retry-After: doubled per consecutive 429, up to the maximum.
DEFAULT_RATE_LIMIT_PAUSE: Final = 5.0
MAX_DEFAULT_RATE_LIMIT_PAUSE: Final = 60.0
# A Retry-After of 0 would turn the single probe into a tight loop of refused POSTs.
_MIN_RATE_LIMIT_PAUSE: Final = 1.0
# The same for one rate-limited create (three such refusals make it cap evidence anyway).
_MIN_REQUEST_PAUSE: Final = 0.05
#: A Retry-After longer than this (seconds) is taken as the account cap, not a rate limit.
RATE_LIMIT_MAX_RETRY_AFTER: Final = 30.0
#: The same create refused this many times in a row (after waiting each time) is the cap.
CAP_EVIDENCE_REFUSALS: Final = 3
# How servers word "the account has as many live tasks as it may": concurrent / simultaneous
# / parallel tasks, a task (or slot) limit, "the limit is N", too many running tasks.
_CAP_WORDS: Final = re.compile(
    r"concurren|simultaneous|parallel|\b(?:task|job|slot)s?\s+(?:limit|cap|quota)\b"
    r"|\blimit is \d|too many (?:running |active |live |pending )?(?:tasks|jobs|generations)",
    re.IGNORECASE,
)


def is_account_cap(
    retry_after: float | None, message: str | None = None, refusals: int = 1
) -> bool:
    """Whether a 429 on a create shows the account cap rather than a rate limit.

    ``message`` is the server's text, ``refusals`` how many times in a row this create was
    refused (this one included). See the module docstring for why these signs.
    """
    if message is not None and _CAP_WORDS.search(message):
        return True
    if retry_after is not None and retry_after > RATE_LIMIT_MAX_RETRY_AFTER:
        return True
    return refusals >= CAP_EVIDENCE_REFUSALS


def request_pause(
    retry_after: float | None, refusals: int, default: float, maximum: float
) -> float:
    """How long one rate-limited create waits: its Retry-After, else ``default`` doubling per
    refusal in a row up to ``maximum``."""
    if retry_after is not None and math.isfinite(retry_after):
        return max(_MIN_REQUEST_PAUSE, retry_after)
    return _doubling(refusals, default, maximum)


def _doubling(consecutive: int, default: float, maximum: float) -> float:
    return float(min(maximum, default * 2.0 ** min(consecutive - 1, 16)))


class _SlotIds:
    """Slot ids of uuid4().hex's shape: a random prefix for this process, then a counter.

    As unique as a random id (the prefix is drawn again in a forked child, which would
    otherwise repeat its parent's ids), without a system call on the loop's thread a create.
    """

    prefix = os.urandom(8).hex()
    numbers = itertools.count()

    @classmethod
    def reseed(cls) -> None:
        cls.prefix = os.urandom(8).hex()
        cls.numbers = itertools.count()


os.register_at_fork(after_in_child=_SlotIds.reseed)


def _new_slot_id() -> str:
    return f"{_SlotIds.prefix}{next(_SlotIds.numbers):016x}"


@attrs.define(eq=False)
class Slot:
    """One reserved place in the account's task cap.

    Opaque to callers apart from ``id`` (unique, stable, usable as a lease key by a distributed
    governor) and ``task_id``, which the governor fills in when the create succeeds. Compared
    by identity.
    """

    id: str = attrs.field(factory=_new_slot_id)
    task_id: str | None = None
    #: 429s its create got in a row (a slot serves one create): evidence for is_account_cap.
    refusals: int = attrs.field(default=0, repr=False)


@attrs.frozen
class GovernorStatistics:
    """A snapshot of a governor.

    held:            slots given out and not yet released (including slots whose
                     ``acquire()`` is still waiting for a pause to end).
    waiting:         ``acquire()`` calls queued for a slot.
    total:           the configured cap.
    effective_total: the cap in force now (below ``total`` after a 429, see the module doc).
    live:            held slots whose create succeeded.
    paused_for:      seconds until creates may start again after a 429 (0 when not paused).
    """

    held: int
    waiting: int
    total: int
    effective_total: int
    live: int
    paused_for: float


class Governor(Protocol):
    """What the client needs from a slot pool; see the module docstring for the contract."""

    @property
    def total(self) -> int:
        """The configured cap."""
        ...

    @total.setter
    def total(self, value: int) -> None: ...

    async def acquire(self) -> Slot:
        """Wait for a slot (first in, first out). Cancelling the wait takes nothing."""
        ...

    def release(self, slot: Slot) -> None:
        """Give ``slot`` back. Idempotent, callable from any task."""
        ...

    def on_create_succeeded(self, slot: Slot, task_id: str | None = None) -> None:
        """The create made with ``slot`` succeeded: the slot now stands for a live task."""
        ...

    async def on_rate_limited(
        self, slot: Slot, retry_after: float | None, *, message: str | None = None
    ) -> None:
        """The create made with ``slot`` got a 429 (``message``: the server's text): wait as a
        rate limit or the account cap asks, and return when it may retry."""
        ...

    def statistics(self) -> GovernorStatistics:
        """A snapshot of the pool."""
        ...

    async def aclose(self) -> None:
        """Release resources; acquiring afterwards is an error."""
        ...


def _check_total(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"total must be an integer >= 1, got {value!r}")
    return value


class LocalGovernor:
    """The in-process governor, on anyio primitives. See the module docstring.

    ``clock`` and ``sleep`` are injectable so that the 429 pause can be tested without waiting;
    they must agree (``sleep(d)`` lets ``clock()`` advance by ``d``). By default they are a
    :class:`~sora_async.waits.SharedClock`, so :func:`sora_async.waits.set_testing` cuts the
    pauses short like the other back-off waits. ``default_pause`` and
    ``max_default_pause`` bound the pause without Retry-After; ``min_pause`` is the shortest
    account-wide pause (a Retry-After of 0 would turn the probe into a tight loop).
    """

    def __init__(
        self,
        total: int = DEFAULT_TOTAL,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] | None = None,
        default_pause: float = DEFAULT_RATE_LIMIT_PAUSE,
        max_default_pause: float = MAX_DEFAULT_RATE_LIMIT_PAUSE,
        min_pause: float = _MIN_RATE_LIMIT_PAUSE,
    ) -> None:
        self._total = _check_total(total)
        self._effective = self._total
        self._limiter = anyio.CapacityLimiter(self._total)
        shared = waits.SharedClock()
        self._clock = clock or shared.clock
        self._sleep = sleep or shared.sleep
        self._default_pause = default_pause
        self._max_default_pause = max_default_pause
        self._min_pause = min_pause
        # id -> slot for every slot holding a limiter token; the limiter borrows on behalf of
        # the id, so a slot can be released from any task.
        self._holding: dict[str, Slot] = {}
        self._live: set[str] = set()
        self._paused_until = -math.inf
        self._consecutive_429 = 0
        self._closed = False

    # -- configuration ---------------------------------------------------------------------

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        value = _check_total(value)
        # Not reduced by a 429: follow the configuration. Reduced: keep the evidence, but
        # never above the new configuration; successes grow it back from there.
        reduced = self._effective < self._total
        self._total = value
        self._set_effective(min(self._effective, value) if reduced else value)

    @property
    def effective_total(self) -> int:
        return self._effective

    # -- slots -----------------------------------------------------------------------------

    async def acquire(self) -> Slot:
        if self._closed:
            raise RuntimeError("this governor is closed")
        slot = Slot()
        try:
            await self._admit(slot)
        except BaseException:
            self.release(slot)
            raise
        return slot

    def acquire_nowait(self) -> Slot:
        """A slot at once, or ``anyio.WouldBlock`` (then :meth:`acquire` waits for one).

        Granted only as :meth:`acquire` would grant it without waiting: nobody queued ahead,
        no pause in force, the held slots under the cap. A caller that can be stopped while
        it waits (a run's creates) needs no cancel scope for the slots that are free.
        """
        if self._closed:
            raise RuntimeError("this governor is closed")
        if self._paused_until > -math.inf and self._paused_until > self._clock():
            raise anyio.WouldBlock
        slot = Slot()
        # WouldBlock with others queued, or at the cap (the limiter's tokens are the cap).
        self._limiter.acquire_on_behalf_of_nowait(slot.id)
        self._holding[slot.id] = slot
        return slot

    def release(self, slot: Slot) -> None:
        if self._holding.pop(slot.id, None) is None:
            return
        self._live.discard(slot.id)
        self._limiter.release_on_behalf_of(slot.id)

    def on_create_succeeded(self, slot: Slot, task_id: str | None = None) -> None:
        if task_id is not None:
            slot.task_id = task_id
        if slot.id not in self._holding:
            # Released meanwhile (the caller gave up on it): nothing to count.
            return
        self._live.add(slot.id)
        self._consecutive_429 = 0
        effective = self._effective
        # Never paused (the usual run): no clock to read.
        if self._paused_until == -math.inf or self._clock() >= self._paused_until:
            effective += 1
        # The server now holds len(live) of our tasks: that many evidently fit, plus one probe.
        effective = max(effective, len(self._live) + 1)
        self._set_effective(min(self._total, effective))

    async def on_rate_limited(
        self, slot: Slot, retry_after: float | None, *, message: str | None = None
    ) -> None:
        """Record a 429 for the create made with ``slot``; return when it may be retried.

        ``message`` is the server's text, the best evidence of what the 429 means (see the
        module doc). A rate limit: ``slot`` alone waits ``retry_after`` (or the default
        backoff of its consecutive refusals). The account cap: every acquirer pauses until
        ``retry_after`` seconds from now, the effective cap shrinks to ``live + 1``, and this
        returns once the pause is over and ``slot`` fits under the effective cap; if it does
        not fit (or had been released), it queues for a slot again. If this is cancelled the
        slot may or may not be held: release it (release is idempotent).
        """
        # A refused create never stood for a live task.
        self._live.discard(slot.id)
        slot.refusals += 1
        if not is_account_cap(retry_after, message, slot.refusals):
            pause = request_pause(
                retry_after, slot.refusals, self._default_pause, self._max_default_pause
            )
            await self._sleep(pause)
            await self._admit(slot)
            return
        self._consecutive_429 += 1
        if retry_after is not None and math.isfinite(retry_after):
            pause = max(self._min_pause, retry_after)
        else:
            pause = _doubling(self._consecutive_429, self._default_pause, self._max_default_pause)
        self._paused_until = max(self._paused_until, self._clock() + pause)
        self._set_effective(min(self._effective, len(self._live) + 1))
        await self._admit(slot)

    def statistics(self) -> GovernorStatistics:
        limiter = self._limiter.statistics()
        return GovernorStatistics(
            held=len(self._holding),
            waiting=limiter.tasks_waiting,
            total=self._total,
            effective_total=self._effective,
            live=len(self._live),
            paused_for=max(0.0, self._paused_until - self._clock()),
        )

    async def aclose(self) -> None:
        """Refuse further acquisitions. Slots already out can still be released."""
        self._closed = True

    async def __aenter__(self) -> LocalGovernor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<LocalGovernor held={s.held} live={s.live} waiting={s.waiting} "
            f"effective_total={s.effective_total} total={s.total}>"
        )

    # -- internals -------------------------------------------------------------------------

    def _set_effective(self, value: int) -> None:
        self._effective = value
        # CapacityLimiter never revokes tokens when shrunk, and hands tokens to waiters (in
        # order) when grown: exactly the semantics of the effective cap.
        self._limiter.total_tokens = value

    async def _admit(self, slot: Slot) -> None:
        """Hold a token for ``slot`` with no pause in force and the held slots under the cap."""
        while True:
            if slot.id not in self._holding:
                try:
                    # A free token is taken without the two trips through the event loop that
                    # the limiter's acquire makes (fair all the same: it refuses while others
                    # queue).
                    self._limiter.acquire_on_behalf_of_nowait(slot.id)
                except anyio.WouldBlock:
                    await self._limiter.acquire_on_behalf_of(slot.id)
                self._holding[slot.id] = slot
            remaining = self._paused_until - self._clock()
            if remaining > 0:
                await self._sleep(remaining)
                continue
            if len(self._holding) <= self._effective:
                return
            # The cap shrank while this slot waited. Waiting on while holding would deadlock
            # when the slots over the cap are all retries (none of them ever ends), so give
            # the token back and queue behind the others: the limiter readmits only under
            # the cap.
            self._holding.pop(slot.id)
            self._limiter.release_on_behalf_of(slot.id)
