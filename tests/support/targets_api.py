"""What the API tests of the two kinds of delivery target share (test_callbacks_api.py, test_routes_api.py):
one live app per module with an admin and a viewer logged in, the admin's client on a flushed database, the
engine's records as the tests plant them, the checks of what every kind has (list counters, delete, secret,
deliveries, dead letters, replay, access) and `SharedEndpoints`, the test class that runs them for a `Kind`.
The fixtures come from `fixtures(kind)`, bound by each test module:
`server, api, keys, key_prefix = fixtures(KIND)`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import httpx
import orjson
import pytest
import redis
import redis.asyncio as aioredis
from starlette.applications import Starlette

from adapter.app import create_app
from adapter.delivery.model import partition_of
from adapter.http.endpoint import Endpoint
from adapter.settings import Settings
from adapter.store.connections import async_redis
from adapter.store.keys import Keys
from tests.conftest import ADMIN_PASSWORD, INGEST_TOKEN, flush_store, login, store_client, store_env
from tests.integration.test_api_envelope import assert_err
from tests.integration.test_auth import add_user
from tests.support.servers import serve

VIEWER = ("vera", "viewer-secret")
S = TypeVar("S")
T = TypeVar("T")


@dataclass(frozen=True)
class Kind:
    """One kind of target as its API test sees it: `name` in keys and engine names ("callback:1"); `create`
    makes one with the defaults through the API; `body` is what its dead letters carry; `changes` counts its
    admin endpoints, sent `change` (plus the id) by a viewer; a viewer also reads each of `reads` (path ->
    answer); `path_params` fill the endpoints' paths."""

    name: str
    base: str
    endpoints: list[Endpoint]
    create: Callable[[httpx.Client], dict]
    body: dict[str, Any]
    changes: int
    change: dict[str, Any]
    reads: dict[str, dict] = field(default_factory=dict)
    path_params: dict[str, str] = field(default_factory=dict)

    def app(self, settings: Settings) -> Starlette:
        app = create_app(settings)
        app.router.routes[0:0] = [ep.route() for ep in self.endpoints]
        return app

    def target(self, target_id: int) -> str:
        return f"{self.name}:{target_id}"


@dataclass(frozen=True)
class Server:
    url: str
    settings: Settings
    admin: str
    viewer: str
    sessions: dict[str, tuple[bytes, int]]  # users and tokens as DUMP and PTTL, restored after each flush


def fixtures(kind: Kind) -> tuple[Any, Any, Any, Any]:
    """The fixtures `server` (module scope), `api`, `keys` and `key_prefix` (the server's: `redis_db` cleans it
    around each test, on the cluster too) for `kind`'s test module to bind."""
    @pytest.fixture(scope="module", name="server")
    def server_fixture(module_prefix: str) -> Iterator[Server]:
        """One app for the module (logins cost an argon2 hash each); each test starts from a flushed DB."""
        prefix = module_prefix

        settings = Settings.from_env({**store_env(prefix),
                                      "ADAPTER_ADMIN_PASSWORD": ADMIN_PASSWORD,
                                      "ADAPTER_INGEST_TOKEN": INGEST_TOKEN}, dotenv=None)
        raw = store_client()
        flush_store(raw, prefix)
        try:
            with serve(kind.app(settings)) as url, httpx.Client(base_url=url, timeout=10) as c:
                add_user(settings, VIEWER[0], "viewer", VIEWER[1])
                admin, viewer = login(c), login(c, *VIEWER)
                sessions = {k.decode(): (raw.dump(k), max(raw.pttl(k), 0))
                            for k in raw.scan_iter(match=f"{prefix}*")}
                yield Server(url, settings, admin, viewer, sessions)
        finally:
            flush_store(raw, prefix)
            raw.close()

    @pytest.fixture(name="api")
    def api_fixture(server: Server, redis_db: redis.Redis) -> Iterator[httpx.Client]:
        """The admin's client on a flushed database (but for the users and their logins)."""
        raw = store_client()
        flush_store(raw, server.settings.key_prefix)  # redis_db's own prefix is another on the cluster
        for key, (dumped, ttl) in server.sessions.items():
            raw.restore(key, ttl, dumped, replace=True)
        raw.close()
        auth = {"Authorization": f"Bearer {server.admin}"}
        with httpx.Client(base_url=server.url, timeout=10, headers=auth) as c:
            yield c

    @pytest.fixture(name="keys")
    def keys_fixture(server: Server) -> Keys:
        return Keys.of(server.settings)

    @pytest.fixture(name="key_prefix")
    def key_prefix_fixture(server: Server) -> str:
        return server.settings.key_prefix

    return server_fixture, api_fixture, keys_fixture, key_prefix_fixture


