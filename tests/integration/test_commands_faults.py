"""The command runner through Redis faults (adapter/commands/runner.py, docs/reliability.md), on a redis-server of the
test's own and a fake EMQX on loopback: a publish whose outcome Redis refuses to record (every fault of
../shared/FAULTS.md) is recorded once Redis takes writes, not left to its lease, so nothing is published twice; the
runner goes on publishing within a generous deadline; the redis-py reset race (an AttributeError raised inside
redis-py) does not end it either. A worker SIGKILLed mid-publish: what was in flight goes out again, nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio

from adapter.commands import runner
from adapter.commands.ids import partition_of
from adapter.commands.records import CommandStore
from adapter.commands.rules import Limits, parse_request
from adapter.settings import Settings
from adapter.store.connections import async_redis
from adapter.store.keys import Keys
from adapter.worker import LoopThread
from tests.support.fake_emqx import KEY, SECRET, FakeEmqx
from tests.support.processes import worker_process
from tests.support.redis_cluster import own_cluster
from tests.support.redis_faults import FAULTS, FaultyRedis, fault, fault_server
from tests.support.servers import serve, wait_for

pytestmark = pytest.mark.single_redis  # each test breaks a redis-server of its own
RESUME_S = 10.0
KEYS = Keys("iot")


class HeldEmqx(FakeEmqx):
    """Holds every bulk publish until `release` is set (then answers 200 as EMQX does); counts what it got."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.received: list[str] = []  # topics, as they arrive (held or not)

    async def bulk(self, request: Any) -> Any:
        self.received += [m["topic"] for m in orjson.loads(await request.body())]
        await asyncio.to_thread(self.release.wait, 30)
        return await super().bulk(request)

    @staticmethod
    def _answer(message: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"id": "00061A4C2B1E5F3AF4420000030F0003"}


def settings_for(server: FaultyRedis, emqx_url: str) -> Settings:
    return Settings.from_env({"ADAPTER_REDIS_URL": server.url, "ADAPTER_EMQX_API_URL": f"{emqx_url}/api/v5",
                              "ADAPTER_EMQX_API_KEY": KEY, "ADAPTER_EMQX_API_SECRET": SECRET,
                              "ADAPTER_EMQX_TIMEOUT": "10", "ADAPTER_COMMAND_ACK_TIMEOUT": "600",
                              "ADAPTER_COMMAND_RETRY_SCHEDULE": "0.2s"}, dotenv=None)


@contextmanager
def running(cfg: Settings) -> Iterator[LoopThread]:
    died = threading.Event()
    service = LoopThread("command-runner", lambda stop: runner.run_commands(cfg, stop), on_death=died.set)
    service.start()
    try:
        yield service
    finally:
        service.stop(30)
    assert not service.failed and not died.is_set()


def create(server: FaultyRedis, *sns: str) -> list[str]:
    """Commands for `sns`, created from the test's own thread. These tests stay sync: the runner under test runs in
    a thread of its own (LoopThread) or a worker process, and the test waits on it with blocking polls, so the
    store call gets a loop of its own here."""
    async def go() -> list[str]:
        client = redis.asyncio.Redis(port=server.port, decode_responses=True)
        try:
            req = parse_request({"to": [{"sn": sn} for sn in sns], "command": "sh"}, Limits.of(Settings()))
            return [t["idStr"] for t in await CommandStore(client, KEYS).create(req)]
        finally:
            await client.aclose()

    return asyncio.run(go())


def recorded(server: FaultyRedis, ids: list[str]) -> bool:
    """Every command's send recorded: in progress, one try, waiting for the device's answer."""
    rows = [server.client.hmget(KEYS.command(i, partition_of(int(i), 0)), "state", "tryTimes", "phase") for i in ids]
    return all(row == ["1", "1", "waiting"] for row in rows)


@pytest.mark.parametrize("name", list(FAULTS))
def test_an_outcome_redis_refused_is_recorded_later_and_nothing_goes_out_twice(name: str) -> None:
    emqx = HeldEmqx()
    with fault_server(name) as server, serve(emqx.app()) as url, running(settings_for(server, url)) as service:
        ids = create(server, "SN1", "SN2", "SN3")
        wait_for(lambda: len(emqx.received) == 3, what="the runner to publish")
        with fault(server, name):
            emqx.release.set()  # EMQX answers 200 while Redis refuses the record
        wait_for(lambda: recorded(server, ids), timeout=RESUME_S, what="the outcomes to be recorded")
        [later] = create(server, "SN4")
        wait_for(lambda: "dma/cmd/SN4" in emqx.received, timeout=RESUME_S, what="the runner to go on")
        wait_for(lambda: recorded(server, [later]), timeout=RESUME_S, what="its outcome recorded")
        assert service.thread.is_alive()
    assert sorted(emqx.received) == [f"dma/cmd/SN{i}" for i in range(1, 5)]  # each once


def test_the_redis_py_reset_race_does_not_end_the_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-py raises AttributeError ('NoneType' object has no attribute 'writelines') from inside its own code
    when a connection is reset under a call (redis/redis-py #3546, #4287; seen on a cluster whose primary was
    killed). Planted on the runner's first claims: the runner waits and goes on."""
    real = runner.CommandRunner.claim
    raised = 0

    async def racing(self: runner.CommandRunner, limit: int) -> Any:
        nonlocal raised
        if raised < 3:
            raised += 1
            conn = redis.asyncio.Connection(port=1)
            conn._writer = None  # what a concurrent disconnect leaves
            await conn._send_packed_command([b"PING"])  # AttributeError, raised in redis-py
        return await real(self, limit)

    monkeypatch.setattr(runner.CommandRunner, "claim", racing)
    emqx = HeldEmqx()
    emqx.release.set()
    with fault_server("oom") as server, serve(emqx.app()) as url, running(settings_for(server, url)):
        ids = create(server, "SN1")
        wait_for(lambda: recorded(server, ids), timeout=RESUME_S, what="the runner to go on")
    assert raised == 3 and emqx.received == ["dma/cmd/SN1"]


