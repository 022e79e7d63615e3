"""Optional OpenTelemetry spans of a run's tasks and of their HTTP requests (extra ``otel``).

``SoraClient(tracing=True)`` (the global tracer provider) or ``tracing=<a Tracer>`` gives each
task a span ``sora_async.task`` from its first event (a job given a task id: from its adoption,
before the first poll) to SUCCEEDED or FAILED. Its children:

* one CLIENT span per HTTP request made for it, named ``"<METHOD> <endpoint>"`` (``POST
  create``, ``GET status`` for each poll, ``GET download`` for each file), from the first
  attempt to the answer kept, retries included: ``http.request.method``, ``sora.endpoint``,
  ``http.response.status_code`` (the last answer), ``sora.attempts`` and ``sora.retries``, on
  a 429 ``sora.rate_limited`` (how many) and ``sora.retry_after`` (the last Retry-After; neither
  provider documents any other rate-limit header), and an ``attempt failed`` event per failed
  attempt (its status, error class and the wait before the next). A request that fails for
  good is ERROR with ``error.type``. The transport and the downloader find the task's span
  through :mod:`sora_async.requestspans`, which this hook fills in from the task's events;
* ``sora_async.download``, the task's download phase (DOWNLOADING to its end, one ``file``
  event per file).

Each status that changed the task is a ``status`` event on the task span. opentelemetry is
imported only when tracing is asked for, so a client without it pays nothing and needs no
package. Attributes carry the provider, the key, the task id, states, HTTP statuses and error
classes; never the API key, a URL or a server's message.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Iterator
from typing import Any

from . import requestspans
from .errors import ConfigurationError, RateLimitError
from .events import EventHook, EventKind, TaskEvent

__all__ = ["SpanHook", "resolve_tracer", "traced_requests"]

_NAME = "sora_async"
_FINAL = (EventKind.SUCCEEDED, EventKind.FAILED)
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


class _RequestSpan:
    """One request's span: told of each attempt, ended once (see requestspans.RequestSpan)."""

    __slots__ = ("_attempts", "_rate_limited", "_span", "_trace")

    def __init__(self, span: Any, trace: Any) -> None:
        self._span = span
        self._trace = trace
        self._attempts = 0
        self._rate_limited = 0

    def attempt(
        self,
        status: int | None,
        error: BaseException | str | None,
        *,
        retry_in: float | None = None,
    ) -> None:
        self._attempts += 1
        span = self._span
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if status == 429 or isinstance(error, RateLimitError):
            self._rate_limited += 1
            span.set_attribute("sora.rate_limited", self._rate_limited)
            retry_after = getattr(error, "retry_after", None)
            if retry_after is not None:
                span.set_attribute("sora.retry_after", float(retry_after))
        if error is None:
            return
        attributes: dict[str, Any] = {"sora.attempt": self._attempts, "error.type": _name(error)}
        if status is not None:
            attributes["http.response.status_code"] = status
        if retry_in is not None:
            attributes["sora.retry_in"] = retry_in
        span.add_event("attempt failed", attributes)

    def end(self, error: BaseException | None) -> None:
        span = self._span
        span.set_attribute("sora.attempts", self._attempts)
        span.set_attribute("sora.retries", max(0, self._attempts - 1))
        if isinstance(error, Exception):
            name = _name(error)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, name))
            span.set_attribute("error.type", name)
        elif error is not None:  # cancelled (the task ended meanwhile, or the run stopped)
            span.set_attribute("sora.cancelled", True)
        span.end()


class _TaskRequests:
    """Starts the request spans of one task, as children of its span (or, with no task, of
    whatever span is current: a request that is no task's)."""

    __slots__ = ("_attributes", "_context", "_kind", "_trace", "_tracer")

    def __init__(self, trace: Any, tracer: Any, task: Any | None, provider: str) -> None:
        self._trace = trace
        self._tracer = tracer
        self._context = trace.set_span_in_context(task) if task is not None else None
        self._kind = trace.SpanKind.CLIENT
        self._attributes = {"sora.provider": provider}

    def start(self, method: str, endpoint: str) -> _RequestSpan:
        span = self._tracer.start_span(
            f"{method} {endpoint}",
            context=self._context,
            kind=self._kind,
            attributes={
                **self._attributes,
                "http.request.method": method,
                "sora.endpoint": endpoint,
            },
        )
        return _RequestSpan(span, self._trace)


def _name(error: BaseException | str) -> str:
    return error if isinstance(error, str) else type(error).__name__


@contextlib.contextmanager
def traced_requests(tracer: Any, provider: str) -> Iterator[None]:
    """The requests made inside the block, which belong to no task (``credits()``), as spans
    of ``tracer``: children of the caller's current span, if any. ``tracer`` None: nothing,
    and opentelemetry is not imported."""
    if tracer is None:
        yield
        return
    from opentelemetry import trace

    with requestspans.using(_TaskRequests(trace, tracer, None, provider)):
        yield


class _Spans:
    __slots__ = ("download", "key", "requests", "task")

    def __init__(self, key: object, task: Any, requests: _TaskRequests) -> None:
        self.key = key
        self.task = task
        self.requests = requests
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

    def adopting(self, key: object, task_id: str) -> None:
        """See :class:`~sora_async.requestspans.TaskSpans` (the runtime calls it)."""
        try:
            spans = self._job(key, task_id)
        except Exception:  # as in __call__: a span that cannot be made stops no task
            logger.debug("could not trace adopted task %s", task_id, exc_info=True)
            return
        requestspans.use(spans.requests)

    def _job(self, key: object, task_id: str | None) -> _Spans:
        key = key if isinstance(key, (str, int, float, bool)) else str(key)
        spans = self._jobs.get(key)
        if spans is None:
            attributes: dict[str, Any] = {"sora.provider": self._provider, "sora.key": str(key)}
            if isinstance(key, int) and not isinstance(key, bool):
                attributes["sora.index"] = key
            task = self._tracer.start_span("sora_async.task", attributes=attributes)
            requests = _TaskRequests(self._trace, self._tracer, task, self._provider)
            spans = self._jobs[key] = _Spans(key, task, requests)
        if task_id is not None:
            spans.task.set_attribute("sora.task_id", task_id)
        return spans

    def _record(self, event: TaskEvent) -> None:
        kind = event.kind
        spans = self._job(event.key, event.task_id)
        # The job's requests are made in the context its events come from (the create, and
        # the download) or in a copy of it (the follower's polls, spawned after CREATING).
        requestspans.use(None if kind in _FINAL else spans.requests)
        if kind is EventKind.PROGRESS:
            spans.task.add_event("status", self._status(event))
        elif kind is EventKind.DOWNLOADING:
            spans.download = self._child(spans, "sora_async.download")
        elif kind is EventKind.DOWNLOADED and spans.download is not None and event.file:
            spans.download.add_event(
                "file", {"sora.file": event.file.path.name, "sora.bytes": event.file.size}
            )
        elif kind in _FINAL:
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
        self._jobs.pop(spans.key, None)
        result = event.result
        if spans.download is not None:
            if result is not None and not result.ok:
                # The class only: the message names the file's host and path.
                reason = (result.download_error or "DownloadError").split(":", 1)[0]
                self._fail(spans.download, reason)
            spans.download.end()
        if result is not None:
            spans.task.set_attribute("sora.state", result.state.value)
            if not result.ok:
                cause = result.exception
                self._fail(spans.task, type(cause).__name__ if cause is not None else "TaskFailed")
        spans.task.end()
