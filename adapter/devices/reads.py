"""The read side of devices and peripherals: pages, one device, counts (docs/design.md §11, seed "Device Monitoring").

Every index is a sorted set with all scores 0, so its order is lexical and an sn prefix is a lex range.
A page costs O(log n + limit) at any depth: the first rank of a prefix comes from ZLEXCOUNT (never a
ZRANGEBYLEX with an offset, which walks the skipped members before redis/redis#12450), then ZRANGE by
rank, then the page's hashes in ONE round trip. Totals come from ZCARD or ZLEXCOUNT, counts from ZCARD.

The hashes come from a tiny read-only script (HMGET of the same fields over the page's keys) rather than a
pipeline of 100 HMGETs: redis-py packs every pipelined command in Python, which made that step ~2.8 ms of a
page; one EVALSHA with the keys and fields once is ~1.3 ms (scripts/bench_devices.py, docs/devices.md).

The one exception: peripherals filtered by both `gwId` and `online` intersect the gateway's set with the
online (or offline) set, which costs O(peripherals of that gateway).

An index member whose hash has vanished between the two reads is left out of the page (`count` < `limit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
from adapter.store import scripts
from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis

Item = dict[str, Any]


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
        async with r.pipeline(transaction=False) as pipe:
            pipe.zcard(key)
            pipe.zrange(key, offset, offset + limit - 1)
            total, members = await pipe.execute()
        return int(total), _texts(members)
    low, high = prefix_bounds(prefix)
    async with r.pipeline(transaction=False) as pipe:
        pipe.zlexcount(key, "-", b"(" + low[1:])
        pipe.zlexcount(key, low, high)
        first, total = await pipe.execute()
    if offset >= total:
        return int(total), []
    last = min(offset + limit, total) - 1
    members = _texts(await r.zrange(key, first + offset, first + last))
    return int(total), [m for m in members if m.startswith(prefix)]  # the set may have moved in between


HMGET_MANY = """
local rows = {}
for i, key in ipairs(KEYS) do rows[i] = redis.call('HMGET', key, unpack(ARGV)) end
return rows
"""
HMGET_MANY_SCRIPT = scripts.LuaScript(HMGET_MANY)


async def hashes(r: AsyncRedis, keys: Sequence[str], fields: Sequence[str]) -> list[Values]:
    """HMGET of the same fields from many hashes, in one round trip (None for a missing field)."""
    if not keys:
        return []
    rows = await scripts.call(r, HMGET_MANY_SCRIPT, len(keys), *keys, *fields)
    return [list(row) for row in rows]


def _device_index(keys: Keys, online: bool | None) -> str:
    if online is None:
        return keys.devices()
    return keys.devices_online() if online else keys.devices_offline()


def _peripheral_index(keys: Keys, online: bool | None) -> str:
    if online is None:
        return keys.peripherals()
    return keys.peripherals_online() if online else keys.peripherals_offline()


async def device_page(r: AsyncRedis, keys: Keys, *, page: int = 1, limit: int = 100,
                      online: bool | None = None, sn: str | None = None) -> Page:
    """Devices in sn order; `online` picks the online/offline index, `sn` is a prefix."""
    total, sns = await index_page(r, _device_index(keys, online), sn, offset_of(page, limit), limit)
    rows = await hashes(r, [keys.client(s) for s in sns], DEVICE_FIELDS)
    items = [device_item(s, row) for s, row in zip(sns, rows, strict=True) if is_recorded(row)]
    return Page(total, page, limit, items)


async def device(r: AsyncRedis, keys: Keys, sn: str) -> Item | None:
    """One device with its presence version and peripheral count; None when it is not a known device."""
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


async def device_counts(r: AsyncRedis, keys: Keys) -> dict[str, int]:
    return await _zcards(r, keys.devices_online(), keys.devices_offline(), keys.devices())


async def peripheral_counts(r: AsyncRedis, keys: Keys) -> dict[str, int]:
    return await _zcards(r, keys.peripherals_online(), keys.peripherals_offline(), keys.peripherals())


async def _gateway_presence_page(r: AsyncRedis, keys: Keys, gw_id: str, online: bool, prefix: str | None,
                                 offset: int, limit: int) -> tuple[int, list[str]]:
    """The gateway's peripherals that are online (offline): O(peripherals of the gateway)."""
    members = _texts(await r.zinter([keys.peripherals_of_gw(gw_id), _peripheral_index(keys, online)]))
    if prefix:
        members = [m for m in members if m.startswith(prefix)]
    return len(members), members[offset:offset + limit]


async def peripheral_page(r: AsyncRedis, keys: Keys, *, page: int = 1, limit: int = 100,
                          sn: str | None = None, gw_id: str | None = None,
                          online: bool | None = None) -> Page:
    """Peripherals in `{sn}/{nId}` order; `sn` is the exact device sn, `gwId` the exact gateway id."""
    prefix = f"{sn}/" if sn else None
    offset = offset_of(page, limit)
    if gw_id and online is not None:
        total, members = await _gateway_presence_page(r, keys, gw_id, online, prefix, offset, limit)
    else:
        index = keys.peripherals_of_gw(gw_id) if gw_id else _peripheral_index(keys, online)
        total, members = await index_page(r, index, prefix, offset, limit)
    rows = await hashes(r, [keys.peripheral(*split_member(m)) for m in members], PERIPHERAL_FIELDS)
    items = [peripheral_item(m, row) for m, row in zip(members, rows, strict=True) if is_recorded(row)]
    return Page(total, page, limit, items)
