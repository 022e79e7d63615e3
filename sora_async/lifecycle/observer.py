"""Calls one watcher's user hook: a hook that raises is logged once, then ignored."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..events import call_hook

__all__ = ["Observer"]

logger = logging.getLogger("sora_async")


class Observer:
    """Calls one watcher's user hook; a hook that raises is logged once, then ignored."""

    __slots__ = ("_failed", "_hook", "_what")

    def __init__(self, hook: Callable[[Any], object] | None, what: str) -> None:
        self._hook = hook
        self._what = what
        self._failed = False

    async def __call__(self, argument: Any, label: object) -> None:
        if self._hook is None:
            return
        try:
            await call_hook(self._hook, argument)
        except Exception:
            if not self._failed:
                self._failed = True
                logger.exception(
                    "%s raised for %s; ignored (the task goes on, its slot is still freed)",
                    self._what,
                    label,
                )
