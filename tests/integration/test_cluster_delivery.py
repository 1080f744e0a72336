"""The delivery engine on a real 3-primary Redis Cluster (skipped unless TEST_REDIS_CLUSTER_PORTS is set, e.g.
"7141 7142 7143"): the pump over 48 partition streams, retries, held order per device, dead letters and their
replay, the breaker per partition, the targets store in `{tgt}` with its enabled-set replicas, and the route
table's pub/sub on the cluster client. Every script call and MULTI is single-slot, or the cluster refuses it
(CROSSSLOT), so these runs are the proof. Self-contained: its own client, a unique key prefix, SCAN + UNLINK
of that prefix on every primary afterwards; a real loopback HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from adapter.delivery import replicas
from adapter.delivery.pump import Pump
from adapter.delivery.sender import Sender
from adapter.settings import Settings
from adapter.store.keys import Keys
from adapter.targets.callbacks import Callback, CallbackStore
from adapter.targets.route_table import RouteTable
from adapter.targets.routes import RouteStore
from tests.conftest import on_cluster, rq_url
from tests.support.receiver import Receiver

PORTS = os.environ.get("TEST_REDIS_CLUSTER_PORTS", "").split()
pytestmark = pytest.mark.skipif(not PORTS, reason="TEST_REDIS_CLUSTER_PORTS not set (no Redis Cluster)")


@pytest.fixture
def cluster_settings(cluster_prefix: str) -> Settings:
    return Settings.from_env({
        "ADAPTER_REDIS_URL": f"redis+cluster://127.0.0.1:{PORTS[0] if PORTS else 7000}",
        "ADAPTER_KEY_PREFIX": cluster_prefix, "ADAPTER_RQ_REDIS_URL": rq_url(),
        "ADAPTER_ADMIN_PASSWORD": "x" * 16, "ADAPTER_INGEST_TOKEN": "y" * 24,
        "ADAPTER_EMQX_API_URL": "http://127.0.0.1:9/api/v5",
        "ADAPTER_ALLOW_PRIVATE_URLS": "true", "ADAPTER_DELIVERY_SCHEDULE": "0.2s,0.2s,0.2s",
        "ADAPTER_DELIVERY_TIMEOUT": "5", "ADAPTER_DELIVERY_LEASE": "2",
    }, dotenv=None)


@pytest.fixture
def receiver_url(receiver: tuple[Receiver, str]) -> tuple[Receiver, str]:
    return receiver


def keys_of(settings: Settings) -> Keys:
    k = Keys.of(settings)
    assert k.cluster and k.stream_partitions == 48
    return k


async def device_callback(rc: RedisCluster, settings: Settings, url: str) -> tuple[Keys, CallbackStore, Callback, str]:
    """The test's keys, its callbacks store, one device callback to `url` and its delivery target name."""
    k = keys_of(settings)
    store = CallbackStore(rc, k)  # type: ignore[arg-type]
    cb, _ = await store.create("device", url)
    return k, store, cb, f"callback:{cb.id}"


async def enqueue(rc: RedisCluster, k: Keys, target: str, key: str, n: int) -> str:
    """One entry as fanout.lua writes it, on the stream of the key's partition (the device's slot)."""
    delivery_id = f"d:{key}:{n}:{target}"
    await rc.xadd(k.delivery_stream(k.stream_partition(key)),
                  {"t": target, "k": key, "id": delivery_id, "b": json.dumps({"sn": key, "n": n}), "n": "0"})
    return delivery_id


async def pump_until(settings: Settings, rc: RedisCluster, done: Callable[[], Awaitable[bool]], timeout: float,
                     **overrides: Any) -> bool:
    """Runs a pump on the cluster client until `done()` or the deadline."""
    s = settings.with_overrides(**overrides) if overrides else settings
    sender = Sender(limit=s.delivery_concurrency, allow_private=True)
    pump = Pump(s, rc, sender)
    stop = asyncio.Event()
    task = asyncio.create_task(pump.run(stop))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await done():
                return True
            if task.done():
                task.result()
            await asyncio.sleep(0.1)
        return False
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await sender.aclose()


def sns(rec: Receiver) -> list[tuple[str, int]]:
    return [(b["sn"], b["n"]) for b in (json.loads(x) for x in rec.bodies())]


async def test_pump_delivers_over_many_partitions_with_retries(cluster_settings: Settings,
        receiver_url: tuple[Receiver, str]) -> None:
    await on_cluster(lambda rc: _test_pump_delivers_over_many_partitions_with_retries(
        cluster_settings, rc, receiver_url))


