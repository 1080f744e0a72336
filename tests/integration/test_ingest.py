"""`POST /emqx/events` against the real Redis: auth, dispatch, durable-before-200, quirks (ingest issue, item 1)."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import httpx
import pytest
import redis
from starlette.applications import Starlette

from adapter.app import create_app
from adapter.settings import Settings
from adapter.store.keys import Keys
from tests.conftest import INGEST_TOKEN, flush_store, zall
from tests.integration.test_api_envelope import assert_err
from tests.support.emqx import SHARED, connected, disconnected, post, published, sample, subscribed
from tests.support.redis_faults import faulty_redis
from tests.support.servers import serve, serve_api, wait_for

AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}


def test_token_is_required(client: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    body = connected("SN1", 1000)
    assert_err(client.post("/emqx/events", json=body), 401, "unauthorized")
    assert_err(client.post("/emqx/events", json=body, headers={"Authorization": "Bearer wrong"}), 401,
               "unauthorized")
    assert redis_db.exists(keys.client("SN1")) == 0


def test_connect_of_a_device_and_its_presence(ingest: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    assert post(ingest, connected("SN1", 1_700_000_000_000)).status_code == 200
    assert redis_db.hget(keys.client("SN1"), "online") == "1"
    assert len(zall(redis_db, keys, keys.devices)) == 0  # a client is not a device until it subscribes or reports
    assert post(ingest, subscribed("SN1")).status_code == 200
    assert zall(redis_db, keys, keys.devices) == ["SN1"]
    assert zall(redis_db, keys, keys.devices_online) == ["SN1"]
    assert redis_db.hget(keys.client("SN1"), "version") == "2"  # connect, then becoming a device while online
    assert post(ingest, disconnected("SN1", 1_700_000_000_000, 1_700_000_060_000)).status_code == 200
    assert zall(redis_db, keys, keys.devices_offline) == ["SN1"]
    assert len(zall(redis_db, keys, keys.devices_online)) == 0


def test_redelivery_changes_nothing(ingest: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    events = [connected("SN2", 5000), subscribed("SN2"),
              published("SN2", "dma/report/SN2/sys", {"sn": "SN2", "time": 3, "d": {"free": 1}}),
              disconnected("SN2", 5000, 9000)]
    for ev in events:
        assert post(ingest, ev).status_code == 200
    before = redis_db.hgetall(keys.client("SN2"))
    for ev in events:
        assert post(ingest, ev).status_code == 200
    after = redis_db.hgetall(keys.client("SN2"))
    assert after == before


def test_takeover_keeps_the_device_online(ingest: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    post(ingest, connected("SN3", 1000))
    post(ingest, subscribed("SN3"))
    post(ingest, connected("SN3", 2000))
    post(ingest, disconnected("SN3", 1000, 2001, reason="takenover"))
    assert redis_db.hget(keys.client("SN3"), "online") == "1"
    # the late disconnect of an old connection does not take the new one down
    post(ingest, disconnected("SN3", 1000, 1500, reason="tcp_closed"))
    assert redis_db.hget(keys.client("SN3"), "online") == "1"


def test_reports_update_the_device_record(ingest: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    post(ingest, connected("SN4", 1000))
    procs = {"sn": "SN4", "time": 31853, "d": [{"n": "monitor", "mem": 1088, "cpu": 0.2}]}
    assert post(ingest, published("SN4", "dma/report/SN4/procs", procs, at=1_542_188_564_123)).status_code == 200
    post(ingest, published("SN4", "dma/report/SN4/heartbeat", {"sn": "SN4", "time": 5, "bootTime": 77, "dur": 15},
                           at=1_542_188_565_000))
    record = redis_db.hgetall(keys.client("SN4"))
    assert json.loads(record["procs"]) == {**procs, "revtime": 1_542_188_564}
    assert (record["bootTime"], record["dur"], record["activeTime"]) == ("77", "15", "1542188565")
    assert zall(redis_db, keys, keys.devices_online) == ["SN4"]


def test_an_older_report_does_not_overwrite_a_newer_one(ingest: httpx.Client, redis_db: redis.Redis,
                                                        keys: Keys) -> None:
    new = {"sn": "SN5", "time": 2, "d": {"free": 2}}
    old = {"sn": "SN5", "time": 1, "d": {"free": 1}}
    post(ingest, published("SN5", "dma/report/SN5/sys", new, at=2000_000))
    post(ingest, published("SN5", "dma/report/SN5/sys", old, at=1000_000))
    assert json.loads(redis_db.hget(keys.client("SN5"), "sys"))["time"] == 2


@pytest.mark.parametrize(("payload", "reason"), [
    ({"sn": "OTHER", "time": 1, "d": {}}, "sn_mismatch"),
    ("not json {", "not_json"),
    ("[1, 2]", "bad_shape"),
    ({"sn": "SN6", "d": "x" * 70_000}, "too_large"),
])
def test_rejected_reports_are_counted_and_change_nothing(ingest: httpx.Client, redis_db: redis.Redis, payload: object,
                                                         reason: str, keys: Keys) -> None:
    r = post(ingest, published("SN6", "dma/report/SN6/procs", payload))
    assert r.status_code == 200
    assert r.json()["data"]["rejected"] == reason
    assert redis_db.exists(keys.client("SN6")) == 0
    assert r.json()["data"]["rejected"] == reason  # counted in /metrics (test_metrics.py)


def nested(levels: int) -> object:
    """A JSON value `levels` deep: {"a": {"a": … [] …}}."""
    value: object = []
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(("topic", "payload"), [
    ("dma/report/SN8/procs", {"sn": "SN8", "d": nested(300)}),  # past orjson's 254: was a 500
    ("dma/report/SN8/sys", {"sn": "SN8", "d": nested(64)}),  # the limit + 1
    ("dma/report/SN8/peripherals", {"sn": "SN8", "d": [{"nId": "P1", "msg": nested(260)}]}),
    ("dma/resp/cmd", '{"id": "201811260000000001", "sn": "SN8", "d": ' + "[" * 1000 + "]" * 1000 + "}"),
])
def test_a_payload_nested_too_deep_is_rejected_and_counted(ingest: httpx.Client, redis_db: redis.Redis, topic: str,
                                                           payload: object, keys: Keys) -> None:
    """EMQX drops a 500: a payload the serializer would refuse is rejected where it is parsed (docs/ingest.md)."""
    r = post(ingest, published("SN8", topic, payload))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["rejected"] == "too_deep"
    assert redis_db.exists(keys.client("SN8")) == 0
    wait_for(lambda: redis_db.hget(keys.metrics(), 'ingest_rejected_total{reason="too_deep"}') == "1", what="count")


def test_a_payload_at_the_depth_limit_is_stored(ingest: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    r = post(ingest, published("SN9", "dma/report/SN9/sys", {"sn": "SN9", "d": nested(63)}))
    assert r.status_code == 200 and "rejected" not in r.json()["data"]
    assert json.loads(redis_db.hget(keys.client("SN9"), "sys"))["d"] == nested(63)


def test_peripherals_follow_reports_and_their_gateway(ingest: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    post(ingest, connected("GW1", 1000))
    report = {"sn": "GW1", "time": 1, "d": [
        {"nId": "P1", "gwId": "G", "online": True, "msg": {"t": 1}},
        {"nId": "P2", "gwId": "G", "online": False, "msg": {}}]}
    post(ingest, published("GW1", "dma/report/GW1/peripherals", report, at=2_000_000))
    assert zall(redis_db, keys, keys.peripherals) == ["GW1/P1", "GW1/P2"]
    assert zall(redis_db, keys, keys.peripherals_online) == ["GW1/P1"]
    assert zall(redis_db, keys, lambda p: keys.peripherals_of_gw("G", p)) == ["GW1/P1", "GW1/P2"]
    assert json.loads(redis_db.hget(keys.peripheral("GW1", "P1"), "msg")) == {"t": 1}
    post(ingest, disconnected("GW1", 1000, 3_000_000, reason="keepalive_timeout"))
    assert len(zall(redis_db, keys, keys.peripherals_online)) == 0
    assert redis_db.hget(keys.peripheral("GW1", "P1"), "online") == "0"


def test_base64_payload_marked_by_the_rule(ingest: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    raw = json.dumps({"sn": "SN7", "time": 1, "d": {"free": 9}}).encode()
    body = published("SN7", "dma/report/SN7/sys", base64.b64encode(raw).decode())
    body["payload_encoding"] = "base64"
    assert post(ingest, body).status_code == 200
    assert json.loads(redis_db.hget(keys.client("SN7"), "sys"))["d"] == {"free": 9}


def test_messages_published_by_the_rest_api_are_ignored(ingest: httpx.Client, redis_db: redis.Redis,
                                                        keys: Keys) -> None:
    body = published("http_api", "dma/report/http_api/sys", {"d": {}})
    body.update(username="undefined", peerhost="undefined")
    assert post(ingest, body).status_code == 200
    assert redis_db.exists(keys.client("http_api")) == 0


def test_emqx4_bodies(ingest: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    body = json.loads((SHARED / "emqx4-webhook" / "client_connected.json").read_text())
    assert post(ingest, body).status_code == 200
    assert redis_db.hget(keys.client("device-001"), "online") == "1"
    off = json.loads((SHARED / "emqx4-webhook" / "client_disconnected.json").read_text())
    off["reason"] = "takeovered"
    assert post(ingest, off).status_code == 200
    assert redis_db.hget(keys.client("device-001"), "online") == "1"


def test_unknown_event_is_200_counted_no_state(ingest: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    r = post(ingest, sample("client_connack"))
    assert r.status_code == 200 and r.json()["data"]["event"] == "unknown"
    wait_for(lambda: redis_db.hget(keys.metrics(), 'ingest_events_total{type="unknown"}') == "1", what="count")
    assert redis_db.keys(keys.client("*")) == []


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"event": "client.connected"}',
                                  b'{"event": "client.connected", "clientid": "x", "connected_at": "soon"}'])
def test_malformed_bodies_are_400_counted_no_state(ingest: httpx.Client, redis_db: redis.Redis, body: bytes,
                                                   keys: Keys) -> None:
    assert_err(ingest.post("/emqx/events", content=body), 400, "invalid_params")
    wait_for(lambda: redis_db.hget(keys.metrics(), 'ingest_rejected_total{reason="malformed"}') == "1",
             what="count")
    assert redis_db.keys(keys.client("*")) == []


@pytest.mark.parametrize("clientid", ["a\x00b", "x" * 900_000, "é" * 32_768])
@pytest.mark.parametrize("event", ["connected", "published"])
def test_a_clientid_with_nul_or_over_65535_bytes_is_a_400_counted(ingest: httpx.Client, redis_db: redis.Redis,
                                                                  clientid: str, event: str, keys: Keys) -> None:
    """No client of EMQX can have it (MQTT strings stop at 65535 bytes; NUL is no character of a key or a topic):
    refused by name, counted under its own reason, nothing written (docs/ingest.md)."""
    body = connected(clientid, 1000) if event == "connected" else published(clientid, "any/topic", {"a": 1})
    body["username"] = "u"  # the body stays under ADAPTER_MAX_BODY_BYTES (1 MiB)
    msg = assert_err(post(ingest, body), 400, "invalid_params")["msg"]
    assert msg.startswith("clientid: ") and len(msg) < 80
    wait_for(lambda: redis_db.hget(keys.metrics(), 'ingest_rejected_total{reason="bad_clientid"}') == "1",
             what="count")
    assert zall(redis_db, keys, keys.devices) == [] and redis_db.exists(keys.client(clientid)) == 0


def test_a_clientid_of_65535_bytes_is_taken(ingest: httpx.Client, redis_db: redis.Redis, keys: Keys) -> None:
    clientid = "é" * 32_767 + "a"
    assert post(ingest, connected(clientid, 1000)).status_code == 200
    assert redis_db.hget(keys.client(clientid), "online") == "1"


@pytest.mark.single_redis  # it starts a redis-server of its own, then stops it
def test_redis_unavailable_is_503(settings: Settings, keys: Keys) -> None:
    """EMQX retries 503 (and drops 500): a stopped Redis must answer 503, and state written before stays."""
    with faulty_redis() as own:
        s = settings.with_overrides(redis_url=own.url)
        with serve_api(s) as url, httpx.Client(base_url=url, headers=AUTH) as c:
            assert post(c, connected("SN8", 1000)).status_code == 200
            with own.down():
                assert_err(post(c, connected("SN9", 2000)), 503, "unavailable")
            # started again on its AOF, without the scripts: the ingest loads them again by itself
            assert post(c, connected("SN9", 2000)).status_code == 200
            assert own.client.hget(keys.client("SN9"), "online") == "1"
            assert own.client.hget(keys.client("SN8"), "online") == "1"


def test_samples_are_not_mutated() -> None:
    a = sample("client_connected")
    b = copy.deepcopy(a)
    sample("client_connected", clientid="zzz")
    assert a == b


def test_a_heartbeat_wakes_the_devices_waiting_commands(client: httpx.Client, redis_db: redis.Redis,
                                                        keys: Keys) -> None:
    """A command for an offline device waits; the device's heartbeat (or subscription) makes it due."""
    from tests.conftest import login

    admin = {"Authorization": f"Bearer {login(client)}"}
    r = client.post("/iot/api/v1/remotectl/commands", headers=admin,
                    json={"to": [{"sn": "WAKE1"}], "command": "sh", "body": {"shcmd": "uptime"}, "publishNow": False})
    assert r.status_code == 200, r.text
    cid = r.json()["data"]["to"][0]["idStr"]
    assert redis_db.zscore(keys.commands_due(keys.shard("WAKE1")), cid) is None  # offline: it waits
    heartbeat = published("WAKE1", "dma/report/WAKE1/heartbeat", {"sn": "WAKE1", "time": 1, "dur": 5})
    assert client.post("/emqx/events", headers=AUTH, content=json.dumps(heartbeat)).status_code == 200
    assert redis_db.zscore(keys.commands_due(keys.shard("WAKE1")), cid) is not None


