"""Presence reconciliation as an RQ job (issue 14): the real Redis, the real ingest, a fake EMQX serving
`/clients` pages on loopback, and an RQ worker in burst mode."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from rq import Queue, SimpleWorker
from rq.job import Job
from starlette.requests import Request
from starlette.responses import Response

from adapter.devices.reconcile import STATE, apply_guarded
from adapter.ingest.events import Disconnected
from adapter.jobs import entry as jobs
from adapter.settings import Settings
from adapter.store.connections import async_redis, rq_redis
from tests.conftest import enable_callbacks, keys_for, metric_fields, new_prefix, zall
from tests.support.emqx import connected, disconnected, post, subscribed
from tests.support.fake_emqx import KEY, SECRET, FakeEmqx, emqx_client
from tests.support.servers import serve

PREFIX = new_prefix()  # this module's keys: "iot" on one Redis, its own prefix on the cluster
K = keys_for(PREFIX)


@pytest.fixture
def key_prefix() -> str:
    """redis_db cleans the prefix these tests write under."""
    return PREFIX


T0 = 1_700_000_000_000


def listed(clientid: str, at_ms: int) -> dict[str, Any]:
    item = emqx_client(0)
    item.update(clientid=clientid, username=clientid,
                connected_at=datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds"))
    return item


class Emqx(FakeEmqx):
    """`hidden` clients are left out of the list pages (as a shifted page would) but found one by one."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: set[str] = set()

    async def list_clients(self, request: Request) -> Response:
        shown, self.clients = self.clients, [c for c in self.clients if c["clientid"] not in self.hidden]
        try:
            return await super().list_clients(request)
        finally:
            self.clients = shown


@pytest.fixture
def emqx() -> Iterator[tuple[Emqx, str]]:
    fake = Emqx()
    with serve(fake.app()) as url:
        yield fake, url


@pytest.fixture
def cfg(settings: Settings, emqx: tuple[Emqx, str]) -> Settings:
    return settings.with_overrides(emqx_api_url=f"{emqx[1]}/api/v5", emqx_api_key=KEY, emqx_api_secret=SECRET,
                                   emqx_timeout=2.0, reconcile_page_size=2)


def run_reconcile(cfg: Settings) -> Job:
    """Enqueue the entry point and run it with a real RQ worker in burst mode."""
    jobs.configure(cfg)
    conn = rq_redis(cfg)
    queue = Queue(K.queue("default"), connection=conn)
    job = queue.enqueue("adapter.jobs.entry.reconcile")
    SimpleWorker([queue], connection=conn).work(burst=True)
    job.refresh()
    assert job.get_status() == "finished", job.latest_result()
    return job


def device_bodies(r: redis.Redis, cfg: Settings) -> list[dict[str, Any]]:
    out = []
    for p in range(K.stream_partitions):
        out += [json.loads(f["b"]) for _, f in r.xrange(K.delivery_stream(p))]
    return sorted(out, key=lambda b: (b["sn"], b["version"]))


def online_device(ingest: httpx.Client, sn: str, at: int) -> None:
    post(ingest, connected(sn, at))
    post(ingest, subscribed(sn))