async def _test_pump_delivers_over_many_partitions_with_retries(cluster_settings: Settings, rc: RedisCluster,
        receiver_url: tuple[Receiver, str]) -> None:
    rec, url = receiver_url
    k, store, cb, target = await device_callback(rc, cluster_settings, url)
    # the MULTI wrote the authoritative set in {tgt}; the replicas of all 48 shards followed
    for p in k.shards():
        assert await rc.smembers(k.callbacks_enabled_in("device", p)) == {str(cb.id).encode()}
    failed_once: set[str] = set()

    def answer(r: Any) -> int:  # every delivery fails once (503), then succeeds
        first = r.headers["webhook-id"] not in failed_once
        failed_once.add(r.headers["webhook-id"])
        return 503 if first else 200

    rec.answer = answer
    devices = [f"CL{i}" for i in range(120)]
    for sn in devices:
        await enqueue(rc, k, target, sn, 0)
    used = {k.stream_partition(sn) for sn in devices}
    assert len(used) > 30  # many partitions, on every primary

    async def all_delivered() -> bool:
        return len([1 for _ in rec.received]) >= 2 * len(devices) and \
            (await store.stats("device"))["succ"] == len(devices)

    assert await pump_until(cluster_settings, rc, all_delivered, 60)
    assert sorted(set(sns(rec))) == sorted((sn, 0) for sn in devices)
    assert await store.stats("device") == {"succ": len(devices), "failed": 0}
    [listed] = await store.all()
    assert listed.succ_count == len(devices) and listed.failed_count == 0
    attempts = await store.deliveries(cb.id)
    assert {a["outcome"] for a in attempts} == {"retry", "success"} and len(attempts) == 200  # newest 200 merged
    assert (await store.health(cb.id))["breaker"]["state"] == "closed"
    for p in used:  # nothing left behind
        assert await rc.xlen(k.delivery_stream(p)) == 0 and await rc.zcard(k.delivery_retry(p)) == 0


async def test_held_order_per_device_and_dead_letters_replayed(cluster_settings: Settings,
        receiver_url: tuple[Receiver, str]) -> None:
    await on_cluster(lambda rc: _test_held_order_per_device_and_dead_letters_replayed(
        cluster_settings, rc, receiver_url))


async def _test_held_order_per_device_and_dead_letters_replayed(cluster_settings: Settings, rc: RedisCluster,
        receiver_url: tuple[Receiver, str]) -> None:
    rec, url = receiver_url
    k, store, cb, target = await device_callback(rc, cluster_settings, url)
    tries: dict[str, int] = {}
    mode = {"dead": True}

    def answer(r: Any) -> int:
        body = json.loads(r.body)
        if body["sn"].startswith("DEAD"):
            return 400 if mode["dead"] else 200
        tries[r.headers["webhook-id"]] = tries.get(r.headers["webhook-id"], 0) + 1
        return 503 if body["n"] == 0 and tries[r.headers["webhook-id"]] <= 2 else 200  # the first retried twice

    rec.answer = answer
    for sn in ("ORD1", "ORD2"):
        for n in range(6):
            await enqueue(rc, k, target, sn, n)
    dead_ids = [await enqueue(rc, k, target, f"DEAD{i}", 0) for i in range(8)]

    async def settled() -> bool:
        got = sns(rec)
        return all((sn, 5) in got for sn in ("ORD1", "ORD2")) and await store.dead_count(cb.id) == 8

    assert await pump_until(cluster_settings, rc, settled, 60)
    for sn in ("ORD1", "ORD2"):  # held behind the retried first one, then in order
        order = [n for s, n in sns(rec) if s == sn]
        assert order == [0, 0, 0, 1, 2, 3, 4, 5], (sn, order)
    total, page1 = await store.dead(cb.id, 1, 5)
    _, page2 = await store.dead(cb.id, 2, 5)
    assert total == 8 and len(page1) == 5 and len(page2) == 3
    assert sorted(d["deliveryId"] for d in page1 + page2) == sorted(dead_ids)
    assert [d["time"] for d in page1 + page2] == sorted(d["time"] for d in page1 + page2)

    mode["dead"] = False
    assert await store.replay(cb.id, [dead_ids[0]], 48) == 1
    assert await store.replay(cb.id, None, 48) == 7
    assert await store.dead_count(cb.id) == 0

    async def replayed() -> bool:
        return sum(1 for s, _ in sns(rec) if s.startswith("DEAD")) == 16

    assert await pump_until(cluster_settings, rc, replayed, 30)
    assert (await store.health(cb.id))["dead"] == 0
    assert await store.delete(cb.id) == 1
    for p in k.shards():  # the engine's per-partition keys went with it, and the replicas
        assert not await rc.exists(k.attempts(target, p), k.dead(target, p), k.delivery_state(target, p))
        assert not await rc.smembers(k.callbacks_enabled_in("device", p))


