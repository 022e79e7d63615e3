"""The exception tree of sora_async.

Every error the SDK raises derives from :class:`SoraError`; foreign exceptions (aiohttp,
json, cattrs) are translated at the edge and never escape, and none of them carries the API
key or the request headers::

    SoraError
    ├── ConfigurationError          missing key, unknown provider, bad setting
    ├── ValidationError (ValueError) a request field that is not allowed; nothing was sent
    ├── NotSupportedError           the provider has no such operation (credits on sora2api)
    ├── TransportError              the HTTP exchange itself failed
    │   ├── ConnectError            no connection was made: nothing was sent
    │   ├── ReadTimeoutError        sent, but no (whole) answer in time
    │   └── ConnectionDroppedError  the connection broke while waiting for the answer
    ├── APIError                    the server answered with an error (HTTP status or envelope)
    │   ├── BadRequestError         400
    │   ├── AuthenticationError     401 / 403
    │   ├── InsufficientCreditsError 402
    │   ├── NotFoundError           404
    │   ├── RateLimitError          429 (carries retry_after)
    │   └── ServerError             5xx, 408
    ├── ProtocolError               an answer we cannot decode (bad JSON, missing field)
    │   └── UnknownStatusError      a task status the provider module does not know
    ├── CreateOutcomeUnknownError   a create may or may not have happened; never re-sent
    ├── TaskFailedError             the task ended in the failed state
    ├── WaitTimeoutError            a task was not terminal before the deadline
    └── DownloadError               a result file could not be fetched whole and safely
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConnectError",
    "ConnectionDroppedError",
    "CreateOutcomeUnknownError",
    "DownloadError",
    "InsufficientCreditsError",
    "NotFoundError",
    "NotSupportedError",
    "ProtocolError",
    "RateLimitError",
    "ReadTimeoutError",
    "ServerError",
    "SoraError",
    "TaskFailedError",
    "TransportError",
    "UnknownStatusError",
    "ValidationError",
    "WaitTimeoutError",
    "create_may_be_resent",
    "create_was_not_made",
    "refuses_every_create",
]


class SoraError(Exception):
    """Base class of every error raised by sora_async."""


class ConfigurationError(SoraError):
    """A setting is missing or invalid (no API key, unknown provider, bad number)."""


class ValidationError(SoraError, ValueError):
    """A request field holds a value that is not allowed. Raised before anything is sent."""

    def __init__(self, field: str, value: Any, allowed: str, *, reason: str | None = None) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        self.reason = reason
        shown = _short_repr(value)
        head = f"invalid {field}={shown}"
        if reason:
            head += f" ({reason})"
        super().__init__(f"{head}: allowed {allowed}")


class NotSupportedError(SoraError):
    """The chosen provider does not offer this operation."""


class TransportError(SoraError):
    """The HTTP exchange failed before a usable answer arrived."""

    def __init__(self, message: str, *, endpoint: str | None = None) -> None:
        self.endpoint = endpoint
        super().__init__(f"{endpoint}: {message}" if endpoint else message)


class ConnectError(TransportError):
    """No connection could be made, so nothing was sent: always safe to retry."""


class ReadTimeoutError(TransportError):
    """The request may have been sent but no complete answer arrived in time."""


class ConnectionDroppedError(TransportError):
    """The connection broke after the request was (possibly) sent."""


class APIError(SoraError):
    """The server answered with an error, by HTTP status or by its envelope code."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        http_status: int | None = None,
        code: int | str | None = None,
    ) -> None:
        self.message = message
        self.endpoint = endpoint
        self.http_status = http_status
        self.code = code
        where = f"{endpoint}: " if endpoint else ""
        detail = []
        if http_status is not None:
            detail.append(f"HTTP {http_status}")
        if code is not None:
            detail.append(f"code {code}")
        suffix = f" ({', '.join(detail)})" if detail else ""
        super().__init__(f"{where}{message}{suffix}")


class BadRequestError(APIError):
    """400: the server rejected the parameters."""


class AuthenticationError(APIError):
    """401/403: the API key is missing, wrong or not allowed."""


class InsufficientCreditsError(APIError):
    """402: the account cannot pay for this request."""


class NotFoundError(APIError):
    """404: no such task (or endpoint) for this account."""


