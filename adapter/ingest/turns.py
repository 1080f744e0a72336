"""The order in which events answered together are submitted (adapter/api/protocol.py: the pipelined ingest
requests of one connection start at once). A `Turn` is one event's place: `Ingest.apply` submits its effects once
the event before has submitted (or was refused), then lets the next one go; the protocol orders the answers with a
`Once` per request."""

from __future__ import annotations

import asyncio


class Once:
    """A one-time signal, cheap when nobody waits for it: a future is made only for a waiter."""

    __slots__ = ("_waiter", "set")

    def __init__(self) -> None:
        self.set = False
        self._waiter: asyncio.Future[None] | None = None

    def fire(self) -> None:
        if not self.set:
            self.set = True
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)

    async def wait(self) -> None:
        if not self.set:
            if self._waiter is None:
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._waiter)  # a waiter cancelled does not cancel the signal


class Turn:
    """An event's place in an order of submission (the pipelined requests of one connection): it is submitted once
    the one before has been (`before` fired, or None), and `done` fires once it has (or was refused before)."""

    __slots__ = ("before", "done")

    def __init__(self, before: Once | None) -> None:
        self.before = before
        self.done = Once()
