"""The callback receiver, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from yarl import URL

from sora_async.callbacks import CallbackReceiver, CallbackStatistics, WakeHint
from sora_async.errors import ConfigurationError, ProtocolError

pytestmark = pytest.mark.anyio

CAP = 1024
# Only a guard against a hang; no assertion depends on how long anything takes.
GUARD = 10


def record_info(task_id: str, flag: int = 1) -> dict[str, Any]:
    """A callback body shaped like sora2api's record-info answer."""
    return {
        "code": 200,
        "msg": "success",
        "data": {
            "taskId": task_id,
            "successFlag": flag,
            "response": {"imageUrl": "https://cdn.example/v.mp4"},
            "errorCode": 0,
            "errorMessage": None,
        },
    }


@pytest.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    async with CallbackReceiver(max_body_bytes=CAP) as rec:
        yield rec


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def post_json(session: aiohttp.ClientSession, url: str, body: object) -> tuple[int, str]:
    async with session.post(url, json=body) as resp:
        return resp.status, await resp.text()


def token_of(receiver: CallbackReceiver) -> str:
    return URL(receiver.callback_url).parts[-1]


def total(stats: CallbackStatistics) -> int:
    return (
        stats.accepted
        + stats.duplicates
        + stats.rejected_token
        + stats.rejected_method
        + stats.rejected_size
        + stats.rejected_body
    )


async def test_callback_url_has_bound_port_and_token(receiver: CallbackReceiver) -> None:
    url = URL(receiver.callback_url)
    assert url.scheme == "http"
    assert url.host == "127.0.0.1"
    assert url.port == receiver.port
    assert receiver.port != 0
    assert url.path == f"/sora-async/callback/{token_of(receiver)}"
    assert len(token_of(receiver)) >= 32
    assert token_of(receiver) not in receiver.redacted_callback_url
    assert token_of(receiver) not in repr(receiver)


async def test_each_receiver_gets_its_own_token() -> None:
    one = CallbackReceiver(public_url="https://hooks.example")
    two = CallbackReceiver(public_url="https://hooks.example")
    assert one.callback_url != two.callback_url


async def test_good_callback_wakes_the_watcher(
    receiver: CallbackReceiver, session: aiohttp.ClientSession
) -> None:
    hint = receiver.watch("task-1")
    other = receiver.watch("task-2")
    assert not hint.is_set()

    status, text = await post_json(session, receiver.callback_url, record_info("task-1"))

    assert status == 200
    assert json.loads(text) == {"code": 200, "msg": "ok"}
    with anyio.fail_after(GUARD):
        await hint.wait()
    assert hint.is_set()
    assert not other.is_set()
    stats = receiver.statistics()
    assert (stats.received, stats.accepted, stats.unwatched) == (1, 1, 0)


async def test_failed_task_callback_also_wakes(
    receiver: CallbackReceiver, session: aiohttp.ClientSession
) -> None:
    # A failure is a completion too: the poller must learn it; record-info tells it why.
    hint = receiver.watch("task-f")
    body = {"code": 501, "msg": "generation failed", "data": {"taskId": "task-f", "successFlag": 3}}
    status, _ = await post_json(session, receiver.callback_url, body)
    assert status == 200
    assert hint.is_set()


async def test_every_watcher_of_a_task_is_woken(
    receiver: CallbackReceiver, session: aiohttp.ClientSession
) -> None:
    first = receiver.watch("shared")
    second = receiver.watch("shared")
    assert first is not second
    await post_json(session, receiver.callback_url, record_info("shared"))
    assert first.is_set()
    assert second.is_set()


async def test_callback_before_watch_is_seen_at_once(
    receiver: CallbackReceiver, session: aiohttp.ClientSession
) -> None:
    # Lenient shape: a top-level taskId without the envelope.
    status, _ = await post_json(session, receiver.callback_url, {"taskId": "early"})
    assert status == 200
    assert receiver.statistics().unwatched == 1

    hint = receiver.watch("early")
    assert hint.is_set()
    assert not receiver.watch("never-called-back").is_set()


