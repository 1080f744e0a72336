"""The per-shard replicas of the enabled-callback sets, on Redis Cluster (docs/cluster/plan.md §2.3).

The device scripts fan a transition out to the enabled callbacks of its type inside the device's one atomic
call, so they read a copy of the set in the device's slot: `Keys.callbacks_enabled_in(type, p)`. The
authoritative set is `callbacks_enabled_of(type)` in `{tgt}`, written in the callback's MULTI; `sync` then
writes the changed ids' membership to every replica (idempotent, one pipeline), and `repair` re-syncs every
replica from the authoritative sets (the pump runs it at start and every 30 s). Between a change's MULTI and its
last replica write (about a millisecond) shards disagree: as if the change happened that much later there.
On one Redis the replica is the authoritative set itself, and both do nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from adapter.store.cluster_round import Command, cluster_round
from adapter.store.keys import Keys
from adapter.store.types import as_text

TYPES = ("device", "peripheral")


async def sync(client: Any, keys: Keys, cb_type: str, ids: Iterable[int | str]) -> None:
    """Every replica of `cb_type`'s set holds each of `ids` exactly when the authoritative set does."""
    if not keys.cluster:
        return
    members = [str(i) for i in ids]
    enabled = await client.smismember(keys.callbacks_enabled_of(cb_type), members)
    add = [m for m, on in zip(members, enabled, strict=True) if on]
    remove = [m for m, on in zip(members, enabled, strict=True) if not on]
    await cluster_round(client, [change for p in keys.shards()
                                 for change in _changes(keys.callbacks_enabled_in(cb_type, p), add, remove)])


async def repair(client: Any, keys: Keys) -> int:
    """Re-syncs every replica from the authoritative sets: how many members it added or removed. Two round trips
    per type through cluster_round (not redis-py's cluster pipeline, whose retry after a node's failure closes
    every connection of the client)."""
    if not keys.cluster:
        return 0
    fixed = 0
    for cb_type in TYPES:
        truth = {as_text(m) for m in await client.smembers(keys.callbacks_enabled_of(cb_type))}
        replicas = [keys.callbacks_enabled_in(cb_type, p) for p in keys.shards()]
        copies = await cluster_round(client, [(replica, ("SMEMBERS", replica)) for replica in replicas])
        changes = []
        for replica, copy in zip(replicas, copies, strict=True):
            have = {as_text(m) for m in copy}
            changes += _changes(replica, sorted(truth - have), sorted(have - truth))
            fixed += len(truth ^ have)
        await cluster_round(client, changes)
    return fixed


def _changes(replica: str, add: list[str], remove: list[str]) -> list[Command]:
    out: list[Command] = []
    if add:
        out.append((replica, ("SADD", replica, *add)))
    if remove:
        out.append((replica, ("SREM", replica, *remove)))
    return out
