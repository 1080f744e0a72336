"""A target's share of one pump: how many of its requests may be in flight, and when it counts as slow
(docs/delivery.md "Bounds and fairness")."""

from __future__ import annotations

import asyncio
import time
from collections import deque

SLOW_S = 1.0  # a target whose slots are all taken, one of them this long, is slow: its waiting deliveries defer


class Gate:
    """One target's share of a pump: at most `limit` requests in flight. A delivery waits for its turn while
    the target keeps answering; once all its slots are taken and one has been busy SLOW_S, the waiting ones give
    up (and are deferred to Redis), so that a black hole holds `limit` slots and no more of the pump's read credit.

    A wait is one future in a line: a slot that ends goes to the first waiter, and one timer per gate (not one per
    waiter) looks at the oldest request in flight when it may have become slow."""

    def __init__(self, limit: int) -> None:
        self.free = limit
        self.started: dict[int, float] = {}  # in flight: token -> start (monotonic)
        self.waiters: deque[asyncio.Future[bool]] = deque()  # in line; True: given a slot, False: gave up (slow)
        self._next = 0
        self._timer: asyncio.TimerHandle | None = None

    def slow(self) -> bool:
        return self.free == 0 and bool(self.started) and time.monotonic() - min(self.started.values()) >= SLOW_S

    async def turn(self) -> int | None:
        """A slot (its token), or None: the target is slow, go elsewhere."""
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return self._take()
        if self.slow():
            return None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self.waiters.append(waiter)
        if self._timer is None:
            self._watch(loop)
        try:
            given = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.result():  # given a slot, then cancelled
                self.done(0)
            raise
        return self._take() if given else None

    def done(self, token: int) -> None:
        """A request ended (or a slot given to a waiter that was cancelled): its slot goes to the first waiter."""
        self.started.pop(token, None)
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return
        self.free += 1

    def _take(self) -> int:
        self._next += 1
        self.started[self._next] = time.monotonic()
        return self._next

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """While deliveries wait: when the oldest request in flight turns SLOW_S old, the waiting ones give up."""
        oldest = min(self.started.values(), default=time.monotonic())
        self._timer = loop.call_at(loop.time() + max(0.0, oldest + SLOW_S - time.monotonic()), self._check, loop)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        while self.waiters and self.waiters[0].done():  # cancelled while in line
            self.waiters.popleft()
        if not self.waiters:
            return
        if self.slow():
            waiting, self.waiters = self.waiters, deque()
            for waiter in waiting:
                if not waiter.done():
                    waiter.set_result(False)
            return
        self._watch(loop)
