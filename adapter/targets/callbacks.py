"""Status-change callbacks (seed "device status change callbacks", docs/design.md §6): the targets that device and
peripheral transitions are delivered to, their secrets, their recent attempts and their dead letters.

Redis (store/keys/):
- `target("callback", id)`: hash type, url, enabled ("1"/"0"), secret, createTime, updateTime (seconds),
  succCount, failedCount (the delivery engine counts these two).
- `targets("callback")`: sorted set of the ids, scored by id; `target_seq("callback")` hands the ids out.
- `callbacks_enabled_of(type)`: set holding EXACTLY the enabled ids of that type; the ingest fans out to it (on
  Redis Cluster to its per-shard replicas `callbacks_enabled_in(type, p)`, written after the MULTI by
  replicas.py).
- `attempts("callback:<id>")`, `dead("callback:<id>")`: written by the engine, read (and replayed) here
  through targets.py, which callbacks share with message routes.

Every change writes the hash, the index and the enabled set in one MULTI. A change to an existing callback
reads it under WATCH of the index, not of its hash: the engine bumps the hash's counters all the time (a watch
on it would keep retrying under load), while the index changes only when a callback is created or deleted and
the type, which picks the enabled set, never changes. So a concurrent delete aborts the change (which then
answers 404), and two concurrent changes each write the `enabled` field and the set together. A secret
rotation writes only the secret and `updateTime` (targets.py), so it leaves the set as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from redis.typing import EncodableT, FieldT

from adapter.delivery import replicas
from adapter.store.types import AsyncPipeline, as_int
from adapter.targets.records import OUTCOMES, Item, Target, shared_values, stamp
from adapter.targets.repository import TargetStore

__all__ = ["OUTCOMES", "TYPES", "Callback", "CallbackStore", "from_hash", "hash_fields"]

TYPES = ("device", "peripheral")


@dataclass(frozen=True)
class Callback(Target):
    type: str
    url: str

    def item(self) -> Item:
        return {"id": self.id, "type": self.type, "url": self.url, "enabled": self.enabled, **self.times()}


def from_hash(cb_id: int, record: Mapping[str, str]) -> Callback | None:
    """The callback a hash holds, or None when it holds none (absent, or only stray counters)."""
    if record.get("type") not in TYPES or "url" not in record:
        return None
    return Callback(cb_id, record["type"], record["url"], **shared_values(record))


def hash_fields(cb: Callback) -> dict[FieldT, EncodableT]:
    """What a change writes to the hash (a new one also gets the secret and the counters: targets.py)."""
    return {"type": cb.type, "url": cb.url, **cb.shared_fields()}


class CallbackStore(TargetStore):
    """CRUD on the callbacks and their enabled sets; secret rotation, deliveries, dead letters and replay as
    every target has them (TargetStore)."""

    KIND = NOUN = "callback"

    def _enable(self, pipe: AsyncPipeline, cb: Callback) -> None:
        """Queue the callback's membership of its type's enabled set, as its `enabled` says."""
        enabled_set, member = self.keys.callbacks_enabled_of(cb.type), str(cb.id)
        if cb.enabled:
            pipe.sadd(enabled_set, member)
        else:
            pipe.srem(enabled_set, member)

    async def create(self, cb_type: str, url: str, enabled: bool = True, now: int | None = None
                     ) -> tuple[Callback, str]:
        """A new callback and its secret (the only time, with `rotate_secret`, that the secret is shown)."""
        cb_id = await self.targets.next_id()
        at = stamp(now)
        cb = Callback(cb_id, cb_type, url, enabled=enabled, create_time=at, update_time=at)

        def join(pipe: AsyncPipeline) -> None:
            if enabled:
                pipe.sadd(self.keys.callbacks_enabled_of(cb_type), str(cb_id))

        secret = await self.targets.add(cb_id, hash_fields(cb), join)
        await replicas.sync(self.redis, self.keys, cb_type, [cb_id])
        return cb, secret

    async def all(self) -> list[Callback]:
        return await self.targets.all(from_hash)

    async def get(self, cb_id: int) -> Callback:
        return await self.targets.get(cb_id, from_hash)

    async def update(self, cb_id: int, *, url: str | None = None, enabled: bool | None = None,
                     now: int | None = None) -> Callback:
        """Changes url and/or enabled; `updateTime` moves only when something changed."""
        def change(cb: Callback) -> Callback:
            new = replace(cb, url=cb.url if url is None else url,
                          enabled=cb.enabled if enabled is None else enabled)
            return new if new == cb else replace(new, update_time=stamp(now))

        return await self._change(cb_id, change)

    async def set_enabled(self, cb_id: int, enabled: bool, now: int | None = None) -> Callback:
        return await self.update(cb_id, enabled=enabled, now=now)

    async def _change(self, cb_id: int, change: Callable[[Callback], Callback]) -> Callback:
        """Writes the changed hash and the enabled set together, under WATCH of the index."""
        def write(pipe: AsyncPipeline, old: Callback) -> Callback:
            new = change(old)
            pipe.hset(self.targets.key(cb_id), mapping=hash_fields(new))
            self._enable(pipe, new)
            return new

        new = await self.targets.change(cb_id, from_hash, write)
        await replicas.sync(self.redis, self.keys, new.type, [cb_id])
        return new

    async def delete(self, cb_id: int) -> int:
        """Removes the callback, its id from both enabled sets, its attempts and its dead letters: 1, or 0."""
        def leave(pipe: AsyncPipeline) -> None:
            for cb_type in TYPES:
                pipe.srem(self.keys.callbacks_enabled_of(cb_type), str(cb_id))

        removed = await self.targets.delete(cb_id, leave)
        for cb_type in TYPES:
            await replicas.sync(self.redis, self.keys, cb_type, [cb_id])
        return removed

    async def stats(self, cb_type: str) -> dict[str, int]:
        """The type's deliveries (on the cluster summed over the partitions' stats hashes)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in self.keys.shards():
                pipe.hmget(self.keys.callback_stats_in(cb_type, p), ["succ", "failed"])
            found = await pipe.execute()
        return {"succ": sum(as_int(s) for s, _ in found), "failed": sum(as_int(f) for _, f in found)}
