"""A run's "stop creating": cuts short each create waiting for a slot or out a 429's pause."""

from __future__ import annotations

from types import TracebackType

import anyio

__all__ = ["SendingStop"]


class SendingStop:
    """A run's "stop creating": cuts short every create still waiting for a slot or out a
    429's pause, so a drain does not sit out a Retry-After only to send nothing.

    One cancel scope per waiting create, cancelled by :meth:`stop`: no task of its own.
    """

    def __init__(self) -> None:
        self._stopped = False
        self._waiting: set[anyio.CancelScope] = set()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        self._stopped = True
        for scope in self._waiting:
            scope.cancel()

    def waiting(self) -> _Waiting:
        """A scope around one wait; ``cancelled_caught`` tells whether the stop cut it short."""
        return _Waiting(self)


class _Waiting:
    """:meth:`SendingStop.waiting`'s scope, entered once a create (a class, not a generator
    context manager: three calls fewer each time)."""

    __slots__ = ("_scope", "_stop")

    def __init__(self, stop: SendingStop) -> None:
        self._stop = stop
        self._scope = anyio.CancelScope()

    def __enter__(self) -> anyio.CancelScope:
        scope = self._scope
        if self._stop.stopped:
            scope.cancel()
        self._stop._waiting.add(scope)
        try:
            return scope.__enter__()
        except BaseException:
            self._stop._waiting.discard(scope)
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        try:
            return self._scope.__exit__(kind, error, traceback)
        finally:
            self._stop._waiting.discard(self._scope)
