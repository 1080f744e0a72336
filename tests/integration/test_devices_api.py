"""The device monitoring read API against a real Redis (DB 15) holding the ingest's layout (adapter/store/keys.py).

Data is written straight into Redis as the ingest writes it; the app is served by uvicorn with this module's
routes in front of the others, as app.py will register them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from adapter.api import devices as devices_api
from adapter.app import create_app
from adapter.devices import reads as devices
from adapter.http.openapi import document
from adapter.settings import Settings
from adapter.store.keys import Keys
from tests.conftest import (
    ADMIN_PASSWORD,
    INGEST_TOKEN,
    flush_store,
    login,
    store_client,
    store_env,
)
from tests.support.servers import serve

BASE = "/iot/api/v1/monitor/devices"
PROCS_A = ('{"d": [{"mem":1088,"n":"monitor"}, {"mem":1140,"n":"msghub"}],'
           '"revtime":1542188564,"sn":"8CFCA0107D1B","time":1295556987}')
SYS_B = ('{"d":{"free":848988,"load":0.21,"used":47000},'
         '"revtime":1542188544,"sn":"RPIB827EBF24B9D","time":31853}')
VERSIONS_B = ('{"d": [{"n":"monitor","v":"1.0.0 20181114-133734"}],'
              '"revtime":1542188485,"sn":"RPIB827EBF24B9D"}')


def put_device(r: redis.Redis, keys: Keys, sn: str, *, online: bool, **record: str) -> None:
    """A device as the ingest leaves it: presence (ms) and record in the client hash, and its indexes."""
    fields = {"device": "1", "online": "1" if online else "0", "version": "1",
              "connected_at": "1542188264000", "online_time": "1542188264000", **record}
    r.hset(keys.client(sn), mapping=fields)
    p = keys.shard(sn)  # the device's index shard (0 on one Redis)
    r.zadd(keys.devices(p), {sn: 0})
    r.zadd(keys.devices_online(p) if online else keys.devices_offline(p), {sn: 0})


def put_peripheral(r: redis.Redis, keys: Keys, sn: str, nid: str, gw: str, *, online: bool) -> None:
    member = f"{sn}/{nid}"
    r.hset(keys.peripheral(sn, nid), mapping={
        "nId": nid, "gwId": gw, "sn": sn, "online": "1" if online else "0", "activeTime": "1542188574",
        "revTime": "1542188579", "msg": '{"t":21.5}'})
    p = keys.shard(sn)  # the reporting device's shard
    r.zadd(keys.peripherals(p), {member: 0})
    r.zadd(keys.peripherals_of_gw(gw, p), {member: 0})
    r.zadd(keys.peripherals_online(p) if online else keys.peripherals_offline(p), {member: 0})


def put_seed_devices(r: redis.Redis, keys: Keys) -> None:
    put_device(r, keys, "8CFCA0107D1B", online=True, activeTime="1542188584", bootTime="-1", dur="5",
               offline_time="1542188181000", online_time="1542188264000", procs=PROCS_A)
    put_device(r, keys, "RPIB827EBF24B9D", online=True, activeTime="1542188574", bootTime="0", dur="15",
               offline_time="1542173903000", online_time="1542173904000", version="4",
               procs=PROCS_A.replace("8CFCA0107D1B", "RPIB827EBF24B9D"), sys=SYS_B, versions=VERSIONS_B)


def put_fleet(r: redis.Redis, keys: Keys) -> None:
    """25 devices A00..A14 (every third online) and B00..B09 (B00, B05 online)."""
    for i in range(15):
        put_device(r, keys, f"A{i:02d}", online=i % 3 == 0, activeTime=str(1_700_000_000 + i))
    for i in range(10):
        put_device(r, keys, f"B{i:02d}", online=i % 5 == 0)


@pytest.fixture(scope="module")
def served(module_prefix: str) -> Iterator[tuple[httpx.Client, redis.Redis, Keys]]:
    """One server and one login for the module (argon2 and startup cost ~0.4 s each); DB 15 flushed around."""
    prefix = module_prefix

    store = store_client(decode_responses=True)
    flush_store(store, prefix)
    settings = Settings.from_env({**store_env(prefix), "ADAPTER_ADMIN_PASSWORD": ADMIN_PASSWORD,
                                  "ADAPTER_INGEST_TOKEN": INGEST_TOKEN}, dotenv=None)
    app = create_app(settings)
    app.router.routes[0:0] = [ep.route() for ep in devices_api.ENDPOINTS]
    try:
        with serve(app) as url, httpx.Client(base_url=url, timeout=10) as client:
            client.headers["Authorization"] = f"Bearer {login(client)}"
            yield client, store, Keys.of(settings)
    finally:
        flush_store(store, prefix)
        store.close()


@pytest.fixture
def keys(served: tuple[httpx.Client, redis.Redis, Keys]) -> Keys:
    return served[2]


@pytest.fixture
def redis_db(served: tuple[httpx.Client, redis.Redis, Keys]) -> redis.Redis:
    """DB 15 emptied of everything but the login (users and tokens), per test."""
    _, store, keys = served
    login_keys = (keys.users(), keys.user(""), keys.token(""), keys.user_tokens(""))
    stale = [k for k in store.scan_iter(match=f"{keys.prefix}*", count=1000) if not str(k).startswith(login_keys)]
    for key in stale:  # one at a time: on the cluster they are in many slots
        store.delete(key)
    return store


@pytest.fixture
def api(served: tuple[httpx.Client, redis.Redis, Keys], redis_db: redis.Redis) -> httpx.Client:
    return served[0]


def data(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    return body["data"]


def sns(page: dict[str, Any]) -> list[str]:
    return [item["sn"] for item in page["list"]]


def test_device_list_is_the_seed_shape(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    put_seed_devices(redis_db, keys)
    page = data(api.get(BASE, params={"page": 1, "limit": 100}))
    assert {k: page[k] for k in ("total", "count", "page", "limit")} == {"total": 2, "count": 2, "page": 1,
                                                                          "limit": 100}
    first, second = page["list"]
    assert first == {"activeTime": 1542188584, "bootTime": -1, "dur": 5, "offlineTime": 1542188181,
                     "online": True, "onlineTime": 1542188264, "procs": PROCS_A, "sn": "8CFCA0107D1B",
                     "sys": "", "versions": ""}
    assert (second["sn"], second["bootTime"], second["dur"]) == ("RPIB827EBF24B9D", 0, 15)
    assert (second["sys"], second["versions"]) == (SYS_B, VERSIONS_B)
    assert (second["offlineTime"], second["onlineTime"]) == (1542173903, 1542173904)


def test_defaults_apply_without_query(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    put_fleet(redis_db, keys)
    page = data(api.get(BASE))
    assert (page["page"], page["limit"], page["total"], page["count"]) == (1, 100, 25, 25)
    assert sns(page) == sorted(sns(page))


def test_paging(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    put_fleet(redis_db, keys)
    every = [f"A{i:02d}" for i in range(15)] + [f"B{i:02d}" for i in range(10)]
    pages = [data(api.get(BASE, params={"page": p, "limit": 10})) for p in (1, 2, 3, 4)]
    assert [p["count"] for p in pages] == [10, 10, 5, 0]
    assert all(p["total"] == 25 and p["limit"] == 10 for p in pages)
    assert [p["page"] for p in pages] == [1, 2, 3, 4]
    assert [sn for p in pages for sn in sns(p)] == every


def test_online_filter_and_counts(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    put_fleet(redis_db, keys)
    online = data(api.get(BASE, params={"online": "true"}))
    offline = data(api.get(BASE, params={"online": "false", "limit": 5, "page": 2}))
    assert sns(online) == ["A00", "A03", "A06", "A09", "A12", "B00", "B05"]
    assert all(item["online"] for item in online["list"])
    assert offline["total"] == 18 and sns(offline) == ["A08", "A10", "A11", "A13", "A14"]
    assert not any(item["online"] for item in offline["list"])
    assert data(api.get(f"{BASE}/count")) == {"offline": 18, "online": 7, "total": 25}


def test_sn_prefix_with_paging_and_online(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    put_fleet(redis_db, keys)
    put_device(redis_db, keys, "C00", online=True)
    b = data(api.get(BASE, params={"sn": "B", "limit": 4, "page": 2}))
    assert (b["total"], b["count"], sns(b)) == (10, 4, ["B04", "B05", "B06", "B07"])
    last = data(api.get(BASE, params={"sn": "B", "limit": 4, "page": 3}))
    assert sns(last) == ["B08", "B09"]
    assert data(api.get(BASE, params={"sn": "B", "limit": 4, "page": 4}))["list"] == []
    a1 = data(api.get(BASE, params={"sn": "A1", "online": "true"}))
    assert (a1["total"], sns(a1)) == (1, ["A12"])
    assert data(api.get(BASE, params={"sn": "Z"}))["total"] == 0
    assert data(api.get(BASE, params={"sn": "B09"}))["total"] == 1


def test_counts_on_an_empty_store(api: httpx.Client) -> None:
    zero = {"offline": 0, "online": 0, "total": 0}
    assert data(api.get(f"{BASE}/count")) == zero
    assert data(api.get(f"{BASE}/peripherals/count")) == zero
    assert data(api.get(BASE))["list"] == []


def test_one_device(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    put_seed_devices(redis_db, keys)
    put_peripheral(redis_db, keys, "RPIB827EBF24B9D", "PH1", "GW1", online=True)
    put_peripheral(redis_db, keys, "RPIB827EBF24B9D", "PH2", "GW1", online=False)
    put_peripheral(redis_db, keys, "RPIB827EBF24B9DX", "PH1", "GW1", online=True)  # not a peripheral of it
    item = data(api.get(f"{BASE}/RPIB827EBF24B9D"))
    listed = data(api.get(BASE, params={"sn": "RPIB827EBF24B9D"}))["list"]
    assert item == {**listed[0], "version": 4, "peripherals": 2}


def test_unknown_device_is_404(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    redis_db.hset(keys.client("ghost"), mapping={"online": "1"})  # a client, never a device
    for path in (f"{BASE}/nobody", f"{BASE}/ghost"):
        r = api.get(path)
        assert r.status_code == 404
        assert r.json() == {"status": "err", "code": "not_found", "msg": "no such device"}


def test_fixed_paths_are_not_taken_for_an_sn(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    put_device(redis_db, keys, "count", online=True)
    put_device(redis_db, keys, "peripherals", online=True)
    assert data(api.get(f"{BASE}/count")) == {"offline": 0, "online": 2, "total": 2}
    assert data(api.get(f"{BASE}/peripherals"))["total"] == 0


def test_a_member_without_its_hash_is_left_out(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    put_fleet(redis_db, keys)
    redis_db.delete(keys.client("A01"))
    page = data(api.get(BASE, params={"limit": 3}))
    assert (page["total"], page["count"], sns(page)) == (25, 2, ["A00", "A02"])


def test_peripheral_list_and_filters(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    put_peripheral(redis_db, keys, "RPI1", "PH1", "GW1", online=True)
    put_peripheral(redis_db, keys, "RPI1", "PH2", "GW1", online=False)
    put_peripheral(redis_db, keys, "RPI1", "PH3", "GW2", online=True)
    put_peripheral(redis_db, keys, "RPI2", "PH1", "GW1", online=True)
    put_peripheral(redis_db, keys, "RPI10", "PH9", "GW2", online=False)

    def members(**params: Any) -> tuple[int, list[str]]:
        page = data(api.get(f"{BASE}/peripherals", params=params))
        return page["total"], [f"{p['sn']}/{p['nId']}" for p in page["list"]]

    every = ["RPI1/PH1", "RPI1/PH2", "RPI1/PH3", "RPI10/PH9", "RPI2/PH1"]
    assert members() == (5, every)
    assert members(limit=2, page=2) == (5, every[2:4])
    assert members(sn="RPI1") == (3, every[:3])  # exact sn: RPI10 is another device
    assert members(gwId="GW1") == (3, ["RPI1/PH1", "RPI1/PH2", "RPI2/PH1"])
    assert members(online="false") == (2, ["RPI1/PH2", "RPI10/PH9"])
    assert members(sn="RPI1", online="true") == (2, ["RPI1/PH1", "RPI1/PH3"])
    assert members(gwId="GW1", online="true") == (2, ["RPI1/PH1", "RPI2/PH1"])
    assert members(gwId="GW1", online="true", limit=1, page=2) == (2, ["RPI2/PH1"])
    assert members(gwId="GW1", online="true", sn="RPI2") == (1, ["RPI2/PH1"])
    assert members(gwId="GW2", sn="RPI10") == (1, ["RPI10/PH9"])
    assert members(gwId="nope") == (0, [])
    assert data(api.get(f"{BASE}/peripherals/count")) == {"offline": 2, "online": 3, "total": 5}


def test_peripheral_item_is_the_seed_shape(api: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    put_peripheral(redis_db, keys, "RPIB827EBF24B9D", "PH3223881", "GW8399438", online=True)
    page = data(api.get(f"{BASE}/peripherals", params={"page": 1, "limit": 100}))
    assert (page["total"], page["count"], page["page"], page["limit"]) == (1, 1, 1, 100)
    assert page["list"] == [{"nId": "PH3223881", "gwId": "GW8399438", "sn": "RPIB827EBF24B9D", "online": True,
                             "activeTime": 1542188574, "revTime": 1542188579, "msg": '{"t":21.5}'}]


@pytest.mark.parametrize(("path", "params"), [
    (BASE, {"online": "maybe"}), (BASE, {"limit": "0"}), (BASE, {"limit": "1001"}), (BASE, {"page": "x"}),
    (f"{BASE}/peripherals", {"online": "2"}),
])
def test_bad_query_is_400(api: httpx.Client, path: str, params: dict[str, str]) -> None:
    r = api.get(path, params=params)
    assert r.status_code == 400 and r.json()["code"] == "invalid_params"


def test_a_token_is_required(api: httpx.Client) -> None:
    for path in (BASE, f"{BASE}/count", f"{BASE}/peripherals", f"{BASE}/peripherals/count", f"{BASE}/X"):
        assert httpx.get(f"{api.base_url}{path}").status_code == 401


async def test_hashes_reads_many_hashes_in_one_round(redis_db: redis.Redis, key_prefix: str,
                                                     aredis: redis.asyncio.Redis) -> None:

    """The page's HMGETs from one template: every field of every key in its place, None where missing, on one
    Redis and across a cluster's slots; a key of the wrong type is the client's error, not a wrong row."""
    names = [f"{key_prefix}:{{t{i % 7}}}:h{i}" for i in range(40)]
    for i, name in enumerate(names[:30]):
        redis_db.hset(name, mapping={"a": str(i), "b": "x" * (i * 50)})  # rows long enough to span reads
    redis_db.set(f"{key_prefix}:{{t0}}:plain", "v")

    found = await devices.hashes(aredis, names, ["a", "c", "b"])
    empty = await devices.hashes(aredis, [], ["a"])
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        await devices.hashes(aredis, [f"{key_prefix}:{{t0}}:plain"], ["a"])
    assert found == [[str(i), None, "x" * (i * 50)] for i in range(30)] + [[None, None, None]] * 10
    assert empty == []


def test_the_last_endpoint_is_the_sn_route() -> None:
    assert devices_api.ENDPOINTS[-1].path.endswith("/{sn}")
    assert all("{" not in ep.path for ep in devices_api.ENDPOINTS[:-1])


schema = schemathesis.openapi.from_dict(document(devices_api.ENDPOINTS))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.parametrize()
@hsettings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_responses_match_the_schema(case: schemathesis.Case, api: httpx.Client, redis_db: redis.Redis,
                                    keys: Keys) -> None:
    if not redis_db.exists(keys.devices()):
        put_seed_devices(redis_db, keys)
        put_peripheral(redis_db, keys, "RPIB827EBF24B9D", "PH1", "GW1", online=True)
    case.call_and_validate(base_url=str(api.base_url), headers=dict(api.headers), checks=CHECKS)
