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
        add_callback(redis_db, 1, url, keys=K)
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


def test_a_survivor_takes_a_sigkilled_workers_partitions_within_one_lease(redis_db: redis.Redis, settings: Settings,
                                                                          tmp_path: object) -> None:
    """Two workers share the partitions; one is SIGKILLed: the other holds every partition within about one lease
    time (a dead pump counts as live for one lease after its last heartbeat, as long as its leases last; before,
    for two, so its partitions waited a lease more)."""
    keys = Keys.of(settings)
    lease = 3.0
    env = {**store_env(settings.key_prefix), "ADAPTER_ALLOW_PRIVATE_URLS": "true",
           "ADAPTER_DELIVERY_LEASE": str(lease)}
    partitions = range(keys.stream_partitions)

    def holders() -> set[str | None]:
        return {redis_db.get(keys.delivery_lease(p)) for p in partitions}

    with adapter_process("worker", env=env, log_path=f"{tmp_path}/worker-a.log") as a, \
            adapter_process("worker", env=env, log_path=f"{tmp_path}/worker-b.log"):
        wait_for(lambda: len(holders()) == 2 and None not in holders(), timeout=60, interval=0.1,
                 what="both workers holding partitions")
        stop(a, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: len(holders()) == 1 and None not in holders(), timeout=30, interval=0.05,
                 what="one worker holding every partition")
        took = time.monotonic() - killed
    print(f"every partition held by the survivor {took:.2f} s after the kill (lease {lease} s)")
    assert took < lease + 2  # one lease, plus the ticks that notice it (0.2 s) and a loaded machine's slack
