"""SoraClient: the client's own lifecycle and the public coroutines.

It owns no wire format and no task: the provider builds and decodes, the transport sends, the
governor counts account slots, and :mod:`sora_async.lifecycle` owns each task from its slot to
its files. :mod:`sora_async.parts` builds those pieces from the settings and opens and closes
them; this module checks arguments before anything is sent.
"""

from __future__ import annotations

import enum
import os
import ssl as _ssl
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .config import Secret, Settings
from .download import DEFAULT_MAX_DOWNLOAD_BYTES
from .durable import check_writable_dir
from .errors import NotSupportedError
from .eventlog import log_events
from .events import (
    EventHook,
    FileHook,
    FileNamer,
    FileReuser,
    Job,
    ProgressHook,
)
from .fanout import GenerationRun
from .governor import Governor
from .models import (
    Credits,
    TaskResult,
    TaskStatus,
    VideoRequest,
    as_request,
    check_task_id,
    check_timeout,
)
from .parts import build_parts
from .polling import DurationKey
from .providers import PreparedImage
from .retry import RetryPolicy
from .tracing import SpanHook, resolve_tracer, traced_requests
from .transport import CallTimeouts

if TYPE_CHECKING:
    from .callbacks import CallbackReceiver

__all__ = ["DEFAULT_MAX_DOWNLOADS", "DEFAULT_WAIT_TIMEOUT", "SoraClient"]

#: Simultaneous downloads per client; kept below the connection pool so polls still get through.
DEFAULT_MAX_DOWNLOADS = 4
#: How long ``wait`` watches a task before giving up (the providers' samples give up at 10 min;
#: a busy account queues longer). The task is still followed after that, until it ends.
DEFAULT_WAIT_TIMEOUT = 3600.0


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


