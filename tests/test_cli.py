"""The small commands as a user runs them: generate, status, credits, mock-server, demo, errors.

Every test runs the console entry point (``sora_async.cli.main``) against the mock server on
127.0.0.1; the mock's counters show what was sent. Most run it in this process (inprocess_cli.py);
the tests of what only a real process shows (its exit status, a server that runs until
stopped) start ``python -m sora_async``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import zygote
from inprocess_cli import environment, run_main

from sora_async.mock import MockConfig, MockServer
from sora_async.models import Model
from sora_async.providers.freesora import freesora_price

pytestmark = pytest.mark.anyio

KEY = "sk-CLI-CANARY-5b1e0c"


async def sora(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``sora-async ARGV``, run in this process (inprocess_cli.py) without the SORA_* settings."""
    with anyio.fail_after(60):  # a hang guard, not a timing assertion
        return await run_main(argv, environment(**(env or {})))


async def sora_process(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m sora_async ARGV`` as a real process (forked by the fork server, zygote.py):
    the interpreter's own exit status."""
    with anyio.fail_after(60):
        done = await zygote.run_process(
            [sys.executable, "-m", "sora_async", *argv], env=environment(**env)
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("sora-async: error: ")
    return lines[0]


@pytest.fixture
async def mock() -> MockServer:
    async with MockServer(MockConfig(task_seconds=0.3, file_size=4096)) as server:
        yield server  # type: ignore[misc]


@pytest.mark.parametrize("provider", ["freesora", "sora2api"])
async def test_generate_downloads_the_video(
    mock: MockServer, tmp_path: Path, provider: str
) -> None:
    done = await sora(
        "--provider", provider, "--base-url", mock.url_for(provider), "--poll-interval", "0.1",
        "generate", "a kite over the sea", "--aspect-ratio", "16:9", "--out", str(tmp_path),
        env={"SORA_API_KEY": KEY},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["state"] == "succeeded"
    [path] = result["files"]
    task_id = result["task_id"]
    assert Path(path).name == f"{task_id}.mp4"
    served = mock.file_bytes(task_id)
    written = await anyio.Path(path).read_bytes()
    assert hashlib.sha256(written).digest() == hashlib.sha256(served).digest()
    assert mock.counters.creates_by_prompt["a kite over the sea"] == 1
    assert KEY not in done.stdout + done.stderr


async def test_generate_a_failed_task_exits_1(mock: MockServer) -> None:
    # A real process: the status is the interpreter's, through ``python -m sora_async``.
    done = await sora_process(
        "--base-url", mock.freesora_url, "--api-key", KEY, "--poll-interval", "0.1",
        "generate", "a kite [fail]", env={},
    )  # fmt: skip
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["state"] == "failed"
    assert result["refunded"] is True


async def test_status_and_credits_print_json(mock: MockServer) -> None:
    base = ["--base-url", mock.freesora_url, "--api-key", KEY]
    created = await sora(*base, "--poll-interval", "0.1", "generate", "a lighthouse")
    task_id = json.loads(created.stdout)["task_id"]

    status = await sora(*base, "status", task_id)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "succeeded"

    credits = await sora(*base, "credits")
    assert credits.returncode == 0, credits.stderr
    spent = freesora_price(Model.SORA_2, None)
    assert json.loads(credits.stdout)["left_credits"] == mock.credits(KEY)
    assert mock.credits(KEY) == MockConfig().initial_credits - spent


async def test_credits_on_sora2api_is_a_clear_error_with_no_request(mock: MockServer) -> None:
    done = await sora(
        "--provider", "sora2api", "--base-url", mock.sora2api_url, "--api-key", KEY, "credits"
    )
    assert done.returncode == 1
    assert "sora2api has no credits endpoint" in one_error_line(done)
    assert sum(mock.counters.requests.values()) == 0


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["generate", "a kite", "--duration", "12"], "--duration"),
        (["generate"], "prompt"),
        (["--provider", "nope", "credits"], "--provider"),
        (["--concurrency", "0", "credits"], "--concurrency"),
        (["frobnicate"], "frobnicate"),
        (["generate", "a kite", "--quality", "hd"], "quality"),  # freesora has no quality
        (["generate", "   "], "prompt"),
        (["--provider", "sora2api", "generate", "a kite", "--image", "cat.png"], "image"),
        (["generate", "a kite", "--image", "missing.png"], "image"),
        (["--base-url", "ftp://example", "credits"], "base_url"),
    ],
)
async def test_usage_errors_are_one_line_and_exit_2_with_no_request(
    mock: MockServer, argv: list[str], words: str
) -> None:
    base = [] if "--base-url" in argv else ["--base-url", mock.freesora_url]
    if "--provider" in argv and "sora2api" in argv:
        base = ["--base-url", mock.sora2api_url]
    done = await sora(*base, *argv, env={"SORA_API_KEY": KEY})
    assert done.returncode == 2, done.stderr
    assert words in one_error_line(done)
    assert sum(mock.counters.requests.values()) == 0


