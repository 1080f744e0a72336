"""The driver's fencing and its crash recovery, deterministically (adapter/rollouts/driver.py, rollout.lua): only
the lease holder dispatches; a batch committed by a driver that died before writing its commands is written by
the next driver, once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis

from adapter.rollouts.driver import Driver
from adapter.settings import Settings
from adapter.store.connections import async_redis
from adapter.store.keys import Keys
from tests.integration.test_rollouts import create, devices


class Crash(Exception):
    pass


async def tick(settings: Settings, keys: Keys, rid: int, me: str, *, crash_on_write: bool = False) -> Any:
    client = async_redis(settings)
    try:
        driver = await Driver.load(client, keys, settings, rid, me)
        assert driver is not None
        if crash_on_write:
            async def die(batch: list[tuple[str, int]]) -> None:
                raise Crash
            driver.write = die  # type: ignore[method-assign]
        return await driver.tick()
    finally:
        await client.aclose()


async def test_only_the_lease_holder_dispatches(admin: httpx.Client, settings: Settings, redis_db: redis.Redis,
                                                keys: Keys) -> None:
    devices(redis_db, keys, 5)
    rid = create(admin, selector={"all": True}, rate={"perMinute": 60000})["id"]  # no worker: nobody drives it
    redis_db.set(keys.rollout_driver(rid), "job-A", px=60_000)
    assert await tick(settings, keys, rid, "job-B") == ("fenced", False)
    assert redis_db.zcard(keys.rollout_execs(rid)) == 0 and redis_db.hget(keys.rollout(rid), "state") == "queued"
    state, done = await tick(settings, keys, rid, "job-A")
    assert (state, done) == ("running", False)
    assert redis_db.zcard(keys.rollout_execs(rid)) == 1  # the bucket's first token
    assert await tick(settings, keys, rid, "job-B") == ("fenced", False)
    assert redis_db.zcard(keys.rollout_execs(rid)) == 1


async def test_a_batch_committed_but_not_written_is_written_once_by_the_next_driver(
        admin: httpx.Client, settings: Settings, redis_db: redis.Redis, keys: Keys) -> None:
    sns = devices(redis_db, keys, 3)
    rid = create(admin, selector={"all": True}, rate={"perMinute": 60000})["id"]
    redis_db.set(keys.rollout_driver(rid), "job-A", px=60_000)
    with pytest.raises(Crash):  # committed, then "killed" before writing the commands
        await tick(settings, keys, rid, "job-A", crash_on_write=True)
    pending = redis_db.hget(keys.rollout(rid), "pending")
    assert pending is not None and sns[0] in pending
    assert redis_db.zcard(keys.commands_of_sn(sns[0])) == 0
    redis_db.set(keys.rollout_driver(rid), "job-B", px=60_000)  # the guard's new driver
    await tick(settings, keys, rid, "job-B")
    assert redis_db.hget(keys.rollout(rid), "pending") is None
    assert redis_db.zcard(keys.commands_of_sn(sns[0])) == 1
    redis_db.hset(keys.rollout(rid), "pending", pending)  # written again (a crash before `written`): skipped
    await tick(settings, keys, rid, "job-B")
    assert redis_db.zcard(keys.commands_of_sn(sns[0])) == 1
    assert int(redis_db.hget(keys.rollout(rid), "dispatched")) == redis_db.zcard(keys.rollout_execs(rid))


async def test_the_guard_restarts_a_lost_driver_but_not_one_a_paused_rollout_gave_up(
        admin: httpx.Client, settings: Settings, redis_db: redis.Redis, keys: Keys,
        aredis: redis.asyncio.Redis) -> None:
    from adapter.rollouts import chain
    from adapter.store.connections import rq_redis

    devices(redis_db, keys, 2)
    rid = create(admin, selector={"all": True}, rate={"perMinute": 60})["id"]

    async def guard() -> list[str]:
        return await chain.guard(aredis, rq_redis(settings), keys)


    assert await guard() == []  # the create's driver holds the lease
    redis_db.delete(keys.rollout_driver(rid))  # its worker died: the lease lapsed
    redis_db.hset(keys.rollout(rid), "state", "paused")
    assert await guard() == []  # paused, nothing in flight: no driver needed
    redis_db.zadd(keys.rollout_inflight(rid), {"RD00000": 0})
    started = await guard()  # paused with one in flight: it must be settled
    assert len(started) == 1 and redis_db.get(keys.rollout_driver(rid)) == started[0]
    assert await guard() == []  # one driver, however often the guard looks
