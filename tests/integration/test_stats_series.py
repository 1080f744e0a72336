"""The per-minute series (adapter/stats/) on the real Redis, both layouts: the sampler writes what the service
counts into each series' ring, `GET /iot/api/v1/stats/series` reads windows of it, one API process samples at a
time, and bad queries get the error envelope."""

from __future__ import annotations

import time
from typing import Any

import httpx
import redis

from adapter.devices.presence_log import LOG_MAX
from adapter.settings import Settings
from adapter.stats import sampler
from adapter.stats.series import RING, SLOT
from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis
from tests.conftest import login
from tests.integration.test_api_envelope import assert_err
from tests.support.emqx import connected, disconnected, post, subscribed
from tests.support.servers import serve_api, wait_for

SERIES = "/iot/api/v1/stats/series"


def points(api: httpx.Client, **query: Any) -> list[list[Any]]:
    r = api.get(SERIES, params=query)
    assert r.status_code == 200, r.text
    return r.json()["data"]["points"]


async def test_the_sampler_writes_what_is_counted_and_the_api_answers_per_minute(
        admin: httpx.Client, redis_db: redis.Redis, keys: Keys, settings: Settings,
        aredis: redis.asyncio.Redis) -> None:


    route = admin.post("/iot/api/v1/msgroute/configs", json={"name": "r", "topic": "a/#", "url": "https://e.com/h"})
    route_id = route.json()["data"]["id"]
    last = keys.shards()[-1]  # a partition of its own on the cluster: the reads sum them
    counts = keys.delivery_counts(f"route:{route_id}", last)

    def device(sn: str) -> None:
        redis_db.zadd(keys.devices(keys.shard(sn)), {sn: 0})
        redis_db.zadd(keys.devices_online(keys.shard(sn)), {sn: 0})

    t0 = (int(time.time()) // 600) * 600 - 1200  # 20 minutes ago, on a 10-minute boundary
    device("SN1")
    redis_db.hset(keys.metrics(), mapping={'ingest_events_total{type="message.publish"}': 10,
                                           'ingest_events_total{type="client.connected"}': 2})
    redis_db.hset(keys.metrics_in(last), mapping={'commands_finished_total{result="success"}': 1,
                                                  'commands_finished_total{result="canceled"}': 1})
    redis_db.hincrby(counts, "succCount", 5)
    opened: dict[str, int] = {}  # what the sampler opened: the next sample of a minute writes only its last value
    assert await sampler.sample(aredis, keys, t0, opened) == 7 + 2  # the fleet's, the route's two

    device("SN2")
    redis_db.hincrby(keys.metrics(), 'ingest_events_total{type="message.publish"}', 4)
    redis_db.hincrby(keys.metrics(), 'ingest_events_total{type="session.subscribed"}', 1)
    redis_db.hincrby(keys.metrics_in(last), 'commands_finished_total{result="retries_exhausted"}', 2)
    redis_db.hincrby(counts, "succCount", 3)
    redis_db.hincrby(counts, "failedCount", 1)
    await sampler.sample(aredis, keys, t0 + 60, opened)
    redis_db.hincrby(keys.metrics(), 'ingest_events_total{type="message.publish"}', 3)
    await sampler.sample(aredis, keys, t0 + 119, opened)  # the same minute: its last sample counts
    redis_db.hincrby(keys.metrics(), 'ingest_events_total{type="message.publish"}', 5)
    await sampler.sample(aredis, keys, t0 + 300, opened)  # after a gap: what its samples saw
    redis_db.hincrby(keys.metrics(), 'ingest_events_total{type="message.publish"}', 6)
    await sampler.sample(aredis, keys, t0 + 310, opened)

    window = {"from": t0, "to": t0 + 120}
    assert points(admin, metric="devices.online", **window) == [[t0, 1], [t0 + 60, 2], [t0 + 120, None]]
    assert points(admin, metric="ingest.messages", **window) == [[t0, 0], [t0 + 60, 7], [t0 + 120, None]]
    assert points(admin, metric="ingest.messages", **{"from": t0 + 240, "to": t0 + 300}) == [[t0 + 240, None],
                                                                                           [t0 + 300, 6]]
    assert points(admin, metric="ingest.events", **window)[1] == [t0 + 60, 8]
    assert points(admin, metric="commands.succeeded", **window)[1] == [t0 + 60, 0]
    assert points(admin, metric="commands.failed", **window)[1] == [t0 + 60, 2]
    assert points(admin, metric="deliveries.delivered", **window)[1] == [t0 + 60, 3]
    assert points(admin, metric="route.delivered", id=route_id, **window)[1] == [t0 + 60, 3]
    assert points(admin, metric="route.failed", id=route_id, **window)[1] == [t0 + 60, 1]
    answer = admin.get(SERIES, params={"metric": "devices.online", "from": t0, "to": t0 + 599, "step": 600})
    assert answer.json()["data"] == {"metric": "devices.online", "id": None, "sn": None, "kind": "gauge", "from": t0,
                                     "to": t0 + 540, "step": 600, "points": [[t0, 1.67]]}
    assert points(admin, metric="ingest.messages", **{"from": t0 + 7, "to": t0 + 599, "step": 600}) == [[t0, 13]]
    hour = points(admin, metric="devices.online")  # the last hour by default, a point a minute
    assert len(hour) == 61 and hour[-1][0] == (int(time.time()) // 60) * 60
    assert redis_db.strlen(keys.stats_series("devices.online")) <= RING * SLOT.size


def test_bad_queries_get_the_error_envelope(admin: httpx.Client) -> None:
    now = int(time.time())
    for query, status, field in (
            ({}, 400, "metric"), ({"metric": "cpu"}, 400, "metric"),
            ({"metric": "route.delivered"}, 400, "id"), ({"metric": "devices.online", "id": 1}, 400, "id"),
            ({"metric": "devices.online", "from": now, "to": now - 60}, 400, "from"),
            ({"metric": "devices.online", "from": now - 90_000, "to": now}, 400, "from"),
            ({"metric": "devices.online", "step": 90}, 400, "step"),
            ({"metric": "devices.online", "step": 30}, 400, "step"),
            ({"metric": "devices.online", "from": "soon"}, 400, "from"),
            ({"metric": "route.failed", "id": 404}, 404, None),
            ({"metric": "callback.failed", "id": 0}, 400, "id")):
        body = assert_err(admin.get(SERIES, params=query), status, "invalid_params" if status == 400 else "not_found")
        assert field is None or body["msg"].startswith(f"{field}:"), (query, body)
    assert_err(httpx.get(str(admin.base_url) + SERIES, params={"metric": "devices.online"}), 401, "unauthorized")


async def test_the_api_process_samples_on_its_own_and_one_at_a_time(settings: Settings, redis_db: redis.Redis,
                                                                    keys: Keys, aredis: redis.asyncio.Redis) -> None:
    fast = settings.with_overrides(stats_interval=0.2)
    with serve_api(fast) as url, serve_api(fast), httpx.Client(base_url=url, timeout=10) as c:
        c.headers["Authorization"] = f"Bearer {login(c)}"
        wait_for(lambda: redis_db.exists(keys.stats_series("devices.online")), timeout=10,
                 what="the first sample")
        holder = redis_db.get(keys.stats_lease())
        assert holder and 0 < redis_db.pttl(keys.stats_lease()) <= 600
        time.sleep(0.6)
        assert redis_db.get(keys.stats_lease()) == holder  # the other process never took it
        assert points(c, metric="devices.online")[-1][1] == 0
    assert not redis_db.exists(keys.stats_lease())  # given back at shutdown

    async def two(client: AsyncRedis) -> list[bool]:
        return [await sampler.hold_lease(client, keys, me, 1000) for me in ("a", "b", "a", "b")]

    assert await two(aredis) == [True, False, True, False]


def test_a_device_chart_draws_its_presence_log(ingest: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    """Each transition, written by the ingest's own script call, lands in the device's presence log (newest first,
    at most LOG_MAX); `device.online` answers each step's share of time online, from that log."""
    base = int(time.time()) // 60 * 60 - 600
    post(ingest, connected("CHART1", base * 1000))
    post(ingest, subscribed("CHART1"))  # it becomes a device while online: that is its coming online
    post(ingest, disconnected("CHART1", base * 1000, (base + 300) * 1000, "keepalive_timeout"))
    post(ingest, connected("CHART1", (base + 480) * 1000))
    assert redis_db.lrange(keys.presence_log("CHART1"), 0, -1) == [f"{(base + 480) * 1000} 1 connected",
                                                                   f"{(base + 300) * 1000} 0 keepalive_timeout",
                                                                   f"{base * 1000} 1 connected"]
    view = {"Authorization": f"Bearer {login(ingest)}"}
    r = ingest.get(SERIES, params={"metric": "device.online", "sn": "CHART1", "from": base, "to": base + 540},
                   headers=view)
    assert r.status_code == 200, r.text
    body = r.json()["data"]
    assert (body["sn"], body["kind"], body["id"]) == ("CHART1", "gauge", None)
    assert [v for _, v in body["points"]] == [1.0] * 5 + [0.0] * 3 + [1.0] * 2

    for n in range(LOG_MAX):  # a flapping device: the log keeps its newest LOG_MAX transitions
        at = (base + 481 + n) * 1000
        post(ingest, disconnected("CHART1", at - 1, at) if n % 2 == 0 else connected("CHART1", at))
    assert redis_db.llen(keys.presence_log("CHART1")) == LOG_MAX
    assert redis_db.lindex(keys.presence_log("CHART1"), -1) == f"{(base + 481) * 1000} 0 normal"

    for query, status, field in (({"metric": "device.online"}, 400, "sn"),
                                 ({"metric": "device.online", "sn": "CHART1", "id": 3}, 400, "id"),
                                 ({"metric": "devices.online", "sn": "CHART1"}, 400, "sn"),
                                 ({"metric": "device.online", "sn": "NOSUCH"}, 404, None)):
        body = assert_err(ingest.get(SERIES, params=query, headers=view), status,
                          "invalid_params" if status == 400 else "not_found")
        assert field is None or body["msg"].startswith(f"{field}:"), (query, body)
