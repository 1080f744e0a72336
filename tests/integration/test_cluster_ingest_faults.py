"""The ingest (and the probes) on a Redis Cluster of the test's own (tests/support/redis_cluster.py) while one
primary is dead or frozen: the events of devices whose slots live on the other primaries answer 200 throughout, only
the dead or frozen node's devices answer 503 (EMQX sends those again) until its replica takes over, and then they
answer 200 too (docs/cluster.md, "Under faults"). Meanwhile /readyz answers 503 naming the node, and /metrics answers
what the other nodes hold. The nodes run with `cluster-require-full-coverage no`, as docs/cluster.md advises:
otherwise every node refuses every command (CLUSTERDOWN) once the failure is agreed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from adapter.settings import Settings
from adapter.store.keys import Keys
from adapter.store.slots import slot
from tests.conftest import ADMIN_PASSWORD, INGEST_TOKEN
from tests.support.emqx import connected
from tests.support.redis_cluster import OwnCluster, own_cluster
from tests.support.servers import serve_api, wait_for

pytestmark = pytest.mark.single_redis  # each test builds and breaks a cluster of its own
FAILOVER_S = 30.0  # a generous bound for the replica's promotion (2-4 s at node timeout 2000 ms)


def settings_for(cluster: OwnCluster) -> Settings:
    return Settings.from_env({"ADAPTER_REDIS_URL": cluster.url, "ADAPTER_RQ_REDIS_URL": "redis://127.0.0.1:1/0",
                              "ADAPTER_INGEST_TOKEN": INGEST_TOKEN, "ADAPTER_ADMIN_PASSWORD": ADMIN_PASSWORD,
                              "ADAPTER_EMQX_API_URL": "http://127.0.0.1:9/api/v5"}, dotenv=None)


def devices_by_port(cluster: OwnCluster, keys: Keys) -> dict[int, list[str]]:
    """One device per partition, grouped by the port of the primary that serves its partition."""
    owners = {}
    for start, end, *nodes in _slots(cluster):
        for s in range(start, end + 1):
            owners[s] = int(nodes[0][1])
    out: dict[int, list[str]] = {}
    seen: set[int] = set()
    n = 0
    while len(seen) < keys.cluster_partitions:
        sn = f"F{n}"
        n += 1
        p = keys.shard(sn)
        if p not in seen:
            seen.add(p)
            out.setdefault(owners[slot(keys.shard_tag(p))], []).append(sn)
    return out


def _slots(cluster: OwnCluster) -> list[list[object]]:
    import redis

    with redis.Redis(port=cluster.nodes[0].port, decode_responses=True) as r:
        return list(r.execute_command("CLUSTER SLOTS"))


@contextmanager
def running(cluster: OwnCluster) -> Iterator[tuple[str, dict[int, list[str]]]]:
    cfg = settings_for(cluster)
    with serve_api(cfg) as url:
        yield url, devices_by_port(cluster, Keys.of(cfg))


async def post(c: httpx.AsyncClient, sn: str, at: int) -> int:
    r = await c.post("/emqx/events", content=json.dumps(connected(sn, at)))
    assert r.status_code in (200, 503), r.text
    return r.status_code


def client(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {INGEST_TOKEN}"})


def victim_of(cluster: OwnCluster) -> int:
    """A primary the adapter's URL does not name (the client learns the topology from that one)."""
    return next(n.port for n in cluster.primaries() if n.port != cluster.nodes[0].port)


async def test_a_dead_primary_fails_only_its_own_devices() -> None:
    with own_cluster("--cluster-require-full-coverage", "no") as cluster, running(cluster) as (url, by_port):
        dead = victim_of(cluster)
        live = [sn for port, sns in by_port.items() if port != dead for sn in sns]
        gone = by_port[dead]
        node = next(n for n in cluster.nodes if n.port == dead)

        async def go() -> tuple[int, int, list[int]]:
            async with client(url) as c:
                assert {await post(c, sn, 1000) for sn in live + gone} == {200}
                node.kill()
                codes = [await post(c, sn, 2000) for sn in gone[:1]]  # the node is gone: its devices answer 503
                ready = await c.get("/readyz")  # not ready, and says which node; /metrics answers from the others
                assert ready.status_code == 503 and f"127.0.0.1:{dead}" in ready.json()["msg"], ready.text
                text = (await c.get("/metrics")).text
                assert f'redis_node_up{{node="127.0.0.1:{dead}"}} 0' in text, text
                assert text.count("redis_node_up{") == 3
                assert f'redis_node_errors_total{{node="127.0.0.1:{dead}"}}' in text
                rounds = 0
                while set(codes[-len(gone):]) != {200}:  # until its replica serves its slots
                    # all at once, so that live and dead nodes' commands share the batcher's flushes
                    got = await asyncio.gather(*(post(c, sn, 3000 + rounds) for sn in live + gone))
                    assert set(got[:len(live)]) == {200}, got
                    codes += got[len(live):]
                    rounds += 1
                    assert rounds < FAILOVER_S / 0.05, "the replica never took over"
                    await asyncio.sleep(0.05)
                assert (await c.get("/readyz")).status_code == 200  # the replica serves the node's slots
                return rounds, len(live), codes

        rounds, n_live, codes = await go()
        assert codes[0] == 503 and rounds >= 1 and n_live >= 2 * len(by_port[dead]) - 2
        assert 200 in codes and 503 in codes  # failed while the node was away, answered once its replica took over


async def test_a_frozen_primary_delays_only_its_own_devices() -> None:
    """A primary and its replica frozen (SIGSTOP): no failover can happen, the node's devices wait (then 503 at the
    node's deadline, or 200 once thawed); every other device answers 200 meanwhile."""
    with own_cluster("--cluster-require-full-coverage", "no") as cluster, running(cluster) as (url, by_port):
        port = victim_of(cluster)
        primary = next(n for n in cluster.nodes if n.port == port)
        replica = cluster.replica_of(primary)
        live = [sn for p, sns in by_port.items() if p != port for sn in sns]

        async def go() -> tuple[int, set[int]]:
            async with client(url) as c:
                assert {await post(c, sn, 1000) for sn in live + by_port[port]} == {200}
                primary.freeze()
                replica.freeze()
                try:
                    waiting = asyncio.ensure_future(post(c, by_port[port][0], 2000))
                    answered = set()
                    for k, sn in enumerate(live * 2):
                        answered.add(await post(c, sn, 2000 + k))
                        assert not waiting.done(), "the frozen node answered"
                finally:
                    replica.thaw()
                    primary.thaw()
                return await waiting, answered

        frozen, answered = await go()
        assert answered == {200} and frozen in (200, 503)
        cluster.wait_ok()
        with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {INGEST_TOKEN}"}) as c:
            wait_for(lambda: c.post("/emqx/events", content=json.dumps(connected(by_port[port][0], 9000)))
                     .status_code == 200, timeout=FAILOVER_S, what="the thawed node's devices to answer 200")
