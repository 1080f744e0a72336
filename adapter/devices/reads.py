"""The read side of devices and peripherals: pages, one device, counts (docs/design.md §11, seed "Device Monitoring").

Every index is a sorted set with all scores 0, so its order is lexical and an sn prefix is a lex range.
A page costs O(log n + limit) at any depth: the first rank of a prefix comes from ZLEXCOUNT (never a
ZRANGEBYLEX with an offset, which walks the skipped members before redis/redis#12450), then ZRANGE by
rank, then the page's hashes in ONE round trip. Totals come from ZCARD or ZLEXCOUNT, counts from ZCARD.

Every round goes through store/cluster_round.py, on one Redis as on a cluster: the commands packed in C (the
page's 100 HMGETs from one template that encodes the fields once), written at once, the replies parsed by one
hiredis reader. redis-py's pipeline packs in Python and wraps each write and read in a timeout task, which cost
more than the round trip (an earlier EVALSHA of an HMGET script did the same job at ~1.3 ms; docs/devices.md).

The one exception: peripherals filtered by both `gwId` and `online` intersect the gateway's set with the
online (or offline) set, which costs O(peripherals of that gateway).

An index member whose hash has vanished between the two reads is left out of the page (`count` < `limit`).

On Redis Cluster every global index is split into `keys.shards()` shards (one per partition, each in its
partition's slot): pages are exact offset pages over their k-way merge (adapter/devices/paging.py, with an
anchor cache for deep pages), counts are sums over the shards, and every round of per-shard commands goes to
every primary at once, packed as RESP on one connection per node (store/cluster_round.py), not through redis-py's
cluster pipeline. The page's hashes are HMGETs grouped by node the same way. A process remembers the first member
of the deep pages and sn-prefix pages it served (bounded copies, `ShardedIndex.page`), so the page after one, or
the same page again, is one selection round from there. One Redis keeps the code above.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster

from adapter.devices import paging
from adapter.devices.sharded import ShardedIndex
from adapter.devices.views import (
    DEVICE_FIELDS,
    PERIPHERAL_FIELDS,
    Values,
    device_detail,
    device_item,
    is_recorded,
    peripheral_item,
    split_member,
)
from adapter.store.cluster_round import Command, cluster_round
from adapter.store.keys import Keys
from adapter.store.resp import KeyTemplate
from adapter.store.types import AsyncRedis

Item = dict[str, Any]
Client = AsyncRedis


@dataclass(frozen=True)
class Page:
    total: int
    page: int
    limit: int
    items: list[Item]

    def as_data(self) -> dict[str, Any]:
        return {"total": self.total, "count": len(self.items), "page": self.page, "limit": self.limit,
                "list": self.items}


def _texts(members: Any) -> list[str]:
    """Members as the decoding client answers them (this tells the type checker)."""
    return [str(m) for m in members]


def offset_of(page: int, limit: int) -> int:
    return (page - 1) * limit


def prefix_bounds(prefix: str) -> tuple[bytes, bytes]:
    """The inclusive lex range of every member starting with `prefix`: no UTF-8 text holds the byte 0xff."""
    raw = prefix.encode()
    return b"[" + raw, b"[" + raw + b"\xff"


async def index_page(r: AsyncRedis, key: str, prefix: str | None, offset: int,
                     limit: int) -> tuple[int, list[str]]:
    """(total, members) of a page of a score-0 sorted set, optionally only members starting with `prefix`."""
    if not prefix:
        total, members = await cluster_round(r, [(key, ("ZCARD", key)),
                                                 (key, ("ZRANGE", key, offset, offset + limit - 1))])
        return int(total), _texts(members)
    low, high = prefix_bounds(prefix)
    first, total = await cluster_round(r, [(key, ("ZLEXCOUNT", key, "-", b"(" + low[1:])),
                                           (key, ("ZLEXCOUNT", key, low, high))])
    if offset >= total:
        return int(total), []
    last = min(offset + limit, total) - 1
    members = _texts((await cluster_round(r, [(key, ("ZRANGE", key, first + offset, first + last))]))[0])
    return int(total), [m for m in members if m.startswith(prefix)]  # the set may have moved in between


@functools.cache
def _hmget(fields: tuple[str, ...]) -> KeyTemplate:
    """`HMGET <key> <fields>` with the fields encoded once (the views' two field lists)."""
    return KeyTemplate(("HMGET",), fields)


async def hashes(r: AsyncRedis, keys: Sequence[str], fields: Sequence[str],
                 extra: Sequence[Command] = ()) -> list[Values]:
    """HMGET of the same fields from many hashes in one round trip (None for a missing field); on a cluster
    grouped by node. `extra` commands ride along (e.g. a new page anchor); their replies are not kept."""
    if not keys and not extra:
        return []
    template = _hmget(tuple(fields))
    got = await cluster_round(r, [(k, template.pack(k)) for k in keys] + list(extra))
    return [list(row) for row in got[:len(keys)]]


def _device_index(keys: Keys, online: bool | None) -> str:
    if online is None:
        return keys.devices()
    return keys.devices_online() if online else keys.devices_offline()


def _peripheral_index(keys: Keys, online: bool | None) -> str:
    if online is None:
        return keys.peripherals()
    return keys.peripherals_online() if online else keys.peripherals_offline()


async def device_page(r: Client, keys: Keys, *, page: int = 1, limit: int = 100,
                      online: bool | None = None, sn: str | None = None) -> Page:
    """Devices in sn order; `online` picks the online/offline index, `sn` is a prefix."""
    if keys.cluster or isinstance(r, RedisCluster):
        return await cluster_device_page(r, keys, page=page, limit=limit, online=online, sn=sn)
    total, sns = await index_page(r, _device_index(keys, online), sn, offset_of(page, limit), limit)
    rows = await hashes(r, [keys.client(s) for s in sns], DEVICE_FIELDS)
    items = [device_item(s, row) for s, row in zip(sns, rows, strict=True) if is_recorded(row)]
    return Page(total, page, limit, items)


async def device(r: Client, keys: Keys, sn: str) -> Item | None:
    """One device with its presence version and peripheral count; None when it is not a known device."""
    if keys.cluster or isinstance(r, RedisCluster):
        return await cluster_device(r, keys, sn)
    low, high = prefix_bounds(f"{sn}/")
    async with r.pipeline(transaction=False) as pipe:
        pipe.zscore(keys.devices(), sn)
        pipe.hmget(keys.client(sn), [*DEVICE_FIELDS, "version"])
        pipe.zlexcount(keys.peripherals(), low, high)
        score, row, peripherals = await pipe.execute()
    if score is None:
        return None
    return device_detail(sn, row[:-1], row[-1], int(peripherals))


async def _zcards(r: AsyncRedis, online: str, offline: str, total: str) -> dict[str, int]:
    async with r.pipeline(transaction=False) as pipe:
        for key in (online, offline, total):
            pipe.zcard(key)
        on, off, every = await pipe.execute()
    return {"offline": int(off), "online": int(on), "total": int(every)}


async def device_counts(r: Client, keys: Keys) -> dict[str, int]:
    if keys.cluster or isinstance(r, RedisCluster):
        return await _cluster_counts(r, *(_device_shards(keys, flag) for flag in (True, False, None)))
    return await _zcards(r, keys.devices_online(), keys.devices_offline(), keys.devices())


async def peripheral_counts(r: Client, keys: Keys) -> dict[str, int]:
    if keys.cluster or isinstance(r, RedisCluster):
        return await _cluster_counts(r, *(_peripheral_shards(keys, flag) for flag in (True, False, None)))
    return await _zcards(r, keys.peripherals_online(), keys.peripherals_offline(), keys.peripherals())


async def _gateway_page(r: Client, keys: Keys, gw_id: str, online: bool | None, prefix: str | None,
                                offset: int, limit: int) -> tuple[int, list[str]]:
    """A gateway's peripherals (online or offline ones): its set in every shard (with the presence shard of
    the same slot intersected there), merged; one shard on one Redis. A filter by sn reads that device's shard
    only."""
    shards = [keys.shard(prefix[:-1])] if prefix else list(keys.shards())
    if online is None:
        commands: list[Command] = [(k, ("ZRANGE", k, 0, -1)) for k in
                                   (keys.peripherals_of_gw(gw_id, p) for p in shards)]
    else:
        presence = keys.peripherals_online if online else keys.peripherals_offline
        commands = [(keys.peripherals_of_gw(gw_id, p), ("ZINTER", 2, keys.peripherals_of_gw(gw_id, p), presence(p)))
                    for p in shards]
    members = sorted(str(m) for part in await cluster_round(r, commands) for m in part)
    if prefix:
        members = [m for m in members if m.startswith(prefix)]
    return len(members), members[offset:offset + limit]


async def peripheral_page(r: Client, keys: Keys, *, page: int = 1, limit: int = 100,
                          sn: str | None = None, gw_id: str | None = None,
                          online: bool | None = None) -> Page:
    """Peripherals in `{sn}/{nId}` order; `sn` is the exact device sn, `gwId` the exact gateway id."""
    if keys.cluster or isinstance(r, RedisCluster):
        return await cluster_peripheral_page(r, keys, page=page, limit=limit, sn=sn, gw_id=gw_id, online=online)
    prefix = f"{sn}/" if sn else None
    offset = offset_of(page, limit)
    if gw_id and online is not None:  # the gateway's set intersected with the presence set: O(its peripherals)
        total, members = await _gateway_page(r, keys, gw_id, online, prefix, offset, limit)
    else:
        index = keys.peripherals_of_gw(gw_id) if gw_id else _peripheral_index(keys, online)
        total, members = await index_page(r, index, prefix, offset, limit)
    rows = await hashes(r, [keys.peripheral(*split_member(m)) for m in members], PERIPHERAL_FIELDS)
    items = [peripheral_item(m, row) for m, row in zip(members, rows, strict=True) if is_recorded(row)]
    return Page(total, page, limit, items)


# --- Redis Cluster: sharded indexes ----------------------------------------------------------------------------

def _device_shards(keys: Keys, online: bool | None) -> list[str]:
    if online is None:
        return [keys.devices(p) for p in keys.shards()]
    return [keys.devices_online(p) if online else keys.devices_offline(p) for p in keys.shards()]


def _peripheral_shards(keys: Keys, online: bool | None) -> list[str]:
    if online is None:
        return [keys.peripherals(p) for p in keys.shards()]
    return [keys.peripherals_online(p) if online else keys.peripherals_offline(p) for p in keys.shards()]


def _anchor_name(online: bool | None, kind: str) -> str:
    return kind if online is None else f"{kind}:{'online' if online else 'offline'}"


async def _cluster_page(r: Client, index: ShardedIndex, prefix: str | None, offset: int,
                        limit: int, hash_key: Any, fields: Sequence[str]) -> tuple[int, list[str], list[Values]]:
    selection = await index.page(offset, limit, prefix)
    rows = await hashes(r, [hash_key(m) for m in selection.members], fields,
                        [index.command(c) for c in selection.writes])
    return selection.total, selection.members, rows


async def cluster_device_page(r: Client, keys: Keys, *, page: int = 1, limit: int = 100,
                              online: bool | None = None, sn: str | None = None) -> Page:
    index = ShardedIndex(r, _device_shards(keys, online), keys.page_anchors(_anchor_name(online, "devices")))
    total, sns, rows = await _cluster_page(r, index, sn, offset_of(page, limit), limit, keys.client,
                                           DEVICE_FIELDS)
    items = [device_item(s, row) for s, row in zip(sns, rows, strict=True) if is_recorded(row)]
    return Page(total, page, limit, items)


async def _cluster_counts(r: Client, online: list[str], offline: list[str], every: list[str]) -> dict[str, int]:
    got = await cluster_round(r, [(k, ("ZCARD", k)) for k in (*online, *offline, *every)])
    n = len(online)
    return {"offline": sum(got[n:2 * n]), "online": sum(got[:n]), "total": sum(got[2 * n:])}


async def cluster_peripheral_page(r: Client, keys: Keys, *, page: int = 1, limit: int = 100,
                                  sn: str | None = None, gw_id: str | None = None,
                                  online: bool | None = None) -> Page:
    prefix = f"{sn}/" if sn else None
    offset = offset_of(page, limit)
    if gw_id:
        total, members = await _gateway_page(r, keys, gw_id, online, prefix, offset, limit)
        rows = await hashes(r, [keys.peripheral(*split_member(m)) for m in members], PERIPHERAL_FIELDS)
    else:
        shards = _peripheral_shards(keys, online)
        if sn:  # one device's peripherals are all in its own shard
            index = ShardedIndex(r, [shards[keys.shard(sn)]])
        else:
            index = ShardedIndex(r, shards, keys.page_anchors(_anchor_name(online, "peris")))
        total, members, rows = await _cluster_page(r, index, prefix, offset, limit,
                                                   lambda m: keys.peripheral(*split_member(m)), PERIPHERAL_FIELDS)
    items = [peripheral_item(m, row) for m, row in zip(members, rows, strict=True) if is_recorded(row)]
    return Page(total, page, limit, items)


async def cluster_device(r: Client, keys: Keys, sn: str) -> Item | None:
    """One device: its index shard, its hash and its peripherals' shard, all in its slot: one round."""
    p = keys.shard(sn)
    _, low, high = paging.prefix_bounds(f"{sn}/")
    score, row, peripherals = await cluster_round(r, [
        (keys.devices(p), ("ZSCORE", keys.devices(p), sn)),
        (keys.client(sn), ("HMGET", keys.client(sn), *DEVICE_FIELDS, "version")),
        (keys.peripherals(p), ("ZLEXCOUNT", keys.peripherals(p), low, high))])
    if score is None:
        return None
    return device_detail(sn, row[:-1], row[-1], int(peripherals))
