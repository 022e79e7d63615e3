"""OpenTelemetry spans (extra ``otel``): one span per task, one per HTTP request made for it
(create, each poll, each file) with its status, attempts, 429s and failures.

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
from opentelemetry.trace import SpanKind, StatusCode

from sora_async import (
    ConfigurationError,
    CreateOutcomeUnknownError,
    Job,
    SoraClient,
    VideoRequest,
    requestspans,
)
from sora_async.config import Secret
from sora_async.mock import Fault
from sora_async.providers.freesora import FreeSora
from sora_async.tracing import traced_requests
from sora_async.transport import Transport

pytestmark = pytest.mark.anyio

KEY = "sk-TRACING-51c0ffee"


@pytest.fixture
def exported() -> tuple[Any, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def _children(spans: list[Any], parent: Any, name: str) -> list[Any]:
    """``parent``'s child spans called ``name``, or making requests to endpoint ``name``."""
    return [
        s
        for s in spans
        if name in (s.name, s.attributes.get("sora.endpoint"))
        and s.parent is not None
        and s.parent.span_id == parent.context.span_id
    ]


def _assert_nothing_secret(spans: list[Any]) -> None:
    for span in spans:
        shown = repr(dict(span.attributes or {})) + repr([dict(e.attributes) for e in span.events])
        assert KEY not in shown and "127.0.0.1" not in shown
        assert span.attributes["sora.provider"] in {"freesora", "sora2api"}


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
        polls = mock.counters.requests["status"]

    spans = list(exporter.get_finished_spans())
    tasks = [s for s in spans if s.name == "sora_async.task"]
    by_index = {s.attributes["sora.index"]: s for s in tasks}
    kite, fox = by_index[0], by_index[1]
    assert kite.attributes["sora.task_id"] == results[0].task_id
    assert kite.status.status_code is not StatusCode.ERROR
    assert kite.attributes["sora.state"] == "succeeded"
    assert fox.status.status_code is StatusCode.ERROR
    assert fox.attributes["sora.state"] == "failed"

    # Every create, poll and file is a CLIENT span under its own task's span.
    creates = [s for s in spans if s.name == "POST create"]
    assert len(creates) == 3  # one refused with 429, then one per task
    refused = [s for s in creates if s.status.status_code is StatusCode.ERROR]
    assert len(refused) == 1
    assert refused[0].attributes["http.response.status_code"] == 429
    assert refused[0].attributes["error.type"] == "RateLimitError"
    assert refused[0].attributes["sora.rate_limited"] == 1
    assert refused[0].attributes["sora.retry_after"] == 0.01
    for task in (kite, fox):
        [create] = [s for s in _children(spans, task, "create") if s not in refused]
        assert create.attributes["http.response.status_code"] == 200
        assert create.attributes["http.request.method"] == "POST"
        assert create.attributes["sora.endpoint"] == "create"
        assert create.attributes["sora.retries"] == 0
        assert create.kind is SpanKind.CLIENT
        task_polls = _children(spans, task, "status")
        assert task_polls and all(
            s.attributes["http.response.status_code"] == 200 for s in task_polls
        )
    status_spans = [s for s in spans if s.name == "POST status"]  # freesora's check-result
    assert len(status_spans) == polls  # each poll the mock saw, and no other
    [download] = _children(spans, kite, "download")
    assert download.attributes["http.response.status_code"] == 200
    assert download.attributes["sora.attempts"] == 1
    assert not _children(spans, fox, "download")
    # The download phase keeps its span, with one event per file.
    [phase] = _children(spans, kite, "sora_async.download")
    assert [event.name for event in phase.events] == ["file"]
    assert {event.name for event in kite.events} <= {"status"}
    _assert_nothing_secret(spans)


@pytest.mark.usefixtures("no_backoff_waits")
async def test_a_retried_request_is_one_span_with_its_failed_attempts(
    exported: tuple[Any, InMemorySpanExporter], tmp_path: Path
) -> None:
    tracer, exporter = exported
    async with (
        running_mock(file_size=4096) as mock,
        client_for(mock, "sora2api", KEY, tracing=tracer) as client,
    ):
        mock.inject("status", Fault.RATE_LIMIT, retry_after=0.02)
        mock.inject("status", Fault.SERVER_ERROR)
        mock.inject("download", Fault.HTTP_ERROR, status=404)
        result = await client.generate("a kite", download_to=tmp_path)
    assert result.download_error is not None

    spans = list(exporter.get_finished_spans())
    [task] = [s for s in spans if s.name == "sora_async.task"]
    first = min(_children(spans, task, "status"), key=lambda s: s.start_time)
    assert first.status.status_code is not StatusCode.ERROR
    assert first.attributes["http.response.status_code"] == 200
    assert first.attributes["sora.attempts"] == 3
    assert first.attributes["sora.retries"] == 2
    assert first.attributes["sora.rate_limited"] == 1
    assert first.attributes["sora.retry_after"] == 0.02
    failed = [dict(event.attributes) for event in first.events]
    assert [
        (e["sora.attempt"], e["http.response.status_code"], e["error.type"]) for e in failed
    ] == [
        (1, 429, "RateLimitError"),
        (2, 500, "ServerError"),
    ]
    assert all(e["sora.retry_in"] >= 0 for e in failed)
    # The file answered 404: its request failed for good, and so did the task's download.
    [download] = _children(spans, task, "download")
    assert download.status.status_code is StatusCode.ERROR
    assert download.attributes["http.response.status_code"] == 404
    assert download.attributes["error.type"] == "DownloadError"
    assert download.attributes["sora.retries"] == 0
    [phase] = _children(spans, task, "sora_async.download")
    assert phase.status.status_code is StatusCode.ERROR
    assert phase.attributes["sora.error_class"] == "DownloadError"
    _assert_nothing_secret(spans)


