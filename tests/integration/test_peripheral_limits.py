"""A gateway's peripherals are capped (ADAPTER_MAX_PERIPHERALS_PER_GATEWAY) and the ones it stops reporting are
pruned after ADAPTER_PERIPHERAL_TTL_DAYS, by its own reports (bounded work each), with every count kept right."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import redis

from adapter.settings import Settings
from adapter.store.keys import Keys
from tests.conftest import INGEST_TOKEN, login, metric_fields, zall
from tests.support.emqx import connected, post, published
from tests.support.servers import serve_api

DAY_MS = 86_400_000
T0 = 1_700_000_000_000  # ms


@contextmanager
def app(settings: Settings, cap: int) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """(the admin's client, EMQX's client) of an app with this cap and a TTL of one day."""
    s = settings.with_overrides(max_peripherals_per_gateway=cap, peripheral_ttl_days=1)
    with serve_api(s) as url, httpx.Client(base_url=url, timeout=10) as admin, \
            httpx.Client(base_url=url, timeout=10, headers={"Authorization": f"Bearer {INGEST_TOKEN}"}) as emqx:
        admin.headers["Authorization"] = f"Bearer {login(admin)}"
        yield admin, emqx


@pytest.fixture
def api(settings: Settings) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with app(settings, cap=3) as clients:
        yield clients


def report(emqx: httpx.Client, gw: str, at: int, *nids: str, online: bool = True) -> None:
    body = {"sn": gw, "time": 1, "d": [{"nId": n, "gwId": "G", "online": online, "msg": {}} for n in nids]}
    r = post(emqx, published(gw, f"dma/report/{gw}/peripherals", body, at=at, msg_id=uuid.uuid4().hex))
    assert r.status_code == 200, r.text


def counts(c: httpx.Client) -> dict[str, int]:
    r = c.get("/iot/api/v1/monitor/devices/peripherals/count")
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def listed(c: httpx.Client, **params: str) -> list[str]:
    r = c.get("/iot/api/v1/monitor/devices/peripherals", params=params)
    assert r.status_code == 200, r.text
    return [f"{p['sn']}/{p['nId']}" for p in r.json()["data"]["list"]]


def metric(keys: Keys, r: redis.Redis, name: str) -> int:
    return int(metric_fields(r, keys).get(name, 0))


def test_new_peripherals_past_the_cap_are_not_stored(api: tuple[httpx.Client, httpx.Client], redis_db: redis.Redis,
                                                     keys: Keys) -> None:
    admin, emqx = api
    post(emqx, connected("GW1", T0))
    report(emqx, "GW1", T0 + 1000, "P1", "P2", "P3", "P4", "P5")
    assert listed(admin, sn="GW1") == ["GW1/P1", "GW1/P2", "GW1/P3"]
    assert redis_db.exists(keys.peripheral("GW1", "P4"), keys.peripheral("GW1", "P5")) == 0
    assert metric(keys, redis_db, "peripherals_dropped_total") == 2
    # the ones it keeps are still updated; a new one is still refused
    report(emqx, "GW1", T0 + 2000, "P1", "P6", online=False)
    assert redis_db.hget(keys.peripheral("GW1", "P1"), "online") == "0"
    assert redis_db.exists(keys.peripheral("GW1", "P6")) == 0
    assert metric(keys, redis_db, "peripherals_dropped_total") == 3
    # the cap is per gateway
    post(emqx, connected("GW2", T0))
    report(emqx, "GW2", T0 + 1000, "Q1", "Q2", "Q3")
    c = counts(admin)
    assert (c["total"], c["online"], c["offline"]) == (6, 5, 1)
    assert admin.get("/iot/api/v1/monitor/devices/GW1").json()["data"]["peripherals"] == 3


def test_peripherals_not_reported_for_the_ttl_are_pruned(api: tuple[httpx.Client, httpx.Client], redis_db: redis.Redis,
                                                         keys: Keys) -> None:
    admin, emqx = api
    post(emqx, connected("GW3", T0))
    report(emqx, "GW3", T0, "P1", "P2", "P3")
    report(emqx, "GW3", T0 + DAY_MS // 2, "P3")  # P3 reported again half a day later
    assert counts(admin)["total"] == 3
    report(emqx, "GW3", T0 + DAY_MS + 1000, "P4")  # a day after P1 and P2 were last reported
    assert listed(admin, sn="GW3") == ["GW3/P3", "GW3/P4"]
    assert redis_db.exists(keys.peripheral("GW3", "P1"), keys.peripheral("GW3", "P2")) == 0
    assert zall(redis_db, keys, lambda p: keys.peripherals_of_gw("G", p)) == ["GW3/P3", "GW3/P4"]
    assert zall(redis_db, keys, keys.peripherals_online) == ["GW3/P3", "GW3/P4"]
    assert len(zall(redis_db, keys, keys.peripherals_offline)) == 0
    assert redis_db.zrange(keys.peripherals_seen("GW3"), 0, -1) == ["P3", "P4"]
    c = counts(admin)
    assert (c["total"], c["online"], c["offline"]) == (2, 2, 0)
    assert admin.get("/iot/api/v1/monitor/devices/GW3").json()["data"]["peripherals"] == 2
    assert metric(keys, redis_db, "peripherals_pruned_total") == 2
    # pruning made room under the cap
    report(emqx, "GW3", T0 + DAY_MS + 2000, "P5")
    assert listed(admin, sn="GW3") == ["GW3/P3", "GW3/P4", "GW3/P5"]


def test_pruning_is_bounded_per_report(settings: Settings, redis_db: redis.Redis, keys: Keys) -> None:
    """At most 100 stale peripherals go per report, so one report's work stays bounded; the next ones take the
    rest."""
    with app(settings, cap=1000) as (_, emqx):
        post(emqx, connected("GW4", T0))
        report(emqx, "GW4", T0, *[f"P{i:03d}" for i in range(150)])
        assert len(zall(redis_db, keys, keys.peripherals)) == 150
        report(emqx, "GW4", T0 + 2 * DAY_MS, "NEW")
        assert len(zall(redis_db, keys, keys.peripherals)) == 51
        report(emqx, "GW4", T0 + 2 * DAY_MS + 1000, "NEW")
        assert zall(redis_db, keys, keys.peripherals) == ["GW4/NEW"]
        assert metric(keys, redis_db, "peripherals_pruned_total") == 150
