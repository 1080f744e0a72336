"""The in-memory table of the ENABLED message routes that every API process matches each message against.

`match(topic)` is one dict lookup for the exact filters plus a walk of a trie holding only the wildcard
filters (topics.TopicIndex); the answers for the first MATCH_CACHE topics asked are remembered with the table
(devices publish on a few fixed topics each). A fleet with more topics than that still finds those first ones
remembered, where a least-recently-used cache would miss every topic as the devices report in turn; the rest
are matched in full each time.

The table is rebuilt whole from one atomic read of `routes:enabled` and `routes:version` (routes.py) and
swapped in with one assignment, so a match never sees half a change.

`follow` keeps it current: it subscribes to `routes:changed` first and loads after, so no change slips
between the two; then it reloads on every notification (a burst collapses into one reload) and, in case a
notification was lost (pub/sub is fire-and-forget: a dropped connection loses messages), whenever the
version it polls every `check_every` seconds differs from the one loaded.

What a change's answer promises (docs/delivery.md, "Route changes"):
- in the process that answered: the change's handler reloads the table (`refresh`) before answering, so every
  message ingested after the answer is matched against it;
- in every other process: before a message is matched, `fresh` makes sure the version the table was checked against
  was read from Redis at most MAX_AGE ago (the poll keeps it so; when the poll fell behind, the message's ingest reads
  the version itself, one read shared by the messages waiting for it, within CHECK_TIMEOUT). A message ingested
  MAX_AGE after a change's answer, in any process, is matched against the changed table. When that read fails
  (the node of the routes' slot does not answer, which also stops any route change from being answered), the table
  at hand is used and the miss counted (`stale_matches`).
Reloads are serialized (one at a time), so a reload that read older routes never replaces a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from operator import attrgetter

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from adapter.errors import AppError
from adapter.protocol.topics import TopicIndex, validate_filter
from adapter.store import faults
from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis, as_int, as_text

log = logging.getLogger("adapter.targets.route_table")

CHECK_EVERY = 0.25  # s between version polls
MAX_AGE = 0.5  # s: how old the version check a message is matched under may be, at most
CHECK_TIMEOUT = 0.25  # s a message's ingest waits for its own version check, at most
RETRY_DELAY = 1.0  # s before following again after Redis failed
WAKE_EVERY = 0.2  # s at most between looks at `stop`
MATCH_CACHE = 65_536  # topics whose matches are remembered, per table


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """What the ingest needs of a route to make a delivery: its id, and the filter that matched."""

    id: int
    topic: str


_by_id = attrgetter("id")


def build_index(enabled: Mapping[str, str]) -> TopicIndex[RouteInfo]:
    """The index of `routes:enabled` (id -> filter); entries that are not a route are skipped (logged)."""
    pairs = []
    for raw_id, topic in enabled.items():
        try:
            pairs.append((validate_filter(topic), RouteInfo(int(raw_id), topic)))
        except (AppError, ValueError):
            log.warning("route table: skipping %r -> %r: not a route", raw_id, topic)
    return TopicIndex.build(pairs)


class RouteTable:
    def __init__(self, keys: Keys, check_every: float = CHECK_EVERY, max_age: float = MAX_AGE) -> None:
        self.keys = keys
        self.check_every = check_every
        self.max_age = max_age
        self.version: int | None = None  # of the routes loaded; None until the first load
        self.reloads = 0
        self.checked_at = -math.inf  # monotonic time of the start of the last version read that the table matches
        self.stale_matches = 0  # version checks a message's ingest could not make (see the module)
        self._redis: AsyncRedis | None = None  # the client `refresh` and `follow` were given: `fresh` checks on it
        self._reload = asyncio.Lock()
        self._checking: asyncio.Task[None] | None = None
        self._failed_at = -math.inf
        # the index, and the answers it gave for the first MATCH_CACHE topics asked: a device publishes on the
        # same few topics again and again. Replaced together, in one assignment, by a reload.
        self._state: tuple[TopicIndex[RouteInfo], dict[str, tuple[RouteInfo, ...]]] = (TopicIndex(), {})

    def __len__(self) -> int:
        """The number of enabled routes loaded."""
        return len(self._state[0])

    def match(self, topic: str) -> tuple[RouteInfo, ...]:
        """The enabled routes whose filter matches the topic name, by id."""
        index, known = self._state
        found = known.get(topic)
        if found is None:
            hits = index.match(topic)
            found = tuple(sorted(hits, key=_by_id)) if hits else ()
            if len(known) < MATCH_CACHE:
                known[topic] = found
        return found

    def load(self, enabled: Mapping[str, str], version: int) -> None:
        """Replace the table with these routes (id -> filter) at this version."""
        self._state = (build_index(enabled), {})
        self.version = version
        self.reloads += 1

    async def refresh(self, redis: AsyncRedis) -> None:
        """Load the enabled routes and their version in one atomic read (after any reload under way)."""
        self._redis = redis
        async with self._reload:
            started = time.monotonic()
            async with redis.pipeline(transaction=True) as pipe:
                pipe.get(self.keys.routes_version())
                pipe.hgetall(self.keys.routes_enabled())
                raw_version, record = await pipe.execute()
            self.load({as_text(k): as_text(v) for k, v in record.items()}, as_int(raw_version))
            self.checked_at = started

    async def current_version(self, redis: AsyncRedis) -> int:
        return as_int(await redis.get(self.keys.routes_version()))

    async def check(self, redis: AsyncRedis) -> None:
        """Read the version; reload when it moved. The table then matches what Redis held when the read began."""
        started = time.monotonic()
        if await self.current_version(redis) != self.version:
            await self.refresh(redis)
        else:
            self.checked_at = max(self.checked_at, started)

    async def fresh(self) -> None:
        """Before a message is matched: the version check at most `max_age` old (see the module)."""
        now = time.monotonic()
        if now - self.checked_at <= self.max_age or self.version is None or now - self._failed_at < CHECK_TIMEOUT:
            return  # (never loaded: the message is refused, routed() says why)
        if self._redis is None:
            return
        if self._checking is None:
            self._checking = asyncio.get_running_loop().create_task(self._check_now(self._redis))
        await asyncio.shield(self._checking)

    async def _check_now(self, redis: AsyncRedis) -> None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await self.check(redis)
        except Exception as exc:
            if not faults.trouble(exc):
                raise
            self._failed_at = time.monotonic()
            self.stale_matches += 1
        finally:
            self._checking = None

    async def follow(self, redis: AsyncRedis, stop: asyncio.Event) -> None:
        """Keep the table current until `stop` is set; Redis failures are logged and followed again."""
        while not stop.is_set():
            try:
                await self._follow(redis, stop)
            except (RedisError, OSError) as exc:
                log.warning("route table: redis: %s; following again in %.0f s", exc, RETRY_DELAY)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_DELAY)

    async def _follow(self, redis: AsyncRedis, stop: asyncio.Event) -> None:
        if isinstance(redis, RedisCluster):
            await redis.initialize()  # a cluster pubsub finds its node in the slot map: load it first (no-op later)
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.keys.routes_channel())
            await self.refresh(redis)
            checked = time.monotonic()
            while not stop.is_set():
                if await pubsub.get_message(timeout=min(self.check_every, WAKE_EVERY)) is not None:
                    await _drain(pubsub)
                    await self.refresh(redis)
                elif time.monotonic() - checked >= self.check_every:
                    checked = time.monotonic()
                    await self.check(redis)
        finally:
            await pubsub.aclose()


async def _drain(pubsub: PubSub) -> None:
    """Consume the notifications already waiting: one reload answers all of them."""
    while await pubsub.get_message(timeout=0) is not None:
        pass