@pytest.mark.usefixtures("no_backoff_waits")
async def test_a_failed_create_is_an_error_span_under_its_task(
    exported: tuple[Any, InMemorySpanExporter],
) -> None:
    tracer, exporter = exported
    async with (
        running_mock() as mock,
        client_for(mock, "freesora", KEY, tracing=tracer) as client,
    ):
        mock.inject("create", Fault.CREATED_THEN_500)
        [result] = [r async for r in client.generate_many(["a kite"])]
    assert result.exception is not None

    spans = list(exporter.get_finished_spans())
    [task] = [s for s in spans if s.name == "sora_async.task"]
    [create] = _children(spans, task, "create")
    assert create.status.status_code is StatusCode.ERROR
    assert create.attributes["http.response.status_code"] == 500
    assert create.attributes["error.type"] == "ServerError"
    assert (
        create.attributes["sora.attempts"] == 1
    )  # a create with an unknown outcome is never re-sent
    assert task.status.status_code is StatusCode.ERROR
    _assert_nothing_secret(spans)


async def test_every_poll_of_an_adopted_task_is_under_its_span(
    exported: tuple[Any, InMemorySpanExporter], tmp_path: Path
) -> None:
    # A job given a task id is never created: no event comes before its follower's first
    # poll (at once, the task's age being unknown), yet that poll is the task's too.
    tracer, exporter = exported
    async with running_mock(task_seconds=0.6, file_size=4096) as mock:
        async with client_for(mock, "sora2api", KEY) as creator:  # an earlier run, untraced
            task_id = await creator.create("a kite")
        before = mock.counters.requests["status"]
        async with client_for(mock, "sora2api", KEY, tracing=tracer) as client:
            jobs = [Job(VideoRequest("a kite"), key="kite", task_id=task_id)]
            [result] = [r async for r in client.generate_many(jobs, download_to=tmp_path)]
        polls = mock.counters.requests["status"] - before
    assert result.ok and result.task_id == task_id
    assert polls >= 2  # the first one at once, before any event

    spans = list(exporter.get_finished_spans())
    [task] = [s for s in spans if s.name == "sora_async.task"]
    assert task.attributes["sora.task_id"] == task_id
    assert task.attributes["sora.state"] == "succeeded"
    assert not [s for s in spans if s.attributes.get("sora.endpoint") == "create"]
    assert len(_children(spans, task, "status")) == polls
    assert len([s for s in spans if s.attributes.get("sora.endpoint") == "status"]) == polls
    [download] = _children(spans, task, "download")
    assert download.attributes["http.response.status_code"] == 200
    assert requestspans.current() is None
    _assert_nothing_secret(spans)


async def test_requests_after_a_traced_task_are_not_put_under_it(
    exported: tuple[Any, InMemorySpanExporter],
) -> None:
    tracer, exporter = exported
    async with running_mock() as mock, client_for(mock, "freesora", KEY, tracing=tracer) as client:
        await client.generate("a kite")  # its events ran in this very context
        assert requestspans.current() is None
        await client.credits()
    # credits() belongs to no task: its request is a span of its own, a root.
    [credits] = [
        s for s in exporter.get_finished_spans() if s.attributes.get("sora.endpoint") == "credits"
    ]
    assert credits.parent is None


@pytest.mark.usefixtures("no_backoff_waits")
async def test_a_generate_that_raises_leaves_no_task_span_behind(
    exported: tuple[Any, InMemorySpanExporter],
) -> None:
    tracer, exporter = exported
    async with running_mock() as mock, client_for(mock, "freesora", KEY, tracing=tracer) as client:
        mock.inject("create", Fault.CREATED_THEN_500)
        with pytest.raises(CreateOutcomeUnknownError):
            await client.generate("a kite")
        assert requestspans.current() is None
    spans = list(exporter.get_finished_spans())
    [create] = [s for s in spans if s.name == "POST create"]
    assert create.attributes["error.type"] == "ServerError"
    # The raising task's own span is ended (and so exported), as an error, not left open.
    [task] = [s for s in spans if s.name == "sora_async.task"]
    assert task.status.status_code is StatusCode.ERROR
    assert create.parent is not None and create.parent.span_id == task.context.span_id


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


@pytest.mark.usefixtures("no_backoff_waits")
async def test_a_request_of_no_task_is_traced_inside_traced_requests(
    exported: tuple[Any, InMemorySpanExporter],
) -> None:
    # What SoraClient.credits() needs (it belongs to no task): the transport, as the client
    # holds it, sends the credits call inside traced_requests.
    tracer, exporter = exported
    provider = FreeSora()
    async with running_mock() as mock:
        mock.inject("credits", Fault.SERVER_ERROR)
        transport = Transport(mock.url_for("freesora"), Secret(KEY))
        async with transport:
            with traced_requests(None, "freesora"):  # tracing off: nothing, no import needed
                await transport.call(provider.credits_call(), provider.decode_credits, safe=True)
            with (
                tracer.start_as_current_span("caller") as caller,
                traced_requests(tracer, "freesora"),
            ):
                await transport.call(provider.credits_call(), provider.decode_credits, safe=True)
            assert requestspans.current() is None

    [credits] = [s for s in exporter.get_finished_spans() if s.name == "POST credits"]
    assert credits.parent is not None and credits.parent.span_id == caller.context.span_id
    assert credits.attributes["sora.endpoint"] == "credits"
    assert credits.attributes["http.response.status_code"] == 200
    assert credits.attributes["sora.retries"] == 0  # the fault went to the untraced call
    _assert_nothing_secret([credits])
