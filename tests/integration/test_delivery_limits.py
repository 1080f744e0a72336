"""Bounded growth and fair delivery (issue 12, items 2 and 3), with the real Redis, the real pump and real
receivers on loopback: per-target concurrency, read credit, the circuit breaker, the caps on held deliveries
and dead letters, the batched release of a hold list, paged dead letters and batched replay."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from adapter.delivery import dead_letters
from adapter.delivery.model import Limits
from adapter.delivery.pump import GROUP, Pump, run_pump
from adapter.settings import Settings
from adapter.store.connections import async_redis
from adapter.store.keys import Keys
from adapter.targets.callbacks import CallbackStore
from tests.conftest import keys_for
from tests.integration.test_delivery import add_callback as add_callback_of
from tests.support.receiver import Receiver

# Both layouts. Every device key a test writes is of one partition P, whose stream holds all its entries (so one
# partition loop of the pump reads them in the order written): on one Redis the one stream (`delivery_partitions=1`,
# P = 0, the keys as they always were); on the cluster the keys are chosen among `<base><i>` for `keys.shard(key) == P`,
# and the engine's per-partition keys (state, held, dead letters, attempts, counters, metrics) are P's. Caps are
# per partition on the cluster (cap / partitions, `Limits.per_partition`): the tests set the configured cap to the
# per-partition figure they need times the partitions, and read the figure back from the engine's own Limits.
# Traffic over many partitions on the cluster (held order, the breaker per partition): test_cluster_delivery.py.
# A test spells its keys with the `keys` fixture; the partitions are the layout's, whatever the prefix.
SHARDS = keys_for("layout").shards()
PARTITIONS = len(SHARDS)  # what the engine splits its caps over (1 on one Redis, 48 on the cluster)
P = SHARDS[-1]  # the tests' partition: 0 on one Redis; 47 on the cluster (a key spelled without P would miss)

TARGET = "callback:1"


def names(keys: Keys, base: str, n: int) -> list[str]:
    """`n` device keys of partition P: `base0` .. `base<n-1>` on one Redis, the first `n` of P on the cluster."""
    return list(itertools.islice((key for key in (f"{base}{i}" for i in itertools.count()) if keys.shard(key) == P),
                                 n))


def name(keys: Keys, base: str) -> str:
    """One device key of partition P: `base` itself when it is of P (always on one Redis), else `base<i>`."""
    return base if keys.shard(base) == P else names(keys, base, 1)[0]


def add_callback(keys: Keys, r: redis.Redis, cb_id: int, url: str) -> None:
    """An enabled device callback under the test's keys (test_delivery's, of the device type)."""

    add_callback_of(r, cb_id, url, keys=keys)


def count(keys: Keys, r: redis.Redis, field: str) -> int:
    """The target's succCount or failedCount: its hash on one Redis, partition P's state on the cluster."""
    return int(r.hget(keys.delivery_counts(TARGET, P), field) or 0)


def metric(keys: Keys, r: redis.Redis, name: str) -> str | None:
    """A counter the scripts of partition P wrote (`metrics()` itself on one Redis)."""
    return r.hget(keys.metrics_in(P), name)  # type: ignore[return-value]


@pytest.fixture
def one(settings: Settings) -> Settings:
    """One partition on one Redis (the cluster has one stream per partition: the tests write partition P's), so
    that every entry a test writes is read by one partition loop of the one pump in the order written."""
    return settings.with_overrides(allow_private_urls=True, delivery_partitions=1, delivery_schedule="0.2s",
                                   delivery_timeout=30.0, delivery_lease=2.0)


def enqueue(keys: Keys, r: redis.Redis, target: str, key: str, n: int, sn: str | None = None) -> str:
    """One delivery entry as the ingest writes it (fanout.lua), on partition P's stream: its body carries `sn`
    and `n`."""
    assert keys.shard(key) == P, f"{key} is not of partition {P}"
    body = json.dumps({"sn": sn or key, "n": n})
    delivery_id = f"d:{key}:{n}:{target}"
    r.xadd(keys.delivery_stream(P), {"t": target, "k": key, "id": delivery_id, "b": body, "n": "0"})
    return delivery_id


async def run_until(settings: Settings, done: Callable[[], bool], timeout: float,
                    tune: Callable[[Pump], None] | None = None, rec: Receiver | None = None) -> bool:
    """Runs a pump until `done()` (polled) or the deadline; answers whether `done()` came true. `rec`'s hanging
    requests are let go before the pump stops (it waits for its requests)."""
    stop = asyncio.Event()

    async def ready(pump: Pump) -> None:
        if tune is not None:
            tune(pump)

    task = asyncio.create_task(run_pump(settings, stop, on_ready=ready))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if done():
                return True
            await asyncio.sleep(0.05)
        return done()
    finally:
        if rec is not None:
            rec.release.set()
        stop.set()
        await task


def received_ns(rec: Receiver, path: str | None = None) -> list[tuple[str, int]]:
    with rec.lock:
        return [(json.loads(r.body)["sn"], json.loads(r.body)["n"]) for r in rec.received
                if path is None or r.path == path]


async def on_redis(settings: Settings, work: Callable[[aioredis.Redis], Awaitable[object]]) -> object:
    client = async_redis(settings)
    try:
        return await work(client)
    finally:
        await client.aclose()


# --- item 3: fair delivery ------------------------------------------------------------------------------------

async def test_a_black_hole_holds_at_most_its_share_and_others_go_on(redis_db: redis.Redis, one: Settings,
                                                                     receiver: tuple[Receiver, str],
                                                                     keys: Keys) -> None:
    rec, url = receiver
    rec.answer = lambda r: "hang" if r.path == "/hole" else 200
    add_callback(keys, redis_db, 1, f"{url}/hole")
    add_callback(keys, redis_db, 2, f"{url}/ok")
    healthy = names(keys, "OK", 30)
    for key in names(keys, "H", 30):  # the black hole's deliveries first, of many devices: they would fill every slot
        enqueue(keys, redis_db, "callback:1", key, 0)
    for key in healthy:
        enqueue(keys, redis_db, "callback:2", key, 0)
    settings = one.with_overrides(delivery_concurrency=8, delivery_target_concurrency=2,
                                  delivery_breaker_threshold=1000)
    open_at_the_end: list[int] = []

    def healthy_all_in() -> bool:
        if len(received_ns(rec, "/ok")) < 30:
            return False
        open_at_the_end.append(len(received_ns(rec, "/hole")))
        return True

    assert await run_until(settings, healthy_all_in, timeout=20, rec=rec), "the healthy receiver was starved"
    assert sorted(received_ns(rec, "/ok")) == sorted((key, 0) for key in healthy)
    assert open_at_the_end[0] <= 2  # the black hole never had more than its share of requests open


async def test_tasks_waiting_behind_their_device_use_no_read_credit(redis_db: redis.Redis, one: Settings,
                                                                    receiver: tuple[Receiver, str], keys: Keys) -> None:
    rec, url = receiver
    slow, others = name(keys, "SLOW"), names(keys, "D", 10)
    rec.answer = lambda r: "hang" if json.loads(r.body)["sn"] == slow else 200
    add_callback(keys, redis_db, 1, url)
    for n in range(10):  # one device's chain first: its first hangs, the rest wait behind it
        enqueue(keys, redis_db, "callback:1", slow, n)
    for key in others:
        enqueue(keys, redis_db, "callback:1", key, 0)
    settings = one.with_overrides(delivery_concurrency=4, delivery_target_concurrency=16)
    got: list[tuple[str, int]] = []

    def others_in() -> bool:
        got[:] = received_ns(rec)
        return len(got) >= 11

    assert await run_until(settings, others_in, timeout=15, rec=rec), "the other devices' deliveries were never read"
    assert sorted(got) == sorted([(key, 0) for key in others] + [(slow, 0)])  # the slow one's second still waits


async def test_breaker_opens_defers_and_a_probe_closes_it(redis_db: redis.Redis, one: Settings,
                                                          receiver: tuple[Receiver, str], keys: Keys) -> None:
    rec, url = receiver
    down = {"yes": True}
    rec.answer = lambda r: 503 if down["yes"] else 200
    add_callback(keys, redis_db, 1, url)
    devices = names(keys, "B", 10)
    for key in devices:
        enqueue(keys, redis_db, "callback:1", key, 0)
    settings = one.with_overrides(delivery_schedule="0.1s,0.1s,0.1s,0.1s,0.1s,0.1s,0.1s,0.1s",
                                  delivery_target_concurrency=1, delivery_breaker_threshold=3,
                                  delivery_breaker_probe=0.5)
    state = keys.delivery_state("callback:1", P)

    async def health() -> dict:
        async def read(client: aioredis.Redis) -> dict:
            return await CallbackStore(client, keys).health(1)

        return await on_redis(settings, read)  # type: ignore[return-value]

    stop = asyncio.Event()
    task = asyncio.create_task(run_pump(settings, stop))
    try:
        deadline = time.monotonic() + 15
        while redis_db.hget(state, "breaker") != "open":
            assert time.monotonic() < deadline, "the breaker never opened"
            await asyncio.sleep(0.05)
        opened = len(rec.received)
        await asyncio.sleep(2.0)  # open: only probes go out, about one per 0.5 s
        during = len(rec.received) - opened
        assert during <= 6, f"{during} requests while the breaker was open"
        assert redis_db.hlen(keys.dead("callback:1", P)) == 0  # waiting, not dead-lettered faster
        assert count(keys, redis_db, "succCount") == 0
        down["yes"] = False
        while count(keys, redis_db, "succCount") != 10:
            assert time.monotonic() < deadline + 10, "not all delivered after the receiver recovered"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    assert (await health())["breaker"] == {"state": "closed", "since": None, "failures": 0, "probeAt": None}
    assert {sn for sn, _ in received_ns(rec)} == set(devices)
    assert int(metric(keys, redis_db, 'delivery_breaker_opened_total{target="callback:1"}') or 0) >= 1


async def test_breaker_state_is_visible_while_open(redis_db: redis.Redis, one: Settings, receiver: tuple[Receiver, str],
                                                   keys: Keys) -> None:
    rec, url = receiver
    rec.answer = lambda r: 503
    add_callback(keys, redis_db, 1, url)
    for key in names(keys, "V", 4):
        enqueue(keys, redis_db, "callback:1", key, 0)
    settings = one.with_overrides(delivery_schedule="30s", delivery_target_concurrency=1,
                                  delivery_breaker_threshold=3, delivery_breaker_probe=60)
    state = keys.delivery_state("callback:1", P)
    assert await run_until(settings, lambda: redis_db.hget(state, "breaker") == "open", 15)


    async def read(client: aioredis.Redis) -> dict:
        return await CallbackStore(client, keys).health(1)

    h = await on_redis(settings, read)
    assert isinstance(h, dict)
    assert h["breaker"]["state"] == "open" and h["breaker"]["failures"] == 3
    assert abs(h["breaker"]["since"] - time.time()) < 30 and h["breaker"]["probeAt"] >= h["breaker"]["since"]
    assert len(rec.received) == 3  # the fourth waits for the probe


# --- item 2: bounded growth -----------------------------------------------------------------------------------

async def test_held_deliveries_are_capped_per_target_dropping_the_oldest(redis_db: redis.Redis, one: Settings,
                                                                         receiver: tuple[Receiver, str],
                                                                         keys: Keys) -> None:
    rec, url = receiver
    seen: set[str] = set()

    def answer(r: object) -> int:
        delivery_id = r.headers["webhook-id"]  # type: ignore[attr-defined]
        first = delivery_id not in seen
        seen.add(delivery_id)
        return 500 if first and delivery_id.endswith(":0:callback:1") else 200

    rec.answer = answer
    add_callback(keys, redis_db, 1, url)
    key = name(keys, "CAP")
    for n in range(13):  # the first fails once; the other twelve wait behind it, five at most are kept
        enqueue(keys, redis_db, "callback:1", key, n)
    settings = one.with_overrides(delivery_max_held=5 * PARTITIONS, delivery_schedule="0.5s")
    cap = Limits.of(settings).per_partition(PARTITIONS).max_held  # what partition P's scripts keep
    assert cap == 5
    state = keys.delivery_state("callback:1", P)
    peak = {"held": 0}

    def done() -> bool:
        peak["held"] = max(peak["held"], int(redis_db.hget(state, "held") or 0))
        return len(rec.received) >= 2 + cap

    assert await run_until(settings, done, timeout=15)
    assert received_ns(rec) == [(key, 0), (key, 0)] + [(key, n) for n in range(13 - cap, 13)]  # the newest kept
    assert peak["held"] <= cap
    assert redis_db.hget(state, "heldDropped") == str(12 - cap) and int(redis_db.hget(state, "held") or 0) == 0
    assert metric(keys, redis_db, 'delivery_dropped_total{target="callback:1",reason="held_cap"}') == str(12 - cap)
    assert not redis_db.exists(keys.delivery_hold("callback:1", key), keys.delivery_held("callback:1", P))


async def test_a_long_hold_list_is_released_in_batches_in_order(redis_db: redis.Redis, one: Settings,
                                                                receiver: tuple[Receiver, str], keys: Keys) -> None:
    rec, url = receiver
    key = name(keys, "LONG")
    fail_once = {f"d:{key}:0:callback:1", f"d:{key}:4:callback:1"}  # the head, and one of the first released batch

    def answer(r: object) -> int:
        delivery_id = r.headers["webhook-id"]  # type: ignore[attr-defined]
        if delivery_id in fail_once:
            fail_once.discard(delivery_id)
            return 500
        return 200

    rec.answer = answer
    add_callback(keys, redis_db, 1, url)
    for n in range(12):
        enqueue(keys, redis_db, "callback:1", key, n)

    def small_batches(pump: Pump) -> None:
        pump.limits = replace(pump.limits, release_batch=3)

    assert await run_until(one, lambda: count(keys, redis_db, "succCount") == 12, 20, small_batches)
    assert [n for _, n in received_ns(rec)] == [0, 0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9, 10, 11]
    assert not redis_db.exists(keys.delivery_hold("callback:1", key))
    assert redis_db.hget(keys.delivery_state("callback:1", P), "held") == "0"


async def test_one_outcome_moves_at_most_one_batch(redis_db: redis.Redis, one: Settings, keys: Keys) -> None:
    """The script that ends a hold moves a bounded batch, however long the hold list."""
    from adapter.delivery.model import OUTCOME, Delivery, Outcome, outcome_call, outcome_command

    key = name(keys, "BIG")
    hold = keys.delivery_hold("callback:1", key)
    now = int(time.time() * 1000)
    held = [Delivery("callback:1", key, f"d:{key}:{n}:callback:1", b"{}", 0).to_json(now) for n in range(1, 2001)]
    redis_db.rpush(hold, f"head:d:{key}:0:callback:1", *held)
    redis_db.hset(keys.delivery_state("callback:1", P), "held", 2000)
    stream = keys.delivery_stream(P)
    redis_db.xgroup_create(stream, GROUP, id="0", mkstream=True)
    entry = redis_db.xadd(stream, {"t": "callback:1", "k": key, "id": f"d:{key}:0:callback:1", "b": "{}", "n": "1"})
    redis_db.xreadgroup(GROUP, "test", {stream: ">"})  # pending, as the pump reads it (the script skips others)
    head = Delivery("callback:1", key, f"d:{key}:0:callback:1", b"{}", 1)
    args = (keys, P, GROUP, entry, head, Outcome("success", status=200), "device", replace(Limits(), release_batch=500),
            int(time.time() * 1000))
    redis_db.script_load(OUTCOME.script)
    if keys.cluster:  # as the pump calls it there: by itself, routed by its KEYS (all in P's slot)
        remaining = await on_redis(one, outcome_call(*args).run)
    else:  # as the batcher sends it on one Redis: the packed EVALSHA
        conn = redis_db.connection_pool.get_connection()
        try:
            conn.send_packed_command([outcome_command(*args)])
            remaining = conn.read_response()
        finally:
            redis_db.connection_pool.release(conn)
    assert remaining in (["rel"], [b"rel"])  # the chain's mark: a release under way, 1,500 still held
    released = redis_db.xrange(stream)
    assert len(released) == 500
    assert [f["id"] for _, f in released][:2] == [f"d:{key}:1:callback:1", f"d:{key}:2:callback:1"]
    assert released[-1][1]["r"] == "2" and {f["r"] for _, f in released[:-1]} == {"1"}
    assert redis_db.lindex(hold, 0) == "rel" and redis_db.llen(hold) == 1501
    assert redis_db.hget(keys.delivery_state("callback:1", P), "held") == "1500"


async def test_dead_letters_are_capped_by_count_and_age(redis_db: redis.Redis, one: Settings,
                                                        receiver: tuple[Receiver, str], keys: Keys) -> None:
    rec, url = receiver
    rec.answer = lambda r: 400
    add_callback(keys, redis_db, 1, url)
    index = keys.dead_index("callback:1", P)
    redis_db.hset(keys.dead("callback:1", P), "old", orjson.dumps({"deliveryId": "old", "body": "{}", "time": 1}))
    redis_db.zadd(index, {"old": 1000})  # died long ago: past the age
    for key in names(keys, "X", 6):
        enqueue(keys, redis_db, "callback:1", key, 0)
    settings = one.with_overrides(delivery_max_dead=3 * PARTITIONS, delivery_dead_max_age=3600)
    cap = Limits.of(settings).per_partition(PARTITIONS).max_dead  # what partition P's scripts keep
    assert cap == 3
    assert await run_until(settings, lambda: count(keys, redis_db, "failedCount") == 6, 15)
    assert redis_db.zcard(index) == cap and redis_db.hlen(keys.dead("callback:1", P)) == cap
    last_to_die = [json.loads(a)["deliveryId"] for a in redis_db.lrange(keys.attempts("callback:1", P), 0, cap - 1)]
    assert sorted(redis_db.zrange(index, 0, -1)) == sorted(last_to_die)  # the oldest went
    assert redis_db.hget(keys.delivery_state("callback:1", P), "deadDropped") == str(1 + 6 - cap)
    metrics = redis_db.hgetall(keys.metrics_in(P))
    assert metrics['delivery_dropped_total{target="callback:1",reason="dead_age"}'] == "1"
    assert metrics['delivery_dropped_total{target="callback:1",reason="dead_cap"}'] == str(6 - cap)


async def test_dead_letters_page_and_replay_in_batches(redis_db: redis.Redis, one: Settings, keys: Keys) -> None:
    add_callback(keys, redis_db, 1, "http://127.0.0.1:9/x")
    target = "callback:1"
    ids = [f"d:{key}:0:{target}" for key in names(keys, "P", 7)]
    for n, delivery_id in enumerate(ids):
        redis_db.hset(keys.dead(target, P), delivery_id, orjson.dumps(
            {"deliveryId": delivery_id, "key": delivery_id.split(":")[1], "body": "{}", "attempts": 1,
             "time": 100 + n}))
        redis_db.zadd(keys.dead_index(target, P), {delivery_id: (100 + n) * 1000})
    redis_db.hset(keys.dead(target, P), "legacy", orjson.dumps({"deliveryId": "legacy", "body": "{}", "time": 50}))
    seen: list[int] = []

    async def work(client: aioredis.Redis) -> tuple[int, list, int]:
        total, items = await CallbackStore(client, keys).dead(1, 2, 3)

        async def progress(done: dead_letters.Replayed) -> None:
            seen.append(done.moved)

        done = await dead_letters.replay(client, keys, target, None, 1, 1000, batch=3, progress=progress)
        return total, items, done.moved

    total, items, moved = await on_redis(one, work)  # type: ignore[misc]
    assert total == 8  # the letter written before the index existed is indexed too (oldest)
    assert [i["deliveryId"] for i in items] == ids[2:5]
    # progress after each script call: one per partition in order, so on the cluster the empty ones before P first
    assert moved == 8 and seen == [0] * P + [3, 6, 8]
    assert redis_db.xlen(keys.delivery_stream(P)) == 8
    assert not redis_db.exists(keys.dead(target, P), keys.dead_index(target, P))
