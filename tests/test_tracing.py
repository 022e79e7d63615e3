"""OpenTelemetry spans (extra ``otel``): one span per task, one per create and per download.

The spans go to an in-memory exporter of the SDK's own TracerProvider, handed to the client as
``tracing=<tracer>``; the global provider is never touched. Without ``tracing=`` opentelemetry
is not even imported (checked in a fresh interpreter).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import client_for, running_mock
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from sora_async import ConfigurationError, SoraClient
from sora_async.mock import Fault

pytestmark = pytest.mark.anyio

KEY = "sk-TRACING-51c0ffee"


@pytest.fixture
def exported() -> tuple[Any, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


async def test_a_run_has_a_span_per_task_and_per_request(
    exported: tuple[Any, InMemorySpanExporter], tmp_path: Path
) -> None:
    tracer, exporter = exported
    async with (
        running_mock(file_size=4096) as mock,
        client_for(mock, "freesora", KEY, tracing=tracer) as client,
    ):
        mock.inject("create", Fault.RATE_LIMIT, retry_after=0.01)
        prompts = ["a kite", "a fox [fail]"]
        results = {r.key: r async for r in client.generate_many(prompts, download_to=tmp_path)}

    spans = exporter.get_finished_spans()
    tasks = [s for s in spans if s.name == "sora_async.task"]
    creates = [s for s in spans if s.name == "sora_async.create"]
    downloads = [s for s in spans if s.name == "sora_async.download"]
    assert len(tasks) == 2 and len(downloads) == 1
    assert len(creates) == 3  # one refused with 429, then one per task
    by_index = {s.attributes["sora.index"]: s for s in tasks}
    assert by_index[0].attributes["sora.task_id"] == results[0].task_id
    assert by_index[0].status.status_code is not StatusCode.ERROR
    assert by_index[1].status.status_code is StatusCode.ERROR
    assert by_index[1].attributes["sora.state"] == "failed"
    refused = [s for s in creates if s.status.status_code is StatusCode.ERROR]
    assert len(refused) == 1 and refused[0].attributes["sora.retry_after"] == 0.01
    for child in creates + downloads:
        assert child.parent is not None
        assert child.parent.span_id in {t.context.span_id for t in tasks}
    assert any(event.name == "file" for event in downloads[0].events)
    assert by_index[0].attributes["sora.state"] == "succeeded"
    # Each status seen while the task ran (if a poll caught it running) is an event on it.
    assert {event.name for event in by_index[0].events} <= {"status"}
    for span in spans:
        assert KEY not in repr(dict(span.attributes or {}))
        assert span.attributes["sora.provider"] == "freesora"


async def test_generate_traces_its_task(exported: tuple[Any, InMemorySpanExporter]) -> None:
    tracer, exporter = exported
    async with running_mock() as mock, client_for(mock, "sora2api", KEY, tracing=tracer) as client:
        result = await client.generate("a kite")

    [task] = [s for s in exporter.get_finished_spans() if s.name == "sora_async.task"]
    assert task.attributes["sora.task_id"] == result.task_id


def test_tracing_without_opentelemetry_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if it were not installed
    with pytest.raises(ConfigurationError, match=r"sora_async\[otel\]"):
        SoraClient("freesora", KEY, tracing=True)
    with pytest.raises(ConfigurationError, match="tracing"):
        monkeypatch.delitem(sys.modules, "opentelemetry")
        SoraClient("freesora", KEY, tracing="yes")


async def test_without_tracing_opentelemetry_is_never_imported() -> None:
    code = (
        "import sys, anyio\n"
        "from sora_async import SoraClient\n"
        "from sora_async.mock import MockServer\n"
        "async def main():\n"
        "    async with MockServer() as mock, SoraClient('freesora', 'sk-x-0123456789',"
        " base_url=mock.freesora_url) as client:\n"
        "        client.generate_many(['a kite'])\n"
        "anyio.run(main)\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORA_")}
    with anyio.fail_after(60):  # a hang guard
        done = await anyio.run_process([sys.executable, "-c", code], env=env, check=False)
    assert done.returncode == 0, done.stderr.decode()
