"""The child's side of :class:`.child.Child`: ``python -m sora_async.bench.worker FD``.

Kept apart from the package's imports, so that running it with ``-m`` does not import it twice.
"""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing.connection
import sys
import traceback

from .child import ChildError

__all__ = ["main"]


async def _serve(conn: multiprocessing.connection.Connection) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            message = await loop.run_in_executor(None, conn.recv)
        except EOFError:
            return
        if message is None:
            conn.send(None)
            return
        function, args = message
        try:
            result = function(*args)
            if inspect.isawaitable(result):
                result = await result
        except Exception:
            result = ChildError(traceback.format_exc())
        conn.send(result)


def main() -> None:
    conn = multiprocessing.connection.Connection(int(sys.argv[1]))
    asyncio.run(_serve(conn))


if __name__ == "__main__":
    main()
