"""SoraClient: the lifecycle of one client and its public coroutines.

It glues the pieces together and owns no wire format: the provider builds and decodes, the
transport sends, the governor counts account slots, the poller decides when to ask again.
"""

from __future__ import annotations

import enum
import inspect
import logging
import math
import os
import time
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import attrs

from .callbacks import CallbackReceiver
from .config import (
    ENV_CALLBACK_LISTEN,
    ENV_CALLBACK_PUBLIC_URL,
    Secret,
    Settings,
    resolve_settings,
)
from .download import DownloadedFile, download_file, video_filename
from .errors import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    CreateOutcomeUnknownError,
    DownloadError,
    NotFoundError,
    NotSupportedError,
    ProtocolError,
    RateLimitError,
    SoraError,
    TransportError,
    ValidationError,
    create_was_not_made,
)
from .events import CreateSkipped, EventHook, EventKind, HookFailedAfterCreate, Job, TaskEvent, emit
from .governor import Governor, LocalGovernor, Slot
from .images import prepare_image
from .models import Credits, Model, TaskResult, TaskState, TaskStatus, VideoRequest
from .polling import PollPlanner, PollSchedule, poll_until_terminal
from .providers import PreparedImage, Provider, get_provider
from .providers._wire import check_task_id
from .retry import RetryPolicy
from .transport import CallTimeouts, Transport

if TYPE_CHECKING:
    from .fanout import GenerationRun
    from .governor_redis import RedisGovernor

__all__ = ["DEFAULT_MAX_DOWNLOADS", "DEFAULT_WAIT_TIMEOUT", "SoraClient"]

logger = logging.getLogger("sora_async")

#: Simultaneous downloads per client; kept below the connection pool so polls still get through.
DEFAULT_MAX_DOWNLOADS = 4
#: How long ``wait`` polls a task before giving up (the providers' samples give up at 10 min;
#: a busy account queues longer).
DEFAULT_WAIT_TIMEOUT = 3600.0
#: A create whose outcome is unknown may have started a task that counts against the account;
#: its slot is held for this many expected task durations before it is given back.
UNKNOWN_SLOT_HOLD_FACTOR = 2.0


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


@attrs.define
class _Tracked:
    """A task this client created or adopted and has not yet seen terminal."""

    request: VideoRequest | None
    slot: Slot | None
    started_at: float
    callback_expected: bool
    #: Created by this client (so ``started_at`` is its creation time, worth learning from).
    created_here: bool = True


