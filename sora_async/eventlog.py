"""Task events as structured log records, and the formatter of the CLI's JSON log lines.

A run's events (:class:`~sora_async.events.TaskEvent`) become records of the logger
``sora_async.events`` at INFO, each with its fields in ``record.sora_event``: the event, the
caller's key (an int key is also given as ``index``), the task id, its state, the provider,
the seconds since the job's first event, progress, the error's class and message, the
Retry-After of a 429, the file written. Never the API key: every text here is an SDK message
or a field the caller set, and the secrets canary searches these records too.

The client wraps a run's event hook only while that logger is enabled for INFO, so a program
that does not log events pays nothing for them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import RateLimitError
from .events import EventHook, EventKind, TaskEvent

__all__ = ["EVENT_FIELD", "EVENT_LOGGER", "EventLog", "JsonFormatter", "event_fields", "log_events"]

#: The logger of the task events.
EVENT_LOGGER = "sora_async.events"
#: The record attribute holding an event's fields (a dict of JSON values).
EVENT_FIELD = "sora_event"

logger = logging.getLogger(EVENT_LOGGER)
_JSON_SCALARS = (str, int, float, bool, type(None))


def _json_key(key: Any) -> Any:
    return key if isinstance(key, _JSON_SCALARS) else str(key)


def _error_fields(event: TaskEvent) -> dict[str, Any]:
    if event.error is not None:
        fields: dict[str, Any] = {
            "error_class": type(event.error).__name__,
            "error": str(event.error),
        }
        if isinstance(event.error, RateLimitError):
            fields["retry_after"] = event.error.retry_after
        return fields
    result = event.result
    if result is None or (result.error is None and result.download_error is None):
        return {}
    cause = result.exception
    return {
        "error_class": type(cause).__name__ if cause is not None else "TaskFailed",
        "error": result.error or result.download_error,
    }


def event_fields(event: TaskEvent, *, provider: str, elapsed: float) -> dict[str, Any]:
    """The JSON-ready fields of one event (see the module docstring)."""
    state = None
    if event.status is not None:
        state = event.status.state.value
    elif event.result is not None:
        state = event.result.state.value
    fields: dict[str, Any] = {
        "event": event.kind.value,
        "key": _json_key(event.key),
        "index": event.key
        if isinstance(event.key, int) and not isinstance(event.key, bool)
        else None,
        "task_id": event.task_id,
        "state": state,
        "provider": provider,
        "elapsed": round(elapsed, 3),
        "progress": event.progress,
    }
    fields.update(_error_fields(event))
    if event.file is not None:
        fields["file"] = event.file.path.name
        fields["bytes"] = event.file.size
        fields["resumed"] = event.file.resumed
    if event.result is not None and event.result.refunded is not None:
        fields["refunded"] = event.result.refunded
    return fields


def _message(fields: dict[str, Any]) -> str:
    """The record's text: the same facts in one line, for the text format."""
    parts = [f"task event {fields['event']}", f"key={fields['key']!r}"]
    for name in ("task_id", "state", "progress", "file", "error_class", "retry_after"):
        if fields.get(name) is not None:
            parts.append(f"{name}={fields[name]}")
    parts.append(f"provider={fields['provider']}")
    parts.append(f"elapsed={fields['elapsed']:.3f}s")
    if fields.get("error"):
        parts.append(f"error={fields['error']}")
    return " ".join(parts)


class EventLog:
    """An event hook that logs each event, then calls the caller's own hook (if any)."""

    def __init__(
        self,
        provider: str,
        hook: EventHook | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider = provider
        self._hook = hook
        self._clock = clock
        #: When each job's first event was seen, by key; dropped at its last event.
        self._began: dict[Any, float] = {}

    def __call__(self, event: TaskEvent, /) -> Awaitable[object] | object:
        try:
            self._log(event)
        except Exception:  # a record that cannot be made never stops a paid task
            logging.getLogger("sora_async").debug("could not log %s", event.kind, exc_info=True)
        if self._hook is not None:
            return self._hook(event)
        return None

    def _log(self, event: TaskEvent) -> None:
        now = self._clock()
        key = _json_key(event.key)
        began = self._began.setdefault(key, now)
        if event.kind in (EventKind.SUCCEEDED, EventKind.FAILED):
            del self._began[key]
        if not logger.isEnabledFor(logging.INFO):
            return
        fields = event_fields(event, provider=self._provider, elapsed=now - began)
        level = logging.WARNING if event.kind is EventKind.FAILED else logging.INFO
        logger.log(level, "%s", _message(fields), extra={EVENT_FIELD: fields})


def log_events(provider: str, hook: EventHook | None) -> EventHook | None:
    """``hook`` wrapped in an :class:`EventLog` while the event logger is on; else ``hook``."""
    if not logger.isEnabledFor(logging.INFO):
        return hook
    return EventLog(provider, hook)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and an event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = dt.datetime.fromtimestamp(record.created, tz=dt.timezone.utc)
        data: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, EVENT_FIELD, None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info and record.exc_info[1] is not None:
            data.setdefault("error_class", type(record.exc_info[1]).__name__)
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)
