"""A device's presence log: its last `LOG_MAX` transitions, newest first, written by the same script call as the
transition itself (device.lua, uplink.lua: `log_presence` in delivery/fanout.lua), forgotten with the device
(retention.lua). What the device's chart draws (`GET /stats/series?metric=device.online&sn=`, docs/api.md).

An entry is "<time ms> <1 online|0 offline> <reason>". A device whose transitions predate the log (a store
written before it) has an empty log: its last transition is read from its client hash instead.
"""

from __future__ import annotations

from typing import NamedTuple

from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis, as_int, as_text

LOG_MAX = 48  # PRESENCE_LOG_MAX of delivery/fanout.lua (tests/unit/test_presence_log.py): a day of hourly flaps


class Transition(NamedTuple):
    at_ms: int
    online: bool


def parse(entries: list[str]) -> list[Transition]:
    """The log's transitions, oldest first (malformed entries are left out)."""
    out = []
    for entry in reversed(entries):
        at, _, rest = entry.partition(" ")
        if at.isdigit() and rest[:1] in ("0", "1"):
            out.append(Transition(int(at), rest[:1] == "1"))
    return out


def from_hash(record: dict[str, str]) -> list[Transition]:
    """The last transitions a client hash tells (its last connect and its last disconnect), oldest first."""
    online_at, offline_at = as_int(record.get("online_time")), as_int(record.get("offline_time"))
    known = [t for t in (Transition(online_at, True), Transition(offline_at, False)) if t.at_ms > 0]
    known.sort()
    if known and known[-1].online != (record.get("online") == "1"):
        return []  # the hash disagrees with itself (a transition without its time): nothing to draw from
    return known


async def transitions(client: AsyncRedis, keys: Keys, sn: str) -> list[Transition] | None:
    """A device's known transitions, oldest first; None when `sn` is not a device."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.client(sn), "device", "online", "online_time", "offline_time")
        pipe.lrange(keys.presence_log(sn), 0, LOG_MAX - 1)
        fields, entries = await pipe.execute()
    device, online, online_time, offline_time = (as_text(v) for v in fields)
    if device != "1":
        return None
    logged = parse([as_text(e) for e in entries])
    return logged or from_hash({"online": online, "online_time": online_time, "offline_time": offline_time})
