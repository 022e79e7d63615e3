"""The shared governor: one account's task slots as Redis leases, for many processes.

Several workers (processes, machines) that use the same Redis and the same account name share
the account's cap: a slot is a *lease*, a member of one sorted set per account whose score is
its expiry time in Redis's own clock (``TIME``). Everything that reads or changes the pool runs
as one Lua script, so the check and the change are atomic and no worker's clock is ever used.

Keys (``{account}`` is a hash tag, so every key of one account lives on one cluster slot):

* ``sora_async:{account}:leases`` -- lease id -> expiry (ms). ``ZCARD`` is the account's held
  slots once expired members are purged, which every script does first.
* ``sora_async:{account}:live``   -- the leases whose create succeeded (the 429 adaptation
  counts them), same expiry.
* ``sora_async:{account}:queue``  -- waiters -> arrival number; ``...:qexp`` -> their expiry.
  A waiter is admitted when its rank in the queue is below the free room, so waiters are
  served in arrival order across processes. Each process queues one waiter at a time (its
  own waiters queue locally behind an ``anyio.Lock``), which keeps the wake-up traffic to one
  script call per process per freed slot.
* ``sora_async:{account}:cfg``    -- the cap (``total``), the cap in force (``effective``, lower
  after a 429), the pause deadline and the 429 streak: the adaptation is the account's, not a
  worker's.
* channel ``sora_async:{account}:wake`` -- when room appears, the script that made it publishes
  the queued leases that now fit, and only those waiters look again; every waiter also looks
  again every ``wait_fallback`` seconds, so a lost message or a lease that simply expired costs
  a short delay, never a stuck waiter.

Leases and crashes: a holder renews all its leases every ``heartbeat`` seconds; a lease left by a
crashed worker disappears ``lease_ttl`` seconds after its last renewal (45 s by default: four
heartbeats may be missed). A renewal re-adds a lease that is gone (a worker that outlived its
lease in a long pause, or a Redis that restarted without persistence): the task is alive on the
server, so it counts. Until then the account may be over-filled; the server's 429 is handled as
by the in-process governor and costs nothing.

Redis lost during a run: ``acquire`` keeps waiting (nothing new is created), releases and
successes are kept and sent when Redis is back, polls and downloads go on (they never touch
Redis); a warning says so once per outage. A Redis that comes back empty is noticed by the
missing ``cfg`` key: admissions then wait two heartbeats so every live holder re-registers its
leases before anyone new gets in.

``release`` and ``on_create_succeeded`` are synchronous (see :mod:`sora_async.governor`): they
change local state and wake a background writer, which sends them in one script call together
with the renewals.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.abc

from .errors import ConfigurationError
from .governor import (
    DEFAULT_RATE_LIMIT_PAUSE,
    DEFAULT_TOTAL,
    MAX_DEFAULT_RATE_LIMIT_PAUSE,
    GovernorStatistics,
    Slot,
    is_account_cap,
    request_pause,
)
from .redis_leases import ACQUIRE, KEEP_MS, KEY_PREFIX, RATE_LIMITED, SYNC, account_keys

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_LEASE_TTL",
    "KEY_PREFIX",
    "RedisGovernor",
    "account_keys",
]

logger = logging.getLogger("sora_async")

#: A crashed worker's slots come back this long after its last renewal.
DEFAULT_LEASE_TTL: Final = 45.0
#: Renewal period; four renewals can be missed before a live lease expires.
DEFAULT_HEARTBEAT: Final = 10.0
#: A waiter looks again this often even without a wake-up message.
DEFAULT_WAIT_FALLBACK: Final = 2.0
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
_MIN_RATE_LIMIT_PAUSE: Final = 1.0
# How long aclose() may spend handing back released slots before leaving them to the TTL.
_CLOSE_FLUSH_TIMEOUT: Final = 2.0
_SCHEMES: Final = ("redis", "rediss", "unix")


def redact_url(url: str) -> str:
    """``url`` without its user and password: safe for messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _check_total(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"total must be an integer >= 1, got {value!r}")
    return value


