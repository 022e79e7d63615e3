"""freesora ("AI Video API", freesoragenerator.com): paths, wire classes, state mapping.

Every answer is ``{"code": 0, "message": ..., "data": ...}``; any other code is an error even
with HTTP 200. Models sora-2, sora-2-pro and sora-2-stable; only sora-2-stable takes a
duration. Images go inline as a base64 data URL (``imageData``) or by URL (``url``, the legacy
field). Status strings are matched loosely because the document lists only some of them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import attrs

from ..calls import ApiCall, Endpoint, RawResponse
from ..errors import ProtocolError, UnknownStatusError, ValidationError
from ..images import PreparedImage, image_kind
from ..models import AspectRatio, Credits, Model, TaskState, TaskStatus, VideoRequest, check_task_id
from ..polling import PollProfile
from ._wire import Codec, dedupe_urls, make_converters, wire

__all__ = [
    "DEFAULT_DURATION",
    "FREESORA_PRICES",
    "FreeSora",
    "FreeSoraCreated",
    "FreeSoraCredits",
    "FreeSoraTask",
    "freesora_price",
]

logger = logging.getLogger(__name__)

CREATE_PATH = "/v1/video/sora-video"
STATUS_PATH = "/video-generations/check-result"
CREDITS_PATH = "/get-user-credits"

DEFAULT_MODEL = Model.SORA_2
#: The only model whose payload takes a duration.
DURATION_MODEL = Model.SORA_2_STABLE
#: A request without a duration runs for this long (freesora's default).
DEFAULT_DURATION = 10

#: Credits per task, from the document: Sora 2 and Sora 2 Stable cost 100/150 for 10s/15s,
#: Sora 2 Pro 375/675 (storyboard, not a model this SDK sends, 375/675/875 for 10s/15s/25s).
#: Failed jobs are refunded automatically.
FREESORA_PRICES: Mapping[tuple[Model, int], int] = {
    (Model.SORA_2, 10): 100,
    (Model.SORA_2, 15): 150,
    (Model.SORA_2_STABLE, 10): 100,
    (Model.SORA_2_STABLE, 15): 150,
    (Model.SORA_2_PRO, 10): 375,
    (Model.SORA_2_PRO, 15): 675,
}


def freesora_price(model: Model, duration: int | None) -> int:
    """Credits freesora deducts for one task of this model and duration."""
    return FREESORA_PRICES[(model, duration or DEFAULT_DURATION)]


_STATES: dict[str, TaskState] = {
    **dict.fromkeys(("pending", "queued", "waiting", "submitted"), TaskState.PENDING),
    **dict.fromkeys(("running", "processing", "generating", "in_progress"), TaskState.RUNNING),
    **dict.fromkeys(("succeeded", "success", "completed"), TaskState.SUCCEEDED),
    **dict.fromkeys(("failed", "error", "cancelled"), TaskState.FAILED),
}

#: The document asks for a poll "every 3-5 seconds": the base is the middle, the floor its
#: lower bound. The priors: Sora 2 renders of 10-15 s clips typically take two to four
#: minutes, Pro renders about twice that. They are only hints (see sora_async.polling).
POLL_PROFILE: Final = PollProfile(
    provider="freesora",
    base_interval=4.0,
    min_interval=3.0,
    max_interval=60.0,
    callback_fallback_interval=60.0,
    expected_duration=180.0,
    expected_durations={
        Model.SORA_2.value: 180.0,
        Model.SORA_2_STABLE.value: 180.0,
        Model.SORA_2_PRO.value: 360.0,
    },
    default_model=Model.SORA_2.value,
)


# --- wire classes: the ``data`` member of each answer, as the document shows it -------------


@attrs.frozen
class FreeSoraCreated:
    """``data`` of the create answer. The sample says ``id``, the prose says ``taskId``."""

    id: str | None = None
    task_id: str | None = attrs.field(default=None, metadata=wire("taskId"))


@attrs.frozen
class FreeSoraTask:
    """``data`` of check-result. It names no finish time, so expiry counts from our sighting."""

    status: str
    progress: int | float | None = None
    result_url: str | None = None
    result_urls: list[str] | None = None
    failure_reason: str | None = None
    error_message: str | None = None
    credits_refunded: bool | None = None
    # Audit and remix details we carry but never interpret: loosely typed so that a change
    # in them never breaks a poll.
    refund_trans_no: str | int | None = None
    result_pid: str | None = None
    result_pids: list[str] | None = None
    metadata: dict[str, Any] | None = None


@attrs.frozen
class FreeSoraCredits:
    """``data`` of get-user-credits."""

    left_credits: int
    is_recharged: bool | None = None
    is_pro: bool | None = None
    is_vip: bool | None = None


_LENIENT, _STRICT = make_converters(FreeSoraCreated, FreeSoraTask, FreeSoraCredits)


#: Every field the fast readers look at, None when the answer leaves it out: ``{**these,
#: **data}`` reads them all with one merge, where a ``data.get()`` each would be a call each.
_CREATED_FIELDS: Final = dict.fromkeys(("id", "taskId"))
_TASK_FIELDS: Final = dict.fromkeys(
    (
        "status", "progress", "result_url", "result_urls", "failure_reason", "error_message",
        "credits_refunded", "refund_trans_no", "result_pid", "result_pids", "metadata",
    )
)  # fmt: skip


def _fast_created(data: Any) -> FreeSoraCreated | None:
    """The create answer's ``data`` when it is usual (see ``_wire.FastReader``), else None."""
    if type(data) is not dict:
        return None
    fields = {**_CREATED_FIELDS, **data}
    task_id, other_id = fields["id"], fields["taskId"]
    if (task_id is not None and type(task_id) is not str) or (
        other_id is not None and type(other_id) is not str
    ):
        return None
    return FreeSoraCreated(task_id, other_id)


