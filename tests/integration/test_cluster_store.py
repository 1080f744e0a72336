"""The store on a real Redis Cluster (TEST_REDIS_MODE=cluster, `make test-cluster`): the test fixture itself, the
layout check at start, NOSCRIPT on the cluster, and the ingest batcher routed by slot, through SCRIPT FLUSH and a
live slot migration (MOVED, ASK). The layout check also runs on one Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio.cluster
import redis.cluster

from adapter.settings import ConfigError, Settings
from adapter.store import cluster_lane, resp
from adapter.store.batcher import Batcher
from adapter.store.cluster_batcher import ClusterBatcher
from adapter.store.connections import async_redis, batcher_for, check_layout, check_redis, sync_redis
from adapter.store.keys import Keys
from adapter.store.scripts import Script, call, pipeline_scripts, pipeline_scripts_sync, queue_call
from tests.conftest import CLUSTER, CLUSTER_PORTS, flush_store, primaries, script_flush

cluster_only = pytest.mark.skipif(not CLUSTER, reason="needs the test cluster (TEST_REDIS_MODE=cluster)")
INCR = Script("-- KEYS: key\n-- ARGV: by\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])")
# a script that builds a second key from its first KEY's tagged prefix (allowed: same slot)
PAIR = Script("-- KEYS: key\n-- ARGV: value\n"
              "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[1] .. ':n')")


def _keys(settings: Settings) -> Keys:
    return Keys.of(settings)


@cluster_only
def test_the_fixture_gives_a_cluster_and_cleans_up_its_prefix(redis_db: redis.Redis, settings: Settings,
                                                              key_prefix: str) -> None:
    assert isinstance(redis_db, redis.cluster.RedisCluster) and settings.redis_cluster
    assert key_prefix != "iot" and settings.key_prefix == key_prefix
    keys = _keys(settings)
    redis_db.script_load(PAIR.script)
    for p in keys.shards():  # a key in every partition: every primary holds some
        assert redis_db.evalsha(PAIR.sha, 1, f"{key_prefix}:{keys.shard_tag(p)}:x", "v") == 1
    held = [len(list(node.scan_iter(match=f"{key_prefix}*"))) for node in primaries(redis_db)]
    assert len(held) == len(CLUSTER_PORTS) and sum(held) == 2 * 48 and min(held) > 0
    flush_store(redis_db, key_prefix)
    assert [list(node.scan_iter(match=f"{key_prefix}*")) for node in primaries(redis_db)] == [[]] * len(held)


def test_layout_meta_is_written_on_a_cluster_and_absent_on_one_redis(redis_db: redis.Redis,
                                                                      settings: Settings) -> None:
    keys = _keys(settings)
    check_redis(settings)
    meta = redis_db.hgetall(keys.meta())
    if CLUSTER:
        assert meta == {"layout": "2", "partitions": str(settings.cluster_partitions)}
        check_redis(settings)  # a second start finds it
    else:
        assert meta == {}  # one Redis: nothing written, keys stay what they were


def test_a_store_of_another_layout_is_refused(redis_db: redis.Redis, settings: Settings) -> None:
    keys = _keys(settings)
    redis_db.hset(keys.meta(), mapping={"layout": "1" if CLUSTER else "2", "partitions": "48"})
    with pytest.raises(ConfigError, match="key layout"):
        check_redis(settings)


@pytest.mark.parametrize("sample", ["meta", "users", "devices", "callbacks"])
def test_a_store_spelled_for_the_other_layout_is_refused(redis_db: redis.Redis, settings: Settings,
                                                         sample: str) -> None:
    """No meta hash of this layout's spelling, but a key as the other layout spells it (its meta hash, or a sample of
    its keys): refused in one line, nothing written."""
    keys = _keys(settings)
    other = Keys(keys.prefix, 0 if keys.cluster else 48, keys.stream_partitions)
    key = {"meta": other.meta(), "users": other.users(), "devices": other.devices(0),
           "callbacks": other.targets("callback")}[sample]
    if sample == "meta":
        redis_db.hset(key, mapping={"layout": "1" if CLUSTER else "2", "partitions": "48"})
    elif sample == "users":
        redis_db.sadd(key, "admin")
    else:
        redis_db.zadd(key, {"x": 1})
    with pytest.raises(ConfigError, match=r"keys spelled for the other layout") as caught:
        check_redis(settings)
    assert key in str(caught.value) and "\n" not in str(caught.value)
    assert not redis_db.exists(keys.meta())  # a cluster store's meta is not written over it


@cluster_only
def test_a_cluster_store_of_another_partition_count_is_refused(redis_db: redis.Redis, settings: Settings) -> None:
    check_redis(settings)
    other = settings.with_overrides(cluster_partitions=16)
    client = sync_redis(other)
    try:
        with pytest.raises(ConfigError, match=r"ADAPTER_CLUSTER_PARTITIONS is 16.*written with 48 partitions"):
            check_layout(client, other)
    finally:
        client.close()


@cluster_only
async def test_call_loads_a_script_the_cluster_lost(redis_db: redis.Redis, settings: Settings,
                                                    aredis: redis.asyncio.Redis) -> None:
    keys = _keys(settings)

    counters = [INCR.call(key=f"{keys.prefix}:{keys.shard_tag(p)}:c", by=1) for p in keys.shards()]
    out = [int(await call(aredis, c)) for c in counters]
    script_flush(redis_db)  # every primary forgets it
    out += [int(await call(aredis, c)) for c in counters]
    result = out
    assert result == [1] * 48 + [2] * 48


def _submissions(keys: Keys, n: int) -> list[list[bytes]]:
    """n single-slot submissions spread over every partition: INCR of a counter and of its pair, one slot each."""
    out = []
    for i in range(n):
        tag = keys.shard_tag(i % len(keys.shards()))
        key = f"{keys.prefix}:{tag}:k{i % 5}"
        out.append([resp.pack("EVALSHA", INCR.sha, 1, key, 1), resp.pack("INCR", f"{key}:plain")])
    return out


def _totals(client: redis.Redis, keys: Keys) -> int:
    total = 0
    for p in keys.shards():
        for j in range(5):
            key = f"{keys.prefix}:{keys.shard_tag(p)}:k{j}"
            a, b = client.get(key), client.get(f"{key}:plain")
            assert a == b, (key, a, b)
            total += int(a or 0)
    return total


@cluster_only
async def test_the_batcher_routes_by_slot_and_reloads_scripts_after_a_flush(redis_db: redis.Redis,
                                                                            settings: Settings) -> None:
    keys = _keys(settings)

    client = async_redis(settings, decode=False)
    batcher = batcher_for(client, [INCR])
    assert isinstance(batcher, ClusterBatcher)
    try:
        await batcher.load_scripts()
        first = await asyncio.gather(*(batcher.submit(s) for s in _submissions(keys, 480)))
        assert all(r[0] == r[1] for r in first)
        script_flush(redis_db)
        again = await asyncio.gather(*(batcher.submit(s) for s in _submissions(keys, 480)))
        assert all(r[0] == r[1] for r in again)
        stats = batcher.stats
    finally:
        await client.aclose()
    assert stats["noscript"] >= 3 and stats["moved"] == stats["ask"] == 0  # at least one per primary
    assert _totals(redis_db, keys) == 960


class Nodes:
    """Direct clients of each primary, for CLUSTER SETSLOT / MIGRATE (what `redis-cli --cluster reshard` does)."""

    def __init__(self) -> None:
        self.by_port = {p: redis.Redis(port=p, decode_responses=True) for p in CLUSTER_PORTS}
        self.ids = {p: c.execute_command("CLUSTER MYID") for p, c in self.by_port.items()}

    def owner(self, slot: int) -> int:
        for start, end, *nodes in self.by_port[CLUSTER_PORTS[0]].execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return int(nodes[0][1])
        raise AssertionError(f"slot {slot} has no owner")

    def start(self, slot: int, src: int, dst: int) -> None:
        self.by_port[dst].execute_command("CLUSTER SETSLOT", slot, "IMPORTING", self.ids[src])
        self.by_port[src].execute_command("CLUSTER SETSLOT", slot, "MIGRATING", self.ids[dst])

    def move_keys(self, slot: int, src: int, dst: int, pause: float = 0.0) -> None:
        while batch := self.by_port[src].execute_command("CLUSTER GETKEYSINSLOT", slot, 2):
            self.by_port[src].execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *batch)
            time.sleep(pause)

    def finish(self, slot: int, dst: int) -> None:
        for p in (dst, *[q for q in CLUSTER_PORTS if q != dst]):
            self.by_port[p].execute_command("CLUSTER SETSLOT", slot, "NODE", self.ids[dst])

    def migrate(self, slot: int, src: int, dst: int, pause: float = 0.0) -> None:
        self.start(slot, src, dst)
        self.move_keys(slot, src, dst, pause)
        self.finish(slot, dst)

    def close(self) -> None:
        for c in self.by_port.values():
            c.close()


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    n = Nodes()
    yield n
    n.close()


@cluster_only
async def test_the_batcher_follows_ask_then_moved_during_a_slot_migration(redis_db: redis.Redis, settings: Settings,
                                                                          nodes: Nodes) -> None:
    keys = _keys(settings)
    tag = keys.shard_tag(7)
    slot = redis.crc.key_slot(tag.encode())
    src = nodes.owner(slot)
    dst = next(p for p in CLUSTER_PORTS if p != src)
    old, new = f"{keys.prefix}:{tag}:old", f"{keys.prefix}:{tag}:new"

    async def go() -> dict[str, int]:
        client = async_redis(settings, decode=False)
        batcher = ClusterBatcher(client, [INCR])
        try:
            await batcher.load_scripts()
            assert await batcher.submit([resp.pack("EVALSHA", INCR.sha, 1, old, 1)]) == [1]
            await asyncio.to_thread(nodes.start, slot, src, dst)
            # migrating: `new` is not on src, so src answers ASK; `old` still is, so src runs it
            assert await batcher.submit([resp.pack("EVALSHA", INCR.sha, 1, new, 5),
                                         resp.pack("EVALSHA", INCR.sha, 1, old, 1)]) == [5, 2]
            assert batcher.stats["ask"] == 1 and batcher.stats["moved"] == 0
            await asyncio.to_thread(nodes.move_keys, slot, src, dst)
            await asyncio.to_thread(nodes.finish, slot, dst)
            # the batcher's map still says src: MOVED, the slot's entry patched, resend
            assert await batcher.submit([resp.pack("EVALSHA", INCR.sha, 1, old, 1)]) == [3]
            assert batcher.stats["moved"] == 1
            assert await batcher.submit([resp.pack("EVALSHA", INCR.sha, 1, new, 1)]) == [6]
            assert batcher.stats["moved"] == 1  # the map is right again
            return batcher.stats
        finally:
            await client.aclose()

    try:
        await go()
        assert nodes.owner(slot) == dst
        assert redis.Redis(port=dst).get(old) == b"3" and redis.Redis(port=dst).get(new) == b"6"
    finally:
        if nodes.owner(slot) != src:
            nodes.migrate(slot, dst, src)  # give the slot back: the partitions stay spread evenly
    assert nodes.owner(slot) == src


@cluster_only
async def test_nothing_is_lost_or_doubled_while_a_slot_migrates_under_traffic(redis_db: redis.Redis,
                                                                              settings: Settings, nodes: Nodes) -> None:
    keys = _keys(settings)
    slot = redis.crc.key_slot(keys.shard_tag(0).encode())
    src = nodes.owner(slot)
    dst = next(p for p in CLUSTER_PORTS if p != src)
    subs = _submissions(keys, 4800)

    async def go() -> dict[str, int]:
        client = async_redis(settings, decode=False)
        batcher = ClusterBatcher(client, [INCR])
        try:
            await batcher.load_scripts()
            # warm the traffic so that keys exist in the slot, then migrate it while 48 submitters keep going
            await asyncio.gather(*(batcher.submit(s) for s in subs[:480]))
            migrating = asyncio.create_task(asyncio.to_thread(nodes.migrate, slot, src, dst, 0.002))

            async def submitter(share: list[list[bytes]]) -> None:
                for s in share:
                    r = await batcher.submit(s)
                    assert r[0] == r[1]
                    await asyncio.sleep(0)

            await asyncio.gather(*(submitter(subs[480 + k::48]) for k in range(48)))
            await migrating
            return batcher.stats
        finally:
            await client.aclose()

    try:
        stats = await go()
        assert _totals(redis_db, keys) == 4800
        assert nodes.owner(slot) == dst
        assert stats["moved"] + stats["ask"] >= 1, stats
    finally:
        if nodes.owner(slot) != src:
            nodes.migrate(slot, dst, src)


async def test_one_redis_keeps_the_one_connection_batcher(settings: Settings) -> None:
    if CLUSTER:
        pytest.skip("one Redis only")
    client = async_redis(settings)
    assert type(batcher_for(client, [INCR])) is Batcher
    await client.aclose()


def _key(keys: Keys, name: str) -> str:
    tag = keys.shard_tag(5)
    return f"{keys.prefix}:{tag}:{name}" if tag else f"{keys.prefix}:{name}"


async def test_pipelines_get_their_scripts_loaded_on_either_backend(redis_db: redis.Redis, settings: Settings,
                                                                    aredis: redis.asyncio.Redis) -> None:
    keys = _keys(settings)
    script_flush(redis_db)

    async with aredis.pipeline(transaction=False) as pipe:
        await pipeline_scripts(aredis, pipe, INCR)
        queue_call(pipe, INCR.call(key=_key(keys, "a"), by=2))
        result = list(await pipe.execute())
    assert result == [2]
    script_flush(redis_db)
    aredis = sync_redis(settings)
    try:
        with aredis.pipeline(transaction=False) as pipe:
            pipeline_scripts_sync(aredis, pipe, INCR)
            queue_call(pipe, INCR.call(key=_key(keys, "a"), by=3))
            assert pipe.execute() == [5]
    finally:
        aredis.close()


@cluster_only
async def test_a_node_that_fails_fails_only_its_commands_and_the_map_is_reloaded(
        redis_db: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """One node's batch fails (planted: its connection refuses once): that node's command answers the failure in its
    place, the other node's command of the same submission is answered, and the slot map is loaded again."""
    keys = _keys(settings)
    on = [_node_key(redis_db, keys, port, "f") for port in CLUSTER_PORTS[:2]]

    client = async_redis(settings, decode=False)
    batcher = ClusterBatcher(client, [INCR])
    await batcher.load_scripts()
    bad = client.nodes_manager.get_node_from_slot(redis.crc.key_slot(on[0].encode()))
    real = cluster_lane._round
    failed = 0

    async def refusing(conn: Any, batch: list[cluster_lane.Item], deadline: float, confirm: Any = None) -> list[Any]:
        nonlocal failed
        if failed == 0 and int(conn.port) == int(bad.port):
            failed += 1
            raise redis.exceptions.ConnectionError("planted: node gone")
        return await real(conn, batch, deadline, confirm)

    monkeypatch.setattr(cluster_lane, "_round", refusing)
    try:
        first = await batcher.submit([resp.pack("EVALSHA", INCR.sha, 1, k, 1) for k in on])
        assert isinstance(first[0], redis.exceptions.ConnectionError) and first[1] == 1, first
        await _until(lambda: batcher.stats["refreshes"] >= 1 and batcher._refresh is None)
        assert await batcher.submit([resp.pack("EVALSHA", INCR.sha, 1, k, 1) for k in on]) == [1, 2]
        assert batcher.stats["node_failures"] == 1
    finally:
        await client.aclose()