def test_lost_events_are_corrected_through_the_presence_rules(
        ingest: httpx.Client, redis_db: redis.Redis, cfg: Settings, emqx: tuple[Emqx, str]) -> None:
    fake = emqx[0]
    online_device(ingest, "LOSTOFF", T0)  # its disconnect was lost: EMQX does not list it
    online_device(ingest, "STEADYON", T0)
    online_device(ingest, "LOSTON", T0)
    post(ingest, disconnected("LOSTON", T0, T0 + 5000))  # then it came back, and that connect was lost
    online_device(ingest, "OLDCONN", T0)
    post(ingest, disconnected("OLDCONN", T0, T0 + 5000))  # EMQX still lists the connection that ended
    online_device(ingest, "OFF", T0)
    post(ingest, disconnected("OFF", T0, T0 + 5000))
    fake.clients = [listed("STEADYON", T0), listed("LOSTON", T0 + 9000), listed("OLDCONN", T0),
                    listed("STRANGER", T0 + 1000)]
    enable_callbacks(redis_db, K, "device", "1")
    before = {b["eventId"] for b in device_bodies(redis_db, cfg)}

    result = run_reconcile(cfg).return_value()

    assert result == {"checked": 6, "online": 1, "offline": 1, "raced": 0}
    assert zall(redis_db, K, K.devices_online) == ["LOSTON", "STEADYON"]
    assert zall(redis_db, K, K.devices_offline) == ["LOSTOFF", "OFF", "OLDCONN"]
    assert redis_db.hget(K.client("LOSTON"), "connected_at") == str(T0 + 9000)
    assert not redis_db.exists(K.client("STRANGER"))  # not a device: nothing is made up for it
    new = [b for b in device_bodies(redis_db, cfg) if b["eventId"] not in before]
    assert [(b["sn"], b["online"], b["reason"], b["version"]) for b in new] == [
        ("LOSTOFF", False, "reconciled", 3), ("LOSTON", True, "connected", 4)]
    assert new[1]["time"] == (T0 + 9000) // 1000
    fields = metric_fields(redis_db, K)
    assert fields['reconcile_corrections_total{to="online"}'] == 1
    assert fields['reconcile_corrections_total{to="offline"}'] == 1
    assert 'reconcile_corrections_total{to="offline"} 1' in ingest.get("/metrics").text
    assert run_reconcile(cfg).return_value()["offline"] == 0  # a second run finds nothing to correct


def test_a_client_missing_from_a_shifted_page_is_looked_up_before_going_offline(
        ingest: httpx.Client, redis_db: redis.Redis, cfg: Settings, emqx: tuple[Emqx, str]) -> None:
    fake = emqx[0]
    online_device(ingest, "SHIFTED", T0)
    fake.clients = [listed("SHIFTED", T0)]
    fake.hidden = {"SHIFTED"}
    assert run_reconcile(cfg).return_value()["offline"] == 0
    assert redis_db.hget(K.client("SHIFTED"), "online") == "1"
    assert any(r.url.path == "/api/v5/clients/SHIFTED" for r in fake.seen)


def test_a_real_event_between_snapshot_and_correction_wins(ingest: httpx.Client, redis_db: redis.Redis,
                                                           cfg: Settings) -> None:
    online_device(ingest, "RACE", T0)
    seen = redis_db.hmget(K.client("RACE"), STATE)
    post(ingest, disconnected("RACE", T0, T0 + 1000))  # the real disconnect lands first
    post(ingest, connected("RACE", T0 + 2000))  # and a new connection

    async def correct() -> bool | None:
        r = async_redis(cfg)
        try:
            ev = Disconnected("RACE", T0 + 3000, "reconciled", connected_at=T0)
            return await apply_guarded(r, K, ev, seen)
        finally:
            await r.aclose()

    assert asyncio.run(correct()) is None
    assert redis_db.hmget(K.client("RACE"), "online", "connected_at") == ["1", str(T0 + 2000)]


def test_emqx_unreachable_fails_the_run_and_changes_nothing(ingest: httpx.Client, redis_db: redis.Redis,
                                                            settings: Settings) -> None:
    online_device(ingest, "KEEP", T0)
    jobs.configure(settings)  # its EMQX URL answers nothing
    conn = rq_redis(settings)
    queue = Queue(K.queue("default"), connection=conn)
    job = queue.enqueue("adapter.jobs.entry.reconcile")
    SimpleWorker([queue], connection=conn).work(burst=True)
    assert job.get_status(refresh=True) == "failed"
    assert redis_db.hget(K.client("KEEP"), "online") == "1"
    assert redis_db.hget(K.metrics(), 'jobs_runs_total{job="reconcile",result="failed"}') == "1"
