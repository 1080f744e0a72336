"""What callbacks and message routes share as delivery targets (docs/design.md §6): their recent attempts, their
dead letters and replay, secret rotation, and changes made under WATCH.

A target of kind `kind` ("callback", "route") and id `n` is named `"{kind}:{n}"` by the delivery engine.
Its keys (keys.py): the hash `target(kind, n)`, the index `targets(kind)` (sorted set of ids), the attempts
list `attempts(name)` and the dead-letter hash `dead(name)`, both written by the engine.

Attempts, dead letters, replay and secret rotation check that the target exists by its index entry; `get`
and `change` by the kind's reading of its hash (a `Load`). Writes watch the index, not the target's hash:
the engine bumps the hash's counters on every delivery, which would abort a watch on it again and again,
while the index changes only when a target is created or deleted.

`Target` holds what every kind's record carries (id, enabled, times, the engine's counters); each kind adds
its own fields and its own `item()`. `TargetStore` is the base of each kind's store (callbacks.py,
routes.py): it owns their `Targets` and the engine-facing operations they share.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar, TypeVar

import orjson
import redis.exceptions
from redis.typing import EncodableT, FieldT

from adapter.delivery import dead_letters
from adapter.delivery.model import RECORDED, BreakerState
from adapter.delivery.signing import new_secret
from adapter.errors import AppError, not_found
from adapter.store.keys import Keys
from adapter.store.types import AsyncPipeline, AsyncRedis

__all__ = ["OUTCOMES", "TRIES", "Item", "Queue", "Target", "TargetStore", "Targets", "dead_items", "health_item",
           "json_objects", "public", "replayable", "shared_values", "stamp", "stream_fields", "text", "to_int"]

OUTCOMES = tuple(o.value for o in RECORDED)  # of an attempt, as the engine records it
TRIES = 20
T = TypeVar("T")
Item = dict[str, Any]
Step = Callable[[AsyncPipeline], Awaitable[Callable[[], T]]]
Queue = Callable[[AsyncPipeline], None]  # queues more writes into a MULTI
Load = Callable[[int, dict[str, str]], T | None]  # a kind's record from its id and hash; None: not one


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


def health_item(target_id: int, state: Mapping[str, str], dead: int) -> Item:
    """The health answer from the engine's state hash (delivery_state) and the dead-letter count."""
    failures = to_int(state.get("failures"))
    if state.get("breaker") == BreakerState.OPEN:
        breaker: Item = {"state": BreakerState.OPEN.value, "since": to_int(state.get("openedAt")), "failures": failures,
                         "probeAt": to_int(state.get("probeAt")) // 1000}
    else:
        breaker = {"state": BreakerState.CLOSED.value, "since": None, "failures": failures, "probeAt": None}
    return {"id": target_id, "breaker": breaker, "held": max(0, to_int(state.get("held"))), "dead": dead,
            "dropped": {"held": to_int(state.get("heldDropped")), "dead": to_int(state.get("deadDropped"))}}


def public(item: Item) -> Item:
    return {k: v for k, v in item.items() if k != "_field"}


def replayable(item: Item) -> bool:
    return isinstance(item.get("body"), (str, dict, list))


def stream_fields(target: str, item: Item) -> dict[FieldT, EncodableT]:
    """The delivery stream entry that sends a dead letter again, from its first attempt."""
    body = item["body"]
    return {"t": target, "k": str(item.get("key", "")), "id": item["deliveryId"],
            "b": body if isinstance(body, str) else orjson.dumps(body).decode(), "n": "0"}


def stamp(now: int | None = None) -> int:
    """`now`, or the current time in seconds."""
    return int(time.time()) if now is None else now


def _texts(record: Mapping[Any, Any]) -> dict[str, str]:
    return {text(k): text(v) for k, v in record.items()}


@dataclass(frozen=True)
class Target:
    """What every target's record holds. A kind adds its own fields (positional, after `id`) and `item()`."""

    id: int
    _: KW_ONLY
    enabled: bool
    create_time: int
    update_time: int
    succ_count: int = 0
    failed_count: int = 0

    def item(self) -> Item:
        """The seed's answer to a change."""
        raise NotImplementedError

    def listed(self) -> Item:
        """The seed's list item: the change answer plus the counters."""
        return {**self.item(), "succCount": self.succ_count, "failedCount": self.failed_count}

    def times(self) -> Item:
        return {"createTime": self.create_time, "updateTime": self.update_time}

    def shared_fields(self) -> dict[FieldT, EncodableT]:
        """What a change writes to the hash besides the kind's own fields (the engine owns the counters)."""
        return {"enabled": "1" if self.enabled else "0", "createTime": str(self.create_time),
                "updateTime": str(self.update_time)}


def shared_values(record: Mapping[str, str]) -> dict[str, Any]:
    """The `Target` fields a hash holds, as keyword arguments of a kind's record."""
    return {"enabled": record.get("enabled") == "1", "create_time": to_int(record.get("createTime")),
            "update_time": to_int(record.get("updateTime")), "succ_count": to_int(record.get("succCount")),
            "failed_count": to_int(record.get("failedCount"))}


class Targets:
    """The engine-facing records of one kind of target. `noun` names it in errors ("no such route")."""

    def __init__(self, redis: AsyncRedis, keys: Keys, kind: str, noun: str) -> None:
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

    def key(self, target_id: int) -> str:
        return self.keys.target(self.kind, target_id)

    def missing(self) -> AppError:
        return not_found(f"no such {self.noun}")

    async def exists(self, target_id: int, client: Any = None) -> bool:
        reader = self.redis if client is None else client
        return await reader.zscore(self.index, str(target_id)) is not None

    async def next_id(self) -> int:
        return int(await self.redis.incr(self.keys.target_seq(self.kind)))

    async def add(self, target_id: int, fields: Mapping[FieldT, EncodableT], also: Queue) -> str:
        """Writes a new target (`fields`, a new secret, zero counters) and its index entry in one MULTI with
        what `also` queues; answers the secret (shown only here and by `rotate_secret`)."""
        secret = new_secret()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(target_id), mapping={**fields, "secret": secret, "succCount": "0",
                                                    "failedCount": "0"})
            pipe.zadd(self.index, {str(target_id): target_id})
            also(pipe)
            await pipe.execute()
        return secret

    async def record(self, target_id: int, client: Any = None) -> dict[str, str]:
        """The target's hash as str -> str (empty when there is none)."""
        reader = self.redis if client is None else client
        return _texts(await reader.hgetall(self.key(target_id)))

    async def all(self, load: Load[T]) -> list[T]:
        """Every indexed target that `load` finds in its hash, by id."""
        ids = [int(text(m)) for m in await self.redis.zrange(self.index, 0, -1)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for target_id in ids:
                pipe.hgetall(self.key(target_id))
            records = await pipe.execute()
        found = (load(i, _texts(r)) for i, r in zip(ids, records, strict=True))
        return [target for target in found if target is not None]

    async def get(self, target_id: int, load: Load[T]) -> T:
        target = load(target_id, await self.record(target_id))
        if target is None:
            raise self.missing()
        return target

    async def change(self, target_id: int, load: Load[T], write: Callable[[AsyncPipeline, T], T]) -> T:
        """Loads the target under WATCH of the index (None: there is none, 404), then answers what
        `write(pipe, old)` answers, having queued its writes in one MULTI."""
        async def step(pipe: AsyncPipeline) -> Callable[[], T]:
            old = load(target_id, await self.record(target_id, pipe))
            if old is None:
                raise self.missing()
            pipe.multi()
            new = write(pipe, old)
            return lambda: new

        return await self.transact(step, self.index)

    async def delete(self, target_id: int, also: Queue) -> int:
        """Removes the target, its index entry, attempts and dead letters in one MULTI with what `also`
        queues: 1, or 0 when there was no such target."""
        name = self.name(target_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.index, str(target_id))
            pipe.delete(self.key(target_id), self.keys.attempts(name), self.keys.dead(name),
                        self.keys.dead_index(name), self.keys.delivery_state(name))
            also(pipe)
            removed = await pipe.execute()
        return int(removed[0])

    async def attempts(self, target_id: int, outcome: str | None = None) -> list[Item]:
        """The recent attempts the engine kept, newest first, optionally only those with this outcome."""
        if not await self.exists(target_id):
            raise self.missing()
        raws = await self.redis.lrange(self.keys.attempts(self.name(target_id)), 0, -1)
        found = json_objects(text(r) for r in raws)
        return [a for a in found if outcome is None or a.get("outcome") == outcome]

    async def dead(self, target_id: int, page_no: int = 1, limit: int = 100) -> tuple[int, list[Item]]:
        """How many dead letters there are, and one page of them, oldest first."""
        if not await self.exists(target_id):
            raise self.missing()
        total, found = await dead_letters.page(self.redis, self.keys, self.name(target_id), page_no, limit)
        items = []
        for field, raw in found:
            for item in json_objects([text(raw)] if raw is not None else []):
                items.append({**item, "deliveryId": str(item.get("deliveryId") or field)})
        return total, items

    async def replay(self, target_id: int, delivery_ids: list[str] | None, partitions: int,
                     maxlen: int = 250_000) -> int:
        """Moves the dead letters `delivery_ids` (None: all) back onto the delivery streams, in batches (each
        atomic, so each letter moves once): how many moved. One id that is not there: 404; one without a
        body: 409."""
        name = self.name(target_id)
        if not await self.exists(target_id):
            raise self.missing()
        if delivery_ids is not None and len(delivery_ids) == 1:
            raw = await self.redis.hget(self.keys.dead(name), delivery_ids[0])
            if raw is None:
                raise not_found("no such dead delivery")
            if not any(replayable(i) for i in json_objects([text(raw)])):
                raise AppError("conflict", "that dead delivery has no body to send")
        done = await dead_letters.replay(self.redis, self.keys, name, delivery_ids, partitions, maxlen)
        return done.moved

    async def dead_count(self, target_id: int) -> int:
        if not await self.exists(target_id):
            raise self.missing()
        return int(await self.redis.hlen(self.keys.dead(self.name(target_id))))

    async def health(self, target_id: int) -> Item:
        """The engine's state of the target: its breaker, how many deliveries it holds and how many it
        dropped at the caps, its dead letters."""
        if not await self.exists(target_id):
            raise self.missing()
        name = self.name(target_id)
        await dead_letters.index_missing(self.redis, self.keys, name)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.delivery_state(name))
            pipe.zcard(self.keys.dead_index(name))
            state, dead = await pipe.execute()
        return health_item(target_id, _texts(state), int(dead))

    async def rotate_secret(self, target_id: int, now: int | None = None, also: Queue | None = None) -> str:
        """A new signing secret (and `updateTime`), shown this once; `also` queues more in its MULTI."""
        secret, at = new_secret(), stamp(now)

        async def step(pipe: AsyncPipeline) -> Callable[[], str]:
            if not await self.exists(target_id, pipe):
                raise self.missing()
            pipe.multi()
            fields: dict[FieldT, EncodableT] = {"secret": secret, "updateTime": str(at)}
            pipe.hset(self.key(target_id), mapping=fields)
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


