"""Provider-neutral domain classes: what users build and what they get back.

Nothing here knows a wire format. Field checks that need no provider and no I/O (empty prompt,
unknown model, bad duration or aspect ratio) run when a :class:`VideoRequest` is built, so bad
input fails before anything is sent; provider capability checks live in each provider module.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import attrs

from .errors import TaskFailedError, ValidationError
from .images import is_http_url

__all__ = [
    "RETENTION",
    "AspectRatio",
    "Character",
    "Credits",
    "Model",
    "Quality",
    "TaskResult",
    "TaskState",
    "TaskStatus",
    "VideoRequest",
    "as_request",
    "check_task_id",
    "check_timeout",
    "expiry_of",
]

#: How long the providers keep a finished video (both documents say 15 days).
RETENTION = dt.timedelta(days=15)


class TaskState(str, enum.Enum):
    """Where a task is; compares equal to its plain string (``state == "succeeded"``)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_STATES

    def __str__(self) -> str:
        return self.value


_TERMINAL_STATES = (TaskState.SUCCEEDED, TaskState.FAILED)


class Model(str, enum.Enum):
    SORA_2 = "sora-2"
    SORA_2_PRO = "sora-2-pro"
    SORA_2_STABLE = "sora-2-stable"

    def __str__(self) -> str:
        return self.value


class AspectRatio(str, enum.Enum):
    """Canonical ratios; ``landscape``/``portrait`` (sora2api's words) are accepted aliases."""

    LANDSCAPE = "16:9"
    PORTRAIT = "9:16"

    def __str__(self) -> str:
        return self.value


class Quality(str, enum.Enum):
    STANDARD = "standard"
    HD = "hd"

    def __str__(self) -> str:
        return self.value


_ASPECT_ALIASES = {"landscape": AspectRatio.LANDSCAPE, "portrait": AspectRatio.PORTRAIT}
ALLOWED_DURATIONS = (10, 15)


def _allowed(values: Any) -> str:
    return ", ".join(str(v.value if isinstance(v, enum.Enum) else v) for v in values)


def _to_enum(enum_cls: type[enum.Enum], field: str, aliases: dict[str, Any] | None = None) -> Any:
    names = [*(m.value for m in enum_cls), *(aliases or {})]

    def convert(value: Any) -> Any:
        if value is None or isinstance(value, enum_cls):
            return value
        if isinstance(value, str):
            key = value.strip().lower()
            if aliases and key in aliases:
                return aliases[key]
            for member in enum_cls:
                if member.value == key:
                    return member
        raise ValidationError(field, value, _allowed(names))

    return convert


_to_model = _to_enum(Model, "model")
_to_aspect_ratio = _to_enum(AspectRatio, "aspect_ratio", _ASPECT_ALIASES)
_to_quality = _to_enum(Quality, "quality")


# None (unset) and a member are kept as they are before the general conversion is called:
# a request made from a plain prompt has all three unset.


def _convert_model(value: Any) -> Model | None:
    if value is None or type(value) is Model:
        return value
    return _to_model(value)  # type: ignore[no-any-return]


def _convert_aspect_ratio(value: Any) -> AspectRatio | None:
    if value is None or type(value) is AspectRatio:
        return value
    return _to_aspect_ratio(value)  # type: ignore[no-any-return]


def _convert_quality(value: Any) -> Quality | None:
    if value is None or type(value) is Quality:
        return value
    return _to_quality(value)  # type: ignore[no-any-return]


#: The SDK's own bound on a prompt, in characters. Neither provider document gives one; a real
#: prompt is a few hundred characters, and a runaway one (a whole file pasted by mistake) is
#: refused before it is paid for, journaled and shown on every screen.
MAX_PROMPT_CHARS = 20_000
#: The longest watermark text accepted (sora2api documents none; it is drawn on the video).
MAX_WATERMARK_CHARS = 1_000
#: C0 controls and DEL, except tab, line feed and carriage return, which prompts may hold.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _check_text(field: str, value: str, allowed: str, max_chars: int) -> None:
    """Refuse what no provider can take as text: control characters (NUL included), lone
    surrogates (not encodable as UTF-8) and runaway lengths."""
    control = _CONTROL.search(value)
    if control is not None:
        reason = f"control character U+{ord(control.group()):04X} at position {control.start()}"
        raise ValidationError(field, value, allowed, reason=reason)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        reason = f"not valid Unicode (a lone surrogate at position {exc.start})"
        raise ValidationError(field, value, allowed, reason=reason) from None
    if len(value) > max_chars:
        reason = f"{len(value)} characters, over the limit of {max_chars}"
        raise ValidationError(field, value, allowed, reason=reason)