def _fast_task(data: Any) -> FreeSoraTask | None:
    """check-result's ``data`` when it is usual (see ``_wire.FastReader``), else None.

    The checks of ``_wire.text``, ``texts`` and ``flag``, written out: this reads every poll.
    """
    if type(data) is not dict:
        return None
    fields = {**_TASK_FIELDS, **data}
    status, progress = fields["status"], fields["progress"]
    refund, metadata = fields["refund_trans_no"], fields["metadata"]
    url, urls, pid, pids = (
        fields["result_url"], fields["result_urls"], fields["result_pid"], fields["result_pids"]
    )  # fmt: skip
    reason, message, refunded = (
        fields["failure_reason"], fields["error_message"], fields["credits_refunded"]
    )  # fmt: skip
    if (
        type(status) is not str
        or (progress is not None and type(progress) is not int and type(progress) is not float)
        or (refund is not None and type(refund) is not str and type(refund) is not int)
        or (metadata is not None and type(metadata) is not dict)
        or (url is not None and type(url) is not str)
        or (reason is not None and type(reason) is not str)
        or (message is not None and type(message) is not str)
        or (pid is not None and type(pid) is not str)
        or (refunded is not None and type(refunded) is not bool)
        or (urls is not None and type(urls) is not list)
        or (pids is not None and type(pids) is not list)
    ):
        return None
    for listed in (urls or ()), (pids or ()):
        for item in listed:
            if type(item) is not str:
                return None
    return FreeSoraTask(
        status=status,
        progress=progress,
        result_url=url,
        # New lists, as the converter makes.
        result_urls=None if urls is None else list(urls),
        failure_reason=reason,
        error_message=message,
        credits_refunded=refunded,
        refund_trans_no=refund,
        result_pid=pid,
        result_pids=None if pids is None else list(pids),
        metadata=None if metadata is None else dict(metadata),
    )


_FAST = {FreeSoraCreated: _fast_created, FreeSoraTask: _fast_task}


def _state_of(status: str) -> TaskState:
    state = _STATES.get(status)  # the usual answer names a state exactly
    if state is not None:
        return state
    key = status.strip().lower().replace("-", "_").replace(" ", "_")
    state = _STATES.get(key)
    if state is None:
        # Not "still running": a state nobody documented (canceled, timeout, ...) may be an
        # end. The poller asks again a few times, then gives the task up, naming it.
        raise UnknownStatusError(status.strip(), endpoint=Endpoint.STATUS)
    return state


def _progress(value: int | float | None) -> int | None:
    if type(value) is int and 0 <= value <= 100:
        return value  # the usual progress: what round(min(max(...))) would give back
    # isfinite() of an int beyond a float's range raises OverflowError: only floats need it.
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(min(max(value, 0), 100))


