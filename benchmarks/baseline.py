"""The baseline: the plain script a new user writes from freesora's document in ten minutes.

aiohttp, an ``asyncio.Semaphore(cap)`` around each whole task (create, then poll), a poll at a
fixed interval, ``asyncio.gather`` over one coroutine per prompt, and a bare ``try`` that
retries whatever failed. The benchmark gives it the SDK's own base poll interval. It is left as
people write it on purpose: do not "fix" it. The only extra is ``on_done``, which lets the
harness note the moment the script learns that a task ended.

Alone, against ``sora-async mock-server --port 8765``::

    python benchmarks/baseline.py --base-url http://127.0.0.1:8765/api --prompt "a red kite"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp

OnDone = Callable[[str, dict[str, Any]], object]


async def run(
    base_url: str,
    api_key: str,
    jobs: Iterable[tuple[str, str]],
    *,
    concurrency: int = 20,
    poll_interval: float = 4.0,
    on_done: OnDone | None = None,
) -> list[dict[str, Any]]:
    """Generate every (prompt, model); one status dict per job, in input order."""
    semaphore = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {api_key}"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(prompt: str, model: str) -> dict[str, Any]:
            async with semaphore:
                while True:
                    try:
                        body = {"model": model, "prompt": prompt}
                        async with session.post(f"{base_url}/v1/video/sora-video", json=body) as r:
                            task_id: str = (await r.json())["data"]["id"]
                        break
                    except Exception:
                        await asyncio.sleep(poll_interval)
                while True:
                    await asyncio.sleep(poll_interval)
                    try:
                        body = {"taskId": task_id}
                        url = f"{base_url}/video-generations/check-result"
                        async with session.post(url, json=body) as r:
                            data: dict[str, Any] = (await r.json())["data"]
                        if data["status"] in ("succeeded", "failed"):
                            if on_done is not None:
                                on_done(task_id, data)
                            return data
                    except Exception:  # noqa: S112 - as people write it: try again
                        continue

        return await asyncio.gather(*(one(prompt, model) for prompt, model in jobs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8765/api")
    parser.add_argument("--api-key", default="baseline-key")
    parser.add_argument("--prompt", action="append", required=True)
    parser.add_argument("--model", default="sora-2")
    parser.add_argument("--poll-interval", type=float, default=4.0)
    args = parser.parse_args()
    started = time.monotonic()
    jobs = [(prompt, args.model) for prompt in args.prompt]
    results = asyncio.run(run(args.base_url, args.api_key, jobs, poll_interval=args.poll_interval))
    print(json.dumps({"results": results, "seconds": time.monotonic() - started}))


if __name__ == "__main__":
    main()
