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

from adapter.store.keys import Keys

TYPES = ("device", "peripheral")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def sync(client: Any, keys: Keys, cb_type: str, ids: Iterable[int | str]) -> None:
    """Every replica of `cb_type`'s set holds each of `ids` exactly when the authoritative set does."""
    if not keys.cluster:
        return
    members = [str(i) for i in ids]
    enabled = await client.smismember(keys.callbacks_enabled_of(cb_type), members)
    async with client.pipeline(transaction=False) as pipe:
        for p in keys.shards():
            replica = keys.callbacks_enabled_in(cb_type, p)
            add = [m for m, on in zip(members, enabled, strict=True) if on]
            remove = [m for m, on in zip(members, enabled, strict=True) if not on]
            if add:
                pipe.sadd(replica, *add)
            if remove:
                pipe.srem(replica, *remove)
        await pipe.execute()


async def repair(client: Any, keys: Keys) -> int:
    """Re-syncs every replica from the authoritative sets: how many members it added or removed."""
    if not keys.cluster:
        return 0
    fixed = 0
    for cb_type in TYPES:
        truth = {_text(m) for m in await client.smembers(keys.callbacks_enabled_of(cb_type))}
        async with client.pipeline(transaction=False) as pipe:
            for p in keys.shards():
                pipe.smembers(keys.callbacks_enabled_in(cb_type, p))
            copies = await pipe.execute()
        async with client.pipeline(transaction=False) as pipe:
            for p, copy in zip(keys.shards(), copies, strict=True):
                have = {_text(m) for m in copy}
                replica = keys.callbacks_enabled_in(cb_type, p)
                if truth - have:
                    pipe.sadd(replica, *(truth - have))
                if have - truth:
                    pipe.srem(replica, *(have - truth))
                fixed += len(truth ^ have)
            await pipe.execute()
    return fixed
