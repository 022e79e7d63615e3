"""An unbuffered hand-off of items between tasks, for a run's jobs and results.

It does what a zero-size anyio memory object stream did for :mod:`sora_async.fanout`, with
the same errors (``WouldBlock``, ``EndOfStream``, ``ClosedResourceError``,
``BrokenResourceError``), but a blocking send or receive waits on one future: anyio's passes
through the event loop first (a checkpoint) and makes an Event for each wait, and a run makes
two or three such waits per job.

An item is never lost to a cancellation: a sender cancelled while waiting takes its item
back (it was not sent), and an item handed to a receiver that is cancelled before it could
take it goes to the next receive, or back to the caller of :meth:`Handoff.close_receiving`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Generic, TypeVar

import anyio

__all__ = ["Handoff"]

T = TypeVar("T")


class Handoff(Generic[T]):
    """Items go from senders to receivers one by one, each only to a receiver waiting for it.

    The sending side closes with :meth:`close_sending` (receivers then get ``EndOfStream``);
    the receiving side with :meth:`close_receiving` (senders then get
    ``BrokenResourceError``).
    """

    def __init__(self) -> None:
        self._receivers: collections.deque[asyncio.Future[T]] = collections.deque()
        self._senders: collections.deque[tuple[asyncio.Future[None], T]] = collections.deque()
        #: Items handed to a receiver that was cancelled before it took them.
        self._returned: collections.deque[T] = collections.deque()
        self._sending_closed = False
        self._receiving_closed = False
        #: The loop of the first wait (a hand-off serves one run, in one loop).
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- sending ---------------------------------------------------------------------------

    def send_nowait(self, item: T) -> None:
        """Hand ``item`` to a waiting receiver, or raise ``WouldBlock``."""
        if self._sending_closed:
            raise anyio.ClosedResourceError
        if self._receiving_closed:
            raise anyio.BrokenResourceError
        while self._receivers:
            receiver = self._receivers.popleft()
            if not receiver.done():  # done: cancelled, its task is leaving
                receiver.set_result(item)
                return
        raise anyio.WouldBlock

    async def send(self, item: T, *, refused: bool = False) -> None:
        """Hand ``item`` to a receiver, waiting for one.

        ``refused=True``: :meth:`send_nowait` just raised ``WouldBlock`` (with no await since),
        so it is not asked again: a run sends this way, a job and a result at a time.
        """
        if not refused:
            try:
                self.send_nowait(item)
                return
            except anyio.WouldBlock:
                pass
        elif self._sending_closed or self._receiving_closed:
            self.send_nowait(item)  # raises what it raised (closed since: what it says now)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        entry = (waiter, item)
        self._senders.append(entry)
        try:
            await waiter
        except BaseException:
            if not waiter.done() or waiter.cancelled():
                # Not taken: the item stays ours, and nobody will take it any more.
                with contextlib.suppress(ValueError):
                    self._senders.remove(entry)
            raise

    def close_sending(self) -> None:
        """No more items: receivers get ``EndOfStream`` once the items sent are taken."""
        self._sending_closed = True
        senders, self._senders = self._senders, collections.deque()
        for waiter, _ in senders:
            if not waiter.done():
                waiter.set_exception(anyio.ClosedResourceError())
        if not self._returned:
            while self._receivers:
                receiver = self._receivers.popleft()
                if not receiver.done():
                    receiver.set_exception(anyio.EndOfStream())

    # -- receiving -------------------------------------------------------------------------

    def receive_nowait(self) -> T:
        """An item from a waiting sender, or ``WouldBlock`` (``EndOfStream`` when closed)."""
        if self._receiving_closed:
            raise anyio.ClosedResourceError
        if self._returned:
            return self._returned.popleft()
        while self._senders:
            waiter, item = self._senders.popleft()
            if not waiter.done():  # done: cancelled, the sender took its item back
                waiter.set_result(None)
                return item
        if self._sending_closed:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def receive(self, *, refused: bool = False) -> T:
        """An item, waiting for a sender.

        ``refused=True``: :meth:`receive_nowait` just raised ``WouldBlock`` (with no await
        since), so it is not asked again.
        """
        if not refused:
            try:
                return self.receive_nowait()
            except anyio.WouldBlock:
                pass
        elif self._sending_closed or self._receiving_closed:
            return self.receive_nowait()  # raises what it raised (closed since: what it says now)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        self._receivers.append(waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed an item just as this task was cancelled: it goes to the next one.
                self._give_back(waiter.result())
            else:
                with contextlib.suppress(ValueError):
                    self._receivers.remove(waiter)
            raise

    def _give_back(self, item: T) -> None:
        while self._receivers:
            receiver = self._receivers.popleft()
            if not receiver.done():
                receiver.set_result(item)
                return
        self._returned.append(item)

    def close_receiving(self) -> list[T]:
        """Take no more items (senders get ``BrokenResourceError``); the items handed to
        receivers that never took them (cancelled), which nobody will receive now."""
        self._receiving_closed = True
        senders, self._senders = self._senders, collections.deque()
        for waiter, _ in senders:
            if not waiter.done():
                waiter.set_exception(anyio.BrokenResourceError())
        receivers, self._receivers = self._receivers, collections.deque()
        for receiver in receivers:
            if not receiver.done():
                receiver.set_exception(anyio.ClosedResourceError())
        left = list(self._returned)
        self._returned.clear()
        return left
