"""manifest.jsonl from the journal: one row per item, in order, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sora_async.batch.journal import Journal, request_to_json
from sora_async.batch.run import write_manifest
from sora_async.models import VideoRequest


def journal_with_items(tmp_path: Path) -> Journal:
    journal = Journal.open(
        tmp_path / "j.sqlite3", input_fingerprint="sha256:x", provider="freesora", base_url=None
    )
    rows = [(i, f"prompt {i}", request_to_json(VideoRequest(f"prompt {i}"))) for i in range(3)]
    journal.add_items(rows)
    journal.record_intent(0, rows[0][2], "prompt 0", 100)
    journal.record_created(0, "task_a")
    journal.record_terminal(0, "failed", error="generation_failed", refunded=True)
    journal.record_intent(1, rows[1][2], "prompt 1", 100)
    journal.record_created(1, "task_b")
    journal.record_terminal(1, "succeeded", video_urls=["https://files.example/b.mp4"])
    journal.record_download(1, "00001_task_b.mp4", 10, "0" * 64)
    journal.mark_done(1)
    return journal


def test_one_row_per_item_with_line_and_note(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with journal_with_items(tmp_path) as journal:
        write_manifest(
            journal,
            out / "manifest.jsonl",
            total=3,
            lines=[1, 3, 4],
            notes={2: "not sent: interrupted"},
        )

    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [list(row)[:8] for row in rows] == [
        ["index", "line", "prompt", "task_id", "state", "files", "error", "refunded"]
    ] * 3
    failed, done, pending = rows
    assert failed["state"] == "failed" and failed["refunded"] is True
    assert failed["error"] == "generation_failed" and failed["line"] == 1
    assert done["state"] == "succeeded" and done["files"] == ["00001_task_b.mp4"]
    assert done["file_details"] == [{"path": "00001_task_b.mp4", "size": 10, "sha256": "0" * 64}]
    assert pending["state"] == "pending" and pending["task_id"] is None
    assert pending["note"] == "not sent: interrupted" and done["note"] is None


def test_the_manifest_is_replaced_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    target = out / "manifest.jsonl"
    target.write_text("old\n")
    with journal_with_items(tmp_path) as journal:
        write_manifest(journal, target, total=3)

    assert len(target.read_text().splitlines()) == 3
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl"]  # no temporary left
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
