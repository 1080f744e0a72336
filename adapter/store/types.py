"""The Redis client types: one Redis or a Redis Cluster (`redis+cluster://`), as store/connections.py builds them.
Code that takes a client annotates it with these; what works on both is the commands redis-py gives both."""

from __future__ import annotations

from typing import TypeAlias

import redis
import redis.asyncio
import redis.asyncio.client
import redis.asyncio.cluster
import redis.cluster

AsyncRedis: TypeAlias = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
SyncRedis: TypeAlias = redis.Redis | redis.cluster.RedisCluster
AsyncPipeline: TypeAlias = redis.asyncio.client.Pipeline | redis.asyncio.cluster.ClusterPipeline