async def on_store(server: Server, opens: Callable[[aioredis.Redis, Keys], S],
                   work: Callable[[S, aioredis.Redis], Awaitable[T]]) -> T:
    """Awaits `work` with a store (`opens`: its class) on the server's Redis and that client, then closes it."""
    client = async_redis(server.settings)
    try:
        return await work(opens(client, Keys.of(server.settings)), client)
    finally:
        await client.aclose()


def data(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    return body["data"]


def attempt(n: int, outcome: str, target: str) -> bytes:
    """An attempt as the engine records it, of event `m:<n>` to `target`."""
    return orjson.dumps({"deliveryId": f"m:{n}:{target}", "eventId": f"m:{n}", "attempt": 1,
                         "time": 1700000000 + n, "status": 200 if outcome == "success" else 503,
                         "durationMs": 12.5, "error": None if outcome == "success" else "http 503",
                         "excerpt": "ok", "outcome": outcome})


def dead_letter(delivery_id: str, key: str, when: int, body: dict[str, Any]) -> bytes:
    """A dead letter as the engine records it: the body as sent, the ordering key, the last error."""
    return orjson.dumps({"deliveryId": delivery_id, "body": orjson.dumps(body).decode(), "key": key,
                         "attempts": 8, "lastError": "http 503", "time": when})


def stream_entries(redis_db: redis.Redis, keys: Keys, partitions: int) -> list[dict[str, str]]:
    """Every entry of the delivery streams, with its partition as `_p`."""
    out = []
    for p in range(partitions):
        out += [{**fields, "_p": str(p)} for _, fields in redis_db.xrange(keys.delivery_stream(p))]
    return out


def listed_with_counters(api: httpx.Client, redis_db: redis.Redis, keys: Keys, kind: Kind, first: dict,
                         item_fields: set[str]) -> dict:
    """Lists `first` (its counters planted here) and one more target: each with the item's fields and the
    counters, never the secret. Answers the second item."""
    redis_db.hincrby(keys.target(kind.name, first["id"]), "succCount", 4)
    redis_db.hincrby(keys.target(kind.name, first["id"]), "failedCount", 16)
    listed = data(api.get(kind.base))
    listed_fields = item_fields | {"succCount", "failedCount"}
    assert listed["count"] == 2 and [set(i) for i in listed["list"]] == [listed_fields, listed_fields]
    one, two = listed["list"]
    assert one == {**{k: first[k] for k in item_fields}, "succCount": 4, "failedCount": 16}
    assert (two["succCount"], two["failedCount"]) == (0, 0)
    assert "secret" not in str(listed) and "whsec_" not in str(listed)
    return two


def check_queries_name_the_wrong_field(api: httpx.Client, kind: Kind) -> None:
    base = kind.base
    for r in (api.delete(base), api.delete(base, params={"id": "x"}), api.get(f"{base}/deliveries"),
              api.get(f"{base}/dead?id=x"), api.get(f"{base}/dead", params={"id": 0}),
              api.get(f"{base}/deliveries?id=1&status=lost")):
        body = assert_err(r, 400, "invalid_params")
        assert body["msg"].split(":")[0] in ("id", "status"), body["msg"]


def check_delete_removes_attempts_and_dead_letters(api: httpx.Client, redis_db: redis.Redis, keys: Keys,
                                                   kind: Kind, gone: int) -> None:
    """Deletes `gone` (which has an attempt, a dead letter and its series planted here): its keys all go, once."""
    name = kind.target(gone)
    redis_db.lpush(keys.attempts(name), orjson.dumps({"deliveryId": "d1"}))
    redis_db.hset(keys.dead(name), "d1", orjson.dumps({"deliveryId": "d1"}))
    series = [keys.target_series(kind.name, gone, field) for field in ("delivered", "failed")]
    for key in series:
        redis_db.setrange(key, 0, "sample")
    assert data(api.delete(kind.base, params={"id": gone})) == {"rows": 1}
    assert data(api.delete(kind.base, params={"id": gone})) == {"rows": 0}
    assert data(api.delete(kind.base, params={"id": 12345})) == {"rows": 0}
    assert not redis_db.exists(keys.target(kind.name, gone), keys.attempts(name), keys.dead(name))
    assert not any(redis_db.exists(key) for key in series)  # one at a time: another slot than attempts' on a cluster


def check_secret_rotation(api: httpx.Client, redis_db: redis.Redis, keys: Keys, kind: Kind) -> None:
    made = kind.create(api)
    rotated = data(api.post(f"{kind.base}/secret", json={"id": made["id"]}))
    assert set(rotated) == {"id", "secret"} and rotated["id"] == made["id"]
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != made["secret"]
    assert redis_db.hget(keys.target(kind.name, made["id"]), "secret") == rotated["secret"]
    assert_err(api.post(f"{kind.base}/secret", json={"id": 77}), 404, "not_found")
    assert not redis_db.exists(keys.target(kind.name, 77))


def check_deliveries(api: httpx.Client, redis_db: redis.Redis, keys: Keys, kind: Kind) -> None:
    """The engine's attempts, newest first, filtered by outcome; JSON that is not an object is skipped."""
    made, other = kind.create(api), kind.create(api)
    target = kind.target(made["id"])
    for n, outcome in enumerate(["retry", "retry", "dead", "success"]):
        redis_db.lpush(keys.attempts(target), attempt(n, outcome, target))
    redis_db.lpush(keys.attempts(target), b"not json")
    url = f"{kind.base}/deliveries"
    everything = data(api.get(url, params={"id": made["id"]}))
    assert everything["count"] == 4
    assert [a["eventId"] for a in everything["list"]] == ["m:3", "m:2", "m:1", "m:0"]
    assert everything["list"][0] == orjson.loads(attempt(3, "success", target))
    retries = data(api.get(url, params={"id": made["id"], "status": "retry"}))
    assert [a["eventId"] for a in retries["list"]] == ["m:1", "m:0"] and retries["count"] == 2
    assert data(api.get(url, params={"id": other["id"]})) == {"count": 0, "list": []}
    assert_err(api.get(url, params={"id": 999}), 404, "not_found")


def check_dead_letters_and_replay(api: httpx.Client, redis_db: redis.Redis, keys: Keys, kind: Kind,
                                  partitions: int) -> None:
    """Dead letters listed oldest first; one replayed, then the rest, each onto its key's partition, once.
    `partitions`: the delivery streams (`keys.stream_partitions`)."""
    made = kind.create(api)
    target = kind.target(made["id"])
    letters = {f"m:{n}:{target}": dead_letter(f"m:{n}:{target}", f"SN{n}", 10 - n, kind.body)
               for n in range(4)}
    for n, (delivery_id, letter) in enumerate(letters.items()):  # where the engine puts it: its key's partition
        redis_db.hset(keys.dead(target, keys.stream_partition(f"SN{n}")), delivery_id, letter)

    def dead_ids() -> list[str]:
        return sorted(i for p in keys.shards() for i in redis_db.hkeys(keys.dead(target, p)))
    listed = data(api.get(f"{kind.base}/dead", params={"id": made["id"]}))
    assert [i["deliveryId"] for i in listed["list"]] == [f"m:{n}:{target}" for n in (3, 2, 1, 0)]
    assert listed["list"][0] == orjson.loads(letters[f"m:3:{target}"]) and listed["count"] == 4
    assert_err(api.get(f"{kind.base}/dead", params={"id": 999}), 404, "not_found")

    one, replay = f"m:2:{target}", f"{kind.base}/replay"
    assert data(api.post(replay, json={"id": made["id"], "deliveryId": one})) == {"replayed": 1}
    [entry] = stream_entries(redis_db, keys, partitions)
    assert entry == {"t": target, "k": "SN2", "id": one, "b": orjson.loads(letters[one])["body"], "n": "0",
                     "_p": str(partition_of("SN2", partitions))}
    assert dead_ids() == sorted(set(letters) - {one})
    assert_err(api.post(replay, json={"id": made["id"], "deliveryId": one}), 404, "not_found")
    both = {"id": made["id"], "deliveryId": f"m:1:{target}", "deliveryIds": [f"m:1:{target}"]}
    assert assert_err(api.post(replay, json=both), 400, "invalid_params")["msg"].startswith("deliveryIds")
    some = [f"m:1:{target}", "m:404:nothing"]
    assert data(api.post(replay, json={"id": made["id"], "deliveryIds": some})) == {"replayed": 1}
    assert data(api.post(replay, json={"id": made["id"]})) == {"replayed": 2}
    entries = stream_entries(redis_db, keys, partitions)
    assert sorted(e["id"] for e in entries) == sorted(letters)
    assert all(e["_p"] == str(partition_of(e["k"], partitions)) and e["t"] == target for e in entries)
    assert dead_ids() == []
    assert data(api.post(replay, json={"id": made["id"]})) == {"replayed": 0}
    assert_err(api.post(replay, json={"id": 999}), 404, "not_found")


def check_health(api: httpx.Client, redis_db: redis.Redis, keys: Keys, kind: Kind) -> None:
    """The health of one target and of all: enabled, the breaker, held and dead counts from the engine's state (of
    any partition: the last one on the cluster), the last attempt and error and the retrying deliveries from the
    kept attempts, and why it needs attention. A quiet target needs none."""
    made, quiet = kind.create(api), kind.create(api, enabled=False)
    target, p = kind.target(made["id"]), keys.shards()[-1]
    # m:0 delivered, m:1 retried and then delivered, m:2 still retrying (the engine pushes each attempt on top)
    for raw in (attempt(0, "success", target), attempt(1, "retry", target), attempt(1, "success", target),
                attempt(2, "retry", target)):
        redis_db.lpush(keys.attempts(target, p), raw)
    redis_db.hset(keys.delivery_state(target, p), mapping={"held": 3, "failures": 2, "deadDropped": 1})
    redis_db.hset(keys.dead(target, p), "m:9", dead_letter("m:9", "SN9", 1, kind.body))
    one = data(api.get(f"{kind.base}/health", params={"id": made["id"]}))
    assert one["enabled"] is True and one["breaker"] == {"state": "closed", "since": None, "failures": 2,
                                                         "probeAt": None}
    assert (one["held"], one["dead"], one["dropped"], one["retrying"]) == (3, 1, {"held": 0, "dead": 1}, 1)
    assert one["lastAttempt"] == {"time": 1700000002, "deliveryId": f"m:2:{target}", "outcome": "retry",
                                  "status": 503, "error": "http 503"}
    assert one["lastError"] == one["lastAttempt"]
    assert one["attention"] == ["failing", "retrying", "held", "dead_letters"]
    redis_db.hset(keys.delivery_state(target, p), mapping={"breaker": "open", "openedAt": 1700000000,
                                                           "probeAt": 1700000030000})
    redis_db.lpush(keys.attempts(target, p), attempt(2, "success", target))
    listed = data(api.get(f"{kind.base}/health"))
    assert listed["count"] == 2 and [h["id"] for h in listed["list"]] == [made["id"], quiet["id"]]
    now, calm = listed["list"]
    assert now["breaker"] == {"state": "open", "since": 1700000000, "failures": 2, "probeAt": 1700000030}
    assert (now["retrying"], now["lastAttempt"]["outcome"], now["lastError"]["deliveryId"]) == (0, "success",
                                                                                                 f"m:2:{target}")
    assert now["attention"] == ["breaker_open", "held", "dead_letters"]
    assert calm == {"id": quiet["id"], "enabled": False, "breaker": {"state": "closed", "since": None, "failures": 0,
                                                                      "probeAt": None},
                    "held": 0, "dead": 0, "dropped": {"held": 0, "dead": 0}, "retrying": 0, "lastAttempt": None,
                    "lastError": None, "attention": []}
    assert_err(api.get(f"{kind.base}/health", params={"id": 999}), 404, "not_found")


def check_viewers_read_but_do_not_change(server: Server, api: httpx.Client, kind: Kind) -> None:
    """The viewer reads the list, the deliveries, the dead letters and `kind.reads`, and gets a 403 from each
    admin endpoint: nothing changes."""
    made = kind.create(api)
    with httpx.Client(base_url=server.url, timeout=10) as c:
        c.headers["Authorization"] = f"Bearer {server.viewer}"
        assert data(c.get(kind.base))["count"] == 1
        assert data(c.get(kind.base + "/deliveries", params={"id": made["id"]})) == {"count": 0, "list": []}
        assert data(c.get(kind.base + "/dead", params={"id": made["id"]})) == {
            "total": 0, "count": 0, "page": 1, "limit": 100, "list": []}
        assert data(c.get(kind.base + "/health", params={"id": made["id"]}))["breaker"]["state"] == "closed"
        for path, answer in kind.reads.items():
            assert data(c.get(kind.base + path)) == answer
        changing = [ep for ep in kind.endpoints if ep.method != "GET"]
        assert len(changing) == kind.changes and all(ep.access == "admin" for ep in changing)
        for ep in changing:
            sent = {**kind.change, "id": made["id"]}
            assert_err(c.request(ep.method, ep.path, params={"id": made["id"]}, json=sent), 403, "forbidden")
    [item] = data(api.get(kind.base))["list"]
    assert {k: item[k] for k in made if k != "secret"} == {k: v for k, v in made.items() if k != "secret"}


def check_every_endpoint_needs_a_token(server: Server, kind: Kind) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for ep in kind.endpoints:
            assert_err(c.request(ep.method, ep.path.format(**kind.path_params)), 401, "unauthorized")


class SharedEndpoints:
    """The tests of what every kind of target has. A test module subclasses it as `Test…` with its `KIND`;
    the module's `server`, `api` and `keys` fixtures (from `fixtures`) serve them."""

    KIND: ClassVar[Kind]

    def test_queries_name_the_wrong_field(self, api: httpx.Client) -> None:
        check_queries_name_the_wrong_field(api, self.KIND)

    def test_secret_rotation(self, api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
        check_secret_rotation(api, redis_db, keys, self.KIND)

    def test_deliveries_list_the_engines_attempts(self, api: httpx.Client, redis_db: redis.Redis,
                                                  keys: Keys) -> None:
        check_deliveries(api, redis_db, keys, self.KIND)

    def test_dead_letters_list_and_replay(self, api: httpx.Client, redis_db: redis.Redis, keys: Keys,
                                          server: Server) -> None:
        check_dead_letters_and_replay(api, redis_db, keys, self.KIND, keys.stream_partitions)

    def test_health_tells_what_needs_attention(self, api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
        check_health(api, redis_db, keys, self.KIND)

    def test_viewers_read_but_do_not_change(self, server: Server, api: httpx.Client) -> None:
        check_viewers_read_but_do_not_change(server, api, self.KIND)

    def test_every_endpoint_needs_a_token(self, server: Server) -> None:
        check_every_endpoint_needs_a_token(server, self.KIND)
