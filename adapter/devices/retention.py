"""Retention (issue 14): forget clients gone for `device_retention_days`, in bounded batches per run.

What needs no job, because a TTL bounds it already (docs/devices.md "Retention"):
- dedupe keys (`Keys.seen`, message ids and command answers): `SEEN_TTL` (600 s);
- connect dedupe: no key of its own, it is the `connected_at`/`ended_through` of the client hash;
- command history: each command and its answer expire at `expireAt` (Redis TTL), and the command runner
  prunes their index entries every second (commands.lua `prune`); the daily id counters expire too.

What grows without it: the hash of every client id that ever connected, and the device and peripheral
index entries that go with it. Two walks, each resuming where the previous run stopped
(`Keys.retention_cursor`), `ROUNDS` batches of `retention_batch` per run:
- `devices`: the offline device index, in lex order;
- `clients`: a SCAN over `<prefix>:client:*`, for clients that never became devices (no index has them).
Each candidate goes through retention.lua, which re-checks the state atomically: a client is removed only
when offline and nothing about it (offline_time, connected_at, ended_through, activeTime) is newer than the
cutoff, with its peripherals and its index entries, so counts stay right.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import redis

from adapter.store import scripts
from adapter.store.keys import Keys
from adapter.store.scripts import LuaScript

RETENTION = LuaScript(scripts.source("devices/retention.lua"))
ROUNDS = 50
DAY_MS = 86_400_000


@dataclass
class Removed:
    devices: int = 0
    clients: int = 0
    examined: int = 0

    def metrics(self) -> dict[str, int]:
        return {'retention_removed_total{what="device"}': self.devices,
                'retention_removed_total{what="client"}': self.clients}


def cutoff_ms(days: int, now_ms: int | None = None) -> int:
    return (int(time.time() * 1000) if now_ms is None else now_ms) - days * DAY_MS


def _forget(r: redis.Redis, keys: Keys, ids: list[str], cutoff: int, out: Removed) -> None:
    if not ids:
        return
    fixed = [keys.devices(), keys.devices_online(), keys.devices_offline(), keys.peripherals(),
             keys.peripherals_online(), keys.peripherals_offline()]
    with r.pipeline(transaction=False) as pipe:
        pipe.scripts.add(RETENTION)  # type: ignore[arg-type]  # it needs only .sha and .script
        for cid in ids:
            pipe.evalsha(RETENTION.sha, 7, *fixed, keys.client(cid), cid, cutoff, keys.peripheral_prefix(),
                         keys.peripherals_of_gw_prefix())
        results = pipe.execute()
    out.examined += len(ids)
    out.devices += sum(1 for x in results if int(x) == 1)
    out.clients += sum(1 for x in results if int(x) == 2)


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def walk_devices(r: redis.Redis, keys: Keys, cutoff: int, batch: int, out: Removed) -> None:
    """One batch of the offline device index from the saved member on; back to the start at its end."""
    mark = keys.retention_cursor("devices")
    after = _text(r.get(mark))
    low = b"(" + after.encode() if after else b"-"
    sns = [_text(s) for s in r.zrangebylex(keys.devices_offline(), low, b"+", start=0, num=batch)]
    _forget(r, keys, sns, cutoff, out)
    if len(sns) < batch:
        r.delete(mark)
    else:
        r.set(mark, sns[-1])


def walk_clients(r: redis.Redis, keys: Keys, cutoff: int, batch: int, out: Removed) -> bool:
    """One SCAN step over the client hashes; True when the pass came back to the start."""
    mark = keys.retention_cursor("clients")
    cursor = int(_text(r.get(mark)) or 0)
    prefix = keys.client("")
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
    cursor, found = r.scan(cursor, match=pattern, count=batch, _type="hash")
    _forget(r, keys, [_text(k)[len(prefix):] for k in found], cutoff, out)
    r.set(mark, cursor)
    return int(cursor) == 0


def run(r: redis.Redis, keys: Keys, days: int, batch: int, rounds: int = ROUNDS) -> Removed:
    out = Removed()
    cutoff = cutoff_ms(days)
    for _ in range(rounds):
        walk_devices(r, keys, cutoff, batch, out)
        if not r.exists(keys.retention_cursor("devices")):
            break
    for _ in range(rounds):
        if walk_clients(r, keys, cutoff, batch, out):
            break
    return out
