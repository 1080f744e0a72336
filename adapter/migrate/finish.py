"""What a migration rebuilds rather than copies, before and after the walk: the commands' new ids, the day counters,
each target's counts, recent attempts and dead letters, the summed counters, the enabled callbacks' replicas, and
last the meta hash. Each step writes what it computes from the source (HSET, SET, DEL + RPUSH): run twice, the same."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson

from adapter.commands import ids as command_ids
from adapter.commands.records import SEQ_TTL
from adapter.delivery.model import ATTEMPTS_KEPT
from adapter.migrate.mapping import assign_ids, day_counters
from adapter.migrate.stores import Store
from adapter.store.connections import LAYOUT_CLUSTER
from adapter.store.types import as_text
from adapter.targets.callbacks import TYPES

KINDS = ("callback", "route")



def number(v: Any) -> float:
    """A counter field as a number (0 when missing or not one)."""
    try:
        return float(as_text(v)) if v is not None else 0.0
    except ValueError:
        return 0.0


def _shown(total: float) -> str:
    return str(int(total)) if total == int(total) else repr(total)


def source_commands(source: Store) -> list[tuple[int, str]]:
    """(id, sn) of every live command of the source (the union of its `commands(p)` indexes)."""
    found: list[int] = []
    for p in source.keys.shards():
        found += [int(as_text(m)) for m in source.client.zrange(source.keys.commands(p), 0, -1)]
    pairs = []
    for i in range(0, len(found), 5000):
        chunk = found[i:i + 5000]
        with source.client.pipeline(transaction=False) as pipe:
            for cid in chunk:
                pipe.hget(source.keys.command(str(cid), command_ids.partition_of(cid, source.keys.cluster_partitions)),
                          "sn")
            sns = pipe.execute()
        pairs += [(cid, as_text(sn)) for cid, sn in zip(chunk, sns, strict=True) if sn is not None]
    return pairs


def command_ids_map(source: Store, target: Store, written: bool) -> dict[int, int]:
    """The new ids (empty: a one-Redis target keeps them), kept in the target (`migration_ids`) so that a resumed
    migration uses the same ones; `written`: the map was written whole (the phase after `ids`). Before that it is
    made again (the same: `assign_ids` depends on the source only)."""
    if not target.keys.cluster:
        return {}
    kept = target.client.hgetall(target.keys.migration_ids()) if written else {}
    if kept:
        return {int(as_text(k)): int(as_text(v)) for k, v in kept.items()}
    ids = assign_ids(source_commands(source), target.keys)
    items = [(str(k), str(v)) for k, v in ids.items()]
    for i in range(0, len(items), 5000):
        target.client.hset(target.keys.migration_ids(), mapping=dict(items[i:i + 5000]))
    return ids


def write_counters(source: Store, target: Store, ids: dict[int, int]) -> None:
    """The target's day counters, from the ids it holds now (a one-Redis target: the source's own ids)."""
    held = list(ids.values()) if ids else [cid for cid, _ in source_commands(source)]
    with target.client.pipeline(transaction=False) as pipe:
        for key, last in day_counters(held, target.keys).items():
            pipe.set(key, last, ex=SEQ_TTL)
        pipe.execute()


def target_names(source: Store) -> list[str]:
    out = []
    for kind in KINDS:
        out += [f"{kind}:{as_text(i)}" for i in source.client.zrange(source.keys.targets(kind), 0, -1)]
    return out


def rebuild_target(source: Store, target: Store, name: str) -> None:
    """One target's delivery counts, recent attempts and dead letters in the target's layout."""
    s, t = source.keys, target.keys
    kind, _, tid = name.partition(":")
    with source.client.pipeline(transaction=False) as pipe:
        pipe.hmget(s.target(kind, tid), ["succCount", "failedCount"])
        for p in s.shards():
            if s.cluster:  # the engine's counts; on one Redis they are the target's own hash
                pipe.hmget(s.delivery_state(name, p), ["succCount", "failedCount"])
            else:
                pipe.exists(s.delivery_state(name, p))
            pipe.lrange(s.attempts(name, p), 0, -1)
            pipe.hgetall(s.dead(name, p))
            pipe.zrange(s.dead_index(name, p), 0, -1, withscores=True)
        replies = pipe.execute()
    own, rest = replies[0], replies[1:]
    succ = failed = 0.0
    attempts: list[bytes] = []
    letters: dict[str, Any] = {}
    died: dict[str, float] = {}
    for n in range(len(s.shards())):
        counts, listed, dead, index = rest[n * 4:(n + 1) * 4]
        if isinstance(counts, list):
            succ, failed = succ + number(counts[0]), failed + number(counts[1])
        attempts += listed
        letters |= {as_text(k): v for k, v in dead.items()}
        died |= {as_text(m): float(sc) for m, sc in index}
    attempts.sort(key=lambda raw: -int(_json(raw).get("time") or 0))
    with target.client.pipeline(transaction=False) as pipe:
        if target.keys.cluster:
            if succ or failed:
                pipe.hset(t.delivery_state(name, 0), mapping={"succCount": _shown(succ), "failedCount": _shown(failed)})
        elif s.cluster:
            pipe.hset(t.target(kind, tid), mapping={"succCount": _shown(number(own[0]) + succ),
                                                    "failedCount": _shown(number(own[1]) + failed)})
        pipe.delete(t.attempts(name, 0))
        if attempts:
            pipe.rpush(t.attempts(name, 0), *attempts[:ATTEMPTS_KEPT])
        dead_of: dict[int, dict[str, Any]] = defaultdict(dict)
        for did, raw in letters.items():
            dead_of[t.shard(str(_json(raw).get("key") or ""))][did] = raw
        for q, chunk in dead_of.items():
            pipe.hset(t.dead(name, q), mapping=chunk)
            scored = {did: died[did] for did in chunk if did in died}
            if scored:
                pipe.zadd(t.dead_index(name, q), scored)
        pipe.execute()


def _json(raw: Any) -> dict[str, Any]:
    try:
        found = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}


def sum_counters(source: Store, target: Store) -> None:
    """The shared counters (`metrics` and every shard's `metrics_in`, the callbacks' stats and their per-shard
    copies), summed into the target's (its `metrics()`, its shard 0's callback stats: what its readers sum)."""
    s, t = source.keys, target.keys
    groups = {t.metrics(): {s.metrics(), *(s.metrics_in(p) for p in s.shards())}}
    for cb_type in TYPES:
        groups[t.callback_stats_in(cb_type, 0)] = {s.callback_stats(cb_type),
                                                   *(s.callback_stats_in(cb_type, p) for p in s.shards())}
    for dst, keys in groups.items():
        totals: dict[str, float] = defaultdict(float)
        for key in keys:
            for f, v in source.client.hgetall(key).items():
                totals[as_text(f)] += number(v)
        if totals:
            target.client.hset(dst, mapping={f: _shown(v) for f, v in totals.items()})


def write_replicas(target: Store) -> None:
    """On a cluster target: every shard's copy of the enabled callbacks (what targets/callbacks.py keeps)."""
    t = target.keys
    if not t.cluster:
        return
    for cb_type in TYPES:
        members = list(target.client.smembers(t.callbacks_enabled_of(cb_type)))
        with target.client.pipeline(transaction=False) as pipe:
            for q in t.shards():
                pipe.delete(t.callbacks_enabled_in(cb_type, q))
                if members:
                    pipe.sadd(t.callbacks_enabled_in(cb_type, q), *members)
            pipe.execute()


def write_meta(target: Store) -> None:
    """The target's layout, written last (a one-Redis store has none: layout 1)."""
    if target.keys.cluster:
        target.client.hset(target.keys.meta(), mapping={"layout": LAYOUT_CLUSTER,
                                                        "partitions": str(target.keys.cluster_partitions)})
