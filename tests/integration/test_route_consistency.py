"""What a route change's answer promises (adapter/targets/route_table.py, docs/delivery.md "Route changes"): in the
process that answered, every message ingested after the answer is matched against the changed table, with neither
the notification nor the poll to help (they are switched off here); in any other process, a message is never
matched under a version check older than the table's `max_age` (here: the table's clock moved past it, no sleeping)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest
import redis

from adapter.settings import Settings
from adapter.store.connections import async_redis
from adapter.store.keys import Keys
from adapter.targets.route_table import RouteTable
from tests.conftest import INGEST_TOKEN, login
from tests.support.emqx import published
from tests.support.servers import serve_api


async def _idle(self: RouteTable, redis: object, stop: asyncio.Event) -> None:
    await stop.wait()


async def _never(self: RouteTable) -> None:
    return None


def test_a_change_is_in_force_in_the_answering_process_when_it_answers(
        settings: Settings, redis_db: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RouteTable, "follow", _idle)  # no notification, no poll
    monkeypatch.setattr(RouteTable, "fresh", _never)  # no check on the ingest's path either: only the answer's reload
    s = settings.with_overrides(allow_private_urls=True)
    with serve_api(s) as api, httpx.Client(base_url=api) as c:
        admin = {"Authorization": f"Bearer {login(c)}"}
        send = _sender(c)
        assert send(1) == 200 and not redis_db.exists(keys.seen(f"msg:{1:032X}", "SNC"))  # no route yet
        r = c.post("/iot/api/v1/msgroute/configs", headers=admin,
                   json={"topic": "dma/report/+/sys", "name": "sys", "url": "http://127.0.0.1:9/x"})
        assert r.status_code == 200, r.text
        route = r.json()["data"]["id"]
        assert send(2) == 200 and redis_db.exists(keys.seen(f"msg:{2:032X}", "SNC"))  # forwarded
        r = c.put("/iot/api/v1/msgroute/configs", headers=admin, json={"id": route, "enabled": False})
        assert r.status_code == 200, r.text
        assert send(3) == 200 and not redis_db.exists(keys.seen(f"msg:{3:032X}", "SNC"))
        assert c.put("/iot/api/v1/msgroute/configs", headers=admin, json={"id": route, "enabled": True}).status_code \
            == 200
        assert send(4) == 200 and redis_db.exists(keys.seen(f"msg:{4:032X}", "SNC"))
        r = c.delete("/iot/api/v1/msgroute/configs", headers=admin, params={"id": route})
        assert r.status_code == 200 and r.json()["data"]["rows"] == 1, r.text
        assert send(5) == 200 and not redis_db.exists(keys.seen(f"msg:{5:032X}", "SNC"))  # never after the delete


def _sender(c: httpx.Client) -> Callable[[int], int]:
    def send(n: int) -> int:
        body = published("SNC", "dma/report/SNC/sys", {"sn": "SNC", "time": n, "d": {"free": 1}},
                         at=1_700_000_000_000 + n, msg_id=f"{n:032X}")
        return c.post("/emqx/events", headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
                      content=json.dumps(body)).status_code
    return send


async def test_a_message_is_never_matched_under_a_version_check_older_than_max_age(settings: Settings, keys: Keys,
                                                                                   aredis: redis.asyncio.Redis) -> None:
    """Another process's change (written straight into Redis here, with no notification): the table does not look
    while its check is younger than max_age, and looks, once, for the messages that come after."""

    table = RouteTable(keys, check_every=60, max_age=0.5)
    await table.refresh(aredis)
    assert table.match("a/b") == ()
    await aredis.hset(keys.routes_enabled(), "7", "a/+")
    await aredis.incr(keys.routes_version())
    await table.fresh()
    assert table.match("a/b") == ()  # checked just now: within max_age, no read
    table.checked_at -= 0.51  # the check is now older than max_age
    await asyncio.gather(*(table.fresh() for _ in range(20)))  # twenty messages, one read
    assert [r.id for r in table.match("a/b")] == [7] and table.reloads == 2
    await aredis.hdel(keys.routes_enabled(), "7")
    await aredis.incr(keys.routes_version())
    table.checked_at -= 0.51
    await table.fresh()
    assert table.match("a/b") == ()  # a deleted route: not matched once the check is due


async def test_a_version_check_that_fails_leaves_the_table_and_is_counted(settings: Settings, keys: Keys,
                                                                          aredis: redis.asyncio.Redis) -> None:
    table = RouteTable(keys, check_every=60, max_age=0.5)
    await table.refresh(aredis)
    gone = async_redis(settings.with_overrides(redis_url="redis://127.0.0.1:1/0"))
    table._redis = gone  # the routes' node stops answering
    table.checked_at -= 0.51
    await table.fresh()
    await gone.aclose()
    stale, version = table.stale_matches, table.version
    assert stale == 1 and version is not None
