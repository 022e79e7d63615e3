"""generate_many end to end: the governed fan-out against the mock over 127.0.0.1.

Nothing inside the SDK is patched. The mock's own counters are the witnesses: how many tasks an
account had alive at once, which prompts were created and how often, every 429 and every poll.
Where the order in which tasks finish matters, the mock runs on a ManualClock, so that the test
decides which task is done and no assertion rests on how fast anything ran.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from sora_async import LocalGovernor, SoraClient, TaskResult, VideoRequest
from sora_async.errors import ValidationError
from sora_async.events import EventKind, TaskEvent
from sora_async.mock import ManualClock, MockConfig, MockServer, Outcome

pytestmark = pytest.mark.anyio

PROVIDERS = ("freesora", "sora2api")
KEY = "sk-fanout-test-0123456789"
CAP = 20
#: Only reached when something hangs; never a measure of speed.
HANG_GUARD = 60.0


# -- helpers ------------------------------------------------------------------------------------


def make_client(mock: MockServer, provider: str, key: str = KEY, **options: Any) -> SoraClient:
    settings: dict[str, Any] = {
        "base_url": mock.url_for(provider),
        "poll_interval": 0.03,
        "expected_duration": 0.3,
        "env": {},  # the caller's SORA_* variables must not change the test
        **options,
    }
    return SoraClient(provider, key, **settings)


@contextlib.asynccontextmanager
async def mock_and_client(
    provider: str, config: MockConfig, **options: Any
) -> AsyncIterator[tuple[MockServer, SoraClient]]:
    async with MockServer(config) as mock, make_client(mock, provider, **options) as client:
        yield mock, client


class CountingPrompts:
    """A lazy source of requests that counts how far it has been advanced."""

    def __init__(self, count: int, prefix: str = "prompt") -> None:
        self.count = count
        self.prefix = prefix
        self.pulled = 0

    def prompt(self, index: int) -> str:
        return f"{self.prefix} {index}"

    def __iter__(self) -> Iterator[VideoRequest]:
        for index in range(self.count):
            self.pulled += 1
            yield VideoRequest(self.prompt(index))

    async def agen(self) -> AsyncIterator[VideoRequest]:
        for index in range(self.count):
            self.pulled += 1
            yield VideoRequest(self.prompt(index))


async def wait_until(condition: Callable[[], bool]) -> None:
    """Look at ``condition`` until it holds (background work announces nothing)."""
    with anyio.fail_after(HANG_GUARD):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.01)


def file_url(mock: MockServer, task_id: str) -> str:
    return f"{mock.base_url}/files/{task_id}.mp4"


def check_succeeded(mock: MockServer, result: TaskResult, prompt: str) -> None:
    """The result is the task the mock created for exactly this prompt, and it succeeded."""
    assert result.ok, result
    assert result.state == "succeeded"
    assert result.task_id is not None
    record = mock.task(result.task_id)
    assert record.prompt == prompt
    assert record.state == "succeeded"
    assert result.request is not None and result.request.prompt == prompt
    assert result.video_urls == [file_url(mock, result.task_id)]
    assert result.error is None


# -- 1. the cap, kept full ----------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_200_tasks_fill_the_account_to_the_cap_and_never_beyond(provider: str) -> None:
    # Ten prompts per slot: every slot is taken, given back and contended for ten times over.
    count = 200
    config = MockConfig(task_seconds=0.2, jitter=0.5, cap=CAP)
    prompts = CountingPrompts(count)
    results: list[TaskResult] = []
    async with mock_and_client(provider, config, poll_interval=0.02, expected_duration=0.2) as (
        mock,
        client,
    ):
        assert client.governor.total == CAP
        started = time.monotonic()
        held: list[int] = []

        def sample(event: TaskEvent) -> None:
            if event.kind is EventKind.CREATED:
                held.append(client.governor.statistics().held)

        with anyio.fail_after(HANG_GUARD):
            async for result in client.generate_many(prompts, on_event=sample):
                results.append(result)
        elapsed = time.monotonic() - started
        assert client.governor.statistics().held == 0
        assert client.unfinished_tasks == {}

        counters = mock.counters
        records = mock.tasks(KEY)
        # Never above the account cap, and the client used every slot. (The server's own
        # count can stay below: a 0.2 s task may end before the last slot is filled.)
        assert counters.max_live_tasks <= CAP
        assert max(held) == CAP
        # The cap was respected by the client itself: the server never had to refuse.
        assert counters.cap_rejections == 0
        assert counters.rate_limited == 0
        # Every prompt became exactly one task.
        assert counters.creates == count
        assert len(counters.creates_by_prompt) == count
        assert all(counters.creates_by_prompt[prompts.prompt(i)] == 1 for i in range(count))
        # One correct result per prompt.
        assert len(results) == count
        assert sorted(result.key for result in results) == list(range(count))
        for result in results:
            check_succeeded(mock, result, prompts.prompt(result.key))
        assert {result.task_id for result in results} == {record.task_id for record in records}

        polls = [counters.polls_by_task[record.task_id] for record in records]
        first = min(record.created_at for record in records)
        last = max(record.terminal_at for record in records)
        busy = sum(record.duration for record in records) / ((last - first) * CAP)
        print(
            f"\n[{provider}] {count} tasks (task_seconds 0.2 +/-50%, poll_interval 0.02): "
            f"max live tasks {counters.max_live_tasks}, "
            f"polls per task {counters.polls / count:.2f} mean / {max(polls)} max, "
            f"account busy {busy:.0%} of cap x makespan, {elapsed:.1f}s"
        )


# -- 2. laziness ---------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["generator", "async generator"])
async def test_a_huge_input_is_read_only_as_far_as_the_work(source: str) -> None:
    consumed = 50
    prompts = CountingPrompts(100_000)
    requests: Any = iter(prompts) if source == "generator" else prompts.agen()
    config = MockConfig(task_seconds=0.2, jitter=0.5, cap=CAP)
    async with mock_and_client("freesora", config, expected_duration=0.2) as (mock, client):
        got = 0
        with anyio.fail_after(HANG_GUARD):
            async for _ in client.generate_many(requests):
                got += 1
                if got == consumed:
                    break
        # Leaving the loop stopped the run: its slots come back.
        await wait_until(lambda: client.governor.statistics().held == 0)
        pulled, creates = prompts.pulled, mock.counters.creates
        await anyio.sleep(10 * 0.03)  # several poll intervals: time for stray work to show
        assert prompts.pulled == pulled
        assert mock.counters.creates == creates

        print(
            f"\n[{source}] consumed {consumed}: input advanced {pulled} times, "
            f"{creates} tasks created"
        )
        # 2 x cap work tokens plus at most cap results buffered for the consumer, plus the one
        # item the feeder holds while it waits for a token.
        assert consumed <= pulled <= consumed + 3 * CAP + 1
        # At most cap alive and cap more finished but not yet handed over.
        assert consumed <= creates <= consumed + 2 * CAP


# -- 3. completion order --------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_results_come_as_tasks_finish_and_each_freed_slot_is_refilled(
    provider: str,
) -> None:
    # The test moves the mock's clock to the end of one task at a time: that task, and no
    # other, must be the next result. Task 3 fails before generating, at a tenth of its run
    # time, so it ends before tasks 0-2 although it was sent after them.
    cap, count, early = 5, 15, 3
    clock = ManualClock()
    config = MockConfig(task_seconds=10.0, jitter=0.5, clock=clock)
    requests = [
        VideoRequest(f"[fail:create] order {i}" if i == early else f"order {i}")
        for i in range(count)
    ]
    order: list[int] = []
    async with mock_and_client(
        provider, config, max_concurrent_tasks=cap, poll_interval=0.01, expected_duration=0.05
    ) as (mock, client):
        async with client.generate_many(iter(requests)) as run:
            for finished in range(count):
                # Every slot freed so far was taken again by the next request.
                should_be_live = min(cap, count - finished)
                await wait_until(lambda: mock.live_tasks(KEY) == should_be_live)  # noqa: B023
                live = [task for task in mock.tasks(KEY) if not task.state.is_terminal]
                first = min(live, key=lambda task: task.terminal_at)
                clock.advance(first.terminal_at - clock() + 1e-6)
                assert mock.live_tasks(KEY) == len(live) - 1  # exactly one task ended
                with anyio.fail_after(HANG_GUARD):
                    result = await run.__anext__()
                assert result.task_id == first.task_id
                assert result.request is not None
                assert result.request.prompt == first.prompt
                order.append(result.key)
            with pytest.raises(StopAsyncIteration):
                await run.__anext__()
        assert mock.counters.max_live_tasks == cap
        assert mock.counters.creates == count

    print(f"\n[{provider}] completion order: {order}")
    assert sorted(order) == list(range(count))
    assert order.index(early) < order.index(0)
    assert order != list(range(count))


# -- 4. failures are results ----------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_failures_are_yielded_and_never_abort_the_batch(provider: str) -> None:
    items: list[Any] = [
        VideoRequest("good 0"),
        VideoRequest("[fail] breaks while generating 1"),
        VideoRequest("invalid 2", duration=10),  # neither provider takes a duration for sora-2
        {"prompt": "a dict is not a request 3"},
        VideoRequest("good 4"),
        VideoRequest("[fail:create] breaks before generating 5"),
        VideoRequest("invalid 6", duration=15),
        VideoRequest("good 7"),
    ]
    good, generation_failed, create_failed = {0, 4, 7}, {1}, {5}
    invalid, not_a_request = {2, 6}, {3}
    config = MockConfig(task_seconds=0.3, jitter=0.2)
    async with mock_and_client(provider, config) as (mock, client):
        with anyio.fail_after(HANG_GUARD):
            results = [result async for result in client.generate_many(items)]
        counters = mock.counters

        assert sorted(result.key for result in results) == list(range(len(items)))
        by_key = {result.key: result for result in results}
        for key in good:
            check_succeeded(mock, by_key[key], items[key].prompt)
        for key in generation_failed | create_failed:
            result = by_key[key]
            assert not result.ok
            assert result.state == "failed"
            assert result.task_id is not None
            record = mock.task(result.task_id)
            assert record.prompt == items[key].prompt
            expected = Outcome.FAIL_GENERATION if key in generation_failed else Outcome.FAIL_CREATE
            assert record.outcome is expected
            assert result.error and "failed" in result.error.lower()
            assert result.video_urls == []
        for key in invalid | not_a_request:
            result = by_key[key]
            assert not result.ok
            assert result.state == "failed"
            assert result.task_id is None
            assert isinstance(result.exception, ValidationError)
            assert result.error is not None and result.error.startswith("ValidationError")
        for key in invalid:
            assert "duration" in (by_key[key].error or "")
            assert counters.creates_by_prompt[items[key].prompt] == 0

        # Nothing at all was sent for the items that could not be requests.
        sendable = good | generation_failed | create_failed
        assert counters.requests["create"] == len(sendable)
        assert counters.creates == len(sendable)
        assert client.governor.statistics().held == 0


# -- 5. another client on the same account ------------------------------------------------------


async def test_a_second_client_on_the_account_makes_the_first_adapt_not_fail() -> None:
    # client2 keeps 8 tasks alive on the same key while client1 runs a batch with the full
    # cap of 20 in mind: the mock refuses client1's 21st live task with 429; client1 must
    # shrink its effective cap, retry, lose no task, and grow back once client2 is gone.
    held_by_other, rounds, batch = 8, 3, 100
    # The account-wide pause follows the mock's short Retry-After instead of the 1 s floor.
    config = MockConfig(task_seconds=0.5, jitter=0.3, cap=CAP, cap_retry_after=0.1)
    others = [
        VideoRequest(f"other {slot}-{r}") for slot in range(held_by_other) for r in range(rounds)
    ]
    prompts = CountingPrompts(batch, "mine")
    effective: list[int] = []
    results: list[TaskResult] = []

    async with MockServer(config) as mock:
        governors = [LocalGovernor(CAP, min_pause=0.05) for _ in range(2)]
        client1 = make_client(mock, "freesora", expected_duration=0.5, governor=governors[0])
        client2 = make_client(mock, "freesora", expected_duration=0.5, governor=governors[1])
        async with client1, client2:

            async def keep_slot(slot: int) -> None:
                for r in range(rounds):
                    task_id = await client2.create(others[slot * rounds + r])
                    assert (await client2.wait(task_id)).ok

            def watch(event: TaskEvent) -> None:
                if event.kind is EventKind.CREATED:
                    effective.append(client1.governor.statistics().effective_total)

            with anyio.fail_after(HANG_GUARD):
                async with anyio.create_task_group() as group:
                    for slot in range(held_by_other):
                        group.start_soon(keep_slot, slot)
                    await wait_until(lambda: mock.counters.creates >= held_by_other)
                    async for result in client1.generate_many(prompts, on_event=watch):
                        results.append(result)

            stats = client1.governor.statistics()
            counters = mock.counters
            records = mock.tasks(KEY)
            other_gone = max(t.terminal_at for t in records if t.prompt.startswith("other"))
            after = sum(1 for t in records if t.created_at > other_gone)
            print(
                f"\n[second client] 429s from the cap: {counters.cap_rejections}, "
                f"client1 effective cap: min {min(effective)}, end {stats.effective_total}; "
                f"client1 created {after} tasks after client2's last one ended"
            )
            # client1 met the cap (the server refused it), and every 429 came from the cap.
            assert counters.cap_rejections >= 1
            assert counters.rate_limited == counters.cap_rejections
            assert counters.max_live_tasks <= CAP
            # It adapted: the effective cap shrank below 20, then grew back to the full cap.
            assert min(effective) < CAP
            assert stats.effective_total == CAP
            assert stats.held == 0
            # No task of client1 failed for it, and nothing was created twice.
            assert len(results) == batch
            for result in results:
                check_succeeded(mock, result, prompts.prompt(result.key))
            assert counters.creates == batch + len(others)
            assert all(counters.creates_by_prompt[r.prompt] == 1 for r in others)
            assert all(counters.creates_by_prompt[prompts.prompt(i)] == 1 for i in range(batch))


# -- 7. the event hook --------------------------------------------------------------------------


# Per job: creating, created, any progress, then the download and the end, or a failure.
_JOB_EVENTS = re.compile(r"creating created (progress )*(downloading downloaded succeeded|failed)")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_event_hook_is_awaited_and_sees_each_job_in_order(
    provider: str, tmp_path: Path
) -> None:
    requests = [
        VideoRequest("held at creating 0"),
        VideoRequest("held at creating 1"),
        VideoRequest("free 2"),
        VideoRequest("[fail] free 3"),
        VideoRequest("free 4"),
    ]
    events: list[TaskEvent] = []
    release_creates = anyio.Event()  # jobs 0 and 1 wait in their 'creating' hook
    release_created = anyio.Event()  # job 0 waits in its 'created' hook
    job0_created = anyio.Event()
    seen: dict[str, Any] = {}

    async def hook(event: TaskEvent) -> None:
        events.append(event)
        if event.kind is EventKind.CREATING and event.key in (0, 1):
            await release_creates.wait()
        if event.kind is EventKind.CREATED and event.key == 0:
            job0_created.set()
            await release_created.wait()

    def kinds(key: int) -> list[str]:
        return [str(event.kind) for event in events if event.key == key]

    def finished(key: int) -> bool:
        return any(kind in ("succeeded", "failed") for kind in kinds(key))

    config = MockConfig(task_seconds=0.3, jitter=0.3, file_size=4096)
    results: dict[int, TaskResult] = {}
    async with mock_and_client(provider, config) as (mock, client):
        counters = mock.counters

        async def consume() -> None:
            async for result in client.generate_many(requests, on_event=hook, download_to=tmp_path):
                results[result.key] = result

        with anyio.fail_after(HANG_GUARD):
            async with anyio.create_task_group() as group:
                group.start_soon(consume)
                # Jobs 2-4 ran to their end while jobs 0 and 1 were held in their hook:
                # neither create was sent.
                await wait_until(lambda: all(finished(key) for key in (2, 3, 4)))
                seen["held creates"] = [
                    counters.creates_by_prompt[requests[key].prompt] for key in (0, 1)
                ]
                seen["held kinds"] = [kinds(0), kinds(1)]
                release_creates.set()
                # Job 1 runs to its end (create, polls, result) while job 0 is held in its
                # 'created' hook: job 0 is not polled meanwhile.
                await job0_created.wait()
                await wait_until(lambda: finished(1))
                seen["job 0 creates"] = counters.creates_by_prompt[requests[0].prompt]
                task0 = next(e.task_id for e in events if e.key == 0 and e.kind == "created")
                seen["job 0 polls"] = counters.polls_by_task[task0 or ""]
                release_created.set()

        assert seen["held creates"] == [0, 0]
        assert seen["held kinds"] == [["creating"], ["creating"]]
        assert seen["job 0 creates"] == 1
        assert seen["job 0 polls"] == 0

        assert sorted(results) == list(range(len(requests)))
        for key, request in enumerate(requests):
            sequence = " ".join(kinds(key))
            assert _JOB_EVENTS.fullmatch(sequence), f"job {key}: {sequence}"
            result = results[key]
            task_ids = {event.task_id for event in events if event.key == key} - {None}
            assert task_ids == {result.task_id}
            ends = [e for e in events if e.key == key and e.kind in ("succeeded", "failed")]
            assert ends[0].result == result
            if "[fail]" in request.prompt:
                assert not result.ok and result.files == []
                continue
            check_succeeded(mock, result, request.prompt)
            [download] = [e for e in events if e.key == key and e.kind == "downloaded"]
            assert download.file is not None
            assert result.files == [download.file.path]
            check_file(mock, result, download.file.path, tmp_path)
        # Progress events come from polls that saw the task still running.
        assert any("progress" in kinds(key) for key in range(len(requests)))
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(  # noqa: ASYNC240
            f"{results[key].task_id}.mp4" for key in (0, 1, 2, 4)
        )


def check_file(mock: MockServer, result: TaskResult, path: Path, folder: Path) -> None:
    """The downloaded file is named after its task and holds exactly the bytes served."""
    assert result.task_id is not None
    assert path == folder / f"{result.task_id}.mp4"
    assert path.read_bytes() == mock.file_bytes(result.task_id)


async def test_tasks_the_server_disowns_do_not_leak_slots() -> None:
    # Resuming with ids that are not this account's (another key, or past retention): each
    # poll answers 404. Their slots must come back, or the next creates would wait forever.
    from sora_async.events import Job

    async with (
        MockServer(MockConfig(task_seconds=0.2)) as mock,
        SoraClient(
            "freesora", KEY, base_url=mock.freesora_url, max_concurrent_tasks=2,
            poll_interval=0.05, expected_duration=0.2, env={},
        ) as client,
    ):  # fmt: skip
        jobs = [
            Job(VideoRequest("old one"), task_id="task_not_ours_1"),
            Job(VideoRequest("old two"), task_id="task_not_ours_2"),
            VideoRequest("new one"),
            VideoRequest("new two"),
        ]
        with anyio.fail_after(30):
            results = [result async for result in client.generate_many(jobs)]
        by_prompt = {r.request.prompt: r for r in results if r.request is not None}
        assert not by_prompt["old one"].ok and "NotFoundError" in (by_prompt["old one"].error or "")
        assert by_prompt["new one"].ok and by_prompt["new two"].ok
        assert client.governor.statistics().held == 0


async def test_a_wait_timeout_keeps_counting_the_task_until_it_ends() -> None:
    # The task outlives the wait; freeing its slot then would let the next create over-fill
    # the account. The mock has no cap of its own here, so only the client keeps the count.
    async with (
        MockServer(MockConfig(task_seconds=1.0, jitter=0.0, cap=None)) as mock,
        SoraClient(
            "freesora", KEY, base_url=mock.freesora_url, max_concurrent_tasks=2,
            poll_interval=0.05, expected_duration=1.0, env={},
        ) as client,
    ):  # fmt: skip
        prompts = [VideoRequest(f"slow {i}") for i in range(4)]
        with anyio.fail_after(60):
            results = [r async for r in client.generate_many(prompts, timeout=0.3)]
            assert all(not r.ok and "WaitTimeoutError" in (r.error or "") for r in results)
            assert mock.counters.creates == 4
            # The last two were still alive when their waits gave up: still counted, followed.
            assert len(client.unfinished_tasks) >= 1
            assert client.governor.statistics().held == len(client.unfinished_tasks)
            # The client follows them to their end, then frees their slots ...
            while client.unfinished_tasks:  # noqa: ASYNC110
                await anyio.sleep(0.05)
            assert client.governor.statistics().held == 0
            # ... and a later wait gets the result the give-up missed.
            late = await client.wait(results[-1].task_id or "")
        assert late.ok
        assert mock.counters.max_live_tasks <= 2


async def test_a_hook_that_fails_after_a_create_keeps_the_task_id() -> None:
    # A journal that cannot write when the task id arrives: the task exists (and was paid
    # for), so its id must reach the result and the unfinished list, never be lost.
    def hook(event: TaskEvent) -> None:
        if event.kind is EventKind.CREATED and event.key == 1:
            raise OSError("disk full")

    async with (
        MockServer(MockConfig(task_seconds=0.2)) as mock,
        SoraClient(
            "freesora", KEY, base_url=mock.freesora_url, poll_interval=0.05,
            expected_duration=0.2, env={},
        ) as client,
    ):  # fmt: skip
        prompts = [VideoRequest(f"hooked {i}") for i in range(3)]
        with anyio.fail_after(30):
            results = {r.key: r async for r in client.generate_many(prompts, on_event=hook)}
        broken = results[1]
        assert not broken.ok and broken.task_id is not None
        assert "disk full" in (broken.error or "")
        assert mock.task(broken.task_id).prompt == "hooked 1"
        # Still followed by the client (its slot is freed when it ends, not leaked) ...
        with anyio.fail_after(30):
            while client.governor.statistics().held:  # noqa: ASYNC110
                await anyio.sleep(0.02)
        assert mock.counters.polls_by_task[broken.task_id] >= 1
        assert results[0].ok and results[2].ok
        assert all(n == 1 for n in mock.counters.creates_by_prompt.values())


async def test_a_file_the_caller_already_has_whole_is_not_fetched_again(tmp_path: Path) -> None:
    from sora_async.download import DownloadedFile

    kept: list[Path] = []

    def reuse(result: TaskResult, path: Path) -> DownloadedFile | None:
        if result.key == 0:  # pretend the journal recorded this one whole
            kept.append(path)
            return DownloadedFile(path=path, size=1, sha256="0" * 64, resumed=False)
        return None

    async with (
        MockServer(MockConfig(task_seconds=0.2)) as mock,
        SoraClient(
            "freesora", KEY, base_url=mock.freesora_url, poll_interval=0.05,
            expected_duration=0.2, env={},
        ) as client,
    ):  # fmt: skip
        prompts = [VideoRequest("kept"), VideoRequest("fetched")]
        with anyio.fail_after(30):
            results = {
                r.key: r
                async for r in client.generate_many(prompts, download_to=tmp_path, reuse_file=reuse)
            }
        assert results[0].ok and results[0].files == [kept[0]]
        assert results[1].ok and len(results[1].files) == 1
        assert mock.counters.downloads == 1  # only the second one's file
