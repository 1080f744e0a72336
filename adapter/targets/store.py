"""What callbacks and message routes share as delivery targets (docs/design.md §6): their recent attempts, their
dead letters and replay, secret rotation, and changes made under WATCH.

A target of kind `kind` ("callback", "route") and id `n` is named `"{kind}:{n}"` by the delivery engine.
Its keys (keys.py): the hash `target(kind, n)`, the index `targets(kind)` (sorted set of ids), the attempts
list `attempts(name)` and the dead-letter hash `dead(name)`, both written by the engine.

On Redis Cluster the target, its index and the enabled sets are in `{tgt}` (a change stays one MULTI) while what
the engine writes is per partition (`attempts(name, p)`, `dead(name, p)`, `delivery_state(name, p)`, the counts):
reads merge the partitions (docs/delivery.md "On Redis Cluster"), a delete removes them after its MULTI.

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
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar, TypeVar

import orjson
import redis.exceptions
from redis.typing import EncodableT, FieldT

from adapter.delivery import dead_letters
from adapter.delivery.model import ATTEMPTS_KEPT, RECORDED, BreakerState
from adapter.delivery.signing import new_secret
from adapter.errors import AppError, not_found
from adapter.store.keys import Keys
from adapter.store.types import AsyncPipeline, AsyncRedis

__all__ = ["OUTCOMES", "TRIES", "Item", "Queue", "Target", "TargetStore", "Targets", "dead_items", "health_item",
           "json_objects", "merged_state", "public", "replayable", "shared_values", "stamp", "stream_fields", "text",
           "to_int"]

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


def merged_state(states: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """One engine state from those of a target's partitions (the cluster; one Redis has one): counts summed, the
    breaker open when any partition's is, since its earliest opening, probing at its earliest probe."""
    out: dict[str, str] = {}
    opened = [s for s in states if s.get("breaker") == BreakerState.OPEN]
    for field in ("held", "heldDropped", "deadDropped", "failures"):
        values = [s[field] for s in states if field in s]
        if values:
            out[field] = str(sum(to_int(v) for v in values))
    if opened:
        out["breaker"] = BreakerState.OPEN.value
        out["openedAt"] = str(min(to_int(s.get("openedAt")) for s in opened))
        out["probeAt"] = str(min(to_int(s.get("probeAt")) for s in opened))
    return out


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
            records = [_texts(r) for r in await pipe.execute()]
        if self.keys.cluster:  # the engine counts per partition
            lanes = list(self.keys.shards())
            async with self.redis.pipeline(transaction=False) as pipe:
                for target_id in ids:
                    for p in lanes:
                        pipe.hmget(self.keys.delivery_counts(self.name(target_id), p), "succCount", "failedCount")
                counts = await pipe.execute()
            for n, record in enumerate(records):
                mine = counts[n * len(lanes):(n + 1) * len(lanes)]
                if record:
                    record["succCount"] = str(to_int(record.get("succCount")) + sum(to_int(c[0]) for c in mine))
                    record["failedCount"] = str(to_int(record.get("failedCount")) + sum(to_int(c[1]) for c in mine))
        found = (load(i, r) for i, r in zip(ids, records, strict=True))
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
        engine = [key for p in self.keys.shards() for key in (
            self.keys.attempts(name, p), self.keys.dead(name, p), self.keys.dead_index(name, p),
            self.keys.delivery_state(name, p))]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.index, str(target_id))
            if self.keys.cluster:
                pipe.delete(self.key(target_id))
            else:
                pipe.delete(self.key(target_id), *engine)
            also(pipe)
            removed = await pipe.execute()
        if self.keys.cluster:  # the engine's keys of every partition: the cluster client sends one UNLINK per slot
            await self.redis.unlink(*engine)
        return int(removed[0])

    async def attempts(self, target_id: int, outcome: str | None = None) -> list[Item]:
        """The recent attempts the engine kept, newest first, optionally only those with this outcome."""
        if not await self.exists(target_id):
            raise self.missing()
        name = self.name(target_id)
        if self.keys.cluster:  # each partition's newest, merged: the newest ATTEMPTS_KEPT of them
            async with self.redis.pipeline(transaction=False) as pipe:
                for p in self.keys.shards():
                    pipe.lrange(self.keys.attempts(name, p), 0, -1)
                lists = await pipe.execute()
            merged = [a for raws in lists for a in json_objects(text(r) for r in raws)]
            merged.sort(key=lambda a: to_int(a.get("time")), reverse=True)
            found = merged[:ATTEMPTS_KEPT]
        else:
            found = json_objects(text(r) for r in await self.redis.lrange(self.keys.attempts(name), 0, -1))
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
            lane = await self._dead_lane(name, delivery_ids[0])
            raw = None if lane is None else await self.redis.hget(self.keys.dead(name, lane), delivery_ids[0])
            if raw is None:
                raise not_found("no such dead delivery")
            if not any(replayable(i) for i in json_objects([text(raw)])):
                raise AppError("conflict", "that dead delivery has no body to send")
        done = await dead_letters.replay(self.redis, self.keys, name, delivery_ids, partitions, maxlen)
        return done.moved

    async def _dead_lane(self, name: str, delivery_id: str) -> int | None:
        """The partition whose dead letters hold `delivery_id` (one Redis: its only one, 0), or None."""
        if not self.keys.cluster:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in self.keys.shards():
                pipe.hexists(self.keys.dead(name, p), delivery_id)
            found = await pipe.execute()
        return next((p for p, there in zip(self.keys.shards(), found, strict=True) if there), None)

    async def dead_count(self, target_id: int) -> int:
        if not await self.exists(target_id):
            raise self.missing()
        return await dead_letters.count(self.redis, self.keys, self.name(target_id))

    async def health(self, target_id: int) -> Item:
        """The engine's state of the target: its breaker, how many deliveries it holds and how many it
        dropped at the caps, its dead letters."""
        if not await self.exists(target_id):
            raise self.missing()
        name = self.name(target_id)
        await dead_letters.index_missing(self.redis, self.keys, name)
        lanes = list(self.keys.shards())
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in lanes:
                pipe.hgetall(self.keys.delivery_state(name, p))
                pipe.zcard(self.keys.dead_index(name, p))
            replies = await pipe.execute()
        states = [_texts(r) for r in replies[0::2]]
        state = states[0] if len(states) == 1 else merged_state(states)
        return health_item(target_id, state, sum(int(n) for n in replies[1::2]))

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
