"""Events a run reports to UIs and services, and the items a run accepts."""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from .download import DownloadedFile
from .models import TaskResult, TaskStatus, VideoRequest

__all__ = [
    "CreateSkipped",
    "EventHook",
    "EventKind",
    "HookFailedAfterCreate",
    "Job",
    "TaskEvent",
    "emit",
]


class HookFailedAfterCreate(Exception):
    """The CREATED hook raised (a journal that cannot write): the task exists all the same.

    Carries the task id so that it is reported, never lost; the hook's error is the cause.
    """

    def __init__(self, task_id: str, cause: BaseException) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id} was created, but recording it failed: {cause}")


class CreateSkipped(Exception):
    """A job was not created because its run stopped creating (drain after Ctrl-C)."""


class EventKind(str, enum.Enum):
    """What happened to one job of a run."""

    #: About to send the create; an awaited hook runs *before* the request leaves (journals).
    CREATING = "creating"
    #: The server answered with a task id; an awaited hook runs before anything else happens.
    CREATED = "created"
    #: The create was refused with 429 (nothing was created); it will be sent again after the
    #: pause, with a new CREATING first, unless the run stops creating meanwhile.
    RATE_LIMITED = "rate_limited"
    #: A status poll answered (progress may be None for providers that report none).
    PROGRESS = "progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: The task succeeded and its files are about to be fetched (``download_to`` runs only);
    #: ``event.result`` holds its video URLs. SUCCEEDED follows once the files are written.
    DOWNLOADING = "downloading"
    #: One result file was written whole.
    DOWNLOADED = "downloaded"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class Job:
    """One item of a run: a request, the caller's key for it, and a task id if it exists.

    ``task_id`` adopts a task created earlier (by a run that crashed, say): it takes a slot
    and is polled, and is never created again.
    """

    request: VideoRequest | None
    key: Any = None
    task_id: str | None = None


@attrs.frozen
class TaskEvent:
    kind: EventKind
    key: Any
    request: VideoRequest | None
    task_id: str | None = None
    status: TaskStatus | None = attrs.field(default=None, repr=False)
    result: TaskResult | None = attrs.field(default=None, repr=False)
    file: DownloadedFile | None = None
    #: RATE_LIMITED: the refusal.
    error: BaseException | None = attrs.field(default=None, repr=False)

    @property
    def progress(self) -> int | None:
        return self.status.progress if self.status is not None else None


#: A hook receives every event; it may be a plain function or a coroutine function (awaited
#: in line, so a slow hook slows the run: that is what makes write-ahead journaling possible).
EventHook = Callable[[TaskEvent], "Awaitable[object] | object"]


async def emit(hook: EventHook | None, event: TaskEvent) -> None:
    if hook is None:
        return
    outcome = hook(event)
    if inspect.isawaitable(outcome):
        await outcome
