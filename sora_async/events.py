"""Events a run reports to UIs and services, and the items a run accepts."""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import attrs

from .download import DownloadedFile
from .models import TaskResult, TaskStatus, VideoRequest

__all__ = [
    "CreateSkipped",
    "EventHook",
    "EventKind",
    "FileHook",
    "FileNamer",
    "FileReuser",
    "HookFailedAfterCreate",
    "Job",
    "ProgressHook",
    "TaskEvent",
    "call_hook",
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


# -- the hooks a caller may give -------------------------------------------------------------
# Each may be a plain function or a coroutine function: a returned awaitable is awaited in line,
# so a slow hook slows its own job (that is what makes write-ahead journaling possible). The
# task lifecycle contains a hook that raises: see sora_async.lifecycle.


class EventHook(Protocol):
    """Receives every event of a run (``generate_many(on_event=...)``)."""

    def __call__(self, event: TaskEvent, /) -> Awaitable[object] | object: ...


class ProgressHook(Protocol):
    """Receives every status a wait sees, the terminal one included (``on_progress=``)."""

    def __call__(self, status: TaskStatus, /) -> Awaitable[object] | object: ...


class FileHook(Protocol):
    """Receives each result file once it is written whole (``download(on_file=...)``)."""

    def __call__(self, file: DownloadedFile, /) -> Awaitable[object] | object: ...


class FileNamer(Protocol):
    """Names file ``index`` of ``count`` of a result (``filename=``); a plain file name."""

    def __call__(self, result: TaskResult, index: int, count: int, /) -> str: ...


class FileReuser(Protocol):
    """Returns the record of a file already whole at ``path`` (not fetched again), or None."""

    def __call__(self, result: TaskResult, path: Path, /) -> DownloadedFile | None: ...


async def call_hook(hook: Callable[..., object], *args: Any) -> None:
    """Call a user hook, awaiting what a coroutine function returns."""
    outcome = hook(*args)
    if inspect.isawaitable(outcome):
        await outcome


async def emit(hook: EventHook | None, event: TaskEvent) -> None:
    if hook is not None:
        await call_hook(hook, event)