async def test_numeric_task_id_is_accepted_as_string(
    receiver: CallbackReceiver, session: aiohttp.ClientSession
) -> None:
    status, _ = await post_json(session, receiver.callback_url, {"data": {"taskId": 12345}})
    assert status == 200
    assert receiver.watch("12345").is_set()


async def test_unwatched_hint_is_not_set(
    receiver: CallbackReceiver, session: aiohttp.ClientSession
) -> None:
    kept = receiver.watch("t")
    dropped = receiver.watch("t")
    receiver.unwatch("t", dropped)
    await post_json(session, receiver.callback_url, record_info("t"))
    assert kept.is_set()
    assert not dropped.is_set()

    receiver.unwatch("t")
    receiver.unwatch("t")  # already gone: ignored
    receiver.unwatch("unknown")


async def test_early_memory_is_bounded(session: aiohttp.ClientSession) -> None:
    async with CallbackReceiver(max_remembered=2) as rec:
        for task_id in ("a", "b", "c"):
            status, _ = await post_json(session, rec.callback_url, record_info(task_id))
            assert status == 200
        assert not rec.watch("a").is_set()
        assert rec.watch("b").is_set()
        assert rec.watch("c").is_set()


async def test_duplicates_are_counted_and_ignored(
    receiver: CallbackReceiver, session: aiohttp.ClientSession
) -> None:
    hint = receiver.watch("dup")
    first = await post_json(session, receiver.callback_url, record_info("dup"))
    assert first[0] == 200
    assert hint.is_set()
    hint.clear()  # what a poller does after it has re-checked the task

    second = await post_json(session, receiver.callback_url, {"taskId": "dup"})

    # Answered like any callback, so the provider stops retrying, but no second wake-up.
    assert second == first
    assert not hint.is_set()
    stats = receiver.statistics()
    assert (stats.received, stats.accepted, stats.duplicates) == (2, 1, 1)


async def test_wrong_token_is_404_and_wakes_nothing(
    receiver: CallbackReceiver, session: aiohttp.ClientSession
) -> None:
    hint = receiver.watch("t")
    token = token_of(receiver)
    base = str(URL(receiver.callback_url).with_path("/sora-async/callback"))
    wrong = [
        f"{base}/{'A' * len(token)}",
        f"{base}/{token[:-1]}",  # a truncated copy of the real one
        f"{base}/{token}x",
    ]
    for url in wrong:
        status, _ = await post_json(session, url, record_info("t"))
        assert status == 404, url
    # Without the token even the method check is not reached: nothing is revealed.
    async with session.get(wrong[0]) as resp:
        assert resp.status == 404

    assert not hint.is_set()
    stats = receiver.statistics()
    assert stats.rejected_token == 4
    assert stats.accepted == 0


async def test_404_for_wrong_token_looks_like_any_404(
    receiver: CallbackReceiver, session: aiohttp.ClientSession
) -> None:
    url = URL(receiver.callback_url)
    async with session.post(url.with_path("/sora-async/callback/" + "B" * 43), json={}) as resp:
        wrong_token = (resp.status, await resp.text())
    async with session.post(url.with_path("/nothing/here"), json={}) as resp:
        no_route = (resp.status, await resp.text())
    assert wrong_token == no_route


async def test_get_is_405(receiver: CallbackReceiver, session: aiohttp.ClientSession) -> None:
    async with session.get(receiver.callback_url) as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
    assert receiver.statistics().rejected_method == 1


async def test_body_of_exactly_the_cap_is_accepted(
    receiver: CallbackReceiver, session: aiohttp.ClientSession
) -> None:
    head = b'{"taskId": "edge", "pad": "'
    tail = b'"}'
    body = head + b"x" * (CAP - len(head) - len(tail)) + tail
    assert len(body) == CAP
    async with session.post(receiver.callback_url, data=body) as resp:
        assert resp.status == 200
    assert receiver.watch("edge").is_set()


