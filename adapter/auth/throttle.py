"""Limits on the expensive checks (argon2id: about 140 ms of CPU and 64 MiB each): logins and device
authentication.

- `Throttle`: attempts are counted in Redis BEFORE the check runs, in one atomic script (throttle.lua), so
  that any number of concurrent attempts lets at most `limit` of them through. Past the limit the bucket
  locks, first for `first` seconds, doubling with each lock up to `longest`; a lock answers at once, without
  checking anything. A success clears the identity's own bucket (the first one) and gives the attempt back
  to the shared ones; a check that did not run gives it back everywhere.
- `VerifyLimiter`: at most `concurrent` checks at once in this process, at most `queue` waiting for one;
  past that `Busy` at once, rather than checking after the caller has stopped waiting.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum

from adapter.store import scripts
from adapter.store.types import AsyncRedis

SCRIPT = scripts.Script.load("auth/throttle.lua")


@dataclass(frozen=True, slots=True)
class Bucket:
    """One thing attempts count against (a user at an address, an address, a device sn)."""

    key: str
    limit: int
    first: float  # s, the first lock
    longest: float  # s, locks double up to this
    idle: float  # s a bucket without attempts is remembered

    def argv(self) -> list[int]:
        return [self.limit, round(self.first * 1000), round(self.longest * 1000), round(self.idle * 1000)]


class Busy(Exception):
    """Too many checks are running or waiting right now; the caller should answer "not now"."""


class Throttle:
    def __init__(self, redis: AsyncRedis) -> None:
        self._redis = redis

    async def take(self, buckets: Sequence[Bucket]) -> int:
        """0: counted, go ahead and check. Otherwise the seconds (at least 1) until the caller may try again."""
        allowed, wait_ms = await self._run(throttle_call(Mode.TAKE, buckets))
        return 0 if int(allowed) else max(1, math.ceil(int(wait_ms) / 1000))

    async def clear(self, buckets: Sequence[Bucket]) -> None:
        await self._run(throttle_call(Mode.CLEAR, buckets))

    async def refund(self, buckets: Sequence[Bucket]) -> None:
        await self._run(throttle_call(Mode.REFUND, buckets))

    async def _run(self, call: scripts.ScriptCall) -> list[int]:
        reply: list[int] = await scripts.call(self._redis, call)
        return reply


class Mode(StrEnum):
    TAKE = "take"
    CLEAR = "clear"
    REFUND = "refund"


def throttle_call(mode: Mode, buckets: Sequence[Bucket]) -> scripts.ScriptCall:
    """throttle.lua's KEYS and ARGV, by name (the layout its header documents): KEYS the buckets, the identity's
    own first; ARGV the mode, then for `take` each bucket's limit, first lock, longest lock and idle time (ms).
    Every bucket of one call must be in one slot on Redis Cluster (`{auth}` for logins)."""
    limits: list[int] = []
    if mode is Mode.TAKE:
        for b in buckets:
            limits += b.argv()
    return SCRIPT.call(buckets=[b.key for b in buckets], mode=mode.value, limits=limits)


class VerifyLimiter:
    """At most `concurrent` checks at once (64 MiB each) and at most `queue` waiting for one."""

    def __init__(self, concurrent: int = 4, queue: int = 16) -> None:
        self._slots = asyncio.Semaphore(concurrent)
        self._waiting = 0
        self.queue = queue

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots.locked() and self._waiting >= self.queue:
            raise Busy
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._slots.release()
