"""Every Redis client the service builds (`async_redis`, `sync_redis`, `rq_redis`), and the shared clients of one
API process (`Services`), built in the app's lifespan and handed to handlers.

A `redis+cluster://` URL (settings.redis_cluster) gives a Redis Cluster client, typed `AsyncRedis` / `SyncRedis`;
RQ never runs on a cluster: its connection is `rq_redis` (ADAPTER_RQ_REDIS_URL, docs/cluster.md).

How a one-Redis client treats its pooled connections (redis-py 8.1; docs/reliability.md), so that a connection the
server closed while it sat idle (a restart, a failover, `timeout`) is not what a call fails on:
- maintenance notifications off (`NO_MAINT`): with redis-py's default ("auto") its pools skip the check that drops a
  pooled connection the server has closed (`can_read` in `get_connection`) and hand it out; this service uses
  none of what they are for (Redis Enterprise's push notifications of a coming failover);
- `RETRY`: a call that fails on a broken connection is sent once more, at once, on a fresh one (redis-py's
  `from_url` clients retry nothing otherwise). Not on a timeout: a call that timed out may still run (a paused or
  busy Redis runs it later) and sending it again only adds load; the service's loops wait out longer trouble
  themselves (adapter/store/outage.py). A call sent twice is harmless here: the scripts are idempotent
  (docs/design.md §4; lifecycle.lua `record` by its send token), a repeated INCRBY of command ids leaves a gap;
- `health_check_interval` 30 s: a connection idle that long is PINGed before its next call, which finds one whose
  peer vanished without closing it (a host gone from the network) before a call is lost on it.
The cluster client keeps redis-py's cluster-level retries (they refresh the slot map); the cluster batcher sends a
round once more itself (adapter/store/batcher.py `exchange`), as does the batcher on one Redis.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.cluster
import redis.exceptions
import redis.retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

from adapter.settings import ConfigError, Settings, cluster_seeds, redact_url
from adapter.store.batcher import Batcher, Batching, Confirm
from adapter.store.cluster_batcher import ClusterBatcher
from adapter.store.keys import Keys
from adapter.store.metrics import MetricsBuffer
from adapter.store.scripts import Script
from adapter.store.types import AsyncRedis, SyncRedis

LAYOUT_SINGLE, LAYOUT_CLUSTER = "1", "2"  # the key layouts of adapter/store/keys/ (meta field `layout`)
HEALTH_CHECK_S = 30


def _single(*, sync: bool) -> dict[str, Any]:
    """The options of a one-Redis client (see the module)."""
    retry_class = redis.retry.Retry if sync else redis.asyncio.retry.Retry
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False),
            "retry": retry_class(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
            "health_check_interval": HEALTH_CHECK_S}


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


def batcher_for(client: AsyncRedis, scripts: Iterable[Script] = (), confirm: Confirm | None = None) -> Batching:
    """The batcher of `client`: one connection of its pool on one Redis, routed by slot on a cluster; with `confirm`,
    a round is answered once replicas have it (batcher.Confirm)."""
    if isinstance(client, redis.asyncio.Redis):
        return Batcher(client, scripts, confirm)
    return ClusterBatcher(client, scripts, confirm)


def texts(record: Mapping[Any, Any]) -> dict[str, str]:
    """A Redis hash as str -> str (the clients decode responses; this tells the type checker)."""
    return {str(k): str(v) for k, v in record.items()}


def plain_url(url: str) -> str:
    """The URL redis-py reads: `redis+cluster://h:p` -> `redis://h:p` (`rediss+cluster` -> `rediss`); of a seed
    list (`redis+cluster://h1:p1,h2:p2`) its first seed (settings.cluster_seeds)."""
    if url.partition("://")[0].endswith("+cluster"):
        return cluster_seeds(url)[0]
    return url


class RedisCluster(redis.asyncio.cluster.RedisCluster):
    """redis-py's asyncio cluster client, but for one thing: its own recovery from CLUSTERDOWN, a slot not served,
    too many MOVED answers or a pipeline's retry calls `aclose()`, which closes every connection of the client and
    so breaks every command in flight on every node, not only the troubled slot's (a failover stopped every
    partition of the delivery pump). Here those internal calls only mark the slot map for reloading (what the
    close was for: the next command loads it); `aclose()` from anywhere else closes the client as before."""

    async def aclose(self) -> None:
        caller = sys._getframe(1).f_code
        if caller.co_filename == redis.asyncio.cluster.__file__ and caller.co_name in _RESETS:
            self._initialize = True
            return
        await super().aclose()
        # redis-py closes nothing while its slot map is marked for reloading: close every node's connections anyway
        await self.nodes_manager.aclose()
        await self.nodes_manager.aclose("startup_nodes")


_RESETS = frozenset({"_execute_command", "execute"})  # redis-py's calls of aclose() to recover, not to close


def async_redis(settings: Settings, *, decode: bool = True, socket_timeout: float = 5,
                max_connections: int | None = None, retries: int | None = None) -> AsyncRedis:
    """The one way this service builds an asyncio Redis client. With `max_connections`, callers beyond it wait
    for a connection (up to 10 s) instead of opening more (the delivery pump); on a cluster it is the cap per
    node (a caller beyond it gets MaxConnectionsError: redis-py's cluster nodes have no blocking pool).
    `retries`: how often redis-py itself sends a command again after a connection error or timeout (otherwise: on
    one Redis once after a broken connection, see the module; on a cluster redis-py's default). 0 for a command that
    must not run twice unseen: a retried XREADGROUP whose first reply was lost has already delivered its entries to
    the group, and the retry reads past them (the pump's reads)."""
    options: dict[str, Any] = {"decode_responses": decode, "socket_connect_timeout": 2,
                               "socket_timeout": socket_timeout, "health_check_interval": HEALTH_CHECK_S}
    if not settings.redis_cluster:
        options |= _single(sync=False)
    if retries is not None:
        options["retry"] = redis.asyncio.retry.Retry(NoBackoff(), retries)
    if settings.redis_cluster:
        if max_connections is not None:
            options["max_connections"] = max_connections
        # a MOVED answer patches the slot map (one slot); redis-py's default also closes the whole client every 5th
        # one (reinitialize_steps), which breaks every command in flight on every node (seen under a reshard)
        options["reinitialize_steps"] = 0
        seeds = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in cluster_seeds(settings.redis_url)[1]]
        return RedisCluster.from_url(plain_url(settings.redis_url), startup_nodes=seeds, **options)
    if max_connections is None:
        return aioredis.Redis.from_url(settings.redis_url, **options)
    pool = aioredis.BlockingConnectionPool.from_url(settings.redis_url, max_connections=max_connections,
                                                    timeout=10, **options)
    return aioredis.Redis.from_pool(pool)  # closes the pool with the client


def sync_redis(settings: Settings, *, decode: bool = True) -> SyncRedis:
    options: dict[str, Any] = {"decode_responses": decode, "socket_connect_timeout": 2, "socket_timeout": 10}
    if settings.redis_cluster:
        seeds = [redis.cluster.ClusterNode(h, p) for h, p in cluster_seeds(settings.redis_url)[1]]
        return redis.cluster.RedisCluster.from_url(plain_url(settings.redis_url), startup_nodes=seeds, **options)
    return redis.Redis.from_url(settings.redis_url, **options, **_single(sync=True))


def rq_redis(settings: Settings) -> redis.Redis:
    """RQ's connection: ADAPTER_RQ_REDIS_URL (one Redis; by default the service's own). RQ wants a client that
    does not decode, and cannot run on a cluster."""
    return redis.Redis.from_url(settings.rq_url, socket_connect_timeout=2, socket_timeout=10, **_single(sync=True))


def check_redis(settings: Settings) -> None:
    """Fail with one line when Redis does not answer, or holds a store of another key layout, or RQ's Redis does not
    answer or is a cluster node (used before a process starts serving: `adapter api`, `adapter worker`,
    `adapter user`)."""
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
            clustered = str(rq.info("cluster").get("cluster_enabled", 0)) == "1"
        except redis.exceptions.RedisError as exc:
            raise ConfigError(f"ADAPTER_RQ_REDIS_URL {redact_url(settings.rq_url)} does not answer: {exc}") from None
        finally:
            rq.close()
        if clustered:
            raise ConfigError(f"ADAPTER_RQ_REDIS_URL {redact_url(settings.rq_url)} is a node of a Redis Cluster: RQ "
                              f"needs one plain Redis (docs/cluster.md)")


def check_layout(client: SyncRedis, settings: Settings) -> None:
    """The store's meta hash (keys.meta(): `layout`, `partitions`) against the settings. A cluster store gets it on
    its first start; a single-Redis store has none (layout 1). A store of another layout, or a cluster store of
    another partition count, is refused: its keys are not where this process would look."""
    keys = Keys.of(settings)
    want_layout = LAYOUT_CLUSTER if keys.cluster else LAYOUT_SINGLE
    want_partitions = str(keys.cluster_partitions)
    other = other_spelling(client, keys)
    if other is not None and not client.exists(keys.meta()):
        have = "a single-Redis" if keys.cluster else "a Redis Cluster"
        raise ConfigError(f"Redis at {redact_url(settings.redis_url)} holds {have} store ({other} exists: keys "
                          f"spelled for the other layout); this process uses layout {want_layout}: the keys must be "
                          f"migrated: adapter store migrate (docs/cluster.md)")
    if client.exists(keys.migration()):
        raise ConfigError(f"Redis at {redact_url(settings.redis_url)} holds an unfinished migration "
                          f"({keys.migration()}): run the same `adapter store migrate` again to finish it "
                          f"(docs/cluster.md)")
    if keys.cluster:  # first start: write it (HSETNX, so two processes starting at once agree)
        client.hsetnx(keys.meta(), "layout", want_layout)
        client.hsetnx(keys.meta(), "partitions", want_partitions)
    meta = texts(client.hgetall(keys.meta()))
    layout = meta.get("layout", LAYOUT_SINGLE)
    if layout != want_layout:
        have = "a Redis Cluster" if layout == LAYOUT_CLUSTER else "a single-Redis"
        raise ConfigError(f"Redis at {redact_url(settings.redis_url)} holds {have} store (key layout {layout}, "
                          f"{keys.meta()}); this process uses layout {want_layout}: the keys must be migrated "
                          f"(adapter store migrate, docs/cluster.md)")
    if keys.cluster and meta.get("partitions") != want_partitions:
        raise ConfigError(f"ADAPTER_CLUSTER_PARTITIONS is {want_partitions}, but the store at "
                          f"{redact_url(settings.redis_url)} was written with {meta.get('partitions')} partitions "
                          f"({keys.meta()}); it cannot change without re-keying every device (adapter store "
                          f"migrate, docs/cluster.md)")


def other_spelling(client: SyncRedis, keys: Keys) -> str | None:
    """A key of the store as the other layout spells it (its meta hash, its users, its first device index shard, its
    callbacks), if one exists: a store written by the other layout, which has no meta hash of this one's spelling."""
    other = Keys(keys.prefix, 0 if keys.cluster else Settings.cluster_partitions, keys.stream_partitions)
    for key in (other.meta(), other.users(), other.devices(0), other.targets("callback")):
        if client.exists(key):
            return key
    return None


def build_services(settings: Settings) -> Services:
    return Services(settings=settings, keys=Keys.of(settings), redis=async_redis(settings))


def rq_connection(svc: Services) -> redis.Redis:
    """The API process's one RQ connection, for enqueueing jobs (`rq_redis`)."""
    conn = svc.extras.get("rq")
    if not isinstance(conn, redis.Redis):
        conn = svc.extras["rq"] = rq_redis(svc.settings)
    return conn