def _node_key(client: redis.Redis, keys: Keys, port: int, name: str) -> str:
    """A key of a partition whose slot is served by the primary on `port`."""
    nodes = Nodes()
    try:
        for p in keys.shards():
            key = f"{keys.prefix}:{keys.shard_tag(p)}:{name}"
            if nodes.owner(redis.crc.key_slot(key.encode())) == port:
                return key
    finally:
        nodes.close()
    raise AssertionError(f"no partition on {port}")


async def _until(ok: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.01)


@cluster_only
async def test_idle_connections_a_node_closed_are_sent_on_again_once(redis_db: redis.Redis, settings: Settings) -> None:
    """A pooled connection the node closed while it sat idle (here CLIENT KILL of exactly the batcher's own
    connections; a restart does the same) fails on its next use: the batcher connects again and sends the round once
    more. No submission fails, and none runs twice (INCR would show it)."""
    keys = _keys(settings)

    client = async_redis(settings, decode=False)
    batcher = ClusterBatcher(client, [INCR])
    try:
        await batcher.load_scripts()
        await asyncio.gather(*(batcher.submit(s) for s in _submissions(keys, 96)))
        killed = 0
        for node in client.get_primaries():
            for conn in node._free:
                if conn.is_connected:
                    host, port = conn._writer.get_extra_info("sockname")[:2]
                    killed += _kill(int(node.port), host, port)
        assert killed >= 3  # one idle connection per primary at least
        replies = await asyncio.gather(*(batcher.submit(s) for s in _submissions(keys, 96)))
        assert all(r[0] == r[1] for r in replies)
    finally:
        await client.aclose()
    assert _totals(redis_db, keys) == 192


