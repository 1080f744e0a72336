"""The two stores of a migration: their clients, their layouts, a walk over their keys, and what refuses a migration
before anything is written (docs/cluster.md "Moving a store between layouts")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
import redis.cluster

from adapter.errors import AppError
from adapter.migrate.mapping import Move, classify, move_of
from adapter.settings import ConfigError, Settings, redact_url
from adapter.store.connections import LAYOUT_CLUSTER
from adapter.store.connections import sync_redis as build_client
from adapter.store.keys import Keys
from adapter.store.types import as_text

PUMP_ALIVE_MS = 60_000  # a pump heartbeat younger than this: a worker is running (heartbeats come every second)


def refuse(msg: str) -> AppError:
    """A migration that must not run: one line, exit 2 (adapter/cli.py)."""
    return AppError("conflict", msg)


@dataclass
class Store:
    """One side of a migration: a client that does not decode (DUMP payloads are bytes) and the layout's keys."""

    url: str
    client: Any  # redis.Redis | redis.cluster.RedisCluster
    keys: Keys

    @property
    def name(self) -> str:
        return redact_url(self.url)

    @property
    def layout(self) -> str:
        return f"cluster, {self.keys.cluster_partitions} partitions" if self.keys.cluster else "one Redis"

    def nodes(self) -> list[redis.Redis]:
        """A client per node whose keys a walk reads: the primaries of a cluster (by name), or the one Redis."""
        if isinstance(self.client, redis.cluster.RedisCluster):
            primaries = sorted(self.client.get_primaries(), key=lambda n: n.name)
            return [self.client.get_redis_connection(n) for n in primaries]
        return [self.client]

    def scan(self, node: int, cursor: int, count: int) -> tuple[int, list[str]]:
        """One SCAN page of the keys under the prefix on node `node`."""
        nxt, found = self.nodes()[node].scan(cursor, match=_glob(self.keys.prefix) + ":*", count=count)
        return int(nxt), [k.decode() if isinstance(k, bytes) else str(k) for k in found]

    def walk(self, count: int = 1000) -> Iterator[str]:
        """Every key under the prefix (a key may come twice: SCAN's guarantee)."""
        for node in range(len(self.nodes())):
            cursor = 0
            while True:
                cursor, found = self.scan(node, cursor, count)
                yield from found
                if cursor == 0:
                    break

    def any_key(self) -> str | None:
        return next(self.walk(), None)

    def close(self) -> None:
        self.client.close()



def _glob(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def open_store(url: str, prefix: str, partitions: int, what: str) -> Store:
    """A client of `url` (`--from` / `--to`), whose scheme gives the layout: `redis+cluster://` a cluster with
    `partitions`, anything else one Redis."""
    settings = Settings(redis_url=url, key_prefix=prefix, cluster_partitions=partitions,
                        rq_redis_url="redis://127.0.0.1:6379/0")  # RQ's Redis is not the migration's business
    try:
        settings.check_basic()
    except ConfigError as exc:
        raise ConfigError(f"{what}: {str(exc).replace('ADAPTER_REDIS_URL ', '')}") from None
    client = None
    try:
        client = build_client(settings, decode=False)
        client.ping()
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
        if client is not None:
            client.close()
        raise ConfigError(f"{what} {redact_url(url)} does not answer: {exc}") from None
    return Store(url, client, Keys(prefix, partitions if settings.redis_cluster else 0))


def open_source(url: str, prefix: str) -> Store:
    """The store at `--from`, with its layout: one Redis, or a cluster with the partitions of its meta hash."""
    source = open_store(url, prefix, Settings.cluster_partitions, "--from")
    if not source.keys.cluster:
        return source
    meta = {as_text(k): as_text(v) for k, v in source.client.hgetall(source.keys.meta()).items()}
    if meta.get("layout") != LAYOUT_CLUSTER or not meta.get("partitions", "").isdigit():
        source.close()
        raise refuse(f"--from {source.name} holds no store under the prefix {prefix!r} (no {source.keys.meta()})")
    source.keys = Keys(prefix, int(meta["partitions"]))
    return source


@dataclass
class Survey:
    """What a walk over the source found before anything is written."""

    keys: int = 0
    unknown: int = 0
    unknown_sample: str = ""
    backlog: int = 0
    backlog_key: str = ""
    live: str = ""  # a key that says a process is running
    pending_batch: str = ""  # a rollout whose driver reserved command ids and died before writing the commands


def survey(source: Store, target: Keys, now_ms: int | None = None) -> Survey:
    """Walk the source: count its keys, find undelivered deliveries and the marks of running processes."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    out = Survey()
    for key in source.walk():
        out.keys += 1
        found = classify(key, source.keys.prefix)
        if found is None:
            out.unknown += 1
            out.unknown_sample = out.unknown_sample or key
            continue
        name = found.rule.name
        if name in ("delivery_lease", "stats_lease", "rollout_driver") and not out.live:
            out.live = key
        elif name == "delivery_pumps":
            beats = source.client.zrangebyscore(key, now_ms - PUMP_ALIVE_MS, "+inf")
            if beats and not out.live:
                out.live = f"{key} (a pump's heartbeat {max(0, now_ms - _last(source, key)) / 1000:.0f} s ago)"
        elif name == "rollout" and as_text(source.client.hget(key, "pending")) not in ("", "[]"):
            out.pending_batch = out.pending_batch or key
        elif move_of(found, target) is Move.BACKLOG:
            n = _backlog(source, key, name)
            if n:
                out.backlog += n
                out.backlog_key = out.backlog_key or key
    if not source.keys.cluster and source.client.scard("rq:workers") and not out.live:
        out.live = "rq:workers (registered RQ workers)"
    return out


def _last(source: Store, key: str) -> int:
    top = source.client.zrange(key, -1, -1, withscores=True)
    return int(top[0][1]) if top else 0


def _backlog(source: Store, key: str, name: str) -> int:
    """Undelivered entries of a delivery stream (lag + pending of the pumps' group; every entry when it has no
    group), or the members of a retry set, a hold list or the set of hold lists."""
    kind = source.client.type(key)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind == "zset":
        return int(source.client.zcard(key))
    if kind == "list":
        return int(source.client.llen(key))
    if kind == "set":
        return int(source.client.scard(key))
    if kind != "stream":
        return 0
    groups = source.client.xinfo_groups(key)
    if not groups:
        return int(source.client.xlen(key))
    total = 0
    for g in groups:
        lag = g.get("lag")
        total += int(g.get("pending") or 0) + (int(source.client.xlen(key)) if lag is None else int(lag))
    return total