async def test_oversize_with_content_length_is_413(
    receiver: CallbackReceiver, session: aiohttp.ClientSession
) -> None:
    hint = receiver.watch("big")
    body = json.dumps({"taskId": "big", "pad": "x" * CAP}).encode()
    async with session.post(receiver.callback_url, data=body) as resp:
        assert resp.request_info.headers["Content-Length"] == str(len(body))
        assert resp.status == 413
    assert not hint.is_set()
    assert receiver.statistics().rejected_size == 1


async def test_oversize_chunked_is_413(
    receiver: CallbackReceiver, session: aiohttp.ClientSession
) -> None:
    hint = receiver.watch("big")

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"taskId": "big", "pad": "'
        for _ in range(8):
            yield b"x" * 512
        yield b'"}'

    async with session.post(receiver.callback_url, data=chunks()) as resp:
        assert "Content-Length" not in resp.request_info.headers
        assert resp.request_info.headers["Transfer-Encoding"] == "chunked"
        assert resp.status == 413
    assert not hint.is_set()
    assert receiver.statistics().rejected_size == 1


async def test_compressed_body_is_capped_after_decoding(
    receiver: CallbackReceiver, session: aiohttp.ClientSession
) -> None:
    # Small on the wire, over the cap once decoded: only the capped read can catch it.
    body = gzip.compress(json.dumps({"taskId": "zip", "pad": "x" * 50 * CAP}).encode())
    assert len(body) < CAP
    hint = receiver.watch("zip")
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    async with session.post(receiver.callback_url, data=body, headers=headers) as resp:
        assert resp.request_info.headers["Content-Length"] == str(len(body))
        assert resp.status == 413
    assert not hint.is_set()
    assert receiver.statistics().rejected_size == 1


