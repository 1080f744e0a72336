"""Message routes (seed "Message Route", DESIGN §6): MQTT topic filters whose matching messages are forwarded
to an HTTP URL by the delivery engine. This module owns the routes in Redis; the in-memory index every API
process matches against is route_table.py, the forwarded body forwarding.py.

Redis (keys.py, and three keys it does not have yet, built by the functions below):
- `target("route", id)`: hash name, topic, url, enabled ("1"/"0"), secret, createTime, updateTime (seconds),
  succCount, failedCount (the delivery engine counts these two).
- `targets("route")`: sorted set of the ids, scored by id; `target_seq("route")` hands the ids out.
- `routes:enabled` (`Keys.routes_enabled`): hash id -> topic filter holding EXACTLY the enabled routes: what a
  route table loads (one HGETALL, however many routes there are).
- `routes:version` (`Keys.routes_version`): a counter every change increments; `routes:changed`
  (`Keys.routes_channel`): the pub/sub channel every change publishes on. Route tables reload on a
  message and, as a fallback, when they see the version move.
- `attempts("route:<id>")`, `dead("route:<id>")`: written by the engine, read (and replayed) here.

Every change writes the hash, the index, the enabled hash, the version and the notification in one MULTI.
A change to an existing route runs under WATCH of the index (see targets.py for why not of the hash), so a
concurrent delete aborts it (it then answers 404) instead of reviving the route.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.typing import EncodableT, FieldT

from adapter.keys import Keys
from adapter.signing import new_secret
from adapter.targets import Item, Targets, text, to_int
from adapter.topics import validate_filter

KIND = "route"
NAME_MAX = 200


@dataclass(frozen=True)
class Route:
    id: int
    name: str
    topic: str
    url: str
    enabled: bool
    create_time: int
    update_time: int
    succ_count: int = 0
    failed_count: int = 0

    def item(self) -> Item:
        """The seed's answer to a change (add, update)."""
        return {"id": self.id, "name": self.name, "topic": self.topic, "url": self.url,
                "createTime": self.create_time, "updateTime": self.update_time}

    def listed(self) -> Item:
        """The seed's list item: the change answer plus the counters."""
        return {**self.item(), "succCount": self.succ_count, "failedCount": self.failed_count}


def from_hash(route_id: int, record: Mapping[str, str]) -> Route | None:
    """The route a hash holds, or None when it holds none (absent, or only stray counters)."""
    if "topic" not in record or "url" not in record:
        return None
    return Route(id=route_id, name=record.get("name", ""), topic=record["topic"], url=record["url"],
                 enabled=record.get("enabled") == "1", create_time=to_int(record.get("createTime")),
                 update_time=to_int(record.get("updateTime")), succ_count=to_int(record.get("succCount")),
                 failed_count=to_int(record.get("failedCount")))


def hash_fields(route: Route, **extra: str) -> dict[FieldT, EncodableT]:
    """What a change writes to the hash, plus `extra` (counters only at creation: the engine owns them)."""
    fields: dict[FieldT, EncodableT] = {
        "name": route.name, "topic": route.topic, "url": route.url, "enabled": "1" if route.enabled else "0",
        "createTime": str(route.create_time), "updateTime": str(route.update_time)}
    for name, value in extra.items():
        fields[name] = value
    return fields


def _texts(record: Mapping[Any, Any]) -> dict[str, str]:
    return {text(k): text(v) for k, v in record.items()}


def _now() -> int:
    return int(time.time())


