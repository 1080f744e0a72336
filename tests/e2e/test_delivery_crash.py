"""A worker SIGKILLed mid-batch loses nothing: another worker delivers its items (delivery issue, item 1)."""

from __future__ import annotations

import signal
import time

import httpx
import pytest
import redis

from adapter.settings import Settings
from adapter.store.keys import Keys
from tests.conftest import INGEST_TOKEN, store_env
from tests.integration.test_delivery import add_callback
from tests.support.emqx import connected, post, subscribed
from tests.support.processes import adapter_process, stop
from tests.support.receiver import Receiver
from tests.support.servers import serve, wait_for

K = Keys("iot")
pytestmark = pytest.mark.e2e


def test_sigkilled_worker_loses_nothing(client: httpx.Client, redis_db: redis.Redis, settings: Settings,
                                        tmp_path: object) -> None:
    rec = Receiver()
    rec.answer = lambda r: "hang"  # the first worker's requests stay in flight until it is killed
    env = {**store_env(settings.key_prefix), "ADAPTER_ALLOW_PRIVATE_URLS": "true", "ADAPTER_DELIVERY_LEASE": "2",
           "ADAPTER_DELIVERY_TIMEOUT": "30", "ADAPTER_DELIVERY_SCHEDULE": "0.2s,0.2s"}
    with serve(rec.app()) as url:
        add_callback(redis_db, 1, url)
        client.headers["Authorization"] = f"Bearer {INGEST_TOKEN}"
        devices = [f"CRASH{n:02d}" for n in range(20)]
        for sn in devices:
            post(client, connected(sn, 1_700_000_000_000))
            post(client, subscribed(sn))
        with adapter_process("worker", env=env, log_path=f"{tmp_path}/worker-a.log") as a:
            wait_for(lambda: len(rec.received) >= 5, timeout=30, what="the first worker's requests in flight")
            stop(a, signal.SIGKILL)
        assert redis_db.hget(K.target("callback", 1), "succCount") in (None, "0")
        rec.answer = lambda r: 200
        rec.release.set()
        started = time.monotonic()
        with adapter_process("worker", env=env, log_path=f"{tmp_path}/worker-b.log"):
            wait_for(lambda: redis_db.hget(K.target("callback", 1), "succCount") == "20", timeout=120,
                     interval=0.2, what="every delivery after the crash")
        took = time.monotonic() - started
    ids = {r.headers["webhook-id"] for r in rec.received}
    assert ids == {f"d:{sn}:2:callback:1" for sn in devices}
    assert took < 120
