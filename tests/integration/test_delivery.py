"""The delivery engine with the real Redis, the real pump and real receivers on loopback (delivery issue, item 4).

Retry timing runs on a compressed schedule; the pump runs in burst mode (it stops when nothing is left).
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import redis
from standardwebhooks import Webhook

from adapter.delivery.pump import run_pump
from adapter.delivery.signing import new_secret
from adapter.settings import Settings
from adapter.store.keys import Keys
from tests.conftest import enable_callbacks
from tests.support.emqx import connected, disconnected, post, subscribed
from tests.support.receiver import Receiver


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.with_overrides(allow_private_urls=True, delivery_schedule="0.2s,0.2s,0.2s",
                                   delivery_timeout=0.5, delivery_lease=2.0)


def add_callback(r: redis.Redis, cb_id: int, url: str, cb_type: str = "device", *, keys: Keys) -> str:
    """An enabled callback as the callbacks store writes it, under `keys` (the test's)."""

    secret = new_secret()
    r.hset(keys.target("callback", cb_id), mapping={"type": cb_type, "url": url, "enabled": "1", "secret": secret,
                                                    "createTime": 1, "updateTime": 1, "succCount": 0,
                                                    "failedCount": 0})
    r.zadd(keys.targets("callback"), {str(cb_id): cb_id})
    enable_callbacks(r, keys, cb_type, str(cb_id))
    return secret


async def pump(settings: Settings) -> None:
    """A pump in burst mode: it delivers what the streams hold, then returns."""
    await run_pump(settings, asyncio.Event(), burst=True)


def online_then_offline(ingest: httpx.Client, sn: str) -> None:
    post(ingest, connected(sn, 1_700_000_000_000))
    post(ingest, subscribed(sn))
    post(ingest, disconnected(sn, 1_700_000_000_000, 1_700_000_005_000))


def attempts(keys: Keys, r: redis.Redis, target: str) -> list[dict]:
    """The target's attempts, oldest first (each test's deliveries are of one device: one partition)."""
    return [json.loads(a) for p in keys.shards() for a in reversed(r.lrange(keys.attempts(target, p), 0, -1))]


def counted(keys: Keys, r: redis.Redis, target: str, field: str) -> int:
    """The target's succCount or failedCount: its hash on one Redis, summed over the partitions on the cluster."""
    return sum(int(r.hget(keys.delivery_counts(target, p), field) or 0) for p in keys.shards())


def stats(keys: Keys, r: redis.Redis, cb_type: str) -> dict[str, int]:
    """The callback type's stats (succ, failed), summed over the partitions on the cluster."""
    out: dict[str, int] = {}
    for p in keys.shards():
        for field, n in r.hgetall(keys.callback_stats_in(cb_type, p)).items():
            out[field] = out.get(field, 0) + int(n)
    return out


def dead(keys: Keys, r: redis.Redis, target: str) -> dict[str, str]:
    """The target's dead letters, over the partitions."""
    return {k: v for p in keys.shards() for k, v in r.hgetall(keys.dead(target, p)).items()}


async def test_signed_delivery_and_counters(ingest: httpx.Client, redis_db: redis.Redis, fast: Settings,
                                            receiver: tuple[Receiver, str], keys: Keys) -> None:
    rec, url = receiver
    secret = add_callback(redis_db, 1, f"{url}/device", keys=keys)
    online_then_offline(ingest, "DL1")
    await pump(fast)
    assert len(rec.received) == 2
    wh = Webhook(secret)
    bodies = [wh.verify(r.body, r.headers) for r in rec.received]
    assert [(b["sn"], b["online"], b["version"]) for b in bodies] == [("DL1", True, 2), ("DL1", False, 3)]
    assert rec.received[0].headers["webhook-id"] == "d:DL1:2:callback:1"
    assert counted(keys, redis_db, "callback:1", "succCount") == 2
    assert stats(keys, redis_db, "device") == {"succ": 2}
    log = attempts(keys, redis_db, "callback:1")
    assert [(a["outcome"], a["status"], a["attempt"]) for a in log] == [("success", 200, 1), ("success", 200, 1)]
    assert all(a["durationMs"] >= 0 and a["excerpt"] == '{"ok":true}' for a in log)


async def test_500_is_retried_then_delivered_in_order(ingest: httpx.Client, redis_db: redis.Redis, fast: Settings,
                                                      receiver: tuple[Receiver, str], keys: Keys) -> None:
    rec, url = receiver
    calls = {"n": 0}

    def answer(r: object) -> int:
        calls["n"] += 1
        return 500 if calls["n"] == 1 else 200

    rec.answer = answer
    add_callback(redis_db, 1, url, keys=keys)
    online_then_offline(ingest, "DL2")
    await pump(fast)
    versions = [json.loads(b)["version"] for b in rec.bodies()]
    assert versions == [2, 2, 3]  # the failed first one again, and the second one only after it
    log = attempts(keys, redis_db, "callback:1")
    assert [a["outcome"] for a in log] == ["retry", "success", "success"]
    assert log[1]["attempt"] == 2
    gap = rec.received[1].at - rec.received[0].at
    assert 0.15 <= gap < 5  # about the compressed schedule's 0.2 s (±20% jitter)
    assert counted(keys, redis_db, "callback:1", "succCount") == 2
    assert redis_db.exists(keys.delivery_hold("callback:1", "DL2")) == 0


async def test_429_honours_retry_after(ingest: httpx.Client, redis_db: redis.Redis, fast: Settings,
                                       receiver: tuple[Receiver, str], keys: Keys) -> None:
    rec, url = receiver
    rec.answer = lambda r: (429, {"Retry-After": "1"}) if len(rec.received) == 1 else 200
    add_callback(redis_db, 1, url, keys=keys)
    post(ingest, connected("DL3", 1000))
    post(ingest, subscribed("DL3"))
    await pump(fast)
    assert len(rec.received) == 2
    assert rec.received[1].at - rec.received[0].at >= 0.95


async def test_hang_past_the_timeout_is_retried(ingest: httpx.Client, redis_db: redis.Redis, fast: Settings,
                                                receiver: tuple[Receiver, str], keys: Keys) -> None:
    rec, url = receiver
    rec.answer = lambda r: "hang" if len(rec.received) == 1 else 200
    add_callback(redis_db, 1, url, keys=keys)
    post(ingest, connected("DL4", 1000))
    post(ingest, subscribed("DL4"))
    await pump(fast)
    log = attempts(keys, redis_db, "callback:1")
    assert [(a["outcome"], a["status"]) for a in log] == [("retry", None), ("success", 200)]
    assert log[0]["error"] == "timeout"


@pytest.mark.parametrize("status", [400, 410])
async def test_other_4xx_fail_at_once_to_the_dead_letter_and_replay(ingest: httpx.Client, redis_db: redis.Redis,
                                                                    fast: Settings, receiver: tuple[Receiver, str],
                                                                    status: int, keys: Keys) -> None:
    rec, url = receiver
    rec.answer = lambda r: status
    add_callback(redis_db, 1, url, keys=keys)
    post(ingest, connected("DL5", 1000))
    post(ingest, subscribed("DL5"))
    await pump(fast)
    assert len(rec.received) == 1
    assert counted(keys, redis_db, "callback:1", "failedCount") == 1
    letters = dead(keys, redis_db, "callback:1")
    assert list(letters) == ["d:DL5:2:callback:1"]
    item = json.loads(letters["d:DL5:2:callback:1"])
    assert item["lastStatus"] == status and item["attempts"] == 1
    # replay: back on the stream with the same delivery id, delivered now that the receiver answers 200
    rec.answer = lambda r: 200
    p = keys.stream_partition("DL5")
    redis_db.xadd(keys.delivery_stream(p),
                  {"t": "callback:1", "k": "DL5", "id": item["deliveryId"], "b": item["body"], "n": "0"})
    redis_db.hdel(keys.dead("callback:1", p), item["deliveryId"])
    await pump(fast)
    assert len(rec.received) == 2 and rec.received[1].body == rec.received[0].body
    assert rec.received[1].headers["webhook-id"] == "d:DL5:2:callback:1"


async def test_retries_exhausted_is_dead(ingest: httpx.Client, redis_db: redis.Redis, fast: Settings,
                                         receiver: tuple[Receiver, str], keys: Keys) -> None:
    rec, url = receiver
    rec.answer = lambda r: 503
    add_callback(redis_db, 1, url, keys=keys)
    post(ingest, connected("DL6", 1000))
    post(ingest, subscribed("DL6"))
    await pump(fast.with_overrides(delivery_schedule="0.1s,0.1s"))
    assert len(rec.received) == 3  # the first try and two retries
    assert [a["outcome"] for a in attempts(keys, redis_db, "callback:1")] == ["retry", "retry", "dead"]
    assert len(dead(keys, redis_db, "callback:1")) == 1
    assert counted(keys, redis_db, "callback:1", "failedCount") == 1


async def test_disabled_target_drops_and_private_urls_are_refused(ingest: httpx.Client, redis_db: redis.Redis,
                                                                  fast: Settings, receiver: tuple[Receiver, str],
                                                                  keys: Keys) -> None:
    rec, url = receiver
    add_callback(redis_db, 1, url, keys=keys)
    post(ingest, connected("DL7", 1000))
    post(ingest, subscribed("DL7"))
    await pump(fast.with_overrides(allow_private_urls=False))  # the SSRF guard at send time: loopback refused
    assert rec.received == []
    log = attempts(keys, redis_db, "callback:1")
    assert log[0]["outcome"] == "failed" and log[0]["error"] == "ssrf_blocked"


async def test_two_callbacks_each_get_every_transition(ingest: httpx.Client, redis_db: redis.Redis, fast: Settings,
                                                       receiver: tuple[Receiver, str], keys: Keys) -> None:
    rec, url = receiver
    add_callback(redis_db, 1, f"{url}/a", keys=keys)
    add_callback(redis_db, 2, f"{url}/b", keys=keys)
    add_callback(redis_db, 3, f"{url}/p", cb_type="peripheral", keys=keys)
    for n in range(5):
        online_then_offline(ingest, f"MULTI{n}")
    t0 = time.monotonic()
    await pump(fast)
    assert time.monotonic() - t0 < 10
    paths = sorted(r.path for r in rec.received)
    assert paths == ["/a"] * 10 + ["/b"] * 10


async def test_order_behind_a_retry_survives_a_pump_taking_over(ingest: httpx.Client, redis_db: redis.Redis,
                                                                fast: Settings, receiver: tuple[Receiver, str],
                                                                keys: Keys) -> None:
    rec, url = receiver
    rec.answer = lambda r: 500 if len(rec.received) == 1 else 200
    add_callback(redis_db, 1, url, keys=keys)
    online_then_offline(ingest, "DLH")
    slow = fast.with_overrides(delivery_schedule="1s")
    hold = keys.delivery_hold("callback:1", "DLH")

    stop = asyncio.Event()
    first = asyncio.create_task(run_pump(slow, stop))
    deadline = time.monotonic() + 10
    while redis_db.llen(hold) < 2:  # the head mark and the second transition parked behind it
        assert time.monotonic() < deadline, "no hold formed"
        await asyncio.sleep(0.02)
    stop.set()
    await first
    await run_pump(slow, asyncio.Event(), burst=True)  # a new pump: it learns the hold from Redis
    versions = [json.loads(b)["version"] for b in rec.bodies()]
    assert versions == [2, 2, 3]
    assert redis_db.exists(hold) == 0
    assert sum(redis_db.scard(keys.delivery_holds(p)) for p in range(keys.stream_partitions)) == 0
