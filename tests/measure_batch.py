"""Measure ``sora-async batch`` by hand (not a test): the run's cost, and resume at scale.

    python tests/measure_batch.py run N          # N zero-duration prompts against the mock
    python tests/measure_batch.py resume N       # open an N-item journal and plan it again
    python tests/measure_batch.py resume-old N   # the same, a journal without its options

``run`` prints the CLI's CPU seconds (user + system of the subprocess), its wall time and the
journal transactions of the run (the line the batch logs with ``-v``).
``resume`` builds an N-item journal whose items are all done except the last one, then runs
the batch again and prints the time from the start of the process to the first create the
mock receives, and the whole run's wall and CPU. Numbers are for the lead's report, never for
assertions (the machine is shared).
"""

from __future__ import annotations

import functools
import os
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_batch_support import KEY, cli_env

from sora_async.batch.journal import Journal, fingerprint_bytes, request_to_json
from sora_async.mock import MockConfig, MockServer
from sora_async.models import VideoRequest


def argv(mock: MockServer, source: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sora_async",
        "--provider",
        "freesora",
        "--api-key",
        KEY,
        "--base-url",
        mock.url_for("freesora"),
        "--poll-interval",
        "0.01",
        "-v",
        "--concurrency",
        "20",
        "batch",
        str(source),
        "--out",
        str(out),
        "--quiet",
    ]


async def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = await anyio.run_process(command, check=False, env=env)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        print(done.stderr.decode()[-3000:], file=sys.stderr)
        raise SystemExit(f"batch exited {done.returncode}")
    return cpu, wall, done.stderr.decode()


async def measure_run(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "prompts.txt", Path(tmp) / "out"
        source.write_text("".join(f"prompt number {i}\n" for i in range(count)))
        config = MockConfig(task_seconds=0.0, jitter=0.0, file_size=1024, cap=20)
        async with MockServer(config) as mock:
            cpu, wall, stderr = await timed(argv(mock, source, out), cli_env())
        stats = [line for line in stderr.splitlines() if "journal:" in line and "commits" in line]
        print(f"batch of {count}: CPU {cpu:.2f} s, wall {wall:.2f} s")
        for line in stats:
            print(line)


def build_journal(
    path: Path, source: Path, count: int, base_url: str, *, trusted: bool = True
) -> None:
    """An N-item journal as a finished run leaves it, except the last item (never sent)."""
    lines = [f"prompt number {i}" for i in range(count)]
    data = "".join(line + "\n" for line in lines).encode()
    source.write_bytes(data)
    journal = Journal.open(
        path, input_fingerprint=fingerprint_bytes(data), provider="freesora", base_url=base_url
    )
    journal.add_items((i, p, request_to_json(VideoRequest(p))) for i, p in enumerate(lines))
    if trusted:
        # As a run of this version leaves it: the options its items were planned with.
        journal.set_meta("request_options", "{}")
    journal.close()
    # The finished items are written in bulk: the point is the size of what is re-opened.
    conn = sqlite3.connect(path)
    now = "2026-12-03T00:00:00.000+00:00"
    conn.execute(
        "UPDATE items SET state = 'succeeded', task_id = 'task_' || idx, intent_at = ?,"
        " task_created_at = ?, finished_at = ?, done_at = ?, create_attempts = 1,"
        " video_urls = '[\"https://files.example/v.mp4\"]' WHERE idx < ?",
        (now, now, now, now, count - 1),
    )
    conn.execute(
        "INSERT INTO files (idx, path, size, sha256, recorded_at)"
        " SELECT idx, printf('%05d_task_%d.mp4', idx, idx), 1024, ?, ? FROM items WHERE idx < ?",
        ("0" * 64, now, count - 1),
    )
    conn.commit()
    conn.close()


async def measure_resume(count: int, *, trusted: bool = True) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "prompts.txt", Path(tmp) / "out"
        out.mkdir()
        config = MockConfig(task_seconds=0.0, jitter=0.0, file_size=1024, cap=20)
        async with MockServer(config) as mock:
            url = mock.url_for("freesora")
            build_journal(out / ".sora-journal.sqlite3", source, count, url, trusted=trusted)
            first: list[float] = []
            started = time.monotonic()

            async def watch() -> None:
                while mock.counters.requests["create"] == 0:  # noqa: ASYNC110 - no event to wait on
                    await anyio.sleep(0.005)
                first.append(time.monotonic() - started)

            async with anyio.create_task_group() as group:
                group.start_soon(watch)
                cpu, wall, _ = await timed(argv(mock, source, out), cli_env())
                group.cancel_scope.cancel()
        manifest = (out / "manifest.jsonl").stat().st_size
        to_first = f"{first[0]:.2f} s" if first else "never"
        kind = "" if trusted else " (written before the options were recorded)"
        print(
            f"resume of a {count}-item journal{kind}: first create after {to_first}; "
            f"whole run CPU {cpu:.2f} s, wall {wall:.2f} s; manifest {manifest} bytes"
        )


def main() -> None:
    what, count = sys.argv[1], int(sys.argv[2])
    os.environ.pop("SORA_API_KEY", None)
    if what == "run":
        anyio.run(measure_run, count)
    else:
        anyio.run(functools.partial(measure_resume, count, trusted=what != "resume-old"))


if __name__ == "__main__":
    main()
