"""The run events the batch journal relies on, in order, from a real generate_many run."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_batch_support import KEY, batch_mock

from sora_async import SoraClient, VideoRequest
from sora_async.events import EventKind, TaskEvent

pytestmark = pytest.mark.anyio


async def test_a_success_reports_downloading_before_its_files(tmp_path: Path) -> None:
    events: list[TaskEvent] = []
    async with batch_mock() as mock:
        client = SoraClient(
            "freesora",
            KEY,
            base_url=mock.freesora_url,
            poll_interval=0.1,
            expected_duration=0.5,
        )
        async with client:
            requests = [VideoRequest("a kite"), VideoRequest("a fox [fail]")]
            results = [
                result
                async for result in client.generate_many(
                    requests, on_event=events.append, download_to=tmp_path
                )
            ]

    assert len(results) == 2
    kinds = {key: [e.kind for e in events if e.key == key] for key in (0, 1)}
    ok = [k for k in kinds[0] if k is not EventKind.PROGRESS]
    assert ok == [
        EventKind.CREATING,
        EventKind.CREATED,
        EventKind.DOWNLOADING,
        EventKind.DOWNLOADED,
        EventKind.SUCCEEDED,
    ]
    downloading = next(e for e in events if e.kind is EventKind.DOWNLOADING)
    assert downloading.result is not None and downloading.result.video_urls
    assert downloading.task_id == downloading.result.task_id
    # A failed task has nothing to fetch.
    assert EventKind.DOWNLOADING not in kinds[1]
    assert kinds[1][-1] is EventKind.FAILED


def test_the_batch_handles_every_event_kind() -> None:
    # The hook dispatches by name (_creating, _created, ...): a new kind needs its handler.
    from sora_async.batch.recorder import Recorder
    from sora_async.events import EventKind

    for kind in EventKind:
        assert callable(getattr(Recorder, f"_{kind.value}", None)), kind
