"""Message route endpoints against the real Redis through the real app: the seed's shapes, the added
endpoints, 400/401/403/404, the enabled-routes hash the route tables load, and the version and notification
of every change."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from starlette.applications import Starlette

from adapter.api import routes as routes_api
from adapter.settings import Settings
from adapter.store.keys import Keys
from adapter.targets.routes import RouteStore
from tests.conftest import primaries
from tests.integration.test_api_envelope import assert_err
from tests.support import targets_api as shared
from tests.support.servers import wait_for
from tests.support.targets_api import Server, data

BASE = "/iot/api/v1/msgroute/configs"
HOOK = "https://example.com/cmdrespcallback"
ITEM_FIELDS = {"id", "name", "topic", "url", "createTime", "updateTime"}
MESSAGE = {"topic": "dma/resp/cmd", "payload": "{}", "clientid": "SN1", "routeId": 1}  # a forwarded body


def create(api: httpx.Client, topic: str = "dma/resp/cmd", name: str = "test", url: str = HOOK,
           **extra: object) -> dict:
    return data(api.post(BASE, json={"topic": topic, "name": name, "url": url, **extra}))


ROUTES = shared.Kind("route", BASE, routes_api.ENDPOINTS, create, MESSAGE, 5,
                     {"name": "x", "topic": "x", "url": HOOK, "enabled": False})
server, api, keys, key_prefix = shared.fixtures(ROUTES)


def app_with_routes(settings: Settings) -> Starlette:
    return ROUTES.app(settings)


def enabled_hash(redis_db: redis.Redis, keys: Keys) -> dict[str, str]:
    return redis_db.hgetall(keys.routes_enabled())


def version(redis_db: redis.Redis, keys: Keys) -> int:
    return int(redis_db.get(keys.routes_version()) or 0)


def assert_enabled_hash_matches(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    """The invariant the route tables rely on: the hash holds exactly the enabled routes, id -> filter."""
    expected = {}
    for item in data(api.get(BASE))["list"]:
        stored = redis_db.hgetall(keys.target("route", item["id"]))
        assert stored["topic"] == item["topic"]
        if stored["enabled"] == "1":
            expected[str(item["id"])] = item["topic"]
    assert enabled_hash(redis_db, keys) == expected


# --- the seed's four endpoints ---------------------------------------------------------------------------

def test_create_answers_the_seed_item_and_the_secret_once(api: httpx.Client, redis_db: redis.Redis,
                                                          keys: Keys) -> None:
    before = int(time.time())
    item = create(api, "dma/mem", "Forward topic test")
    assert set(item) == ITEM_FIELDS | {"secret"}
    assert (item["id"], item["topic"], item["name"]) == (1, "dma/mem", "Forward topic test")
    assert item["url"] == HOOK
    assert before <= item["createTime"] == item["updateTime"] <= int(time.time())
    assert item["secret"].startswith("whsec_")
    stored = redis_db.hgetall(keys.target("route", 1))
    assert stored == {"name": "Forward topic test", "topic": "dma/mem", "url": HOOK, "enabled": "1",
                      "secret": item["secret"], "createTime": str(item["createTime"]),
                      "updateTime": str(item["updateTime"]), "succCount": "0", "failedCount": "0"}
    assert redis_db.zrange(keys.targets("route"), 0, -1) == ["1"]
    assert enabled_hash(redis_db, keys) == {"1": "dma/mem"}
    second = create(api, "dma/+/cmd", enabled=False)
    assert second["id"] == 2
    assert enabled_hash(redis_db, keys) == {"1": "dma/mem"}
    assert redis_db.hget(keys.target("route", 2), "enabled") == "0"
    assert version(redis_db, keys) == 2


def test_list_answers_the_seed_shape_with_counters_and_no_secret(api: httpx.Client, redis_db: redis.Redis,
                                                                 keys: Keys) -> None:
    assert data(api.get(BASE)) == {"count": 0, "list": []}
    first = create(api, "dma/resp/cmd", "test", "http://example.com:5000/cmdrespcallback")
    create(api, "dma/#", "all of dma")
    two = shared.listed_with_counters(api, redis_db, keys, ROUTES, first, ITEM_FIELDS)
    assert (two["id"], two["topic"], two["name"]) == (2, "dma/#", "all of dma")


def test_update_changes_name_url_topic_and_enabled(api: httpx.Client, redis_db: redis.Redis,
                                                   keys: Keys) -> None:
    route = create(api, "dma/resp/cmd")
    rid = route["id"]
    renamed = data(api.put(BASE, json={"id": rid, "name": "Forward topic test", "url": "https://example.org/new"}))
    assert set(renamed) == ITEM_FIELDS
    assert (renamed["name"], renamed["url"], renamed["topic"]) == ("Forward topic test", "https://example.org/new",
                                                                   "dma/resp/cmd")
    assert renamed["createTime"] == route["createTime"] <= renamed["updateTime"]
    moved = data(api.put(BASE, json={"id": rid, "topic": "dma/+/cmd"}))
    assert moved["topic"] == "dma/+/cmd" and enabled_hash(redis_db, keys) == {str(rid): "dma/+/cmd"}
    data(api.put(BASE, json={"id": rid, "enabled": False}))
    assert enabled_hash(redis_db, keys) == {}
    assert redis_db.hget(keys.target("route", rid), "enabled") == "0"
    data(api.put(BASE, json={"id": rid, "enabled": True, "topic": "$SYS/#"}))
    assert enabled_hash(redis_db, keys) == {str(rid): "$SYS/#"}
    assert redis_db.hget(keys.target("route", rid), "secret") == route["secret"]
    assert data(api.get(BASE))["list"][0]["topic"] == "$SYS/#"


def test_update_refuses_bad_fields_and_unknown_ids(api: httpx.Client, redis_db: redis.Redis,
                                                   keys: Keys) -> None:
    route = create(api)
    for change, field in (({"topic": "dma/#/x"}, "topic"), ({"topic": "dma/cmd+"}, "topic"),
                          ({"topic": ""}, "topic"),
                          ({"url": "http://192.168.1.1/"}, "url"), ({"url": "ftp://example.com/"}, "url"),
                          ({"name": ""}, "name"), ({"enabled": "no"}, "enabled"), ({"id": "1"}, "id")):
        body = assert_err(api.put(BASE, json={"id": route["id"], **change}), 400, "invalid_params")
        assert body["msg"].startswith(f"{field}:"), body["msg"]
    assert_err(api.put(BASE, json={"id": 42, "name": "x"}), 404, "not_found")
    assert_err(api.put(BASE, json={"name": "x"}), 400, "invalid_params")
    assert data(api.get(BASE))["list"][0] == {**{k: route[k] for k in ITEM_FIELDS}, "succCount": 0,
                                              "failedCount": 0}
    assert enabled_hash(redis_db, keys) == {str(route["id"]): "dma/resp/cmd"}


async def test_update_time_and_version_move_only_on_a_change(server: Server, redis_db: redis.Redis,
                                                             keys: Keys) -> None:
    async def run(store: RouteStore, client: aioredis.Redis) -> None:
        route, _ = await store.create("r", "a/b", HOOK, now=1000)
        at = version(redis_db, keys)
        same = await store.update(route.id, name="r", topic="a/b", enabled=True, now=2000)
        assert same.update_time == 1000
        assert version(redis_db, keys) == at
        changed = await store.update(route.id, topic="a/+", now=3000)
        assert (changed.create_time, changed.update_time) == (1000, 3000)
        assert version(redis_db, keys) == at + 1
        await store.rotate_secret(route.id, now=4000)
        assert (await store.get(route.id)).update_time == 4000

    await shared.on_store(server, RouteStore, run)


def test_delete_removes_everything_of_the_route(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    keep = create(api, "keep/#")
    gone = create(api, "gone/+")
    shared.check_delete_removes_attempts_and_dead_letters(api, redis_db, keys, ROUTES, gone["id"])
    assert [i["id"] for i in data(api.get(BASE))["list"]] == [keep["id"]]
    assert enabled_hash(redis_db, keys) == {str(keep["id"]): "keep/#"}
    assert_err(api.put(BASE, json={"id": gone["id"], "enabled": True}), 404, "not_found")
    assert enabled_hash(redis_db, keys) == {str(keep["id"]): "keep/#"}


# --- validation ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("payload", "field"), [
    ({"name": "n", "url": HOOK}, "topic"),
    ({"topic": "a/b", "url": HOOK}, "name"),
    ({"topic": "a/b", "name": "n"}, "url"),
    ({"topic": 5, "name": "n", "url": HOOK}, "topic"),
    ({"topic": "", "name": "n", "url": HOOK}, "topic"),
    ({"topic": "a/#/b", "name": "n", "url": HOOK}, "topic"),
    ({"topic": "a/b#", "name": "n", "url": HOOK}, "topic"),
    ({"topic": "a/+b", "name": "n", "url": HOOK}, "topic"),
    ({"topic": "a/\u0000", "name": "n", "url": HOOK}, "topic"),
    ({"topic": "a/b", "name": "", "url": HOOK}, "name"),
    ({"topic": "a/b", "name": "x" * 201, "url": HOOK}, "name"),
    ({"topic": "a/b", "name": "n", "url": "ftp://example.com/x"}, "url"),
    ({"topic": "a/b", "name": "n", "url": "not a url"}, "url"),
    ({"topic": "a/b", "name": "n", "url": "http://127.0.0.1:5000/cmdrespcallback"}, "url"),
    ({"topic": "a/b", "name": "n", "url": "http://localhost/x"}, "url"),
    ({"topic": "a/b", "name": "n", "url": HOOK, "enabled": "yes"}, "enabled"),
])
def test_create_refuses_bad_fields_naming_them(api: httpx.Client, redis_db: redis.Redis, keys: Keys,
                                               payload: dict, field: str) -> None:
    body = assert_err(api.post(BASE, json=payload), 400, "invalid_params")
    assert body["msg"].startswith(f"{field}:"), body["msg"]
    assert redis_db.zcard(keys.targets("route")) == 0 and version(redis_db, keys) == 0


def test_valid_filters_are_accepted_as_given(api: httpx.Client) -> None:
    for topic in ("#", "+", "+/+", "/", "dma/+/cmd/#", "$SYS/broker/+", "a//b", "sport/tennis/+/#", "数据/+"):
        assert create(api, topic)["topic"] == topic


def test_the_seed_bodies_accept_extra_fields_the_added_refuse_them(api: httpx.Client) -> None:
    route = create(api, console="v1")
    assert data(api.put(BASE, json={"id": route["id"], "name": "n", "console": "v1"}))["name"] == "n"
    for path in ("/secret", "/replay"):
        body = assert_err(api.post(BASE + path, json={"id": route["id"], "extra": 1}), 400, "invalid_params")
        assert body["msg"].startswith("extra:"), body["msg"]


class TestSharedEndpoints(shared.SharedEndpoints):
    """Secret rotation, deliveries, dead letters and replay, queries and access, as every target has them."""

    KIND = ROUTES


# --- the enabled hash, the version and the notifications -------------------------------------------------

def test_every_change_bumps_the_version_and_publishes(api: httpx.Client, redis_db: redis.Redis,
                                                      keys: Keys) -> None:
    pubsub = redis_db.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.routes_channel())
    wait_for(lambda: sum(node.pubsub_numsub(keys.routes_channel())[0][1] for node in primaries(redis_db)) >= 1, 2,
             what="the subscription")  # NUMSUB counts one node's subscribers: ask every primary
    try:
        route = create(api)
        changes = [lambda: api.put(BASE, json={"id": route["id"], "topic": "x/#"}),
                   lambda: api.put(BASE, json={"id": route["id"], "enabled": False}),
                   lambda: api.post(f"{BASE}/secret", json={"id": route["id"]}),
                   lambda: api.delete(BASE, params={"id": route["id"]})]
        for change in changes:
            data(change())
        assert version(redis_db, keys) == 1 + len(changes)
        heard: list[str] = []
        while len(heard) < 1 + len(changes):
            message = wait_for(lambda: pubsub.get_message(timeout=0.05), 2, what="a notification")
            heard.append(message["data"])
        assert heard == [str(route["id"])] * (1 + len(changes))
    finally:
        pubsub.close()


def test_enabled_hash_follows_every_change(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    rng = random.Random(7)
    topics = ["dma/resp/cmd", "dma/+/cmd", "dma/#", "#", "a/b"]
    ids = [create(api, rng.choice(topics), enabled=rng.random() < 0.5)["id"] for _ in range(6)]
    for _ in range(40):
        rid = rng.choice(ids)
        action = rng.choice(["enable", "disable", "topic", "delete", "secret", "create"])
        if action == "delete":
            api.delete(BASE, params={"id": rid})
        elif action == "create":
            ids.append(create(api, rng.choice(topics), enabled=rng.random() < 0.5)["id"])
        elif action == "secret":
            api.post(f"{BASE}/secret", json={"id": rid})
        elif action == "topic":
            api.put(BASE, json={"id": rid, "topic": rng.choice(topics)})
        else:
            api.put(BASE, json={"id": rid, "enabled": action == "enable"})
        assert_enabled_hash_matches(api, redis_db, keys)


async def test_concurrent_changes_and_deletes_keep_the_enabled_hash(server: Server, redis_db: redis.Redis,
                                                                    keys: Keys) -> None:
    async def run(store: RouteStore, client: aioredis.Redis) -> None:
        made = [await store.create(f"r{n}", f"t/{n}", HOOK) for n in range(10)]
        rng = random.Random(3)
        jobs: list[Awaitable[object]] = []
        for route, _ in made:
            jobs += [store.update(route.id, enabled=rng.random() < 0.5, topic=f"t/{rng.randrange(3)}/#")
                     for _ in range(3)]
            jobs.append(store.delete(route.id) if rng.random() < 0.4 else store.rotate_secret(route.id))
        rng.shuffle(jobs)
        results = await asyncio.gather(*jobs, return_exceptions=True)
        assert all(not isinstance(r, Exception) or "no such route" in str(r) for r in results), results
        alive = await store.all()
        loaded = await client.hgetall(keys.routes_enabled())
        assert {str(r.id): r.topic for r in alive if r.enabled} == loaded
        indexed = await client.zrange(keys.targets("route"), 0, -1)
        assert {int(m) for m in indexed} == {r.id for r in alive}

    await shared.on_store(server, RouteStore, run)