async def test_small_chunked_body_is_accepted(
    receiver: CallbackReceiver, session: aiohttp.ClientSession
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"data": {"task'
        yield b'Id": "chunky"}}'

    async with session.post(receiver.callback_url, data=chunks()) as resp:
        assert resp.status == 200
    assert receiver.watch("chunky").is_set()


async def test_declared_length_is_refused_before_reading(receiver: CallbackReceiver) -> None:
    # Claims a gigabyte and sends none of it: only a Content-Length check can answer at all.
    url = URL(receiver.callback_url)
    with anyio.fail_after(GUARD):
        reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            writer.write(
                f"POST {url.path} HTTP/1.1\r\nHost: {url.host}\r\n"
                "Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n".encode()
            )
            await writer.drain()
            status_line = await reader.readline()
        finally:
            writer.close()
    assert status_line.split()[1] == b"413"
    assert receiver.statistics().rejected_size == 1


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"",
        b"[1, 2, 3]",
        b'"task-1"',
        b'{"code": 200, "msg": "ok", "data": {"successFlag": 1}}',
        b'{"data": {"taskId": ""}}',
        b'{"data": {"taskId": true}}',
        b'{"taskId": ["x"]}',
        json.dumps({"taskId": "x" * 300}).encode(),
        b"[" * 500 + b"]" * 500,
    ],
    ids=[
        "broken",
        "binary",
        "empty",
        "array",
        "string",
        "no-task-id",
        "empty-id",
        "bool-id",
        "list-id",
        "huge-id",
        "deep",
    ],
)
async def test_bad_body_is_400(
    receiver: CallbackReceiver, session: aiohttp.ClientSession, body: bytes
) -> None:
    async with session.post(
        receiver.callback_url, data=body, headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 400
    stats = receiver.statistics()
    assert (stats.rejected_body, stats.accepted) == (1, 0)


async def test_deeply_nested_json_is_400_not_500(session: aiohttp.ClientSession) -> None:
    # Deep enough to exhaust the decoder's recursion limit, still under the default cap.
    body = b'{"taskId": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    async with CallbackReceiver() as rec:
        assert len(body) <= rec.max_body_bytes
        async with session.post(rec.callback_url, data=body) as resp:
            assert resp.status == 400
        assert rec.statistics().rejected_body == 1


async def test_counters_add_up(receiver: CallbackReceiver, session: aiohttp.ClientSession) -> None:
    url = receiver.callback_url
    await post_json(session, url, record_info("a"))
    await post_json(session, url, record_info("a"))
    await post_json(session, url, {"nothing": 1})
    async with session.get(url) as resp:
        assert resp.status == 405
    async with session.post(url, data=b"x" * (CAP + 1)) as resp:
        assert resp.status == 413
    await post_json(session, url + "nope", {"taskId": "a"})

    assert receiver.statistics() == CallbackStatistics(
        received=6,
        accepted=1,
        duplicates=1,
        unwatched=1,
        rejected_token=1,
        rejected_method=1,
        rejected_size=1,
        rejected_body=1,
    )
    assert total(receiver.statistics()) == receiver.statistics().received


async def serve(app: web.Application, receiver: CallbackReceiver) -> tuple[web.AppRunner, URL]:
    runner = web.AppRunner(app, access_log_class=receiver.access_log_class)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, URL.build(scheme="http", host=host, port=port)


async def test_mounted_in_another_app(session: aiohttp.ClientSession) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    receiver = CallbackReceiver(public_url="https://app.example.com/", max_body_bytes=CAP)
    app = web.Application()  # its own, larger, client_max_size must not widen our cap
    app.router.add_get("/", hello)
    receiver.mount(app)
    assert not receiver.is_running
    callback = URL(receiver.callback_url)
    assert str(callback).startswith("https://app.example.com/sora-async/callback/")

    runner, base = await serve(app, receiver)
    try:
        hint = receiver.watch("m1")
        status, _ = await post_json(session, str(base.with_path(callback.path)), record_info("m1"))
        assert status == 200
        assert hint.is_set()
        async with session.get(base) as resp:
            assert await resp.text() == "hello"
        big = json.dumps({"taskId": "m2", "pad": "x" * CAP}).encode()
        async with session.post(base.with_path(callback.path), data=big) as resp:
            assert resp.status == 413
    finally:
        await runner.cleanup()


async def test_mounted_as_sub_app(session: aiohttp.ClientSession) -> None:
    receiver = CallbackReceiver(public_url="https://app.example.com/hooks")
    parent = web.Application()
    parent.add_subapp("/hooks", receiver.app)
    callback = URL(receiver.callback_url)
    assert callback.path.startswith("/hooks/sora-async/callback/")

    runner, base = await serve(parent, receiver)
    try:
        hint = receiver.watch("s1")
        status, _ = await post_json(session, str(base.with_path(callback.path)), record_info("s1"))
        assert status == 200
        assert hint.is_set()
    finally:
        await runner.cleanup()


async def test_mount_requires_public_url() -> None:
    receiver = CallbackReceiver()
    with pytest.raises(ConfigurationError, match="public_url"):
        receiver.mount(web.Application())
    with pytest.raises(ConfigurationError):
        _ = receiver.callback_url


async def test_custom_prefix_and_token(session: aiohttp.ClientSession) -> None:
    token = "t" * 20
    async with CallbackReceiver(path_prefix="hooks/sora/", token=token) as rec:
        assert URL(rec.callback_url).path == f"/hooks/sora/{token}"
        status, _ = await post_json(session, rec.callback_url, record_info("p"))
        assert status == 200


async def test_public_url_is_used_while_standalone() -> None:
    async with CallbackReceiver(public_url="https://hooks.example.com/base") as rec:
        assert rec.callback_url.startswith("https://hooks.example.com/base/sora-async/callback/")
        assert rec.port != 0


async def test_restart_gets_a_working_server(session: aiohttp.ClientSession) -> None:
    rec = CallbackReceiver()
    async with rec:
        with pytest.raises(RuntimeError):
            await rec.start()
    assert not rec.is_running
    async with rec:
        status, _ = await post_json(session, rec.callback_url, record_info("r"))
        assert status == 200


async def test_busy_port_is_a_configuration_error() -> None:
    async with CallbackReceiver() as first:
        with pytest.raises(ConfigurationError, match="cannot listen"):
            await CallbackReceiver(port=first.port).start()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"token": "short"},
        {"token": "has/slash-and-is-long-enough"},
        {"public_url": "ftp://example.com"},
        {"public_url": "/relative"},
        {"public_url": "https://example.com/?q=1"},
        {"path_prefix": "/a/{var}"},
        {"port": 70000},
        {"max_body_bytes": 0},
        {"max_remembered": 0},
    ],
)
async def test_bad_settings_are_configuration_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        CallbackReceiver(**kwargs)
    if "token" in kwargs:
        assert kwargs["token"] not in str(info.value)


