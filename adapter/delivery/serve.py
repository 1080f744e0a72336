"""A partition this pump holds, served in runs (partition.py): a run starts from what Redis holds (the chains' marks,
every pending entry claimed in stream order), reads new entries while the lease is trusted and Redis takes writes,
and ends on a lost connection (the next starts from Redis) or when the partition is let go or its lease lost (what
is in flight finishes first). A mixin of `Pump`; the attributes it uses are the pump's, declared below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions

from adapter.delivery import leases
from adapter.delivery.deliver import BACKOFF_S, GROUP
from adapter.delivery.model import Delivery
from adapter.delivery.partition import Chain, PartitionRun
from adapter.settings import Settings
from adapter.store import faults, scripts
from adapter.store.cluster_round import cluster_round, read_group
from adapter.store.keys import Keys
from adapter.store.scripts import Script
from adapter.store.types import AsyncRedis, as_text

log = logging.getLogger("adapter.delivery.pump")
WAITING_FACTOR = 8  # tasks in memory per partition, at most, as a multiple of delivery_concurrency
FORGET_CONSUMERS = Script("""-- KEYS: stream
-- ARGV: group, pump
local removed = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1] elseif c[i] == 'pending' then pending = c[i + 1] end
  end
  if name ~= ARGV[2] and pending == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    removed = removed + 1
  end
