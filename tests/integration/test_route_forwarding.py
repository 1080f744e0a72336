"""Message routes end to end in one process: a route made through the API receives the matching messages the
ingest takes, once each, signed, in the order of one client's messages (routes issue, items 2 and 3)."""

from __future__ import annotations

import asyncio
import json

import httpx
import redis
from standardwebhooks import Webhook

from adapter.delivery.pump import run_pump
from adapter.settings import Settings
from adapter.store.keys import Keys
from tests.conftest import INGEST_TOKEN, login
from tests.support.emqx import published
from tests.support.receiver import Receiver
from tests.support.servers import serve, serve_api, wait_for


async def test_route_receives_matching_messages_once_in_order(settings: Settings, redis_db: redis.Redis,
                                                              keys: Keys) -> None:
    s = settings.with_overrides(allow_private_urls=True, delivery_schedule="0.2s")
    rec = Receiver()
    with serve(rec.app()) as hook, serve_api(s) as api, httpx.Client(base_url=api) as c:
        admin = {"Authorization": f"Bearer {login(c)}"}
        r = c.post("/iot/api/v1/msgroute/configs", headers=admin,
                   json={"topic": "dma/resp/cmd", "name": "responses", "url": f"{hook}/resp"})
        assert r.status_code == 200, r.text
        route = r.json()["data"]
        ingest = {"Authorization": f"Bearer {INGEST_TOKEN}"}

        def send(n: int, topic: str = "dma/resp/cmd", clientid: str = "SNR") -> httpx.Response:
            body = published(clientid, topic, {"id": n, "sn": clientid, "status": "ok"}, at=1_700_000_000_000 + n,
                             msg_id=f"{n:032X}")
            return c.post("/emqx/events", headers=ingest, content=json.dumps(body))

        # the table follows the change within a second: poll until a message is routed
        wait_for(lambda: send(0).status_code == 200 and redis_db.exists(keys.seen(f"msg:{0:032X}", "SNR")),
                 timeout=2, what="the route table")
        for n in range(1, 6):
            assert send(n).status_code == 200
        assert send(3).status_code == 200  # EMQX redelivers: forwarded once
        assert send(7, topic="dma/report/SNR/sys").status_code == 200  # does not match
        body = published("http_api", "dma/resp/cmd", {"x": 1}, msg_id="F" * 32)
        body.update(username="undefined", peerhost="undefined")
        c.post("/emqx/events", headers=ingest, content=json.dumps(body))  # the service's own: never routed
        await run_pump(s, asyncio.Event(), burst=True)
    got = [Webhook(route["secret"]).verify(r.body, r.headers) for r in rec.received]
    assert [g["id"] for g in got] == [f"{n:032X}" for n in range(6)]
    first = got[1]
    assert set(first) == {"topic", "payload", "payload_encoding", "clientid", "username", "qos", "retain",
                          "timestamp", "id", "routeId"}
    assert (first["topic"], first["clientid"], first["payload_encoding"], first["routeId"]) == (
        "dma/resp/cmd", "SNR", "plain", route["id"])
    assert json.loads(first["payload"]) == {"id": 1, "sn": "SNR", "status": "ok"}
    assert rec.received[1].headers["webhook-id"] == f"m:{1:032X}:route:{route['id']}"
    assert sum(int(redis_db.hget(keys.delivery_counts(f"route:{route['id']}", p), "succCount") or 0)
               for p in keys.shards()) == 6  # the route's hash on one Redis; per partition on the cluster
