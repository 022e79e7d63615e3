"""The plain batch script the ``batch`` scenario runs against ``sora-async batch``: what a user
writes from freesora's document, with nothing durable (no journal, no resume).

aiohttp, ``Semaphore(cap)`` around each whole task (create, poll at a fixed interval,
download), each finished item appended to a JSONL manifest. Tasks are started as the semaphore
admits them rather than gathered all at once: on CPython 3.11 a hundred thousand waiters make
each ``acquire`` scan the queue, and this script is meant to be a fair, fast baseline.

    python benchmarks/batch_script.py PROMPTS.txt --out DIR --base-url URL --api-key KEY
"""

import argparse
import asyncio
import json
import pathlib
from typing import IO

import aiohttp


async def main(a: argparse.Namespace, prompts: IO[str], manifest: IO[str]) -> None:
    out, sem, running = pathlib.Path(a.out), asyncio.Semaphore(a.concurrency), set()
    headers = {"Authorization": f"Bearer {a.api_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def one(index: int, prompt: str) -> None:
            try:
                body = {"model": "sora-2", "prompt": prompt}
                async with http.post(f"{a.base_url}/v1/video/sora-video", json=body) as r:
                    task_id = (await r.json())["data"]["id"]
                while True:
                    await asyncio.sleep(a.poll_interval)
                    url = f"{a.base_url}/video-generations/check-result"
                    async with http.post(url, json={"taskId": task_id}) as r:
                        data = (await r.json())["data"]
                    if data["status"] in ("succeeded", "failed"):
                        break
                path = out / f"{index}_{task_id}.mp4"
                if data["status"] == "succeeded":
                    async with http.get(data["result_url"]) as r:
                        path.write_bytes(await r.read())
                row = {"index": index, "task_id": task_id, "status": data["status"]}
                manifest.write(json.dumps({**row, "file": path.name}) + "\n")
            finally:
                sem.release()

        for index, line in enumerate(prompts):
            await sem.acquire()
            running.add(task := asyncio.create_task(one(index, line.strip())))
            task.add_done_callback(running.discard)
        await asyncio.gather(*running)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("prompts")
    for flag in ("out", "base-url", "api-key"):
        parser.add_argument(f"--{flag}", required=True)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--poll-interval", type=float, default=4.0)
    args = parser.parse_args()
    pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
    with open(args.prompts) as lines, open(pathlib.Path(args.out, "manifest.jsonl"), "a") as rows:
        asyncio.run(main(args, lines, rows))
