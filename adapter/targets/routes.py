"""Message routes (seed "Message Route", docs/design.md §6): MQTT topic filters whose matching messages are forwarded
to an HTTP URL by the delivery engine. This module owns the routes in Redis; the in-memory index every API
process matches against is route_table.py, the forwarded body forwarding.py.

Redis (store/keys/, and three keys it does not have yet, built by the functions below):
- `target("route", id)`: hash name, topic, url, enabled ("1"/"0"), secret, createTime, updateTime (seconds),
  succCount, failedCount (the delivery engine counts these two).
- `targets("route")`: sorted set of the ids, scored by id; `target_seq("route")` hands the ids out.
- `routes:enabled` (`Keys.routes_enabled`): hash id -> topic filter holding EXACTLY the enabled routes: what a
  route table loads (one HGETALL, however many routes there are).
- `routes:version` (`Keys.routes_version`): a counter every change increments; `routes:changed`
  (`Keys.routes_channel`): the pub/sub channel every change publishes on. Route tables reload on a
  message and, as a fallback, when they see the version move.
- `attempts("route:<id>")`, `dead("route:<id>")`: written by the engine, read (and replayed) here.

Every change writes the hash, the index, the enabled hash, the version and the notification in one MULTI (on Redis
Cluster, where a pipeline may not PUBLISH, the notification follows the MULTI: the version poll covers a lost one).
A change to an existing route runs under WATCH of the index (see targets.py for why not of the hash), so a
concurrent delete aborts it (it then answers 404) instead of reviving the route.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from redis.typing import EncodableT, FieldT

from adapter.protocol.topics import validate_filter
from adapter.store.types import AsyncPipeline
from adapter.targets.records import Item, Target, shared_values, stamp
from adapter.targets.repository import TargetStore

NAME_MAX = 200


@dataclass(frozen=True)
class Route(Target):
    name: str
    topic: str
    url: str

    def item(self) -> Item:
        """The seed's answer to a change (add, update): no `enabled`."""
        return {"id": self.id, "name": self.name, "topic": self.topic, "url": self.url, **self.times()}


def from_hash(route_id: int, record: Mapping[str, str]) -> Route | None:
    """The route a hash holds, or None when it holds none (absent, or only stray counters)."""
    if "topic" not in record or "url" not in record:
        return None
    return Route(route_id, record.get("name", ""), record["topic"], record["url"], **shared_values(record))


def hash_fields(route: Route) -> dict[FieldT, EncodableT]:
    """What a change writes to the hash (a new one also gets the secret and the counters: targets.py)."""
    return {"name": route.name, "topic": route.topic, "url": route.url, **route.shared_fields()}


class RouteStore(TargetStore):
    """CRUD on the routes; deliveries, dead letters and replay as every target has them (TargetStore). Topic
    filters are validated here (AppError "topic: …"); URLs by the caller, which knows whether private targets
    are allowed (urlguard.check_static)."""

    KIND = NOUN = "route"

    def _announce(self, pipe: AsyncPipeline, route: Route | None, route_id: int) -> None:
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
        route_id = await self.targets.next_id()
        at = stamp(now)
        route = Route(route_id, name, topic, url, enabled=enabled, create_time=at, update_time=at)
        secret = await self.targets.add(route_id, hash_fields(route),
                                        lambda pipe: self._announce(pipe, route, route_id))
        await self._notify(route_id)
        return route, secret

    async def all(self) -> list[Route]:
        return await self.targets.all(from_hash)

    async def get(self, route_id: int) -> Route:
        return await self.targets.get(route_id, from_hash)

    async def update(self, route_id: int, *, name: str | None = None, topic: str | None = None,
                     url: str | None = None, enabled: bool | None = None, now: int | None = None) -> Route:
        """Changes any of name, topic, url, enabled; `updateTime` moves only when something changed."""
        if topic is not None:
            validate_filter(topic)

        given: dict[str, Any] = {k: v for k, v in {"name": name, "topic": topic, "url": url,
                                                    "enabled": enabled}.items() if v is not None}

        def write(pipe: AsyncPipeline, old: Route) -> Route:
            new = replace(old, **given)
            if new == old:
                return old
            new = replace(new, update_time=stamp(now))
            pipe.hset(self.targets.key(route_id), mapping=hash_fields(new))
            self._announce(pipe, new, route_id)
            return new

        changed = await self.targets.change(route_id, from_hash, write)
        await self._notify(route_id)
        return changed

    async def set_enabled(self, route_id: int, enabled: bool, now: int | None = None) -> Route:
        return await self.update(route_id, enabled=enabled, now=now)

    async def rotate_secret(self, route_id: int, now: int | None = None) -> str:
        """A new signing secret, shown this once. The table does not hold secrets; the version still moves."""
        secret = await self.targets.rotate_secret(route_id, now, lambda pipe: self._bump(pipe, route_id))
        await self._notify(route_id)
        return secret

    def _bump(self, pipe: AsyncPipeline, route_id: int) -> None:
        pipe.incr(self.keys.routes_version())
        if not self.keys.cluster:
            pipe.publish(self.keys.routes_channel(), str(route_id))

    async def _notify(self, route_id: int) -> None:
        """The cluster's notification, after the MULTI (one Redis sends it inside)."""
        if self.keys.cluster:
            await self.redis.publish(self.keys.routes_channel(), str(route_id))

    async def delete(self, route_id: int) -> int:
        """Removes the route, its attempts and its dead letters: 1, or 0 when there was no such route."""
        removed = await self.targets.delete(route_id, lambda pipe: self._announce(pipe, None, route_id))
        await self._notify(route_id)
        return removed
