"""MockState: accounts, tasks, credits, faults and counters of one mock application.

Tasks are not driven by timers: each has a timeline fixed at create, and every read
settles whatever became terminal by the clock's "now" (refunds, callbacks) first, so a test
with a :class:`~sora_async.mock.clock.ManualClock` sees exactly the state it moved time to.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import logging
import math
import random
import secrets
import time
import weakref
from collections import Counter, deque
from typing import Any

import attrs
from aiohttp import web

from ..config import Secret
from ..models import TaskState
from .config import MockConfig
from .counters import MockCounters
from .faults import Fault, FaultQueue, FaultSpec
from .files import make_file_bytes
from .tasks import Outcome, Task, TaskRecord
from .trips import Trips
from .wire import ApiFailure

__all__ = ["STATE_KEY", "Account", "MockState"]

log = logging.getLogger("sora_async.mock")

_GENERATION_FAILED = "Video generation failed (simulated by the mock)"
_CREATE_FAILED = "Task creation failed (simulated by the mock)"


def fingerprint(key: str) -> str:
    """A loggable name for an account: a hash of its key, never the key."""
    return Secret(key).fingerprint()


@attrs.define
class Account:
    credits: int
    recharged: bool = False
    #: Ids of its tasks that were not terminal at the last settle.
    live: set[str] = attrs.field(factory=set)


class MockState:
    """Everything the mock remembers; the app's handlers and MockServer's controls share it."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.counters = MockCounters()
        self.faults = FaultQueue()
        #: Test callbacks at moments of the traffic (see :mod:`.trips`).
        self.trips = Trips()
        self._rng = random.Random(config.seed)
        self._tasks: dict[str, Task] = {}
        self._accounts: dict[str, Account] = {}
        self._due: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        # Task times come from the clock; wall-clock strings (createTime, completeTime) are the
        # clock's readings mapped onto the real date at startup.
        self._clock_origin = config.clock()
        self._wall_origin = time.time() if config.wall_start is None else config.wall_start
        #: Terminal tasks whose callback is still to be sent.
        self.callback_queue: deque[Task] = deque()
        #: Set when the server shuts down: slow answers stop waiting.
        self.closing = asyncio.Event()
        #: Set when there is callback work for the dispatcher.
        self.wake = asyncio.Event()
        #: task id -> the freesora status word answered in place of the real one.
        self.status_overrides: dict[str, str] = {}
        # Weak, so a closed connection is forgotten and the set stays as small as the pool.
        self._connections: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()

    def note_request(self, request: web.Request, endpoint: str) -> None:
        """Count one request to ``endpoint``, and its connection if it is a new one."""
        self.counters.requests[endpoint] += 1
        transport = request.transport
        if transport is not None and transport not in self._connections:
            self._connections.add(transport)
            self.counters.connections += 1
            self.counters.connections_by_endpoint[endpoint] += 1

    # -- time ---------------------------------------------------------------------------

    def now(self) -> float:
        return self.config.clock()

    def wall_time(self, reading: float) -> str:
        """A clock reading as the providers print times: "YYYY-MM-DD HH:MM:SS" (UTC)."""
        stamp = self._wall_origin + (reading - self._clock_origin)
        return dt.datetime.fromtimestamp(stamp, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` of real time; False when the server began closing meanwhile."""
        if seconds <= 0:
            return not self.closing.is_set()
        try:
            await asyncio.wait_for(self.closing.wait(), seconds)
        except asyncio.TimeoutError:
            return True
        return False

    # -- accounts -----------------------------------------------------------------------

    def account(self, key: str) -> Account:
        found = self._accounts.get(key)
        if found is None:
            found = self._accounts[key] = Account(credits=self.config.initial_credits)
        return found

    def key_allowed(self, key: str) -> bool:
        allowed = self.config.api_keys
        return allowed is None or key in allowed

    def set_credits(self, key: str, credits: int) -> None:
        if isinstance(credits, bool) or not isinstance(credits, int) or credits < 0:
            raise ValueError(f"credits must be an int >= 0: {credits!r}")
        account = self.account(key)
        account.credits = credits
        account.recharged = True

    def credits(self, key: str) -> int:
        self.settle()
        return self.account(key).credits

    # -- tasks --------------------------------------------------------------------------

    def settle(self, now: float | None = None) -> None:
        """Apply the consequences of every task that became terminal by ``now``."""
        now = self.now() if now is None else now
        while self._due and self._due[0][0] <= now:
            _, _, task_id = heapq.heappop(self._due)
            self._finish(self._tasks[task_id])

    def _finish(self, task: Task) -> None:
        task.settled = True
        account = self.account(task.account)
        account.live.discard(task.task_id)
        if task.outcome is not Outcome.SUCCEED and task.cost > 0:
            account.credits += task.cost
            task.refunded = True
            task.refund_trans_no = f"rf_{secrets.token_hex(8)}"
            self.counters.refunds += 1
        if task.callback_url is not None:
            if self.config.drop_callbacks:
                self.counters.callbacks_dropped += 1
            else:
                self.callback_queue.append(task)
                self.wake.set()
        log.debug("task %s ended: %s", task.task_id, task.outcome)

    def live_count(self, key: str) -> int:
        self.settle()
        return len(self.account(key).live)

    def live_tasks(self, key: str | None = None) -> int:
        """Tasks not terminal at the clock's now: of one account, or of all."""
        if key is not None:
            return self.live_count(key)
        self.settle()
        return sum(len(account.live) for account in self._accounts.values())

    def create_task(
        self,
        *,
        provider: str,
        key: str,
        prompt: str,
        params: dict[str, Any],
        cost: int,
        origin: str,
        metadata: dict[str, Any] | None = None,
        callback_url: str | None = None,
    ) -> Task:
        """Admit (cap, credits), charge and store a new task, or raise the refusal."""
        now = self.now()
        self.settle(now)
        account = self.account(key)
        cap = self.config.cap
        if cap is not None and len(account.live) >= cap:
            self.counters.cap_rejections += 1
            raise ApiFailure(
                429,
                f"too many concurrent tasks: the limit is {cap}",
                retry_after=self.config.cap_retry_after,
            )
        if account.credits < cost:
            raise ApiFailure(
                402, f"insufficient credits: this task costs {cost}, {account.credits} left"
            )
        # Always draw both numbers, so one create's settings never shift the next one's draws.
        stretch = self._rng.uniform(-self.config.jitter, self.config.jitter)
        unlucky = self._rng.random() < self.config.failure_rate
        if self.config.create_fail_marker in prompt:
            outcome, error = Outcome.FAIL_CREATE, _CREATE_FAILED
        elif self.config.fail_marker in prompt or unlucky:
            outcome, error = Outcome.FAIL_GENERATION, _GENERATION_FAILED
        else:
            outcome, error = Outcome.SUCCEED, None
        prefix = "sora2_task_" if provider == "sora2api" else "task_"
        task = Task(
            task_id=prefix + secrets.token_hex(8),
            provider=provider,
            account=key,
            prompt=prompt,
            params=params,
            metadata=metadata or {},
            created_at=now,
            duration=self._nominal_seconds(prompt) * (1.0 + stretch),
            pending_fraction=self.config.pending_fraction,
            outcome=outcome,
            error_message=error,
            cost=cost,
            callback_url=callback_url,
            origin=origin,
            result_pid=f"s_{secrets.token_hex(6)}",
        )
        account.credits -= cost
        self._tasks[task.task_id] = task
        account.live.add(task.task_id)
        heapq.heappush(self._due, (task.terminal_at, next(self._seq), task.task_id))
        self.counters.creates += 1
        self.counters.creates_by_prompt[prompt] += 1
        # Counted before settling: a task that ends at once was still alive when created.
        self.counters.max_live_tasks = max(self.counters.max_live_tasks, len(account.live))
        self.settle(now)
        log.debug(
            "created %s (%s) for account %s, cost %d",
            task.task_id,
            provider,
            fingerprint(key),
            cost,
        )
        return task

    def _nominal_seconds(self, prompt: str) -> float:
        """The prompt's ``[seconds:X]`` if it has a valid one, else ``task_seconds``."""
        marker = self.config.duration_marker
        start = prompt.find(marker)
        if start >= 0:
            text, closed, _ = prompt[start + len(marker) :].partition("]")
            try:
                seconds = float(text)
            except ValueError:
                seconds = math.nan
            if closed and math.isfinite(seconds) and seconds >= 0:
                return seconds
        return self.config.task_seconds

    def owned_task(self, provider: str, key: str, task_id: str, now: float) -> Task:
        """The caller's task, or 404: another account's task is as unknown as a made-up id.

        Settled at ``now``, the reading the answer is then made of: a second reading could
        fall after the task's end, and the answer say "failed" with its refund not yet made.
        """
        self.settle(now)
        task = self._tasks.get(task_id)
        if task is None or task.provider != provider or task.account != key:
            raise ApiFailure(404, f"task not found: {task_id}")
        return task

    def note_poll(self, task: Task) -> None:
        self.counters.polls += 1
        self.counters.polls_by_task[task.task_id] += 1

    def lookup(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def task(self, task_id: str) -> TaskRecord:
        """A snapshot of one task; KeyError if the mock never created it."""
        now = self.now()
        self.settle(now)
        found = self._tasks.get(task_id)
        if found is None:
            raise KeyError(task_id)
        return found.record(now, self.counters.polls_by_task[task_id])

    def tasks(self, key: str | None = None) -> list[TaskRecord]:
        """Snapshots of every task (of one account), in creation order."""
        now = self.now()
        self.settle(now)
        polls: Counter[str] = self.counters.polls_by_task
        return [
            task.record(now, polls[task.task_id])
            for task in self._tasks.values()
            if key is None or task.account == key
        ]

    # -- files --------------------------------------------------------------------------

    def file_bytes(self, task_id: str) -> bytes:
        """Exactly the bytes served for this task's result file."""
        return make_file_bytes(self.config.seed, task_id, self.config.file_size)

    def downloadable(self, task_id: str) -> bytes:
        """The file of a succeeded task still within retention, else a 404."""
        now = self.now()
        self.settle(now)
        task = self._tasks.get(task_id)
        if task is None or task.state(now) is not TaskState.SUCCEEDED:
            raise ApiFailure(404, "no such file")
        retention = self.config.retention_seconds
        if retention is not None and now >= task.terminal_at + retention:
            raise ApiFailure(404, "the file has expired")
        return self.file_bytes(task_id)

    # -- faults -------------------------------------------------------------------------

    def inject(
        self,
        endpoint: str,
        fault: Fault | str,
        *,
        times: int = 1,
        retry_after: float | None = None,
        delay: float | None = None,
        code: int | None = None,
        status: int | None = None,
        provider: str | None = None,
    ) -> None:
        self.faults.add(
            FaultSpec(
                fault=Fault(fault),
                endpoint=endpoint,
                provider=provider,
                retry_after=retry_after,
                delay=delay,
                code=code,
                status=status,
            ),
            times,
        )

    def note_fault(self, spec: FaultSpec) -> None:
        self.counters.faults_fired += 1
        self.counters.faults_by_kind[spec.fault.value] += 1
        log.debug("fault %s fired on %s", spec.fault.value, spec.endpoint)


#: Where create_app keeps the state on its application.
STATE_KEY = web.AppKey("sora_async_mock_state", MockState)
