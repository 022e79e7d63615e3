"""One simulated task: a timeline fixed at create, read lazily against the clock."""

from __future__ import annotations

import enum
from typing import Any

import attrs

from ..models import TaskState

__all__ = ["Outcome", "Task", "TaskRecord"]


class Outcome(str, enum.Enum):
    """How a task ends, decided when it is created."""

    SUCCEED = "succeed"
    #: Fails while generating (freesora "failed", sora2api successFlag 3).
    FAIL_GENERATION = "fail_generation"
    #: Fails before generating starts (sora2api successFlag 2).
    FAIL_CREATE = "fail_create"

    def __str__(self) -> str:
        return self.value


@attrs.define(kw_only=True, eq=False)
class Task:
    """A task's fixed timeline plus what happened when it ended (refund, callback)."""

    task_id: str
    provider: str
    #: The API key that owns it: never logged, never shown in a repr.
    account: str = attrs.field(repr=False)
    prompt: str
    #: The accepted request fields, as sent (sora2api echoes them as paramJson).
    params: dict[str, Any]
    #: freesora's metadata echo (remixTargetId, characters).
    metadata: dict[str, Any]
    created_at: float
    duration: float
    pending_fraction: float
    outcome: Outcome
    error_message: str | None
    cost: int
    callback_url: str | None
    #: scheme://host of the create request, for URLs sent with callbacks.
    origin: str
    result_pid: str
    settled: bool = False
    refunded: bool = False
    refund_trans_no: str | None = None

    @property
    def pending_until(self) -> float:
        return self.created_at + self.duration * self.pending_fraction

    @property
    def terminal_at(self) -> float:
        if self.outcome is Outcome.FAIL_CREATE:
            return self.pending_until
        return self.created_at + self.duration

    def state(self, now: float) -> TaskState:
        if now >= self.terminal_at:
            return TaskState.SUCCEEDED if self.outcome is Outcome.SUCCEED else TaskState.FAILED
        if now < self.pending_until:
            return TaskState.PENDING
        return TaskState.RUNNING

    def progress(self, now: float) -> int:
        """0 while pending, rising linearly while running, 100 on success.

        A failed task keeps what it reached: 0 when it never started, 99 when generation
        failed at the end.
        """
        state = self.state(now)
        if state is TaskState.SUCCEEDED:
            return 100
        if state is TaskState.PENDING:
            return 0
        if state is TaskState.FAILED:
            return 0 if self.outcome is Outcome.FAIL_CREATE else 99
        fraction = (now - self.created_at) / self.duration if self.duration > 0 else 1.0
        # The epsilon keeps float noise (9.9 / 10 -> 0.98999...) from losing a percent.
        return max(1, min(99, int(100 * fraction + 1e-9)))

    def record(self, now: float, polls: int) -> TaskRecord:
        return TaskRecord(
            task_id=self.task_id,
            provider=self.provider,
            prompt=self.prompt,
            params=dict(self.params),
            state=self.state(now),
            progress=self.progress(now),
            outcome=self.outcome,
            created_at=self.created_at,
            duration=self.duration,
            terminal_at=self.terminal_at,
            cost=self.cost,
            refunded=self.refunded,
            refund_trans_no=self.refund_trans_no,
            callback_url=self.callback_url,
            error_message=self.error_message,
            polls=polls,
        )


@attrs.frozen(kw_only=True)
class TaskRecord:
    """What the mock knows about one task, as of the moment it was asked (no API key)."""

    task_id: str
    provider: str
    prompt: str
    params: dict[str, Any]
    state: TaskState
    progress: int
    outcome: Outcome
    #: Clock readings: when it was created, how long it runs, when it ends.
    created_at: float
    duration: float
    terminal_at: float
    #: Credits charged at create.
    cost: int
    refunded: bool
    refund_trans_no: str | None
    callback_url: str | None
    error_message: str | None
    #: Status answers served for it so far.
    polls: int
