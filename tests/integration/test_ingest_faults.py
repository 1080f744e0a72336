"""Every way Redis can fail answers 503 with Retry-After, never 500 (EMQX retries 503 and drops 500): real faults on
a redis-server of the test's own (READONLY replica, OOM, BUSY script, MISCONF after a failed save, a paused server
past the batch's read deadline). And messages answer 503 until the route table has loaded once."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import redis

from adapter.api import ingest as ingest_api
from adapter.app import create_app
from adapter.settings import Settings
from adapter.store import batcher
from tests.conftest import INGEST_TOKEN, keys_for, new_prefix
from tests.integration.test_api_envelope import assert_err
from tests.support.emqx import connected, post, published
from tests.support.redis_server import RedisServer, redis_server
from tests.support.servers import serve, wait_for

pytestmark = pytest.mark.single_redis  # each test starts its own redis-server to break it

PREFIX = new_prefix()  # this module's keys: "iot" on one Redis, its own prefix on the cluster
K = keys_for(PREFIX)


@pytest.fixture
def key_prefix() -> str:
    """redis_db cleans the prefix these tests write under."""
    return PREFIX


AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}


@pytest.fixture(autouse=True)
def every_failure_logged(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(ingest_api, "LOG_EVERY", 0.0)
    caplog.set_level(logging.WARNING, logger="adapter.ingest.plan")


@contextmanager
def app_on(settings: Settings, server: RedisServer) -> Iterator[httpx.Client]:
    with serve(create_app(settings.with_overrides(redis_url=server.url))) as url, \
            httpx.Client(base_url=url, headers=AUTH, timeout=10) as c:
        yield c


def heartbeat(sn: str, n: int) -> dict:
    return published(sn, f"dma/report/{sn}/heartbeat", {"sn": sn, "time": n, "dur": 5}, msg_id=f"{n:032X}")


def assert_unavailable(c: httpx.Client, body: dict, caplog: pytest.LogCaptureFixture, reply: str) -> None:
    caplog.clear()
    r = post(c, body)
    assert_err(r, 503, "unavailable")
    assert r.headers["retry-after"] == "1"
    assert any(reply in rec.getMessage() for rec in caplog.records), [rec.getMessage() for rec in caplog.records]


def test_readonly_replica_after_a_failover_is_503(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """A Sentinel failover turns the old primary into a replica: its writes answer READONLY."""
    with redis_server() as old, redis_server() as new, app_on(settings, old) as c:
        assert post(c, connected("RO1", 1000)).status_code == 200
        old.client.replicaof("127.0.0.1", new.port)
        wait_for(lambda: old.client.info("replication").get("master_link_status") == "up", what="replica in sync")
        assert_unavailable(c, connected("RO2", 2000), caplog, "ReadOnlyError")
        assert_unavailable(c, heartbeat("RO2", 1), caplog, "ReadOnlyError")
        old.client.replicaof("NO", "ONE")
        assert post(c, connected("RO2", 2000)).status_code == 200
        assert old.client.hget(K.client("RO2"), "online") == "1"


def test_out_of_memory_is_503(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with redis_server("--maxmemory-policy", "noeviction") as own, app_on(settings, own) as c:
        assert post(c, connected("OOM1", 1000)).status_code == 200
        own.client.config_set("maxmemory", "1")
        assert_unavailable(c, connected("OOM2", 2000), caplog, "OutOfMemoryError")
        assert_unavailable(c, heartbeat("OOM1", 1), caplog, "OutOfMemoryError")
        own.client.config_set("maxmemory", "0")
        assert post(c, connected("OOM2", 2000)).status_code == 200


def test_a_busy_script_is_503(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """Another client's script that runs past busy-reply-threshold makes every other command answer BUSY."""
    with redis_server("--busy-reply-threshold", "20") as own, app_on(settings, own) as c:
        assert post(c, connected("BUSY1", 1000)).status_code == 200
        spinner = redis.Redis(port=own.port, socket_timeout=30)
        ended: list[BaseException] = []

        def spin() -> None:
            try:
                spinner.eval("while true do end", 0)
            except redis.exceptions.RedisError as exc:  # ended by SCRIPT KILL
                ended.append(exc)

        thread = threading.Thread(target=spin, daemon=True)
        thread.start()
        probe = redis.Redis(port=own.port, decode_responses=True)
        try:
            wait_for(lambda: _busy(probe), what="the script to make Redis busy")
            assert_unavailable(c, connected("BUSY2", 2000), caplog, "BUSY")
            assert_unavailable(c, heartbeat("BUSY1", 1), caplog, "BUSY")
        finally:
            wait_for(lambda: _kill_script(probe), what="SCRIPT KILL")
            thread.join(10)
            probe.close()
            spinner.close()
        assert ended, "the spinning script was not killed"
        assert post(c, connected("BUSY2", 2000)).status_code == 200


