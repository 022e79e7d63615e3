"""The batch journal's vocabulary: item states, snapshots, errors, and the request's JSON."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import operator
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from ...errors import ConfigurationError, SoraError, create_may_be_resent, create_was_not_made
from ...models import RETENTION, VideoRequest

__all__ = [
    "DEFAULT_JOURNAL_NAME",
    "CreateOutcome",
    "FileRecord",
    "ItemRow",
    "ItemState",
    "JournalError",
    "JournalEvent",
    "JournalItem",
    "JournalLockedError",
    "JournalMismatchError",
    "JournalOpenError",
    "JournalTransitionError",
    "JournalVersionError",
    "canonical_json",
    "classify_create_error",
    "default_journal_path",
    "describe_error",
    "fingerprint_bytes",
    "request_fields",
    "request_to_json",
    "utc_now",
]

#: The journal's file name inside the batch output directory.
DEFAULT_JOURNAL_NAME = ".sora-journal.sqlite3"


class JournalError(SoraError):
    """The journal cannot do what was asked (closed, or its file failed to read or write)."""


class JournalOpenError(JournalError, ConfigurationError):
    """The journal file cannot be used for this run."""


class JournalMismatchError(JournalOpenError):
    """The journal belongs to another batch (input file, provider or base URL differ)."""


class JournalLockedError(JournalOpenError):
    """Another process has the journal open."""


class JournalVersionError(JournalOpenError):
    """The journal was written by a newer sora_async (or is not a sora_async journal)."""


class JournalTransitionError(JournalError):
    """The operation is not allowed in the item's current state.

    Mostly a guard against paying twice (creating an item that already has a task or whose
    create may have happened) or against losing a task id.
    """

    def __init__(self, index: int, state: ItemState | None, message: str) -> None:
        self.index = index
        self.state = state
        super().__init__(f"item {index}: {message}")


class ItemState(str, enum.Enum):
    """Where an input item is; compares equal to its plain string."""

    PENDING = "pending"
    CREATING = "creating"
    NOT_CREATED = "not_created"
    UNKNOWN = "unknown"
    CREATED = "created"
    RUNNING = "running"
    DOWNLOADING = "downloading"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


_S = ItemState


class CreateOutcome(str, enum.Enum):
    """What a failed create call means for the item (see :func:`classify_create_error`)."""

    #: Nothing was created and sending again may work: re-queued as ``not_created``.
    RETRY = "retry"
    #: Nothing was created and sending the same again would be refused: terminal ``failed``.
    REJECTED = "rejected"
    #: A task may exist: ``unknown``, never re-sent without an explicit resubmit.
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


def classify_create_error(exc: BaseException) -> CreateOutcome:
    """Decide what an exception raised by a create call says about the task.

    Only errors that prove nothing was created count as not created: a connect error (nothing
    sent) and 429 are ``RETRY``; 400, 401/403, 402, 404 and errors raised before sending are
    ``REJECTED``. Everything else (read timeout, dropped connection, 5xx, an undecodable answer,
    an unmapped API error, cancellation, a foreign exception) is ``UNKNOWN``, because the
    server may have created, and charged for, the task.
    """
    if create_may_be_resent(exc):
        return CreateOutcome.RETRY
    if create_was_not_made(exc):
        return CreateOutcome.REJECTED
    return CreateOutcome.UNKNOWN


def describe_error(error: BaseException | str) -> str:
    if isinstance(error, BaseException):
        text = str(error)
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return error


@attrs.frozen
class FileRecord:
    """One downloaded file, recorded only once it is whole on disk."""

    path: str
    size: int
    sha256: str
    recorded_at: str


@attrs.frozen
class ItemRow:
    """An item without its files, as a run reads many of them (see Journal.rows)."""

    index: int
    state: ItemState
    task_id: str | None
    prompt: str
    request_json: str


@attrs.frozen
class JournalEvent:
    """One entry of the append-only history of an item."""

    seq: int
    index: int
    at: str
    event: str
    from_state: ItemState | None
    to_state: ItemState
    task_id: str | None
    detail: str | None


@attrs.frozen
class JournalItem:
    """A snapshot of one input item."""

    index: int
    prompt: str
    request_json: str
    state: ItemState
    task_id: str | None
    progress: int | None
    error: str | None
    refunded: bool | None
    estimated_credits: int | None
    video_urls: tuple[str, ...]
    files: tuple[FileRecord, ...]
    create_attempts: int
    resubmits: int
    added_at: str
    intent_at: str | None
    task_created_at: str | None
    finished_at: str | None
    done_at: str | None
    updated_at: str

    @property
    def request(self) -> dict[str, Any]:
        """The request fields as recorded."""
        value: dict[str, Any] = json.loads(self.request_json)
        return value

    @property
    def expires_at(self) -> str | None:
        """When the provider deletes the videos (seen succeeded + 15 days)."""
        return expiry(self.state, self.finished_at)

    def manifest_row(self) -> dict[str, Any]:
        """This item as one line of ``manifest.jsonl`` (JSON-ready)."""
        return manifest_row(
            index=self.index,
            prompt=self.prompt,
            state=self.state,
            task_id=self.task_id,
            files=[(f.path, f.size, f.sha256) for f in self.files],
            error=self.error,
            refunded=self.refunded,
            estimated_credits=self.estimated_credits,
            video_urls=list(self.video_urls),
            finished_at=self.finished_at,
            create_attempts=self.create_attempts,
            resubmits=self.resubmits,
        )


def expiry(state: ItemState, finished_at: str | None) -> str | None:
    """When the provider deletes an item's videos (seen succeeded + 15 days), or None."""
    if state not in (_S.DOWNLOADING, _S.SUCCEEDED) or finished_at is None:
        return None
    finished = dt.datetime.fromisoformat(finished_at)
    return (finished + RETENTION).isoformat(timespec="seconds")


