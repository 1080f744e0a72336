"""Retention (issue 14): forget clients gone for `device_retention_days`, in bounded batches per run.

What needs no job, because a TTL bounds it already (docs/devices.md "Retention"):
- dedupe keys (`Keys.seen`, message ids and command answers): `SEEN_TTL` (600 s);
- connect dedupe: no key of its own, it is the `connected_at`/`ended_through` of the client hash;
- command history: each command and its answer expire at `expireAt` (Redis TTL), and the command runner
  prunes their index entries every second (lifecycle.lua `prune`); the daily id counters expire too.

What grows without it: the hash of every client id that ever connected, and the device and peripheral
index entries that go with it. Two walks, each resuming where the previous run stopped
(`Keys.retention_cursor`), `ROUNDS` batches of `retention_batch` per run:
- `devices`: the offline device index, in lex order (on a cluster each index shard, walk `devices:<p>`);
- `clients`: a SCAN over `<prefix>:client:*`, for clients that never became devices (no index has them); on a
  cluster one SCAN per primary (walk `clients:<host:port>`) over `<prefix>:{*}:client:*`.
Each candidate goes through retention.lua, which re-checks the state atomically: a client is removed only
when offline and nothing about it (offline_time, connected_at, ended_through, activeTime) is newer than the
cutoff, with its peripherals and its index entries, so counts stay right.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from adapter.store import scripts
from adapter.store.keys import Keys
from adapter.store.outage import never
from adapter.store.scripts import Script, ScriptCall
from adapter.store.types import as_text

RETENTION = Script.load("devices/retention.lua")
ROUNDS = 50
DAY_MS = 86_400_000


@dataclass
class Removed:
    devices: int = 0
    clients: int = 0
    examined: int = 0
    stopped: bool = False  # the worker is stopping: the run ended between two batches (the next resumes)

    def metrics(self) -> dict[str, int]:
        return {'retention_removed_total{what="device"}': self.devices,
                'retention_removed_total{what="client"}': self.clients}


def cutoff_ms(days: int, now_ms: int | None = None) -> int:
    return (int(time.time() * 1000) if now_ms is None else now_ms) - days * DAY_MS


def retention_call(keys: Keys, cid: str, cutoff: int) -> ScriptCall:
    """RETENTION (retention.lua) for client `cid`."""
    p = keys.shard(cid)
    return RETENTION.call(devices=keys.devices(p), devices_online=keys.devices_online(p),
                          devices_offline=keys.devices_offline(p), peris=keys.peripherals(p),
                          peris_online=keys.peripherals_online(p), peris_offline=keys.peripherals_offline(p),
                          client=keys.client(cid), presence_log=keys.presence_log(cid), sn=cid, cutoff=cutoff,
                          peripheral_prefix=keys.peripheral_prefix(cid), gw_prefix=keys.peripherals_of_gw_prefix(p))


def _forget(r: redis.Redis, keys: Keys, ids: list[str], cutoff: int, out: Removed) -> None:
    if not ids:
        return
    with r.pipeline(transaction=False) as pipe:
        scripts.pipeline_scripts_sync(r, pipe, RETENTION)
        for cid in ids:
            scripts.queue_call(pipe, retention_call(keys, cid, cutoff))
        results = pipe.execute()
    out.examined += len(ids)
    out.devices += sum(1 for x in results if int(x) == 1)
    out.clients += sum(1 for x in results if int(x) == 2)


def _walk_name(keys: Keys, walk: str, part: object) -> str:
    """One Redis keeps the walk's plain name; a cluster walks each shard (or primary) with its own cursor."""
    return keys.retention_cursor(walk if not keys.cluster else f"{walk}:{part}")


def walk_devices(r: redis.Redis, keys: Keys, cutoff: int, batch: int, out: Removed, p: int = 0) -> bool:
    """One batch of shard `p`'s offline device index from the saved member on; back to the start at its end
    (True then)."""
    mark = _walk_name(keys, "devices", p)
    after = as_text(r.get(mark))
    low = b"(" + after.encode() if after else b"-"
    sns = [as_text(s) for s in r.zrangebylex(keys.devices_offline(p), low, b"+", start=0, num=batch)]
    _forget(r, keys, sns, cutoff, out)
    if len(sns) < batch:
        r.delete(mark)
        return True
    r.set(mark, sns[-1])
    return False


def _client_pattern(keys: Keys) -> tuple[str, re.Pattern[str]]:
    """The SCAN pattern of every client hash, and how to read the client id out of a key."""
    escaped = re.sub(r"([*?\[\]\\])", r"\\\1", keys.prefix)
    if not keys.cluster:
        return escaped + ":client:*", re.compile(re.escape(keys.prefix) + ":client:(.*)", re.S)
    return escaped + ":{*}:client:*", re.compile(re.escape(keys.prefix) + r":\{[^}]*\}:client:(.*)", re.S)


def _walk_clients_on(r: redis.Redis, keys: Keys, mark: str, cutoff: int, batch: int, out: Removed,
                     node: Any = None) -> bool:
    cursor = int(as_text(r.get(mark)) or 0)
    pattern, client_id = _client_pattern(keys)
    extra = {} if node is None else {"target_nodes": node}
    cursor_reply, found = r.scan(cursor, match=pattern, count=batch, _type="hash", **extra)
    # a cluster names the node: {"host:port": cursor}
    cursor = next(iter(cursor_reply.values())) if isinstance(cursor_reply, dict) else cursor_reply
    ids = [m.group(1) for m in (client_id.fullmatch(as_text(k)) for k in found) if m]
    _forget(r, keys, ids, cutoff, out)
    r.set(mark, cursor)
    return int(cursor) == 0


def walk_clients(r: redis.Redis, keys: Keys, cutoff: int, batch: int, out: Removed) -> bool:
    """One SCAN step over the client hashes (on a cluster, one on each primary); True when every pass came
    back to the start."""
    if not keys.cluster:
        return _walk_clients_on(r, keys, keys.retention_cursor("clients"), cutoff, batch, out)
    done = True
    for node in r.get_primaries():  # type: ignore[attr-defined]  # a RedisCluster on a cluster layout
        done = _walk_clients_on(r, keys, _walk_name(keys, "clients", node.name), cutoff, batch, out, node) and done
    return done


def run(r: redis.Redis, keys: Keys, days: int, batch: int, rounds: int = ROUNDS,
        stopping: Callable[[], bool] = never) -> Removed:
    """Up to `rounds` batches of each walk; ends early, between two batches, once `stopping()` says so."""
    out = Removed()
    cutoff = cutoff_ms(days)
    for p in keys.shards():
        for _ in range(rounds):
            if stopping():
                out.stopped = True
                return out
            if walk_devices(r, keys, cutoff, batch, out, p):
                break
    for _ in range(rounds):
        if stopping():
            out.stopped = True
            return out
        if walk_clients(r, keys, cutoff, batch, out):
            break
    return out
