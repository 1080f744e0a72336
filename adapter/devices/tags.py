"""Device tags (`PUT/GET/DELETE /iot/api/v1/monitor/devices/tags`, docs/rollouts.md "Tags"): free labels a
selector can name. A device's tags are a set in its slot; each tag has an index of its devices, split in shards
like the device index (on the cluster the shard of the device, so a device's tag writes stay in its slot).

Adding and removing are idempotent, so a pipeline cut short by a lost connection is repaired by sending it again.
A tag may name a device the service has not seen yet (provisioning); selectors match only known devices.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis

MAX_TAGS = 32  # per request, and per device


async def add(client: AsyncRedis, keys: Keys, sns: Sequence[str], tags: Sequence[str]) -> int:
    """Tag every one of `sns` with every one of `tags`; answers how many (device, tag) pairs are new."""
    async with client.pipeline(transaction=False) as pipe:
        for sn in sns:
            pipe.sadd(keys.device_tags(sn), *tags)
            for tag in tags:
                pipe.zadd(keys.tagged(tag, keys.shard(sn)), {sn: 0})
        replies = await pipe.execute()
    return sum(int(r) for r in replies[::len(tags) + 1])


async def remove(client: AsyncRedis, keys: Keys, sn: str, tag: str | None) -> list[str]:
    """Take `tag` (every tag when None) off device `sn`; answers the tags it had and lost."""
    gone = [tag] if tag is not None else sorted(str(t) for t in await client.smembers(keys.device_tags(sn)))
    if not gone:
        return []
    async with client.pipeline(transaction=False) as pipe:
        pipe.srem(keys.device_tags(sn), *gone)
        for t in gone:
            pipe.zrem(keys.tagged(t, keys.shard(sn)), sn)
        replies = await pipe.execute()
    return gone if tag is None else ([tag] if int(replies[0]) else [])


async def of(client: AsyncRedis, keys: Keys, sn: str) -> list[str]:
    return sorted(str(t) for t in await client.smembers(keys.device_tags(sn)))


async def page(client: AsyncRedis, keys: Keys, tag: str, page_no: int, limit: int) -> dict[str, Any]:
    """The sns carrying `tag`, in sn order (on the cluster a merge of the shards' first `start + limit`)."""
    start = (page_no - 1) * limit
    shards = [keys.tagged(tag, p) for p in keys.shards()]
    async with client.pipeline(transaction=False) as pipe:
        for key in shards:
            pipe.zcard(key)
        for key in shards:
            pipe.zrange(key, 0 if len(shards) > 1 else start, start + limit - 1)
        replies = await pipe.execute()
    total = sum(int(n) for n in replies[:len(shards)])
    if len(shards) == 1:
        found = [str(s) for s in replies[1]]
    else:
        found = [str(s) for s in heapq.merge(*replies[len(shards):])][start:start + limit]
    return {"total": total, "count": len(found), "page": page_no, "limit": limit, "list": found}