class SoraClient:
    """One provider-neutral client; use ``async with SoraClient(...) as client:``.

    Settings follow the contract's precedence (argument > environment > default). The
    aiohttp session, the callback receiver and background work live between ``__aenter__``
    and ``aclose()``; a closed client cannot be reopened.
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
        wait_timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        expected_duration: float | None = None,
        governor: Governor | None = None,
        timeouts: CallTimeouts | None = None,
        retry: RetryPolicy | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if env is None else env
        self._settings: Settings = resolve_settings(
            provider=provider,
            api_key=api_key,
            base_url=base_url,
            max_concurrent_tasks=max_concurrent_tasks,
            poll_interval=poll_interval,
            redis_url=redis_url,
            account=account,
            env=environ,
        )
        # -- shared governor (issue 11): built here, opened and closed with the client --
        self._owned_governor: RedisGovernor | None = None
        if self._settings.redis_url is not None and governor is None:
            from .governor_redis import RedisGovernor

            governor = self._owned_governor = RedisGovernor(
                self._settings.redis_url,
                self._settings.account,
                self._settings.max_concurrent_tasks,
            )
        self._provider: Provider = get_provider(self._settings.provider)
        if isinstance(max_downloads, bool) or max_downloads < 1:
            raise ConfigurationError(f"max_downloads must be >= 1, got {max_downloads!r}")
        if wait_timeout is not None and not wait_timeout > 0:
            raise ConfigurationError(f"wait_timeout must be > 0 or None, got {wait_timeout!r}")
        if expected_duration is not None and not (
            expected_duration > 0 and math.isfinite(expected_duration)
        ):
            # Checked here, not at the first wait: by then a task would be created and paid.
            raise ConfigurationError(
                f"expected_duration must be a positive number of seconds or None, "
                f"got {expected_duration!r}"
            )
        self._receiver = self._pick_receiver(callback_receiver, environ)
        self._owns_receiver = False
        connections = max_connections or max(self._settings.max_concurrent_tasks + 4, 10)
        self._transport = Transport(
            self._settings.base_url or self._provider.default_base_url,
            self._settings.api_key,
            max_connections=connections,
            timeouts=timeouts,
        )
        self._governor: Governor = governor or LocalGovernor(self._settings.max_concurrent_tasks)
        self._download_limiter = anyio.CapacityLimiter(max_downloads)
        self._wait_timeout = wait_timeout
        # For safe calls (status, credits); None: the transport's SAFE_CALLS policy.
        self._retry = retry
        self._planner = PollPlanner(
            self._provider.name,
            poll_interval=self._settings.poll_interval,
            expected_duration=expected_duration,
        )
        self._tracked: dict[str, _Tracked] = {}
        self._state = _State.UNOPENED
        self._task_group: anyio.abc.TaskGroup | None = None

    def _pick_receiver(
        self, option: bool | CallbackReceiver | None, environ: Mapping[str, str]
    ) -> CallbackReceiver | None:
        receiver: CallbackReceiver | None
        if isinstance(option, CallbackReceiver):
            receiver = option
        elif option is True:
            receiver = CallbackReceiver()
        elif option is None and environ.get(ENV_CALLBACK_LISTEN):
            host, _, port = environ[ENV_CALLBACK_LISTEN].rpartition(":")
            if not host or not port.isdigit():
                raise ConfigurationError(
                    f"{ENV_CALLBACK_LISTEN} must be HOST:PORT, got {environ[ENV_CALLBACK_LISTEN]!r}"
                )
            receiver = CallbackReceiver(
                host, int(port), environ.get(ENV_CALLBACK_PUBLIC_URL) or None
            )
        elif option is None and environ.get(ENV_CALLBACK_PUBLIC_URL):
            raise ConfigurationError(
                f"{ENV_CALLBACK_PUBLIC_URL} needs {ENV_CALLBACK_LISTEN} (HOST:PORT to listen on)"
            )
        else:
            receiver = None
        if receiver is not None and not self._provider.supports_callbacks:
            raise ConfigurationError(
                f"callback_receiver: {self._provider.name} offers no completion callbacks"
            )
        return receiver

    # -- lifecycle ---------------------------------------------------------------------------

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
        return self._receiver

    def __repr__(self) -> str:
        return (
            f"SoraClient(provider={self._provider.name!r}, base_url={self._transport.base_url!r}, "
            f"max_concurrent_tasks={self._settings.max_concurrent_tasks}, "
            f"state={self._state.value})"
        )

    async def __aenter__(self) -> SoraClient:
        if self._state is not _State.UNOPENED:
            raise RuntimeError(f"this SoraClient is {self._state.value}; make a new one")
        await self._transport.__aenter__()
        try:
            if self._owned_governor is not None:  # shared governor (issue 11)
                await self._owned_governor.open()
            if (
                self._receiver is not None
                and not self._receiver.is_running
                and not self._receiver.is_mounted
            ):
                await self._receiver.start()
                self._owns_receiver = True
            # Background work (runs of generate_many, delayed slot releases) lives in this
            # group, so nothing outlives the client.
            self._task_group = anyio.create_task_group()
            await self._task_group.__aenter__()
        except BaseException:
            if self._owned_governor is not None:  # shared governor (issue 11)
                await self._owned_governor.aclose()
            await self._transport.aclose()
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
                await group.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                if self._tracked:
                    logger.warning(
                        "closing with %d task(s) not seen finished (still alive on the server, "
                        "check them with status()): %s",
                        len(self._tracked),
                        ", ".join(sorted(self._tracked)),
                    )
                for tracked in self._tracked.values():
                    if tracked.slot is not None:
                        self._governor.release(tracked.slot)
                        tracked.slot = None
                if self._owns_receiver and self._receiver is not None:
                    await self._receiver.aclose()
                await self._transport.aclose()
            # Shared governor (issue 11): after the slots above were released, and outside the
            # shield (its task group must be the innermost scope when it exits).
            if self._owned_governor is not None:
                await self._owned_governor.aclose()

    def _require_open(self) -> None:
        if self._state is _State.UNOPENED:
            raise RuntimeError("this SoraClient is not open: use 'async with SoraClient(...)'")
        if self._state is _State.CLOSED:
            raise RuntimeError("this SoraClient is closed")

    def _spawn(self, func: Any, *args: Any) -> None:
        self._require_open()
        assert self._task_group is not None
        self._task_group.start_soon(func, *args)

    @property
    def unfinished_tasks(self) -> dict[str, VideoRequest | None]:
        """Tasks this client created (or adopted) and has not seen terminal: id -> request.

        After a run is stopped early, its tasks that are still alive on the server are here
        (and were logged); ``wait()`` or ``status()`` on them picks them up again.
        """
        return {task_id: tracked.request for task_id, tracked in self._tracked.items()}

    # -- requests ----------------------------------------------------------------------------

    def estimate_credits(self, request: VideoRequest) -> int | None:
        """Credits one request costs with this provider, or None where no price is published."""
        self._provider.check_request(request)
        return self._provider.estimate_credits(request)

    async def prepare(self, request: VideoRequest) -> PreparedImage | None:
        """Check everything about ``request`` that can be checked before sending it.

        Raises ValidationError naming the field; reads a local image off the event loop.
        """
        self._provider.check_request(request)
        if request.image is None:
            return None
        return await anyio.to_thread.run_sync(
            partial(
                prepare_image,
                request.image,
                accepts_bytes=self._provider.accepts_image_bytes,
                provider=self._provider.name,
            )
        )

    def _with_callback(self, request: VideoRequest) -> tuple[VideoRequest, bool]:
        if self._receiver is None or request.callback_url is not None:
            return request, False
        return attrs.evolve(request, callback_url=self._receiver.callback_url), True

    async def create(self, request: VideoRequest) -> str:
        """Create one task and return its id, holding an account slot until it is terminal.

        Waits for a slot first (never more than ``max_concurrent_tasks`` live tasks) and
        retries a create only where it provably did not happen (connect error, 429). Any
        other failure after the request may have left raises
        :class:`CreateOutcomeUnknownError` and is never re-sent.
        """
        return await self._create(Job(request))

    async def _create(
        self,
        job: Job,
        hook: EventHook | None = None,
        may_send: Callable[[], bool] | None = None,
    ) -> str:
        """Create ``job``'s task. ``may_send()`` is asked right before each attempt: False
        (a run draining after Ctrl-C) gives the slot back and raises CreateSkipped."""
        self._require_open()
        if not isinstance(job.request, VideoRequest):
            raise ValidationError("request", job.request, "a VideoRequest")
        image = await self.prepare(job.request)
        request, callback_expected = self._with_callback(job.request)
        call = self._provider.create_call(request, image)
        slot: Slot | None = await self._governor.acquire()
        try:
            while True:
                assert slot is not None
                if may_send is not None and not may_send():
                    raise CreateSkipped("the run stopped creating before this job was sent")
                # Shielded from the intent record to the task id record: a cancellation can
                # neither fall between the two nor lose the answer of a request that left.
                with anyio.CancelScope(shield=True):
                    await emit(hook, TaskEvent(EventKind.CREATING, job.key, job.request))
                    try:
                        task_id = await self._transport.call(
                            call, self._provider.decode_create, safe=False
                        )
                    except RateLimitError as exc:
                        rate_limited: RateLimitError | None = exc
                        # Definitely not created: a journal records that before any pause.
                        await emit(
                            hook,
                            TaskEvent(EventKind.RATE_LIMITED, job.key, job.request, error=exc),
                        )
                    except (TransportError, ProtocolError, APIError) as exc:
                        if create_was_not_made(exc):
                            raise  # nothing was sent, or the server said no: not created
                        self._hold_slot(slot, request, "create outcome unknown: a task may exist")
                        slot = None
                        raise CreateOutcomeUnknownError(
                            f"{type(exc).__name__}: {exc}", request=job.request
                        ) from exc
                    else:
                        self._governor.on_create_succeeded(slot, task_id)
                        self._tracked[task_id] = _Tracked(
                            job.request, slot, time.monotonic(), callback_expected
                        )
                        slot = None
                        try:
                            await emit(
                                hook, TaskEvent(EventKind.CREATED, job.key, job.request, task_id)
                            )
                        except Exception as exc:
                            raise HookFailedAfterCreate(task_id, exc) from exc
                        return task_id
                assert rate_limited is not None and slot is not None
                logger.info(
                    "create refused with 429 (account full or rate limited); retrying in %s",
                    f"{rate_limited.retry_after:g}s" if rate_limited.retry_after else "a while",
                )
                await self._governor.on_rate_limited(slot, rate_limited.retry_after)
        finally:
            if slot is not None:
                # The create definitely did not happen (or we never sent it).
                self._governor.release(slot)

    def _hold_slot(self, slot: Slot, request: VideoRequest | None, why: str) -> None:
        """Keep counting a task we can no longer follow for a while, then give its slot back.

        Its task may be alive on the server (an unknown create outcome, a wait that timed
        out): releasing at once could over-fill the account, holding forever would shrink it.
        """
        schedule = self._schedule(request)
        hold = (schedule.expected_duration or 300.0) * UNKNOWN_SLOT_HOLD_FACTOR
        logger.warning("%s: its account slot is held for %.0fs", why, hold)

        async def release_later() -> None:
            try:
                await anyio.sleep(hold)
            finally:
                self._governor.release(slot)

        if self._task_group is not None:
            self._task_group.start_soon(release_later)
        else:  # pragma: no cover - only while closing
            self._governor.release(slot)

    def _stop_following(self, task_id: str, error: SoraError) -> None:
        """``wait`` gave up on a task: it stays listed in ``unfinished_tasks``; its slot goes
        back at once if the server disowns the task, else after a hold."""
        tracked = self._tracked.get(task_id)
        if tracked is None or tracked.slot is None:
            return
        slot, tracked.slot = tracked.slot, None
        if isinstance(error, (NotFoundError, AuthenticationError)):
            self._governor.release(slot)  # not a task of this account: it holds no slot
        else:
            self._hold_slot(slot, tracked.request, f"stopped following task {task_id} ({error})")

    async def status(self, task_id: str) -> TaskStatus:
        """One status poll (retried on transient failures). A terminal status frees its slot."""
        self._require_open()
        check_task_id(task_id)
        status = await self._transport.call(
            self._provider.status_call(task_id),
            partial(self._provider.decode_status, task_id),
            safe=True,
            retry=self._retry,
        )
        if status.is_terminal:
            self._forget(task_id)
        return status

    def _forget(self, task_id: str) -> None:
        tracked = self._tracked.pop(task_id, None)
        if tracked is not None and tracked.slot is not None:
            self._governor.release(tracked.slot)

    def _abandon(self, task_id: str) -> None:
        """Stop counting a live task against the slots (its waiter gave up); keep it listed."""
        tracked = self._tracked.get(task_id)
        if tracked is not None and tracked.slot is not None:
            self._governor.release(tracked.slot)
            tracked.slot = None

    async def adopt(self, task_id: str, request: VideoRequest | None = None) -> None:
        """Count a task created elsewhere (an earlier run) against the slots until terminal."""
        self._require_open()
        if task_id in self._tracked:
            return
        slot = await self._governor.acquire()
        self._governor.on_create_succeeded(slot, task_id)
        self._tracked[task_id] = _Tracked(
            request, slot, time.monotonic(), False, created_here=False
        )

    def _schedule(self, request: VideoRequest | None) -> PollSchedule:
        return self._planner.schedule(request)

    @property
    def learned_durations(self) -> dict[Model | None, float]:
        """Seconds from create to seen-finished for this client's succeeded tasks, per model
        (an exponential average); they place the first poll of later tasks."""
        return self._planner.learned

    def _learn_duration(
        self, tracked: _Tracked | None, status: TaskStatus, still_running_at: float | None
    ) -> None:
        if tracked is None or not tracked.created_here:
            return
        self._planner.learn(
            tracked.request,
            created_at=tracked.started_at,
            last_running_at=still_running_at,
            finished_seen_at=time.monotonic(),
            succeeded=status.state is TaskState.SUCCEEDED,
        )

    async def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the deadline names the task on expiry
        on_progress: Any = None,
    ) -> TaskResult:
        """Poll until the task is terminal and return its result (a failure is not raised).

        ``timeout`` (default: the client's ``wait_timeout``) raises WaitTimeoutError;
        ``on_progress(status)`` is called with every status seen.
        """
        self._require_open()
        check_task_id(task_id)
        return await self._wait(
            Job(self._request_of(task_id), task_id=task_id), timeout, None, on_progress
        )

    def _request_of(self, task_id: str) -> VideoRequest | None:
        tracked = self._tracked.get(task_id)
        return tracked.request if tracked is not None else None

    async def _wait(
        self,
        job: Job,
        timeout: float | None,  # noqa: ASYNC109 - see wait()
        hook: EventHook | None,
        on_progress: Any = None,
    ) -> TaskResult:
        assert job.task_id is not None
        task_id = job.task_id
        tracked = self._tracked.get(task_id)
        wake = None
        if self._receiver is not None and tracked is not None and tracked.callback_expected:
            wake = self._receiver.watch(task_id)

        still_running_at: float | None = None

        async def fetch() -> TaskStatus:
            nonlocal still_running_at
            asked_at = time.monotonic()
            status = await self.status(task_id)
            if on_progress is not None:
                on_progress(status)
            if not status.is_terminal:
                still_running_at = asked_at
                await emit(
                    hook,
                    TaskEvent(EventKind.PROGRESS, job.key, job.request, task_id, status=status),
                )
            return status

        schedule = self._schedule(job.request)
        if tracked is not None and tracked.created_here:
            started_at = tracked.started_at
        else:
            # A task of unknown age (adopted after a crash, or someone else's id): look now
            # rather than wait out a first-poll delay meant for a task just created.
            started_at = time.monotonic() - schedule.initial_delay
        try:
            final = await poll_until_terminal(
                fetch,
                schedule,
                timeout=self._wait_timeout if timeout is None else timeout,
                wake=wake,
                task_id=task_id,
                started_at=started_at,
            )
        except SoraError as exc:
            self._stop_following(task_id, exc)
            raise
        finally:
            if wake is not None and self._receiver is not None:
                self._receiver.unwatch(task_id, wake)
        self._learn_duration(tracked, final, still_running_at)
        return TaskResult.from_status(final, job.request, key=job.key)

    async def generate(
        self,
        request: VideoRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - see wait()
        on_progress: Any = None,
    ) -> TaskResult:
        """Create one task and wait for it; a failed task is returned, not raised."""
        task_id = await self.create(request)
        return await self._wait(Job(request, task_id=task_id), timeout, None, on_progress)

    def generate_many(
        self,
        requests: Iterable[VideoRequest | Job] | AsyncIterable[VideoRequest | Job],
        *,
        timeout: float | None = None,
        on_event: EventHook | None = None,
        download_to: str | os.PathLike[str] | None = None,
        filename: Any = None,
        reuse_file: Any = None,
    ) -> GenerationRun:
        """Governed fan-out: yields one TaskResult per request, in completion order.

        ``requests`` is consumed lazily (a generator of 100 000 prompts is never materialized)
        and live work is bounded by the account cap. Failures are yielded, not raised. Use
        ``async for result in client.generate_many(...)``, or ``async with`` it to be certain
        that an early exit has finished reporting (``run.unfinished``) before going on.
        ``download_to`` fetches each success's files there before yielding it;
        ``filename(result, index, count)`` names them (default: the task id);
        ``reuse_file(result, path)`` may return a DownloadedFile for a file already whole
        there (a resumed batch knows which), which is then not fetched again.
        """
        from .fanout import GenerationRun

        self._require_open()
        return GenerationRun(
            self,
            requests,
            timeout=timeout,
            on_event=on_event,
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
        filename: Any = None,
        on_file: Any = None,
    ) -> list[Path]:
        """Write a succeeded result's videos into ``dest_dir`` and return their paths.

        Each file streams to ``<name>.part``, is checked against Content-Length and renamed
        into place; a ``.part`` left by an interrupted run is resumed. Names come from the task
        id unless ``filename(result, index, count)`` says otherwise.
        """
        self._require_open()
        files = await self._download(result, Path(dest_dir), filename, on_file)
        return [file.path for file in files]

    async def _download(
        self, result: TaskResult, dest: Path, filename: Any, on_file: Any, reuse: Any = None
    ) -> list[DownloadedFile]:
        if result.task_id is None or not result.state.is_terminal or not result.video_urls:
            raise DownloadError(
                f"nothing to download for task {result.task_id}: state {result.state}, "
                f"{len(result.video_urls)} video URL(s)"
            )
        count = len(result.video_urls)
        files = []
        for index, url in enumerate(result.video_urls):
            name = (
                filename(result, index, count)
                if filename is not None
                else video_filename(result.task_id, index, count)
            )
            kept = reuse(result, dest / name) if reuse is not None else None
            if kept is not None:
                files.append(kept)
                continue
            async with self._download_limiter:
                file = await download_file(
                    self._transport.session,
                    url,
                    dest / name,
                    read_timeout=self._transport.timeouts.download_read,
                    connect_timeout=self._transport.timeouts.connect,
                )
            files.append(file)
            if on_file is not None:
                outcome = on_file(file)
                if inspect.isawaitable(outcome):
                    await outcome
        return files

    async def credits(self) -> Credits:
        """The account balance (freesora). sora2api has no balance endpoint: NotSupportedError."""
        self._require_open()
        if not self._provider.supports_credits:
            raise NotSupportedError(
                f"{self._provider.name} has no credits endpoint; check the balance in its console"
            )
        return await self._transport.call(
            self._provider.credits_call(),
            self._provider.decode_credits,
            safe=True,
            retry=self._retry,
        )
