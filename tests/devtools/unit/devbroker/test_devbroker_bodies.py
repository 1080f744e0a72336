"""The event body builders, held against EMQX's samples (field set, JSON types, units)."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from adapter_devtools.devbroker import events
from adapter_devtools.devbroker.model import API_CLIENTID, ConnInfo, Origin
from tests.devtools.unit.devbroker.shapes import sample, shape_difference

STAMP = events.Stamp("devbroker@127.0.0.1", 1717000000123)
CONN = ConnInfo(clientid="device-001", username="device-001", peerhost="10.0.3.17", peerport=52344,
                sockhost="172.17.0.2", sockport=1883, keepalive=60, clean_start=True,
                connected_at=1717000000118, expiry_interval=0)
ANONYMOUS = ConnInfo(clientid="device-002", username=None, peerhost="10.0.3.18", peerport=40000,
                     sockhost="127.0.0.1", sockport=1883, keepalive=30, clean_start=False,
                     connected_at=1717000000000, expiry_interval=7200)
UPLINK = Origin(id="00061A4C2B1E5F3AF4420000030F0001", clientid="device-001", username="device-001",
                peerhost="10.0.3.17", peername="10.0.3.17:52344", topic="devices/device-001/up/telemetry",
                payload=b'{"temp":21.5,"hum":40}', qos=1, retain=False, dup=False, received_at=1717000000122)
DOWNLINK = Origin(id="00061A4C2B1E5F3AF4420000030F0003", clientid=API_CLIENTID, username=None, peerhost=None,
                  peername=None, topic="devices/device-001/down/cmd", payload=b'{"cmd":"reboot"}', qos=1,
                  retain=False, dup=False, received_at=1717000000083)

BUILT = {
    "client_connected": events.connected(CONN, STAMP),
    "client_disconnected": events.disconnected(replace(CONN, connected_at=1716999400123), "keepalive_timeout",
                                               1717000000121, STAMP),
    "session_subscribed": events.subscribed(CONN, "devices/device-001/down/#", 1, STAMP),
    "session_unsubscribed": events.unsubscribed(CONN, "devices/device-001/down/#", 1, STAMP),
    "message_publish": events.publish(UPLINK, STAMP),
    "message_acked": events.acked(DOWNLINK, CONN, 1, {"dup": False, "retain": False}, STAMP),
}


@pytest.mark.parametrize("name", sorted(BUILT))
def test_body_has_the_sample_shape(name: str) -> None:
    assert shape_difference(BUILT[name], sample(name)) == []


@pytest.mark.parametrize("name", sorted(BUILT))
def test_body_agrees_with_the_sample_on_shared_values(name: str) -> None:
    reference = sample(name)
    same = ("event", "timestamp", "clientid", "username", "peername", "peerhost", "sockname", "topic", "qos",
            "connected_at", "disconnected_at", "reason", "id", "payload", "flags", "from_clientid",
            "from_username", "client_attrs", "keepalive", "clean_start", "metadata", "publish_received_at")
    expected = {k: reference[k] for k in same if k in reference}
    assert {k: BUILT[name][k] for k in expected} == expected


def test_undefined_values_are_the_string_undefined() -> None:
    connected = events.connected(ANONYMOUS, STAMP)
    assert connected["username"] == "undefined" and connected["mountpoint"] == "undefined"
    assert connected["expiry_interval"] == 7200 and connected["clean_start"] is False
    acked = events.acked(DOWNLINK, ANONYMOUS, 1, {"dup": False, "retain": False}, STAMP)
    assert acked["from_username"] == "undefined" and acked["username"] == "undefined"


def test_mqtt311_bodies_carry_empty_user_properties() -> None:
    for body in BUILT.values():
        for key in (k for k in body if k.endswith("_props")):
            assert body[key] == {"User-Property": {}}
    assert BUILT["client_connected"]["proto_ver"] == 4


def test_payload_is_text_or_base64_with_a_marker() -> None:
    assert events.payload_columns(b'{"a":1}') == {"payload": '{"a":1}'}
    assert events.payload_columns("ü".encode()) == {"payload": "ü"}
    binary = events.payload_columns(b"\x80\xff")
    assert binary == {"payload": base64.b64encode(b"\x80\xff").decode(), "payload_encoding": "base64"}
    assert events.payload_columns(b"") == {"payload": ""}


def test_acked_payload_replaces_bad_bytes_as_jiffy_does() -> None:
    origin = Origin(id="0" * 32, clientid=API_CLIENTID, username=None, peerhost=None, peername=None, topic="t",
                    payload=b"ok\xff", qos=1, retain=False, dup=False, received_at=1)
    assert events.acked(origin, CONN, 1, {"dup": False, "retain": False}, STAMP)["payload"] == "ok\ufffd"


def test_rule_ids_follow_the_rules_that_select_each_event() -> None:
    assert {body["event"]: body["metadata"]["rule_id"] for body in BUILT.values()} == events.RULE_IDS