class RouteStore:
    """CRUD on the routes. Topic filters are validated here (AppError "topic: …"); URLs by the caller, which
    knows whether private targets are allowed (urlguard.check_static)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.targets = Targets(redis, keys, KIND, "route")

    def _key(self, route_id: int) -> str:
        return self.keys.target(KIND, route_id)

    def _announce(self, pipe: Pipeline, route: Route | None, route_id: int) -> None:
        """Queue the enabled-hash entry of the route (gone when `route` is None or disabled), the version
        bump and the notification."""
        if route is not None and route.enabled:
            pipe.hset(self.keys.routes_enabled(), str(route_id), route.topic)
        else:
            pipe.hdel(self.keys.routes_enabled(), str(route_id))
        self._bump(pipe, route_id)

    async def create(self, name: str, topic: str, url: str, enabled: bool = True, now: int | None = None
                     ) -> tuple[Route, str]:
        """A new route and its secret (shown only here and by `rotate_secret`)."""
        validate_filter(topic)
        route_id = int(await self.redis.incr(self.keys.target_seq(KIND)))
        at = _now() if now is None else now
        route = Route(route_id, name, topic, url, enabled, at, at)
        secret = new_secret()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(route_id), mapping=hash_fields(route, secret=secret, succCount="0",
                                                               failedCount="0"))
            pipe.zadd(self.targets.index, {str(route_id): route_id})
            self._announce(pipe, route, route_id)
            await pipe.execute()
        return route, secret

    async def all(self) -> list[Route]:
        ids = [int(text(m)) for m in await self.redis.zrange(self.targets.index, 0, -1)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for route_id in ids:
                pipe.hgetall(self._key(route_id))
            records = await pipe.execute()
        found = (from_hash(i, _texts(r)) for i, r in zip(ids, records, strict=True))
        return [route for route in found if route is not None]

    async def get(self, route_id: int) -> Route:
        route = from_hash(route_id, _texts(await self.redis.hgetall(self._key(route_id))))
        if route is None:
            raise self.targets.missing()
        return route

    async def update(self, route_id: int, *, name: str | None = None, topic: str | None = None,
                     url: str | None = None, enabled: bool | None = None, now: int | None = None) -> Route:
        """Changes any of name, topic, url, enabled; `updateTime` moves only when something changed."""
        if topic is not None:
            validate_filter(topic)

        given: dict[str, Any] = {k: v for k, v in {"name": name, "topic": topic, "url": url,
                                                    "enabled": enabled}.items() if v is not None}

        def change(old: Route) -> Route:
            new = replace(old, **given)
            return new if new == old else replace(new, update_time=_now() if now is None else now)

        async def step(pipe: Pipeline) -> Callable[[], Route]:
            old = from_hash(route_id, _texts(await pipe.hgetall(self._key(route_id))))
            if old is None:
                raise self.targets.missing()
            new = change(old)
            pipe.multi()
            if new != old:
                pipe.hset(self._key(route_id), mapping=hash_fields(new))
                self._announce(pipe, new, route_id)
            return lambda: new

        return await self.targets.transact(step, self.targets.index)

    async def set_enabled(self, route_id: int, enabled: bool, now: int | None = None) -> Route:
        return await self.update(route_id, enabled=enabled, now=now)

    async def rotate_secret(self, route_id: int, now: int | None = None) -> str:
        """A new signing secret, shown this once. The table does not hold secrets; the version still moves."""
        return await self.targets.rotate_secret(route_id, now, lambda pipe: self._bump(pipe, route_id))

    def _bump(self, pipe: Pipeline, route_id: int) -> None:
        pipe.incr(self.keys.routes_version())
        pipe.publish(self.keys.routes_channel(), str(route_id))

    async def delete(self, route_id: int) -> int:
        """Removes the route, its attempts and its dead letters: 1, or 0 when there was no such route."""
        name = self.targets.name(route_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.targets.index, str(route_id))
            pipe.delete(self._key(route_id), self.keys.attempts(name), self.keys.dead(name))
            self._announce(pipe, None, route_id)
            removed = await pipe.execute()
        return int(removed[0])

    async def deliveries(self, route_id: int, outcome: str | None = None) -> list[Item]:
        return await self.targets.attempts(route_id, outcome)

    async def dead(self, route_id: int) -> list[Item]:
        return await self.targets.dead(route_id)

    async def replay(self, route_id: int, delivery_id: str | None, partitions: int) -> int:
        return await self.targets.replay(route_id, delivery_id, partitions)
