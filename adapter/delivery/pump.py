"""The delivery pump: runs beside the RQ worker in every `adapter worker` process (docs/design.md §6).

Pumps share the partitions of the delivery streams by leases (leases.py: a fair share each, partitions / live
pumps). For each partition it holds, a pump reads the stream through one consumer group, sends each delivery
(signed) and writes the outcome; deliveries of one target and key go one after another, others concurrently. A
pump that dies leaves its unacknowledged entries pending and its leases expiring: the pump that takes a lease over
claims them first, so nothing is lost (at-least-once). Any pump also moves due retries back to the streams (on Redis
Cluster each pump those of its own partitions: the retry sets are per partition).

Under Redis faults (docs/reliability.md) a partition is served in runs (partition.py): what a run keeps in memory
follows what its writes answered, never runs ahead of Redis. A write that Redis refuses for now (OOM, READONLY,
BUSY, …) is tried again in place, holding its chain, while the run reads and sends nothing new; a lost connection
ends the run (its deliveries stop where they are, their entries stay pending) and a new run starts from what Redis
holds. Nothing is sent on a lease this pump cannot trust (leases.Lease). Only bugs end the pump.

Fairness: a target has at most `delivery_target_concurrency` requests in flight per pump; deliveries wait for its
turn while it answers, and are deferred to Redis for a second or two once it is slow (see Gate). Tasks waiting
behind an earlier delivery of their device use no read credit: the pump reads as long as fewer than
`delivery_concurrency` tasks are ready to send (and fewer than WAITING_FACTOR times as many are in memory). After
`delivery_breaker_threshold` failed attempts in a row a target's breaker opens: its deliveries are deferred, not
sent, until a probe (one delivery every `delivery_breaker_probe` s) succeeds (breaker.py; per partition on Redis
Cluster).

On Redis Cluster the pump talks to a RedisCluster client: every script call is single-slot (the partition's),
sent by itself (redis-py routes it); on one Redis the outcomes go through the batcher, as ever.

This module holds the control loop (heartbeat, leases, housekeeping); serve.py a partition's runs; deliver.py one
delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis

from adapter.delivery import leases, replicas
from adapter.delivery.breaker import Targets
from adapter.delivery.deliver import GROUP, Deliveries
from adapter.delivery.gate import Gate
from adapter.delivery.model import HOLD, OUTCOME, Limits, move_due_call
from adapter.delivery.partition import mark_of
from adapter.delivery.sender import Sender
from adapter.delivery.serve import Partitions, Serving, first_of
from adapter.settings import Settings, parse_schedule
from adapter.store import faults, scripts
from adapter.store.batcher import Batcher
from adapter.store.connections import async_redis
from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis

log = logging.getLogger("adapter.delivery.pump")
T = TypeVar("T")

REPAIR_EVERY_S = 30.0  # cluster: how often a pump re-syncs the enabled-callback replicas (delivery/replicas.py)
TICK_S = 0.2  # how often a pump looks at its peers and the leases (a dead pump's partitions: taken within a tick)
TRIM_EVERY_S = 1.0  # how often the housekeeper trims the streams it holds (MAXLEN ~: approximate anyway)
RENEW_SHARE = 0.2  # a lease is renewed once this share of it has passed (a 15 s lease: every 3 s, not every tick)


class Pump(Partitions, Deliveries):
    def __init__(self, settings: Settings, client: AsyncRedis, sender: Sender,
                 rng: random.Random | None = None, reader: AsyncRedis | None = None) -> None:
        self.settings = settings
        self.keys = Keys.of(settings)
        self.redis = client
        # the stream reads (XREADGROUP): a client that never sends one again by itself (async_redis `retries`)
        self.reader = reader or client
        # one Redis: outcomes through the batcher; a cluster client routes each script call by its slot
        self.batcher = Batcher(client, [OUTCOME, HOLD]) if isinstance(client, aioredis.Redis) else None
        self.limits = Limits.of(settings).per_partition(len(self.keys.shards()))
        self.stream_partitions = self.keys.stream_partitions
        self.sender = sender
        self.rng = rng or random.Random()
        self.schedule = parse_schedule(settings.delivery_schedule)
        self.id = secrets.token_hex(6)
        self.lease_ms = int(settings.delivery_lease * 1000)
        self.serving: dict[int, Serving] = {}
        self.targets = Targets(client, self.keys, self.limits.breaker_probe_ms)
        self.repaired = 0.0  # monotonic time of the last replica repair (cluster)
        self.trimmed = 0.0  # monotonic time of the last trim of the held streams
        self.slots = asyncio.Semaphore(settings.delivery_concurrency)
        self.gates: dict[str, Gate] = {}
        self.delivered = 0
        self.troubled = False  # the last tick met Redis trouble (logged once per streak)
        self.call_s = max(0.5, min(2.0, settings.delivery_lease / 4))  # the bound of one call of the control loop

    # --- the control loop: heartbeat, leases, due retries -------------------------------------------------

    async def run(self, stop: asyncio.Event, *, burst: bool = False) -> None:
        housekeeper = asyncio.get_running_loop().create_task(self._housekeeper(stop))
        try:
            with contextlib.suppress(Exception):
                if self.batcher is not None:
                    await self.batcher.load_scripts()
            while not stop.is_set():
                await self._tick()
                if housekeeper.done():
                    housekeeper.result()  # it ends only on a bug
                if burst and await self._idle():
                    break
                await first_of(stop.wait(), timeout=TICK_S)
        finally:
            housekeeper.cancel()
            await asyncio.gather(housekeeper, return_exceptions=True)
            await self._release_all()

    async def _tick(self) -> None:
        """Heartbeat, renew the leases, rebalance. Every call is bounded (CALL_S): a frozen Redis node holds up
        neither the heartbeat nor the leases of partitions on other nodes."""
        self._reap()
        now = int(time.time() * 1000)
        try:
            live = await self._bounded(self._heartbeat(now))
        except Exception as exc:
            self._trouble("heartbeat", exc)  # OOM refuses it (the leases are still renewed); no rebalancing
            live = None
        due = time.monotonic() + (1 - RENEW_SHARE) * self.lease_ms / 1000  # renewed since: left alone this tick
        renewed = await asyncio.gather(*(self._renew(p, s) for p, s in self.serving.items()
                                         if not s.stop.is_set() and s.lease.valid_until <= due))
        if live is None or not all(renewed):
            return
        try:
            await self._rebalance(live)
        except Exception as exc:
            self._trouble("leases", exc)
            return
        if self.troubled:
            log.info("delivery pump: redis answers again")
        self.troubled = False

    async def _bounded(self, call: Awaitable[T]) -> T:
        return await asyncio.wait_for(call, timeout=self.call_s)

    def _trouble(self, what: str, exc: BaseException) -> None:
        if not faults.trouble(exc):
            raise exc
        if not self.troubled:
            log.warning("delivery pump: %s: redis: %s: %s", what, type(exc).__name__, exc)
        self.troubled = True

    def _reap(self) -> None:
        """Forget partitions whose loop has ended; a loop that ended on a bug ends the pump (and the worker)."""
        for p, s in list(self.serving.items()):
            if s.task is not None and s.task.done():
                self.serving.pop(p)
                if not s.task.cancelled() and s.task.exception() is not None:
                    raise s.task.exception()  # type: ignore[misc]
                if not s.stop.is_set():  # it cannot end on its own but for a bug: say so
                    raise RuntimeError(f"delivery partition {p} ended on its own")

    async def _heartbeat(self, now: int) -> int:
        """This pump is alive; answers how many pumps are (seen within one lease time)."""
        return int(await scripts.call(self.redis, leases.HEARTBEAT.call(
            pumps=self.keys.delivery_pumps(), pump=self.id, now=now, forget_ms=3 * self.lease_ms,
            live_ms=self.lease_ms)))

    async def _lease(self, script: scripts.Script, p: int) -> tuple[bool | None, float]:
        """`script` (leases.ACQUIRE or RENEW) on partition `p`'s lease: whether the lease is ours (None: Redis did
        not answer, logged) and when it was asked."""
        asked = time.monotonic()
        try:
            return bool(await self._bounded(scripts.call(self.redis, script.call(
                lease=self.keys.delivery_lease(p), pump=self.id, lease_ms=self.lease_ms)))), asked
        except Exception as exc:
            self._trouble(f"lease of partition {p}", exc)
            return None, asked

    async def _renew(self, p: int, s: Serving) -> bool:
        """Renew one lease; answers whether Redis answered (a lease found lost stops its partition at once)."""
        ours, asked = await self._lease(leases.RENEW, p)
        if ours is None:
            return False
        if ours:
            s.lease.renewed(asked)
        else:  # another pump's now (it expired): stop at once
            log.warning("delivery pump: lost the lease of partition %d", p)
            s.stop.set()
        return True

    async def _rebalance(self, live: int) -> None:
        """Let go of the partitions over this pump's share, take free ones up to it. A dead pump's partitions are
        taken over as its leases expire (it counts as live for one lease after its last heartbeat)."""
        share = leases.share(self.stream_partitions, live)
        held = self._held()
        for p in sorted(held, reverse=True)[:max(0, len(held) - share)]:
            self._let_go(p)
        candidates = [p for p in self._order() if p not in self.serving]
        while candidates and len(self._held()) < share:  # as many at once as are missing (a frozen node's time out)
            batch, candidates = candidates[:share - len(self._held())], candidates[share - len(self._held()):]
            await asyncio.gather(*(self._acquire(p) for p in batch))

    async def _acquire(self, p: int) -> None:
        ours, asked = await self._lease(leases.ACQUIRE, p)
        if ours:
            s = Serving(leases.Lease(self.lease_ms / 1000))
            s.lease.renewed(asked)
            self.serving[p] = s
            s.task = asyncio.get_running_loop().create_task(self._serve(p, s))

    async def _housekeeper(self, stop: asyncio.Event) -> None:
        """Due retries back to the streams, streams trimmed, (cluster) the callback replicas repaired: apart from
        the tick, each call bounded, so that none of it holds up the leases."""
        while not stop.is_set():
            now = int(time.time() * 1000)
            calls: list[Awaitable[Any]] = []
            if self.keys.cluster:  # each partition's retries, by the pump that holds it
                calls += [move_due_call(self.keys, p, now, 500, self.limits.stream_maxlen).run(self.redis)
                          for p in self._held()]
                if time.monotonic() - self.repaired > REPAIR_EVERY_S:
                    self.repaired = time.monotonic()
                    calls.append(replicas.repair(self.redis, self.keys))
            else:
                calls.append(move_due_call(self.keys, 0, now, 500, self.limits.stream_maxlen).run(self.redis))
            if time.monotonic() - self.trimmed >= TRIM_EVERY_S:
                self.trimmed = time.monotonic()
                calls += [self.redis.xtrim(self.keys.delivery_stream(p), maxlen=self.limits.stream_maxlen,
                                           approximate=True) for p in self._held()]
            for result in await asyncio.gather(*(self._bounded(c) for c in calls), return_exceptions=True):
                if isinstance(result, BaseException):
                    self._trouble("housekeeping", result)
            await first_of(stop.wait(), timeout=TICK_S)

    def _held(self) -> list[int]:
        return [p for p, s in self.serving.items() if not s.stop.is_set()]

    def _order(self) -> list[int]:
        order = list(range(self.stream_partitions))
        self.rng.shuffle(order)
        return order

    def _let_go(self, p: int) -> None:
        """Stop serving `p`: its loop ends (what is in flight finishes and is written) and gives the lease back."""
        s = self.serving[p]
        s.give_up = True
        s.stop.set()

    async def _release_all(self) -> None:
        for p in self._held():
            self._let_go(p)
        # all at once: each waits for its partition's loop to end (its blocking read: up to 0.2 s), 48 on a cluster
        await asyncio.gather(*(s.task for s in self.serving.values() if s.task is not None), return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.redis.zrem(self.keys.delivery_pumps(), self.id)

    async def _idle(self) -> bool:
        """Burst mode: nothing left to send (streams empty, no retry waiting, nothing in flight)."""
        if any(s.run is not None and s.run.tasks for s in self.serving.values()):
            return False
        try:
            for p in range(self.stream_partitions):
                if await self.redis.xlen(self.keys.delivery_stream(p)):
                    return False
            for lane in self.keys.shards():
                if await self.redis.zcard(self.keys.delivery_retry(lane)):
                    return False
        except Exception as exc:
            self._trouble("idle", exc)
            return False
        return True


__all__ = ["GROUP", "Pump", "mark_of", "run_pump"]


async def run_pump(settings: Settings, stop: asyncio.Event, *, burst: bool = False,
                   on_ready: Callable[[Pump], Awaitable[None]] | None = None) -> Pump:
    # one Redis: at most 32 connections, callers past them wait. A cluster client has no waiting pool (a caller
    # past its per-node cap fails with MaxConnectionsError and ends its partition's loop): no cap there; the
    # partitions' loops and their deliveries bound the connections (docs/cluster.md).
    cap = None if settings.redis_cluster else 32
    client = async_redis(settings, decode=False, socket_timeout=10, max_connections=cap)
    reader = async_redis(settings, decode=False, socket_timeout=10, max_connections=cap, retries=0)
    # idle keep-alive connections kept per target origin: as many as its requests in flight may be
    sender = Sender(limit=settings.delivery_target_concurrency, allow_private=settings.allow_private_urls)
    pump = Pump(settings, client, sender, reader=reader)
    try:
        if on_ready is not None:
            await on_ready(pump)
        await pump.run(stop, burst=burst)
    finally:
        await sender.aclose()
        await reader.aclose()
        await client.aclose()
    return pump