class SoraClient:
    """One provider-neutral client; use ``async with SoraClient(...) as client:``.

    Settings follow the contract's precedence (argument > environment > default). The
    aiohttp session, the callback receiver and the followers of live tasks live between
    ``__aenter__`` and ``aclose()``; a closed client cannot be reopened.
    """

    def __init__(
        self,
        provider: str | None = None,
        api_key: str | Secret | None = None,
        *,
        base_url: str | None = None,
        max_concurrent_tasks: int | None = None,
        poll_interval: float | None = None,
        redis_url: str | None = None,
        account: str | None = None,
        callback_receiver: bool | CallbackReceiver | None = None,
        max_connections: int | None = None,
        max_downloads: int = DEFAULT_MAX_DOWNLOADS,
        download_max_bytes: int | None = DEFAULT_MAX_DOWNLOAD_BYTES,
        wait_timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        expected_duration: float | None = None,
        governor: Governor | None = None,
        timeouts: CallTimeouts | None = None,
        retry: RetryPolicy | None = None,
        proxy: str | None = None,
        ssl: str | os.PathLike[str] | _ssl.SSLContext | None = None,
        env: Mapping[str, str] | None = None,
        tracing: object = False,
    ) -> None:
        # OpenTelemetry (extra "otel"): True for the global tracer provider, or a Tracer.
        self._tracer = resolve_tracer(tracing)
        self._parts = build_parts(
            provider=provider,
            api_key=api_key,
            base_url=base_url,
            max_concurrent_tasks=max_concurrent_tasks,
            poll_interval=poll_interval,
            redis_url=redis_url,
            account=account,
            callback_receiver=callback_receiver,
            max_connections=max_connections,
            max_downloads=max_downloads,
            download_max_bytes=download_max_bytes,
            wait_timeout=wait_timeout,
            expected_duration=expected_duration,
            governor=governor,
            timeouts=timeouts,
            retry=retry,
            proxy=proxy,
            ssl=ssl,
            env=env,
            spawn=self._spawn,
        )
        self._settings = self._parts.settings
        self._provider = self._parts.provider
        self._transport = self._parts.transport
        self._governor = self._parts.governor
        self._runtime = self._parts.runtime
        self._wait_timeout = wait_timeout
        self._retry = retry
        self._state = _State.UNOPENED
        self._task_group: anyio.abc.TaskGroup | None = None

    # -- the client's own lifecycle ----------------------------------------------------------

    @property
    def provider(self) -> str:
        return self._provider.name

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def governor(self) -> Governor:
        return self._governor

    @property
    def callback_receiver(self) -> CallbackReceiver | None:
        return self._parts.receiver

    def __repr__(self) -> str:
        return (
            f"SoraClient(provider={self._provider.name!r}, base_url={self._transport.base_url!r}, "
            f"max_concurrent_tasks={self._settings.max_concurrent_tasks}, "
            f"state={self._state.value})"
        )

    async def __aenter__(self) -> SoraClient:
        if self._state is not _State.UNOPENED:
            raise RuntimeError(f"this SoraClient is {self._state.value}; make a new one")
        await self._parts.open()
        try:
            # Followers of live tasks, runs of generate_many and delayed slot releases live in
            # this group, so nothing outlives the client.
            self._task_group = anyio.create_task_group()
            await self._task_group.__aenter__()
        except BaseException:
            await self._parts.close()
            raise
        self._state = _State.OPENED
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop background work, report unfinished tasks, close the session. Idempotent."""
        if self._state is not _State.OPENED:
            self._state = _State.CLOSED
            return
        self._state = _State.CLOSED
        group, self._task_group = self._task_group, None
        try:
            if group is not None:
                group.cancel_scope.cancel()
            try:
                # The followers are tasks of the runtime's own, outside the group (see
                # TaskRuntime._start_follower): stopped before it exits.
                await self._runtime.stop_followers()
            finally:
                if group is not None:
                    await group.__aexit__(None, None, None)
        finally:
            await self._parts.close()

    def _require_open(self) -> None:
        if self._state is _State.UNOPENED:
            raise RuntimeError("this SoraClient is not open: use 'async with SoraClient(...)'")
        if self._state is _State.CLOSED:
            raise RuntimeError("this SoraClient is closed")

    def _spawn(self, func: Callable[..., Any], *args: object) -> None:
        self._require_open()
        assert self._task_group is not None
        self._task_group.start_soon(func, *args)

    @property
    def unfinished_tasks(self) -> dict[str, VideoRequest | None]:
        """Tasks this client created (or adopted) and has not seen terminal: id -> request.

        After a run is stopped early, its tasks that are still alive on the server are here
        (and were logged). The client goes on following them in the background, so each
        leaves this list, and gives its slot back, when it ends; ``wait()`` on one returns
        its result.
        """
        return self._runtime.unfinished

    @property
    def learned_durations(self) -> dict[DurationKey, float]:
        """How long this client's tasks took, by kind of task, learned from what it saw."""
        return self._runtime.planner.learned

    # -- requests ----------------------------------------------------------------------------

    def estimate_credits(self, request: VideoRequest) -> int | None:
        """Credits one request costs with this provider, or None where no price is published."""
        self._provider.check_request(request)
        return self._provider.estimate_credits(request)

    async def prepare(self, request: VideoRequest) -> PreparedImage | None:
        """Check everything about ``request`` that can be checked before sending it.

        Raises ValidationError naming the field; reads a local image off the event loop.
        """
        return await self._runtime.prepare(request)

    async def create(self, request: VideoRequest | str) -> str:
        """Create one task and return its id, holding an account slot until it is terminal.

        Waits for a slot first (never more than ``max_concurrent_tasks`` live tasks) and
        retries a create only where it provably did not happen (connect error, 429). Any
        other failure after the request may have left raises
        :class:`CreateOutcomeUnknownError` and is never re-sent. The client follows the task
        from then on (its slot is freed when it ends), whether or not anyone waits for it.
        """
        self._require_open()
        return await self._runtime.create(Job(as_request(request)))

    async def status(self, task_id: str) -> TaskStatus:
        """One status poll (retried on transient failures). A terminal status frees its slot."""
        self._require_open()
        check_task_id(task_id)
        return await self._runtime.status(task_id)

    async def adopt(self, task_id: str, request: VideoRequest | None = None) -> None:
        """Count a task created elsewhere (an earlier run) against the slots until terminal."""
        self._require_open()
        check_task_id(task_id)
        await self._runtime.adopt(task_id, request)

    async def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the error names the task and its state
        on_progress: ProgressHook | None = None,
    ) -> TaskResult:
        """Wait until the task is terminal and return its result (a failure is not raised).

        ``timeout`` (default: the client's ``wait_timeout``) raises WaitTimeoutError;
        ``on_progress(status)`` (a function or a coroutine function) is called with every
        status seen. Neither a timeout nor a cancellation stops the client from following the
        task: its slot is freed when it ends.
        """
        self._require_open()
        check_task_id(task_id)
        check_timeout(timeout)
        return await self._runtime.wait(
            Job(None, task_id=task_id),
            timeout=self._wait_timeout if timeout is None else timeout,
            on_progress=on_progress,
        )

    async def generate(
        self,
        request: VideoRequest | str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - see wait()
        on_progress: ProgressHook | None = None,
        download_to: str | os.PathLike[str] | None = None,
        on_event: EventHook | None = None,
    ) -> TaskResult:
        """Create one task and wait for it; a failed task is returned, not raised.

        ``download_to`` also fetches a success's files there (``result.files``; a download
        that fails is in ``result.download_error``, and ``result.ok`` is then False).
        ``on_event`` receives the task's events as in ``generate_many`` (CREATED first thing
        after the create, so the id can be kept before anything else happens).
        """
        self._require_open()
        job = Job(as_request(request))
        check_timeout(timeout)
        dest = None if download_to is None else Path(download_to)
        if dest is not None:
            # Before the create, which is paid: a folder we cannot write fails for free.
            await anyio.to_thread.run_sync(check_writable_dir, dest, "download_to")
        return await self._runtime.generate(
            job,
            timeout=self._wait_timeout if timeout is None else timeout,
            on_progress=on_progress,
            download_to=dest,
            hook=self._observed(on_event),
        )

    def _observed(self, hook: EventHook | None) -> EventHook | None:
        """``hook`` with the event log and the spans a run asks for (neither when off)."""
        observed = log_events(self._provider.name, hook)
        if self._tracer is not None:
            observed = SpanHook(self._tracer, self._provider.name, observed)
        return observed

    def generate_many(
        self,
        requests: Iterable[VideoRequest | str | Job] | AsyncIterable[VideoRequest | str | Job],
        *,
        timeout: float | None = None,
        on_event: EventHook | None = None,
        download_to: str | os.PathLike[str] | None = None,
        filename: FileNamer | None = None,
        reuse_file: FileReuser | None = None,
    ) -> GenerationRun:
        """Governed fan-out: yields one TaskResult per request, in completion order.

        ``requests`` is consumed lazily (a generator of 100 000 prompts is never materialized)
        and live work is bounded by the account cap. Failures are yielded, not raised; a hook
        that raises is logged and does not stop its task or the run. Use ``async for result in
        client.generate_many(...)``, or ``async with`` it to be certain that an early exit has
        finished reporting (``run.unfinished``, ``run.undelivered``) before going on.
        ``download_to`` fetches each success's files there before yielding it;
        ``filename(result, index, count)`` names them (default: the task id);
        ``reuse_file(result, path)`` may return a DownloadedFile for a file already whole
        there (a resumed batch knows which), which is then not fetched again.
        """
        self._require_open()
        check_timeout(timeout)
        if download_to is not None:
            # Before the first create, which is paid (generate() asks the same). Quick enough
            # to ask in line: one folder and one empty file.
            check_writable_dir(download_to, "download_to")
        return GenerationRun(
            self._runtime,
            self._spawn,
            requests,
            timeout=self._wait_timeout if timeout is None else timeout,
            on_event=self._observed(on_event),
            download_to=Path(download_to) if download_to is not None else None,
            filename=filename,
            reuse_file=reuse_file,
        )

    # -- results -----------------------------------------------------------------------------

    async def download(
        self,
        result: TaskResult,
        dest_dir: str | os.PathLike[str],
        *,
        filename: FileNamer | None = None,
        on_file: FileHook | None = None,
    ) -> list[Path]:
        """Write a succeeded result's videos into ``dest_dir`` and return their paths.

        Each file streams to ``<name>.part``, is checked against Content-Length and renamed
        into place; a ``.part`` left by an interrupted run is resumed. Names come from the task
        id unless ``filename(result, index, count)`` says otherwise.
        """
        self._require_open()
        dest = Path(dest_dir)
        # A file or an unwritable folder is named as the argument, not left to a raw OSError.
        await anyio.to_thread.run_sync(check_writable_dir, dest, "dest_dir")
        files = await self._runtime.download(result, dest, filename, on_file)
        return [file.path for file in files]

    async def credits(self) -> Credits:
        """The account balance (freesora). sora2api has no balance endpoint: NotSupportedError."""
        self._require_open()
        if not self._provider.supports_credits:
            raise NotSupportedError(
                f"{self._provider.name} has no credits endpoint; check the balance in its console"
            )
        with traced_requests(self._tracer, self._provider.name):
            return await self._transport.call(
                self._provider.credits_call(),
                self._provider.decode_credits,
                safe=True,
                retry=self._retry,
            )
