"""A target's share of one pump: how many of its requests may be in flight, and when it counts as slow
(docs/delivery.md "Bounds and fairness")."""

from __future__ import annotations

import asyncio
import time

SLOW_S = 1.0  # a target whose slots are all taken, one of them this long, is slow: its waiting deliveries defer


class Gate:
    """One target's share of a pump: at most `limit` requests in flight. A delivery waits for its turn while
    the target keeps answering; once all its slots are taken and one has been busy SLOW_S, it gives up (and is
    deferred to Redis), so that a black hole holds `limit` slots and no more of the pump's read credit."""

    def __init__(self, limit: int) -> None:
        self.slots = asyncio.Semaphore(limit)
        self.started: dict[int, float] = {}  # in flight: token -> start (monotonic)
        self._next = 0

    def slow(self) -> bool:
        return self.slots.locked() and bool(self.started) and \
            time.monotonic() - min(self.started.values()) >= SLOW_S

    async def turn(self) -> int | None:
        """A slot (its token), or None: the target is slow, go elsewhere."""
        if not self.slots.locked():
            await self.slots.acquire()
            return self._take()
        if self.slow():
            return None
        acquire = asyncio.ensure_future(self.slots.acquire())
        try:
            while not (await asyncio.wait({acquire}, timeout=SLOW_S))[0]:
                if self.slow():
                    acquire.cancel()
                    break
            await asyncio.gather(acquire, return_exceptions=True)
        except BaseException:
            acquire.cancel()
            await asyncio.gather(acquire, return_exceptions=True)
            if not acquire.cancelled():
                self.slots.release()
            raise
        return None if acquire.cancelled() else self._take()

    def _take(self) -> int:
        self._next += 1
        self.started[self._next] = time.monotonic()
        return self._next

    def done(self, token: int) -> None:
        self.started.pop(token, None)
        self.slots.release()