def test_misconf_after_a_failed_save_is_503(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """With save points and stop-writes-on-bgsave-error (the defaults of a persistent Redis), a failed BGSAVE
    stops writes with MISCONF: here its directory is gone."""
    with redis_server("--save", "3600 1", "--stop-writes-on-bgsave-error", "yes") as own, app_on(settings, own) as c:
        assert post(c, connected("MIS1", 1000)).status_code == 200
        shutil.rmtree(own.dir)
        own.client.bgsave()
        wait_for(lambda: _save_failed(own.client), what="the BGSAVE to fail")
        assert_unavailable(c, connected("MIS2", 2000), caplog, "MISCONF")
        assert_unavailable(c, heartbeat("MIS1", 1), caplog, "MISCONF")
        own.client.config_set("stop-writes-on-bgsave-error", "no")
        assert post(c, connected("MIS2", 2000)).status_code == 200


def test_the_batch_read_deadline_is_503(settings: Settings, caplog: pytest.LogCaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A Redis that takes the commands and does not answer (here paused) ends the batch at its deadline with
    the built-in TimeoutError."""
    monkeypatch.setattr(batcher, "READ_TIMEOUT", 0.5)
    with redis_server() as own, app_on(settings, own) as c:
        assert post(c, connected("SLOW1", 1000)).status_code == 200
        own.client.execute_command("CLIENT", "PAUSE", "20000", "ALL")
        try:
            assert_unavailable(c, connected("SLOW2", 2000), caplog, "TimeoutError")
            assert_unavailable(c, heartbeat("SLOW1", 1), caplog, "TimeoutError")
        finally:
            own.client.execute_command("CLIENT", "UNPAUSE")
        assert post(c, connected("SLOW2", 2000)).status_code == 200


def test_messages_wait_for_the_route_table(settings: Settings, redis_db: redis.Redis) -> None:
    """Until the route table has loaded once a message answers 503 (stored without its routes it would never be
    forwarded); presence events go on. Here the load fails (the routes hash is of the wrong type) until fixed."""
    redis_db.set(K.routes_enabled(), "not a hash")
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, headers=AUTH, timeout=10) as c:
        assert post(c, connected("GATE1", 1000)).status_code == 200
        r = post(c, heartbeat("GATE1", 1))
        assert_err(r, 503, "unavailable")
        assert r.headers["retry-after"] == "1"
        assert redis_db.hget(K.client("GATE1"), "dur") is None  # nothing of the message was stored
        redis_db.delete(K.routes_enabled())
        wait_for(lambda: post(c, heartbeat("GATE1", 1)).status_code == 200, timeout=15, what="the routes to load",
                 interval=0.1)
        assert redis_db.hget(K.client("GATE1"), "dur") == "5"
        wait_for(lambda: 'ingest_unavailable_total{reason="routes_not_loaded"}' in c.get("/metrics").text,
                 what="the 503 counted")


def _busy(client: redis.Redis) -> bool:
    try:
        client.ping()
    except redis.exceptions.BusyLoadingError:
        return False
    except redis.exceptions.ResponseError as exc:
        return str(exc).startswith("BUSY")
    return False


def _kill_script(client: redis.Redis) -> bool:
    try:
        client.script_kill()
    except redis.exceptions.ResponseError as exc:
        return "NOTBUSY" in str(exc)
    return True


def _save_failed(client: redis.Redis) -> bool:
    info = client.info("persistence")
    return info["rdb_bgsave_in_progress"] == 0 and info["rdb_last_bgsave_status"] == "err"
