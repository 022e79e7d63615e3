"""The providers' own sample code runs unchanged against the mock, apart from the base URL.

The samples live in tests/samples/ (see its README: whitespace repaired, nothing else). Each is
copied to a temporary directory with the documented base URL replaced by the mock's, then run
as a subprocess: Python (requests), JavaScript (node's built-in fetch) and curl. task_seconds=0
makes the first status poll terminal, so the samples' 30 s sleep never runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from sora_async.mock import MockConfig, MockServer

pytestmark = pytest.mark.anyio

SAMPLES = Path(__file__).parent / "samples"
FREESORA_DOC_URL = "https://freesoragenerator.com/api"
SORA2API_DOC_URL = "https://api.sora2api.ai/api/v1/sora2"
WORKFLOW_PROMPT = (
    "A cute kitten playing in a garden on a bright spring day, camera slowly zooming in"
)
DOC_KEY = "YOUR_API_KEY"
HANG_GUARD = 60  # seconds; only reached if a sample hangs


# CI (.ci/run) installs node and curl and sets this, so there a missing tool fails the run;
# on a developer machine with only Python, those samples are reported as skipped instead.
REQUIRE_TOOLS = os.environ.get("SORA_ASYNC_REQUIRE_SAMPLE_TOOLS") == "1"


def _tool(name: str, why: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed: {why}"
        if REQUIRE_TOOLS:
            pytest.fail(message)
        pytest.skip(message + " (CI installs it and requires it)")
    return found


def node() -> str:
    return _tool("node", "the sora2api document's JavaScript samples need node >= 18")


def curl() -> str:
    return _tool("curl", "the freesora document's samples are curl commands")


def prepare(name: str, tmp_path: Path, replacements: dict[str, str]) -> Path:
    """Copy a sample with each documented string replaced; every one must be present."""
    text = (SAMPLES / name).read_text()
    for old, new in replacements.items():
        assert old in text, f"{name} no longer contains {old!r}"
        text = text.replace(old, new)
    target = tmp_path / name.removesuffix(".txt")
    target.write_text(text)
    return target


async def run(*command: str | Path) -> tuple[str, str]:
    """Run a sample to its end (the mock keeps serving meanwhile); stdout and stderr."""
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    with anyio.fail_after(HANG_GUARD):
        done = await anyio.run_process([str(part) for part in command], env=env, check=False)
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, f"exit {done.returncode}\n{stdout}\n{stderr}"
    return stdout, stderr


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    async with MockServer(MockConfig(task_seconds=0)) as server:
        yield server


async def fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.read()


async def check_success(mock: MockServer, output: str) -> None:
    """The workflow sample's success lines, and a video URL that really serves the file."""
    (task_id,) = re.findall(r"Task ID: (sora2_task_[0-9a-f]+)\. Waiting for completion", output)
    assert "Generation completed successfully!" in output
    assert "Video generation successful!" in output
    video_url = f"{mock.base_url}/files/{task_id}.mp4"
    assert re.search(rf"Video URL:? {re.escape(video_url)}$", output, re.MULTILINE), output
    assert await fetch(video_url) == mock.file_bytes(task_id)
    task = mock.task(task_id)
    assert task.params == {
        "prompt": WORKFLOW_PROMPT,
        "aspectRatio": "landscape",
        "quality": "hd",
        "watermark": "My Video",
    }
    assert mock.counters.creates == 1 and mock.counters.polls == 1


# -- sora2api: Python ---------------------------------------------------------------------


async def test_python_workflow_sample_succeeds(mock: MockServer, tmp_path: Path) -> None:
    script = prepare("sora2api_workflow.py.txt", tmp_path, {SORA2API_DOC_URL: mock.sora2api_url})
    stdout, _ = await run(sys.executable, script)
    assert stdout.startswith("Starting video generation...\n")
    await check_success(mock, stdout)


@pytest.mark.parametrize(
    ("config", "lines"),
    [
        (
            MockConfig(task_seconds=0, failure_rate=1.0),
            ["Generation failed: ", "Error code: 500", "Error: "],
        ),
        (
            MockConfig(task_seconds=0, create_fail_marker="kitten"),
            ["Task creation failed: ", "Error code: 400", "Error: "],
        ),
    ],
)
async def test_python_workflow_sample_reports_failures(
    tmp_path: Path, config: MockConfig, lines: list[str]
) -> None:
    async with MockServer(config) as mock:
        script = prepare(
            "sora2api_workflow.py.txt", tmp_path, {SORA2API_DOC_URL: mock.sora2api_url}
        )
        stdout, _ = await run(sys.executable, script)
    for line in lines:
        assert line in stdout, stdout
    assert "Video generation successful!" not in stdout


# -- sora2api: JavaScript -----------------------------------------------------------------


