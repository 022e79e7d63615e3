"""sora2api ("Sora2API", api.sora2api.ai): paths, wire classes, state mapping.

Every answer is ``{"code": 200, "msg": ..., "data": ...}``; any other code is an error even
with HTTP 200, and real HTTP statuses (400/401/402/429/500) are used too. One model (no model
field), ``landscape``/``portrait``, ``standard``/``hd``, a watermark text, image URLs only, and
a completion callback (``callBackUrl``). A task's state is ``successFlag``: 0 generating,
1 done, 2 creation failed, 3 generation failed. No balance endpoint and no published prices.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar, Final

import attrs

from ..calls import ApiCall, Endpoint, RawResponse
from ..errors import NotSupportedError, ProtocolError, ValidationError
from ..images import PreparedImage, image_kind, is_http_url
from ..models import (
    AspectRatio,
    Credits,
    Model,
    Quality,
    TaskState,
    TaskStatus,
    VideoRequest,
    check_task_id,
)
from ..polling import PollProfile
from ._wire import (
    Codec,
    Unusual,
    dedupe_urls,
    make_converters,
    note_unknown,
    parse_wire_time,
    text,
    texts,
    wire,
)

__all__ = [
    "Sora2Api",
    "Sora2ApiCreated",
    "Sora2ApiRecord",
    "Sora2ApiResult",
]

logger = logging.getLogger(__name__)

CREATE_PATH = "/generate"
STATUS_PATH = "/record-info"

_ASPECT = {AspectRatio.LANDSCAPE: "landscape", AspectRatio.PORTRAIT: "portrait"}
_FLAG_STATES = {
    0: TaskState.RUNNING,
    1: TaskState.SUCCEEDED,
    2: TaskState.FAILED,
    3: TaskState.FAILED,
}
_FLAG_FAILURES = {2: "task creation failed", 3: "video generation failed"}
#: Where a completion callback may name its task: data.<key> (record-info shape) or <key>.
_CALLBACK_TASK_ID_KEYS = ("taskId", "task_id")
# A task id longer than this is not a provider id; refusing it keeps the receiver's memory
# per remembered callback bounded.
_MAX_CALLBACK_TASK_ID = 256
_unknown_seen: set[str] = set()

#: The document's sample loop waits 30 s between polls, but its tasks take minutes and a 30 s
#: gap adds up to 30 s of latency to every video. A base of 10 s keeps that small at a third
#: of freesora's request rate; long tasks back off from it anyway, and with a callback the
#: polls only guard against a lost one. The prior: its sample shows five minutes from
#: createTime to completeTime. One model, no model field.
POLL_PROFILE: Final = PollProfile(
    provider="sora2api",
    base_interval=10.0,
    min_interval=5.0,
    max_interval=60.0,
    callback_fallback_interval=60.0,
    expected_duration=300.0,
    default_model=Model.SORA_2.value,
)


# --- wire classes: the ``data`` member of each answer, as the document shows it -------------


@attrs.frozen
class Sora2ApiCreated:
    """``data`` of the generate answer."""

    task_id: str = attrs.field(metadata=wire("taskId"))


@attrs.frozen
class Sora2ApiResult:
    """``data.response`` of record-info: where the finished video is.

    The document shows only ``imageUrl`` (it holds the video); ``resultUrls`` is taken too in
    case the list form that sibling APIs use turns up.
    """

    image_url: str | None = attrs.field(default=None, metadata=wire("imageUrl"))
    result_urls: list[str] | None = attrs.field(default=None, metadata=wire("resultUrls"))


@attrs.frozen
class Sora2ApiRecord:
    """``data`` of record-info."""

    success_flag: int = attrs.field(metadata=wire("successFlag"))
    task_id: str | None = attrs.field(default=None, metadata=wire("taskId"))
    response: Sora2ApiResult | None = None
    error_code: int | str | None = attrs.field(default=None, metadata=wire("errorCode"))
    error_message: str | None = attrs.field(default=None, metadata=wire("errorMessage"))
    # An echo of our own request (a JSON string in the document) and two times: typed loosely
    # so that an odd value never fails a poll. completeTime dates the 15-day retention.
    param_json: Any = attrs.field(default=None, metadata=wire("paramJson"))
    create_time: str | int | None = attrs.field(default=None, metadata=wire("createTime"))
    complete_time: str | int | None = attrs.field(default=None, metadata=wire("completeTime"))


_LENIENT, _STRICT = make_converters(Sora2ApiCreated, Sora2ApiResult, Sora2ApiRecord)


def _fast_created(data: Any) -> Sora2ApiCreated | None:
    """The generate answer's ``data`` when it is usual (see ``_wire.FastReader``), else None."""
    if type(data) is not dict:
        return None
    task_id = data.get("taskId")
    return Sora2ApiCreated(task_id) if type(task_id) is str else None