def _kill(node_port: int, host: str, port: int) -> int:
    """CLIENT KILL of one client address on one node (not the shared cluster's other clients)."""
    with redis.Redis(port=node_port) as r:
        return int(r.client_kill_filter(_id=None, addr=f"{host}:{port}"))


@cluster_only
async def test_start_up_works_while_any_seed_answers(redis_db: redis.Redis, settings: Settings) -> None:
    """A seed list whose first seeds do not answer (nothing listens on ports 1 and 2): the client learns the cluster
    from the seed that does, on either client."""
    seeds = settings.with_overrides(
        redis_url=f"redis+cluster://127.0.0.1:1,127.0.0.1:2,127.0.0.1:{CLUSTER_PORTS[0]}/0")
    check_redis(seeds)  # the sync client, the layout check

    client = async_redis(seeds)
    try:
        await client.initialize()
        result = len(client.get_primaries())
    finally:
        await client.aclose()
    assert result == len(CLUSTER_PORTS)


@cluster_only
def test_rq_on_a_node_of_the_cluster_is_refused_in_one_line(redis_db: redis.Redis, settings: Settings) -> None:
    on_node = settings.with_overrides(rq_redis_url=f"redis://127.0.0.1:{CLUSTER_PORTS[1]}/0")
    with pytest.raises(ConfigError, match=r"ADAPTER_RQ_REDIS_URL .* is a node of a Redis Cluster"):
        check_redis(on_node)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTER_")}
    done = subprocess.run([sys.executable, "-m", "adapter", "user", "list"], capture_output=True, text=True,
                          timeout=60, env={**env, "ADAPTER_REDIS_URL": settings.redis_url,
                                           "ADAPTER_KEY_PREFIX": settings.key_prefix,
                                           "ADAPTER_RQ_REDIS_URL": on_node.rq_redis_url})
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "is a node of a Redis Cluster" in done.stderr and "Traceback" not in done.stderr


def test_a_cluster_that_does_not_answer_is_one_line() -> None:
    dead = Settings(redis_url="redis+cluster://app:s3cret-pw@127.0.0.1:1/0", rq_redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match="does not answer") as caught:
        check_redis(dead)
    assert "redis+cluster://app:***@127.0.0.1:1/0" in str(caught.value) and "s3cret-pw" not in str(caught.value)
    assert "\n" not in str(caught.value)
