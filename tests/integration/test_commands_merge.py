"""The merged listing (adapter/commands/merge.py) on the real Redis: sorted sets with distinct scores merged
highest first at exact offsets, checked page for page against a sorted reference."""

from __future__ import annotations

import random

import redis

from adapter.commands import merge
from tests.conftest import async_store_client


async def test_every_page_is_the_references(redis_db: redis.Redis, key_prefix: str) -> None:
    rng = random.Random(7)
    shards = [f"{key_prefix}:m:{i}" for i in range(8)]  # several slots on the cluster
    scores = rng.sample(range(10**12), 3000)
    for n, score in enumerate(scores):
        redis_db.zadd(shards[rng.randrange(5) if n % 3 else 7], {f"c{score}": score})  # uneven shards
    reference = [f"c{s}" for s in sorted(scores, reverse=True)]

    client = async_store_client(decode_responses=True)
    try:
        for offset, limit in [(0, 10), (0, 100), (5, 7), (999, 50), (1500, 100), (2950, 100), (2999, 1),
                              (3000, 10), (1234, 0), *[(rng.randrange(3000), rng.randrange(1, 200))
                                                       for _ in range(30)]]:
            total, page = await merge.page(client, shards, offset, limit)
            assert total == 3000 and page == reference[offset:offset + limit], (offset, limit)
        assert await merge.page(client, [f"{key_prefix}:m:none{i}" for i in range(3)], 0, 10) == (0, [])
    finally:
        await client.aclose()