class RedisGovernor:
    """The account's slots as Redis leases shared by every process using ``account``.

    ``async with RedisGovernor(url, account, total) as governor:`` (or :meth:`open` /
    :meth:`aclose`); a :class:`~sora_async.SoraClient` given ``redis_url=`` builds, opens and
    closes one itself. ``total`` is the account's cap: the last process to open or resize
    sets it for all. See the module docstring for the keys and the failure modes.
    """

    #: A client closing with tasks still alive leaves their leases to expire after the TTL
    #: instead of releasing them: other workers must not fill slots those tasks still use.
    leases_outlive_client: bool = True

    def __init__(
        self,
        url: str,
        account: str,
        total: int = DEFAULT_TOTAL,
        *,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        heartbeat: float = DEFAULT_HEARTBEAT,
        wait_fallback: float | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        default_pause: float = DEFAULT_RATE_LIMIT_PAUSE,
        max_default_pause: float = MAX_DEFAULT_RATE_LIMIT_PAUSE,
        min_pause: float = _MIN_RATE_LIMIT_PAUSE,
        prefix: str = KEY_PREFIX,
    ) -> None:
        if not account or not isinstance(account, str):
            raise ConfigurationError(f"account must be a non-empty string, got {account!r}")
        if not isinstance(url, str) or urlsplit(url).scheme not in _SCHEMES:
            shown = redact_url(url) if isinstance(url, str) else repr(url)
            allowed = ", ".join(f"{scheme}://" for scheme in _SCHEMES)
            raise ConfigurationError(f"redis_url must start with {allowed}, got {shown!r}")
        self._url = url
        self._safe_url = redact_url(url)
        self._account = account
        self._total = _check_total(total)
        self._ttl = _check_positive("lease_ttl", lease_ttl)
        self._heartbeat = _check_positive("heartbeat", heartbeat)
        if self._heartbeat * 2 > self._ttl:
            raise ConfigurationError(
                f"heartbeat ({heartbeat}s) must be at most half of lease_ttl ({lease_ttl}s): "
                "a lease must survive a missed renewal"
            )
        self._fallback = (
            min(DEFAULT_WAIT_FALLBACK, self._heartbeat)
            if wait_fallback is None
            else _check_positive("wait_fallback", wait_fallback)
        )
        self._connect_timeout = _check_positive("connect_timeout", connect_timeout)
        self._default_pause = default_pause
        self._max_default_pause = max_default_pause
        self._min_pause = min_pause
        self._keys, self._channel = account_keys(account, prefix)
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lease_numbers = 0

        self._redis: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._group: anyio.abc.TaskGroup | None = None
        self._opened = False
        self._closed = False

        # slot id -> its lease id (a slot refused with 429 queues again under a new lease).
        self._leases: dict[str, str] = {}
        self._live: set[str] = set()
        self._pending_release: set[str] = set()
        self._pending_successes = 0
        self._pending_total: int | None = None
        self._dirty = anyio.Event()
        self._wake = anyio.Event()
        self._queue_lock = anyio.Lock()
        self._waiting = 0
        #: The lease this process has in the account's queue (one at a time).
        self._queued: str | None = None
        self._down = False

        # The account as last seen in Redis.
        self._account_held = 0
        self._effective = self._total
        self._paused_until = 0.0
        #: Round trips to Redis (script calls and subscriptions), for measurements.
        self.redis_calls = 0

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def account(self) -> str:
        return self._account

    @property
    def url(self) -> str:
        """The Redis URL without credentials."""
        return self._safe_url

    async def open(self) -> None:
        """Connect, check that Redis answers and register this process's cap.

        Raises ConfigurationError (nothing is created) when the extra is missing or Redis
        cannot be reached.
        """
        if self._opened:
            return
        if self._closed:
            raise RuntimeError("this governor is closed")
        try:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError:
            raise ConfigurationError(
                "redis_url needs the Redis client: pip install 'sora_async[redis]'"
            ) from None
        try:
            client = Redis.from_url(
                self._url,
                socket_connect_timeout=self._connect_timeout,
                socket_timeout=max(self._connect_timeout, self._heartbeat),
                # One immediate reconnect for a pooled connection that a restart cut; longer
                # outages are ours to handle (acquire waits, the writer retries).
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:
            raise ConfigurationError(f"redis_url is not a Redis URL ({exc})") from None
        self._redis = client
        self._scripts = {
            "acquire": client.register_script(ACQUIRE),
            "sync": client.register_script(SYNC),
            "rate_limited": client.register_script(RATE_LIMITED),
        }
        try:
            with anyio.fail_after(self._connect_timeout * 2):
                await self._sync(new_total=self._total, grace=0)
        except BaseException as exc:
            self._redis = None
            with anyio.CancelScope(shield=True):
                await client.aclose()
            if isinstance(exc, Exception):
                raise ConfigurationError(
                    f"redis_url: cannot use Redis at {self._safe_url} "
                    f"({type(exc).__name__}: {self._scrub(exc)}); nothing was created"
                ) from None
            raise
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._writer)
        self._group.start_soon(self._listener)
        self._opened = True

    async def aclose(self) -> None:
        """Send the releases still pending (briefly), stop background work, disconnect.

        Leases still held are not released: they expire after the TTL (their tasks may be
        alive on the server). Idempotent; acquiring afterwards is an error.
        """
        if self._closed:
            return
        self._closed = True
        group, self._group = self._group, None
        try:
            if group is not None:
                group.cancel_scope.cancel()
                await group.__aexit__(None, None, None)
        finally:
            await self._disconnect()

    async def _disconnect(self) -> None:
        with anyio.CancelScope(shield=True):
            if self._redis is None:
                return
            if self._pending_release or self._pending_successes:
                # Others get these slots now rather than after the TTL.
                with anyio.move_on_after(_CLOSE_FLUSH_TIMEOUT):
                    try:
                        await self._sync()
                    except Exception as exc:
                        logger.debug("Redis governor: final release failed: %r", exc)
            redis, self._redis = self._redis, None
            await redis.aclose()

    async def __aenter__(self) -> RedisGovernor:
        await self.open()
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
            f"<RedisGovernor {self._safe_url} account={self._account!r} held={s.held} "
            f"live={s.live} waiting={s.waiting} effective_total={s.effective_total} "
            f"total={s.total}>"
        )

    # -- the Governor protocol -----------------------------------------------------------------

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        self._total = _check_total(value)
        self._pending_total = self._total
        self._dirty.set()

    @property
    def effective_total(self) -> int:
        """The account's cap in force, as last seen in Redis."""
        return self._effective

    async def acquire(self) -> Slot:
        if self._closed or not self._opened:
            raise RuntimeError(f"this governor is {'closed' if self._closed else 'not open'}")
        slot = Slot()
        await self._admit(slot)
        return slot

    def release(self, slot: Slot) -> None:
        lease = self._leases.pop(slot.id, None)
        if lease is None:
            return
        self._live.discard(lease)
        self._pending_release.add(lease)
        self._dirty.set()

    def on_create_succeeded(self, slot: Slot, task_id: str | None = None) -> None:
        if task_id is not None:
            slot.task_id = task_id
        lease = self._leases.get(slot.id)
        if lease is None:
            return
        self._live.add(lease)
        self._pending_successes += 1
        if self._effective < self._total:
            # Only a cap reduced by a 429 grows with successes; otherwise the count rides
            # along with the next release or renewal (one round trip less per task).
            self._dirty.set()

    async def on_rate_limited(
        self, slot: Slot, retry_after: float | None, *, message: str | None = None
    ) -> None:
        """Record the 429 on the account (pause, shrink), then queue ``slot`` again; a rate
        limit (see :func:`~sora_async.governor.is_account_cap`) only delays this create."""
        slot.refusals += 1
        if not is_account_cap(retry_after, message, slot.refusals):
            pause = request_pause(
                retry_after, slot.refusals, self._default_pause, self._max_default_pause
            )
            await anyio.sleep(pause)
            return
        lease = self._leases.pop(slot.id, None)
        if lease is not None:
            self._live.discard(lease)
            retry_ms = -1 if retry_after is None else max(0, int(retry_after * 1000))
            try:
                pause_ms = await self._call(
                    "rate_limited",
                    lease,
                    self._total,
                    self._grace_ms,
                    retry_ms,
                    int(self._default_pause * 1000),
                    int(self._max_default_pause * 1000),
                    int(self._min_pause * 1000),
                    KEEP_MS,
                )
                self._paused_until = time.monotonic() + int(pause_ms) / 1000
            except Exception as exc:
                if not self._is_outage(exc):
                    raise
                self._report_down(exc)
                # The lease could not be handed back: let the writer do it.
                self._pending_release.add(lease)
                self._dirty.set()
        await self._admit(slot)

    def statistics(self) -> GovernorStatistics:
        """This process's slots; ``effective_total`` and the pause are the account's."""
        return GovernorStatistics(
            held=len(self._leases),
            waiting=self._waiting,
            total=self._total,
            effective_total=self._effective,
            live=len(self._live),
            paused_for=max(0.0, self._paused_until - time.monotonic()),
        )

    @property
    def account_held(self) -> int:
        """Slots held on the whole account, as last seen in Redis."""
        return self._account_held

    # -- internals -----------------------------------------------------------------------------

    @property
    def _grace_ms(self) -> int:
        return int(self._heartbeat * 2000)

    def _new_lease(self) -> str:
        self._lease_numbers += 1
        return f"{self._owner}:{self._lease_numbers}"

    def _scrub(self, exc: BaseException) -> str:
        text = str(exc)
        try:
            password = urlsplit(self._url).password
        except ValueError:
            password = None
        return text.replace(password, "***") if password else text

    @staticmethod
    def _is_outage(exc: BaseException) -> bool:
        from redis.exceptions import ConnectionError, ReadOnlyError, TimeoutError

        return isinstance(exc, (ConnectionError, TimeoutError, ReadOnlyError, OSError))

    def _report_down(self, exc: BaseException) -> None:
        if self._down:
            return
        self._down = True
        logger.warning(
            "Redis at %s is unreachable (%s): no new task is created until it is back; "
            "tasks already alive are still polled and downloaded",
            self._safe_url,
            type(exc).__name__,
        )

    def _report_up(self) -> None:
        if self._down:
            self._down = False
            logger.warning("Redis at %s is back: creating again", self._safe_url)

    def _is_called(self, names: bytes) -> bool:
        return self._queued is not None and self._queued.encode() in names.split()

    def _notify(self) -> None:
        self._wake.set()
        self._wake = anyio.Event()

    async def _call(self, name: str, *args: Any) -> Any:
        if self._redis is None:
            raise RuntimeError("this governor is not open")
        self.redis_calls += 1
        return await self._scripts[name](keys=self._keys, args=args)

    async def _admit(self, slot: Slot) -> None:
        """Queue ``slot`` under a new lease until the account has room for it."""
        lease = self._new_lease()
        self._waiting += 1
        try:
            async with self._queue_lock:
                self._queued = lease
                while True:
                    wake = self._wake
                    try:
                        answer = int(
                            await self._call(
                                "acquire",
                                lease,
                                int(self._ttl * 1000),
                                self._total,
                                self._grace_ms,
                                int(self._fallback * 3000),
                                self._channel,
                                KEEP_MS,
                            )
                        )
                    except Exception as exc:
                        if not self._is_outage(exc):
                            raise
                        self._report_down(exc)
                        with anyio.move_on_after(self._fallback):
                            await wake.wait()
                        continue
                    self._report_up()
                    if answer == 1:
                        self._leases[slot.id] = lease
                        return
                    if answer < 0:
                        self._paused_until = time.monotonic() - answer / 1000
                        await anyio.sleep(-answer / 1000)
                        continue
                    with anyio.move_on_after(self._fallback):
                        await wake.wait()
        except BaseException:
            # The script may have granted the lease before the answer was lost.
            self._pending_release.add(lease)
            self._dirty.set()
            raise
        finally:
            self._waiting -= 1
            if self._queued == lease:
                self._queued = None

    async def _sync(self, *, new_total: int | None = None, grace: int | None = None) -> None:
        """One round trip: hand back released leases, count successes, renew the rest."""
        released = sorted(self._pending_release)
        successes = self._pending_successes
        total = new_total if new_total is not None else self._pending_total
        held = list(self._leases.values())
        live = sorted(self._live)
        args: list[Any] = [
            int(self._ttl * 1000),
            self._total,
            self._grace_ms if grace is None else grace,
            self._channel,
            KEEP_MS,
            total or 0,
            successes,
            *_counted(released),
            *_counted(held),
            *_counted(live),
        ]
        reply = await self._call("sync", *args)
        self._pending_release.difference_update(released)
        self._pending_successes -= successes
        if self._pending_total == total:
            self._pending_total = None
        self._account_held, self._effective = int(reply[0]), int(reply[1])
        self._paused_until = time.monotonic() + int(reply[3]) / 1000
        if int(reply[4]) and self._opened:
            logger.warning(
                "Redis had lost %d lease(s) of tasks still alive here (a restart, or a pause "
                "longer than the lease TTL); they count again",
                int(reply[4]),
            )

    async def _writer(self) -> None:
        """Send releases and successes as they come, renew every heartbeat."""
        while True:
            with anyio.move_on_after(self._heartbeat):
                await self._dirty.wait()
            self._dirty = anyio.Event()
            try:
                await self._sync()
            except Exception as exc:
                if not self._is_outage(exc):
                    logger.error("Redis governor: renewing leases failed: %s", self._scrub(exc))
                else:
                    self._report_down(exc)
                # Try again soon: pending work is kept, and leases must be renewed in time.
                await anyio.sleep(min(self._fallback, self._heartbeat))
                self._dirty.set()
            else:
                self._report_up()

    async def _listener(self) -> None:
        """Turn wake-up messages into local wake-ups; resubscribe after a lost connection."""
        assert self._redis is not None
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                self.redis_calls += 1
                await pubsub.subscribe(self._channel)
                # Anything published while unsubscribed is lost: look again now.
                self._notify()
                while True:
                    message = await pubsub.get_message(timeout=self._heartbeat)
                    if message is not None and self._is_called(bytes(message["data"])):
                        self._notify()
            except Exception as exc:
                if not self._is_outage(exc):
                    logger.error("Redis governor: wake-up channel failed: %s", self._scrub(exc))
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await anyio.sleep(self._fallback)


def _counted(items: Sequence[str]) -> list[Any]:
    return [len(items), *items]
