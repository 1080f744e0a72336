"""Presence reconciliation as an RQ job (issue 14): the real Redis, the real ingest, a fake EMQX serving
`/clients` pages on loopback, and an RQ worker in burst mode."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from rq import Queue
from rq.job import Job
from starlette.requests import Request
from starlette.responses import Response

from adapter.broker.client import EmqxClient
from adapter.devices import reconcile
from adapter.devices.reconcile import STATE, apply_guarded
from adapter.jobs import entry as jobs
from adapter.protocol.events import Connected, Disconnected
from adapter.settings import Settings
from adapter.store.connections import rq_redis
from adapter.store.keys import Keys
from tests.conftest import enable_callbacks, metric_fields, zall
from tests.support.emqx import connected, disconnected, post, subscribed
from tests.support.fake_emqx import FakeEmqx, emqx_client
from tests.support.jobs import burst

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
        if request.query_params.getlist("clientid"):  # a lookup by id, not a page: nothing shifts under it
            return await super().list_clients(request)
        shown, self.clients = self.clients, [c for c in self.clients if c["clientid"] not in self.hidden]
        try:
            return await super().list_clients(request)
        finally:
            self.clients = shown


@pytest.fixture
def emqx_fake() -> Emqx:
    return Emqx()


@pytest.fixture
def cfg(emqx_settings: Settings) -> Settings:
    return emqx_settings.with_overrides(emqx_timeout=2.0, reconcile_page_size=2)


def run_reconcile(cfg: Settings) -> Job:
    """Enqueue the entry point and run it with a real RQ worker in burst mode."""
    jobs.configure(cfg)
    conn = rq_redis(cfg)
    queue = Queue(Keys.of(cfg).queue("default"), connection=conn)
    job = queue.enqueue("adapter.jobs.entry.reconcile")
    burst(queue)
    job.refresh()
    assert job.get_status() == "finished", job.latest_result()
    return job


def device_bodies(r: redis.Redis, cfg: Settings) -> list[dict[str, Any]]:
    keys = Keys.of(cfg)
    out = []
    for p in range(keys.stream_partitions):
        out += [json.loads(f["b"]) for _, f in r.xrange(keys.delivery_stream(p))]
    return sorted(out, key=lambda b: (b["sn"], b["version"]))


def online_device(ingest: httpx.Client, sn: str, at: int) -> None:
    post(ingest, connected(sn, at))
    post(ingest, subscribed(sn))


def test_lost_events_are_corrected_through_the_presence_rules(
        ingest: httpx.Client, redis_db: redis.Redis, cfg: Settings, emqx: tuple[Emqx, str], keys: Keys) -> None:
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
    enable_callbacks(redis_db, keys, "device", "1")
    before = {b["eventId"] for b in device_bodies(redis_db, cfg)}

    job = run_reconcile(cfg)
    result = job.return_value()
    total = result["online"] + result["offline"]
    assert job.get_meta(refresh=True)["progress"] == {"done": total, "total": total}  # its progress, told to RQ

    assert result == {"checked": 6, "online": 1, "offline": 1, "raced": 0}
    assert zall(redis_db, keys, keys.devices_online) == ["LOSTON", "STEADYON"]
    assert zall(redis_db, keys, keys.devices_offline) == ["LOSTOFF", "OFF", "OLDCONN"]
    assert redis_db.hget(keys.client("LOSTON"), "connected_at") == str(T0 + 9000)
    assert not redis_db.exists(keys.client("STRANGER"))  # not a device: nothing is made up for it
    new = [b for b in device_bodies(redis_db, cfg) if b["eventId"] not in before]
    assert [(b["sn"], b["online"], b["reason"], b["version"]) for b in new] == [
        ("LOSTOFF", False, "reconciled", 3), ("LOSTON", True, "connected", 4)]
    assert new[1]["time"] == (T0 + 9000) // 1000
    fields = metric_fields(redis_db, keys)
    assert fields['reconcile_corrections_total{to="online"}'] == 1
    assert fields['reconcile_corrections_total{to="offline"}'] == 1
    assert 'reconcile_corrections_total{to="offline"} 1' in ingest.get("/metrics").text
    assert run_reconcile(cfg).return_value()["offline"] == 0  # a second run finds nothing to correct


def test_a_client_missing_from_a_shifted_page_is_looked_up_before_going_offline(
        ingest: httpx.Client, redis_db: redis.Redis, cfg: Settings, emqx: tuple[Emqx, str], keys: Keys) -> None:
    fake = emqx[0]
    online_device(ingest, "SHIFTED", T0)
    fake.clients = [listed("SHIFTED", T0)]
    fake.hidden = {"SHIFTED"}
    assert run_reconcile(cfg).return_value()["offline"] == 0
    assert redis_db.hget(keys.client("SHIFTED"), "online") == "1"
    assert any(r.url.path == "/api/v5/clients" and r.query_params.getlist("clientid") == ["SHIFTED"]
               for r in fake.seen)  # looked up by its id


async def test_a_real_event_between_snapshot_and_correction_wins(ingest: httpx.Client, redis_db: redis.Redis,
                                                                 cfg: Settings, keys: Keys,
                                                                 aredis: redis.asyncio.Redis) -> None:
    online_device(ingest, "RACE", T0)
    seen = redis_db.hmget(keys.client("RACE"), STATE)
    post(ingest, disconnected("RACE", T0, T0 + 1000))  # the real disconnect lands first
    post(ingest, connected("RACE", T0 + 2000))  # and a new connection

    ev = Disconnected("RACE", T0 + 3000, "reconciled", connected_at=T0)
    assert await apply_guarded(aredis, keys, ev, seen) is None

    assert redis_db.hmget(keys.client("RACE"), "online", "connected_at") == ["1", str(T0 + 2000)]


def test_emqx_unreachable_fails_the_run_and_changes_nothing(ingest: httpx.Client, redis_db: redis.Redis,
                                                            settings: Settings, keys: Keys) -> None:
    online_device(ingest, "KEEP", T0)
    jobs.configure(settings)  # its EMQX URL answers nothing
    conn = rq_redis(settings)
    queue = Queue(keys.queue("default"), connection=conn)
    job = queue.enqueue("adapter.jobs.entry.reconcile")
    burst(queue)
    assert job.get_status(refresh=True) == "failed"
    assert redis_db.hget(keys.client("KEEP"), "online") == "1"
    assert redis_db.hget(keys.metrics(), 'jobs_runs_total{job="reconcile",result="failed"}') == "1"


async def test_a_run_stopped_while_paging_takes_no_one_offline(ingest: httpx.Client, redis_db: redis.Redis,
                                                               cfg: Settings, emqx: tuple[Emqx, str], keys: Keys,
                                                               aredis: redis.asyncio.Redis) -> None:
    """The worker stops after the first page of EMQX's client list: the run ends there (adapter/jobs/shutdown.py),
    and a device on a page it did not read is not taken offline; stopped between two batches of corrections (of one
    here), those made stand."""
    fake = emqx[0]
    for sn in ("A1", "A2", "B1", "B2"):
        online_device(ingest, sn, T0)
    fake.clients = [listed(sn, T0) for sn in ("A1", "A2", "B1", "B2")]  # two pages of two

    async def run(stop_after_pages: int | None, stop_after_checks: int | None = None) -> Any:
        asked = {"n": 0}

        def stopping() -> bool:
            asked["n"] += 1
            limit = stop_after_pages if stop_after_pages is not None else stop_after_checks
            return limit is not None and asked["n"] > limit

        async with EmqxClient.from_settings(cfg) as client:
            return await reconcile.reconcile(aredis, client, keys, cfg.reconcile_page_size, stopping, batch_size=1)

    stopped = await run(stop_after_pages=1)
    assert stopped.stopped and (stopped.offline, stopped.online) == (0, 0)
    assert zall(redis_db, keys, keys.devices_online) == ["A1", "A2", "B1", "B2"]  # B1, B2 unread: kept online

    fake.clients = []  # every device gone: the corrections stop after the first one
    partial = await run(stop_after_pages=None, stop_after_checks=2)  # 1 page, then 1 correction
    assert partial.stopped and partial.offline == 1
    assert len(zall(redis_db, keys, keys.devices_online)) == 3


async def test_many_corrections_go_in_batches_with_progress(redis_db: redis.Redis, cfg: Settings,
                                                            emqx: tuple[Emqx, str], keys: Keys,
                                                            aredis: redis.asyncio.Redis) -> None:

    """2,000 devices online in Redis, none connected in EMQX: every one is looked up and taken offline, 200 at a time,
    the progress told after each batch. The rate is printed (`pytest -s`), not held: machines differ."""
    import time

    n = 2000
    sns = [f"R{i:05d}" for i in range(n)]
    told: list[tuple[int, int]] = []

    from adapter.devices import calls as device_calls
    from adapter.ingest.plan import Ingest
    from adapter.protocol.events import Subscribed
    from adapter.store.connections import batcher_for
    from adapter.store.metrics import MetricsBuffer
    from adapter.targets.route_table import RouteTable

    batcher = batcher_for(aredis, device_calls.SCRIPTS)
    await batcher.load_scripts()
    ingest = Ingest(batcher, keys, MetricsBuffer(), RouteTable(keys))
    for sn in sns:  # online devices, as the ingest makes them
        await ingest.apply(Connected(sn, T0))
        await ingest.apply(Subscribed(sn, f"dma/cmd/{sn}", at=T0))
    async with EmqxClient.from_settings(cfg) as client:
        began = time.perf_counter()
        outcome = await reconcile.reconcile(aredis, client, keys, 1000, progress=lambda d, t: told.append((d, t)))
        seconds = time.perf_counter() - began

    print(f"\n{outcome.offline} corrections in {seconds:.2f} s: {outcome.offline / seconds:,.0f}/s")
    assert outcome.offline == n and outcome.raced == 0 and not outcome.stopped
    assert zall(redis_db, keys, keys.devices_online) == []
    assert told[-1] == (n, n) and len(told) == n // reconcile.BATCH
