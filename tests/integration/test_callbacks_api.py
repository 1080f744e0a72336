"""Status-change callback endpoints against the real Redis through the real app: the seed's shapes, the added
endpoints, 400/401/403/404, the enabled sets the ingest fans out to, and replay onto the delivery streams."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Mapping

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from starlette.applications import Starlette

from adapter.api import callbacks as callbacks_api
from adapter.delivery.model import partition_of
from adapter.errors import AppError
from adapter.settings import Settings
from adapter.store.keys import Keys
from adapter.targets import callbacks
from adapter.targets.callbacks import CallbackStore
from adapter.targets.records import stream_fields
from tests.conftest import login
from tests.integration.test_api_envelope import assert_err
from tests.support import targets_api as shared
from tests.support.servers import serve
from tests.support.targets_api import Server, data, dead_letter, stream_entries

BASE = "/iot/api/v1/monitor/devices/callbacks"
HOOK = "https://example.com/hook"
ITEM_FIELDS = {"id", "type", "url", "enabled", "createTime", "updateTime"}
STATUS = {"sn": "SN1", "online": True}  # what a dead letter of a callback carries


def create(api: httpx.Client, cb_type: str = "device", url: str = HOOK, **extra: object) -> dict:
    return data(api.post(BASE, json={"type": cb_type, "url": url, **extra}))


CALLBACKS = shared.Kind("callback", BASE, callbacks_api.ENDPOINTS, create, STATUS, 6, {"enabled": False},
                        reads={"/device/stats": {"succ": 0, "failed": 0}}, path_params={"type": "device"})
server, api, keys, key_prefix = shared.fixtures(CALLBACKS)


def app_with_callbacks(settings: Settings) -> Starlette:
    return CALLBACKS.app(settings)


def enabled_sets(redis_db: redis.Redis, keys: Keys) -> dict[str, set[str]]:
    return {t: redis_db.smembers(keys.callbacks_enabled_of(t)) for t in ("device", "peripheral")}


def assert_sets_match(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    """The invariant the ingest relies on: each enabled set holds exactly the enabled ids of its type."""
    listed = data(api.get(BASE))["list"]
    expected = {t: {str(i["id"]) for i in listed if i["enabled"] and i["type"] == t}
                for t in ("device", "peripheral")}
    assert enabled_sets(redis_db, keys) == expected


# --- the seed's four endpoints ---------------------------------------------------------------------------

def test_create_answers_the_seed_item_and_the_secret_once(api: httpx.Client, redis_db: redis.Redis,
                                                          keys: Keys) -> None:
    before = int(time.time())
    item = create(api, "device", HOOK, enabled=True)
    assert set(item) == ITEM_FIELDS | {"secret"}
    assert item["id"] == 1 and item["type"] == "device" and item["url"] == HOOK and item["enabled"] is True
    assert before <= item["createTime"] == item["updateTime"] <= int(time.time())
    assert item["secret"].startswith("whsec_")
    stored = redis_db.hgetall(keys.target("callback", 1))
    assert stored["secret"] == item["secret"] and stored["type"] == "device" and stored["enabled"] == "1"
    assert redis_db.zrange(keys.targets("callback"), 0, -1) == ["1"]
    # ids come from the sequence; enabled defaults to true
    second = create(api, "peripheral", "https://example.com/p")
    assert second["id"] == 2 and second["enabled"] is True
    assert enabled_sets(redis_db, keys) == {"device": {"1"}, "peripheral": {"2"}}


def test_list_answers_the_seed_shape_with_counters_and_no_secret(api: httpx.Client, redis_db: redis.Redis,
                                                                 keys: Keys) -> None:
    assert data(api.get(BASE)) == {"count": 0, "list": []}
    first = create(api, "device")
    create(api, "peripheral", "https://example.com/p", enabled=False)
    two = shared.listed_with_counters(api, redis_db, keys, CALLBACKS, first, ITEM_FIELDS)
    assert (two["id"], two["type"], two["enabled"]) == (2, "peripheral", False)
    assert two["url"] == "https://example.com/p"


def test_enable_toggles_the_enabled_set(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    cb = create(api, "device")
    off = data(api.post(f"{BASE}/enable", json={"id": cb["id"], "enabled": False}))
    assert set(off) == ITEM_FIELDS and off["enabled"] is False
    assert enabled_sets(redis_db, keys)["device"] == set()
    assert redis_db.hget(keys.target("callback", cb["id"]), "enabled") == "0"
    on = data(api.post(f"{BASE}/enable", json={"id": cb["id"], "enabled": True}))
    assert on["enabled"] is True and on["url"] == HOOK
    assert enabled_sets(redis_db, keys)["device"] == {str(cb["id"])}
    assert_err(api.post(f"{BASE}/enable", json={"id": 999, "enabled": True}), 404, "not_found")


def test_stats_per_type(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    assert data(api.get(f"{BASE}/device/stats")) == {"succ": 0, "failed": 0}
    last = keys.shards()[-1]  # on the cluster each partition counts its own; the API sums them (one key on one Redis)
    redis_db.hincrby(keys.callback_stats_in("peripheral", 0), "succ", 4)
    redis_db.hincrby(keys.callback_stats_in("peripheral", last), "succ", 3)
    redis_db.hincrby(keys.callback_stats_in("peripheral", last), "failed", 2)
    assert data(api.get(f"{BASE}/peripheral/stats")) == {"succ": 7, "failed": 2}
    assert data(api.get(f"{BASE}/device/stats")) == {"succ": 0, "failed": 0}
    assert_err(api.get(f"{BASE}/gateway/stats"), 404, "not_found")


# --- validation ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("payload", "field"), [
    ({"type": "gateway", "url": HOOK}, "type"),
    ({"url": HOOK}, "type"),
    ({"type": "device"}, "url"),
    ({"type": "device", "url": 5}, "url"),
    ({"type": "device", "url": "ftp://example.com/x"}, "url"),
    ({"type": "device", "url": "not a url"}, "url"),
    ({"type": "device", "url": "http://127.0.0.1/x"}, "url"),
    ({"type": "device", "url": "http://localhost:5000/x"}, "url"),
    ({"type": "device", "url": "http://10.1.2.3/x"}, "url"),
    ({"type": "device", "url": HOOK, "enabled": "yes"}, "enabled"),
])
def test_create_refuses_bad_fields_naming_them(api: httpx.Client, redis_db: redis.Redis, keys: Keys,
                                               payload: dict, field: str) -> None:
    body = assert_err(api.post(BASE, json=payload), 400, "invalid_params")
    assert body["msg"].startswith(f"{field}:"), body["msg"]
    assert redis_db.zcard(keys.targets("callback")) == 0


def test_private_urls_are_accepted_when_configured(settings: Settings) -> None:
    allowing = settings.with_overrides(allow_private_urls=True)
    with serve(app_with_callbacks(allowing)) as url, httpx.Client(base_url=url, timeout=10) as c:
        c.headers["Authorization"] = f"Bearer {login(c)}"
        item = data(c.post(BASE, json={"type": "device", "url": "http://127.0.0.1/x"}))
        assert item["url"] == "http://127.0.0.1/x"
        assert_err(c.post(BASE, json={"type": "device", "url": "ftp://127.0.0.1/x"}), 400, "invalid_params")


@pytest.mark.parametrize(("path", "payload", "field"), [
    ("/enable", {"enabled": True}, "id"),
    ("/enable", {"id": 1}, "enabled"),
    ("/enable", {"id": "1", "enabled": True}, "id"),
    ("/enable", {"id": 0, "enabled": True}, "id"),
    ("/secret", {}, "id"),
    ("/replay", {"id": 1, "deliveryId": ""}, "deliveryId"),
    ("/replay", {"id": 1, "extra": 1}, "extra"),
])
def test_bodies_name_the_wrong_field(api: httpx.Client, path: str, payload: dict, field: str) -> None:
    body = assert_err(api.post(BASE + path, json=payload), 400, "invalid_params")
    assert body["msg"].startswith(f"{field}:"), body["msg"]


# --- the added endpoints ---------------------------------------------------------------------------------

def test_update_changes_url_and_enabled(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    cb = create(api, "peripheral")
    moved = data(api.put(BASE, json={"id": cb["id"], "url": "https://example.org/new"}))
    assert set(moved) == ITEM_FIELDS
    assert moved["url"] == "https://example.org/new" and moved["enabled"] is True
    assert moved["createTime"] == cb["createTime"] <= moved["updateTime"]
    off = data(api.put(BASE, json={"id": cb["id"], "enabled": False}))
    assert off["enabled"] is False and off["url"] == "https://example.org/new"
    assert enabled_sets(redis_db, keys)["peripheral"] == set()
    both = data(api.put(BASE, json={"id": cb["id"], "url": HOOK, "enabled": True}))
    assert (both["url"], both["enabled"]) == (HOOK, True)
    assert enabled_sets(redis_db, keys)["peripheral"] == {str(cb["id"])}
    assert data(api.put(BASE, json={"id": cb["id"]})) == both  # nothing to change
    assert redis_db.hget(keys.target("callback", cb["id"]), "secret") == cb["secret"]
    assert_err(api.put(BASE, json={"id": cb["id"], "url": "http://192.168.1.1/"}), 400, "invalid_params")
    assert_err(api.put(BASE, json={"id": cb["id"], "enable": True}), 400, "invalid_params")
    assert_err(api.put(BASE, json={"id": 42, "enabled": True}), 404, "not_found")
    assert data(api.get(BASE))["list"][0]["url"] == HOOK


async def test_update_time_moves_only_on_a_change(server: Server, redis_db: redis.Redis, keys: Keys) -> None:
    async def run(store: CallbackStore, client: aioredis.Redis) -> None:
        cb, _ = await store.create("device", HOOK, now=1000)
        assert (await store.set_enabled(cb.id, True, now=2000)).update_time == 1000
        changed = await store.update(cb.id, url="https://example.org/", now=3000)
        assert (changed.create_time, changed.update_time) == (1000, 3000)
        await store.rotate_secret(cb.id, now=4000)
        assert (await store.get(cb.id)).update_time == 4000

    await shared.on_store(server, CallbackStore, run)


def test_delete_removes_everything_of_the_callback(api: httpx.Client, redis_db: redis.Redis,
                                                   keys: Keys) -> None:
    keep = create(api, "device", "https://example.com/keep")
    gone = create(api, "device")
    shared.check_delete_removes_attempts_and_dead_letters(api, redis_db, keys, CALLBACKS, gone["id"])
    assert [i["id"] for i in data(api.get(BASE))["list"]] == [keep["id"]]
    assert enabled_sets(redis_db, keys) == {"device": {str(keep["id"])}, "peripheral": set()}
    assert_err(api.post(f"{BASE}/enable", json={"id": gone["id"], "enabled": True}), 404, "not_found")
    assert enabled_sets(redis_db, keys)["device"] == {str(keep["id"])}


def test_partition_is_the_sha1_prefix_modulo() -> None:
    for key in ("SN1", "", "gw/3"):
        assert partition_of(key, 7) == int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % 7
    fields = stream_fields("callback:3", {"deliveryId": "x", "key": "SN1", "body": {"a": 1}})
    assert fields == {"t": "callback:3", "k": "SN1", "id": "x", "b": '{"a":1}', "n": "0"}


class TestSharedEndpoints(shared.SharedEndpoints):
    """Secret rotation, deliveries, dead letters and replay, queries and access, as every target has them."""

    KIND = CALLBACKS


async def warm_pool(client: aioredis.Redis, n: int) -> None:
    """Opens n connections, so that concurrent tasks interleave instead of queueing behind connects."""
    await asyncio.gather(*(client.blpop(["no-such-list"], 0.05) for _ in range(n)))


# --- the enabled sets under concurrent changes -----------------------------------------------------------

def test_enabled_sets_follow_every_change(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    rng = random.Random(7)
    types = ["device", "peripheral"]
    ids = [create(api, rng.choice(types), enabled=rng.random() < 0.5)["id"] for _ in range(6)]
    for _ in range(30):
        cb_id, action = rng.choice(ids), rng.choice(["enable", "disable", "put", "delete", "secret"])
        if action == "delete":
            api.delete(BASE, params={"id": cb_id})
        elif action == "put":
            api.put(BASE, json={"id": cb_id, "enabled": rng.random() < 0.5})
        elif action == "secret":
            api.post(f"{BASE}/secret", json={"id": cb_id})
        else:
            api.post(f"{BASE}/enable", json={"id": cb_id, "enabled": action == "enable"})
        assert_sets_match(api, redis_db, keys)


async def test_enabled_sets_hold_under_concurrent_changes(server: Server, redis_db: redis.Redis,
                                                          keys: Keys) -> None:
    """Toggles, deletes and counter bumps (as the engine does) racing: the sets still match the hashes."""
    async def run(store: CallbackStore, client: aioredis.Redis) -> None:
        made = [(await store.create(t, HOOK))[0].id for t in ("device", "peripheral") * 4]

        async def toggle(cb_id: int, n: int) -> None:
            for i in range(n):
                try:
                    await store.set_enabled(cb_id, i % 2 == 0)
                except Exception as exc:  # deleted meanwhile
                    assert getattr(exc, "code", "") == "not_found", exc
                    return

        async def bump(cb_id: int) -> None:
            for _ in range(40):
                await client.hincrby(keys.target("callback", cb_id), "succCount", 1)

        await warm_pool(client, 32)
        tasks = [toggle(cb_id, 15) for cb_id in made for _ in range(3)]
        tasks += [bump(cb_id) for cb_id in made[:2]] + [store.delete(cb_id) for cb_id in made[::3]]
        await asyncio.gather(*tasks)
        alive = await store.all()
        for t in ("device", "peripheral"):
            expected = {str(cb.id) for cb in alive if cb.enabled and cb.type == t}
            assert await client.smembers(keys.callbacks_enabled_of(t)) == expected
        assert {cb.id for cb in alive} == set(made) - set(made[::3])

    await shared.on_store(server, CallbackStore, run)


async def test_a_change_racing_a_delete_does_not_revive_the_callback(
        server: Server, redis_db: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    """The delete lands between the change's read and its write: the change answers 404 and writes nothing."""
    async def run(store: CallbackStore, client: aioredis.Redis) -> None:
        cb, _ = await store.create("device", HOOK, enabled=False)
        read = callbacks.from_hash

        def read_then_delete(cb_id: int, record: Mapping[str, str]) -> callbacks.Callback | None:
            with redis_db.pipeline(transaction=True) as pipe:  # what a concurrent delete does
                pipe.zrem(keys.targets("callback"), str(cb_id)).delete(keys.target("callback", cb_id))
                pipe.srem(keys.callbacks_enabled_of("device"), str(cb_id)).execute()
            return read(cb_id, record)

        monkeypatch.setattr(callbacks, "from_hash", read_then_delete)
        with pytest.raises(AppError) as caught:
            await store.set_enabled(cb.id, True)
        assert caught.value.code == "not_found"

    await shared.on_store(server, CallbackStore, run)
    assert not redis_db.exists(keys.target("callback", 1))
    assert redis_db.smembers(keys.callbacks_enabled_of("device")) == set()


async def test_concurrent_replays_move_each_dead_letter_once(server: Server, redis_db: redis.Redis,
                                                             keys: Keys) -> None:
    async def run(store: CallbackStore, client: aioredis.Redis) -> list[int]:
        cb, _ = await store.create("device", HOOK)
        letters = {f"d{n}": dead_letter(f"d{n}", f"SN{n}", n, STATUS) for n in range(5)}
        await client.hset(keys.dead(f"callback:{cb.id}"), mapping=letters)
        parts = server.settings.delivery_partitions
        await warm_pool(client, 8)
        return list(await asyncio.gather(*(store.replay(cb.id, None, parts) for _ in range(4))))

    assert sorted(await shared.on_store(server, CallbackStore, run)) == [0, 0, 0, 5]
    entries = stream_entries(redis_db, keys, keys.stream_partitions)
    assert sorted(e["id"] for e in entries) == ["d0", "d1", "d2", "d3", "d4"]
