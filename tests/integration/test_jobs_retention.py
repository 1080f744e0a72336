"""Retention as an RQ job (issue 14): clients gone for `device_retention_days` are forgotten with their
index entries and peripherals, in bounded batches; everything seen since is kept. Real Redis, real ingest."""

from __future__ import annotations

import time

import httpx
import pytest
import redis
from rq import Queue, SimpleWorker

from adapter.devices import retention
from adapter.jobs import entry as jobs
from adapter.settings import Settings
from adapter.store.connections import rq_redis
from tests.conftest import keys_for, new_prefix, zall
from tests.support.emqx import connected, disconnected, post, published, subscribed

PREFIX = new_prefix()  # this module's keys: "iot" on one Redis, its own prefix on the cluster
K = keys_for(PREFIX)


@pytest.fixture
def key_prefix() -> str:
    """redis_db cleans the prefix these tests write under."""
    return PREFIX


DAY = 86_400_000


def gone_device(ingest: httpx.Client, r: redis.Redis, sn: str, ended_ms: int, peripherals: int = 0) -> None:
    post(ingest, connected(sn, ended_ms - 60_000))
    post(ingest, subscribed(sn))
    if peripherals:
        report = {"sn": sn, "time": 1, "d": [{"nId": f"N{i}", "gwId": f"G-{sn}", "online": True, "msg": {}}
                                             for i in range(peripherals)]}
        post(ingest, published(sn, f"dma/report/{sn}/peripherals", report, at=ended_ms - 30_000,
                               msg_id=f"{sn:0>32}"))
    post(ingest, disconnected(sn, ended_ms - 60_000, ended_ms))
    r.hset(K.client(sn), "activeTime", (ended_ms - 30_000) // 1000)  # the subscribe stamped the test's now


def run_job(cfg: Settings) -> dict[str, int]:
    jobs.configure(cfg)
    conn = rq_redis(cfg)
    queue = Queue(K.queue("default"), connection=conn)
    job = queue.enqueue("adapter.jobs.entry.retention")
    SimpleWorker([queue], connection=conn).work(burst=True)
    assert job.get_status(refresh=True) == "finished"
    result: dict[str, int] = job.return_value()
    return result


def test_gone_clients_are_forgotten_with_their_indexes(ingest: httpx.Client, redis_db: redis.Redis,
                                                       settings: Settings) -> None:
    now = int(time.time() * 1000)
    gone_device(ingest, redis_db, "OLD1", now - 40 * DAY, peripherals=2)
    gone_device(ingest, redis_db, "OLD2", now - 31 * DAY)
    gone_device(ingest, redis_db, "RECENT", now - 29 * DAY)
    post(ingest, connected("ONLINE", now - 60 * DAY))  # online all along: kept, however old its connection
    post(ingest, subscribed("ONLINE"))
    redis_db.hset(K.client("ONLINE"), "activeTime", (now - 60 * DAY) // 1000)  # and silent for as long
    post(ingest, connected("TOOL", now - 50 * DAY))  # a client that never became a device
    post(ingest, disconnected("TOOL", now - 50 * DAY, now - 45 * DAY))
    post(ingest, connected("TOOL2", now - 2 * DAY))
    post(ingest, disconnected("TOOL2", now - 2 * DAY, now - DAY))
    assert len(zall(redis_db, K, K.peripherals)) == 2

    result = run_job(settings.with_overrides(device_retention_days=30, retention_batch=2))

    assert (result["devices"], result["clients"]) == (2, 1)
    assert zall(redis_db, K, K.devices) == ["ONLINE", "RECENT"]
    assert zall(redis_db, K, K.devices_offline) == ["RECENT"]
    assert zall(redis_db, K, K.devices_online) == ["ONLINE"]
    for gone in ("OLD1", "OLD2", "TOOL"):
        assert not redis_db.exists(K.client(gone))
    assert redis_db.exists(K.client("TOOL2")) and redis_db.exists(K.client("RECENT"))
    assert len(zall(redis_db, K, K.peripherals)) == 0 and len(zall(redis_db, K, K.peripherals_offline)) == 0
    assert not redis_db.exists(K.peripheral("OLD1", "N0"), K.peripherals_of_gw("G-OLD1", K.shard("OLD1")))
    fields = redis_db.hgetall(K.metrics())
    assert fields['retention_removed_total{what="device"}'] == "2"
    assert fields['retention_removed_total{what="client"}'] == "1"
    counts = ingest.get("/metrics").text
    assert 'retention_removed_total{what="device"} 2' in counts


def test_a_run_does_bounded_batches_and_the_next_goes_on(ingest: httpx.Client, redis_db: redis.Redis) -> None:
    now = int(time.time() * 1000)
    p = K.shard("B0")  # one shard's walk: five devices of its index (B0 .. B4 on one Redis)
    sns = sorted(sn for sn in (f"B{i}" for i in range(2000)) if K.shard(sn) == p)[:5]  # the walk is by name
    for sn in sns:
        gone_device(ingest, redis_db, sn, now - 40 * DAY)
    mark = K.retention_cursor(f"devices:{p}" if K.cluster else "devices")
    cutoff = retention.cutoff_ms(30)
    out = retention.Removed()
    retention.walk_devices(redis_db, K, cutoff, 2, out, p)  # one batch: two devices, and where to go on
    assert out.devices == 2 and len(zall(redis_db, K, K.devices)) == 3
    assert redis_db.get(mark) == sns[1]
    retention.walk_devices(redis_db, K, cutoff, 2, out, p)
    assert out.devices == 4 and redis_db.get(mark) == sns[3]
    retention.walk_devices(redis_db, K, cutoff, 2, out, p)  # the end of the index: back to its start
    assert out.devices == 5 and not redis_db.exists(mark)
    assert len(zall(redis_db, K, K.devices)) == 0


def test_a_device_seen_again_after_the_cutoff_is_kept(ingest: httpx.Client, redis_db: redis.Redis) -> None:
    now = int(time.time() * 1000)
    gone_device(ingest, redis_db, "BACK", now - 40 * DAY)
    redis_db.hset(K.client("BACK"), "activeTime", now // 1000)  # it published since, without a connect
    assert retention.run(redis_db, K, days=30, batch=10).devices == 0
    assert redis_db.zscore(K.devices(K.shard("BACK")), "BACK") == 0
