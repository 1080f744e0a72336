"""Every Redis client the service builds (`async_redis`, `sync_redis`, `rq_redis`), and the shared clients of one
API process (`Services`), built in the app's lifespan and handed to handlers.

A `redis+cluster://` URL (settings.redis_cluster) gives a Redis Cluster client, typed `AsyncRedis` / `SyncRedis`;
RQ never runs on a cluster: its connection is `rq_redis` (ADAPTER_RQ_REDIS_URL, docs/cluster.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import redis.asyncio.cluster
import redis.cluster
import redis.exceptions

from adapter.http.metrics import MetricsBuffer
from adapter.settings import ConfigError, Settings, redact_url
from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis, SyncRedis

LAYOUT_SINGLE, LAYOUT_CLUSTER = "1", "2"  # the key layouts of adapter/store/keys.py (meta field `layout`)


@dataclass
class Services:
    settings: Settings
    keys: Keys
    redis: AsyncRedis
    extras: dict[str, Any] = field(default_factory=dict)
    metrics: MetricsBuffer = field(default_factory=MetricsBuffer)

    async def aclose(self) -> None:
        for extra in self.extras.values():
            close = getattr(extra, "aclose", None)
            if close is not None:
                await close()
        await self.redis.aclose()


def texts(record: Mapping[Any, Any]) -> dict[str, str]:
    """A Redis hash as str -> str (the clients decode responses; this tells the type checker)."""
    return {str(k): str(v) for k, v in record.items()}


def plain_url(url: str) -> str:
    """The URL redis-py reads: `redis+cluster://h:p` -> `redis://h:p` (`rediss+cluster` -> `rediss`)."""
    scheme, sep, rest = url.partition("://")
    return scheme.removesuffix("+cluster") + sep + rest


def async_redis(settings: Settings, *, decode: bool = True, socket_timeout: float = 5,
                max_connections: int | None = None) -> AsyncRedis:
    """The one way this service builds an asyncio Redis client. With `max_connections`, callers beyond it wait
    for a connection (up to 10 s) instead of opening more (the delivery pump); on a cluster it is the cap per
    node (a caller beyond it gets MaxConnectionsError: redis-py's cluster nodes have no blocking pool)."""
    options: dict[str, Any] = {"decode_responses": decode, "socket_connect_timeout": 2,
                               "socket_timeout": socket_timeout, "health_check_interval": 30}
    if settings.redis_cluster:
        if max_connections is not None:
            options["max_connections"] = max_connections
        return redis.asyncio.cluster.RedisCluster.from_url(plain_url(settings.redis_url), **options)
    if max_connections is None:
        return aioredis.Redis.from_url(settings.redis_url, **options)
    pool = aioredis.BlockingConnectionPool.from_url(settings.redis_url, max_connections=max_connections,
                                                    timeout=10, **options)
    return aioredis.Redis.from_pool(pool)  # closes the pool with the client


def sync_redis(settings: Settings, *, decode: bool = True) -> SyncRedis:
    options: dict[str, Any] = {"decode_responses": decode, "socket_connect_timeout": 2, "socket_timeout": 10}
    if settings.redis_cluster:
        return redis.cluster.RedisCluster.from_url(plain_url(settings.redis_url), **options)
    return redis.Redis.from_url(settings.redis_url, **options)


def rq_redis(settings: Settings) -> redis.Redis:
    """RQ's connection: ADAPTER_RQ_REDIS_URL (one Redis; by default the service's own). RQ wants a client that
    does not decode, and cannot run on a cluster."""
    return redis.Redis.from_url(settings.rq_url, socket_connect_timeout=2, socket_timeout=10)


def check_redis(settings: Settings) -> None:
    """Fail with one line when Redis does not answer, or holds a store of another key layout (used before a
    process starts serving: `adapter api`, `adapter worker`, `adapter user`)."""
    try:
        client = sync_redis(settings)  # a cluster client connects here, to learn the slot map
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
        raise ConfigError(f"Redis at {redact_url(settings.redis_url)} does not answer: {exc}") from None
    try:
        client.ping()
        check_layout(client, settings)
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
        raise ConfigError(f"Redis at {redact_url(settings.redis_url)} does not answer: {exc}") from None
    finally:
        client.close()
    if settings.rq_url != settings.redis_url:
        rq = rq_redis(settings)
        try:
            rq.ping()
        except redis.exceptions.RedisError as exc:
            raise ConfigError(f"ADAPTER_RQ_REDIS_URL {redact_url(settings.rq_url)} does not answer: {exc}") from None
        finally:
            rq.close()


def check_layout(client: SyncRedis, settings: Settings) -> None:
    """The store's meta hash (keys.meta(): `layout`, `partitions`) against the settings. A cluster store gets it on
    its first start; a single-Redis store has none (layout 1). A store of another layout, or a cluster store of
    another partition count, is refused: its keys are not where this process would look."""
    keys = Keys.of(settings)
    want_layout = LAYOUT_CLUSTER if keys.cluster else LAYOUT_SINGLE
    want_partitions = str(keys.cluster_partitions)
    if keys.cluster:  # first start: write it (HSETNX, so two processes starting at once agree)
        client.hsetnx(keys.meta(), "layout", want_layout)
        client.hsetnx(keys.meta(), "partitions", want_partitions)
    meta = texts(client.hgetall(keys.meta()))
    layout = meta.get("layout", LAYOUT_SINGLE)
    if layout != want_layout:
        have = "a Redis Cluster" if layout == LAYOUT_CLUSTER else "a single-Redis"
        raise ConfigError(f"Redis at {redact_url(settings.redis_url)} holds {have} store (key layout {layout}, "
                          f"{keys.meta()}); this process uses layout {want_layout}: the keys must be migrated "
                          f"(docs/cluster.md)")
    if keys.cluster and meta.get("partitions") != want_partitions:
        raise ConfigError(f"ADAPTER_CLUSTER_PARTITIONS is {want_partitions}, but the store at "
                          f"{redact_url(settings.redis_url)} was written with {meta.get('partitions')} partitions "
                          f"({keys.meta()}); it cannot change without re-keying every device (docs/cluster.md)")


def build_services(settings: Settings) -> Services:
    return Services(settings=settings, keys=Keys.of(settings), redis=async_redis(settings))


def rq_connection(svc: Services) -> redis.Redis:
    """The API process's one RQ connection, for enqueueing jobs (`rq_redis`)."""
    conn = svc.extras.get("rq")
    if not isinstance(conn, redis.Redis):
        conn = svc.extras["rq"] = rq_redis(svc.settings)
    return conn
