"""The service's asyncio Redis Cluster client (store/connections.py `RedisCluster`) on a cluster of the test's
own: trouble with one slot must not break what is in flight on other nodes. redis-py's own client closes every
connection when a command meets CLUSTERDOWN (a slot not served: a primary down without full coverage, or a
failover), so a blocking stream read on a healthy node failed with "Connection closed" (every partition of the
delivery pump broke whenever any node failed over)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
import redis
import redis.asyncio.cluster

from adapter.settings import Settings
from adapter.store.connections import async_redis
from adapter.store.slots import slot
from adapter_devtools.chaos.cluster import running_cluster

pytestmark = pytest.mark.single_redis  # a cluster of its own (it hurts it), in the one-Redis pass only


async def test_a_slot_not_served_does_not_break_reads_on_other_nodes() -> None:
    with tempfile.TemporaryDirectory() as tmp, running_cluster(Path(tmp), Path(tmp)) as cluster:
        entry = cluster.entry.port
        nodes = {n.port: n for n in cluster.primaries()}
        lost = "lost-key"  # its slot will be served by nobody
        owner = redis.Redis(port=next(p for p, n in nodes.items() if _serves(p, slot(lost))))
        owner.config_set("cluster-require-full-coverage", "no")
        for p in nodes:
            with redis.Redis(port=p) as node:
                node.config_set("cluster-require-full-coverage", "no")
        stream = next(f"s{i}" for i in range(1000) if not _serves(owner.connection_pool.connection_kwargs["port"],
                                                                   slot(f"s{i}")))
        settings = Settings.from_env({"ADAPTER_REDIS_URL": f"redis+cluster://127.0.0.1:{entry}/0",
                                      "ADAPTER_RQ_REDIS_URL": "redis://127.0.0.1:1/0"}, dotenv=None)

        async def go() -> tuple[object, BaseException | None]:
            client = async_redis(settings, decode=False)
            try:
                await client.xgroup_create(stream, "g", id="$", mkstream=True)
                await client.set(lost, 1)
                owner.execute_command("CLUSTER", "DELSLOTS", slot(lost))  # now nobody serves it
                read = asyncio.ensure_future(client.execute_command(
                    "XREADGROUP", "GROUP", "g", "c", "BLOCK", 1500, "STREAMS", stream, ">",
                    target_nodes=client.get_node_from_key(stream)))
                await asyncio.sleep(0.3)  # the read is blocked on its node
                trouble: BaseException | None = None
                try:
                    await client.get(lost)
                except redis.exceptions.RedisError as exc:
                    trouble = exc
                return await read, trouble
            finally:
                await client.aclose()

        result, trouble = await go()
        owner.close()
    assert isinstance(trouble, redis.exceptions.ClusterDownError), trouble
    assert not result  # the blocked read ran its course (nothing arrived); before, it failed: connection closed


def _serves(port: int, s: int) -> bool:
    with redis.Redis(port=port) as node:
        ranges = node.execute_command("CLUSTER", "SLOTS")
    return any(start <= s <= end and primary[1] == port for start, end, primary, *_ in ranges)
