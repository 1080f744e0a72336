"""Every way Redis can fail answers 503 with Retry-After, never 500 (EMQX retries 503 and drops 500): real faults on
a redis-server of the test's own (READONLY replica, OOM, BUSY script, MISCONF after a failed save, a paused server
past the batch's read deadline). And messages answer 503 until the route table has loaded once."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import redis
import redis.asyncio

from adapter.api import ingest as ingest_api
from adapter.devices import calls as device_calls
from adapter.ingest.plan import Ingest
from adapter.protocol.events import Connected
from adapter.settings import Settings
from adapter.store import batcher
from adapter.store.connections import async_redis
from adapter.store.keys import Keys
from adapter.store.metrics import MetricsBuffer
from adapter.targets.route_table import RouteTable
from tests.conftest import INGEST_TOKEN
from tests.integration.test_api_envelope import assert_err
from tests.support.emqx import connected, post, published
from tests.support.redis_faults import FaultyRedis, faulty_redis, redis_server
from tests.support.servers import serve_api, wait_for

pytestmark = pytest.mark.single_redis  # each test starts its own redis-server to break it


AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}


@pytest.fixture(autouse=True)
def every_failure_logged(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(ingest_api, "LOG_EVERY", 0.0)
    caplog.set_level(logging.WARNING, logger="adapter.ingest.plan")


@contextmanager
def app_on(settings: Settings, server: FaultyRedis) -> Iterator[httpx.Client]:
    with serve_api(settings.with_overrides(redis_url=server.url)) as url, \
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


def test_a_flushed_script_cache_is_loaded_again_and_the_event_sent_again(settings: Settings) -> None:
    """SCRIPT FLUSH under a live ingest: the next event answers 200 all the same; MONITOR shows it refused
    (NOSCRIPT), the scripts loaded and the call sent again (batcher.Batcher._execute, up to NOSCRIPT_TRIES times)."""
    with redis_server() as own, app_on(settings, own) as c:
        assert post(c, connected("FL1", 1000)).status_code == 200
        own.client.script_flush()
        with own.client.monitor() as monitor:
            assert post(c, connected("FL2", 1000)).status_code == 200
            seen: list[tuple[str, str]] = []  # (command, the connection it came on)
            for command in monitor.listen():
                seen.append((command["command"].split(" ")[0].strip('"').upper(),
                             f"{command['client_address']}:{command['client_port']}"))
                if [name for name, _ in seen[-2:]] == ["SCRIPT", "EVALSHA"] or len(seen) > 50:
                    break
        assert seen[0][0] == "EVALSHA" and seen[-2][0] == "SCRIPT", seen  # refused, then loaded and sent again
        assert seen[-2][1] == seen[-1][1], seen  # the load and the resend on one connection
        assert own.client.hget(Keys.of(settings).client("FL2"), "online") == "1"


def test_readonly_replica_after_a_failover_is_503(settings: Settings, caplog: pytest.LogCaptureFixture,
                                                  keys: Keys) -> None:
    """A Sentinel failover turns the old primary into a replica: its writes answer READONLY."""
    with redis_server() as old, redis_server() as new, app_on(settings, old) as c:
        assert post(c, connected("RO1", 1000)).status_code == 200
        old.client.replicaof("127.0.0.1", new.port)
        wait_for(lambda: old.client.info("replication").get("master_link_status") == "up", what="replica in sync")
        assert_unavailable(c, connected("RO2", 2000), caplog, "ReadOnlyError")
        assert_unavailable(c, heartbeat("RO2", 1), caplog, "ReadOnlyError")
        old.client.replicaof("NO", "ONE")
        assert post(c, connected("RO2", 2000)).status_code == 200
        assert old.client.hget(keys.client("RO2"), "online") == "1"


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
    monkeypatch.setattr(batcher, "READ_TIMEOUT", 0.5)  # read when a batch is sent (a default argument kept 10 s)
    with redis_server() as own, app_on(settings, own) as c:
        assert post(c, connected("SLOW1", 1000)).status_code == 200
        own.client.execute_command("CLIENT", "PAUSE", "20000", "ALL")
        try:
            assert_unavailable(c, connected("SLOW2", 2000), caplog, "TimeoutError")
            assert_unavailable(c, heartbeat("SLOW1", 1), caplog, "TimeoutError")
        finally:
            own.client.execute_command("CLIENT", "UNPAUSE")
        assert post(c, connected("SLOW2", 2000)).status_code == 200


async def test_after_a_restart_no_ingest_fails_on_a_stale_connection(settings: Settings, keys: Keys) -> None:
    """Redis crashes and comes back (SIGKILL, restart on its AOF) under a live ingest whose pool holds idle
    connections (redis-py's own pool, which hands out connections the server closed: see connections.py): once Redis
    answers, not one of 200 events fails (a stale connection is connected again and its round sent once more,
    batcher.exchange: a 503 to EMQX otherwise), and every event is in Redis once."""
    async def go(own: FaultyRedis) -> list[str]:
        client = redis.asyncio.Redis(port=own.port, decode_responses=True)
        keys = Keys.of(settings)
        ingest = Ingest(batcher.Batcher(client, device_calls.SCRIPTS), keys, MetricsBuffer(), RouteTable(keys))
        try:
            held = [await client.connection_pool.get_connection() for _ in range(4)]  # idle in the pool
            for conn in held:
                await client.connection_pool.release(conn)
            for i in range(20):
                await ingest.apply(Connected(f"RS{i}", 1000))
            with own.down():
                pass
            failed = []
            for i in range(200):
                try:
                    await ingest.apply(Connected(f"RS{i % 100}", 2000 + i // 100))
                except Exception as exc:  # the ingest endpoint answers 503 for it
                    failed.append(f"{type(exc).__name__}: {exc}")
            return failed
        finally:
            await client.aclose()

    with faulty_redis() as own:
        assert await go(own) == []
        kept = {tuple(own.client.hmget(keys.client(f"RS{i}"), "online", "connected_at")) for i in range(100)}
        assert kept == {("1", "2001")}, kept


async def test_our_pools_replace_a_connection_the_server_closed(settings: Settings) -> None:
    """connections.py turns redis-py 8.1's maintenance notifications off: with them on (its default) the pool skips
    its check of a pooled connection (can_read) and hands out one the server has closed. Here every idle connection
    of the pool is dead after a restart, and every one the pool hands out works (no retry involved)."""
    async def go(own: FaultyRedis) -> list[str]:
        client = async_redis(settings.with_overrides(redis_url=own.url))
        pool = client.connection_pool
        try:
            held = [await pool.get_connection() for _ in range(4)]
            for conn in held:
                await pool.release(conn)
            with own.down():
                pass
            await asyncio.sleep(0.1)  # the loop sees the closed sockets
            failed = []
            held = [await pool.get_connection() for _ in range(4)]
            for conn in held:
                try:
                    await conn.send_packed_command(b"*1\r\n$4\r\nPING\r\n", check_health=False)
                    await conn.read_response()
                except Exception as exc:
                    failed.append(f"{type(exc).__name__}: {exc}")
            for conn in held:
                await pool.release(conn)
            return failed
        finally:
            await client.aclose()

    with faulty_redis() as own:
        assert await go(own) == []


def test_messages_wait_for_the_route_table(settings: Settings, redis_db: redis.Redis, keys: Keys) -> None:
    """Until the route table has loaded once a message answers 503 (stored without its routes it would never be
    forwarded); presence events go on. Here the load fails (the routes hash is of the wrong type) until fixed."""
    redis_db.set(keys.routes_enabled(), "not a hash")
    with serve_api(settings) as url, httpx.Client(base_url=url, headers=AUTH, timeout=10) as c:
        assert post(c, connected("GATE1", 1000)).status_code == 200
        r = post(c, heartbeat("GATE1", 1))
        assert_err(r, 503, "unavailable")
        assert r.headers["retry-after"] == "1"
        assert redis_db.hget(keys.client("GATE1"), "dur") is None  # nothing of the message was stored
        redis_db.delete(keys.routes_enabled())
        wait_for(lambda: post(c, heartbeat("GATE1", 1)).status_code == 200, timeout=15, what="the routes to load",
                 interval=0.1)
        assert redis_db.hget(keys.client("GATE1"), "dur") == "5"
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