def _fast_record(data: Any) -> Sora2ApiRecord | None:
    """record-info's ``data`` when it is usual (see ``_wire.FastReader``), else None."""
    if type(data) is not dict:
        return None
    success_flag = data.get("successFlag")
    error_code = data.get("errorCode")
    answer = data.get("response")
    if (
        type(success_flag) is not int
        or (error_code is not None and type(error_code) is not int and type(error_code) is not str)
        or (answer is not None and type(answer) is not dict)
    ):
        return None
    try:
        return Sora2ApiRecord(
            success_flag=success_flag,
            task_id=text(data.get("taskId")),
            response=None
            if answer is None
            else Sora2ApiResult(text(answer.get("imageUrl")), texts(answer.get("resultUrls"))),
            error_code=error_code,
            error_message=text(data.get("errorMessage")),
            param_json=data.get("paramJson"),
            create_time=_time_field(data.get("createTime")),
            complete_time=_time_field(data.get("completeTime")),
        )
    except Unusual:
        return None


def _time_field(value: Any) -> str | int | None:
    if value is None or type(value) is str or type(value) is int:
        return value
    raise Unusual


_FAST = {Sora2ApiCreated: _fast_created, Sora2ApiRecord: _fast_record}


def _failure_text(record: Sora2ApiRecord) -> str:
    what = _FLAG_FAILURES.get(record.success_flag, "task failed")
    message = (record.error_message or "").strip()
    text = f"{what}: {message}" if message else what
    code = record.error_code
    if code not in (None, 0, "", "0"):
        text += f" (error code {code})"
    return text