end
return removed
""", "serve.FORGET_CONSUMERS")
"""Remove the stream's consumers other than this pump's that have nothing pending (run after claiming everything
pending: dead pumps' consumers would otherwise stay for ever, one per worker restart). KEYS 1 the stream;
ARGV 1 group 2 this pump's id."""


@dataclass
class Serving:
    """A partition this pump holds: its loop, its lease, and the run under way."""

    lease: leases.Lease
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    give_up: bool = False  # when it stops, hand the lease back (let go) rather than let it lapse (lost)
    task: asyncio.Task[None] | None = None
    run: PartitionRun | None = None


class Partitions:
    settings: Settings
    keys: Keys
    redis: AsyncRedis
    reader: AsyncRedis
    id: str
    _one: Callable[..., Coroutine[Any, Any, None]]

    async def _serve(self, p: int, s: Serving) -> None:
        log.info("delivery pump: serving partition %d", p)
        try:
            await self._runs(p, s)
        finally:
            if s.give_up:
                with contextlib.suppress(Exception):
                    await scripts.call(self.redis, leases.RELEASE.call(lease=self.keys.delivery_lease(p), pump=self.id))
            log.info("delivery pump: partition %d %s", p, "let go" if s.give_up else "ended (lease lost)")

    async def _runs(self, p: int, s: Serving) -> None:
        pause = BACKOFF_S[0]
        while not s.stop.is_set():
            if not s.lease.valid():  # until the tick renews it, or gives the partition up
                await first_of(s.stop.wait(), timeout=0.1)
                continue
            run = s.run = PartitionRun(p)
            try:
                await self._run(p, run, s)
                pause = BACKOFF_S[0]
            except leases.LeaseInDoubt:
                pause = BACKOFF_S[0]
            except Exception as exc:
                if not faults.trouble(exc):
                    raise
                if pause == BACKOFF_S[0]:
                    log.warning("delivery pump: partition %d: redis: %s: %s", p, type(exc).__name__, exc)
            finally:
                await self._finish(run)
            if not s.stop.is_set():
                await first_of(s.stop.wait(), timeout=pause)
                pause = min(pause * 2, BACKOFF_S[1])

    async def _finish(self, run: PartitionRun) -> None:
        """End a run. Stopping (the partition let go, or its lease lost): nothing new is sent, what is in flight
        finishes and its outcome is written (within the delivery timeout). A broken run stops at once."""
        if run.broken is None and run.tasks:
            run.stopping = True
            await asyncio.wait(run.tasks, timeout=self.settings.delivery_timeout + 2)
        await run.end()

    async def _run(self, p: int, run: PartitionRun, s: Serving) -> None:
        stream = self.keys.delivery_stream(p)
        try:
            await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        await self._load_holds(p, run)
        await self._claim(p, run, s, 0)
        await scripts.call(self.redis, FORGET_CONSUMERS.call(stream=stream, group=GROUP, pump=self.id))
        reclaim_ms = int((self.settings.delivery_timeout + 5) * 1000)
        reclaimed = time.monotonic()
        concurrency = self.settings.delivery_concurrency
        while not s.stop.is_set():
            if run.broken is not None:
                raise run.broken
            if run.stopping or not s.lease.valid():
                raise leases.LeaseInDoubt(f"partition {p}")
            if not run.writable.is_set():  # Redis refuses writes: read nothing new
                await first_of(run.writable.wait(), s.stop.wait(), timeout=0.1)
                continue
            if time.monotonic() - reclaimed > reclaim_ms / 1000:
                # entries whose delivery ended on a bug are tried again
                await self._claim(p, run, s, reclaim_ms)
                reclaimed = time.monotonic()
            ready = len(run.tasks) - run.parked
            free = min(concurrency - ready, concurrency * WAITING_FACTOR - len(run.tasks))
            if free <= 0:  # until one ends, or (polled) one is deferred by its slow target
                await run.next_end(timeout=0.05)
                continue
            try:
                reply: Any = await read_group(self.reader, stream, GROUP, self.id, free)
            except Exception as exc:
                if faults.connection_lost(exc) or not faults.trouble(exc):
                    raise
                await asyncio.sleep(BACKOFF_S[1])  # refused for now (BUSY): the run goes on
                continue
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    self._spawn(p, run, s, entry_id, fields)

    async def _load_holds(self, p: int, run: PartitionRun) -> None:
        """The marks of this partition's chains, as Redis holds them (one round trip for the lists' tops)."""
        lists = [as_text(k) for k in await self.redis.smembers(self.keys.delivery_holds(p))]
        tops = await cluster_round(self.redis, [(key, ("LINDEX", key, 0)) for key in lists])
        prefix = self.keys.delivery_hold_prefix(p)
        for hold_key, top in zip(lists, tops, strict=True):
            chain = _chain_of(hold_key, prefix)
            if chain is not None and top is not None:
                run.set_mark(chain, top)

    async def _claim(self, p: int, run: PartitionRun, s: Serving, min_idle_ms: int) -> None:
        """Entries read but never finished (by a previous run or holder of this partition, or by a delivery of this
        run that ended on a bug): this run's now, in stream order."""
        cursor: Any = "0-0"
        stream = self.keys.delivery_stream(p)
        while True:
            reply = await self.redis.xautoclaim(stream, GROUP, self.id, min_idle_time=min_idle_ms,
                                                start_id=cursor, count=500)
            cursor, entries = reply[0], reply[1]
            for entry_id, fields in entries:
                if as_text(entry_id) in run.working:
                    continue
                if fields:
                    self._spawn(p, run, s, entry_id, fields)
                else:  # deleted while pending
                    await self.redis.xack(stream, GROUP, entry_id)
            if cursor in (b"0-0", "0-0"):
                return

    def _spawn(self, p: int, run: PartitionRun, s: Serving, entry_id: Any, fields: dict[Any, Any]) -> None:
        d = Delivery.from_fields(fields)
        entry = as_text(entry_id)

        def on_error(exc: BaseException) -> None:
            if faults.trouble(exc):
                run.fail(exc)  # a read or write of this delivery lost its connection: the run ends
            else:  # a bug: the entry stays pending, claimed again after a while
                log.error("delivery %s: %s: %s", d.id, type(exc).__name__, exc)

        run.spawn((d.target, d.key), entry, lambda release: self._one(p, run, s, entry, d, release), on_error)


async def first_of(*waits: Awaitable[Any], timeout: float) -> None:
    """Until the first of `waits` is done, or `timeout`."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


def _chain_of(hold_key: str, prefix: str) -> Chain | None:
    """(target, key) of a hold list's key, `<prefix><kind>:<id>:<key>` (prefix: `Keys.delivery_hold_prefix`)."""
    rest = hold_key[len(prefix):]
    parts = rest.split(":", 2)
    return (f"{parts[0]}:{parts[1]}", parts[2]) if len(parts) == 3 else None


