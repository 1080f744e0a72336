"""The dev broker's EMQX REST subset over real HTTP, with real MQTT clients behind it."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import datetime

import httpx
import pytest

from tests.devtools.integration.devbroker.harness import Device, Receiver, RunningBroker, raw_client, wait_for

NO_SUBSCRIBERS = {"reason_code": 16, "message": "no_matching_subscribers"}


def test_status_needs_no_credentials(broker: RunningBroker) -> None:
    with broker.api(auth=None) as anonymous:
        text = anonymous.get("/api/v5/status")
        as_json = anonymous.get("/api/v5/status", params={"format": "json"})
    assert text.status_code == 200 and "is running" in text.text
    assert as_json.json()["broker_status"] == "started"


@pytest.mark.parametrize("path", ["/api/v5/nodes", "/api/v5/clients", "/api/v5/metrics", "/devbroker/stats"])
def test_everything_else_needs_the_api_key(broker: RunningBroker, path: str) -> None:
    with broker.api(auth=None) as anonymous:
        missing = anonymous.get(path)
        bearer = anonymous.get(path, headers={"Authorization": "Bearer whatever"})
    with broker.api(auth=("test-key", "wrong")) as wrong:
        bad_secret = wrong.get(path)
    assert missing.status_code == bearer.status_code == bad_secret.status_code == 401
    assert missing.json() == {"code": "AUTHORIZATION_HEADER_ERROR", "message": "Support authorization: basic/bearer "}
    assert missing.headers["www-authenticate"] == 'Basic Realm="emqx-dashboard"'
    assert bad_secret.json()["code"] == "BAD_API_KEY_OR_SECRET"


def test_without_a_configured_key_the_api_is_open(make_broker: Callable[..., RunningBroker]) -> None:
    broker = make_broker(api_key=None, api_secret=None)
    with broker.api(auth=None) as anonymous:
        assert anonymous.get("/api/v5/nodes").status_code == 200


def test_publish_without_subscribers_is_202(api: httpx.Client) -> None:
    r = api.post("/api/v5/publish", json={"topic": "dma/cmd/nobody", "payload": "x", "qos": 1})
    assert (r.status_code, r.json()) == (202, NO_SUBSCRIBERS)


@pytest.mark.parametrize(("body", "expected"), [
    ({"topic": "dma/cmd/+", "payload": "x"}, {"reason_code": 144, "message": "topic_name_invalid"}),
    ({"topic": "dma/#", "payload": "x"}, {"reason_code": 144, "message": "topic_name_invalid"}),
    ({"topic": "t", "payload": "%%%", "payload_encoding": "base64"}, {"reason_code": 131}),
    ({"topic": "t"}, {"code": "BAD_REQUEST"}),
    ({"payload": "x"}, {"code": "BAD_REQUEST"}),
    ({"topic": "t", "payload": "x", "qos": 3}, {"code": "BAD_REQUEST"}),
    ({"topic": "t", "payload": "x", "payload_encoding": "hex"}, {"code": "BAD_REQUEST"}),
])
def test_publish_rejects_bad_requests_as_emqx_does(api: httpx.Client, body: dict[str, object],
                                                   expected: dict[str, object]) -> None:
    r = api.post("/api/v5/publish", json=body)
    assert r.status_code == 400
    assert expected.items() <= r.json().items()
    assert isinstance(r.json()["message"], str)


def test_publish_decodes_base64_and_keeps_retained_messages(api: httpx.Client,
                                                             devices: Callable[..., Device]) -> None:
    payload = base64.b64encode(b"\x00\x01binary").decode()
    r = api.post("/api/v5/publish", json={"topic": "dma/cfg/all", "payload": payload,
                                          "payload_encoding": "base64", "qos": 1, "retain": True})
    assert r.status_code == 202
    device = devices("dev-late")
    device.subscribe("dma/cfg/#", qos=1)
    wait_for(lambda: device.messages, what="the retained message")
    assert device.messages[0].payload == b"\x00\x01binary"
    assert device.messages[0].retain is True


def test_bulk_publish_reports_each_message(api: httpx.Client, devices: Callable[..., Device]) -> None:
    device = devices("dev-bulk")
    device.subscribe("dma/cmd/dev-bulk", qos=1)
    mixed = api.post("/api/v5/publish/bulk", json=[{"topic": "dma/cmd/dev-bulk", "payload": "1", "qos": 1},
                                                   {"topic": "dma/cmd/none", "payload": "2"}])
    assert mixed.status_code == 202
    first, second = mixed.json()
    assert re.fullmatch(r"[0-9A-F]{32}", first["id"]) and second == NO_SUBSCRIBERS
    all_ok = api.post("/api/v5/publish/bulk", json=[{"topic": "dma/cmd/dev-bulk", "payload": "3"}])
    assert all_ok.status_code == 200 and set(all_ok.json()[0]) == {"id"}
    wait_for(lambda: len(device.messages) == 2, what="two deliveries")

    invalid = api.post("/api/v5/publish/bulk", json=[{"topic": "dma/cmd/dev-bulk", "payload": "4"},
                                                     {"topic": "bad/#", "payload": "5"}])
    assert invalid.status_code == 400 and invalid.json()["reason_code"] == 144
    assert api.post("/api/v5/publish/bulk", json=[]).status_code == 400
    assert [m.payload for m in device.messages] == [b"1", b"3"]


def test_nodes_stats_and_metrics(broker: RunningBroker, api: httpx.Client, devices: Callable[..., Device]) -> None:
    device = devices("dev-stats")
    device.subscribe("dma/cmd/dev-stats", qos=1)
    [node] = api.get("/api/v5/nodes").json()
    assert node["node"] == "devbroker@127.0.0.1" and node["node_status"] == "running"
    assert node["live_connections"] == 1

    [per_node] = api.get("/api/v5/stats").json()
    aggregate = api.get("/api/v5/stats", params={"aggregate": "true"}).json()
    assert per_node["node"] == "devbroker@127.0.0.1" and "node" not in aggregate
    assert aggregate["live_connections.count"] == 1 and aggregate["subscriptions.count"] == 1
    assert aggregate["live_connections.max"] >= 1

    [metrics] = api.get("/api/v5/metrics").json()
    totals = api.get("/api/v5/metrics", params={"aggregate": "true"}).json()
    assert metrics["node"] == "devbroker@127.0.0.1"
    assert totals["client.connected"] == 1 and totals["client.subscribe"] == 1
    assert totals["bytes.received"] > 0


def test_clients_list_pages_and_filters(broker: RunningBroker, api: httpx.Client,
                                        devices: Callable[..., Device], receiver: Receiver) -> None:
    for name in ("dev-a", "dev-b", "dev-c"):
        devices(name, username=f"user-{name}")
    away = Device(broker.mqtt_port, "dev-d", clean_session=False)
    away.close()
    receiver.wait("client.disconnected", "dev-d")

    first = api.get("/api/v5/clients", params={"limit": 2}).json()
    second = api.get("/api/v5/clients", params={"limit": 2, "page": 2}).json()
    assert [c["clientid"] for c in first["data"] + second["data"]] == ["dev-a", "dev-b", "dev-c", "dev-d"]
    assert first["meta"] == {"page": 1, "limit": 2, "count": 4, "hasnext": True}
    assert second["meta"]["hasnext"] is False

    picked = api.get("/api/v5/clients", params=[("clientid", "dev-a"), ("clientid", "dev-c")]).json()
    assert [c["clientid"] for c in picked["data"]] == ["dev-a", "dev-c"]
    offline = api.get("/api/v5/clients", params={"conn_state": "disconnected"}).json()["data"]
    assert [c["clientid"] for c in offline] == ["dev-d"] and offline[0]["connected"] is False
    fuzzy = api.get("/api/v5/clients", params={"like_clientid": "dev-"}).json()
    assert "count" not in fuzzy["meta"]

    one = api.get("/api/v5/clients/dev-b").json()
    assert one["username"] == "user-dev-b" and one["connected"] is True and one["proto_ver"] == 4
    assert datetime.fromisoformat(one["connected_at"]).tzinfo is not None
    assert "disconnected_at" not in one
    assert api.get("/api/v5/clients/nobody").status_code == 404
    assert api.get("/api/v5/clients", params={"limit": 0}).json()["code"] == "INVALID_PARAMETER"


def test_kicking_an_offline_persistent_session_removes_it(broker: RunningBroker, api: httpx.Client,
                                                          receiver: Receiver) -> None:
    with raw_client(broker.mqtt_port, "dev-gone", clean=False):
        receiver.wait("client.connected", "dev-gone")
    receiver.wait("client.disconnected", "dev-gone")
    assert api.get("/api/v5/clients/dev-gone").json()["connected"] is False
    assert api.delete("/api/v5/clients/dev-gone").status_code == 204
    assert api.get("/api/v5/clients/dev-gone").status_code == 404
    assert len(receiver.events("client.disconnected", "dev-gone")) == 1


def test_devbroker_stats_count_deliveries(broker: RunningBroker, receiver: Receiver) -> None:
    with raw_client(broker.mqtt_port, "dev-counted"):
        receiver.wait("client.connected", "dev-counted")
    receiver.wait("client.disconnected", "dev-counted")
    stats = wait_for(lambda: (s := broker.dev_stats())["events.posted"] == 2 and s, what="two posted events")
    assert stats["connects"] == 1 and stats["events.pending"] == 0
    assert stats["ingest_url"] == receiver.url