async def test_token_never_logged(
    caplog: pytest.LogCaptureFixture, session: aiohttp.ClientSession
) -> None:
    caplog.set_level(logging.DEBUG)
    # Another test may have run the CLI in-process, which quiets the access log.
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    async with CallbackReceiver(max_body_bytes=CAP) as rec:
        token = token_of(rec)
        url = rec.callback_url
        rec.watch("a")
        await post_json(session, url, record_info("a"))
        await post_json(session, url, record_info("a"))
        await post_json(session, url, {"no": "id"})
        await post_json(session, url, {"taskId": "early"})
        async with session.get(url) as resp:
            assert resp.status == 405
        async with session.post(url, data=b"x" * (CAP + 1)) as resp:
            assert resp.status == 413
        await post_json(session, url[:-1], record_info("a"))
        await post_json(session, url + "/extra", record_info("a"))  # no route: a plain 404

    assert token not in caplog.text
    assert token[:-1] not in caplog.text
    loggers = {r.name for r in caplog.records}
    assert {"sora_async.callbacks", "aiohttp.access"} <= loggers
    assert "<redacted:" in caplog.text
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(access) == 8


async def test_wake_hint_basics() -> None:
    hint = WakeHint()
    assert not hint.is_set()
    hint.set()
    with anyio.fail_after(GUARD):
        await hint.wait()
    hint.clear()
    assert not hint.is_set()
    assert "unset" in repr(hint)


async def test_starting_is_not_mounting() -> None:
    # A client starts a receiver it was given only when nobody mounted it: a receiver that was
    # merely run standalone before must still count as not mounted.
    receiver = CallbackReceiver()
    async with receiver:
        assert not receiver.is_mounted
    assert not receiver.is_mounted
    mounted = CallbackReceiver(public_url="https://hooks.example.test/app")
    mounted.mount(web.Application())
    assert mounted.is_mounted


class PlainTextReader:
    """A provider whose callback body is the bare task id: the receiver asks, never parses."""

    def callback_task_id(self, body: bytes) -> str:
        text = body.decode("ascii", "replace").strip()
        if not text.startswith("task-"):
            raise ProtocolError("not a task id")
        return text


async def test_the_provider_reads_the_body(session: aiohttp.ClientSession) -> None:
    async with CallbackReceiver(reader=PlainTextReader()) as rec:
        hint = rec.watch("task-9")
        async with session.post(rec.callback_url, data=b"task-9") as resp:
            assert resp.status == 200
        async with session.post(rec.callback_url, data=b"banana") as resp:
            assert (resp.status, await resp.text()) == (400, "not a task id")
        # sora2api's shape means nothing to this provider.
        async with session.post(rec.callback_url, json=record_info("task-1")) as resp:
            assert resp.status == 400
        assert hint.is_set()
        assert (rec.statistics().accepted, rec.statistics().rejected_body) == (1, 2)
