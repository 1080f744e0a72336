"""What callbacks and message routes share as delivery targets (DESIGN §6): their recent attempts, their
dead letters and replay, secret rotation, and changes made under WATCH.

A target of kind `kind` ("callback", "route") and id `n` is named `"{kind}:{n}"` by the delivery engine.
Its keys (keys.py): the hash `target(kind, n)`, the index `targets(kind)` (sorted set of ids), the attempts
list `attempts(name)` and the dead-letter hash `dead(name)`, both written by the engine.

Reads and writes here check that the target exists by its index entry. Writes watch the index, not the
target's hash: the engine bumps the hash's counters on every delivery, which would abort a watch on it
again and again, while the index changes only when a target is created or deleted.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.client import Pipeline
from redis.typing import EncodableT, FieldT

from adapter.delivery import partition_of
from adapter.errors import AppError, not_found
from adapter.keys import Keys
from adapter.signing import new_secret

__all__ = ["OUTCOMES", "TRIES", "Item", "Targets", "dead_items", "json_objects", "public", "replayable",
           "stream_fields", "text", "to_int"]

OUTCOMES = ("success", "retry", "failed", "dead")  # of an attempt, as the engine records it
TRIES = 20
T = TypeVar("T")
Item = dict[str, Any]
Step = Callable[[Pipeline], Awaitable[Callable[[], T]]]


def text(value: Any) -> str:
    """A Redis reply as str, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


def to_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


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
    """The dead letters of a hash (delivery id -> JSON), oldest first; `deliveryId` filled from the field,
    the field itself kept as `_field` (for replay; `public` drops it)."""
    items = []
    for field, raw in record.items():
        for item in json_objects([raw]):
            items.append({**item, "deliveryId": str(item.get("deliveryId") or field), "_field": field})
    items.sort(key=lambda i: (to_int(i.get("time")), i["deliveryId"]))
    return items


def public(item: Item) -> Item:
    return {k: v for k, v in item.items() if k != "_field"}


def replayable(item: Item) -> bool:
    return isinstance(item.get("body"), (str, dict, list))


def stream_fields(target: str, item: Item) -> dict[FieldT, EncodableT]:
    """The delivery stream entry that sends a dead letter again, from its first attempt."""
    body = item["body"]
    return {"t": target, "k": str(item.get("key", "")), "id": item["deliveryId"],
            "b": body if isinstance(body, str) else orjson.dumps(body).decode(), "n": "0"}


def _texts(record: Mapping[Any, Any]) -> dict[str, str]:
    return {text(k): text(v) for k, v in record.items()}


class Targets:
    """The engine-facing records of one kind of target. `noun` names it in errors ("no such route")."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, kind: str, noun: str) -> None:
        self.redis = redis
        self.keys = keys
        self.kind = kind
        self.noun = noun

    def name(self, target_id: int) -> str:
        """How the delivery engine names the target: `"{kind}:{id}"`."""
        return f"{self.kind}:{target_id}"

    @property
    def index(self) -> str:
        return self.keys.targets(self.kind)

    def missing(self) -> AppError:
        return not_found(f"no such {self.noun}")

    async def exists(self, target_id: int, client: Any = None) -> bool:
        reader = self.redis if client is None else client
        return await reader.zscore(self.index, str(target_id)) is not None

    async def attempts(self, target_id: int, outcome: str | None = None) -> list[Item]:
        """The recent attempts the engine kept, newest first, optionally only those with this outcome."""
        if not await self.exists(target_id):
            raise self.missing()
        raws = await self.redis.lrange(self.keys.attempts(self.name(target_id)), 0, -1)
        found = json_objects(text(r) for r in raws)
        return [a for a in found if outcome is None or a.get("outcome") == outcome]

    async def dead(self, target_id: int) -> list[Item]:
        """The dead letters, oldest first."""
        if not await self.exists(target_id):
            raise self.missing()
        record = _texts(await self.redis.hgetall(self.keys.dead(self.name(target_id))))
        return [public(i) for i in dead_items(record)]

    async def replay(self, target_id: int, delivery_id: str | None, partitions: int) -> int:
        """Moves one dead letter (or all) back onto the delivery streams, atomically: how many moved."""
        name = self.name(target_id)
        dead_key = self.keys.dead(name)

        async def step(pipe: Pipeline) -> Callable[[], int]:
            if not await self.exists(target_id, pipe):
                raise self.missing()
            items = [i for i in dead_items(_texts(await pipe.hgetall(dead_key)))
                     if delivery_id is None or i["deliveryId"] == delivery_id]
            if delivery_id is not None and not items:
                raise not_found("no such dead delivery")
            if delivery_id is not None and not replayable(items[0]):
                raise AppError("conflict", "that dead delivery has no body to send")
            moving = [i for i in items if replayable(i)]
            pipe.multi()
            for item in moving:
                stream = self.keys.delivery_stream(partition_of(str(item.get("key", "")), partitions))
                pipe.xadd(stream, stream_fields(name, item))
                pipe.hdel(dead_key, item["_field"])
            return lambda: len(moving)

        return await self.transact(step, self.index, dead_key)

    async def rotate_secret(self, target_id: int, now: int | None = None,
                            also: Callable[[Pipeline], None] | None = None) -> str:
        """A new signing secret (and `updateTime`), shown this once; `also` queues more in its MULTI."""
        secret = new_secret()
        at = int(time.time()) if now is None else now

        async def step(pipe: Pipeline) -> Callable[[], str]:
            if not await self.exists(target_id, pipe):
                raise self.missing()
            pipe.multi()
            fields: dict[FieldT, EncodableT] = {"secret": secret, "updateTime": str(at)}
            pipe.hset(self.keys.target(self.kind, target_id), mapping=fields)
            if also is not None:
                also(pipe)
            return lambda: secret

        return await self.transact(step, self.index)

    async def transact(self, step: Step[T], *watched: str) -> T:
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
        raise AppError("conflict", f"the {self.noun}s kept changing meanwhile; try again")
