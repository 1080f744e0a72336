"""Soak (issue 12, item 2): a message route on `#` whose receiver is down while 10,000 devices report, with a
healthy status callback beside it. The route's deliveries stay bounded in Redis (its breaker opens, at most
ADAPTER_DELIVERY_MAX_HELD are held, the rest dropped and counted) and the healthy callback gets every one of
its deliveries. Reports go through the ingest endpoint over real HTTP; the pump is a real `adapter worker`.

The suite runs 2,000 devices (about a minute on a loaded machine); the issue's 10,000, with figures printed:
`SOAK_DEVICES=10000 .venv/bin/pytest -s tests/e2e/test_delivery_soak.py` (docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import time

import httpx
import pytest
import redis

from adapter.settings import Settings
from adapter.store.keys import Keys
from tests.conftest import INGEST_TOKEN, store_env
from tests.integration.test_delivery import add_callback
from tests.support.emqx import connected, published
from tests.support.processes import adapter_process
from tests.support.receiver import Receiver
from tests.support.servers import serve, wait_for

K = Keys("iot")
pytestmark = pytest.mark.e2e
DEVICES = int(os.environ.get("SOAK_DEVICES", "2000"))
REPORTS = 2
MAX_HELD = DEVICES // 5
BOUND = (DEVICES + MAX_HELD) * 1536  # bytes of the down route's delivery keys (docs/delivery.md, "Bounds")


def closed_port() -> int:
    """A loopback port nobody listens on: connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def add_route(r: redis.Redis, route_id: int, topic: str, url: str) -> None:
    r.hset(K.target("route", route_id), mapping={"name": "all", "topic": topic, "url": url, "enabled": "1",
                                                 "secret": "whsec_" + "A" * 32, "createTime": 1, "updateTime": 1})
    r.zadd(K.targets("route"), {str(route_id): route_id})
    r.hset(K.routes_enabled(), str(route_id), topic)
    r.incr(K.routes_version())
    r.publish(K.routes_channel(), str(route_id))


async def report_all(base: str) -> dict[str, float]:
    """Every device connects and reports REPORTS times, 32 requests at a time; answers sn -> the time its first
    report (which makes it a device, online: one callback delivery) was answered."""
    sent: dict[str, float] = {}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for n in range(DEVICES):
        queue.put_nowait(f"SOAK{n:05d}")

    async def worker(c: httpx.AsyncClient) -> None:
        while not queue.empty():
            sn = queue.get_nowait()
            assert (await c.post("/emqx/events", content=json.dumps(connected(sn, 1_700_000_000_000)))).is_success
            for i in range(REPORTS):
                body = published(sn, f"dma/report/{sn}/sys", {"sn": sn, "time": i + 1, "d": {"free": i}},
                                 at=1_700_000_001_000 + i, msg_id=f"{sn}{i:027d}")
                if i == 0:
                    sent[sn] = time.monotonic()
                assert (await c.post("/emqx/events", content=json.dumps(body))).is_success

    headers = {"Authorization": f"Bearer {INGEST_TOKEN}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as c:
        await asyncio.gather(*(worker(c) for _ in range(32)))
    return sent


def delivery_memory(r: redis.Redis, target: str) -> int:
    """MEMORY USAGE of every delivery key: streams, retry set, the target's hold lists, index and state."""
    keys = [K.delivery_retry(), K.delivery_held(target), K.delivery_state(target), K.dead(target),
            K.dead_index(target)]
    keys += [k for k in r.scan_iter(match=K.delivery_stream_prefix() + "*", count=1000)]
    keys += list(r.scan_iter(match=K.delivery_hold(target, "*"), count=1000))
    return sum(int(r.memory_usage(k, samples=0) or 0) for k in set(keys))


def test_a_down_route_on_everything_stays_bounded(live: str, redis_db: redis.Redis, settings: Settings,
                                                  tmp_path: object) -> None:
    rec = Receiver()
    env = {**store_env(settings.key_prefix), "ADAPTER_ALLOW_PRIVATE_URLS": "true",
           "ADAPTER_DELIVERY_MAX_HELD": str(MAX_HELD), "ADAPTER_DELIVERY_TIMEOUT": "2"}
    with serve(rec.app()) as url:
        add_callback(redis_db, 1, f"{url}/status", keys=K)
        add_route(redis_db, 1, "#", f"http://127.0.0.1:{closed_port()}/down")
        before = int(redis_db.info("memory")["used_memory"])
        with adapter_process("worker", env=env, log_path=f"{tmp_path}/worker.log"):
            started = time.monotonic()
            # the reports go at once from a loop of their own; the rest of this test waits on processes (sync)
            sent = asyncio.run(report_all(live))

            ingest_took = time.monotonic() - started
            wait_for(lambda: len(rec.received) >= DEVICES, timeout=90, interval=0.5,
                     what="every status callback delivery")
            parts = range(settings.delivery_partitions)
            wait_for(lambda: sum(redis_db.xlen(K.delivery_stream(p)) for p in parts) == 0, timeout=60,
                     interval=0.5, what="the streams drained")
            state = redis_db.hgetall(K.delivery_state("route:1"))
            memory = delivery_memory(redis_db, "route:1")
            used = int(redis_db.info("memory")["used_memory"]) - before
    arrived = {json.loads(r.body)["sn"]: r.at for r in rec.received}
    latency = sorted((arrived[sn] - at) * 1000 for sn, at in sent.items() if sn in arrived)
    p99 = latency[int(0.99 * (len(latency) - 1))]
    print(f"\nsoak: {DEVICES} devices x {REPORTS} reports in {ingest_took:.1f} s; route breaker "
          f"{state.get('breaker')}, held {state.get('held')}, dropped {state.get('heldDropped')}; "
          f"delivery keys {memory / 1e6:.1f} MB, "
          f"used_memory +{used / 1e6:.1f} MB; callback latency p50 {statistics.median(latency):.0f} ms, "
          f"p99 {p99:.0f} ms")
    assert set(arrived) == set(sent)  # the healthy callback got every transition
    assert state.get("breaker") == "open"
    assert int(state.get("held", 0)) <= MAX_HELD
    assert int(state.get("heldDropped", 0)) >= DEVICES * (REPORTS - 1) - MAX_HELD - 100  # ~100 before it opened
    assert memory < BOUND