class SplitEmqx(HeldEmqx):
    """Answers at once, but holds the bulk publishes of devices named `B…` while `holding`."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = True

    async def bulk(self, request: Any) -> Any:
        body = orjson.loads(await request.body())
        self.received += [m["topic"] for m in body]
        if self.holding and any(m["topic"].startswith("dma/cmd/B") for m in body):
            await asyncio.to_thread(self.release.wait, 30)
        return await FakeEmqx.bulk(self, _Replay(body))


class _Replay:
    """The request body, read again by FakeEmqx.bulk."""

    def __init__(self, body: Any) -> None:
        self.body = body

    async def json(self) -> Any:
        return self.body


def worker(server: FaultyRedis, emqx_url: str, log_path: Path) -> contextlib.AbstractContextManager[
        subprocess.Popen[bytes]]:
    """A worker publishing 5 commands a bulk call; workers one after the other share the log."""
    return worker_process(server.url, emqx_url, log_path, {"ADAPTER_COMMAND_PUBLISH_BATCH": "5"}, append=True)


def test_a_worker_killed_mid_publish_republishes_only_what_was_in_flight(tmp_path: Path) -> None:
    """Five commands published and recorded, five in flight (EMQX holds them) when the worker is SIGKILLed: the next
    worker publishes the five in flight again once their lease ends, and nothing else."""
    emqx = SplitEmqx()
    log_path = tmp_path / "worker.log"
    with fault_server("restart") as server, serve(emqx.app()) as url:
        with worker(server, url, log_path) as first:
            done = create(server, *[f"A{i}" for i in range(5)])
            wait_for(lambda: recorded(server, done), timeout=30, what="the first five to be recorded")
            in_flight = create(server, *[f"B{i}" for i in range(5)])
            wait_for(lambda: sum(t.startswith("dma/cmd/B") for t in emqx.received) == 5, what="the rest in flight")
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
        emqx.holding = False
        emqx.release.set()
        with worker(server, url, log_path):
            wait_for(lambda: recorded(server, in_flight), timeout=30, what="the lease to end and a resend")
    counts = {t: emqx.received.count(t) for t in set(emqx.received)}
    assert counts == {**{f"dma/cmd/A{i}": 1 for i in range(5)}, **{f"dma/cmd/B{i}": 2 for i in range(5)}}, counts


def test_the_runner_rides_through_a_killed_cluster_primary() -> None:
    """On a Redis Cluster of the test's own a primary is SIGKILLed for 3 s (its replica takes over; redis-py's
    asyncio cluster client may raise its reset race meanwhile), then started again (it comes back as a replica):
    the runner does not die, and publishes commands of every partition once the cluster is OK."""
    emqx = HeldEmqx()
    emqx.release.set()
    with own_cluster() as cluster, serve(emqx.app()) as url:
        cfg = settings_for_url(cluster.url, url)
        keys = Keys.of(cfg)
        sns = sns_of_every_partition(keys)
        with running(cfg) as service:
            create_on(cfg, keys, sns[:1])
            wait_for(lambda: len(emqx.received) == 1, timeout=RESUME_S, what="a first publish")
            victim = cluster.primaries()[0]
            victim.kill()
            time.sleep(3)  # the fault: a primary down for 3 s (not a wait for something)
            victim.start()
            cluster.wait_ok()
            create_on(cfg, keys, sns[1:])
            wait_for(lambda: len(set(emqx.received)) == len(sns), timeout=RESUME_S * 2,
                     what="commands of every partition to go out")
            assert service.thread.is_alive()


def settings_for_url(redis_url: str, emqx_url: str) -> Settings:
    return Settings.from_env({"ADAPTER_REDIS_URL": redis_url, "ADAPTER_RQ_REDIS_URL": "redis://127.0.0.1:1/0",
                              "ADAPTER_EMQX_API_URL": f"{emqx_url}/api/v5", "ADAPTER_EMQX_API_KEY": KEY,
                              "ADAPTER_EMQX_API_SECRET": SECRET, "ADAPTER_EMQX_TIMEOUT": "2",
                              "ADAPTER_COMMAND_ACK_TIMEOUT": "600", "ADAPTER_COMMAND_RETRY_SCHEDULE": "0.2s"},
                             dotenv=None)


def sns_of_every_partition(keys: Keys) -> list[str]:
    out: dict[int, str] = {}
    n = 0
    while len(out) < keys.cluster_partitions:
        out.setdefault(keys.shard(f"C{n}"), f"C{n}")
        n += 1
    return list(out.values())


def create_on(cfg: Settings, keys: Keys, sns: list[str]) -> None:
    """As `create`, on the test's own cluster (sync for the same reason)."""
    async def go() -> None:

        client = async_redis(cfg)
        try:
            req = parse_request({"to": [{"sn": sn} for sn in sns], "command": "sh"}, Limits.of(cfg))
            await CommandStore(client, keys).create(req)
        finally:
            await client.aclose()

    asyncio.run(go())
