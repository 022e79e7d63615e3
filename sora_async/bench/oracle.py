"""The oracle: a client that knows when every task will end, to show what is reachable at all.

The ideal makespan assumes requests that take no time and ends noticed the instant they
happen. No client gets that: a create and a status poll are round trips to a server that is
busy with the other tasks of the same wave, on the same cores. The oracle is told each task's
duration (the harness wrote it into the prompt), so it needs no schedule: it creates on a
kept-alive connection, sleeps until the task has surely ended (its create's answer plus its
duration: the task began before that answer) and polls once, again at once if the server
says otherwise. What it still loses against the ideal is the price of the round trips on this
machine in this run, which no poll schedule can win back; a target below its figure is out of
reach here, whatever the SDK does.

It is a benchmark instrument, not a client anyone could write: it retries nothing, so it runs
only where no fault is injected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, Final

import aiohttp

__all__ = ["ORACLE", "run"]

ORACLE: Final = "oracle"
_TERMINAL: Final = ("succeeded", "failed")


async def run(
    base_url: str,
    api_key: str,
    jobs: Iterable[tuple[str, str, float]],
    *,
    concurrency: int,
    on_done: Callable[[str, dict[str, Any]], object],
) -> None:
    """Create and see the end of each (prompt, model, seconds), ``concurrency`` at a time."""
    slots = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {api_key}"}
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(headers=headers) as session:

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            async with session.post(f"{base_url}{path}", json=body) as answer:
                answer.raise_for_status()
                data: dict[str, Any] = (await answer.json())["data"]
                return data

        async def one(prompt: str, model: str, seconds: float) -> None:
            async with slots:
                created = await post("/v1/video/sora-video", {"model": model, "prompt": prompt})
                ends_by = loop.time() + seconds
                await asyncio.sleep(max(0.0, ends_by - loop.time()))
                while True:
                    data = await post("/video-generations/check-result", {"taskId": created["id"]})
                    if data["status"] in _TERMINAL:
                        on_done(created["id"], data)
                        return

        await asyncio.gather(*(one(prompt, model, seconds) for prompt, model, seconds in jobs))
