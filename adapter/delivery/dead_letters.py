"""A target's dead letters (docs/design.md §6): listed a page at a time and replayed in bounded batches.

The engine writes them (outcome.lua): the hash `dead(target)` (delivery id -> JSON) and its index
`dead_index(target)` (delivery id scored by when it died, ms), capped per target by count and age. Letters
written before the index existed are indexed on first read (`index_missing`). On Redis Cluster a target has one
hash and index per partition (`dead(target, p)`, the partition's slot): a page merges them by time, a count sums
them, a replay moves each partition's letters back onto that partition's stream.

`replay` is a domain function, not handler logic: the API calls it, and so can a background job (it reports
progress after each batch through `progress`). Each batch is one script call, so two replays at the same
time move each letter once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from adapter.store.keys import Keys
from adapter.store.scripts import Script, ScriptCall
from adapter.store.types import AsyncRedis, as_text

REPLAY_BATCH = 500

REPLAY = Script.load("delivery/replay.lua")


def replay_call(keys: Keys, target: str, p: int, partitions: int, maxlen: int, ids: Sequence[str] | None,
                limit: int, offset: int) -> ScriptCall:
    """One replay batch: the letters `ids`, or (None) the oldest `limit` from `offset`, of `target`'s partition
    `p` (one Redis: its only one, each letter to its key's stream of `partitions`) back onto the streams."""
    if keys.cluster:
        where: dict[str, Any] = {"dead": keys.dead(target, p), "dead_index": keys.dead_index(target, p),
                                 "stream": (keys.delivery_stream(p),), "stream_prefix": "", "partitions": 0}
    else:
        where = {"dead": keys.dead(target), "dead_index": keys.dead_index(target), "stream": (),
                 "stream_prefix": keys.delivery_stream_prefix(), "partitions": partitions}
    if ids is None:
        return REPLAY.call(**where, target=target, maxlen=maxlen, how="first", limit=limit, offset=offset, ids=())
    return REPLAY.call(**where, target=target, maxlen=maxlen, how="ids", limit=len(ids), offset=0, ids=ids)


@dataclass(frozen=True)
class Replayed:
    """What a replay did: letters moved back to the streams, left (no body to send), not found."""

    moved: int = 0
    skipped: int = 0
    missing: int = 0

    def __add__(self, other: Replayed) -> Replayed:
        return Replayed(self.moved + other.moved, self.skipped + other.skipped, self.missing + other.missing)


Progress = Callable[[Replayed], Awaitable[None]]


async def index_missing(client: AsyncRedis, keys: Keys, target: str) -> None:
    """Indexes letters the hash holds and the index does not (written before it existed), by their time."""
    for p in keys.shards():
        dead, index = keys.dead(target, p), keys.dead_index(target, p)
        if await client.hlen(dead) <= await client.zcard(index):
            continue
        scores: dict[str, float] = {}
        async for field, raw in client.hscan_iter(dead):
            try:
                when = orjson.loads(raw).get("time", 0)
            except (orjson.JSONDecodeError, AttributeError):
                when = 0
            scores[as_text(field)] = float(when if isinstance(when, int | float) else 0) * 1000
        if scores:
            await client.zadd(index, scores, nx=True)


async def count(client: AsyncRedis, keys: Keys, target: str) -> int:
    """How many dead letters the target has (over its partitions)."""
    async with client.pipeline(transaction=False) as pipe:
        for p in keys.shards():
            pipe.hlen(keys.dead(target, p))
        return sum(int(n) for n in await pipe.execute())


async def page(client: AsyncRedis, keys: Keys, target: str, page_no: int, limit: int) -> tuple[int, list[Any]]:
    """The total and one page of the letters, oldest first: (total, [(delivery id, JSON or None)])."""
    await index_missing(client, keys, target)
    start = (page_no - 1) * limit
    if not keys.cluster:
        index = keys.dead_index(target)
        async with client.pipeline(transaction=False) as pipe:
            pipe.zcard(index)
            pipe.zrange(index, start, start + limit - 1)
            total, ids = await pipe.execute()
        raws = await client.hmget(keys.dead(target), ids) if ids else []
        return int(total), [(as_text(i), r) for i, r in zip(ids, raws, strict=True)]
    # the cluster: the first start + limit of every partition's index, merged by time (each index holds at most
    # ceil(max dead / P) letters: an admin read, not a hot path)
    lanes = list(keys.shards())
    async with client.pipeline(transaction=False) as pipe:
        for p in lanes:
            pipe.zcard(keys.dead_index(target, p))
            pipe.zrange(keys.dead_index(target, p), 0, start + limit - 1, withscores=True)
        replies = await pipe.execute()
    total = sum(int(n) for n in replies[0::2])
    merged = sorted((float(score), as_text(i), p) for p, found in zip(lanes, replies[1::2], strict=True)
                    for i, score in found)[start:start + limit]
    async with client.pipeline(transaction=False) as pipe:
        for _, i, p in merged:
            pipe.hget(keys.dead(target, p), i)
        raws = await pipe.execute() if merged else []
    return total, [(i, r) for (_, i, _), r in zip(merged, raws, strict=True)]


async def _by_lane(client: AsyncRedis, keys: Keys, target: str, ids: Sequence[str]) -> dict[int, list[str]]:
    """The ids grouped by the partition whose letters hold them; those none holds go with partition 0's (where
    the script counts them missing)."""
    lanes = list(keys.shards())
    async with client.pipeline(transaction=False) as pipe:
        for p in lanes:
            pipe.hmget(keys.dead(target, p), list(ids))
        found = await pipe.execute()
    groups: dict[int, list[str]] = {}
    for n, i in enumerate(ids):
        lane = next((p for p, raws in zip(lanes, found, strict=True) if raws[n] is not None), 0)
        groups.setdefault(lane, []).append(i)
    return groups


async def replay(client: AsyncRedis, keys: Keys, target: str, delivery_ids: Sequence[str] | None,
                 partitions: int, maxlen: int, *, batch: int = REPLAY_BATCH,
                 progress: Progress | None = None) -> Replayed:
    """Moves the letters `delivery_ids` (None: all) back onto the delivery streams as first attempts, `batch`
    per script call; `progress` hears the running total after each call."""
    await index_missing(client, keys, target)
    if delivery_ids is None or not keys.cluster:
        groups: dict[int, Sequence[str] | None] = {p: delivery_ids for p in keys.shards()}
    else:
        groups = dict((await _by_lane(client, keys, target, delivery_ids)).items()) if delivery_ids else {}
    done = Replayed()
    for p, ids in groups.items():
        done = await _replay_lane(client, keys, target, p, ids, partitions, maxlen, batch, done, progress)
    return done


async def _replay_lane(client: AsyncRedis, keys: Keys, target: str, p: int, delivery_ids: Sequence[str] | None,
                       partitions: int, maxlen: int, batch: int, done: Replayed, progress: Progress | None
                       ) -> Replayed:
    offset = 0
    chunks = ([list(delivery_ids[i:i + batch]) for i in range(0, len(delivery_ids), batch)]
              if delivery_ids is not None else None)
    while True:
        if chunks is None:
            call = replay_call(keys, target, p, partitions, maxlen, None, batch, offset)
        elif chunks:
            call = replay_call(keys, target, p, partitions, maxlen, chunks.pop(0), batch, 0)
        else:
            break
        moved, skipped, missing, seen = (int(x) for x in await call.run(client))
        done += Replayed(moved, skipped, missing)
        offset += skipped
        if progress is not None:
            await progress(done)
        if chunks is None and seen < batch:
            break
    return done
