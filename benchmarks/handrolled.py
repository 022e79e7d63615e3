"""The baseline: a typical hand-rolled fan-out script for the freesora API.

This is what one writes from the provider's document in an afternoon, and what sora_async is
measured against (see README.md here):

* an ``asyncio.Semaphore(20)`` around create + poll, so at most 20 tasks are alive;
* a fixed poll every 4 seconds (the document says "every 3-5 seconds");
* a 429 on create is retried after the same fixed sleep, ignoring Retry-After;
* ``asyncio.gather`` over one coroutine per prompt, results kept in a list.

It is deliberately left naive; do not "fix" it. The only additions for the benchmark are the
``poll_interval`` argument (the harness scales time down, see README.md) and the ``on_done``
hook, which lets the harness timestamp the moment the script learns that a task finished.

Run alone against a mock (``sora-async mock-server`` in another shell)::

    python benchmarks/handrolled.py --base-url http://127.0.0.1:8765/api --tasks 40
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp

POLL_INTERVAL = 4.0
CONCURRENCY = 20

OnDone = Callable[[str, dict[str, Any]], object]


async def generate_one(
    session: aiohttp.ClientSession,
    semaphore: asyncio.Semaphore,
    base_url: str,
    prompt: str,
    *,
    poll_interval: float,
    on_done: OnDone | None,
) -> dict[str, Any]:
    async with semaphore:
        while True:
            async with session.post(
                f"{base_url}/v1/video/sora-video", json={"model": "sora-2", "prompt": prompt}
            ) as response:
                if response.status == 429:
                    await asyncio.sleep(poll_interval)
                    continue
                response.raise_for_status()
                body = await response.json()
            if body["code"] != 0:
                raise RuntimeError(f"create failed: {body['message']}")
            task_id: str = body["data"]["id"]
            break
        while True:
            await asyncio.sleep(poll_interval)
            async with session.post(
                f"{base_url}/video-generations/check-result", json={"taskId": task_id}
            ) as response:
                response.raise_for_status()
                body = await response.json()
            data: dict[str, Any] = body["data"]
            if data["status"] in ("succeeded", "failed"):
                if on_done is not None:
                    on_done(task_id, data)
                return {"prompt": prompt, "task_id": task_id, **data}


async def run(
    base_url: str,
    api_key: str,
    prompts: Iterable[str],
    *,
    concurrency: int = CONCURRENCY,
    poll_interval: float = POLL_INTERVAL,
    on_done: OnDone | None = None,
) -> list[dict[str, Any]]:
    """Generate every prompt; returns one dict per prompt, in input order."""
    semaphore = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {api_key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        return await asyncio.gather(
            *(
                generate_one(
                    session,
                    semaphore,
                    base_url,
                    prompt,
                    poll_interval=poll_interval,
                    on_done=on_done,
                )
                for prompt in prompts
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8765/api")
    parser.add_argument("--api-key", default="handrolled-key")
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--poll-interval", type=float, default=POLL_INTERVAL)
    args = parser.parse_args()
    started = time.monotonic()
    results = asyncio.run(
        run(
            args.base_url,
            args.api_key,
            (f"hand-rolled prompt #{i}" for i in range(args.tasks)),
            poll_interval=args.poll_interval,
        )
    )
    done = sum(1 for result in results if result["status"] == "succeeded")
    print(f"{done}/{len(results)} succeeded in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
