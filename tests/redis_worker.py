"""One worker process of the shared-governor tests: ``count`` prompts through generate_many
on a RedisGovernor with short leases; prints one JSON report line on stdout."""

from __future__ import annotations

import argparse
import json
import logging
import sys

import anyio

from sora_async import SoraClient, VideoRequest
from sora_async.governor_redis import RedisGovernor

KEY = "sk-test-0123456789abcdef"


async def run(args: argparse.Namespace) -> dict[str, object]:
    governor = RedisGovernor(
        args.redis_url,
        args.account,
        args.cap,
        lease_ttl=args.lease_ttl,
        heartbeat=args.heartbeat,
        wait_fallback=args.heartbeat,
        min_pause=0.05,
    )
    requests = [VideoRequest(f"{args.name}-{index}") for index in range(args.count)]
    results = []
    async with (
        governor,
        SoraClient(
            "freesora",
            KEY,
            base_url=args.base_url,
            governor=governor,
            max_concurrent_tasks=args.cap,
            poll_interval=0.05,
            expected_duration=0.1,
        ) as client,
    ):
        async for result in client.generate_many(requests):
            assert isinstance(result.request, VideoRequest)
            results.append(
                {"prompt": result.request.prompt, "ok": result.ok, "task_id": result.task_id}
            )
    return {"name": args.name, "results": results, "redis_calls": governor.redis_calls}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--account", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--cap", type=int, default=20)
    parser.add_argument("--lease-ttl", type=float, required=True)
    parser.add_argument("--heartbeat", type=float, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(json.dumps(anyio.run(run, args)), flush=True)


if __name__ == "__main__":
    main()
