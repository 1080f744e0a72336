"""ADAPTER_INGEST_WAIT_REPLICAS: the ingest's 200 once a replica has the writes (batcher.Confirm), against a real
primary and replica on loopback: 200 while the replica keeps up; 503 while it is frozen (SIGSTOP: the writes are
in the primary alone and would not survive its failover), the event still answered 200 when EMQX sends it again
after the replica came back; without the setting, 200 throughout (the writes in the primary's memory)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import redis

from adapter.settings import Settings
from adapter.store.batcher import Confirm, ReplicasBehind
from tests.conftest import INGEST_TOKEN
from tests.support.emqx import connected
from tests.support.redis_faults import FaultyRedis, redis_server
from tests.support.servers import serve_api, wait_for


@contextmanager
def primary_and_replica() -> Iterator[tuple[FaultyRedis, FaultyRedis]]:
    with redis_server() as primary, redis_server() as replica:
        replica.client.replicaof("127.0.0.1", primary.port)
        wait_for(lambda: primary.client.info("replication")["connected_slaves"] == 1
                 and replica.client.info("replication")["master_link_status"] == "up", what="the replica to sync")
        yield primary, replica


@contextmanager
def frozen(server: FaultyRedis) -> Iterator[None]:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


def post(c: httpx.Client, body: dict) -> httpx.Response:
    return c.post("/emqx/events", content=json.dumps(body), headers={"Authorization": f"Bearer {INGEST_TOKEN}"})


@pytest.mark.single_redis  # its own primary and replica
@pytest.mark.parametrize("replicas", [0, 1])
def test_the_200_waits_for_a_replica(settings: Settings, replicas: int) -> None:
    with primary_and_replica() as (primary, replica):
        s = settings.with_overrides(redis_url=primary.url, ingest_wait_replicas=replicas, ingest_wait_ms=500)
        with serve_api(s) as url, httpx.Client(base_url=url, timeout=10) as c:
            # a live replica confirms (on a loaded machine maybe not within one wait: a 503 EMQX sends again)
            wait_for(lambda: post(c, connected("R1", 1000)).status_code == 200, what="R1 taken")
            with frozen(replica):  # a frozen replica confirms nothing, ever
                r = post(c, connected("R2", 2000))
                assert r.status_code == (503 if replicas else 200), r.text
                if replicas:
                    assert r.json()["code"] == "unavailable" and r.headers["Retry-After"]
            # EMQX sends it again once the replica is back: applied once
            wait_for(lambda: post(c, connected("R2", 2000)).status_code == 200, what="R2 taken")


def test_too_few_confirmations_answer_every_write_of_the_round() -> None:
    confirm = Confirm(2, 100)
    refused = redis.exceptions.ResponseError("NOSCRIPT")
    kept = confirm.check([1, "OK", refused, 2])
    assert kept == [1, "OK", refused]
    behind = confirm.check([1, "OK", refused, 1])
    assert isinstance(behind[0], ReplicasBehind) and isinstance(behind[1], ReplicasBehind) and behind[2] is refused
    assert confirm.packed == b"*3\r\n$4\r\nWAIT\r\n$1\r\n2\r\n$3\r\n100\r\n"


def test_a_store_without_replicas_confirms_nothing(settings: Settings, client: httpx.Client) -> None:
    """Both layouts (the test servers have no replicas): with the setting, every event answers 503 and nothing
    else changes; the documented price of asking for a replica where there is none (docs/reliability.md)."""
    with serve_api(settings.with_overrides(ingest_wait_replicas=1, ingest_wait_ms=20)) as url, \
            httpx.Client(base_url=url, timeout=10) as c:
        r = post(c, connected("N1", 1000))
    assert r.status_code == 503 and r.json()["code"] == "unavailable", r.text
    assert post(client, connected("N1", 1000)).status_code == 200  # the same store, the setting off
