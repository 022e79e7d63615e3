"""Leaving the process after ``main()``: the console script's and ``python -m``'s last step."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Final, NoReturn

__all__ = ["THREADS_GRACE", "leave"]

#: How long an interrupted command waits for its worker threads to finish the step they are
#: in (a journal commit, a file's write and rename) before it leaves without them.
THREADS_GRACE: Final = 2.0


def leave(status: int, *, interrupted: bool) -> NoReturn:
    """Exit with ``status``; after an interrupt, never wait on a thread that will not end.

    A Ctrl-C that tears the event loop down at the wrong moment can leave an idle anyio worker
    thread waiting on its queue for a stop that never comes, and the interpreter joins every
    such thread before it exits: the command said "interrupted" and then hung. A thread still
    busy gets :data:`THREADS_GRACE` to finish; one that has not by then is cut off as a
    ``kill -9`` would cut it, which the journal and the downloads' ``.part`` files survive.
    """
    if interrupted:
        deadline = time.monotonic() + THREADS_GRACE
        for thread in _lingering():
            thread.join(max(0.0, deadline - time.monotonic()))
        if _lingering():
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(status)
    raise SystemExit(status)


def _lingering() -> list[threading.Thread]:
    """The threads other than this one that the interpreter would join at exit."""
    me = threading.current_thread()
    return [t for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]
