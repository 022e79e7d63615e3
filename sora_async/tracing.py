"""Optional OpenTelemetry spans, built from a run's task events (extra ``otel``).

``SoraClient(tracing=True)`` (the global tracer provider) or ``tracing=<a Tracer>`` gives each
task a span ``sora_async.task`` from its first event to SUCCEEDED or FAILED, with a child span
per request whose start and end the events see: ``sora_async.create`` (CREATING to CREATED, or
to the 429 that refused it) and ``sora_async.download`` (DOWNLOADING to the task's end, one
``file`` event per file). Each status answer that changed the task is a ``status`` event on
the task span (the transport, not the events, would be needed to time each poll request).

opentelemetry is imported only when tracing is asked for, so a client without it pays nothing
and needs no package. Attributes carry the provider, the key, the task id, states and error
classes; never the API key.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from .errors import ConfigurationError
from .events import EventHook, EventKind, TaskEvent

__all__ = ["SpanHook", "resolve_tracer"]

_NAME = "sora_async"
logger = logging.getLogger("sora_async.tracing")


def resolve_tracer(tracing: Any) -> Any:
    """The tracer ``tracing=`` asks for (None for False/None); importing opentelemetry here."""
    if tracing is None or tracing is False:
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        raise ConfigurationError(
            "tracing: OpenTelemetry is not installed (pip install 'sora_async[otel]')"
        ) from None
    if tracing is True:
        return trace.get_tracer(_NAME)
    if not callable(getattr(tracing, "start_span", None)):
        raise ConfigurationError(f"tracing must be True, False or a Tracer, got {tracing!r}")
    return tracing


class _Spans:
    __slots__ = ("download", "request", "task")

    def __init__(self, task: Any) -> None:
        self.task = task
        self.request: Any = None
        self.download: Any = None


class SpanHook:
    """An event hook that keeps spans of each job, then calls the caller's own hook."""

    def __init__(self, tracer: Any, provider: str, hook: EventHook | None = None) -> None:
        from opentelemetry import trace

        self._trace = trace
        self._tracer = tracer
        self._provider = provider
        self._hook = hook
        self._jobs: dict[Any, _Spans] = {}

    def __call__(self, event: TaskEvent, /) -> Awaitable[object] | object:
        try:
            self._record(event)
        except Exception:  # a span that cannot be made never stops a paid task
            logger.debug("could not trace %s", event.kind, exc_info=True)
        if self._hook is not None:
            return self._hook(event)
        return None

    def _child(self, spans: _Spans, name: str) -> Any:
        context = self._trace.set_span_in_context(spans.task)
        return self._tracer.start_span(
            name, context=context, attributes={"sora.provider": self._provider}
        )

    def _job(self, event: TaskEvent) -> _Spans:
        key = event.key if isinstance(event.key, (str, int, float, bool)) else str(event.key)
        spans = self._jobs.get(key)
        if spans is None:
            attributes: dict[str, Any] = {"sora.provider": self._provider, "sora.key": str(key)}
            if isinstance(key, int) and not isinstance(key, bool):
                attributes["sora.index"] = key
            spans = self._jobs[key] = _Spans(
                self._tracer.start_span("sora_async.task", attributes=attributes)
            )
        if event.task_id is not None:
            spans.task.set_attribute("sora.task_id", event.task_id)
        return spans

    def _record(self, event: TaskEvent) -> None:
        kind = event.kind
        spans = self._job(event)
        if kind is EventKind.CREATING:
            spans.request = self._child(spans, "sora_async.create")
        elif kind in (EventKind.CREATED, EventKind.RATE_LIMITED) and spans.request is not None:
            if event.task_id is not None:
                spans.request.set_attribute("sora.task_id", event.task_id)
            if event.error is not None:
                self._fail(spans.request, event.error)
                retry_after = getattr(event.error, "retry_after", None)
                if retry_after is not None:
                    spans.request.set_attribute("sora.retry_after", float(retry_after))
            spans.request.end()
            spans.request = None
        elif kind is EventKind.PROGRESS:
            spans.task.add_event("status", self._status(event))
        elif kind is EventKind.DOWNLOADING:
            spans.download = self._child(spans, "sora_async.download")
        elif kind is EventKind.DOWNLOADED and spans.download is not None and event.file:
            spans.download.add_event(
                "file", {"sora.file": event.file.path.name, "sora.bytes": event.file.size}
            )
        elif kind in (EventKind.SUCCEEDED, EventKind.FAILED):
            self._finish(event, spans)

    def _status(self, event: TaskEvent) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        if event.status is not None:
            attributes["sora.state"] = event.status.state.value
            if event.status.progress is not None:
                attributes["sora.progress"] = event.status.progress
        return attributes

    def _fail(self, span: Any, error: BaseException | str) -> None:
        from opentelemetry.trace import Status, StatusCode

        name = error if isinstance(error, str) else type(error).__name__
        span.set_status(Status(StatusCode.ERROR, name))
        span.set_attribute("sora.error_class", name)

    def _finish(self, event: TaskEvent, spans: _Spans) -> None:
        self._jobs = {key: job for key, job in self._jobs.items() if job is not spans}
        result = event.result
        for child in (spans.request, spans.download):
            if child is not None:
                if result is not None and not result.ok:
                    self._fail(child, result.download_error or "failed")
                child.end()
        if result is not None:
            spans.task.set_attribute("sora.state", result.state.value)
            if not result.ok:
                cause = result.exception
                self._fail(spans.task, type(cause).__name__ if cause is not None else "TaskFailed")
        spans.task.end()
