"""Contract: the dev broker's events and REST responses have EMQX's recorded shapes.

Every event type the dev broker posts is held against its sample in `shared/emqx/events/*.json`
(same field set, same JSON types, same nested keys), and every REST response against
`shared/emqx/rest-api.md` (field lists and bodies parsed from the document). Any difference fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.devtools.integration.devbroker.harness import Body, Device, Receiver, RunningBroker, raw_client, receiving
from tests.devtools.unit.devbroker.shapes import json_type, sample, shape_difference

RFC3339_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}([+-]\d\d:\d\d|Z)")
GUID = re.compile(r"[0-9A-F]{32}")

# Value types of EMQX's own `/clients` example (`client_example/0`, emqx_mgmt_api_clients.erl) for the
# fields whose type rest-api.md does not spell out.
CLIENT_TYPES = {
    "clientid": "string", "node": "string", "connected": "boolean", "ip_address": "string",
    "port": "integer", "peerport": "integer", "listener": "string", "proto_name": "string",
    "proto_ver": "integer", "clean_start": "boolean", "keepalive": "integer", "expiry_interval": "integer",
    "is_bridge": "boolean", "is_persistent": "boolean", "durable": "boolean", "is_expired": "boolean",
    "enable_authn": "boolean", "client_attrs": "object", "subscriptions_max": "string",
}


# -- the reference material --------------------------------------------------------------------------


def rest_doc(shared: Path) -> str:
    return (shared / "rest-api.md").read_text()


def doc_list(doc: str, after: str) -> list[str]:
    """The comma-separated names in the first `…` span after the text `after`."""
    start = doc.index(after)
    span = re.search(r"`([^`]+)`", doc[start + len(after):], re.S)
    assert span is not None
    return [item.strip() for item in span.group(1).replace("\n", " ").split(",") if item.strip()]


def doc_json(doc: str, marker: str) -> Any:
    """The JSON object right after `marker` in the document."""
    start = doc.index(marker) + len(marker)
    value, _ = json.JSONDecoder().raw_decode(doc[start:].lstrip().lstrip("`"))
    return value


def client_fields(doc: str) -> set[str]:
    names = set()
    for item in doc_list(doc, "formatted by `format_channel_info/3`):"):
        name = re.sub(r"\s*\(.*?\)", "", item)
        if name.endswith(".qos0/1/2"):
            names |= {name[:-len("0/1/2")] + q for q in "012"}
        else:
            names.add(name)
    return names


def stat_keys(doc: str) -> set[str]:
    keys = set()
    for item in doc_list(doc, "Keys (`fields(aggregated_data)`):"):
        base, _, _ = item.partition(".count/.max")
        keys |= {f"{base}.count", f"{base}.max"}
    return keys


def metric_keys(doc: str) -> set[str]:
    keys = set()
    for item in doc_list(doc, "Keys are dotted strings, e.g.:"):
        if item == "..." or item.endswith(".*") or item.startswith("overload_protection"):
            continue  # elisions and wildcards in the document
        if " ... " in item:  # messages.qos0.received ... messages.qos2.sent
            keys |= {f"messages.qos{q}.{d}" for q in "012" for d in ("received", "sent")}
            continue
        keys.add(item.split(" ")[0])
    return keys


def nodes_example(doc: str) -> Body:
    section = doc[doc.index("## GET /api/v5/nodes"):]
    block = re.search(r"```json\n(.*?)```", section, re.S)
    assert block is not None
    example: list[Body] = json.loads(block.group(1))
    return example[0]


# -- the scenario ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded() -> Iterator[dict[str, Body]]:
    """One MQTT 3.1.1 device going through every event type the dev broker posts."""
    with receiving() as receiver:
        broker = RunningBroker.for_receiver(receiver)
        try:
            with broker.api() as api:
                yield record_all_events(broker, receiver, api)
        finally:
            broker.stop()


def record_all_events(broker: RunningBroker, receiver: Receiver, api: httpx.Client) -> dict[str, Body]:
    device = Device(broker.mqtt_port, "dev-contract", username="dev-contract")
    try:
        device.subscribe("dma/cmd/dev-contract", qos=1)
        device.publish("dma/report/dev-contract/sys", b'{"sn":"dev-contract"}', qos=1)
        device.publish("dma/report/dev-contract/raw", b"\xff\xfe", qos=0)
        assert api.post("/api/v5/publish", json={"topic": "dma/cmd/dev-contract", "payload": "{}",
                                                 "qos": 1}).status_code == 200
        receiver.wait("message.acked", "dev-contract")
        device.client.unsubscribe("dma/cmd/dev-contract")
        receiver.wait("session.unsubscribed", "dev-contract")
    finally:
        device.close()
    receiver.wait("client.disconnected", "dev-contract")
    text, binary = receiver.events("message.publish", "dev-contract")
    bodies = {b["event"]: b for b in receiver.events(clientid="dev-contract")}
    return {**bodies, "message.publish": text, "message.publish/binary": binary}


@pytest.mark.parametrize(("event", "sample_name"), [
    ("client.connected", "client_connected"),
    ("client.disconnected", "client_disconnected"),
    ("session.subscribed", "session_subscribed"),
    ("session.unsubscribed", "session_unsubscribed"),
    ("message.publish", "message_publish"),
    ("message.acked", "message_acked"),
])
def test_event_has_the_sample_shape(shared_emqx: Path, recorded: dict[str, Body], event: str,
                                    sample_name: str) -> None:
    ours = recorded[event]
    assert shape_difference(ours, sample(sample_name)) == []
    assert ours["event"] == event
    assert ours["node"] == "devbroker@127.0.0.1" and set(ours["metadata"]) == {"rule_id"}
    assert ours["timestamp"] > 10**12
    for key in ("connected_at", "disconnected_at", "publish_received_at"):
        if key in ours:
            assert 10**12 < ours[key] <= ours["timestamp"]
    if "id" in ours:
        assert GUID.fullmatch(ours["id"])


def test_mqtt311_specifics(recorded: dict[str, Body]) -> None:
    connected = recorded["client.connected"]
    assert connected["proto_ver"] == 4 and connected["proto_name"] == "MQTT"
    assert connected["mountpoint"] == "undefined" and connected["conn_props"] == {"User-Property": {}}
    assert connected["expiry_interval"] == 0 and connected["clean_start"] is True
    assert re.fullmatch(r"127\.0\.0\.1:\d+", connected["peername"])
    assert re.fullmatch(r"127\.0\.0\.1:\d+", connected["sockname"])
    assert recorded["message.publish"]["pub_props"] == {"User-Property": {}}
    assert recorded["message.publish"]["payload"] == '{"sn":"dev-contract"}'


def test_binary_publish_is_the_sample_shape_plus_payload_encoding(shared_emqx: Path,
                                                                  recorded: dict[str, Body]) -> None:
    ours = recorded["message.publish/binary"]
    assert shape_difference(ours, sample("message_publish"), frozenset({"payload_encoding"})) == []
    assert ours["payload_encoding"] == "base64"
    assert "payload_encoding" not in recorded["message.publish"]


def test_rest_auth_failure_is_the_documented_body(shared_emqx: Path, broker: RunningBroker) -> None:
    expected = doc_json(rest_doc(shared_emqx), "Anything else -> `401 ")
    with broker.api(auth=None) as anonymous:
        r = anonymous.get("/api/v5/clients")
    assert r.status_code == 401 and r.json() == expected


def test_rest_publish_bodies(shared_emqx: Path, api: httpx.Client, devices: Callable[..., Device]) -> None:
    doc = rest_doc(shared_emqx)
    device = devices("dev-rest")
    device.subscribe("dma/cmd/dev-rest", qos=1)
    ok = api.post("/api/v5/publish", json={"topic": "dma/cmd/dev-rest", "payload": "x"})
    assert ok.status_code == 200 and shape_difference(ok.json(), doc_json(doc, "| **200** | `")) == []
    assert GUID.fullmatch(ok.json()["id"])
    none = api.post("/api/v5/publish", json={"topic": "dma/cmd/none", "payload": "x"})
    assert (none.status_code, none.json()) == (202, doc_json(doc, "| **202** | `"))
    bad_topic = api.post("/api/v5/publish", json={"topic": "a/+", "payload": "x"})
    assert (bad_topic.status_code, bad_topic.json()) == (400, doc_json(doc, "| 400 | `"))
    bad_b64 = api.post("/api/v5/publish", json={"topic": "a", "payload": "!", "payload_encoding": "base64"})
    assert bad_b64.status_code == 400
    assert shape_difference(bad_b64.json(), {"reason_code": 131, "message": ""}) == []
    schema = api.post("/api/v5/publish", json={"topic": "a"})
    assert schema.status_code == 400 and shape_difference(schema.json(), {"code": "", "message": ""}) == []
    bulk = api.post("/api/v5/publish/bulk", json=[{"topic": "dma/cmd/dev-rest", "payload": "1"},
                                                  {"topic": "dma/cmd/none", "payload": "2"}])
    documented = doc_json(doc, "in request order:\n\n```json\n")
    assert bulk.status_code == 202
    assert [sorted(item) for item in bulk.json()] == [sorted(documented[0]), sorted(documented[2])]


def test_rest_clients_items_and_meta(shared_emqx: Path, broker: RunningBroker, api: httpx.Client,
                                     receiver: Receiver) -> None:
    fields = client_fields(rest_doc(shared_emqx))
    with raw_client(broker.mqtt_port, "dev-offline", clean=False):
        receiver.wait("client.connected", "dev-offline")
    receiver.wait("client.disconnected", "dev-offline")
    with raw_client(broker.mqtt_port, "dev-online"):
        page = api.get("/api/v5/clients").json()
    assert set(page) == {"data", "meta"} and set(page["meta"]) == {"page", "limit", "count", "hasnext"}
    rows = {row["clientid"]: row for row in page["data"]}
    assert set(rows["dev-offline"]) == fields
    assert set(rows["dev-online"]) == fields - {"disconnected_at"}
    for row in rows.values():
        assert {k: json_type(row[k]) for k in CLIENT_TYPES} == CLIENT_TYPES
        assert row["username"] is None and row["mountpoint"] is None
        assert all(RFC3339_MS.fullmatch(row[k]) for k in ("connected_at", "created_at", "disconnected_at") if k in row)
        numeric = fields - set(CLIENT_TYPES) - {"username", "mountpoint", "connected_at", "created_at",
                                                "disconnected_at"}
        assert {k: json_type(row[k]) for k in numeric & row.keys()} == dict.fromkeys(numeric & row.keys(), "integer")
    missing = api.get("/api/v5/clients/nobody")
    assert missing.json() == doc_json(rest_doc(shared_emqx), "200 -> single object as above; 404 ")


def test_rest_nodes_stats_metrics(shared_emqx: Path, api: httpx.Client) -> None:
    doc = rest_doc(shared_emqx)
    [node] = api.get("/api/v5/nodes").json()
    assert shape_difference(node, nodes_example(doc)) == []

    [per_node] = api.get("/api/v5/stats").json()
    aggregate = api.get("/api/v5/stats", params={"aggregate": "true"}).json()
    assert set(aggregate) == stat_keys(doc)
    assert set(per_node) == stat_keys(doc) | {"node", "durable_subscriptions.count"}
    assert all(json_type(v) == "integer" for k, v in per_node.items() if k != "node")

    [metrics] = api.get("/api/v5/metrics").json()
    totals = api.get("/api/v5/metrics", params={"aggregate": "true"}).json()
    assert set(totals) == metric_keys(doc)
    assert set(metrics) == metric_keys(doc) | {"node"}
    assert all(json_type(v) == "integer" and v >= 0 for v in totals.values())


def test_document_parsing_found_the_lists(shared_emqx: Path) -> None:
    doc = rest_doc(shared_emqx)
    assert {"clientid", "recv_msg.qos2", "disconnected_at", "reductions"} <= client_fields(doc)
    assert {"connections.count", "delayed.max"} <= stat_keys(doc)
    assert {"bytes.received", "messages.qos2.sent", "authentication.failure"} <= metric_keys(doc)
    assert len(client_fields(doc)) > 50 and len(metric_keys(doc)) > 50
