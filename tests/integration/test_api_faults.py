"""The v1 API answers 503 with Retry-After, never 500, when Redis refuses a write (READONLY after a failover, OOM),
and what was stored before is still there once Redis takes writes again."""

from __future__ import annotations

import httpx

from adapter.settings import Settings
from tests.conftest import login
from tests.integration.test_api_envelope import assert_err
from tests.support.redis_faults import redis_server
from tests.support.servers import serve_api, wait_for

BASE = "/iot/api/v1/monitor/devices/callbacks"
CALLBACK = {"type": "device", "url": "https://example.com/hook"}


def test_writes_on_a_readonly_or_full_redis_are_503(settings: Settings) -> None:
    with redis_server("--maxmemory-policy", "noeviction") as old, redis_server() as new, \
            serve_api(settings.with_overrides(redis_url=old.url)) as url, \
            httpx.Client(base_url=url, timeout=10) as c:
        c.headers["Authorization"] = f"Bearer {login(c)}"
        first = c.post(BASE, json=CALLBACK)
        assert first.status_code == 200, first.text

        # a failover: the replica `new` takes over, the old primary follows it and refuses writes
        new.client.replicaof("127.0.0.1", old.port)
        wait_for(lambda: new.client.info("replication").get("master_link_status") == "up", what="replica in sync")
        new.client.replicaof("NO", "ONE")
        old.client.replicaof("127.0.0.1", new.port)
        wait_for(lambda: old.client.info("replication").get("master_link_status") == "up", what="old one follows")
        r = c.post(BASE, json=CALLBACK)
        assert_err(r, 503, "unavailable")
        assert r.headers["retry-after"] == "1"
        old.client.replicaof("NO", "ONE")

        old.client.config_set("maxmemory", "1")
        r = c.post(BASE, json=CALLBACK)
        assert_err(r, 503, "unavailable")
        old.client.config_set("maxmemory", "0")

        listed = c.get(BASE).json()["data"]
        assert [cb["url"] for cb in listed["list"]] == [CALLBACK["url"]], listed