async def test_no_api_key_is_a_configuration_error(mock: MockServer) -> None:
    # A real process: a configuration error is the interpreter's exit status 2, in one line.
    done = await sora_process("--base-url", mock.freesora_url, "credits", env={})
    assert done.returncode == 2
    assert "SORA_API_KEY" in one_error_line(done)
    assert sum(mock.counters.requests.values()) == 0


async def test_environment_settings_and_flag_precedence(mock: MockServer) -> None:
    # The environment names a provider and a URL that would fail; the flags win.
    done = await sora(
        "--provider", "freesora", "--base-url", mock.freesora_url, "credits",
        env={"SORA_API_KEY": KEY, "SORA_PROVIDER": "sora2api",
             "SORA_BASE_URL": "http://127.0.0.1:9/nowhere"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert mock.counters.requests["credits"] == 1


async def test_an_api_error_is_one_line_without_the_key(mock: MockServer) -> None:
    async with MockServer(MockConfig(api_keys=frozenset({"the-right-key"}))) as strict:
        done = await sora("--base-url", strict.freesora_url, "--api-key", KEY, "credits")
    assert done.returncode == 1
    assert "401" in one_error_line(done)
    assert KEY not in done.stderr + done.stdout


async def test_mock_server_serves_both_providers(tmp_path: Path) -> None:
    process = await zygote.open_process(
        [sys.executable, "-m", "sora_async", "mock-server", "--port", "0", "--task-seconds", "0"]
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        buffer = b""
        with anyio.fail_after(30):
            while len(lines) < 2:
                buffer += await process.stdout.receive()
                *complete, rest = buffer.split(b"\n")
                lines.extend(line.decode() for line in complete)
                buffer = rest
        urls = dict(line.split(" base URL: ") for line in lines)
        for provider in ("freesora", "sora2api"):
            done = await sora(
                "--provider", provider, "--base-url", urls[provider], "--api-key", KEY,
                "--poll-interval", "0.1", "generate", "a kite", "--out", str(tmp_path),
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["state"] == "succeeded"
    finally:
        process.terminate()
        await process.aclose()


async def test_demo_runs_the_main_job_offline(tmp_path: Path) -> None:
    done = await sora("demo", "--count", "6", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "6/6 videos" in done.stdout
    assert "byte-identical to what the server sent: True" in done.stdout
    assert "each prompt created once: True" in done.stdout
    assert len([p async for p in anyio.Path(tmp_path).glob("*.mp4")]) == 6


async def test_bench_help_and_version_of_help() -> None:
    done = await sora("--help")
    assert done.returncode == 0
    for command in ("generate", "batch", "status", "credits", "mock-server", "demo", "bench"):
        assert command in done.stdout


COMMANDS = (
    "generate", "batch", "status", "wait", "download", "report", "credits", "mock-server",
    "demo", "bench",
)  # fmt: skip


def test_version_help_everywhere_and_a_bare_command_list(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # In-process: argparse answers these before anything else happens.
    from sora_async import __version__
    from sora_async.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"sora-async {__version__}"
    assert main([]) == 0
    listed = capsys.readouterr().out
    assert all(command in listed for command in COMMANDS)
    for command in COMMANDS:
        assert main([command, "--help"]) == 0, command
        shown = capsys.readouterr().out
        assert f"usage: sora-async {command}" in shown and "--provider" in shown, command


async def test_global_options_after_the_command_win(mock: MockServer) -> None:
    done = await sora(
        "--base-url", "http://127.0.0.1:9/nowhere", "credits",
        "--base-url", mock.freesora_url, "--api-key", KEY,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert mock.counters.requests["credits"] == 1


async def test_the_command_line_starts_without_the_benchmark_harness() -> None:
    # Every run builds the whole parser; the harness (its mock, plots and runners, most of a
    # second of start-up) is imported only when `bench` runs. A fresh interpreter: this one
    # may have imported it for another test.
    code = (
        "import sys\n"
        "from sora_async.cli import main\n"
        "assert main(['batch', '--help']) == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith('sora_async.bench')))\n"
    )
    with anyio.fail_after(60):  # a hang guard
        done = await anyio.run_process([sys.executable, "-c", code], env=environment(), check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines()[-1] == "[]"


def test_the_bench_options_name_every_scenario_of_the_catalogue() -> None:
    from sora_async.bench import catalogue
    from sora_async.cli.bench_options import ON_REQUEST, SCENARIO_NAMES

    scenarios = catalogue()
    assert tuple(scenario.name for scenario in scenarios) == SCENARIO_NAMES
    assert tuple(scenario.name for scenario in scenarios if scenario.only_when_named) == ON_REQUEST
