"""The Redis client types: one Redis or a Redis Cluster (`redis+cluster://`), as store/connections.py builds them.
Code that takes a client annotates it with these; what works on both is the commands redis-py gives both."""

from __future__ import annotations

from typing import Any, TypeAlias

import redis
import redis.asyncio
import redis.asyncio.client
import redis.asyncio.cluster
import redis.cluster

AsyncRedis: TypeAlias = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
SyncRedis: TypeAlias = redis.Redis | redis.cluster.RedisCluster
AsyncPipeline: TypeAlias = redis.asyncio.client.Pipeline | redis.asyncio.cluster.ClusterPipeline


def as_text(value: Any) -> str:
    """A Redis reply as str, whether the client decodes responses or not; None (a missing field) is ""."""
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else str(value)


def as_int(value: Any) -> int:
    """A Redis reply or hash field as int, whether the client decodes responses or not; 0 when missing or not a
    number ("12.0" reads as 12)."""
    text = as_text(value)
    try:
        return int(text or 0)
    except ValueError:
        try:
            return int(float(text))
        except ValueError:
            return 0
