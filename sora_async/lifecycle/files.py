"""The download step of a job: a succeeded task's videos written into a folder, with events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs

from .. import requestspans
from ..calls import Endpoint
from ..download import DownloadedFile, download_file, video_filename
from ..errors import DownloadError, SoraError
from ..events import (
    EventHook,
    EventKind,
    FileHook,
    FileNamer,
    FileReuser,
    Job,
    TaskEvent,
    call_hook,
)
from ..models import TaskResult
from ..transport import Transport
from .observer import Observer

__all__ = ["TaskFiles"]


class TaskFiles:
    """Fetches the files of succeeded tasks, at most ``max_downloads`` at once."""

    def __init__(self, transport: Transport, max_downloads: int, max_bytes: int | None) -> None:
        self.transport = transport
        # asyncio's semaphore: anyio's limiter goes through the event loop (a shielded
        # checkpoint) even when a token is free, one trip and one cancel scope a download.
        self._downloads = asyncio.Semaphore(max_downloads)
        self._download_max_bytes = max_bytes

    async def fetch_files(
        self,
        result: TaskResult,
        job: Job,
        *,
        dest: Path,
        hook: EventHook | None = None,
        filename: FileNamer | None = None,
        reuse: FileReuser | None = None,
    ) -> TaskResult:
        """``result`` with its files written into ``dest`` (``files``), or with why they could
        not be (``download_error``: the server's fault or the destination's)."""
        on_file: Callable[[DownloadedFile], Awaitable[None]] | None = None
        if hook is not None:  # no events, nor a closure, made for nobody
            events = Observer(hook, "the event hook")

            async def on_file(file: DownloadedFile) -> None:
                event = TaskEvent(
                    EventKind.DOWNLOADED,
                    job.key,
                    job.request,
                    result.task_id,
                    result=result,
                    file=file,
                )
                await events(event, job.key)

            # A journal learns "succeeded, fetching" before the first byte is written.
            await events(
                TaskEvent(
                    EventKind.DOWNLOADING, job.key, job.request, result.task_id, result=result
                ),
                job.key,
            )
        try:
            files = await self.download(result, dest, filename, on_file, reuse)
        except (SoraError, OSError) as exc:  # OSError: the destination (disk full, permission)
            return attrs.evolve(result, download_error=f"{type(exc).__name__}: {exc}")
        return attrs.evolve(result, files=[file.path for file in files])

    async def download(
        self,
        result: TaskResult,
        dest: Path,
        filename: FileNamer | None = None,
        on_file: Callable[[DownloadedFile], Awaitable[None] | None] | FileHook | None = None,
        reuse: FileReuser | None = None,
    ) -> list[DownloadedFile]:
        """Write a succeeded result's videos into ``dest`` (see SoraClient.download)."""
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
            async with self._downloads:
                tracer = requestspans.current()
                span = tracer.start("GET", Endpoint.DOWNLOAD) if tracer is not None else None
                try:
                    file = await download_file(
                        self.transport.session,
                        url,
                        dest / name,
                        read_timeout=self.transport.timeouts.download_read,
                        connect_timeout=self.transport.timeouts.connect,
                        max_bytes=self._download_max_bytes,
                        proxy_for=self.transport.proxy_for,
                        span=span,
                    )
                except BaseException as exc:
                    if span is not None:
                        span.end(exc)
                    raise
                if span is not None:
                    span.end(None)
            files.append(file)
            if on_file is not None:
                await call_hook(on_file, file)
        return files