async def test_javascript_workflow_sample_succeeds(mock: MockServer, tmp_path: Path) -> None:
    script = prepare("sora2api_workflow.js", tmp_path, {SORA2API_DOC_URL: mock.sora2api_url})
    stdout, stderr = await run(node(), script)
    assert stdout.startswith("Starting video generation...\n")
    assert stderr == ""
    await check_success(mock, stdout)


async def test_javascript_workflow_sample_reports_failures(tmp_path: Path) -> None:
    async with MockServer(MockConfig(task_seconds=0, failure_rate=1.0)) as mock:
        script = prepare("sora2api_workflow.js", tmp_path, {SORA2API_DOC_URL: mock.sora2api_url})
        stdout, stderr = await run(node(), script)
    assert "Generation failed: " in stderr and "Error code: 500" in stderr
    assert "Video generation successful!" not in stdout


async def test_javascript_quickstart_and_curl_status_samples(
    mock: MockServer, tmp_path: Path
) -> None:
    script = prepare("sora2api_quickstart.js", tmp_path, {SORA2API_DOC_URL: mock.sora2api_url})
    stdout, _ = await run(node(), script)
    assert "Task submitted:" in stdout
    (task_id,) = re.findall(r"^Task ID: (sora2_task_[0-9a-f]+)$", stdout, re.MULTILINE)
    assert mock.task(task_id).params == {
        "prompt": "A cute kitten playing in a garden on a bright spring day",
        "aspectRatio": "landscape",
        "quality": "hd",
    }

    curl()
    status = prepare(
        "sora2api_record_info.sh",
        tmp_path,
        {SORA2API_DOC_URL: mock.sora2api_url, "YOUR_TASK_ID": task_id},
    )
    stdout, _ = await run("bash", status)
    answer = json.loads(stdout)
    assert answer["code"] == 200 and answer["msg"] == "success"
    assert answer["data"]["taskId"] == task_id and answer["data"]["successFlag"] == 1
    assert answer["data"]["response"]["imageUrl"] == f"{mock.base_url}/files/{task_id}.mp4"


# -- freesora: curl -----------------------------------------------------------------------


async def curl_sample(mock: MockServer, tmp_path: Path, name: str, **extra: str) -> Any:
    curl()
    script = prepare(name, tmp_path, {FREESORA_DOC_URL: mock.freesora_url, **extra})
    stdout, _ = await run("bash", script)
    return json.loads(stdout)


async def test_freesora_curl_samples(mock: MockServer, tmp_path: Path) -> None:
    created = await curl_sample(mock, tmp_path, "freesora_create.sh")
    assert created["code"] == 0 and created["message"] == "ok"
    task_id = created["data"]["id"]
    assert re.fullmatch(r"task_[0-9a-f]+", task_id)
    task = mock.task(task_id)
    assert task.params == {
        "model": "sora-2-stable",
        "prompt": "A cinematic shot of a futuristic city at sunset, captured in 4K.",
        "imageData": "data:image/png;base64,iVBORw0KGgoAAA...",
        "aspectRatio": "9:16",
        "duration": 15,
        "isPublic": True,
    }
    assert task.cost == 150

    checked = await curl_sample(mock, tmp_path, "freesora_check_result.sh", task_1234567890=task_id)
    assert checked["code"] == 0 and checked["message"] == "Success"
    assert checked["data"]["status"] == "succeeded" and checked["data"]["progress"] == 100
    assert checked["data"]["result_urls"] == [f"{mock.base_url}/files/{task_id}.mp4"]

    credits = await curl_sample(mock, tmp_path, "freesora_credits.sh")
    assert credits["code"] == 0
    assert credits["data"]["left_credits"] == 1_000_000 - 150
    assert mock.credits(DOC_KEY) == 1_000_000 - 150  # the doc's placeholder key is the account


def test_samples_are_the_documented_code_with_whitespace_repaired() -> None:
    """A guard on the reconstruction: the tokens the scrape split are joined, nothing added."""
    python = (SAMPLES / "sora2api_workflow.py.txt").read_text()
    assert "f'Bearer {api_key}'" in python and "f '" not in python
    assert "f'{self.base_url}/record-info?taskId={task_id}'" in python
    assert "time.sleep(30)" in python
    javascript = (SAMPLES / "sora2api_workflow.js").read_text()
    assert "`${this.baseUrl}/generate`" in javascript and "${ " not in javascript
    assert "setTimeout(resolve, 30000)" in javascript
    for name in ("sora2api_workflow.py.txt", "sora2api_workflow.js", "sora2api_quickstart.js"):
        assert DOC_KEY in (SAMPLES / name).read_text()
    compile(python, "sora2api_workflow.py", "exec")  # still valid Python