def manifest_row(
    *,
    index: int,
    prompt: str,
    state: ItemState,
    task_id: str | None,
    files: Sequence[tuple[str, int, str]],
    error: str | None,
    refunded: bool | None,
    estimated_credits: int | None,
    video_urls: list[str],
    finished_at: str | None,
    create_attempts: int,
    resubmits: int,
) -> dict[str, Any]:
    """One line of ``manifest.jsonl`` (JSON-ready); ``files`` as ``(path, size, sha256)``."""
    return {
        "index": index,
        "prompt": prompt,
        "state": state.value,
        "task_id": task_id,
        "files": [path for path, _, _ in files],
        "error": error,
        "refunded": refunded,
        "estimated_credits": estimated_credits,
        "video_urls": video_urls,
        "expires_at": expiry(state, finished_at),
        "create_attempts": create_attempts,
        "resubmits": resubmits,
        "file_details": [
            {"path": path, "size": size, "sha256": sha256} for path, size, sha256 in files
        ],
    }


def default_journal_path(out_dir: str | os.PathLike[str]) -> Path:
    """Where ``batch --out DIR`` keeps its journal unless ``--journal`` says otherwise."""
    return Path(out_dir) / DEFAULT_JOURNAL_NAME


def fingerprint_bytes(data: bytes) -> str:
    """A stable fingerprint of the batch input file's bytes, for :meth:`Journal.open`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


# Sorted once: a batch turns a request into JSON for each prompt it registers.
_REQUEST_FIELDS = tuple(sorted(field.name for field in attrs.fields(VideoRequest)))
#: Every field's value in one C call, not a getattr call a field.
_REQUEST_VALUES = operator.attrgetter(*_REQUEST_FIELDS)
# Values JSON takes as they are (exact types: a str enum is an Enum first).
_PLAIN = frozenset({str, int, float, bool, type(None)})
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_to_json(request: VideoRequest) -> str:
    """The request's fields as canonical JSON for :meth:`Journal.record_intent`.

    Image bytes are stored as their size and hash, not the bytes; a path is stored as text.
    """
    return _CANONICAL.encode(request_fields(request))


def request_fields(request: VideoRequest) -> dict[str, Any]:
    """The request's fields as :func:`request_to_json` writes them (JSON-ready)."""
    fields: dict[str, Any] = {}
    for name, value in zip(_REQUEST_FIELDS, _REQUEST_VALUES(request), strict=True):
        if type(value) in _PLAIN:
            fields[name] = value
        elif isinstance(value, enum.Enum):
            fields[name] = value.value
        elif isinstance(value, (bytes, bytearray)):
            fields[name] = {"bytes": len(value), "sha256": hashlib.sha256(value).hexdigest()}
        elif isinstance(value, os.PathLike):
            fields[name] = os.fspath(value)
        else:
            fields[name] = value
    return fields


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