_PROMPT_FORM = f"a non-empty string of at most {MAX_PROMPT_CHARS} characters, no control characters"


def _check_prompt(_: Any, __: Any, value: Any) -> None:
    if not isinstance(value, str):
        raise ValidationError("prompt", value, _PROMPT_FORM)
    if not value.strip():
        raise ValidationError("prompt", value, _PROMPT_FORM, reason="empty prompt")
    _check_text("prompt", value, _PROMPT_FORM, MAX_PROMPT_CHARS)


def _check_watermark(_: Any, __: Any, value: Any) -> None:
    allowed = f"a string of at most {MAX_WATERMARK_CHARS} characters, no control characters"
    if value is None:
        return
    if not isinstance(value, str):
        raise ValidationError("watermark", value, allowed)
    _check_text("watermark", value, allowed, MAX_WATERMARK_CHARS)


def _check_duration(_: Any, __: Any, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value not in ALLOWED_DURATIONS:
        raise ValidationError("duration", value, _allowed(ALLOWED_DURATIONS) + " (seconds)")


def _to_duration(value: Any) -> Any:
    # "15" from a CLI flag or a JSONL file means 15; anything else is left for the check.
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


def _check_image(_: Any, __: Any, value: Any) -> None:
    if value is None or isinstance(value, (str, bytes, os.PathLike)):
        if isinstance(value, (str, bytes)) and not value:
            raise ValidationError("image", value, "a file path, image bytes or an http(s) URL")
        return
    raise ValidationError("image", value, "a file path, image bytes or an http(s) URL")


class Character(NamedTuple):
    """freesora (VIP): a character to keep in the video, shown in a clip.

    ``url`` is the clip (http(s)); ``timestamps`` is where in it the character appears,
    ``"start,end"`` in seconds (the document's example: ``"0,3"``). A pair rather than an
    attrs class so that a request's JSON (the batch journal) round-trips it as ``[url, ts]``.
    """

    url: str
    timestamps: str


#: The longest remix target id accepted; the document's pids are short ("s_xxx").
MAX_REMIX_TARGET_ID = 256
_PID = re.compile(r"[!-~]+")
_CHARACTER_FORMS = 'a list of {"url": "https://...", "timestamps": "start,end"} items'
_TIMESTAMPS_FORM = 'seconds "start,end" with 0 <= start < end, e.g. "0,3"'


def _check_remix_target_id(_: Any, __: Any, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not _PID.fullmatch(value) or len(value) > MAX_REMIX_TARGET_ID:
        raise ValidationError(
            "remix_target_id",
            value,
            f"the pid of an earlier video (result_pid, e.g. 's_...'): up to "
            f"{MAX_REMIX_TARGET_ID} printable characters, no spaces",
        )


def _to_timestamps(field: str, value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        bounds: list[Any] = list(value)
    elif isinstance(value, str):
        bounds = value.split(",")
    else:
        raise ValidationError(field, value, _TIMESTAMPS_FORM)
    numbers: list[float] = []
    for bound in bounds:
        if isinstance(bound, bool):
            raise ValidationError(field, value, _TIMESTAMPS_FORM)
        try:
            number = float(bound.strip() if isinstance(bound, str) else bound)
        except (TypeError, ValueError, OverflowError):
            raise ValidationError(field, value, _TIMESTAMPS_FORM) from None
        numbers.append(number)
    if len(numbers) != 2 or not all(math.isfinite(n) and n >= 0 for n in numbers):
        raise ValidationError(field, value, _TIMESTAMPS_FORM)
    if numbers[0] >= numbers[1]:
        raise ValidationError(field, value, _TIMESTAMPS_FORM, reason="start is not before end")
    return ",".join(f"{n:g}" for n in numbers)


def _to_character(index: int, item: Any) -> Character:
    where = f"characters[{index}]"
    if isinstance(item, Mapping):
        unknown = sorted(set(map(str, item)) - {"url", "timestamps"})
        if unknown:
            raise ValidationError(
                where, item, "the keys url and timestamps", reason=f"unknown {', '.join(unknown)}"
            )
        url, timestamps = item.get("url"), item.get("timestamps")
    elif isinstance(item, (list, tuple)) and len(item) == 2:
        url, timestamps = item
    else:
        raise ValidationError(where, item, _CHARACTER_FORMS)
    if not isinstance(url, str) or not is_http_url(url.strip()):
        raise ValidationError(f"{where}.url", url, "an http(s) URL of the character's clip")
    return Character(url.strip(), _to_timestamps(f"{where}.timestamps", timestamps))


def _to_characters(value: Any) -> tuple[Character, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise ValidationError("characters", value, _CHARACTER_FORMS)
    if not value:
        raise ValidationError("characters", value, _CHARACTER_FORMS + ", at least one; or unset")
    return tuple(_to_character(i, item) for i, item in enumerate(value))


def _image_repr(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return repr(value)


@attrs.frozen
class VideoRequest:
    """One video to generate, independent of the provider that will make it.

    ``None`` means "the provider's default". Fields a provider cannot honour are rejected by
    that provider before anything is sent, never silently dropped.
    """

    prompt: str = attrs.field(validator=_check_prompt)
    model: Model | None = attrs.field(default=None, kw_only=True, converter=_convert_model)
    aspect_ratio: AspectRatio | None = attrs.field(
        default=None, kw_only=True, converter=_convert_aspect_ratio
    )
    # The optional fields are checked in __attrs_post_init__, not by a validator each.
    duration: int | None = attrs.field(default=None, kw_only=True, converter=_to_duration)
    quality: Quality | None = attrs.field(default=None, kw_only=True, converter=_convert_quality)
    #: A local path, raw image bytes, or an http(s) URL.
    image: str | bytes | os.PathLike[str] | None = attrs.field(
        default=None, kw_only=True, repr=_image_repr
    )
    #: sora2api: text drawn on the video.
    watermark: str | None = attrs.field(default=None, kw_only=True)
    #: freesora: whether the video is listed publicly.
    public: bool | None = attrs.field(default=None, kw_only=True)
    #: sora2api: where the provider POSTs the completion notice.
    callback_url: str | None = attrs.field(default=None, kw_only=True)
    #: freesora (VIP): continue or remix an earlier video, named by its pid (``result_pid``).
    remix_target_id: str | None = attrs.field(default=None, kw_only=True)
    #: freesora (VIP): characters to keep, each a :class:`Character` (or a mapping with ``url``
    #: and ``timestamps``, or a ``[url, timestamps]`` pair).
    characters: tuple[Character, ...] | None = attrs.field(
        default=None, kw_only=True, converter=_to_characters
    )

    def __attrs_post_init__(self) -> None:
        # The optional fields' checks in field order (after the prompt's validator, as their
        # validators ran), each only for a field that is set: a validator each was a call
        # each for every request made, and a request from a plain prompt sets none of them.
        if self.duration is not None:
            _check_duration(self, None, self.duration)
        if self.image is not None:
            _check_image(self, None, self.image)
        if self.watermark is not None:
            _check_watermark(self, None, self.watermark)
        if self.public is not None and not isinstance(self.public, bool):
            raise ValidationError("public", self.public, "true or false")
        if self.callback_url is not None and not isinstance(self.callback_url, str):
            raise ValidationError("callback_url", self.callback_url, "a string")
        if self.remix_target_id is not None:
            _check_remix_target_id(self, None, self.remix_target_id)


def check_task_id(task_id: str) -> None:
    """Refuse an empty task id before it becomes a request for every task or none.

    Public so that the client, the CLI and the batch runner check ids the way providers do.
    """
    if not isinstance(task_id, str) or not task_id.strip():
        raise ValidationError("task_id", task_id, "a non-empty task id string")


def check_timeout(timeout: object) -> None:
    """Refuse a wait deadline that would end at once or never (None: the client's default)."""
    if timeout is None:
        return
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or math.isnan(timeout)
        or timeout <= 0
    ):
        raise ValidationError("timeout", timeout, "a number of seconds > 0, or None")


def as_request(request: object, field: str = "request") -> VideoRequest:
    """A request from a VideoRequest or a plain prompt string; anything else names ``field``."""
    if isinstance(request, str):
        return VideoRequest(request)
    if not isinstance(request, VideoRequest):
        raise ValidationError(field, request, "a VideoRequest or a prompt string")
    return request


@attrs.frozen
class TaskStatus:
    """One observation of a task, decoded from the provider's answer."""

    task_id: str
    state: TaskState
    progress: int | None = None
    video_urls: list[str] = attrs.field(factory=list)
    error: str | None = None
    #: freesora reports refunds of failed tasks; None where the provider says nothing.
    refunded: bool | None = None
    #: When the task finished on the server (aware, UTC), where the provider says so.
    finished_at: dt.datetime | None = None
    #: The decoded provider payload (its wire class), for whatever we do not map.
    raw: Any = attrs.field(default=None, eq=False, repr=False)

    @property
    def is_terminal(self) -> bool:
        # TaskState.is_terminal, asked without a second property call: every poll asks.
        return self.state in _TERMINAL_STATES


@attrs.frozen
class TaskResult:
    """The end of one request: a terminal task, or a request that never became a task."""

    task_id: str | None
    request: VideoRequest | None
    state: TaskState
    video_urls: list[str] = attrs.field(factory=list)
    error: str | None = None
    refunded: bool | None = None
    #: When the provider deletes the files: 15 days from when the task finished on the server,
    #: or from when it was seen finished where the provider does not say.
    expires_at: dt.datetime | None = None
    #: The caller's key for this request (in ``generate_many``: its input position).
    key: Any = None
    #: Files written for this result (``generate(download_to=...)``, ``generate_many``): the
    #: same paths ``download()`` returns.
    files: list[Path] = attrs.field(factory=list)
    #: Why the files could not be fetched, for a task that itself succeeded.
    download_error: str | None = None
    #: The exception behind a failure that did not come from the task itself.
    exception: BaseException | None = attrs.field(default=None, eq=False, repr=False)
    #: The last status seen, if any.
    status: TaskStatus | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def ok(self) -> bool:
        """The task succeeded and, where files were asked for, they were written whole."""
        return self.state is TaskState.SUCCEEDED and self.download_error is None

    def raise_for_state(self) -> TaskResult:
        """Return self when ok; raise TaskFailedError otherwise (for code that prefers raising)."""
        if not self.ok:
            raise TaskFailedError(
                self.task_id or "<never created>", self.error or self.download_error
            )
        return self

    @classmethod
    def from_status(
        cls,
        status: TaskStatus,
        request: VideoRequest | None = None,
        *,
        key: Any = None,
        seen_at: dt.datetime | None = None,
    ) -> TaskResult:
        seen = seen_at or dt.datetime.now(dt.timezone.utc)
        return cls(
            task_id=status.task_id,
            request=request,
            state=status.state,
            video_urls=list(status.video_urls),
            error=status.error,
            refunded=status.refunded,
            expires_at=expiry_of(status, seen) if status.state is TaskState.SUCCEEDED else None,
            status=status,
            key=key,
        )

    @classmethod
    def from_exception(
        cls,
        exc: BaseException,
        request: VideoRequest | None,
        task_id: str | None = None,
        *,
        key: Any = None,
    ) -> TaskResult:
        return cls(
            task_id=task_id,
            request=request,
            state=TaskState.FAILED,
            error=f"{type(exc).__name__}: {exc}",
            exception=exc,
            key=key,
        )


def expiry_of(status: TaskStatus, seen_at: dt.datetime) -> dt.datetime:
    """When the provider deletes a succeeded task's files: 15 days after it finished.

    The server's own finish time is used where the provider gives one (an adopted task may have
    finished days before we looked), but never a time after ``seen_at``: a task cannot finish
    after it was seen finished, and a zone-less server time read as UTC may be hours ahead of
    the truth. Erring early is the safe side of a deadline to download by.
    """
    finished = status.finished_at
    if finished is None or finished > seen_at:
        finished = seen_at
    return finished + RETENTION


@attrs.frozen
class Credits:
    """An account balance (freesora's get-user-credits)."""

    left_credits: int
    is_recharged: bool | None = None
    is_pro: bool | None = None
    is_vip: bool | None = None
