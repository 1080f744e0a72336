"""What callbacks and message routes share as delivery targets (docs/design.md §6): their recent attempts, their
dead letters and replay, secret rotation, and changes made under WATCH.

A target of kind `kind` ("callback", "route") and id `n` is named `"{kind}:{n}"` by the delivery engine.
Its keys (store/keys/): the hash `target(kind, n)`, the index `targets(kind)` (sorted set of ids), the attempts
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

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import redis.exceptions
from redis.typing import EncodableT, FieldT

from adapter.delivery import dead_letters
from adapter.delivery.model import ATTEMPTS_KEPT
from adapter.delivery.signing import new_secret
from adapter.errors import AppError, not_found
from adapter.store.keys import Keys
from adapter.store.types import AsyncPipeline, AsyncRedis, as_int, as_text
from adapter.targets.health import TARGET_FIELDS, health_of
from adapter.targets.records import Item, json_objects, replayable, stamp

__all__ = ["TRIES", "Load", "Queue", "Step", "TargetStore", "Targets"]

TRIES = 20
T = TypeVar("T")
Step = Callable[[AsyncPipeline], Awaitable[Callable[[], T]]]
Queue = Callable[[AsyncPipeline], None]  # queues more writes into a MULTI
Load = Callable[[int, dict[str, str]], T | None]  # a kind's record from its id and hash; None: not one


def _texts(record: Mapping[Any, Any]) -> dict[str, str]:
    return {as_text(k): as_text(v) for k, v in record.items()}


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
        ids = [int(as_text(m)) for m in await self.redis.zrange(self.index, 0, -1)]
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
                    record["succCount"] = str(as_int(record.get("succCount")) + sum(as_int(c[0]) for c in mine))
                    record["failedCount"] = str(as_int(record.get("failedCount")) + sum(as_int(c[1]) for c in mine))
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
        """Removes the target, its index entry, its series, attempts and dead letters in one MULTI with what
        `also` queues: 1, or 0 when there was no such target."""
        name = self.name(target_id)
        engine = [key for p in self.keys.shards() for key in (
            self.keys.attempts(name, p), self.keys.dead(name, p), self.keys.dead_index(name, p),
            self.keys.delivery_state(name, p))]
        series = [self.keys.target_series(self.kind, target_id, field) for field in TARGET_FIELDS]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.index, str(target_id))
            if self.keys.cluster:
                pipe.delete(self.key(target_id), *series)  # in the target's slot
            else:
                pipe.delete(self.key(target_id), *engine, *series)
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
            merged = [a for raws in lists for a in json_objects(as_text(r) for r in raws)]
            merged.sort(key=lambda a: as_int(a.get("time")), reverse=True)
            found = merged[:ATTEMPTS_KEPT]
        else:
            found = json_objects(as_text(r) for r in await self.redis.lrange(self.keys.attempts(name), 0, -1))
        return [a for a in found if outcome is None or a.get("outcome") == outcome]

    async def dead(self, target_id: int, page_no: int = 1, limit: int = 100) -> tuple[int, list[Item]]:
        """How many dead letters there are, and one page of them, oldest first."""
        if not await self.exists(target_id):
            raise self.missing()
        total, found = await dead_letters.page(self.redis, self.keys, self.name(target_id), page_no, limit)
        items = []
        for field, raw in found:
            for item in json_objects([as_text(raw)] if raw is not None else []):
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
            if not any(replayable(i) for i in json_objects([as_text(raw)])):
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
        """The engine's state of the target (its breaker, how many deliveries it holds and how many it dropped at
        the caps, its dead letters), its last attempt and last error, and why it needs attention (health.py)."""
        if not await self.exists(target_id):
            raise self.missing()
        return (await self.healths([target_id]))[0]

    async def healths(self, ids: Sequence[int] | None = None) -> list[Item]:
        """The health of the targets `ids` (None: every indexed one, by id), in one pipeline: per target its
        `enabled` and, per partition, its engine state, dead-letter count and kept attempts."""
        if ids is None:
            ids = [int(as_text(m)) for m in await self.redis.zrange(self.index, 0, -1)]
        lanes = list(self.keys.shards())
        async with self.redis.pipeline(transaction=False) as pipe:
            for target_id in ids:
                name = self.name(target_id)
                pipe.hget(self.key(target_id), "enabled")
                for p in lanes:
                    pipe.hgetall(self.keys.delivery_state(name, p))
                    pipe.hlen(self.keys.dead(name, p))
                    pipe.lrange(self.keys.attempts(name, p), 0, -1)
            replies = await pipe.execute()
        per = 1 + 3 * len(lanes)
        return [self._health(target_id, replies[n * per:(n + 1) * per]) for n, target_id in enumerate(ids)]

    @staticmethod
    def _health(target_id: int, replies: list[Any]) -> Item:
        """One target's part of the `healths` pipeline: enabled, then (state, dead count, attempts) per partition."""
        attempts = [a for raws in replies[3::3] for a in json_objects(as_text(r) for r in raws)]
        if len(replies[3::3]) > 1:  # the cluster's partitions: the newest of them all
            attempts = sorted(attempts, key=lambda a: as_int(a.get("time")), reverse=True)[:ATTEMPTS_KEPT]
        return health_of(target_id, replies[0] is not None and as_text(replies[0]) == "1",
                         [_texts(r) for r in replies[1::3]], sum(as_int(n) for n in replies[2::3]), attempts)

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
        """The engine's state of the target: breaker, held deliveries, dead letters, drops, last error."""
        return await self.targets.health(target_id)

    async def healths(self) -> list[Item]:
        """The health of every target of the kind, by id."""
        return await self.targets.healths()
