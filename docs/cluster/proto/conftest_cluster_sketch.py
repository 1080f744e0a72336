"""Sketch (not run): tests/conftest.py for running the integration suite on a single Redis AND on a cluster.

A cluster has only DB 0, so isolation comes from a per-test KEY PREFIX instead of a DB number, and cleanup
deletes that prefix's keys on every primary (SCAN MATCH '<prefix>*' + UNLINK per node) instead of FLUSHDB.
The prefix goes into ADAPTER_KEY_PREFIX (settings.key_prefix); RQ's own `rq:*` keys use the queue names
from keys.queue(), so they carry the prefix too. Select the backend with TEST_REDIS_MODE=single|cluster
(`make test` runs both; CI: scripts/ensure-redis-cluster before the cluster run).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

MODE = os.environ.get("TEST_REDIS_MODE", "single")
CLUSTER_PORTS = [int(p) for p in os.environ.get("TEST_REDIS_CLUSTER_PORTS", "7101 7102 7103").split()]


def redis_url() -> str:
    if MODE == "cluster":
        return f"redis+cluster://127.0.0.1:{CLUSTER_PORTS[0]}/0"
    return f"redis://127.0.0.1:{int(os.environ.get('TEST_REDIS_PORT', '6379'))}/15"


def _client() -> redis.Redis | redis.RedisCluster:
    if MODE == "cluster":
        return redis.RedisCluster(host="127.0.0.1", port=CLUSTER_PORTS[0], decode_responses=True)
    return redis.Redis.from_url(redis_url(), decode_responses=True)


def _wipe(client: redis.Redis | redis.RedisCluster, prefix: str) -> None:
    nodes = client.get_primaries() if isinstance(client, redis.RedisCluster) else [None]
    for node in nodes:
        kw = {"target_nodes": node} if node is not None else {}
        cursor = 0
        while True:
            cursor, batch = client.execute_command("SCAN", cursor, "MATCH", f"{prefix}*", "COUNT", 1000, **kw)
            for key in batch:  # one key per call on a cluster: keys of one batch may be in many slots
                client.unlink(key)
            if int(cursor) == 0:
                break


@pytest.fixture
def key_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"  # unique per test: tests on one cluster never see each other's keys


@pytest.fixture
def redis_db(key_prefix: str) -> Iterator[redis.Redis | redis.RedisCluster]:
    client = _client()
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.fail(f"Redis does not answer at {redis_url()} (make test starts it)")
    yield client
    _wipe(client, key_prefix)
    client.close()

# settings fixture: add "ADAPTER_KEY_PREFIX": key_prefix and "ADAPTER_REDIS_URL": redis_url().
# Tests that spell keys read them through Keys(settings.key_prefix) (already the rule), so they follow.
# Tests that call FLUSHDB/FLUSHALL or SCRIPT FLUSH themselves need review (grep them); a SCRIPT FLUSH on a
# cluster must go to every primary (target_nodes=RedisCluster.ALL_PRIMARIES).