async def test_breaker_opens_and_closes_per_partition(cluster_settings: Settings,
        receiver_url: tuple[Receiver, str]) -> None:
    await on_cluster(lambda rc: _test_breaker_opens_and_closes_per_partition(
        cluster_settings, rc, receiver_url))


async def _test_breaker_opens_and_closes_per_partition(cluster_settings: Settings, rc: RedisCluster,
        receiver_url: tuple[Receiver, str]) -> None:
    rec, url = receiver_url
    k, store, cb, target = await device_callback(rc, cluster_settings, url)
    up = {"ok": False}
    rec.answer = lambda r: 200 if up["ok"] else 503
    for n in range(6):
        await enqueue(rc, k, target, "BRK", n)
    lane = k.stream_partition("BRK")

    async def opened() -> bool:
        return (await store.health(cb.id))["breaker"]["state"] == "open"

    tuned = {"delivery_breaker_threshold": 3, "delivery_breaker_probe": 0.5, "delivery_schedule": "0.2s," * 20 + "1s"}
    assert await pump_until(cluster_settings, rc, opened, 30, **tuned)
    state = await rc.hgetall(k.delivery_state(target, lane))
    assert state[b"breaker"] == b"open" and int(state[b"failures"]) >= 3
    assert int(await rc.hget(k.metrics_in(lane), f'delivery_breaker_opened_total{{target="{target}"}}')) >= 1
    up["ok"] = True

    async def closed() -> bool:
        return (await store.health(cb.id))["breaker"]["state"] == "closed" and \
            sorted({n for s, n in sns(rec) if s == "BRK" and True}) == list(range(6)) and \
            (await store.stats("device"))["succ"] == 6

    assert await pump_until(cluster_settings, rc, closed, 30, **tuned)
    assert await rc.hget(k.delivery_state(target, lane), "breaker") is None


async def test_targets_store_and_route_table_on_the_cluster(cluster_settings: Settings) -> None:
    await on_cluster(lambda rc: _test_targets_store_and_route_table_on_the_cluster(cluster_settings, rc))


async def _test_targets_store_and_route_table_on_the_cluster(cluster_settings: Settings, rc: RedisCluster) -> None:
    k = keys_of(cluster_settings)
    store = CallbackStore(rc, k)  # type: ignore[arg-type]
    cb, _ = await store.create("peripheral", "http://127.0.0.1:9/x")
    await store.set_enabled(cb.id, False)  # a WATCH + MULTI in {tgt}, then the replicas
    for p in (0, 17, 47):
        assert not await rc.smembers(k.callbacks_enabled_in("peripheral", p))
    await store.set_enabled(cb.id, True)
    await rc.srem(k.callbacks_enabled_in("peripheral", 5), str(cb.id))  # a replica write that was lost
    await rc.sadd(k.callbacks_enabled_in("device", 6), "999")  # and a stray one
    assert await replicas.repair(rc, k) == 2
    for p in k.shards():
        assert await rc.smembers(k.callbacks_enabled_in("peripheral", p)) == {str(cb.id).encode()}
        assert not await rc.smembers(k.callbacks_enabled_in("device", p))
    assert (await store.rotate_secret(cb.id)).startswith("whsec_")

    routes = RouteStore(rc, k)  # type: ignore[arg-type]
    table = RouteTable(k, check_every=30)  # notifications only: the version poll is far off
    stop = asyncio.Event()
    follower = asyncio.create_task(table.follow(rc, stop))  # type: ignore[arg-type]
    try:
        for _ in range(50):
            if table.version is not None:
                break
            await asyncio.sleep(0.05)
        route, _ = await routes.create("r", "dev/+/up", "http://127.0.0.1:9/r")
        for _ in range(100):
            if len(table) == 1:
                break
            await asyncio.sleep(0.05)
        assert [r.id for r in table.match("dev/X/up")] == [route.id]
        await routes.set_enabled(route.id, False)
        for _ in range(100):
            if len(table) == 0:
                break
            await asyncio.sleep(0.05)
        assert len(table) == 0
    finally:
        stop.set()
        await follower
    assert await routes.delete(route.id) == 1