class FreeSora:
    """The freesora wire format. Stateless; ``strict=True`` refuses undocumented fields."""

    name: ClassVar[str] = "freesora"
    default_base_url: ClassVar[str] = "https://freesoragenerator.com/api"
    poll_profile: ClassVar[PollProfile] = POLL_PROFILE
    supports_credits: ClassVar[bool] = True
    supports_callbacks: ClassVar[bool] = False
    accepts_image_bytes: ClassVar[bool] = True

    def __init__(self, *, strict: bool = False) -> None:
        self._codec = Codec(
            provider=self.name,
            success_code=0,
            message_keys=("message", "msg"),
            converter=_STRICT if strict else _LENIENT,
            strict=strict,
            fast=_FAST,
        )

    def __repr__(self) -> str:
        return f"FreeSora(strict={self._codec.strict})"

    # --- requests ----------------------------------------------------------------------------

    def check_request(self, request: VideoRequest) -> None:
        model = request.model or DEFAULT_MODEL
        if request.duration is not None and model is not DURATION_MODEL:
            raise ValidationError(
                "duration",
                request.duration,
                f"only with model {DURATION_MODEL.value} (10 or 15); leave it unset for {model}",
                reason=f"freesora's {model} takes no duration",
            )
        for field, value in (
            ("quality", request.quality),
            ("watermark", request.watermark),
            ("callback_url", request.callback_url),
        ):
            if value is not None:
                raise ValidationError(
                    field, value, "unset (None)", reason=f"freesora does not support {field}"
                )
        if request.image is not None:
            image_kind(request.image, accepts_bytes=True, provider=self.name)

    def create_call(self, request: VideoRequest, image: PreparedImage | None) -> ApiCall:
        self.check_request(request)
        model = request.model or DEFAULT_MODEL
        payload: dict[str, Any] = {"model": model.value, "prompt": request.prompt}
        if image is not None or request.image is not None:
            payload.update(_image_fields(request, image))
        if request.aspect_ratio is not None:
            payload["aspectRatio"] = AspectRatio(request.aspect_ratio).value
        if request.duration is not None:
            payload["duration"] = request.duration
        if request.public is not None:
            payload["isPublic"] = request.public
        if request.remix_target_id is not None:
            payload["remixTargetId"] = request.remix_target_id
        if request.characters is not None:
            payload["characters"] = [
                {"url": c.url, "timestamps": c.timestamps} for c in request.characters
            ]
        return ApiCall(endpoint=Endpoint.CREATE, method="POST", path=CREATE_PATH, json=payload)

    def status_call(self, task_id: str) -> ApiCall:
        check_task_id(task_id)
        return ApiCall(
            endpoint=Endpoint.STATUS, method="POST", path=STATUS_PATH, json={"taskId": task_id}
        )

    def credits_call(self) -> ApiCall:
        # An empty JSON object rather than no body: the document sends a JSON content type,
        # and a server that parses the body would choke on an empty one.
        return ApiCall(endpoint=Endpoint.CREDITS, method="POST", path=CREDITS_PATH, json={})

    def estimate_credits(self, request: VideoRequest) -> int | None:
        model = request.model or DEFAULT_MODEL
        # Other models cannot be given a duration, so they run the default length.
        duration = request.duration if model is DURATION_MODEL else None
        return freesora_price(model, duration)

    # --- answers -----------------------------------------------------------------------------

    def decode_create(self, response: RawResponse) -> str:
        created = self._codec.decode(response, FreeSoraCreated)
        for given in (created.id, created.task_id):
            task_id = given.strip() if given else None
            if task_id:
                return task_id
        raise ProtocolError(
            "freesora create answer has no task id (data.id or data.taskId)",
            endpoint=response.endpoint,
        )

    def decode_status(self, task_id: str, response: RawResponse) -> TaskStatus:
        task = self._codec.decode(response, FreeSoraTask)
        state = _state_of(task.status)
        error = None
        if state is TaskState.FAILED:
            # Both when both are given: failure_reason is a short code, error_message prose.
            parts = [
                r.strip() for r in (task.failure_reason, task.error_message) if r and r.strip()
            ]
            reason = ": ".join(dict.fromkeys(parts))
            error = reason or f"task ended with status {task.status.strip()!r}"
        return TaskStatus(
            task_id=task_id,
            state=state,
            progress=_progress(task.progress),
            video_urls=dedupe_urls([task.result_url, *(task.result_urls or ())]),
            error=error,
            refunded=task.credits_refunded,
            raw=task,
        )

    def decode_credits(self, response: RawResponse) -> Credits:
        wire_credits = self._codec.decode(response, FreeSoraCredits)
        return Credits(
            left_credits=wire_credits.left_credits,
            is_recharged=wire_credits.is_recharged,
            is_pro=wire_credits.is_pro,
            is_vip=wire_credits.is_vip,
        )


def _image_fields(request: VideoRequest, image: PreparedImage | None) -> dict[str, str]:
    if image is None:
        if request.image is None:
            return {}
        if image_kind(request.image, provider=FreeSora.name) != "url":
            raise ValidationError(
                "image",
                request.image,
                "an image prepared by sora_async.images.prepare_image()",
                reason="local image not loaded",
            )
        return {"url": str(request.image).strip()}
    if image.data is not None:
        return {"imageData": image.data_url}
    if image.url is not None:
        return {"url": image.url}
    return {}
