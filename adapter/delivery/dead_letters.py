"""A target's dead letters (docs/design.md §6): listed a page at a time and replayed in bounded batches.

The engine writes them (outcome.lua): the hash `dead(target)` (delivery id -> JSON) and its index
`dead_index(target)` (delivery id scored by when it died, ms), capped per target by count and age. Letters
written before the index existed are indexed on first read (`index_missing`).

`replay` is a domain function, not handler logic: the API calls it, and so can a background job (it reports
progress after each batch through `progress`). Each batch is one script call, so two replays at the same
time move each letter once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from adapter.store import scripts
from adapter.store.keys import Keys
from adapter.store.scripts import LuaScript
from adapter.store.types import AsyncRedis

REPLAY_BATCH = 500

# KEYS 1 dead hash 2 dead index; ARGV 1 stream prefix 2 partitions 3 target 4 stream MAXLEN 5 "first" (the
# oldest `limit` from `offset`) or "ids" (ARGV 8..) 6 limit 7 offset. Returns {moved, skipped (no body),
# missing (ids only), looked at}.
REPLAY = LuaScript("""
local ids = {}
if ARGV[5] == 'first' then
  ids = redis.call('ZRANGE', KEYS[2], tonumber(ARGV[7]), tonumber(ARGV[7]) + tonumber(ARGV[6]) - 1)
else
  for i = 8, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local moved, skipped, missing = 0, 0, 0
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEYS[1], id)
  local ok, d = false, nil
  if raw then ok, d = pcall(cjson.decode, raw) end
  if not raw then
    missing = missing + 1
    redis.call('ZREM', KEYS[2], id)
  elseif not ok or type(d) ~= 'table' or (type(d.body) ~= 'string' and type(d.body) ~= 'table') then
    skipped = skipped + 1
  else
    local body = type(d.body) == 'string' and d.body or cjson.encode(d.body)
    local k = type(d.key) == 'string' and d.key or ''
    local p = tonumber(string.sub(redis.sha1hex(k), 1, 8), 16) % tonumber(ARGV[2])
    redis.call('XADD', ARGV[1] .. p, 'MAXLEN', '~', ARGV[4], '*', 't', ARGV[3], 'k', k, 'id', id, 'b', body,
               'n', '0')
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    moved = moved + 1
  end
end
return {moved, skipped, missing, #ids}
""")


@dataclass(frozen=True)
class Replayed:
    """What a replay did: letters moved back to the streams, left (no body to send), not found."""

    moved: int = 0
    skipped: int = 0
    missing: int = 0

    def __add__(self, other: Replayed) -> Replayed:
        return Replayed(self.moved + other.moved, self.skipped + other.skipped, self.missing + other.missing)


Progress = Callable[[Replayed], Awaitable[None]]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def index_missing(client: AsyncRedis, keys: Keys, target: str) -> None:
    """Indexes letters the hash holds and the index does not (written before it existed), by their time."""
    dead, index = keys.dead(target), keys.dead_index(target)
    if await client.hlen(dead) <= await client.zcard(index):
        return
    scores: dict[str, float] = {}
    async for field, raw in client.hscan_iter(dead):
        try:
            when = orjson.loads(raw).get("time", 0)
        except (orjson.JSONDecodeError, AttributeError):
            when = 0
        scores[_text(field)] = float(when if isinstance(when, int | float) else 0) * 1000
    if scores:
        await client.zadd(index, scores, nx=True)


async def page(client: AsyncRedis, keys: Keys, target: str, page_no: int, limit: int) -> tuple[int, list[Any]]:
    """The total and one page of the letters, oldest first: (total, [(delivery id, JSON or None)])."""
    await index_missing(client, keys, target)
    index = keys.dead_index(target)
    start = (page_no - 1) * limit
    async with client.pipeline(transaction=False) as pipe:
        pipe.zcard(index)
        pipe.zrange(index, start, start + limit - 1)
        total, ids = await pipe.execute()
    raws = await client.hmget(keys.dead(target), ids) if ids else []
    return int(total), [(_text(i), r) for i, r in zip(ids, raws, strict=True)]


async def replay(client: AsyncRedis, keys: Keys, target: str, delivery_ids: Sequence[str] | None,
                 partitions: int, maxlen: int, *, batch: int = REPLAY_BATCH,
                 progress: Progress | None = None) -> Replayed:
    """Moves the letters `delivery_ids` (None: all) back onto the delivery streams as first attempts, `batch`
    per script call; `progress` hears the running total after each call."""
    await index_missing(client, keys, target)
    call_keys = (keys.dead(target), keys.dead_index(target))
    head = (keys.delivery_stream_prefix(), partitions, target, maxlen)
    done, offset = Replayed(), 0
    chunks = ([list(delivery_ids[i:i + batch]) for i in range(0, len(delivery_ids), batch)]
              if delivery_ids is not None else None)
    while True:
        if chunks is None:
            args: list[Any] = [*head, "first", batch, offset]
        elif chunks:
            args = [*head, "ids", len(chunks[0]), 0, *chunks.pop(0)]
        else:
            break
        moved, skipped, missing, seen = (int(x) for x in await scripts.call(client, REPLAY, 2, *call_keys, *args))
        done += Replayed(moved, skipped, missing)
        offset += skipped
        if progress is not None:
            await progress(done)
        if chunks is None and seen < batch:
            break
    return done
