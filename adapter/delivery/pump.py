"""The delivery pump: runs beside the RQ worker in every `adapter worker` process (docs/design.md §6).

Pumps share the partitions of the delivery streams by leases (a fair share each: partitions / live pumps).
A pump reads its partitions through one consumer group, sends each delivery (signed), and writes the
outcome; deliveries of one target and key go one after another, others concurrently. A pump that dies
leaves its unacknowledged entries pending and its leases expiring: the pump that takes a lease over claims
them first, so nothing is lost (at-least-once). Any pump also moves due retries back to the streams (on Redis
Cluster each pump those of its own partitions: the retry sets are per partition).

Fairness: a target has at most `delivery_target_concurrency` requests in flight per pump; deliveries wait
for its turn while it answers, and are deferred to Redis for a second or two once it is slow (see Gate).
Tasks waiting behind an earlier delivery of their device use no read credit: the pump reads as long as fewer
than `delivery_concurrency` tasks are ready to send (and fewer than WAITING_FACTOR times as many are in
memory). After `delivery_breaker_threshold` failed attempts in a row a target's breaker
opens: its deliveries are deferred, not sent, until a probe (one delivery every `delivery_breaker_probe` s)
succeeds (breaker.py; per partition on Redis Cluster).

On Redis Cluster the pump talks to a RedisCluster client: every script call is single-slot (the partition's),
sent by itself (redis-py routes it); on one Redis the outcomes go through the batcher, as ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from adapter.delivery import retry, signing
from adapter.delivery.breaker import Target, Targets, now_ms
from adapter.delivery.gate import Gate
from adapter.delivery.model import (
    AGAIN_LATER,
    HEAD,
    HOLD,
    OUTCOME,
    RELEASING,
    Delivery,
    Limits,
    Outcome,
    OutcomeName,
    ScriptCall,
    hold_call,
    move_due_call,
    outcome_call,
)
from adapter.delivery.sender import Attempt, Sender
from adapter.settings import Settings
from adapter.store import scripts
from adapter.store.batcher import Batcher
from adapter.store.connections import async_redis
from adapter.store.keys import Keys
from adapter.store.scripts import LuaScript
from adapter.store.types import AsyncRedis
from adapter.targets import replicas

log = logging.getLogger("adapter.delivery.pump")
GROUP = "pumps"

_RENEW = LuaScript("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end "
                   "return 0")
_RELEASE = LuaScript("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")
WAITING_FACTOR = 8  # tasks in memory per partition, at most, as a multiple of delivery_concurrency
GATE_DEFER_MS = 1000  # how long a delivery that gave up waiting for a slow target's turn waits in Redis
REPAIR_EVERY_S = 30.0  # cluster: how often a pump re-syncs the enabled-callback replicas (targets/replicas.py)


@dataclass
class PartitionState:
    task: asyncio.Task[None]
    stop: asyncio.Event = field(default_factory=asyncio.Event)


class Pump:
    def __init__(self, settings: Settings, client: AsyncRedis, sender: Sender,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.keys = Keys.of(settings)
        self.redis = client
        # one Redis: outcomes through the batcher; a cluster client routes each script call by its slot
        self.batcher = Batcher(client, [OUTCOME, HOLD]) if isinstance(client, aioredis.Redis) else None
        self.limits = Limits.of(settings).per_partition(len(self.keys.shards()))
        self.stream_partitions = self.keys.stream_partitions
        self.sender = sender
        self.rng = rng or random.Random()
        self.schedule = retry.parse_schedule(settings.delivery_schedule)
        self.id = secrets.token_hex(6)
        self.lease_ms = int(settings.delivery_lease * 1000)
        self.partitions: dict[int, PartitionState] = {}
        self.targets = Targets(client, self.keys, self.limits.breaker_probe_ms)
        self.repaired = 0.0  # monotonic time of the last replica repair (cluster)
        self.slots = asyncio.Semaphore(settings.delivery_concurrency)
        self.tails: dict[tuple[str, str], asyncio.Future[None]] = {}
        self.working: set[str] = set()  # entry ids read and not yet finished, by this pump
        self.holds: dict[int, dict[tuple[str, str], str]] = {}  # partition -> (target, key) -> head delivery
        self.gates: dict[str, Gate] = {}
        self.parked: dict[int, int] = {}  # partition -> its tasks waiting behind their device's earlier delivery
        self.delivered = 0

    # --- the control loop: heartbeat, leases, due retries -------------------------------------------------

    async def run(self, stop: asyncio.Event, *, burst: bool = False) -> None:
        try:
            with contextlib.suppress(redis.exceptions.RedisError):
                if self.batcher is not None:
                    await self.batcher.load_scripts()
            while not stop.is_set():
                await self._tick()
                if burst and await self._idle():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=0.2)
        finally:
            await self._release_all()

    async def _tick(self) -> None:
        now = int(time.time() * 1000)
        try:
            await self.redis.zadd(self.keys.delivery_pumps(), {self.id: now})
            await self.redis.zremrangebyscore(self.keys.delivery_pumps(), "-inf", now - 3 * self.lease_ms)
            if self.keys.cluster:  # each partition's retries, by the pump that holds it
                await asyncio.gather(*(move_due_call(self.keys, p, now, 500, self.limits.stream_maxlen)
                                       .run(self.redis) for p in self.partitions))
                if time.monotonic() - self.repaired > REPAIR_EVERY_S:
                    await replicas.repair(self.redis, self.keys)
                    self.repaired = time.monotonic()
            else:
                await move_due_call(self.keys, 0, now, 500, self.limits.stream_maxlen).run(self.redis)
            async with self.redis.pipeline(transaction=False) as pipe:
                for p in self.partitions:
                    pipe.xtrim(self.keys.delivery_stream(p), maxlen=self.limits.stream_maxlen, approximate=True)
                await pipe.execute()
            await self._balance(now)
        except redis.exceptions.RedisError as exc:
            log.warning("delivery pump: redis: %s", exc)

    async def _balance(self, now: int) -> None:
        live = max(1, await self.redis.zcount(self.keys.delivery_pumps(), now - 2 * self.lease_ms, "+inf"))
        share = math.ceil(self.stream_partitions / live)
        for p, state in list(self.partitions.items()):
            renewed = await scripts.call(self.redis, _RENEW, 1, self.keys.delivery_lease(p), self.id, self.lease_ms)
            if not renewed or state.task.done():
                state.stop.set()
                self.partitions.pop(p)
        while len(self.partitions) > share:
            p = max(self.partitions)
            await self._release(p)
        for p in self._order():
            if len(self.partitions) >= share:
                break
            if p in self.partitions:
                continue
            if await self.redis.set(self.keys.delivery_lease(p), self.id, nx=True, px=self.lease_ms):
                state = PartitionState(task=asyncio.get_running_loop().create_task(self._partition(p)))
                self.partitions[p] = state

    def _order(self) -> list[int]:
        order = list(range(self.stream_partitions))
        self.rng.shuffle(order)
        return order

    async def _release(self, p: int) -> None:
        state = self.partitions.pop(p)
        state.stop.set()
        await asyncio.gather(state.task, return_exceptions=True)
        await scripts.call(self.redis, _RELEASE, 1, self.keys.delivery_lease(p), self.id)

    async def _release_all(self) -> None:
        async def release(p: int) -> None:
            with contextlib.suppress(redis.exceptions.RedisError):
                await self._release(p)

        # all at once: each waits for its partition's loop to end (its blocking read: up to 0.2 s), 48 on a cluster
        await asyncio.gather(*(release(p) for p in list(self.partitions)))
        with contextlib.suppress(redis.exceptions.RedisError):
            await self.redis.zrem(self.keys.delivery_pumps(), self.id)

    async def _idle(self) -> bool:
        """Burst mode: nothing left to send (streams empty, no retry waiting, nothing in flight)."""
        for p in range(self.stream_partitions):
            if await self.redis.xlen(self.keys.delivery_stream(p)):
                return False
        for lane in self.keys.shards():
            if await self.redis.zcard(self.keys.delivery_retry(lane)):
                return False
        return not self.tails

    # --- one partition ------------------------------------------------------------------------------------

    async def _partition(self, p: int) -> None:
        stream = self.keys.delivery_stream(p)
        state_stop = self.partitions[p].stop if p in self.partitions else asyncio.Event()
        try:
            await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        inflight: set[asyncio.Task[None]] = set()
        try:
            await self._load_holds(p)
            await self._claim_stale(p, inflight, 0)
            reclaimed = time.monotonic()
            while not state_stop.is_set():
                if time.monotonic() - reclaimed > self.settings.delivery_timeout + 5:
                    # entries whose processing failed (Redis errors) are tried again
                    await self._claim_stale(p, inflight, int((self.settings.delivery_timeout + 5) * 1000))
                    reclaimed = time.monotonic()
                ready = len(inflight) - self.parked.get(p, 0)
                free = min(self.settings.delivery_concurrency - ready,
                           self.settings.delivery_concurrency * WAITING_FACTOR - len(inflight))
                if free <= 0:  # until one ends, or (polled) one is deferred by its slow target
                    await asyncio.wait(inflight, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
                    continue
                reply: Any = await self.redis.xreadgroup(GROUP, self.id, {stream: ">"}, count=free, block=200)
                for _, entries in reply or []:
                    for entry_id, fields in entries:
                        self._spawn(p, entry_id, fields, inflight)
        except redis.exceptions.RedisError as exc:
            log.warning("delivery pump: partition %d: %s", p, exc)
        finally:
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)

    async def _load_holds(self, p: int) -> None:
        """Which target and key of this partition wait behind a retry, and behind which delivery: kept in
        memory while this pump holds the partition (only its own outcomes change them)."""
        holds: dict[tuple[str, str], str] = {}
        for hold_key in await self.redis.smembers(self.keys.delivery_holds(p)):
            head = await self.redis.lindex(hold_key, 0)
            chain = _chain_of(_text(hold_key), self.keys.delivery_hold_prefix(p))
            if head is not None and _text(head).startswith(HEAD) and chain is not None:
                holds[chain] = _text(head)[len(HEAD):]
            elif head is not None and _text(head) == RELEASING and chain is not None:
                holds[chain] = RELEASING
        self.holds[p] = holds

    async def _claim_stale(self, p: int, inflight: set[asyncio.Task[None]], min_idle_ms: int) -> None:
        """Entries read but never finished (by a previous holder of this lease, or by this pump when
        writing their outcome failed): ours now."""
        cursor: Any = "0-0"
        stream = self.keys.delivery_stream(p)
        while True:
            reply = await self.redis.xautoclaim(stream, GROUP, self.id, min_idle_time=min_idle_ms,
                                                start_id=cursor, count=500)
            cursor, entries = reply[0], reply[1]
            for entry_id, fields in entries:
                if _text(entry_id) in self.working:
                    continue
                if fields:
                    self._spawn(p, entry_id, fields, inflight)
                else:  # deleted while pending
                    await self.redis.xack(stream, GROUP, entry_id)
            if cursor in (b"0-0", "0-0"):
                return

    def _spawn(self, p: int, entry_id: Any, fields: dict[Any, Any], inflight: set[asyncio.Task[None]]) -> None:
        d = Delivery.from_fields(fields)
        chain = (d.target, d.key)
        before = self.tails.get(chain)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tails[chain] = done

        entry = _text(entry_id)
        self.working.add(entry)
        if before is not None:  # waits behind its device's earlier delivery: no read credit (counted now)
            self.parked[p] = self.parked.get(p, 0) + 1

        def release() -> None:
            if not done.done():
                done.set_result(None)
            if self.tails.get(chain) is done:
                del self.tails[chain]

        async def run() -> None:
            try:
                if before is not None:
                    try:
                        await before
                    finally:
                        self.parked[p] -= 1
                await self._one(p, entry, d, release)
            except Exception as exc:  # left pending: claimed again after a while
                log.warning("delivery %s: %s", d.id, exc)
            finally:
                self.working.discard(entry)
                release()

        task = asyncio.get_running_loop().create_task(run())
        inflight.add(task)
        task.add_done_callback(inflight.discard)

    # --- one delivery -------------------------------------------------------------------------------------

    async def _one(self, p: int, entry_id: str, d: Delivery, release: Callable[[], None]) -> None:
        """Send one delivery and record its outcome. `release` lets the next delivery of the same target and
        key go as soon as this one's outcome is known (the hold state it needs is in memory), not after the
        outcome is written; unless this one ends a hold or a released batch, whose written outcome says
        whether more are still held."""
        holds = self.holds.setdefault(p, {})
        chain = (d.target, d.key)
        head = holds.get(chain)
        if head is not None and head != d.id and not (head == RELEASING and d.released):
            await self._write([hold_call(self.keys, p, GROUP, entry_id, d, self.limits, now_ms())])
            return
        target = await self.targets.get(d.target, p)
        outcome = await self._attempt(p, d, target)
        command = outcome_call(self.keys, p, GROUP, entry_id, d, outcome, target.cb_type if target else None,
                               self.limits, now_ms())
        if outcome.name in AGAIN_LATER:
            holds[chain] = d.id
        elif head == d.id or d.released == 2:
            [remaining] = await self._write([command])
            if remaining:
                holds[chain] = RELEASING
            else:
                holds.pop(chain, None)
            self.delivered += outcome.name == OutcomeName.SUCCESS
            return
        release()
        await self._write([command])
        self.delivered += outcome.name == OutcomeName.SUCCESS

    async def _write(self, calls: list[ScriptCall]) -> list[Any]:
        if self.batcher is None:
            return [await call.run(self.redis) for call in calls]
        replies = await self.batcher.submit([call.packed() for call in calls])
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _attempt(self, p: int, d: Delivery, target: Target | None) -> Outcome:
        if target is None or not target.enabled:
            return Outcome(OutcomeName.DROPPED, error="target deleted" if target is None else "target disabled")
        probe = target.open
        if probe and not await self.targets.probe(d.target, p, target):
            return Outcome(OutcomeName.DEFERRED, due_ms=max(target.probe_at, now_ms()) + self.rng.randrange(0, 1000))
        gate = self.gates.get(d.target)
        if gate is None:
            gate = self.gates[d.target] = Gate(self.settings.delivery_target_concurrency)
        token = await gate.turn()
        if token is None:
            due_ms = now_ms() + GATE_DEFER_MS + self.rng.randrange(0, GATE_DEFER_MS)
            return Outcome(OutcomeName.DEFERRED, due_ms=due_ms)
        if target.open and not probe:  # opened while this one waited for its turn
            gate.done(token)
            return Outcome(OutcomeName.DEFERRED, due_ms=target.probe_at + self.rng.randrange(0, 1000))
        try:
            async with self.slots:
                headers = signing.headers(target.key, d.id, int(time.time()), d.body)
                a = await self.sender.post(target.url, d.body, headers, self.settings.delivery_timeout)
        finally:
            gate.done(token)
        verdict = retry.classify(a.status, a.error)
        if verdict == "success":
            target.succeeded()  # as the outcome script does
            return _outcome(OutcomeName.SUCCESS, a)
        if verdict == "fail":
            return _outcome(OutcomeName.FAILED, a)
        target.failed(self.limits.breaker_threshold, self.limits.breaker_probe_ms)
        delay = retry.next_delay(d.attempts + 1, self.schedule, self.rng, a.retry_after)
        if delay is None:
            return _outcome(OutcomeName.DEAD, a)
        return _outcome(OutcomeName.RETRY, a, due_ms=int((time.time() + delay) * 1000))


def _chain_of(hold_key: str, prefix: str) -> tuple[str, str] | None:
    """(target, key) of a hold list's key, `<prefix><kind>:<id>:<key>` (prefix: `Keys.delivery_hold_prefix`)."""
    rest = hold_key[len(prefix):]
    parts = rest.split(":", 2)
    return (f"{parts[0]}:{parts[1]}", parts[2]) if len(parts) == 3 else None


def _outcome(name: OutcomeName, a: Attempt, due_ms: int | None = None) -> Outcome:
    return Outcome(name, status=a.status, duration_ms=a.duration_ms, error=a.error, excerpt=a.excerpt, due_ms=due_ms)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def run_pump(settings: Settings, stop: asyncio.Event, *, burst: bool = False,
                   on_ready: Callable[[Pump], Awaitable[None]] | None = None) -> Pump:
    # one Redis: at most 32 connections, callers past them wait. A cluster client has no waiting pool (a caller
    # past its per-node cap fails with MaxConnectionsError and ends its partition's loop): no cap there; the
    # partitions' loops and their deliveries bound the connections (docs/cluster.md).
    cap = None if settings.redis_cluster else 32
    client = async_redis(settings, decode=False, socket_timeout=10, max_connections=cap)
    sender = Sender(limit=settings.delivery_concurrency, allow_private=settings.allow_private_urls)
    pump = Pump(settings, client, sender)
    try:
        if on_ready is not None:
            await on_ready(pump)
        await pump.run(stop, burst=burst)
    finally:
        await sender.aclose()
        await client.aclose()
    return pump
