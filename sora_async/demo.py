"""``sora-async demo``: the main job end to end on the embedded mock server, offline.

A small batch goes through the governor (with a cap below the batch size, so the queueing is
visible), each result is downloaded and checked against the bytes the mock served, and the
mock's own counters show that the cap held and every prompt was created exactly once.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio

from .batch.progress import Display, Phase, Tracker, open_display
from .client import SoraClient
from .events import EventKind, TaskEvent
from .mock import MockConfig, MockServer

__all__ = ["run_demo"]

PROMPTS = (
    "a red kite over a grey sea, handheld",
    "a lighthouse at dusk, slow push in",
    "rain on a neon street, orbit shot",
    "a fox crossing fresh snow at dawn",
    "paper boats racing down a gutter",
    "a hot air balloon above vineyards",
    "city rooftops at night, long lens",
    "a hummingbird at a feeder, 120 fps",
)

DEMO_CAP = 4
DEMO_KEY = "demo-key"


def _same_bytes(path: Path, served: bytes) -> bool:
    return hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(served).digest()


def _display(
    client: SoraClient, count: int, started: float
) -> tuple[Display, Callable[[TaskEvent], None]]:
    """The batch command's display (a live bar on a terminal, plain lines otherwise), and the
    event hook that feeds it."""
    tracker = Tracker(count)
    tracker.seed(Phase.QUEUED, count)
    display = open_display(tracker, interval=2.0)
    moves = {
        EventKind.CREATING: Phase.CREATING,
        EventKind.CREATED: Phase.RUNNING,
        EventKind.DOWNLOADING: Phase.DOWNLOADING,
        EventKind.SUCCEEDED: Phase.SUCCEEDED,
        EventKind.FAILED: Phase.FAILED,
    }

    def show(event: TaskEvent) -> None:
        phase = moves.get(event.kind)
        if phase is not None:
            tracker.move(event.key, phase, start=tracker.phase_of(event.key))
        if event.kind is EventKind.PROGRESS:
            tracker.set_progress(event.key, event.progress)
        if event.kind in (EventKind.CREATED, EventKind.SUCCEEDED, EventKind.FAILED):
            stats = client.governor.statistics()
            display.item(
                f"  [{time.monotonic() - started:5.1f}s] #{event.key:<3} "
                f"{event.kind.value:<9} {event.task_id}  "
                f"(slots held {stats.held}/{stats.total})",
                problem=event.kind is EventKind.FAILED,
            )

    return display, show


async def run_demo(*, count: int = 12, out: Path | None = None) -> int:
    """Run the demo; returns the exit status. ``out`` keeps the videos (default: a temp dir)."""
    prompts = [f"{PROMPTS[i % len(PROMPTS)]} #{i + 1}" for i in range(count)]
    config = MockConfig(task_seconds=2.0, jitter=0.5, cap=DEMO_CAP, file_size=64 * 1024)
    with tempfile.TemporaryDirectory(prefix="sora-demo-") as tmp:
        kept = out
        out = Path(out) if out is not None else Path(tmp)
        async with MockServer(config) as mock:
            print(f"mock server (freesora API) at {mock.freesora_url}, account cap {DEMO_CAP}")
            async with SoraClient(
                "freesora",
                DEMO_KEY,
                base_url=mock.freesora_url,
                max_concurrent_tasks=DEMO_CAP,
                poll_interval=0.25,
                expected_duration=2.0,
            ) as client:
                from .models import VideoRequest

                before = (await client.credits()).left_credits
                started = time.monotonic()

                display, show = _display(client, count, started)

                async def redraw() -> None:
                    while True:
                        await anyio.sleep(0.25)
                        display.refresh()

                results = []
                display.start()
                try:
                    async with anyio.create_task_group() as group:
                        group.start_soon(redraw)
                        async for result in client.generate_many(
                            (VideoRequest(p) for p in prompts), on_event=show, download_to=out
                        ):
                            results.append(result)
                        group.cancel_scope.cancel()
                finally:
                    display.stop()
                after = (await client.credits()).left_credits
            elapsed = time.monotonic() - started
            ok = [r for r in results if r.ok]
            intact = all(
                _same_bytes(Path(r.files[0]), mock.file_bytes(r.task_id or "")) for r in ok
            )
            counters = mock.counters
            once = all(n == 1 for n in counters.creates_by_prompt.values())
            print()
            where = str(out) if kept is not None else "a temporary directory (--out DIR keeps them)"
            print(f"{len(ok)}/{count} videos in {elapsed:.1f}s, downloaded to {where}")
            print(f"files byte-identical to what the server sent: {intact}")
            print(
                f"max live tasks on the account: {counters.max_live_tasks} (cap {DEMO_CAP}); "
                f"429s: {counters.rate_limited}; each prompt created once: {once}"
            )
            print(
                f"status polls: {counters.polls} ({counters.polls / max(1, count):.1f} per task); "
                f"credits spent: {before - after}"
            )
    good = len(ok) == count and intact and once and counters.max_live_tasks <= DEMO_CAP
    if not good:
        print("demo: something did not behave as expected", file=sys.stderr)
    return 0 if good else 1
