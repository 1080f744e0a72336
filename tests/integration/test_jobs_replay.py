"""Replaying many dead letters is an RQ job with progress (docs/delivery.md "What RQ runs"): the POST answers at
once with the job, a real RQ burst worker moves every letter back, `GET /iot/api/v1/jobs` shows how far it got."""

from __future__ import annotations

import httpx
import orjson
import pytest
import redis

from adapter.settings import Settings
from adapter.store.keys import Keys
from tests.support.jobs import work

BASE = "/iot/api/v1/monitor/devices/callbacks"
TARGET = "callback:1"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(replay_job_threshold=3)


def dead_letters(keys: Keys, r: redis.Redis, n: int) -> None:
    for i in range(n):
        delivery_id = f"d:R{i}:1:{TARGET}"
        r.hset(keys.dead(TARGET), delivery_id, orjson.dumps(
            {"deliveryId": delivery_id, "key": f"R{i}", "body": "{}", "attempts": 3, "time": 100 + i}))
        r.zadd(keys.dead_index(TARGET), {delivery_id: (100 + i) * 1000})


def streamed(keys: Keys, r: redis.Redis, settings: Settings) -> int:
    return sum(int(r.xlen(keys.delivery_stream(p))) for p in range(keys.stream_partitions))


def replay(admin: httpx.Client) -> dict:
    r = admin.post(f"{BASE}/replay", json={"id": 1})
    assert r.status_code == 200, r.text
    data: dict = r.json()["data"]
    return data


def test_replaying_many_dead_letters_is_a_job_with_progress(admin: httpx.Client, settings: Settings,
                                                            redis_db: redis.Redis, keys: Keys) -> None:
    assert admin.post(BASE, json={"type": "device", "url": "https://example.com/hook"}).status_code == 200
    dead_letters(keys, redis_db, 7)
    data = replay(admin)
    assert data["replayed"] == 0 and data["job"]
    queued = admin.get("/iot/api/v1/jobs", params={"id": data["job"]}).json()["data"]
    assert (queued["state"], queued["done"], queued["total"], queued["kind"]) == ("queued", 0, 7, "replay")
    assert redis_db.hlen(keys.dead(TARGET)) == 7 and streamed(keys, redis_db, settings) == 0  # nothing moved yet

    work(settings)

    after = admin.get("/iot/api/v1/jobs", params={"id": data["job"]}).json()["data"]
    assert (after["state"], after["done"], after["total"]) == ("finished", 7, 7)
    assert redis_db.hlen(keys.dead(TARGET)) == 0 and streamed(keys, redis_db, settings) == 7


def test_a_few_dead_letters_are_replayed_at_once(admin: httpx.Client, settings: Settings, redis_db: redis.Redis,
                                                 keys: Keys) -> None:
    assert admin.post(BASE, json={"type": "device", "url": "https://example.com/hook"}).status_code == 200
    dead_letters(keys, redis_db, 3)
    assert replay(admin) == {"replayed": 3}
    assert redis_db.hlen(keys.dead(TARGET)) == 0 and streamed(keys, redis_db, settings) == 3