class RateLimitError(APIError):
    """429: too many requests or too many live tasks; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class ServerError(APIError):
    """5xx (or 408): the server failed; a safe call may be retried."""


class ProtocolError(SoraError):
    """The server's answer could not be decoded into the expected shape."""

    def __init__(self, message: str, *, endpoint: str | None = None, body: str | None = None):
        self.endpoint = endpoint
        self.body = body
        where = f"{endpoint}: " if endpoint else ""
        super().__init__(f"{where}{message}")


class UnknownStatusError(ProtocolError):
    """A status answer named a task state the provider module does not know (``status``).

    Raised by the decoder for each such answer; the poller asks again a few times and then
    gives up on the task with one of these carrying ``task_id`` and ``times`` (how many
    consecutive answers said so). The task may have ended (cancelled, timed out on the
    server): look at it on the provider's side.
    """

    def __init__(
        self,
        status: object,
        *,
        endpoint: str | None = None,
        task_id: str | None = None,
        times: int | None = None,
    ) -> None:
        self.status = status
        self.task_id = task_id
        self.times = times
        text = f"unknown task status {status!r}"
        if task_id is not None:
            text = f"task {task_id}: {text}"
        if times is not None:
            text += f" in {times} consecutive answers; stopped following the task"
        super().__init__(text, endpoint=endpoint)


class CreateOutcomeUnknownError(SoraError):
    """A create request may have reached the server, but we do not know whether a task exists.

    It is never re-sent automatically (no provider accepts an idempotency key, so a re-send can
    pay twice). ``cause`` says what happened; ``request`` is what was being created.
    """

    def __init__(self, cause: str, *, request: Any = None, endpoint: str = "create") -> None:
        self.cause = cause
        self.request = request
        self.endpoint = endpoint
        super().__init__(
            f"{endpoint}: outcome unknown, the task may or may not exist ({cause}); "
            "not re-sent to avoid paying twice"
        )


class TaskFailedError(SoraError):
    """The task ended in the failed state."""

    def __init__(self, task_id: str, error: str | None) -> None:
        self.task_id = task_id
        self.error = error
        super().__init__(f"task {task_id} failed: {error or 'no reason given'}")


class WaitTimeoutError(SoraError, TimeoutError):
    """The task did not become terminal before the deadline."""

    def __init__(self, task_id: str, timeout: float, last_state: str | None = None) -> None:
        self.task_id = task_id
        self.timeout = timeout
        self.last_state = last_state
        last = last_state or "unknown"
        super().__init__(f"task {task_id} not finished after {timeout:g}s (last state: {last})")


class DownloadError(SoraError):
    """A result file could not be fetched whole and safely."""


# -- what a failed create proves -------------------------------------------------------------
# One policy, asked by the transport (resend?), the task lifecycle (free the slot?), the batch
# journal (not created / unknown?) and the batch runner (stop creating?). No provider accepts an
# idempotency key, so only an error that proves no task exists may lead to a second create.


def create_may_be_resent(exc: BaseException) -> bool:
    """A create that failed this way made no task and may simply be sent again.

    Nothing was sent (a connect error), or the server refused it for now (429).
    """
    return isinstance(exc, (ConnectError, RateLimitError))


def create_was_not_made(exc: BaseException) -> bool:
    """A create that failed this way provably made no task (nothing to pay, no slot in use).

    Besides :func:`create_may_be_resent`: a definite refusal (400, 401/403, 402, 404) and
    anything raised before the request was sent (validation, configuration, an operation the
    provider lacks). Everything else (read timeout, dropped connection, 5xx, an answer we cannot
    decode, an unmapped error, cancellation) leaves the outcome unknown.
    """
    return create_may_be_resent(exc) or isinstance(
        exc,
        (
            BadRequestError,
            AuthenticationError,
            InsufficientCreditsError,
            NotFoundError,
            ValidationError,
            NotSupportedError,
            ConfigurationError,
        ),
    )


def refuses_every_create(exc: BaseException) -> bool:
    """Every further create would fail alike: the account refused (bad key, no credits), or
    the create endpoint is not there (404: a wrong base URL)."""
    return isinstance(exc, (AuthenticationError, InsufficientCreditsError, NotFoundError))


def _short_repr(value: Any, limit: int = 80) -> str:
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
