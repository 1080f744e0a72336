"""`adapter store migrate` on real servers of the test's own: a store written by the service (EMQX events through the
ingest, callbacks, routes, users and pending commands through the API) moved from one Redis to a Redis Cluster,
interrupted (SIGKILL) and resumed, then back to another Redis; the service started on each target answers the same
devices, callbacks, routes and commands. And what the command refuses.

Ports: TEST_MIGRATE_PORTS ("a b c": three one-Redis servers) and TEST_OWN_CLUSTER_PORTS (six cluster nodes) pin them
(machines shared by several test runs); otherwise free ones. They start their own servers: one pass only."""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis

from adapter import cli
from adapter.settings import ConfigError, Settings
from adapter.store.connections import check_layout, sync_redis
from adapter.store.keys import Keys
from tests.conftest import ADMIN_PASSWORD, INGEST_TOKEN, login, ok
from tests.integration.test_auth import add_user
from tests.support.emqx import connected, disconnected, post, published
from tests.support.redis_cluster import OwnCluster, own_cluster
from tests.support.redis_faults import FaultyRedis
from tests.support.servers import free_port, serve_api, wait_for

# Open, not explained: a redis-py cluster client of this process (the migration's or the test's) is sometimes
# collected with a socket to the seed node still open although it was closed (`close()`), reported as an unclosed
# socket (ResourceWarning, through pytest's unraisable hook) at whatever collection comes next, the session's end
# included. Seen with sync_redis/open_store followed by one HGETALL, not with every such client. Each test collects
# at its end (`collect` below) so that this module's filter, and not the session's end, sees it.
pytestmark = [pytest.mark.single_redis, pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


@pytest.fixture(autouse=True)
def collect() -> Iterator[None]:
    yield
    gc.collect()

DEVICES = 400
CMD = "/iot/api/v1/remotectl/commands"
CALLBACKS = "/iot/api/v1/monitor/devices/callbacks"
ROUTES = "/iot/api/v1/msgroute/configs"
CREDENTIALS = "/iot/api/v1/devices/credentials"


@contextmanager
def servers(n: int) -> Iterator[list[FaultyRedis]]:
    pinned = [int(p) for p in os.environ.get("TEST_MIGRATE_PORTS", "").split()]
    made: list[FaultyRedis] = []
    try:
        for k in range(n):
            server = FaultyRedis(pinned[k] if len(pinned) > k else free_port(), tempfile.mkdtemp(prefix="migrate-"),
                                 (), aof=False)
            made.append(server)
            server.start()
        yield made
    finally:
        for server in made:
            server.client.close()
            server.kill()
            shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def plain() -> Iterator[list[FaultyRedis]]:
    with servers(3) as made:
        yield made


@pytest.fixture(scope="module")
def cluster() -> Iterator[OwnCluster]:
    with own_cluster() as c:
        yield c


def settings_for(url: str, rq: FaultyRedis) -> Settings:
    env = {"ADAPTER_REDIS_URL": url, "ADAPTER_ADMIN_PASSWORD": ADMIN_PASSWORD, "ADAPTER_INGEST_TOKEN": INGEST_TOKEN,
           "ADAPTER_EMQX_API_URL": "http://127.0.0.1:9/api/v5", "ADAPTER_COMMAND_MAX_TARGETS": "100",
           "ADAPTER_STATS_INTERVAL": "0.2"}
    if url.startswith("redis+cluster"):
        env["ADAPTER_RQ_REDIS_URL"] = f"redis://127.0.0.1:{rq.port}/1"
    return Settings.from_env(env, dotenv=None)


def migrate(*args: str) -> int:
    return cli.main(["store", "migrate", *args])


def write_store(api: httpx.Client, settings: Settings) -> None:
    """Devices, peripherals, users, credentials, callbacks, routes and pending commands, written by the service."""
    api.headers["Authorization"] = f"Bearer {INGEST_TOKEN}"
    for n in range(DEVICES):
        sn = f"SN{n:05d}"
        assert post(api, connected(sn, 1_000 + n)).status_code == 200
        if n % 3 == 0:
            assert post(api, disconnected(sn, 1_000 + n, 2_000 + n)).status_code == 200
        assert post(api, published(sn, f"dma/report/{sn}/sys", {"sn": sn, "time": 3, "d": {"free": n}},
                                   msg_id=f"{n + 10**6:032X}")).status_code == 200
        if n % 10 == 0:
            report = {"sn": sn, "d": [{"nId": "P1", "gwId": "G", "online": True, "msg": {"t": n}},
                                      {"nId": "P2", "gwId": "G", "online": False, "msg": {}}]}
            assert post(api, published(sn, f"dma/report/{sn}/peripherals", report, at=3_000_000 + n,
                                       msg_id=f"{n:032X}")).status_code == 200
    api.headers["Authorization"] = f"Bearer {login(api)}"
    add_user(settings, "viewer1", "viewer", "viewer-secret-1")
    for n in range(0, DEVICES, 50):
        ok(api.post(CREDENTIALS, json={"sn": f"SN{n:05d}"}))
    ok(api.post(CALLBACKS, json={"type": "device", "url": "https://example.com/device"}))
    ok(api.post(CALLBACKS, json={"type": "peripheral", "url": "https://example.com/peri"}))
    ok(api.post(ROUTES, json={"name": "all", "topic": "dma/#", "url": "https://example.com/all"}))
    ok(api.post(ROUTES, json={"name": "sys", "topic": "dma/report/+/sys", "url": "https://example.com/sys"}))
    for batch in range(3):
        to = [{"sn": f"SN{n:05d}"} for n in range(batch * 40, batch * 40 + 40)]
        ok(api.post(CMD, json={"from": "web", "to": to, "command": "sh", "method": "", "body": {"shcmd": "id"},
                               "publishNow": False, "maxRetries": 3, "expires": 38400, "detached": True}))


def views(api: httpx.Client) -> dict[str, Any]:
    """What the API answers about the store (commands without their ids: a cluster gives them new ones)."""
    devices = ok(api.get("/iot/api/v1/monitor/devices", params={"page": 1, "limit": 1000}))
    peris = ok(api.get("/iot/api/v1/monitor/devices/peripherals", params={"page": 1, "limit": 1000}))
    commands = ok(api.get(CMD, params={"page": 1, "limit": 1000}))
    rows = commands.get("list") or commands.get("items") or commands.get("data") or []
    return {
        "count": ok(api.get("/iot/api/v1/monitor/devices/count")),
        "devices": sorted((d["sn"], d.get("online")) for d in devices["list"]),
        "peripherals": sorted((p["sn"], p.get("nId"), p.get("online")) for p in peris["list"]),
        "callbacks": ok(api.get(CALLBACKS)),
        "routes": ok(api.get(ROUTES)),
        "commands": sorted((c["sn"], c["command"], c["state"], c["from"]) for c in rows),
        "command_total": commands.get("total"),
        "credentials": ok(api.get(CREDENTIALS, params={"page": 1, "limit": 100})),
    }


@contextmanager
def service(settings: Settings) -> Iterator[httpx.Client]:
    with serve_api(settings) as url, httpx.Client(base_url=url, timeout=30) as api:
        yield api


def test_a_store_moves_to_a_cluster_and_back(plain: list[FaultyRedis], cluster: OwnCluster,
                                             capsys: pytest.CaptureFixture[str],
                                             request: pytest.FixtureRequest) -> None:
    source, back, rq = plain
    with service(settings_for(source.url, rq)) as api:
        write_store(api, settings_for(source.url, rq))
        before = views(api)
        # the API process holds the series sampler's lease (once it samples): a migration refuses to run beside it
        wait_for(lambda: source.client.exists(Keys("iot").stats_lease()), what="the sampler's lease")
        assert migrate("--from", source.url, "--to", cluster.url, "--yes-stopped") == 2
        assert "a process of the service is running" in capsys.readouterr().err
    assert len(before["devices"]) == DEVICES and before["command_total"] == 120
    src_keys = source.client.dbsize()

    # interrupted: SIGKILL while it walks, with small pages
    cmd = [sys.executable, "-m", "adapter", "store", "migrate", "--from", source.url, "--to", cluster.url,
           "--yes-stopped"]
    probe = sync_redis(settings_for(cluster.url, rq))
    request.addfinalizer(probe.close)
    cursor = Keys("iot", 48).migration()
    proc = subprocess.Popen([*cmd, "--batch", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: int(probe.hget(cursor, "done") or 0) > 50, timeout=60, what="the walk", interval=0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    state = probe.hgetall(cursor)
    assert state["phase"] == "walk" and int(state["done"]) < src_keys, state
    with pytest.raises(ConfigError, match="unfinished migration"):  # a half-made target is never served
        check_layout(probe, settings_for(cluster.url, rq))
    # the same command again: it goes on from its cursor and finishes, the counts equal
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "MISMATCH" not in done.stdout and "devices" in done.stdout
    assert not probe.exists(cursor) and probe.hgetall(Keys("iot", 48).meta()) == {"layout": "2", "partitions": "48"}
    renumbered = probe.hgetall(Keys("iot", 48).migration_ids())
    assert len(renumbered) == 120
    assert source.client.dbsize() == src_keys  # nothing written to the source

    # the service on the cluster answers the same
    with service(settings_for(cluster.url, rq)) as api:
        api.headers["Authorization"] = f"Bearer {login(api)}"
        assert views(api) == before
        new = next(iter(renumbered.values()))
        found = ok(api.get(CMD, params={"id": new}))
        assert found["idStr"] == new and found["sn"]
        assert login(api, "viewer1", "viewer-secret-1")
    capsys.readouterr()
    # a second run: the target holds a store now
    assert migrate("--from", source.url, "--to", cluster.url, "--yes-stopped") == 2
    assert "already holds a store" in capsys.readouterr().err

    # and back to one Redis
    assert migrate("--from", cluster.url, "--to", back.url, "--yes-stopped") == 0
    out = capsys.readouterr()
    assert "MISMATCH" not in out.out and "walk" in out.err
    assert migrate("--from", cluster.url, "--to", back.url, "--verify") == 0
    with service(settings_for(back.url, rq)) as api:
        api.headers["Authorization"] = f"Bearer {login(api)}"
        assert views(api) == before
        assert ok(api.get(CMD, params={"id": new}))["sn"] == found["sn"]
        # new commands get ids after the moved ones
        made = ok(api.post(CMD, json={"from": "web", "to": [{"sn": "SN00001"}], "command": "sh", "method": "",
                                      "body": {}, "publishNow": False, "maxRetries": 1, "expires": 600,
                                      "detached": True}))
        assert int(made["to"][0]["idStr"]) > max(int(v) for v in renumbered.values())


def test_refusals(plain: list[FaultyRedis], cluster: OwnCluster, capsys: pytest.CaptureFixture[str],
                  request: pytest.FixtureRequest) -> None:
    rq = plain[2]
    empty = f"redis://127.0.0.1:{rq.port}/5"
    rq.client.execute_command("SELECT", 0)

    def refused(*args: str) -> str:
        assert migrate(*args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        return err

    assert "holds no store" in refused("--from", empty, "--to", cluster.url, "--prefix", "nothing", "--yes-stopped")
    assert "both one Redis" in refused("--from", empty, "--to", f"redis://127.0.0.1:{rq.port}/6")
    assert "does not answer" in refused("--from", f"redis://127.0.0.1:{free_port()}/0", "--to", cluster.url)
    assert "--to" in refused("--from", empty, "--to", "http://example.com")
    # a delivery backlog: stream entries the pumps have not acknowledged
    r = redis.Redis(port=rq.port, db=7)
    keys = Keys("bk")
    r.hset(keys.client("SN1"), "online", "1")
    r.xadd(keys.delivery_stream(0), {"t": "callback:1", "k": "SN1", "id": "e1", "b": "{}", "n": "0"})
    assert "undelivered" in refused("--from", f"redis://127.0.0.1:{rq.port}/7", "--to", cluster.url,
                                    "--prefix", "bk", "--yes-stopped")
    r.delete(keys.delivery_stream(0))
    # a rollout whose driver reserved command ids and died before writing the commands
    r.hset(keys.rollout(1), mapping={"state": "running", "pending": '[["SN1", 202612030000000001]]'})
    assert "not written" in refused("--from", f"redis://127.0.0.1:{rq.port}/7", "--to", cluster.url,
                                    "--prefix", "bk", "--yes-stopped")
    r.hdel(keys.rollout(1), "pending")
    # without --yes-stopped nothing is written
    assert "--yes-stopped" in refused("--from", f"redis://127.0.0.1:{rq.port}/7", "--to", cluster.url, "--prefix",
                                      "bk")
    assert migrate("--from", f"redis://127.0.0.1:{rq.port}/7", "--to", cluster.url, "--prefix", "bk",
                   "--dry-run") == 0
    probe = sync_redis(settings_for(cluster.url, rq))
    request.addfinalizer(probe.close)
    assert not [k for k in probe.scan_iter(match="bk:*")]
    r.flushdb()
    r.close()
