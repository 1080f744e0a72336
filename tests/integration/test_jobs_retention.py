"""Retention as an RQ job (issue 14): clients gone for `device_retention_days` are forgotten with their
index entries and peripherals, in bounded batches; everything seen since is kept. Real Redis, real ingest."""

from __future__ import annotations

import time

import httpx
import redis
from rq import Queue

from adapter.devices import retention
from adapter.jobs import entry as jobs
from adapter.settings import Settings
from adapter.store.connections import rq_redis
from adapter.store.keys import Keys
from tests.conftest import zall
from tests.support.emqx import connected, disconnected, post, published, subscribed
from tests.support.jobs import burst

DAY = 86_400_000


def gone_device(keys: Keys, ingest: httpx.Client, r: redis.Redis, sn: str, ended_ms: int, peripherals: int = 0) -> None:
    post(ingest, connected(sn, ended_ms - 60_000))
    post(ingest, subscribed(sn))
    if peripherals:
        report = {"sn": sn, "time": 1, "d": [{"nId": f"N{i}", "gwId": f"G-{sn}", "online": True, "msg": {}}
                                             for i in range(peripherals)]}
        post(ingest, published(sn, f"dma/report/{sn}/peripherals", report, at=ended_ms - 30_000,
                               msg_id=f"{sn:0>32}"))
    post(ingest, disconnected(sn, ended_ms - 60_000, ended_ms))
    r.hset(keys.client(sn), "activeTime", (ended_ms - 30_000) // 1000)  # the subscribe stamped the test's now


def run_job(keys: Keys, cfg: Settings) -> dict[str, int]:
    jobs.configure(cfg)
    conn = rq_redis(cfg)
    queue = Queue(keys.queue("default"), connection=conn)
    job = queue.enqueue("adapter.jobs.entry.retention")
    burst(queue)
    assert job.get_status(refresh=True) == "finished"
    result: dict[str, int] = job.return_value()
    return result


def test_gone_clients_are_forgotten_with_their_indexes(ingest: httpx.Client, redis_db: redis.Redis, settings: Settings,
                                                       keys: Keys) -> None:
    now = int(time.time() * 1000)
    gone_device(keys, ingest, redis_db, "OLD1", now - 40 * DAY, peripherals=2)
    gone_device(keys, ingest, redis_db, "OLD2", now - 31 * DAY)
    gone_device(keys, ingest, redis_db, "RECENT", now - 29 * DAY)
    post(ingest, connected("ONLINE", now - 60 * DAY))  # online all along: kept, however old its connection
    post(ingest, subscribed("ONLINE"))
    redis_db.hset(keys.client("ONLINE"), "activeTime", (now - 60 * DAY) // 1000)  # and silent for as long
    post(ingest, connected("TOOL", now - 50 * DAY))  # a client that never became a device
    post(ingest, disconnected("TOOL", now - 50 * DAY, now - 45 * DAY))
    post(ingest, connected("TOOL2", now - 2 * DAY))
    post(ingest, disconnected("TOOL2", now - 2 * DAY, now - DAY))
    assert len(zall(redis_db, keys, keys.peripherals)) == 2

    # a SCAN of 500 a step: the cluster passes share one cluster, whose other keys a COUNT of 2 took 50 steps to
    # pass without reaching TOOL (bounded batches: test_a_run_does_bounded_batches_and_the_next_goes_on)
    result = run_job(keys, settings.with_overrides(device_retention_days=30, retention_batch=500))

    assert (result["devices"], result["clients"]) == (2, 1)
    assert zall(redis_db, keys, keys.devices) == ["ONLINE", "RECENT"]
    assert zall(redis_db, keys, keys.devices_offline) == ["RECENT"]
    assert zall(redis_db, keys, keys.devices_online) == ["ONLINE"]
    for gone in ("OLD1", "OLD2", "TOOL"):
        assert not redis_db.exists(keys.client(gone), keys.presence_log(gone))
    assert redis_db.exists(keys.presence_log("RECENT"))
    assert redis_db.exists(keys.client("TOOL2")) and redis_db.exists(keys.client("RECENT"))
    assert len(zall(redis_db, keys, keys.peripherals)) == 0 and len(zall(redis_db, keys, keys.peripherals_offline)) == 0
    assert not redis_db.exists(keys.peripheral("OLD1", "N0"), keys.peripherals_of_gw("G-OLD1", keys.shard("OLD1")))
    fields = redis_db.hgetall(keys.metrics())
    assert fields['retention_removed_total{what="device"}'] == "2"
    assert fields['retention_removed_total{what="client"}'] == "1"
    counts = ingest.get("/metrics").text
    assert 'retention_removed_total{what="device"} 2' in counts


def test_a_run_does_bounded_batches_and_the_next_goes_on(ingest: httpx.Client, redis_db: redis.Redis,
                                                         keys: Keys) -> None:
    now = int(time.time() * 1000)
    p = keys.shard("B0")  # one shard's walk: five devices of its index (B0 .. B4 on one Redis)
    sns = sorted(sn for sn in (f"B{i}" for i in range(2000)) if keys.shard(sn) == p)[:5]  # the walk is by name
    for sn in sns:
        gone_device(keys, ingest, redis_db, sn, now - 40 * DAY)
    mark = keys.retention_cursor(f"devices:{p}" if keys.cluster else "devices")
    cutoff = retention.cutoff_ms(30)
    out = retention.Removed()
    retention.walk_devices(redis_db, keys, cutoff, 2, out, p)  # one batch: two devices, and where to go on
    assert out.devices == 2 and len(zall(redis_db, keys, keys.devices)) == 3
    assert redis_db.get(mark) == sns[1]
    retention.walk_devices(redis_db, keys, cutoff, 2, out, p)
    assert out.devices == 4 and redis_db.get(mark) == sns[3]
    retention.walk_devices(redis_db, keys, cutoff, 2, out, p)  # the end of the index: back to its start
    assert out.devices == 5 and not redis_db.exists(mark)
    assert len(zall(redis_db, keys, keys.devices)) == 0


def test_a_device_seen_again_after_the_cutoff_is_kept(ingest: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    now = int(time.time() * 1000)
    gone_device(keys, ingest, redis_db, "BACK", now - 40 * DAY)
    redis_db.hset(keys.client("BACK"), "activeTime", now // 1000)  # it published since, without a connect
    assert retention.run(redis_db, keys, days=30, batch=10).devices == 0
    assert redis_db.zscore(keys.devices(keys.shard("BACK")), "BACK") == 0


def test_a_run_stops_between_two_batches_and_the_next_goes_on(ingest: httpx.Client, redis_db: redis.Redis,
                                                              settings: Settings, keys: Keys) -> None:
    """The worker stops once a batch has removed something: the run ends there (adapter/jobs/shutdown.py) with what
    it removed, and the next run goes on from the saved cursor."""
    now = int(time.time() * 1000)
    for i in range(4):
        gone_device(keys, ingest, redis_db, f"OLD{i}", now - 40 * DAY)

    def stopping() -> bool:
        return len(zall(redis_db, keys, keys.devices)) < 4

    first = retention.run(redis_db, keys, 30, 1, stopping=stopping)
    assert first.stopped and first.devices == 1
    rest = retention.run(redis_db, keys, 30, 1)
    assert not rest.stopped and rest.devices == 3
    assert zall(redis_db, keys, keys.devices) == []
