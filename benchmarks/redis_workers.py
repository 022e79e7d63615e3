"""4 workers on one Redis governor against 1 process with the in-process governor.

The same total work (N prompts, one mock server with an account cap, the same seeded task
durations) is run twice: once by one process with ``LocalGovernor``, once by four processes
sharing the account through ``RedisGovernor`` on a local redis-server. Reported: slot
utilization (task-seconds / (cap x makespan), from the mock's own records) of each and their
ratio, the mock's maximum of live tasks, 429s, and the Redis round trips per task.

    python benchmarks/redis_workers.py [--tasks 200] [--task-seconds 2.0] [--out DIR]

Needs ``redis-server`` on PATH and the ``[redis]`` extra. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from sora_async import SoraClient, VideoRequest
from sora_async.governor_redis import RedisGovernor
from sora_async.mock import MockConfig, MockServer

KEY = "sk-bench-0123456789abcdef"
CAP = 20
WORKERS = 4


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _worker(args: argparse.Namespace) -> dict[str, Any]:
    """One worker process: its share of the prompts through generate_many."""
    governor = None
    if args.redis_url:
        governor = RedisGovernor(args.redis_url, "bench", CAP)
        await governor.open()
    requests = (VideoRequest(f"{args.name}-{i}") for i in range(args.count))
    ok = 0
    try:
        async with SoraClient(
            "freesora",
            KEY,
            base_url=args.base_url,
            governor=governor,
            max_concurrent_tasks=CAP,
            poll_interval=args.task_seconds / 20,
            expected_duration=args.task_seconds,
        ) as client:
            async for result in client.generate_many(requests):
                ok += result.ok
    finally:
        if governor is not None:
            await governor.aclose()
    return {"ok": ok, "redis_calls": governor.redis_calls if governor is not None else 0}


async def _scenario(
    args: argparse.Namespace, workers: int, redis_url: str | None
) -> dict[str, Any]:
    config = MockConfig(task_seconds=args.task_seconds, jitter=0.5, cap=CAP, seed=7, file_size=64)
    async with MockServer(config) as mock:
        share = args.tasks // workers
        reports: list[dict[str, Any]] = []

        async def run(index: int) -> None:
            command = [
                sys.executable,
                __file__,
                "--worker",
                "--base-url",
                mock.url_for("freesora"),
                "--name",
                f"w{index}",
                "--count",
                str(share),
                "--task-seconds",
                str(args.task_seconds),
            ]
            if redis_url:
                command += ["--redis-url", redis_url]
            done = await anyio.run_process(command, check=True)
            reports.append(json.loads(done.stdout.decode().strip().splitlines()[-1]))

        async with anyio.create_task_group() as group:
            for index in range(workers):
                group.start_soon(run, index)
        records = mock.state.tasks()
        counters = mock.counters
    start = min(record.created_at for record in records)
    end = max(record.terminal_at for record in records)
    busy = sum(record.duration for record in records)
    total = share * workers
    return {
        "workers": workers,
        "governor": "redis" if redis_url else "local",
        "tasks": total,
        "succeeded": sum(report["ok"] for report in reports),
        "makespan_s": round(end - start, 3),
        "utilization": round(busy / (CAP * (end - start)), 4),
        "max_live": counters.max_live_tasks,
        "rate_limited": counters.rate_limited,
        "creates_per_prompt_max": max(counters.creates_by_prompt.values()),
        "redis_round_trips_per_task": round(
            sum(report["redis_calls"] for report in reports) / total, 2
        ),
    }


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = _free_port()
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(  # noqa: ASYNC220 - started once, before any work
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )
        try:
            await anyio.sleep(0.5)
            local = await _scenario(args, 1, None)
            shared = await _scenario(args, WORKERS, f"redis://127.0.0.1:{port}/0")
        finally:
            server.kill()
            server.wait()
    return {
        "config": {"tasks": args.tasks, "task_seconds": args.task_seconds, "cap": CAP},
        "environment": {
            "python": platform.python_version(),
            "cpus": __import__("os").cpu_count(),
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "local": local,
        "redis": shared,
        "utilization_ratio": round(shared["utilization"] / local["utilization"], 3),
    }


def _markdown(result: dict[str, Any]) -> str:
    local, shared = result["local"], result["redis"]
    rows = [
        ("processes", local["workers"], shared["workers"]),
        ("tasks succeeded", local["succeeded"], shared["succeeded"]),
        ("makespan, s", local["makespan_s"], shared["makespan_s"]),
        ("slot utilization", local["utilization"], shared["utilization"]),
        ("max live tasks (cap 20)", local["max_live"], shared["max_live"]),
        ("429s", local["rate_limited"], shared["rate_limited"]),
        (
            "creates per prompt (max)",
            local["creates_per_prompt_max"],
            shared["creates_per_prompt_max"],
        ),
        ("Redis round trips per task", "-", shared["redis_round_trips_per_task"]),
    ]
    config, env = result["config"], result["environment"]
    lines = [
        f"N = {config['tasks']} tasks, cap {config['cap']}, mock tasks of "
        f"{config['task_seconds']} s +- 50% (seed 7); Python {env['python']}, {env['cpus']} CPUs, "
        f"{env['when']}.",
        "",
        "| metric | 1 process, LocalGovernor | 4 processes, RedisGovernor |",
        "|---|---:|---:|",
        *(f"| {name} | {a} | {b} |" for name, a, b in rows),
        "",
        f"Utilization of the 4 workers relative to the single process: "
        f"**{result['utilization_ratio']}** (target >= 0.95).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--task-seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(anyio.run(_worker, args)), flush=True)
        return
    result = anyio.run(_bench, args)
    text = _markdown(result)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "redis_workers.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "redis_workers.md").write_text(text)


if __name__ == "__main__":
    main()
