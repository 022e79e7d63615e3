"""The batch journal: transitions, resume, refusal of foreign journals, crashes."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import zygote
from helpers import examples
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from journal_queries import (
    durability,
    history,
    manifest_rows,
    pending_creates,
    rejected,
    task_ids,
    to_download,
    to_poll,
    write_manifest,
)

from sora_async.batch.journal import (
    DEFAULT_JOURNAL_NAME,
    SCHEMA_VERSION,
    CreateOutcome,
    ItemState,
    Journal,
    JournalError,
    JournalLockedError,
    JournalMismatchError,
    JournalOpenError,
    JournalTransitionError,
    JournalVersionError,
    classify_create_error,
    default_journal_path,
    fingerprint_bytes,
    request_to_json,
)
from sora_async.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConnectError,
    ConnectionDroppedError,
    CreateOutcomeUnknownError,
    InsufficientCreditsError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ReadTimeoutError,
    ServerError,
    ValidationError,
)
from sora_async.models import VideoRequest

REPO = Path(__file__).resolve().parents[1]
FP = fingerprint_bytes(b"a kite\na boat\n")
REQ = json.dumps({"prompt": "p"})
SHA = "ab" * 32


def open_journal(path: Path, **overrides: Any) -> Journal:
    options: dict[str, Any] = {"input_fingerprint": FP, "provider": "freesora", "base_url": None}
    options.update(overrides)
    return Journal.open(path, **options)


@pytest.fixture
def jpath(tmp_path: Path) -> Path:
    return default_journal_path(tmp_path / "out")


@pytest.fixture
def journal(jpath: Path) -> Iterator[Journal]:
    j = open_journal(jpath)
    yield j
    j.close()


def created(j: Journal, index: int, task_id: str | None = None) -> None:
    j.record_intent(index, REQ, f"prompt {index}", 100)
    j.record_created(index, task_id or f"task-{index}")


def snapshot(j: Journal) -> dict[str, Any]:
    """Every answer the resume logic reads."""
    return {
        "rows": manifest_rows(j),
        "summary": j.summary(),
        "pending": [i.index for i in pending_creates(j)],
        "poll": [i.index for i in to_poll(j)],
        "download": [i.index for i in to_download(j)],
        "unknown": [i.index for i in j.unknown()],
        "rejected": [i.index for i in rejected(j)],
        "task_ids": task_ids(j),
    }


# -- opening --------------------------------------------------------------------------------


def test_new_journal_lives_in_the_out_dir_with_durable_settings(jpath: Path) -> None:
    assert jpath.name == DEFAULT_JOURNAL_NAME
    with open_journal(jpath) as j:
        assert jpath.is_file()
        assert durability(j) == {
            "journal_mode": "wal",
            "synchronous": "full",
            "locking_mode": "exclusive",
        }
        assert j.summary() == {state.value: 0 for state in ItemState}
    assert j.closed


def test_second_open_while_in_use_is_refused(jpath: Path) -> None:
    with open_journal(jpath) as j:
        created(j, 0)
        with pytest.raises(JournalLockedError, match="in use by another process") as info:
            open_journal(jpath)
        assert isinstance(info.value, ConfigurationError)
        assert j.record_status(0, "running", 5) == ItemState.RUNNING
    with open_journal(jpath) as again:
        assert again.get(0) is not None


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"input_fingerprint": fingerprint_bytes(b"other input")}, "different input file"),
        ({"provider": "sora2api"}, "provider 'freesora'"),
        ({"base_url": "http://127.0.0.1:9/api"}, "base URL"),
    ],
)
def test_a_journal_of_another_batch_is_refused(
    jpath: Path, overrides: dict[str, Any], needle: str
) -> None:
    with open_journal(jpath) as j:
        created(j, 0)
    with pytest.raises(JournalMismatchError) as info:
        open_journal(jpath, **overrides)
    message = str(info.value)
    assert needle in message
    assert "--out" in message
    assert "--journal" in message
    assert isinstance(info.value, ConfigurationError)
    # The refusal changed nothing and released the file.
    with open_journal(jpath) as j:
        assert task_ids(j) == {0: "task-0"}


def test_a_journal_without_tasks_follows_a_new_base_url(jpath: Path) -> None:
    # A batch that only ever met a wrong URL created nothing there: it is not tied to it.
    wrong = "http://127.0.0.1:9/wrong"
    with open_journal(jpath, base_url=wrong) as j:
        j.add_items([(0, "prompt 0", REQ)])
    with open_journal(jpath) as j:
        assert j.base_url is None
        created(j, 0)
    with pytest.raises(JournalMismatchError, match="base URL"):
        open_journal(jpath, base_url=wrong)


def test_every_difference_is_named_at_once(jpath: Path) -> None:
    open_journal(jpath).close()
    with pytest.raises(JournalMismatchError) as info:
        open_journal(jpath, input_fingerprint="sha256:00", provider="sora2api")
    assert "different input file" in str(info.value)
    assert "sora2api" in str(info.value)


def test_base_url_compared_without_trailing_slash(jpath: Path) -> None:
    open_journal(jpath, base_url="http://127.0.0.1:8080/api/").close()
    with open_journal(jpath, base_url="http://127.0.0.1:8080/api") as j:
        assert j.base_url == "http://127.0.0.1:8080/api"


def test_a_newer_schema_is_refused(jpath: Path) -> None:
    open_journal(jpath).close()
    conn = sqlite3.connect(jpath)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(JournalVersionError, match="newer sora_async") as info:
        open_journal(jpath)
    assert isinstance(info.value, ConfigurationError)


def test_a_foreign_sqlite_file_is_refused(jpath: Path) -> None:
    jpath.parent.mkdir(parents=True)
    conn = sqlite3.connect(jpath)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(JournalVersionError, match="not a sora-async journal"):
        open_journal(jpath)


def test_a_file_that_is_not_sqlite_is_refused(jpath: Path) -> None:
    jpath.parent.mkdir(parents=True)
    jpath.write_text('{"index": 0}\n' * 100)
    with pytest.raises(JournalOpenError, match="cannot use"):
        open_journal(jpath)


def test_a_closed_journal_refuses_calls(jpath: Path) -> None:
    j = open_journal(jpath)
    j.close()
    j.close()
    with pytest.raises(JournalError, match="closed"):
        j.items()
    with pytest.raises(JournalError, match="closed"):
        j.record_intent(0, REQ, "p")


# -- creates --------------------------------------------------------------------------------


def test_the_whole_life_of_an_item(journal: Journal) -> None:
    j = journal
    assert j.add_items([(0, "a kite", REQ), (1, "a boat", REQ)]) == 2
    assert j.add_items([(0, "changed", REQ)]) == 0
    assert [i.index for i in pending_creates(j)] == [0, 1]

    assert j.record_intent(0, REQ, "a kite", 150) == ItemState.CREATING
    assert [i.index for i in pending_creates(j)] == [1]
    assert j.record_created(0, "t-0") == ItemState.CREATED
    assert [i.index for i in to_poll(j)] == [0]
    assert j.record_status(0, "pending", None) == ItemState.CREATED
    assert j.record_status(0, "running", 30) == ItemState.RUNNING
    assert j.record_terminal(0, "succeeded", video_urls=["http://h/v.mp4"]) == (
        ItemState.DOWNLOADING
    )
    assert to_poll(j) == []
    assert [i.index for i in to_download(j)] == [0]
    assert j.record_download(0, "videos/00000.mp4", 1234, SHA) == ItemState.DOWNLOADING
    assert j.mark_done(0) == ItemState.SUCCEEDED
    assert to_download(j) == []

    item = j.get(0)
    assert item is not None
    assert (item.state, item.task_id, item.prompt, item.estimated_credits) == (
        ItemState.SUCCEEDED,
        "t-0",
        "a kite",
        150,
    )
    assert item.create_attempts == 1
    assert item.video_urls == ("http://h/v.mp4",)
    assert [(f.path, f.size, f.sha256) for f in item.files] == [("videos/00000.mp4", 1234, SHA)]
    assert item.intent_at and item.task_created_at and item.finished_at and item.done_at
    assert item.expires_at is not None
    assert item.request == {"prompt": "p"}
    # The usual path's steps are the item row's times, not event rows; a progress change is.
    assert [e.event for e in history(j, 0)] == ["status"]
    assert item.added_at <= item.intent_at <= item.task_created_at <= item.finished_at
    assert item.finished_at <= item.files[0].recorded_at <= item.done_at
    assert j.summary()["succeeded"] == 1
    assert j.summary()["pending"] == 1


def test_intent_for_an_unregistered_item_adds_it(journal: Journal) -> None:
    assert journal.record_intent(7, REQ, "late", None) == ItemState.CREATING
    item = journal.get(7)
    assert item is not None
    assert item.prompt == "late"
    assert journal.get(8) is None


def test_an_intent_without_a_request_keeps_the_registered_one(journal: Journal) -> None:
    registered = json.dumps({"prompt": "a kite", "duration": 15})
    journal.add_items([(0, "a kite", registered)])
    assert journal.record_intent(0, None, None, 150) == ItemState.CREATING
    item = journal.get(0)
    assert item is not None
    assert (item.prompt, item.request, item.estimated_credits) == (
        "a kite",
        {"prompt": "a kite", "duration": 15},
        150,
    )
    # Never registered: nothing to send, nothing written.
    with pytest.raises(JournalTransitionError, match="not registered"):
        journal.record_intent(7, None, None)
    assert journal.get(7) is None
    with pytest.raises(ValueError, match="together"):
        journal.record_intent(1, REQ, None)


def test_an_item_with_a_task_is_never_created_again(journal: Journal) -> None:
    j = journal
    created(j, 0)
    created(j, 1)
    j.record_status(1, "running", 10)
    created(j, 2)
    j.record_terminal(2, "succeeded", video_urls=["u"])
    created(j, 3)
    j.record_terminal(3, "failed", error="moderation")
    for index in range(4):
        with pytest.raises(JournalTransitionError, match="pay twice"):
            j.record_intent(index, REQ, "again")
        assert index not in [i.index for i in pending_creates(j)]
    assert task_ids(j) == {i: f"task-{i}" for i in range(4)}


def test_an_intent_in_flight_is_not_sent_twice(journal: Journal) -> None:
    journal.record_intent(0, REQ, "p")
    with pytest.raises(JournalTransitionError, match="in flight"):
        journal.record_intent(0, REQ, "p")


def test_intent_without_task_id_is_unknown_after_reopen(jpath: Path) -> None:
    with open_journal(jpath) as j:
        j.add_items([(0, "a", REQ), (1, "b", REQ)])
        j.record_intent(0, REQ, "a", 100)
    with open_journal(jpath) as j:
        item = j.get(0)
        assert item is not None
        assert item.state == ItemState.UNKNOWN
        assert item.error is not None
        assert "interrupted" in item.error
        assert [i.index for i in j.unknown()] == [0]
        assert [i.index for i in pending_creates(j)] == [1]
        with pytest.raises(JournalTransitionError, match="resubmit"):
            j.record_intent(0, REQ, "a", 100)


def test_unknown_is_created_again_only_after_resubmit(journal: Journal) -> None:
    j = journal
    j.record_intent(0, REQ, "p", 100)
    assert j.record_unknown(0, ReadTimeoutError("no answer")) == ItemState.UNKNOWN
    assert pending_creates(j) == []
    with pytest.raises(JournalTransitionError):
        j.record_intent(0, REQ, "p", 100)
    assert j.record_unknown(0, "still unknown") == ItemState.UNKNOWN

    assert j.resubmit_unknown(0) == ItemState.PENDING
    assert [i.index for i in pending_creates(j)] == [0]
    j.record_intent(0, REQ, "p", 100)
    j.record_created(0, "t-second")
    item = j.get(0)
    assert item is not None
    assert (item.resubmits, item.create_attempts, item.error) == (1, 2, None)
    resubmitted = [e for e in history(j, 0) if e.event == "resubmitted"]
    assert resubmitted[0].detail == "still unknown"
    with pytest.raises(JournalTransitionError, match="only an unknown item"):
        j.resubmit_unknown(0)


def test_a_task_id_learnt_later_resolves_unknown(journal: Journal) -> None:
    journal.record_intent(0, REQ, "p")
    journal.record_unknown(0, "dropped connection")
    assert journal.record_created(0, "t-late") == ItemState.CREATED
    assert journal.unknown() == []
    assert [i.index for i in to_poll(journal)] == [0]


@pytest.mark.parametrize(
    ("exc", "outcome", "state"),
    [
        (ConnectError("refused"), CreateOutcome.RETRY, ItemState.NOT_CREATED),
        (RateLimitError("busy", retry_after=3), CreateOutcome.RETRY, ItemState.NOT_CREATED),
        (BadRequestError("bad", http_status=400), CreateOutcome.REJECTED, ItemState.FAILED),
        (AuthenticationError("key", http_status=401), CreateOutcome.REJECTED, ItemState.FAILED),
        (
            InsufficientCreditsError("no credits", http_status=402),
            CreateOutcome.REJECTED,
            ItemState.FAILED,
        ),
        (NotFoundError("no route", http_status=404), CreateOutcome.REJECTED, ItemState.FAILED),
        (ValidationError("duration", 7, "10, 15"), CreateOutcome.REJECTED, ItemState.FAILED),
        (ReadTimeoutError("slow"), CreateOutcome.UNKNOWN, ItemState.UNKNOWN),
        (ConnectionDroppedError("reset"), CreateOutcome.UNKNOWN, ItemState.UNKNOWN),
        (ServerError("oops", http_status=502), CreateOutcome.UNKNOWN, ItemState.UNKNOWN),
        (ProtocolError("not json"), CreateOutcome.UNKNOWN, ItemState.UNKNOWN),
        (CreateOutcomeUnknownError("timeout"), CreateOutcome.UNKNOWN, ItemState.UNKNOWN),
        (RuntimeError("bug"), CreateOutcome.UNKNOWN, ItemState.UNKNOWN),
    ],
)
def test_a_create_error_is_recorded_by_what_it_proves(
    journal: Journal, exc: BaseException, outcome: CreateOutcome, state: ItemState
) -> None:
    assert classify_create_error(exc) is outcome
    journal.record_intent(0, REQ, "p", 100)
    assert journal.record_create_error(0, exc) is state
    item = journal.get(0)
    assert item is not None
    assert item.error is not None
    assert type(exc).__name__ in item.error
    assert ([i.index for i in pending_creates(journal)] == [0]) is (outcome is CreateOutcome.RETRY)


def test_402_is_terminal_with_its_reason_until_requeued(journal: Journal) -> None:
    j = journal
    j.record_intent(0, REQ, "p", 675)
    state = j.record_not_created(0, InsufficientCreditsError("not enough credits", http_status=402))
    assert state == ItemState.FAILED
    item = j.get(0)
    assert item is not None
    assert item.error is not None
    assert "not enough credits" in item.error
    assert item.task_id is None
    assert pending_creates(j) == []
    assert [i.index for i in rejected(j)] == [0]

    assert j.requeue_rejected(0) == ItemState.PENDING
    assert [i.index for i in pending_creates(j)] == [0]
    assert rejected(j) == []


def test_a_failed_task_cannot_be_requeued(journal: Journal) -> None:
    created(journal, 0)
    journal.record_terminal(0, "failed", error="content policy", refunded=True)
    assert rejected(journal) == []
    with pytest.raises(JournalTransitionError, match="without a task id"):
        journal.requeue_rejected(0)


def test_not_created_is_sent_again_and_counted(journal: Journal) -> None:
    journal.record_intent(0, REQ, "p")
    assert journal.record_not_created(0, "connection refused") == ItemState.NOT_CREATED
    assert [i.index for i in pending_creates(journal)] == [0]
    journal.record_intent(0, REQ, "p")
    journal.record_created(0, "t")
    item = journal.get(0)
    assert item is not None
    assert (item.create_attempts, item.error) == (2, None)


def test_outcomes_need_a_create_in_flight(journal: Journal) -> None:
    journal.add_items([(0, "p", REQ)])
    with pytest.raises(JournalTransitionError):
        journal.record_created(0, "t")
    with pytest.raises(JournalTransitionError):
        journal.record_not_created(0, "x")
    with pytest.raises(JournalTransitionError):
        journal.record_unknown(0, "x")
    with pytest.raises(JournalTransitionError):
        journal.record_created(5, "t")


def test_a_task_id_is_write_once_and_belongs_to_one_item(journal: Journal) -> None:
    created(journal, 0, "t-0")
    assert journal.record_created(0, "t-0") == ItemState.CREATED
    with pytest.raises(JournalTransitionError, match="refusing to replace"):
        journal.record_created(0, "t-other")
    journal.record_intent(1, REQ, "p")
    with pytest.raises(JournalTransitionError, match="already belongs to item 0"):
        journal.record_created(1, "t-0")
    assert task_ids(journal) == {0: "t-0"}


# -- polling and ends -----------------------------------------------------------------------


def test_status_never_moves_an_item_back(journal: Journal) -> None:
    j = journal
    created(j, 0)
    assert j.record_status(0, "running", 40) == ItemState.RUNNING
    assert j.record_status(0, "pending", None) == ItemState.RUNNING
    item = j.get(0)
    assert item is not None
    assert item.progress == 40
    j.record_terminal(0, "failed", error="boom")
    assert j.record_status(0, "running", 90) == ItemState.FAILED
    with pytest.raises(ValueError, match="record_terminal"):
        j.record_status(0, "succeeded", 100)
    with pytest.raises(ValueError, match="progress"):
        j.record_status(0, "running", 101)
    j.record_intent(1, REQ, "p")
    with pytest.raises(JournalTransitionError, match="no task to poll"):
        j.record_status(1, "running", 1)


def test_record_terminal_is_idempotent_and_final(journal: Journal) -> None:
    j = journal
    created(j, 0)
    created(j, 1)
    assert j.record_terminal(0, "failed", error="policy", refunded=True) == ItemState.FAILED
    assert j.record_terminal(0, "failed", error="other") == ItemState.FAILED
    with pytest.raises(JournalTransitionError, match="already ended"):
        j.record_terminal(0, "succeeded", video_urls=["u"])
    item = j.get(0)
    assert item is not None
    assert (item.error, item.refunded) == ("policy", True)

    j.record_terminal(1, "succeeded", video_urls=["old"])
    assert j.record_terminal(1, "succeeded", video_urls=["new"]) == ItemState.DOWNLOADING
    with pytest.raises(JournalTransitionError):
        j.record_terminal(1, "failed", error="late")
    item = j.get(1)
    assert item is not None
    assert item.video_urls == ("new",)
    with pytest.raises(ValueError, match="not one string"):
        j.record_terminal(1, "succeeded", video_urls="new")
    with pytest.raises(ValueError, match="succeeded or failed"):
        j.record_terminal(1, "running")


def test_files_are_recorded_one_by_one_until_done(journal: Journal) -> None:
    j = journal
    created(j, 0)
    created(j, 1)
    j.record_terminal(0, "succeeded", video_urls=["u1", "u2"])
    j.record_download(0, "v/0-a.mp4", 10, SHA)
    with pytest.raises(JournalTransitionError, match="1 of 2"):
        j.mark_done(0)
    assert [i.index for i in to_download(j)] == [0]
    j.record_download(0, "v/0-a.mp4", 11, "cd" * 32)
    j.record_download(0, Path("v") / "0-b.mp4", 12, SHA.upper())
    assert j.mark_done(0) == ItemState.SUCCEEDED
    assert j.mark_done(0) == ItemState.SUCCEEDED
    assert j.record_download(0, "v/0-b.mp4", 12, SHA) == ItemState.SUCCEEDED
    with pytest.raises(JournalTransitionError):
        j.record_download(0, "v/0-c.mp4", 1, SHA)
    item = j.get(0)
    assert item is not None
    assert [(f.path, f.size, f.sha256) for f in item.files] == [
        ("v/0-a.mp4", 11, "cd" * 32),
        ("v/0-b.mp4", 12, SHA),
    ]

    j.record_terminal(1, "succeeded", video_urls=["u"])
    with pytest.raises(JournalTransitionError, match="already recorded for item 0"):
        j.record_download(1, "v/0-a.mp4", 1, SHA)
    # A plain file name (the run's own names) is checked without a path object: the same rules.
    for bad in ("/abs/x.mp4", "../x.mp4", "v/../../x.mp4", "", ".", "..", "C:x.mp4"):
        with pytest.raises(ValueError, match="relative"):
            j.record_download(1, bad, 1, SHA)
    for digest in ("xyz", SHA + "0", SHA[:-1] + "g", SHA + "\n"):
        with pytest.raises(ValueError, match="sha256"):
            j.record_download(1, "v/1.mp4", 1, digest)
    with pytest.raises(ValueError, match="size"):
        j.record_download(1, "v/1.mp4", -1, SHA)
    with pytest.raises(JournalTransitionError, match="not downloading"):
        j.mark_done(5)


@pytest.mark.parametrize("given", [["u1", "u2"], ["u1"]], ids=["same URLs", "fewer URLs"])
def test_a_finish_with_a_file_missing_is_refused_whole(journal: Journal, given: list[str]) -> None:
    # The end recorded with two URLs (as a run posts it when the download starts): one file
    # is not "succeeded", whatever URLs the finish names, and the refused call keeps nothing.
    created(journal, 0)
    journal.record_terminal(0, "succeeded", video_urls=["u1", "u2"])
    with pytest.raises(JournalTransitionError, match="1 of 2"):
        journal.record_finished(0, given, [("v/0-a.mp4", 10, SHA)])
    item = journal.get(0)
    assert item is not None and item.state is ItemState.DOWNLOADING and item.files == ()

    files = [("v/0-a.mp4", 10, SHA), ("v/0-b.mp4", 11, SHA)]
    assert journal.record_finished(0, ["u1", "u2"], files) is ItemState.SUCCEEDED
    assert journal.record_finished(0, ["u1", "u2"], files) is ItemState.SUCCEEDED
    item = journal.get(0)
    assert item is not None and len(item.files) == 2 and item.done_at is not None


def test_a_finish_records_the_end_when_it_was_not(journal: Journal) -> None:
    created(journal, 0)
    assert journal.record_finished(0, ["u"], [("v/0.mp4", 1, SHA)], done=False) is (
        ItemState.DOWNLOADING
    )
    assert journal.record_finished(0, ["u"], []) is ItemState.SUCCEEDED
    item = journal.get(0)
    assert item is not None and item.video_urls == ("u",) and len(item.files) == 1
    with pytest.raises(JournalTransitionError, match="no task to end"):
        journal.record_finished(3, ["u"], [("v/3.mp4", 1, SHA)])


# -- resume, manifest -----------------------------------------------------------------------


def build_varied(j: Journal) -> None:
    j.add_items([(i, f"prompt {i}", REQ) for i in range(9)])
    created(j, 0)
    created(j, 1)
    j.record_status(1, "running", 55)
    created(j, 2)
    j.record_terminal(2, "succeeded", video_urls=["http://h/2.mp4"])
    created(j, 3)
    j.record_terminal(3, "succeeded", video_urls=["http://h/3.mp4"])
    j.record_download(3, "3.mp4", 3, SHA)
    j.mark_done(3)
    created(j, 4)
    j.record_terminal(4, "failed", error="policy", refunded=True)
    j.record_intent(5, REQ, "prompt 5", 100)
    j.record_create_error(5, InsufficientCreditsError("empty", http_status=402))
    j.record_intent(6, REQ, "prompt 6", 100)
    j.record_create_error(6, ConnectError("refused"))
    j.record_intent(7, REQ, "prompt 7", 100)
    j.record_create_error(7, ReadTimeoutError("slow"))


def test_reopen_gives_the_same_answers(jpath: Path) -> None:
    with open_journal(jpath) as j:
        build_varied(j)
        before = snapshot(j)
    with open_journal(jpath) as j:
        assert snapshot(j) == before
    assert before["pending"] == [6, 8]
    assert before["poll"] == [0, 1]
    assert before["download"] == [2]
    assert before["unknown"] == [7]
    assert before["rejected"] == [5]
    assert before["summary"]["succeeded"] == 1


def test_manifest_rows_carry_the_contract_fields(journal: Journal, tmp_path: Path) -> None:
    build_varied(journal)
    rows = manifest_rows(journal)
    assert [r["index"] for r in rows] == list(range(9))
    for row in rows:
        assert {"index", "prompt", "task_id", "state", "files", "error", "refunded"} <= set(row)
        assert {"estimated_credits", "video_urls"} <= set(row)
    assert rows[3]["files"] == ["3.mp4"]
    assert rows[3]["state"] == "succeeded"
    assert rows[4]["refunded"] is True
    assert rows[5]["error"].startswith("InsufficientCreditsError")

    out = tmp_path / "out" / "manifest.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("stale\n")
    assert write_manifest(journal, out) == out
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows
    assert sorted(p.name for p in out.parent.iterdir() if "manifest" in p.name) == [
        "manifest.jsonl"
    ]


def test_request_to_json_is_canonical_and_keeps_no_image_bytes() -> None:
    request = VideoRequest(
        "a kite", model="sora-2-pro", aspect_ratio="portrait", duration="15", image=b"\x89PNG"
    )
    text = request_to_json(request)
    data = json.loads(text)
    assert data["prompt"] == "a kite"
    assert (data["model"], data["aspect_ratio"], data["duration"]) == ("sora-2-pro", "9:16", 15)
    assert data["image"]["bytes"] == 4
    assert "PNG" not in text
    assert request_to_json(VideoRequest("x", image=Path("a/b.png"))) == request_to_json(
        VideoRequest("x", image="a/b.png")
    )


def test_bad_arguments_are_refused_before_writing(journal: Journal) -> None:
    with pytest.raises(ValueError, match="index"):
        journal.record_intent(-1, REQ, "p")
    with pytest.raises(ValueError, match="index"):
        journal.record_intent(True, REQ, "p")
    with pytest.raises(ValueError, match="JSON object"):
        journal.record_intent(0, "[1, 2]", "p")
    with pytest.raises(ValueError, match="JSON object"):
        journal.add_items([(0, "p", "not json")])
    with pytest.raises(ValueError, match="prompt"):
        journal.record_intent(0, REQ, "  ")
    assert journal.items() == []


@pytest.mark.anyio
async def test_calls_from_worker_threads_are_serialised(journal: Journal) -> None:
    def create(index: int) -> None:
        created(journal, index)
        journal.record_status(index, "running", index)

    async with anyio.create_task_group() as tg:
        for index in range(16):
            tg.start_soon(anyio.to_thread.run_sync, create, index)
    assert task_ids(journal) == {i: f"task-{i}" for i in range(16)}
    assert journal.summary()["running"] == 16


# -- a model-based state machine --------------------------------------------------------------

INDEX = st.integers(min_value=0, max_value=4)
INTERRUPTED = "<interrupted>"
OPS = (
    "intent",
    "created",
    "not_created",
    "unknown",
    "resubmit",
    "requeue",
    "status",
    "terminal",
    "download",
    "done",
)
# The moves that make progress from each state; `advance` picks among them so that runs reach
# the late states, while `anything` tries every operation on every item.
NEXT: dict[ItemState | None, tuple[str, ...]] = {
    None: ("intent",),
    ItemState.PENDING: ("intent",),
    ItemState.CREATING: ("created", "created", "not_created", "unknown"),
    ItemState.NOT_CREATED: ("intent",),
    ItemState.UNKNOWN: ("created", "resubmit", "unknown"),
    ItemState.CREATED: ("status", "terminal"),
    ItemState.RUNNING: ("status", "terminal"),
    ItemState.DOWNLOADING: ("download", "download", "done", "terminal", "status"),
    ItemState.SUCCEEDED: ("done", "download"),
    ItemState.FAILED: ("requeue", "terminal", "status"),
}


@dataclass
class ModelItem:
    prompt: str
    state: ItemState = ItemState.PENDING
    task_id: str | None = None
    error: str | None = None
    refunded: bool | None = None
    estimated_credits: int | None = None
    video_urls: list[str] = field(default_factory=list)
    files: dict[str, tuple[int, str]] = field(default_factory=dict)
    attempts: int = 0
    resubmits: int = 0


class JournalMachine(RuleBasedStateMachine):
    """Random operations against a plain model, with graceful and crash-like reopens."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.generation = 0
        self.path = Path(self.tmp.name) / "0" / DEFAULT_JOURNAL_NAME
        self.journal = open_journal(self.path)
        self.model: dict[int, ModelItem] = {}
        self.ever: dict[int, str] = {}
        self.counter = 0
        # Hypothesis favours argument-free rules; without this, reopens would crowd out the
        # operations and few items would ever get past "creating".
        self.ops_since_reopen = 0

    def teardown(self) -> None:
        self.journal.close()
        self.tmp.cleanup()

    def state_of(self, index: int) -> ItemState | None:
        item = self.model.get(index)
        return None if item is None else item.state

    def refused(self, call: Any, *args: Any) -> None:
        with pytest.raises(JournalTransitionError):
            call(*args)

    # -- rules

    @precondition(lambda self: len(self.model) < 5)
    @rule(indices=st.lists(INDEX, min_size=1, max_size=3))
    def add(self, indices: list[int]) -> None:
        fresh = {i for i in indices if i not in self.model}
        assert self.journal.add_items((i, f"p{i}", REQ) for i in indices) == len(fresh)
        for i in fresh:
            self.model[i] = ModelItem(prompt=f"p{i}")

    @rule(data=st.data())
    def advance(self, data: st.DataObject) -> None:
        moves = [(i, op) for i in range(5) for op in NEXT[self.state_of(i)]]
        index, op = data.draw(st.sampled_from(moves), label="move")
        self.ops_since_reopen += 1
        getattr(self, op)(index, data)

    @rule(data=st.data(), op=st.sampled_from(OPS), index=INDEX)
    def anything(self, data: st.DataObject, op: str, index: int) -> None:
        self.ops_since_reopen += 1
        getattr(self, op)(index, data)

    # -- operations: each checks the journal's answer, legal or refused, against the model

    def intent(self, index: int, data: st.DataObject) -> None:
        credits = data.draw(st.none() | st.integers(0, 875), label="credits")
        state = self.state_of(index)
        if state not in (None, ItemState.PENDING, ItemState.NOT_CREATED):
            self.refused(self.journal.record_intent, index, REQ, f"p{index}", credits)
            return
        assert self.journal.record_intent(index, REQ, f"p{index}", credits) is ItemState.CREATING
        item = self.model.setdefault(index, ModelItem(prompt=f"p{index}"))
        item.state, item.error, item.estimated_credits = ItemState.CREATING, None, credits
        item.attempts += 1

    def created(self, index: int, data: st.DataObject) -> None:
        item = self.model.get(index)
        if item is not None and item.task_id is not None:
            # The same id again is harmless; nothing may replace it.
            assert self.journal.record_created(index, item.task_id) is item.state
            self.refused(self.journal.record_created, index, f"other-{self.counter}")
            return
        self.counter += 1
        task_id = f"task-{self.counter}"
        if item is None or item.state not in (ItemState.CREATING, ItemState.UNKNOWN):
            self.refused(self.journal.record_created, index, task_id)
            return
        assert self.journal.record_created(index, task_id) is ItemState.CREATED
        item.state, item.task_id, item.error = ItemState.CREATED, task_id, None
        self.ever[index] = task_id

    def not_created(self, index: int, data: st.DataObject) -> None:
        terminal = data.draw(st.booleans(), label="terminal")
        message = f"refused {index}"
        if self.state_of(index) is not ItemState.CREATING:
            self.refused(self.journal.record_not_created, index, message)
            return
        expected = ItemState.FAILED if terminal else ItemState.NOT_CREATED
        assert self.journal.record_not_created(index, message, terminal=terminal) is expected
        self.model[index].state, self.model[index].error = expected, message

    def unknown(self, index: int, data: st.DataObject) -> None:
        if self.state_of(index) not in (ItemState.CREATING, ItemState.UNKNOWN):
            self.refused(self.journal.record_unknown, index, "timeout")
            return
        assert self.journal.record_unknown(index, "timeout") is ItemState.UNKNOWN
        self.model[index].state, self.model[index].error = ItemState.UNKNOWN, "timeout"

    def resubmit(self, index: int, data: st.DataObject) -> None:
        if self.state_of(index) is not ItemState.UNKNOWN:
            self.refused(self.journal.resubmit_unknown, index)
            return
        assert self.journal.resubmit_unknown(index) is ItemState.PENDING
        item = self.model[index]
        item.state, item.error = ItemState.PENDING, None
        item.resubmits += 1

    def requeue(self, index: int, data: st.DataObject) -> None:
        item = self.model.get(index)
        if item is None or item.state is not ItemState.FAILED or item.task_id is not None:
            self.refused(self.journal.requeue_rejected, index)
            return
        assert self.journal.requeue_rejected(index) is ItemState.PENDING
        item.state, item.error = ItemState.PENDING, None

    def status(self, index: int, data: st.DataObject) -> None:
        running = data.draw(st.booleans(), label="running")
        progress = data.draw(st.none() | st.integers(0, 100), label="progress")
        state = self.state_of(index)
        wire = "running" if running else "pending"
        if state in (ItemState.DOWNLOADING, ItemState.SUCCEEDED, ItemState.FAILED):
            assert self.journal.record_status(index, wire, progress) is state
            return
        if state not in (ItemState.CREATED, ItemState.RUNNING):
            self.refused(self.journal.record_status, index, wire, progress)
            return
        new = ItemState.RUNNING if running else state
        assert self.journal.record_status(index, wire, progress) is new
        self.model[index].state = new

    def terminal(self, index: int, data: st.DataObject) -> None:
        succeeded = data.draw(st.booleans(), label="succeeded")
        urls = data.draw(st.integers(0, 2), label="urls")
        refunded = data.draw(st.none() | st.booleans(), label="refunded")
        item = self.model.get(index)
        wire = "succeeded" if succeeded else "failed"
        video_urls = [f"http://h/{index}/{n}.mp4?v={self.counter}" for n in range(urls)]
        call = (self.journal.record_terminal, index, wire, "policy", refunded, video_urls)
        if item is None or item.task_id is None:
            self.refused(*call)
            return
        same_end = {ItemState.DOWNLOADING: True, ItemState.SUCCEEDED: True, ItemState.FAILED: False}
        if item.state in same_end:
            if same_end[item.state] is not succeeded:
                self.refused(*call)
                return
            assert self.journal.record_terminal(*call[1:]) is item.state
            if video_urls and item.state is ItemState.DOWNLOADING:
                item.video_urls = video_urls
            return
        new = ItemState.DOWNLOADING if succeeded else ItemState.FAILED
        assert self.journal.record_terminal(*call[1:]) is new
        item.state, item.error, item.refunded, item.video_urls = new, "policy", refunded, video_urls

    def download(self, index: int, data: st.DataObject) -> None:
        n = data.draw(st.integers(0, 2), label="file")
        size = data.draw(st.integers(0, 3), label="size")
        item = self.model.get(index)
        path, digest = f"v/{index}-{n}.mp4", f"{size:064x}"
        call = (self.journal.record_download, index, path, size, digest)
        if item is not None and item.state is ItemState.SUCCEEDED:
            if item.files.get(path) == (size, digest):
                assert self.journal.record_download(*call[1:]) is ItemState.SUCCEEDED
            else:
                self.refused(*call)
            return
        if item is None or item.state is not ItemState.DOWNLOADING:
            self.refused(*call)
            return
        assert self.journal.record_download(*call[1:]) is ItemState.DOWNLOADING
        item.files[path] = (size, digest)

    def done(self, index: int, data: st.DataObject) -> None:
        item = self.model.get(index)
        if item is not None and item.state is ItemState.SUCCEEDED:
            assert self.journal.mark_done(index) is ItemState.SUCCEEDED
            return
        if (
            item is None
            or item.state is not ItemState.DOWNLOADING
            or len(item.files) < len(item.video_urls)
        ):
            self.refused(self.journal.mark_done, index)
            return
        assert self.journal.mark_done(index) is ItemState.SUCCEEDED
        item.state = ItemState.SUCCEEDED

    # -- reopening

    def interrupted(self) -> None:
        for item in self.model.values():
            if item.state is ItemState.CREATING:
                item.state, item.error = ItemState.UNKNOWN, INTERRUPTED

    @precondition(lambda self: self.ops_since_reopen >= 3)
    @rule()
    def close_and_reopen(self) -> None:
        self.ops_since_reopen = 0
        self.journal.close()
        self.journal = open_journal(self.path)
        self.interrupted()

    @precondition(lambda self: self.generation < 4 and self.ops_since_reopen >= 3)
    @rule()
    def crash_and_reopen(self) -> None:
        # What kill -9 leaves behind is the files as they are now, read by a new process.
        self.ops_since_reopen = 0
        self.generation += 1
        target = Path(self.tmp.name) / str(self.generation) / DEFAULT_JOURNAL_NAME
        target.parent.mkdir()
        for suffix in ("", "-wal"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                shutil.copyfile(source, f"{target}{suffix}")
        self.journal.close()
        self.path = target
        self.journal = open_journal(self.path)
        self.interrupted()

    # -- invariants

    @invariant()
    def rows_match_the_model(self) -> None:
        rows = manifest_rows(self.journal)
        assert [r["index"] for r in rows] == sorted(self.model)
        for row in rows:
            item = self.model[row["index"]]
            expected = {
                "prompt": item.prompt,
                "state": item.state.value,
                "task_id": item.task_id,
                "files": sorted(item.files),
                "refunded": item.refunded,
                "estimated_credits": item.estimated_credits,
                "video_urls": item.video_urls,
                "create_attempts": item.attempts,
                "resubmits": item.resubmits,
            }
            assert {k: row[k] for k in expected} == expected
            if item.error == INTERRUPTED:
                assert row["error"].startswith("interrupted")
            else:
                assert row["error"] == item.error

    @invariant()
    def queues_match_the_model(self) -> None:
        def having(*states: ItemState) -> list[int]:
            return sorted(i for i, item in self.model.items() if item.state in states)

        pending = [i.index for i in pending_creates(self.journal)]
        assert pending == having(ItemState.PENDING, ItemState.NOT_CREATED)
        for index in pending:
            assert self.model[index].task_id is None
        assert [i.index for i in self.journal.unknown()] == having(ItemState.UNKNOWN)
        assert [i.index for i in to_poll(self.journal)] == having(
            ItemState.CREATED, ItemState.RUNNING
        )
        assert [i.index for i in to_download(self.journal)] == having(ItemState.DOWNLOADING)
        summary = self.journal.summary()
        assert summary == {s.value: len(having(s)) for s in ItemState}

    @invariant()
    def task_ids_are_kept_forever(self) -> None:
        assert task_ids(self.journal) == self.ever
        for index, task_id in self.ever.items():
            assert self.model[index].task_id == task_id


# 60 runs of 50 steps in all (the slow run: 600), as three independent shards: each shard stays
# far inside the per-test timeout on a loaded machine (a timeout firing inside Hypothesis
# surfaces as FlakyStrategyDefinition, not as a timeout), and the shards run on different workers.
_MACHINE_SETTINGS = settings(
    max_examples=examples(20, 200),
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class TestJournalStateMachineShard1(JournalMachine.TestCase):
    settings = _MACHINE_SETTINGS


class TestJournalStateMachineShard2(JournalMachine.TestCase):
    settings = _MACHINE_SETTINGS


class TestJournalStateMachineShard3(JournalMachine.TestCase):
    settings = _MACHINE_SETTINGS


# -- a real crash ---------------------------------------------------------------------------

# Each line is one write: with PYTHONUNBUFFERED, print("intent", i) writes its pieces one by
# one, and a kill between them left a line "intent" without its number.
CHILD = """
import sys
from sora_async.batch.journal import Journal

def say(line):
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()

path, n = sys.argv[1], int(sys.argv[2])
j = Journal.open(path, input_fingerprint="fp", provider="freesora", base_url=None)
j.add_items((i, f"prompt {i}", "{}") for i in range(n))
say("ready")
for i in range(n):
    j.record_intent(i, "{}", f"prompt {i}", 100)
    say(f"intent {i}")
    j.record_created(i, f"task-{i}")
    say(f"created {i}")
    j.record_status(i, "running", 50)
    say(f"running {i}")
say("finished")
"""


@pytest.mark.parametrize("seed", range(4))
def test_kill_9_leaves_a_consistent_prefix(tmp_path: Path, seed: int) -> None:
    n = 3000
    wait_lines = random.Random(seed).randint(1, 600)
    path = tmp_path / DEFAULT_JOURNAL_NAME
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # A real process (forked by the fork server, zygote.py): the kill must take its memory.
    child = zygote.TextChild([sys.executable, "-c", CHILD, str(path), str(n)], env=env, cwd=REPO)
    seen = [child.stdout.readline() for _ in range(wait_lines)]
    child.send_signal(signal.SIGKILL)
    returncode = child.wait()
    # Whatever the child printed, the record before it had returned.
    seen += child.stdout.readlines()
    child.stdout.close()
    assert returncode == -signal.SIGKILL
    events = [line.split() for line in seen if line.strip()]
    assert events[0] == ["ready"]
    assert ["finished"] not in events, "the child ended before the kill: nothing was tested"
    done: dict[str, set[int]] = {"intent": set(), "created": set(), "running": set()}
    for word, number in events[1:]:
        done[word].add(int(number))

    with Journal.open(path, input_fingerprint="fp", provider="freesora", base_url=None) as j:
        items = {item.index: item for item in j.items()}
        assert sorted(items) == list(range(n))
        last = max(done["intent"], default=-1)
        for index, item in items.items():
            if index in done["running"]:
                assert item.state is ItemState.RUNNING
            if index in done["created"]:
                assert item.task_id == f"task-{index}", (seed, index)
                assert item.state in (ItemState.CREATED, ItemState.RUNNING)
            elif index in done["intent"]:
                # Killed between the intent and the printed id: the id may have committed.
                assert item.state in (ItemState.UNKNOWN, ItemState.CREATED), (seed, index)
                assert item.task_id in (None, f"task-{index}")
            elif index == last + 1:
                assert item.state in (ItemState.PENDING, ItemState.UNKNOWN), (seed, index)
                assert item.task_id is None
            else:
                assert index > last
                assert (item.state, item.task_id) == (ItemState.PENDING, None), (seed, index)
            if index < last:
                assert item.task_id == f"task-{index}", (seed, index)
        assert pending_creates(j)[0].index >= last + 1
        for item in j.unknown():
            assert item.index >= last


def test_retry_failed_releases_the_task_id_and_keeps_it_in_the_log(jpath: Path) -> None:
    with open_journal(jpath) as j:
        created(j, 0)
        j.record_terminal(0, "failed", error="moderation", refunded=True)
        with pytest.raises(JournalTransitionError):
            j.retry_failed(1)

        assert j.retry_failed(0) == ItemState.PENDING

        item = j.get(0)
        assert item is not None and item.task_id is None and item.error is None
        assert [e.task_id for e in history(j, 0) if e.event == "retried"] == ["task-0"]
        created(j, 0, "task-0b")
        assert j.get(0).task_id == "task-0b"  # type: ignore[union-attr]


def test_a_version_1_journal_is_upgraded_in_place(jpath: Path) -> None:
    with open_journal(jpath) as j:
        created(j, 0)
        j.record_terminal(0, "failed", error="x")
    conn = sqlite3.connect(jpath)
    conn.execute("DROP TRIGGER task_id_write_once")
    conn.execute(
        "CREATE TRIGGER task_id_write_once BEFORE UPDATE OF task_id ON items"
        " WHEN OLD.task_id IS NOT NULL AND NEW.task_id IS NOT OLD.task_id"
        " BEGIN SELECT RAISE(ABORT, 'a task id is write-once'); END"
    )
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    with open_journal(jpath) as j:
        assert j.retry_failed(0) == ItemState.PENDING
        created(j, 0, "task-0b")
        with pytest.raises(sqlite3.IntegrityError, match="write-once"):
            j._require_conn().execute("UPDATE items SET task_id = 'other' WHERE idx = 0")


def test_a_move_the_table_does_not_list_never_reaches_the_disk(jpath: Path) -> None:
    from sora_async.batch.journal.moves import move
    from sora_async.batch.journal.states import TRANSITIONS

    with open_journal(jpath) as j:
        created(j, 0)
        with (
            pytest.raises(JournalTransitionError, match="cannot move an item"),
            j._write() as conn,
        ):
            move(conn, 0, "done", old=ItemState.CREATED, new=ItemState.SUCCEEDED)
        assert j.get(0).state is ItemState.CREATED  # type: ignore[union-attr]
    # Every event the store writes is in the table, and no table entry ends in creating
    # except the intent (the one step before a create is sent).
    assert {e for e, t in TRANSITIONS.items() if ItemState.CREATING in t.targets} == {"intent"}


def test_a_request_is_stored_canonical_and_a_canonical_one_as_given(journal: Journal) -> None:
    loose = '{ "prompt": "p",  "model": "sora-2" }'
    journal.add_items([(0, "p", loose)])
    own = request_to_json(VideoRequest("q"))
    journal.add_items([(1, "q", own)], canonical=True)
    first, second = journal.items()
    assert first.request_json == '{"model":"sora-2","prompt":"p"}'
    assert second.request_json == own
