"""Walking the devices a selector matches, in sn order, from a cursor (docs/rollouts.md "Selectors").

The walk reads the narrowest index the selector allows: its own sn list, the tag's index, the online or offline
index, or the device index (cut to `snPrefix` by a lexical range), merged over the shards on the cluster. Each
batch of candidates is checked against the device records in one pipeline. A rollout's driver walks a few at a
time from its cursor; a dry run walks everything and counts (O(devices the index holds)).
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass
from typing import Any

from adapter.devices.selectors import Selector
from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis

BATCH = 1000
FIELDS = ("device", "online", "versions")


@dataclass(frozen=True)
class Source:
    """Sorted sets (scores 0) walked in lexical order between `lo` and `hi`, or a sorted list in memory."""

    keys: tuple[str, ...] = ()
    lo: bytes = b"-"
    hi: bytes = b"+"
    items: tuple[str, ...] | None = None
    check_tag: bool = False  # the index is not the tag's own: look the tag up per device


def source_of(keys: Keys, sel: Selector, sns_key: str | None = None) -> Source:
    """The index to walk; `sns_key` a sorted set holding `sel.sns` (a rollout's copy), else they are walked in
    memory."""
    tagged = sel.tag is not None
    if sel.sns is not None:
        if sns_key is None:
            return Source(items=sel.sns, check_tag=tagged)
        return Source(keys=(sns_key,), check_tag=tagged)
    lo, hi = b"-", b"+"
    if sel.sn_prefix is not None:
        prefix = sel.sn_prefix.encode()
        lo, hi = b"[" + prefix, b"(" + prefix + b"\xff"  # 0xff never occurs in UTF-8
    if sel.tag is not None:
        index = [keys.tagged(sel.tag, p) for p in keys.shards()]
    elif sel.online is True:
        index = [keys.devices_online(p) for p in keys.shards()]
    elif sel.online is False:
        index = [keys.devices_offline(p) for p in keys.shards()]
    else:
        index = [keys.devices(p) for p in keys.shards()]
    return Source(keys=tuple(index), lo=lo, hi=hi)


async def index_size(client: AsyncRedis, src: Source) -> int:
    """How many sns the walk's index holds between its bounds: an upper bound of the matches, O(shards)."""
    if src.items is not None:
        return len(src.items)
    async with client.pipeline(transaction=False) as pipe:
        for key in src.keys:
            pipe.zlexcount(key, src.lo, src.hi)
        return sum(int(n) for n in await pipe.execute())


async def candidates(client: AsyncRedis, src: Source, after: str | None, count: int) -> list[str]:
    """The next `count` sns of the index after `after` (from the start when None), in order."""
    if src.items is not None:
        i = bisect.bisect_right(src.items, after) if after is not None else 0
        return list(src.items[i:i + count])
    lo = b"(" + after.encode() if after is not None else src.lo
    async with client.pipeline(transaction=False) as pipe:
        for key in src.keys:
            pipe.zrangebylex(key, lo, src.hi, 0, count)
        replies = await pipe.execute()
    merged = heapq.merge(*([str(s) for s in r] for r in replies))
    return list(merged)[:count]


async def matching(client: AsyncRedis, keys: Keys, sel: Selector, src: Source, sns: list[str]) -> list[bool]:
    """For each of `sns`, whether the selector matches it now."""
    if not sns:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for sn in sns:
            pipe.hmget(keys.client(sn), *FIELDS)
            if src.check_tag:
                pipe.sismember(keys.device_tags(sn), sel.tag or "")
        replies = await pipe.execute()
    step = 2 if src.check_tag else 1
    out = []
    for i, sn in enumerate(sns):
        record: dict[str, Any] = dict(zip(FIELDS, replies[i * step], strict=True))
        has_tag = bool(replies[i * step + 1]) if src.check_tag else None
        out.append(sel.matches(sn, record, has_tag))
    return out


async def preview(client: AsyncRedis, keys: Keys, sel: Selector, page: int, limit: int) -> dict[str, Any]:
    """A dry run: how many devices match now, and the page `page` of them (sn order)."""
    src = source_of(keys, sel)
    start, total, found = (page - 1) * limit, 0, []
    after: str | None = None
    while True:
        batch = await candidates(client, src, after, BATCH)
        if not batch:
            break
        for sn, ok in zip(batch, await matching(client, keys, sel, src, batch), strict=True):
            if ok:
                if start <= total < start + limit:
                    found.append(sn)
                total += 1
        after = batch[-1]
    return {"total": total, "count": len(found), "page": page, "limit": limit, "list": found}
