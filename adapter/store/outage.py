"""Waiting out Redis trouble (docs/reliability.md): a call that fails with trouble (faults.trouble) is tried again
every `PAUSE` seconds until Redis takes it, so a loop resumes within about `PAUSE` of Redis answering again; any
other exception is a bug and goes up. An outage is logged once when it starts and once when it ends, not at
every try.

    ride(call, what=…)          the synchronous loops (the RQ worker, its scheduler and guard threads);
    await aride(call, what=…)   the asyncio ones (the command runner);
    Outage                      for a loop that tries again by itself: notes each failure and each success.

`stopping` (a callable) ends the waiting: the last error goes up, so a process that must stop does not wait for
Redis to come back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from adapter.store import faults

PAUSE = 0.5
T = TypeVar("T")
log = logging.getLogger("adapter.store.outage")


def never() -> bool:
    return False


class Outage:
    """The outage one loop is in, if any: `failed(exc)` answers whether to wait and try again (trouble) and logs the
    first failure; `ok()` logs the end of an outage."""

    def __init__(self, what: str, logger: logging.Logger = log) -> None:
        self.what = what
        self.log = logger
        self.since: float | None = None
        self.tries = 0

    def failed(self, exc: BaseException) -> bool:
        if not faults.trouble(exc):
            return False
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning("%s: Redis in trouble, trying again every %.1f s: %s: %s", self.what, PAUSE,
                             type(exc).__name__, exc)
        self.tries += 1
        return True

    def ok(self) -> None:
        if self.since is not None:
            self.log.warning("%s: Redis answers again after %.1f s (%d tries)", self.what,
                             time.monotonic() - self.since, self.tries)
            self.since, self.tries = None, 0


def ride(call: Callable[[], T], *, what: str, stopping: Callable[[], bool] = never,
         logger: logging.Logger = log) -> T:
    """`call()`, tried again every PAUSE s while it fails with Redis trouble (see the module)."""
    outage = Outage(what, logger)
    while True:
        try:
            result = call()
        except Exception as exc:
            if not outage.failed(exc) or stopping():
                raise
            time.sleep(PAUSE)
            continue
        outage.ok()
        return result


async def aride(call: Callable[[], Awaitable[T]], *, what: str, stopping: Callable[[], bool] = never,
                logger: logging.Logger = log) -> T:
    """`ride` for asyncio: `await call()` until it does not fail with Redis trouble."""
    outage = Outage(what, logger)
    while True:
        try:
            result = await call()
        except Exception as exc:
            if not outage.failed(exc) or stopping():
                raise
            await asyncio.sleep(PAUSE)
            continue
        outage.ok()
        return result