class Sora2Api:
    """The sora2api wire format. Stateless; ``strict=True`` refuses undocumented fields."""

    name: ClassVar[str] = "sora2api"
    default_base_url: ClassVar[str] = "https://api.sora2api.ai/api/v1/sora2"
    poll_profile: ClassVar[PollProfile] = POLL_PROFILE
    supports_credits: ClassVar[bool] = False
    supports_callbacks: ClassVar[bool] = True
    accepts_image_bytes: ClassVar[bool] = False

    def __init__(self, *, strict: bool = False) -> None:
        self._codec = Codec(
            provider=self.name,
            success_code=200,
            message_keys=("msg", "message"),
            converter=_STRICT if strict else _LENIENT,
            strict=strict,
            fast=_FAST,
        )

    def __repr__(self) -> str:
        return f"Sora2Api(strict={self._codec.strict})"

    # --- requests ----------------------------------------------------------------------------

    def check_request(self, request: VideoRequest) -> None:
        if request.model is not None and request.model is not Model.SORA_2:
            raise ValidationError(
                "model",
                request.model.value,
                f"{Model.SORA_2.value} or unset",
                reason="sora2api runs one model and takes no model field",
            )
        for field, value in (
            ("duration", request.duration),
            ("public", request.public),
            ("remix_target_id", request.remix_target_id),
            ("characters", request.characters),
        ):
            if value is not None:
                # remix_target_id and characters are freesora's (VIP) features.
                raise ValidationError(
                    field, value, "unset (None)", reason=f"sora2api does not support {field}"
                )
        if request.watermark is not None and not request.watermark.strip():
            raise ValidationError("watermark", request.watermark, "non-empty text or unset")
        if request.callback_url is not None and not is_http_url(request.callback_url.strip()):
            raise ValidationError("callback_url", request.callback_url, "an http(s) URL")
        if request.image is not None:
            image_kind(request.image, accepts_bytes=False, provider=self.name)

    def create_call(self, request: VideoRequest, image: PreparedImage | None) -> ApiCall:
        self.check_request(request)
        payload: dict[str, Any] = {"prompt": request.prompt}
        image_url = image.url if image is not None else None
        if image_url is None and request.image is not None:
            # check_request has made sure it is an http(s) URL.
            image_url = str(request.image).strip()
        if image_url is not None:
            payload["imageUrls"] = [image_url]
        if request.aspect_ratio is not None:
            payload["aspectRatio"] = _ASPECT[AspectRatio(request.aspect_ratio)]
        if request.quality is not None:
            payload["quality"] = Quality(request.quality).value
        if request.watermark is not None:
            payload["watermark"] = request.watermark
        if request.callback_url is not None:
            payload["callBackUrl"] = request.callback_url.strip()
        return ApiCall(endpoint=Endpoint.CREATE, method="POST", path=CREATE_PATH, json=payload)

    def status_call(self, task_id: str) -> ApiCall:
        check_task_id(task_id)
        return ApiCall(
            endpoint=Endpoint.STATUS, method="GET", path=STATUS_PATH, params={"taskId": task_id}
        )

    def credits_call(self) -> ApiCall:
        raise NotSupportedError(
            "sora2api has no credits endpoint: its API publishes no balance or prices "
            "(check the balance in the sora2api console)"
        )

    def estimate_credits(self, request: VideoRequest) -> int | None:
        return None

    # --- answers -----------------------------------------------------------------------------

    def decode_create(self, response: RawResponse) -> str:
        created = self._codec.decode(response, Sora2ApiCreated)
        if not created.task_id.strip():
            raise ProtocolError(
                "sora2api generate answer has an empty taskId", endpoint=response.endpoint
            )
        return created.task_id.strip()

    def decode_status(self, task_id: str, response: RawResponse) -> TaskStatus:
        record = self._codec.decode(response, Sora2ApiRecord)
        if record.task_id and record.task_id.strip() != task_id.strip():
            # Taking another task's video for ours would be worse than failing the poll.
            raise ProtocolError(
                f"sora2api answered about task {record.task_id!r} when asked about {task_id!r}",
                endpoint=response.endpoint,
            )
        state = _FLAG_STATES.get(record.success_flag)
        if state is None:
            note_unknown(logger, _unknown_seen, "sora2api successFlag", record.success_flag)
            state = TaskState.RUNNING
        result = record.response
        urls = dedupe_urls([result.image_url, *(result.result_urls or ())]) if result else []
        return TaskStatus(
            task_id=task_id,
            state=state,
            progress=None,
            video_urls=urls,
            error=_failure_text(record) if state is TaskState.FAILED else None,
            refunded=None,
            finished_at=parse_wire_time(record.complete_time) if state.is_terminal else None,
            raw=record,
        )

    def decode_credits(self, response: RawResponse) -> Credits:
        raise NotSupportedError("sora2api has no credits endpoint")

    def callback_task_id(self, body: bytes) -> str:
        """The task a completion callback (``callBackUrl``) is about; ProtocolError if none.

        The document does not print the callback body; it is read as record-info's shape
        (``data.taskId``), with a top-level id accepted too. Callbacks are unsigned, so only
        the id is read: it wakes that task's poller, which asks record-info for the truth.
        """
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            raise ProtocolError("body is not JSON") from None
        if isinstance(payload, dict):
            for container in (payload.get("data"), payload):
                if not isinstance(container, dict):
                    continue
                for key in _CALLBACK_TASK_ID_KEYS:
                    value = container.get(key)
                    if isinstance(value, int) and not isinstance(value, bool):
                        value = str(value)
                    if isinstance(value, str) and 0 < len(value) <= _MAX_CALLBACK_TASK_ID:
                        return value
        raise ProtocolError("no task id")
