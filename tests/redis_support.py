"""A real redis-server for the shared-governor tests: own free port on 127.0.0.1, own
directory, no persistence; and the worker processes that share one account through it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

WORKER = Path(__file__).with_name("redis_worker.py")
#: Short leases so expiry is seen in about a second; heartbeats well inside them.
LEASE_TTL = 1.5
HEARTBEAT = 0.25
_START_GUARD = 10.0


def require_redis_server() -> str:
    """The redis-server binary; CI (which installs it) fails without it, a laptop skips."""
    path = shutil.which("redis-server")
    if path is None:
        if os.environ.get("SORA_ASYNC_REQUIRE_REDIS"):
            pytest.fail("redis-server is not installed (.ci/run installs it with apt-get)")
        pytest.skip("redis-server is not installed")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One redis-server process; :meth:`restart` keeps the port and loses the data."""

    def __init__(self, directory: Path) -> None:
        self.binary = require_redis_server()
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _START_GUARD
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not start:\n{log}")
            time.sleep(0.02)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """Crash it: SIGKILL, nothing saved (there is no persistence anyway)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()


def worker_command(
    *,
    base_url: str,
    redis_url: str,
    account: str,
    name: str,
    count: int,
    cap: int = 20,
) -> list[str]:
    return [
        sys.executable,
        str(WORKER),
        "--base-url",
        base_url,
        "--redis-url",
        redis_url,
        "--account",
        account,
        "--name",
        name,
        "--count",
        str(count),
        "--cap",
        str(cap),
        "--lease-ttl",
        str(LEASE_TTL),
        "--heartbeat",
        str(HEARTBEAT),
    ]


def parse_report(stdout: bytes) -> dict[str, Any]:
    """The worker's last stdout line: its JSON report."""
    lines = stdout.decode().strip().splitlines()
    assert lines, "the worker printed no report"
    report: dict[str, Any] = json.loads(lines[-1])
    return report
