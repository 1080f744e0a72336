"""Status-change callbacks (seed "device status change callbacks", DESIGN §6): the targets that device and
peripheral transitions are delivered to, their secrets, their recent attempts and their dead letters.

Redis (keys.py):
- `target("callback", id)`: hash type, url, enabled ("1"/"0"), secret, createTime, updateTime (seconds),
  succCount, failedCount (the delivery engine counts these two).
- `targets("callback")`: sorted set of the ids, scored by id; `target_seq("callback")` hands the ids out.
- `callbacks_enabled_of(type)`: set holding EXACTLY the enabled ids of that type; the ingest fans out to it.
- `attempts("callback:<id>")`, `dead("callback:<id>")`: written by the engine, read (and replayed) here.

Every change writes the hash, the index and the enabled set in one MULTI. A change to an existing callback
reads it under WATCH of the index, not of its hash: the engine bumps the hash's counters all the time (a watch
on it would keep retrying under load), while the index changes only when a callback is created or deleted and
the type, which picks the enabled set, never changes. So a concurrent delete aborts the change (which then
answers 404), and two concurrent changes each write the `enabled` field and the set together.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.client import Pipeline
from redis.typing import EncodableT, FieldT

from adapter.delivery import partition_of
from adapter.errors import AppError, not_found
from adapter.keys import Keys
from adapter.services import texts
from adapter.signing import new_secret

TYPES = ("device", "peripheral")
OUTCOMES = ("success", "retry", "failed", "dead")
KIND = "callback"
TRIES = 20

T = TypeVar("T")
Item = dict[str, Any]


@dataclass(frozen=True)
class Callback:
    id: int
    type: str
    url: str
    enabled: bool
    create_time: int
    update_time: int
    succ_count: int = 0
    failed_count: int = 0

    def item(self) -> Item:
        """The seed's answer to a change."""
        return {"id": self.id, "type": self.type, "url": self.url, "enabled": self.enabled,
                "createTime": self.create_time, "updateTime": self.update_time}

    def listed(self) -> Item:
        """The seed's list item: the change answer plus the counters."""
        return {**self.item(), "succCount": self.succ_count, "failedCount": self.failed_count}


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def from_hash(cb_id: int, record: Mapping[str, str]) -> Callback | None:
    """The callback a hash holds, or None when it holds none (absent, or only stray counters)."""
    if record.get("type") not in TYPES or "url" not in record:
        return None
    return Callback(id=cb_id, type=record["type"], url=record["url"], enabled=record.get("enabled") == "1",
                    create_time=_int(record.get("createTime")), update_time=_int(record.get("updateTime")),
                    succ_count=_int(record.get("succCount")), failed_count=_int(record.get("failedCount")))


def hash_fields(cb: Callback, **extra: str) -> dict[FieldT, EncodableT]:
    """What a change writes to the hash, plus `extra` (counters only at creation: the engine owns them)."""
    fields: dict[FieldT, EncodableT] = {"type": cb.type, "url": cb.url, "enabled": "1" if cb.enabled else "0",
                                        "createTime": str(cb.create_time), "updateTime": str(cb.update_time)}
    for name, value in extra.items():
        fields[name] = value
    return fields


def target_name(cb_id: int) -> str:
    """How the delivery engine names this callback: `callback:<id>`."""
    return f"{KIND}:{cb_id}"


def json_objects(raws: Iterable[str]) -> list[Item]:
    """The JSON objects among `raws`; anything else is skipped."""
    out = []
    for raw in raws:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def dead_items(record: Mapping[str, str]) -> list[Item]:
    """The dead letters of a hash (delivery id -> JSON), oldest first; `deliveryId` filled from the field."""
    items = []
    for field, raw in record.items():
        for item in json_objects([raw]):
            items.append({**item, "deliveryId": str(item.get("deliveryId") or field), "_field": field})
    items.sort(key=lambda i: (_int(i.get("time")), i["deliveryId"]))
    return items


def replayable(item: Item) -> bool:
    return isinstance(item.get("body"), (str, dict, list))


def stream_fields(cb_id: int, item: Item) -> dict[FieldT, EncodableT]:
    """The delivery stream entry that sends a dead letter again, from its first attempt."""
    body = item["body"]
    return {"t": target_name(cb_id), "k": str(item.get("key", "")), "id": item["deliveryId"],
            "b": body if isinstance(body, str) else orjson.dumps(body).decode(), "n": "0"}


def _public(item: Item) -> Item:
    return {k: v for k, v in item.items() if k != "_field"}


def _now() -> int:
    return int(time.time())


class CallbackStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def _key(self, cb_id: int) -> str:
        return self.keys.target(KIND, cb_id)

    @property
    def _index(self) -> str:
        return self.keys.targets(KIND)

    async def create(self, cb_type: str, url: str, enabled: bool = True, now: int | None = None
                     ) -> tuple[Callback, str]:
        """A new callback and its secret (the only time, with `rotate_secret`, that the secret is shown)."""
        cb_id = int(await self.redis.incr(self.keys.target_seq(KIND)))
        at = _now() if now is None else now
        cb, secret = Callback(cb_id, cb_type, url, enabled, at, at), new_secret()
        async with self.redis.pipeline(transaction=True) as pipe:
            fields = hash_fields(cb, secret=secret, succCount="0", failedCount="0")
            pipe.hset(self._key(cb_id), mapping=fields)
            pipe.zadd(self._index, {str(cb_id): cb_id})
            if enabled:
                pipe.sadd(self.keys.callbacks_enabled_of(cb_type), str(cb_id))
            await pipe.execute()
        return cb, secret

    async def all(self) -> list[Callback]:
        ids = [int(str(m)) for m in await self.redis.zrange(self._index, 0, -1)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for cb_id in ids:
                pipe.hgetall(self._key(cb_id))
            records = await pipe.execute()
        found = (from_hash(cb_id, texts(r)) for cb_id, r in zip(ids, records, strict=True))
        return [cb for cb in found if cb is not None]

    async def get(self, cb_id: int) -> Callback:
        cb = from_hash(cb_id, texts(await self.redis.hgetall(self._key(cb_id))))
        if cb is None:
            raise not_found("no such callback")
        return cb

    async def update(self, cb_id: int, *, url: str | None = None, enabled: bool | None = None,
                     now: int | None = None) -> Callback:
        """Changes url and/or enabled; `updateTime` moves only when something changed."""
        def change(cb: Callback) -> Callback:
            new = replace(cb, url=cb.url if url is None else url,
                          enabled=cb.enabled if enabled is None else enabled)
            return new if new == cb else replace(new, update_time=_now() if now is None else now)

        return await self._change(cb_id, change)

    async def set_enabled(self, cb_id: int, enabled: bool, now: int | None = None) -> Callback:
        return await self.update(cb_id, enabled=enabled, now=now)

    async def rotate_secret(self, cb_id: int, now: int | None = None) -> str:
        secret = new_secret()
        at = _now() if now is None else now
        await self._change(cb_id, lambda cb: replace(cb, update_time=at), {"secret": secret})
        return secret

    async def _change(self, cb_id: int, change: Callable[[Callback], Callback],
                      extra: Mapping[str, str] | None = None) -> Callback:
        async def step(pipe: Pipeline) -> Callable[[], Callback]:
            cb = from_hash(cb_id, texts(await pipe.hgetall(self._key(cb_id))))
            if cb is None:
                raise not_found("no such callback")
            new = change(cb)
            pipe.multi()
            pipe.hset(self._key(cb_id), mapping=hash_fields(new, **(extra or {})))
            enabled_set, member = self.keys.callbacks_enabled_of(new.type), str(cb_id)
            if new.enabled:
                pipe.sadd(enabled_set, member)
            else:
                pipe.srem(enabled_set, member)
            return lambda: new

        return await self._transact(step, self._index)

    async def _transact(self, step: Callable[[Pipeline], Awaitable[Callable[[], T]]], *watched: str) -> T:
        """Runs `step` (reads, then `multi()` and queued writes) under WATCH; again if a watched key moved."""
        for _ in range(TRIES):
            async with self.redis.pipeline(transaction=True) as pipe:
                await pipe.watch(*watched)
                result = await step(pipe)
                try:
                    await pipe.execute()
                except redis.exceptions.WatchError:
                    continue
                return result()
        raise AppError("conflict", "the callbacks kept changing meanwhile; try again")

    async def delete(self, cb_id: int) -> int:
        """Removes the callback, its id from both enabled sets, its attempts and its dead letters: 1, or 0."""
        member = str(cb_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._index, member)
            name = target_name(cb_id)
            pipe.delete(self._key(cb_id), self.keys.attempts(name), self.keys.dead(name))
            for cb_type in TYPES:
                pipe.srem(self.keys.callbacks_enabled_of(cb_type), member)
            removed = await pipe.execute()
        return int(removed[0])

    async def stats(self, cb_type: str) -> dict[str, int]:
        succ, failed = await self.redis.hmget(self.keys.callback_stats(cb_type), ["succ", "failed"])
        return {"succ": _int(succ), "failed": _int(failed)}

    async def deliveries(self, cb_id: int, outcome: str | None = None) -> list[Item]:
        """The recent attempts the engine kept, newest first, optionally only those with this outcome."""
        await self.get(cb_id)
        raws = await self.redis.lrange(self.keys.attempts(target_name(cb_id)), 0, -1)
        attempts = json_objects(str(r) for r in raws)
        return [a for a in attempts if outcome is None or a.get("outcome") == outcome]

    async def dead(self, cb_id: int) -> list[Item]:
        await self.get(cb_id)
        record = texts(await self.redis.hgetall(self.keys.dead(target_name(cb_id))))
        return [_public(i) for i in dead_items(record)]

    async def replay(self, cb_id: int, delivery_id: str | None, partitions: int) -> int:
        """Moves one dead letter (or all) back onto the delivery streams, atomically: how many moved."""
        dead_key = self.keys.dead(target_name(cb_id))

        async def step(pipe: Pipeline) -> Callable[[], int]:
            if await pipe.zscore(self._index, str(cb_id)) is None:
                raise not_found("no such callback")
            items = [i for i in dead_items(texts(await pipe.hgetall(dead_key)))
                     if delivery_id is None or i["deliveryId"] == delivery_id]
            if delivery_id is not None and not items:
                raise not_found("no such dead delivery")
            if delivery_id is not None and not replayable(items[0]):
                raise AppError("conflict", "that dead delivery has no body to send")
            moving = [i for i in items if replayable(i)]
            pipe.multi()
            for item in moving:
                stream = self.keys.delivery_stream(partition_of(str(item.get("key", "")), partitions))
                pipe.xadd(stream, stream_fields(cb_id, item))
                pipe.hdel(dead_key, item["_field"])
            return lambda: len(moving)

        return await self._transact(step, self._index, dead_key)
