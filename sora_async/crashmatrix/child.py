"""``python -m sora_async.crashmatrix.child VARIANT OUT VIDEOS CLI-ARGS...``: the CLI, unchanged,
with an audit hook that SIGKILLs the process at one write of the end of its run.

The final manifest and index.html are written without talking to the server, so no outside
observer sees that moment; Python's audit events do (``open`` of the temporary file, and the
``os.rename`` event of the ``os.replace`` that publishes it). "Final" means every one of the
``VIDEOS`` videos is already on disk, so the writes at the start of the run are let through.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

__all__ = ["arm", "main"]

_TARGETS = {"manifest": ".manifest.jsonl.", "index": ".index.html."}


def _videos(out: str) -> int:
    try:
        return sum(1 for name in os.listdir(out) if name.endswith(".mp4"))
    except OSError:
        return 0


def arm(variant: str, out: str, videos: int) -> None:
    """Install the hook; ``variant`` is one of points.FINISH_VARIANTS."""
    target, _, step = variant.partition("_")
    prefix = _TARGETS[target]
    event_name = "open" if step == "open" else "os.rename"

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event != event_name or not args:
            return
        path = args[0]
        if not isinstance(path, str):
            return
        name = os.path.basename(path)
        if name.startswith(prefix) and name.endswith(".tmp") and _videos(out) >= videos:
            os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)


def main(argv: list[str]) -> int:
    variant, out, videos, *cli_args = argv
    arm(variant, out, int(videos))
    from ..cli import main as cli_main

    return cli_main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
