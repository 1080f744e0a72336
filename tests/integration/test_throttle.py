"""throttle.lua against the real Redis: attempts counted before the check, locks that double, what a success
and a check that did not run give back, and how long a bucket is kept."""

from __future__ import annotations

import asyncio

import pytest
import redis

from adapter.auth.throttle import Bucket, Throttle
from adapter.settings import Settings
from adapter.store.keys import Keys


def buckets(settings: Settings) -> tuple[Bucket, Bucket]:
    """An own and a shared bucket under the test's prefix, in one slot on a cluster (as the login ones)."""
    keys = Keys.of(settings)
    return (Bucket(keys.login_failures_pair("own", "t"), limit=2, first=10, longest=25, idle=100),
            Bucket(keys.login_failures_ip("t"), limit=3, first=50, longest=50, idle=200))


@pytest.fixture
def throttle(aredis: redis.asyncio.Redis) -> Throttle:
    return Throttle(aredis)


def n(redis_db: redis.Redis, bucket: Bucket) -> int:
    return int(redis_db.hget(bucket.key, "n") or 0)


async def test_attempts_count_in_every_bucket_until_one_is_full(settings: Settings, redis_db: redis.Redis,
                                                                throttle: Throttle) -> None:
    own, shared = buckets(settings)
    waits = await asyncio.gather(*(throttle.take([own, shared]) for _ in range(4)))

    assert sorted(waits) == [0, 0, 10, 10], "two go ahead; the third locks the own bucket for `first`"
    assert (n(redis_db, own), n(redis_db, shared)) == (0, 2), "a lock starts the count again"
    assert 100_000 < redis_db.pttl(own.key) <= 110_000, "kept for the lock and then `idle`"
    assert 0 < redis_db.pttl(shared.key) <= 200_000


async def test_locks_double_up_to_the_longest(settings: Settings, redis_db: redis.Redis, throttle: Throttle) -> None:
    one = Bucket(Keys.of(settings).login_failures_ip("one"), limit=1, first=10, longest=25, idle=100)

    async def scenario(t: Throttle) -> list[int]:
        waits = []
        for _ in range(4):
            assert await t.take([one]) == 0
            waits.append(await t.take([one]))
            redis_db.hset(one.key, "u", 0)  # the lock's time passes
        return waits

    assert await scenario(throttle) == [10, 20, 25, 25]


async def test_a_locked_bucket_answers_without_counting(settings: Settings, redis_db: redis.Redis,
                                                        throttle: Throttle) -> None:
    own, shared = buckets(settings)
    async def scenario(t: Throttle) -> tuple[int, int]:
        for _ in range(3):
            await t.take([shared])
        locked = await t.take([shared])
        return locked, await t.take([own, shared])

    assert await scenario(throttle) == (50, 50)
    assert redis_db.exists(own.key) == 0, "an attempt refused by a shared bucket is not counted in the own"


async def test_a_success_clears_the_own_bucket_and_gives_back_to_the_shared(settings: Settings, redis_db: redis.Redis,
                                                                            throttle: Throttle) -> None:
    own, shared = buckets(settings)
    async def scenario(t: Throttle) -> None:
        await t.take([own, shared])
        await t.take([own, shared])
        await t.clear([own, shared])

    await scenario(throttle)
    assert redis_db.exists(own.key) == 0
    assert n(redis_db, shared) == 1


async def test_a_check_that_did_not_run_gives_back_everywhere(settings: Settings, redis_db: redis.Redis,
                                                              throttle: Throttle) -> None:
    own, shared = buckets(settings)
    async def scenario(t: Throttle) -> None:
        await t.take([own, shared])
        await t.refund([own, shared])
        await t.refund([own, shared])

    await scenario(throttle)
    assert (n(redis_db, own), n(redis_db, shared)) == (0, 0), "never below zero"
