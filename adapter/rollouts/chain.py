"""One driver per rollout, however many workers: a chain of RQ jobs, each driving for SLICE_S, fenced by a lease.

The rollout's driver key (`Keys.rollout_driver`) names the one RQ job allowed to drive it, with a TTL. A slice
renews it on every tick (driver.LEASE_MS); at the end of its slice it hands the key to a successor (for GRACE_MS,
its wait in the queue) and enqueues it, so other jobs get the worker between slices. Anyone may start a driver
for an active rollout whose key is gone (SET NX): the API when it creates one, the worker's guard every GUARD_S.
A paused rollout with nothing in flight has no driver (its last tick gives up the key; resuming starts one).
A worker SIGKILLed mid-slice lets the key expire; within LEASE_MS + GUARD_S another worker's guard starts a new
driver, which first writes any batch the dead one committed but did not write (driver.py). A job that wakes up
without the lease (a stale successor, a slow old driver) does nothing: every commit checks the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable

import redis
from rq import Queue

from adapter.jobs.chains import id_part
from adapter.rollouts import calls
from adapter.rollouts.driver import Driver
from adapter.settings import Settings
from adapter.store import faults
from adapter.store.connections import async_redis, rq_redis
from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis

QUEUE = "default"
ENTRY = "adapter.jobs.entry.drive_rollout"
SLICE_S = 10.0
GRACE_MS = 120_000
GUARD_S = 2.0
log = logging.getLogger("adapter.rollouts.chain")


def new_job_id(keys: Keys, rid: int) -> str:
    return f"{id_part(keys.prefix)}-rollout-{rid}-{int(time.time() * 1000)}-{secrets.token_hex(4)}"


def enqueue(rq: redis.Redis, keys: Keys, rid: int, job_id: str) -> None:
    Queue(keys.queue(QUEUE), connection=rq).enqueue(
        ENTRY, rid, job_id=job_id, job_timeout=int(SLICE_S * 6), result_ttl=600, failure_ttl=86_400,
        description=f"rollout {rid} driver")


async def start(client: AsyncRedis, rq: redis.Redis, keys: Keys, rid: int) -> str | None:
    """Start a driver unless one holds the lease; answers its job id."""
    job_id = new_job_id(keys, rid)
    if not await client.set(keys.rollout_driver(rid), job_id, nx=True, px=GRACE_MS):
        return None
    await asyncio.to_thread(enqueue, rq, keys, rid, job_id)
    return job_id


async def guard(client: AsyncRedis, rq: redis.Redis, keys: Keys) -> list[str]:
    """A driver for every active rollout that has none (its worker died), but a paused one with nothing in flight:
    the job ids started."""
    started = []
    rids = sorted(int(r) for r in await client.smembers(keys.rollouts_active()))
    async with client.pipeline(transaction=False) as pipe:
        for rid in rids:
            pipe.hget(keys.rollout(rid), "state")
            pipe.zcard(keys.rollout_inflight(rid))
        replies = await pipe.execute() if rids else []
    for i, rid in enumerate(rids):
        if replies[2 * i] == "paused" and int(replies[2 * i + 1]) == 0:
            continue  # a paused rollout with nothing in flight needs no driver until it is resumed
        job_id = await start(client, rq, keys, rid)
        if job_id is not None:
            log.warning("rollout %s had no driver: started %s", rid, job_id)
            started.append(job_id)
    return started


async def drive(client: AsyncRedis, rq: redis.Redis, keys: Keys, settings: Settings, rid: int, me: str,
                stopping: Callable[[], bool]) -> str:
    """One slice of job `me`; answers done, fenced, gone, or the successor's job id."""
    driver = await Driver.load(client, keys, settings, rid, me)
    if driver is None:
        return "gone"
    ended = await driver.run(SLICE_S, stopping)
    if ended != "more":
        return ended
    successor = new_job_id(keys, rid)
    if not await calls.hand_off(client, keys, rid, me, successor, GRACE_MS):
        return "fenced"
    await asyncio.to_thread(enqueue, rq, keys, rid, successor)
    return successor


async def run_guard(settings: Settings, stop: asyncio.Event) -> None:
    """The worker's rollout guard: `guard` every GUARD_S until `stop`; Redis trouble is waited out (logged)."""
    client, rq, keys = async_redis(settings), rq_redis(settings), Keys.of(settings)
    try:
        while not stop.is_set():
            try:
                await guard(client, rq, keys)
            except Exception as exc:  # Redis trouble: the next round tries again
                if not faults.trouble(exc):
                    raise
                log.warning("rollout guard: Redis trouble: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), GUARD_S)
    finally:
        await client.aclose()
        rq.close()
