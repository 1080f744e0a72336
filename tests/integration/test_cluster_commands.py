"""Remote-control commands on a real Redis Cluster (skipped unless TEST_REDIS_CLUSTER_PORTS is set, e.g.
"7151 7152 7153"): create for many devices across partitions, get by id, the merged listing page by page,
cancel, respond, the runner claiming per partition with a fake EMQX on loopback, and expiry pruning; never
a CROSSSLOT. Self-contained: a unique key prefix, SCAN + UNLINK on every primary afterwards."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio.cluster as acluster

from adapter.api.health import read_metrics
from adapter.broker.client import EmqxClient
from adapter.commands import calls
from adapter.commands.ids import partition_of
from adapter.commands.records import CommandStore
from adapter.commands.rules import CommandCalls, CommandResponse, Limits, parse_request
from adapter.commands.runner import CommandRunner
from adapter.errors import AppError
from adapter.settings import Settings
from adapter.store.keys import Keys
from tests.conftest import on_cluster as run_on_cluster
from tests.conftest import rq_url
from tests.support.fake_emqx import KEY, SECRET, FakeEmqx

PORTS = [int(p) for p in os.environ.get("TEST_REDIS_CLUSTER_PORTS", "").split()]
pytestmark = pytest.mark.skipif(not PORTS, reason="TEST_REDIS_CLUSTER_PORTS is not set (no cluster)")
LIMITS = Limits(max_targets=5000, body_max_bytes=1024, default_expires=600, max_expires=3600)
T = TypeVar("T")


@pytest.fixture
def prefix(cluster_prefix: str) -> str:
    return cluster_prefix


class Emqx(FakeEmqx):
    """Every device is subscribed: each publish is sent (200)."""

    @staticmethod
    def _answer(message: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"id": "00061A4C2B1E5F3AF4420000030F0003"}


@pytest.fixture
def emqx_fake() -> Emqx:
    return Emqx()


@pytest.fixture
def cfg(prefix: str, emqx: tuple[FakeEmqx, str]) -> Settings:
    return Settings.from_env({
        "ADAPTER_REDIS_URL": f"redis+cluster://127.0.0.1:{PORTS[0]}", "ADAPTER_KEY_PREFIX": prefix,
        "ADAPTER_RQ_REDIS_URL": rq_url(),
        "ADAPTER_ADMIN_PASSWORD": "x" * 16, "ADAPTER_INGEST_TOKEN": "y" * 16,
        "ADAPTER_EMQX_API_URL": f"{emqx[1]}/api/v5", "ADAPTER_EMQX_API_KEY": KEY, "ADAPTER_EMQX_API_SECRET": SECRET,
        "ADAPTER_COMMAND_PUBLISH_BATCH": "100",
    }, dotenv=None)


async def on_cluster(fn: Callable[[acluster.RedisCluster], Awaitable[T]]) -> T:
    return await run_on_cluster(fn, decode_responses=True)  # type: ignore[no-any-return]


def request(sns: list[str], **fields: Any) -> Any:
    return parse_request({"to": [{"sn": sn} for sn in sns], "command": "sh", "body": {"shcmd": "id"}, **fields},
                         LIMITS)


async def test_create_get_list_cancel_respond_across_partitions(cfg: Settings) -> None:
    keys = Keys.of(cfg)
    sns = [f"SN{i:04d}" for i in range(300)]

    async def go(r: acluster.RedisCluster) -> None:
        store = CommandStore(r, keys)  # type: ignore[arg-type]
        await r.execute_command("SCRIPT FLUSH", target_nodes=acluster.RedisCluster.PRIMARIES)  # NOSCRIPT: reload
        to = await store.create(request(sns, publishNow=False))
        ids = [t["id"] for t in to]
        assert [t["sn"] for t in to] == sns and len(set(ids)) == 300
        assert {partition_of(cid, 48) for cid in ids} == {keys.shard(sn) for sn in sns}
        assert len({keys.shard(sn) for sn in sns}) == 48  # every partition has some
        assert all(partition_of(cid, 48) == keys.shard(sn) for cid, sn in zip(ids, sns, strict=True))
        for cid, sn in list(zip(ids, sns, strict=True))[::37]:
            got = await store.get(cid)
            assert (got["id"], got["sn"], got["state"]) == (cid, sn, 0)
        with pytest.raises(AppError):
            await store.get(ids[0] + 48 * 10_000)  # its partition never counted that far: no such command

        # the merged listing: newest first by ordinal, exact pages
        newest_first = sorted(ids, reverse=True)
        seen: list[int] = []
        for page in range(1, 9):
            got = await store.page(None, None, page, 40)
            assert got["total"] == 300
            seen += [c["id"] for c in got["list"]]
        assert seen == newest_first
        deep = await store.page(None, None, 7, 13)
        assert [c["id"] for c in deep["list"]] == newest_first[78:91]
        one = await store.page(None, sns[5], 1, 10)
        assert [c["id"] for c in one["list"]] == [ids[5]]
        others = await store.create(request(sns[:3], **{"from": "ops"}))
        mine = await store.page("ops", None, 1, 10)
        assert [c["id"] for c in mine["list"]] == sorted((t["id"] for t in others), reverse=True)
        assert (await store.page("ops", sns[1], 1, 10))["list"][0]["id"] == others[1]["id"]

        woken = sns[20]
        assert await r.zscore(keys.commands_due(keys.shard(woken)), str(ids[20])) is None  # offline: waits
        assert await calls.run(r, calls.wake_call(keys, woken)) == 1  # type: ignore[arg-type]
        assert await r.zscore(keys.commands_due(keys.shard(woken)), str(ids[20])) is not None

        canceled = await store.cancel(ids[10])
        assert (canceled["state"], canceled["reason"]) == (3, "canceled")
        with pytest.raises(AppError):
            await store.cancel(ids[10])

        # an answer through the ingest's packed call, sent to the command's slot
        cid, sn = others[0]["id"], sns[0]
        p = keys.shard(sn)
        await calls.run(r, calls.claim_call(keys, p, 1000, 10_000))  # type: ignore[arg-type]
        await calls.run(r, calls.record_call(keys, p, 30_000, "send-1", [(str(cid), "sent", 0)]))  # type: ignore[arg-type]
        packed = CommandCalls(keys).respond("M1", CommandResponse(cid, sn, True, b'{"id":1,"status":"ok"}'))
        node = r.get_node_from_key(keys.commands_due(p))
        assert node is not None
        conn = node.acquire_connection()
        try:
            await conn.send_packed_command(packed)
            reply = await conn.read_response()
        except redis.exceptions.NoScriptError:
            await r.script_load(calls.COMMANDS.script)
            await conn.send_packed_command(packed)
            reply = await conn.read_response()
        finally:
            node.release(conn)
        assert reply == "success"
        assert (await store.get(cid))["state"] == 2
        assert (await store.response(cid, "ops"))["status"] == "ok"
        metrics = await read_metrics(r, keys)
        assert metrics["commands_created_total"] == "303"
        assert metrics['commands_finished_total{result="canceled"}'] == "1"

    await on_cluster(go)


async def test_the_runner_claims_every_partition_and_pruning_expires(cfg: Settings, emqx: tuple[FakeEmqx, str]) -> None:
    fake, _ = emqx
    keys = Keys.of(cfg)
    sns = [f"D{i:03d}" for i in range(250)]

    async def go(r: acluster.RedisCluster) -> None:
        store = CommandStore(r, keys)  # type: ignore[arg-type]
        broker = EmqxClient.from_settings(cfg)
        runner = CommandRunner(cfg, r, broker)  # type: ignore[arg-type]
        try:
            ids = [t["id"] for t in await store.create(request(sns))]
            # a member that is no command id in one partition's due set must not stop the runner
            await r.zadd(keys.commands_due(3), {"not-an-id": 0})
            started = time.monotonic()
            while len(fake.published) < 250:
                assert time.monotonic() - started < 10, f"only {len(fake.published)} published"
                if not await runner.step():
                    await asyncio.sleep(0.02)
            await asyncio.gather(*runner.inflight)
            assert sorted(m["topic"] for m in fake.published) == sorted(f"dma/cmd/{sn}" for sn in sns)
            assert {((c := await store.get(cid))["state"], c["tryTimes"]) for cid in ids[::25]} == {(1, 1)}
            sent = await read_metrics(r, keys)
            assert sent['commands_sends_total{outcome="sent"}'] == "250"
            assert await r.zscore(keys.commands_due(3), "not-an-id") is None

            short = [t["id"] for t in await store.create(request(sns[:20], expires=1, publishNow=False))]
            assert (await store.page(None, None, 1, 1))["total"] == 270
            await asyncio.sleep(1.2)
            got = await store.page(None, None, 1, 300)  # a page prunes first, every partition
            assert got["total"] == 250 and not set(short) & {c["id"] for c in got["list"]}
            assert sum([await r.zcard(keys.commands_expiry(p)) for p in keys.shards()]) == 250
        finally:
            await broker.aclose()

    await on_cluster(go)


async def test_the_bulk_job_writes_per_partition_and_a_retry_rewrites_nothing(cfg: Settings) -> None:
    """commands/bulk.py `write` on the cluster (RQ's worker does not run on one; the job's work does): every
    partition's chunks, progress after each; a retry from a progress that lags one chunk skips what exists."""
    from adapter.commands import bulk
    from adapter.jobs import progress as job_progress

    keys = Keys.of(cfg)
    sns = [f"B{i:04d}" for i in range(1500)]
    req = request(sns, publishNow=False)
    ids = await on_cluster(lambda r: CommandStore(r, keys).new_ids(req.sns))  # type: ignore[arg-type]
    conn = redis.RedisCluster(host="127.0.0.1", port=PORTS[0], decode_responses=True)
    try:
        job_progress.step(conn, keys, "j1", 600, done=0)  # type: ignore[arg-type]
        assert bulk.write(conn, keys, "j1", req, ids, 600) == 1500  # type: ignore[arg-type]
        assert job_progress.done_so_far(conn, keys, "j1") == 1500  # type: ignore[arg-type]
        cid, sn = ids[700], sns[700]
        p = keys.shard(sn)
        assert conn.hget(keys.command(str(cid), p), "sn") == sn
        conn.hset(keys.command(str(cid), p), "state", "1")  # sent meanwhile
        job_progress.step(conn, keys, "j1", 600, done=0)  # type: ignore[arg-type]  # its steps lost: all again
        bulk.write(conn, keys, "j1", req, ids, 600)  # type: ignore[arg-type]
        assert conn.hget(keys.command(str(cid), p), "state") == "1"  # not rewritten
        created = read_metrics_sync(conn, keys)
        assert created == 1500
    finally:
        conn.close()


def read_metrics_sync(conn: redis.RedisCluster, keys: Keys) -> int:
    return sum(int(conn.hget(keys.metrics_in(p), "commands_created_total") or 0) for p in keys.shards())
