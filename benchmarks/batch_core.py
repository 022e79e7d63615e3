"""The SDK's core under the ``batch`` scenario: ``SoraClient.generate_many`` with
``download_to``, and a JSONL manifest, with nothing durable of the batch's own (no journal,
no resume). Run beside ``sora-async batch`` and the plain script, it splits the batch's cost in
two: what the client and its downloads cost, and what the journal and its bookkeeping add.

    python benchmarks/batch_core.py PROMPTS.txt --out DIR --base-url URL --api-key KEY
"""

import argparse
import asyncio
import json
import pathlib
from typing import IO

from sora_async import SoraClient


async def main(a: argparse.Namespace, prompts: IO[str], manifest: IO[str]) -> None:
    # The pool and download settings `sora-async batch` opens its client with: as many
    # downloads at once as tasks may run, and room in the pool for every task's polls.
    async with SoraClient(
        "freesora",
        a.api_key,
        base_url=a.base_url,
        max_concurrent_tasks=a.concurrency,
        poll_interval=a.poll_interval,
        max_downloads=a.concurrency,
        max_connections=2 * a.concurrency + 4,
    ) as client:
        lines = (line.strip() for line in prompts)
        async for result in client.generate_many(lines, download_to=a.out):
            row = {"index": result.key, "task_id": result.task_id, "status": result.state.value}
            manifest.write(json.dumps(row) + "\n")


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
