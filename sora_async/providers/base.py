"""What every provider module offers: request builders and answer decoders, with no I/O.

A provider turns a :class:`~sora_async.models.VideoRequest` into an :class:`ApiCall` (method,
path relative to the base URL, JSON body, query) and turns a :class:`RawResponse` back into
models or into our errors. The transport sends calls and knows nothing of providers; the
client glues the two together. The call and answer classes live in :mod:`sora_async.calls`
and :class:`PreparedImage` in :mod:`sora_async.images`; they are re-exported here for older
importers.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from ..calls import ApiCall, Endpoint, RawResponse, parse_retry_after
from ..errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    InsufficientCreditsError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from ..images import PreparedImage
from ..models import Credits, TaskStatus, VideoRequest
from ..polling import PollProfile

__all__ = [
    "ApiCall",
    "Endpoint",
    "PreparedImage",
    "Provider",
    "RawResponse",
    "error_for_status",
    "parse_retry_after",
]


class Provider(Protocol):
    """A provider's wire format. Implementations are stateless and do no I/O."""

    name: ClassVar[str]
    default_base_url: ClassVar[str]
    #: How its tasks should be polled: cadence and prior durations (see sora_async.polling).
    poll_profile: ClassVar[PollProfile]
    supports_credits: ClassVar[bool]
    supports_callbacks: ClassVar[bool]
    #: Whether local image bytes can be sent (else only URLs).
    accepts_image_bytes: ClassVar[bool]

    def check_request(self, request: VideoRequest) -> None:
        """Raise ValidationError for any field this provider cannot honour."""

    def create_call(self, request: VideoRequest, image: PreparedImage | None) -> ApiCall:
        """The create's call; refuses what :meth:`check_request` refuses (a request without an
        image reaches the wire checked by this alone)."""

    def decode_create(self, response: RawResponse) -> str:
        """The new task id, or raise APIError / ProtocolError."""

    def status_call(self, task_id: str) -> ApiCall: ...

    def decode_status(self, task_id: str, response: RawResponse) -> TaskStatus: ...

    def credits_call(self) -> ApiCall:
        """Raise NotSupportedError where the provider has no balance endpoint."""

    def decode_credits(self, response: RawResponse) -> Credits: ...

    def estimate_credits(self, request: VideoRequest) -> int | None:
        """Credits one request costs, or None where the provider publishes no price."""


_STATUS_ERRORS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: AuthenticationError,
    404: NotFoundError,
    408: ServerError,
    422: BadRequestError,
    429: RateLimitError,
}


def error_for_status(
    status: int,
    message: str,
    *,
    endpoint: str,
    http_status: int | None,
    code: int | str | None = None,
    retry_after: float | None = None,
) -> APIError:
    """Map an HTTP status (or an envelope code that uses HTTP numbers) to our error class."""
    cls: type[APIError] = _STATUS_ERRORS.get(status, ServerError if status >= 500 else APIError)
    if cls is RateLimitError:
        return RateLimitError(
            message, retry_after=retry_after, endpoint=endpoint, http_status=http_status, code=code
        )
    return cls(message, endpoint=endpoint, http_status=http_status, code=code)
