"""Where the transport and the downloader find the span of the task they are working for.

A traced run's event hook (:class:`~sora_async.tracing.SpanHook`) puts the job's
:class:`RequestTracer` in a context variable when the job's first event is seen: the create
is sent from that same context, and its follower (the task that polls) and the download run in
copies of it. A job given a task id has no event before its follower is spawned, so the runtime
tells such a hook first (:class:`TaskSpans`): the task's span then starts at adoption.
Each request asks :func:`current` once; without tracing that is one context
variable read and a None check, with nothing allocated and opentelemetry never imported.
This module imports nothing of opentelemetry itself; the tracer behind the protocol does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Protocol, runtime_checkable

__all__ = ["RequestSpan", "RequestTracer", "TaskSpans", "current", "use", "using"]


class RequestSpan(Protocol):
    """The span of one logical request (a create, one status poll, credits, one file)."""

    def attempt(
        self,
        status: int | None,
        error: BaseException | str | None,
        *,
        retry_in: float | None = None,
    ) -> None:
        """One HTTP attempt ended: its status (None: no answer) and, if it failed, why and
        when the next attempt goes (None: none will)."""

    def end(self, error: BaseException | None) -> None:
        """The request is over: answered, given up with ``error``, or cancelled."""


class RequestTracer(Protocol):
    """Makes the request spans of one task, as children of its span."""

    def start(self, method: str, endpoint: str) -> RequestSpan: ...


@runtime_checkable
class TaskSpans(Protocol):
    """An event hook that keeps a span per task (and so can start one before any event)."""

    def adopting(self, key: object, task_id: str) -> None:
        """Job ``key`` follows the existing task ``task_id``: start its span now and make its
        tracer this context's, so the follower spawned from here traces its first poll."""


_CURRENT: ContextVar[RequestTracer | None] = ContextVar("sora_async_request_tracer", default=None)

#: The tracer of the task this context works for, or None (tracing off, or no task).
current = _CURRENT.get


def use(tracer: RequestTracer | None) -> None:
    """Make ``tracer`` this context's (None: requests from here on are not traced)."""
    _CURRENT.set(tracer)


@contextlib.contextmanager
def using(tracer: RequestTracer) -> Iterator[None]:
    """``tracer`` for the requests made inside the block only (a call that is no task's)."""
    token = _CURRENT.set(tracer)
    try:
        yield
    finally:
        _CURRENT.reset(token)