class TargetStore:
    """What the store of every kind has: its `Targets` (`KIND`, named `NOUN` in errors), and through them the
    engine's records of it. A kind adds its own CRUD; `rotate_secret` is the plain one unless it overrides."""

    KIND: ClassVar[str]
    NOUN: ClassVar[str]

    def __init__(self, redis: AsyncRedis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.targets = Targets(redis, keys, self.KIND, self.NOUN)

    async def rotate_secret(self, target_id: int, now: int | None = None) -> str:
        """A new signing secret (and `updateTime`), shown this once."""
        return await self.targets.rotate_secret(target_id, now)

    async def deliveries(self, target_id: int, outcome: str | None = None) -> list[Item]:
        """The recent attempts the engine kept, newest first, optionally only those with this outcome."""
        return await self.targets.attempts(target_id, outcome)

    async def dead(self, target_id: int, page_no: int = 1, limit: int = 100) -> tuple[int, list[Item]]:
        return await self.targets.dead(target_id, page_no, limit)

    async def replay(self, target_id: int, delivery_ids: list[str] | None, partitions: int,
                     maxlen: int = 250_000) -> int:
        """Moves the dead letters `delivery_ids` (None: all) back onto the delivery streams, in batches."""
        return await self.targets.replay(target_id, delivery_ids, partitions, maxlen)

    async def dead_count(self, target_id: int) -> int:
        return await self.targets.dead_count(target_id)

    def engine_name(self, target_id: int) -> str:
        return self.targets.name(target_id)

    async def health(self, target_id: int) -> Item:
        """The engine's state of the target: breaker, held deliveries, dead letters, drops."""
        return await self.targets.health(target_id)