def test_the_declared_endpoint_answers_as_the_fast_path(settings: Settings, redis_db: redis.Redis, keys: Keys) -> None:
    """`App.__call__` answers `POST /emqx/events` before the router; the declared Endpoint behind it (what the
    OpenAPI document describes) must answer the same: reached here through Starlette's own `__call__`."""
    app = create_app(settings)

    async def through_the_router(scope: Any, receive: Any, send: Any) -> None:
        await Starlette.__call__(app, scope, receive, send)

    body = published("SN9", "dma/report/SN9/sys", {"sn": "SN9", "time": 3, "d": {"free": 1}})
    answers = []
    for served in (app, through_the_router):
        flush_store(redis_db, settings.key_prefix)
        with serve(served) as url, httpx.Client(base_url=url) as c:
            assert_err(c.post("/emqx/events", json=body), 401, "unauthorized")
            assert_err(c.post("/emqx/events", content=b"{", headers=AUTH), 400, "invalid_params")
            r = c.post("/emqx/events", json=body, headers=AUTH)
            assert r.status_code == 200, r.text
            answers.append((r.json(), redis_db.hgetall(keys.client("SN9"))))
    assert answers[0] == answers[1]
    assert answers[0][0] == {"status": "ok", "data": {"event": "message.publish"}}
    assert json.loads(answers[0][1]["sys"])["d"] == {"free": 1}
