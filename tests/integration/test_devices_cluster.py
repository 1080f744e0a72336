"""The device read side on a real 3-primary Redis Cluster (48 index shards), compared with a sorted reference.

Skipped unless TEST_REDIS_CLUSTER_PORTS is set (e.g. "7131 7132 7133", started with ensure-redis-cluster).
Self-contained: a unique key prefix per test, its keys SCANned and UNLINKed on every primary at the end.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio.cluster as acluster

from adapter.devices import reads, sharded
from adapter.store.keys import Keys
from tests.conftest import on_cluster

PORTS = [int(p) for p in os.environ.get("TEST_REDIS_CLUSTER_PORTS", "").split()]
pytestmark = pytest.mark.skipif(not PORTS, reason="TEST_REDIS_CLUSTER_PORTS not set")
DEVICES = 3000


@pytest.fixture
def cluster(cluster_prefix: str) -> Iterator[tuple[redis.RedisCluster, Keys]]:
    client = redis.RedisCluster(host="127.0.0.1", port=PORTS[0], decode_responses=True)
    yield client, Keys(cluster_prefix, cluster_partitions=48)
    client.close()


def load(client: redis.RedisCluster, keys: Keys, n: int) -> tuple[list[str], set[str], dict[str, list[str]]]:
    """n devices, a third online; every tenth a gateway with 3 peripherals on gateway ids G0..G4."""
    rng = random.Random(7)
    sns = sorted({f"SN{rng.randrange(16**6):06X}" for _ in range(n)})
    online = {s for s in sns if rng.random() < 1 / 3}
    peris: dict[str, list[str]] = {}
    with client.pipeline(transaction=False) as pipe:
        for s in sns:
            p = keys.shard(s)
            pipe.hset(keys.client(s), mapping={"device": "1", "online": "1" if s in online else "0",
                                               "activeTime": "5", "version": "2"})
            pipe.zadd(keys.devices(p), {s: 0})
            pipe.zadd(keys.devices_online(p) if s in online else keys.devices_offline(p), {s: 0})
            if rng.random() < 0.1:
                for nid in ("a", "b/c", "z"):
                    gw, member = f"G{rng.randrange(5)}", f"{s}/{nid}"
                    peris.setdefault(gw, []).append(member)
                    pipe.hset(keys.peripheral(s, nid), mapping={"nId": nid, "gwId": gw, "sn": s,
                                                               "online": "1" if s in online else "0"})
                    pipe.zadd(keys.peripherals(p), {member: 0})
                    pipe.zadd(keys.peripherals_of_gw(gw, p), {member: 0})
                    pipe.zadd(keys.peripherals_online(p) if s in online else keys.peripherals_offline(p),
                              {member: 0})
        pipe.execute()
    return sns, online, {gw: sorted(m) for gw, m in peris.items()}


async def run(coro: Any) -> Any:
    return await on_cluster(coro, decode_responses=True)


async def test_device_pages_counts_and_one_device_match_the_reference(cluster: tuple[redis.RedisCluster, Keys]) -> None:
    client, keys = cluster
    sns, online, _ = load(client, keys, DEVICES)
    on = [s for s in sns if s in online]
    off = [s for s in sns if s not in online]
    mid = sns[len(sns) // 2][:4]
    with_prefix = [s for s in sns if s.startswith(mid)]

    async def check(r: acluster.RedisCluster) -> None:
        for limit in (100, 37):
            for filt, ref in ((None, sns), (True, on), (False, off)):
                last = -(-len(ref) // limit)
                for page in range(1, last + 2):
                    got = await reads.device_page(r, keys, page=page, limit=limit, online=filt)
                    want = ref[(page - 1) * limit:page * limit]
                    assert got.total == len(ref)
                    assert [d["sn"] for d in got.items] == want, (filt, page, limit)
                    assert all(d["online"] == (d["sn"] in online) for d in got.items)
        for page in (1, 2, 3):
            got = await reads.device_page(r, keys, page=page, limit=10, sn=mid)
            assert got.total == len(with_prefix)
            assert [d["sn"] for d in got.items] == with_prefix[(page - 1) * 10:page * 10]
        assert await reads.device_counts(r, keys) == {"online": len(on), "offline": len(off), "total": len(sns)}
        one = await reads.device(r, keys, sns[5])
        assert one is not None and one["sn"] == sns[5] and one["version"] == 2
        assert await reads.device(r, keys, "NOPE") is None

    await run(check)


async def test_deep_pages_stay_exact_with_anchors_and_changes(cluster: tuple[redis.RedisCluster, Keys]) -> None:
    client, keys = cluster
    sns, _, _ = load(client, keys, 6000)
    limit = 20

    async def check(r: acluster.RedisCluster) -> None:
        for page in (120, 121, 200, 150):  # the first leaves an anchor, the next ones start from it
            got = await reads.device_page(r, keys, page=page, limit=limit)
            assert [d["sn"] for d in got.items] == sns[(page - 1) * limit:page * limit]
        assert client.zcard(keys.page_anchors("devices")) >= 1
        gone = sns[:500]  # devices before every anchor leave: the anchors' ranks are stale now
        for s in gone:
            client.zrem(keys.devices(keys.shard(s)), s)
            client.unlink(keys.client(s))
        now = sns[500:]
        for page in (120, 121, 200, 150, 1):
            got = await reads.device_page(r, keys, page=page, limit=limit)
            assert got.total == len(now)
            assert [d["sn"] for d in got.items] == now[(page - 1) * limit:page * limit], page

    await run(check)


async def test_anchors_left_by_another_process_are_read_back(cluster: tuple[redis.RedisCluster, Keys]) -> None:
    """A process whose copy of the anchor set is empty (just started, or its copy expired) loads the set that
    others left in Redis: ZRANGE WITHSCORES answered in RESP3 (redis-py 8's default) as pairs, not flat."""
    client, keys = cluster
    sns, _, _ = load(client, keys, 6000)
    limit = 20

    async def check(r: acluster.RedisCluster) -> None:
        for page in (160, 250):
            await reads.device_page(r, keys, page=page, limit=limit)
        assert client.zcard(keys.page_anchors("devices")) >= 1
        sharded._anchor_copies.clear()
        for page in (161, 251, 170):
            got = await reads.device_page(r, keys, page=page, limit=limit)
            assert [d["sn"] for d in got.items] == sns[(page - 1) * limit:page * limit], page
        copy = sharded._anchor_copies[keys.page_anchors("devices")]
        assert copy.members and all(isinstance(m, str) for m in copy.members)

    await run(check)


async def test_prefix_pages_after_a_remembered_one_stay_exact_as_devices_come_and_go(
        cluster: tuple[redis.RedisCluster, Keys]) -> None:
    client, keys = cluster
    sns, _, _ = load(client, keys, 6000)
    prefix = "SN"  # every device: pages deep into a prefix's range
    limit = 25

    async def check(r: acluster.RedisCluster) -> None:
        for ref in (sns, sns[300:]):
            for page in (20, 21, 22, 40, 21, 1):  # 21 and 22 start from the page before; 21 again from itself
                got = await reads.device_page(r, keys, page=page, limit=limit, sn=prefix)
                assert got.total == len(ref)
                assert [d["sn"] for d in got.items] == ref[(page - 1) * limit:page * limit], page
            for s in sns[:300]:  # devices before the remembered pages leave: the hints' ranks are stale now
                client.zrem(keys.devices(keys.shard(s)), s)
                client.unlink(keys.client(s))
        assert (keys.page_anchors("devices"), prefix) in sharded._prefix_copies  # the pages were remembered

    await run(check)


async def test_peripheral_pages_match_the_reference(cluster: tuple[redis.RedisCluster, Keys]) -> None:
    client, keys = cluster
    _, online, by_gw = load(client, keys, DEVICES)
    every = sorted(m for members in by_gw.values() for m in members)
    on = [m for m in every if m.split("/")[0] in online]

    def members(page: reads.Page) -> list[str]:
        return [f"{p['sn']}/{p['nId']}" for p in page.items]

    async def check(r: acluster.RedisCluster) -> None:
        for page in range(1, len(every) // 50 + 2):
            got = await reads.peripheral_page(r, keys, page=page, limit=50)
            assert got.total == len(every) and members(got) == every[(page - 1) * 50:page * 50]
        got = await reads.peripheral_page(r, keys, online=True, limit=1000)
        assert members(got) == on
        gw, gw_members = sorted(by_gw.items())[0]
        got = await reads.peripheral_page(r, keys, gw_id=gw, limit=1000)
        assert members(got) == gw_members and {p["gwId"] for p in got.items} == {gw}
        got = await reads.peripheral_page(r, keys, gw_id=gw, online=False, limit=1000)
        assert members(got) == [m for m in gw_members if m.split("/")[0] not in online]
        sn = every[0].split("/")[0]
        got = await reads.peripheral_page(r, keys, sn=sn)
        assert members(got) == [m for m in every if m.startswith(sn + "/")]
        got = await reads.peripheral_page(r, keys, sn=sn, gw_id=gw)
        assert members(got) == [m for m in gw_members if m.startswith(sn + "/")]
        counts = await reads.peripheral_counts(r, keys)
        assert counts == {"online": len(on), "offline": len(every) - len(on), "total": len(every)}
        one = await reads.device(r, keys, sn)
        assert one is not None and one["peripherals"] == sum(m.startswith(sn + "/") for m in every)

    await run(check)
