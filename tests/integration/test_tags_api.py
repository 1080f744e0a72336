"""Device tags and selector dry runs through the API, on a real Redis (either layout)."""

from __future__ import annotations

import httpx
import orjson
import redis

from adapter.store.keys import Keys
from tests.integration.test_devices_api import put_device

BASE = "/iot/api/v1/monitor/devices"


def versions(v: str) -> str:
    return orjson.dumps({"sn": "x", "time": 1, "d": [{"n": "upgrade.cmd", "v": v}], "revtime": 1}).decode()


def fleet(r: redis.Redis, keys: Keys) -> None:
    for i in range(30):
        put_device(r, keys, f"GW{i:03}", online=i % 2 == 0, versions=versions("1.3.0" if i < 10 else "1.4.2"))
    for i in range(5):
        put_device(r, keys, f"PI{i:03}", online=True)


def select(admin: httpx.Client, selector: dict, **params: int) -> dict:
    r = admin.post(f"{BASE}/select", json=selector, params=params)
    assert r.status_code == 200, r.text
    data: dict = r.json()["data"]
    return data


def test_tags_are_put_read_paged_and_deleted(admin: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    fleet(redis_db, keys)
    r = admin.put(f"{BASE}/tags", json={"sns": [f"GW{i:03}" for i in range(12)], "tags": ["blue", "lab"]})
    assert r.status_code == 200 and r.json()["data"] == {"added": 24, "devices": 12}
    again = admin.put(f"{BASE}/tags", json={"sns": ["GW000"], "tags": ["blue"]}).json()["data"]
    assert again == {"added": 0, "devices": 1}
    assert admin.get(f"{BASE}/tags", params={"sn": "GW000"}).json()["data"] == {"sn": "GW000",
                                                                                 "tags": ["blue", "lab"]}
    page = admin.get(f"{BASE}/tags", params={"tag": "blue", "page": 2, "limit": 5}).json()["data"]
    assert page == {"total": 12, "count": 5, "page": 2, "limit": 5,
                    "list": [f"GW{i:03}" for i in range(5, 10)]}
    gone = admin.delete(f"{BASE}/tags", params={"sn": "GW000", "tag": "blue"}).json()["data"]
    assert gone == {"sn": "GW000", "removed": ["blue"]}
    assert admin.delete(f"{BASE}/tags", params={"sn": "GW001"}).json()["data"]["removed"] == ["blue", "lab"]
    assert admin.get(f"{BASE}/tags", params={"tag": "blue"}).json()["data"]["total"] == 10


def test_a_dry_run_counts_and_pages_what_a_selector_matches(admin: httpx.Client, redis_db: redis.Redis,
                                                            keys: Keys) -> None:
    fleet(redis_db, keys)
    admin.put(f"{BASE}/tags", json={"sns": ["GW000", "GW001", "GW002", "PI000", "NOPE"], "tags": ["blue"]})
    assert select(admin, {"all": True})["total"] == 35
    assert select(admin, {"snPrefix": "GW"})["total"] == 30
    assert select(admin, {"snPrefix": "GW", "online": True})["total"] == 15
    old = select(admin, {"version": "upgrade.cmd < 1.4.0"}, limit=4, page=2)
    assert old == {"total": 10, "count": 4, "page": 2, "limit": 4, "list": ["GW004", "GW005", "GW006", "GW007"]}
    assert select(admin, {"tag": "blue"})["list"] == ["GW000", "GW001", "GW002", "PI000"]  # NOPE: not a device
    assert select(admin, {"tag": "blue", "online": True})["list"] == ["GW000", "GW002", "PI000"]
    assert select(admin, {"sns": ["PI001", "GW003", "ZZZ"], "online": False})["list"] == ["GW003"]
    assert select(admin, {"sns": ["GW001", "GW002"], "tag": "blue", "online": True})["list"] == ["GW002"]


def test_bad_input_gets_the_envelope(admin: httpx.Client, client: httpx.Client) -> None:
    for r in (admin.post(f"{BASE}/select", json={}), admin.post(f"{BASE}/select", json={"version": "nope"}),
              admin.put(f"{BASE}/tags", json={"sns": ["A"], "tags": ["a b"]}),
              admin.get(f"{BASE}/tags"), admin.delete(f"{BASE}/tags", params={"sn": "A", "tag": "!"})):
        assert r.status_code == 400 and r.json()["status"] == "err" and r.json()["code"] == "invalid_params", r.text
    with httpx.Client(base_url=str(client.base_url)) as anonymous:
        assert anonymous.put(f"{BASE}/tags", json={"sns": ["A"], "tags": ["a"]}).status_code == 401
