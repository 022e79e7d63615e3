"""The batch display: counts by phase, throughput and ETA, plain lines, the rich bar."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from sora_async.batch.progress import (
    Phase,
    PlainDisplay,
    QuietDisplay,
    Tracker,
    format_duration,
    format_status,
    open_display,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_items_move_between_phases_and_are_counted_once() -> None:
    tracker = Tracker(5)
    tracker.seed(Phase.QUEUED, 3)
    tracker.seed(Phase.RUNNING, 1)
    tracker.seed(Phase.SUCCEEDED, 1)

    tracker.move(0, Phase.CREATING)
    tracker.move(0, Phase.CREATING)  # the same create again after a 429
    tracker.move(0, Phase.RUNNING)
    tracker.move(3, Phase.DOWNLOADING, start=Phase.RUNNING)  # a resumed task
    tracker.move(3, Phase.SUCCEEDED)
    tracker.move(3, Phase.FAILED)  # ignored: an item ends once per run
    tracker.move(1, Phase.CREATING)
    tracker.move(1, Phase.UNKNOWN)

    assert tracker.counts == {
        Phase.QUEUED: 1,
        Phase.CREATING: 0,
        Phase.RUNNING: 1,
        Phase.DOWNLOADING: 0,
        Phase.SUCCEEDED: 2,
        Phase.FAILED: 0,
        Phase.UNKNOWN: 1,
    }
    assert sum(tracker.counts.values()) == 5
    assert tracker.snapshot().finished_this_run == 2


def test_mean_progress_covers_running_items_that_report_one() -> None:
    tracker = Tracker(3)
    tracker.seed(Phase.QUEUED, 3)
    for index in range(3):
        tracker.move(index, Phase.CREATING)
        tracker.move(index, Phase.RUNNING)
    tracker.set_progress(0, 20)
    tracker.set_progress(1, 60)
    tracker.set_progress(2, None)  # sora2api reports none

    assert tracker.snapshot().mean_progress == 40

    tracker.move(1, Phase.DOWNLOADING)
    assert tracker.snapshot().mean_progress == 20


def test_throughput_and_eta_follow_this_runs_pace() -> None:
    clock = FakeClock()
    tracker = Tracker(10, clock=clock)
    tracker.seed(Phase.SUCCEEDED, 4)  # done by an earlier run: not this run's pace
    tracker.seed(Phase.QUEUED, 6)
    assert tracker.snapshot().rate_per_minute is None
    assert tracker.snapshot().eta is None

    clock.now += 60
    for index in range(2):
        tracker.move(index, Phase.SUCCEEDED)
    snapshot = tracker.snapshot()

    assert snapshot.rate_per_minute == pytest.approx(2.0)
    assert snapshot.eta == pytest.approx(4 * 30.0)
    assert snapshot.done == 6
    tracker.draining = True  # queued items will not be done by this run
    assert tracker.snapshot().eta == 0.0


def test_the_status_line_shows_counts_pace_and_eta() -> None:
    clock = FakeClock()
    tracker = Tracker(4, clock=clock)
    tracker.seed(Phase.QUEUED, 4)
    tracker.move(0, Phase.CREATING)
    tracker.move(0, Phase.RUNNING)
    tracker.set_progress(0, 45)
    tracker.move(1, Phase.FAILED)
    clock.now += 30

    line = format_status(tracker.snapshot())

    assert line == (
        "1/4 done | queued 2, creating 0, running 1 (45%), downloading 0, succeeded 0, "
        "failed 1 | 2.0/min, ETA 1m30s"
    )


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "--"), (0, "0s"), (59.4, "59s"), (61, "1m01s"), (3725, "1h02m")],
)
def test_durations_read_well(seconds: float | None, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_plain_display_prints_items_and_a_status_line_now_and_then() -> None:
    clock = FakeClock()
    tracker = Tracker(2, clock=clock)
    tracker.seed(Phase.QUEUED, 2)
    out = io.StringIO()
    display = PlainDisplay(tracker, out, interval=10.0, clock=clock)

    display.start()
    tracker.move(0, Phase.CREATING)
    display.refresh()  # too soon
    clock.now += 11
    display.refresh()  # due, and something changed
    display.refresh()  # nothing changed
    tracker.move(0, Phase.SUCCEEDED)
    display.item("[00000] succeeded task_1: 00000_task_1.mp4")
    display.stop()
    display.stop()

    lines = out.getvalue().splitlines()
    assert lines[0].startswith("0/2 done | queued 2, creating 0")
    assert lines[1].startswith("0/2 done | queued 1, creating 1")
    assert lines[2] == "[00000] succeeded task_1: 00000_task_1.mp4"
    assert lines[3].startswith("1/2 done")
    assert len(lines) == 4


def test_the_display_fits_the_terminal() -> None:
    tracker = Tracker(3)
    tracker.seed(Phase.QUEUED, 3)
    assert isinstance(open_display(tracker, quiet=True, stream=TTY()), QuietDisplay)
    assert isinstance(open_display(tracker, stream=io.StringIO()), PlainDisplay)

    screen = TTY()
    display = open_display(tracker, stream=screen)
    assert not isinstance(display, (PlainDisplay, QuietDisplay))
    display.start()
    tracker.move(0, Phase.CREATING)
    tracker.move(0, Phase.FAILED)
    display.item("[00000] failed task_1: boom (refunded)", problem=True)
    display.item("[00001] succeeded task_2: x.mp4")  # only problems are listed on a TTY
    display.refresh()
    display.stop()

    shown = screen.getvalue()
    assert "[00000] failed task_1: boom (refunded)" in shown
    assert "[00001]" not in shown
    assert "1/3" in shown and "queued 2" in shown and "failed 1" in shown


def test_log_lines_go_above_the_bar_while_it_is_drawn() -> None:
    tracker = Tracker(1)
    tracker.seed(Phase.QUEUED, 1)
    handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        screen = TTY()
        display = open_display(tracker, stream=screen)
        display.start()
        logging.getLogger("sora_async.test").warning("a slot is held for 360s")
        display.stop()
        assert handler.stream is not None and handler.stream is sys.stderr  # restored
    finally:
        root.removeHandler(handler)

    assert "a slot is held for 360s" in screen.getvalue()


def test_the_eta_follows_the_last_minute_not_the_whole_run() -> None:
    # A resumed run that waited an hour for its first results is not slow now.
    clock = FakeClock()
    tracker = Tracker(20, clock=clock)
    tracker.seed(Phase.QUEUED, 20)
    clock.now += 3600
    for index in range(10):
        clock.now += 6
        tracker.move(index, Phase.SUCCEEDED)

    snapshot = tracker.snapshot()

    assert snapshot.rate_per_minute == pytest.approx(10.0)
    assert snapshot.eta == pytest.approx(60.0)
    clock.now += 600  # nothing ended in the last minute: the run's average stands in
    assert tracker.snapshot().rate_per_minute == pytest.approx(10 * 60 / 4260)


def test_results_and_progress_go_to_their_own_streams() -> None:
    tracker = Tracker(1)
    tracker.seed(Phase.QUEUED, 1)
    progress, results = io.StringIO(), io.StringIO()
    display = open_display(tracker, stream=progress, results=results)
    display.start()
    tracker.move(0, Phase.SUCCEEDED)
    display.item("[00000] succeeded task_1: 00000_task_1.mp4")
    display.note("batch: 1/1 succeeded")
    display.stop()

    assert results.getvalue().splitlines() == [
        "[00000] succeeded task_1: 00000_task_1.mp4",
        "batch: 1/1 succeeded",
    ]
    assert all(" done | " in line for line in progress.getvalue().splitlines())
