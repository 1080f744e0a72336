"""EMQX body parsing: the recorded samples, variants built by the rules in shared/emqx, malformed bodies."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from adapter.errors import AppError
from adapter.protocol.events import (
    BadClientId,
    Connected,
    Disconnected,
    MessageAcked,
    MessagePublished,
    Subscribed,
    Unknown,
    Unsubscribed,
    derive_message_id,
    event_key,
    parse_event,
    payload_bytes,
)

EMQX = Path(__file__).resolve().parents[2].parent / "shared" / "emqx"


def v5(name: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((EMQX / "events" / f"{name}.json").read_text())
    body.update(changes)
    return body


def v4(name: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((EMQX / "emqx4-webhook" / f"{name}.json").read_text())
    body.update(changes)
    return body


def without(body: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in fields}


def invalid_msg(body: object) -> str:
    with pytest.raises(AppError) as info:
        parse_event(body)
    assert info.value.code == "invalid_params"
    assert info.value.status == 400
    return info.value.msg


# --- EMQX 5 samples --------------------------------------------------------------------------------


def test_v5_connected_sample() -> None:
    assert parse_event(v5("client_connected")) == Connected(
        clientid="device-001", connected_at=1717000000118, username="device-001",
        peername="10.0.3.17:52344", proto_ver=5, keepalive=60, clean_start=True,
    )


def test_v5_connected_mqtt311_without_username() -> None:
    body = v5("client_connected", proto_ver=4, username="undefined", expiry_interval=0,
              conn_props={"User-Property": {}}, receive_maximum=32, clean_start=False)
    ev = parse_event(body)
    assert isinstance(ev, Connected)
    assert (ev.proto_ver, ev.username, ev.clean_start) == (4, None, False)


def test_v5_disconnected_sample() -> None:
    assert parse_event(v5("client_disconnected")) == Disconnected(
        clientid="device-001", disconnected_at=1717000000121, reason="keepalive_timeout",
        connected_at=1716999400123, username="device-001",
    )


def test_v5_disconnected_before_5_8_6_has_no_connected_at() -> None:
    ev = parse_event(without(v5("client_disconnected"), "connected_at"))
    assert isinstance(ev, Disconnected)
    assert ev.connected_at is None
    assert ev.disconnected_at == 1717000000121


@pytest.mark.parametrize("reason", ["takenover", "discarded", "tcp_closed", "normal", "kicked"])
def test_v5_disconnect_reasons_pass_through(reason: str) -> None:
    ev = parse_event(v5("client_disconnected", reason=reason))
    assert isinstance(ev, Disconnected)
    assert ev.reason == reason


def test_v5_subscribed_and_unsubscribed_samples() -> None:
    assert parse_event(v5("session_subscribed")) == Subscribed(
        clientid="device-001", topic="devices/device-001/down/#", qos=1, username="device-001",
        at=1717000000123)  # EMQX's `timestamp`: what a redelivery marks the device active at again
    assert parse_event(v5("session_unsubscribed")) == Unsubscribed(
        clientid="device-001", topic="devices/device-001/down/#", username="device-001")


def test_v5_publish_sample() -> None:
    ev = parse_event(v5("message_publish"))
    assert ev == MessagePublished(
        id="00061A4C2B1E5F3AF4420000030F0001", clientid="device-001",
        topic="devices/device-001/up/telemetry", payload='{"temp":21.5,"hum":40}', encoding="plain",
        qos=1, retain=False, received_at=1717000000122, username="device-001", peerhost="10.0.3.17",
    )
    assert isinstance(ev, MessagePublished)
    assert json.loads(payload_bytes(ev)) == {"temp": 21.5, "hum": 40}


def test_v5_publish_through_rest_api() -> None:
    body = without(v5("message_publish", clientid="http_api", username="undefined", peerhost="undefined",
                      peername="undefined", flags={"retain": True}), "client_attrs")
    ev = parse_event(body)
    assert isinstance(ev, MessagePublished)
    assert (ev.clientid, ev.username, ev.peerhost, ev.retain) == ("http_api", None, None, True)


def test_v5_publish_base64_payload_keeps_text_and_gives_bytes() -> None:
    raw = bytes([0, 0x80, 0xFF, 0x10]) + "é".encode()
    text = base64.b64encode(raw).decode()
    ev = parse_event(v5("message_publish", payload=text, payload_encoding="base64"))
    assert isinstance(ev, MessagePublished)
    assert (ev.payload, ev.encoding) == (text, "base64")
    assert payload_bytes(ev) == raw


def test_payload_undefined_string_is_a_real_payload() -> None:
    ev = parse_event(v5("message_publish", payload="undefined"))
    assert isinstance(ev, MessagePublished)
    assert ev.payload == "undefined"


def test_v5_publish_without_flags_is_not_retained() -> None:
    ev = parse_event(without(v5("message_publish"), "flags"))
    assert isinstance(ev, MessagePublished)
    assert ev.retain is False


def test_v5_acked_sample() -> None:
    assert parse_event(v5("message_acked")) == MessageAcked(
        id="00061A4C2B1E5F3AF4420000030F0003", clientid="device-001", from_clientid="http_api",
        topic="devices/device-001/down/cmd", payload='{"cmd":"reboot"}', encoding="plain", qos=1,
        received_at=1717000000083, username="device-001", from_username=None,
    )


@pytest.mark.parametrize("name", ["client_connack", "message_delivered"])
def test_v5_events_not_used_are_unknown(name: str) -> None:
    body = v5(name)
    assert parse_event(body) == Unknown(body["event"])


def test_unknown_event_needs_no_other_field() -> None:
    assert parse_event({"event": "alarm.activated"}) == Unknown("alarm.activated")


def test_events_are_frozen() -> None:
    ev = parse_event(v5("client_connected"))
    assert isinstance(ev, Connected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.clientid = "other"  # type: ignore[misc]


# --- EMQX 4 web_hook samples -----------------------------------------------------------------------


def test_v4_connected_sample() -> None:
    assert parse_event(v4("client_connected")) == Connected(
        clientid="device-001", connected_at=1717000000118, username="device-001", peername="10.0.3.17",
        proto_ver=4, keepalive=60,
    )


def test_v4_null_username_is_absent() -> None:
    ev = parse_event(v4("client_connected", username=None))
    assert isinstance(ev, Connected)
    assert ev.username is None


def test_v4_disconnected_sample_and_takeovered() -> None:
    assert parse_event(v4("client_disconnected")) == Disconnected(
        clientid="device-001", disconnected_at=1717000600042, reason="tcp_closed",
        connected_at=1717000000118, username="device-001",
    )
    ev = parse_event(v4("client_disconnected", reason="takeovered"))
    assert isinstance(ev, Disconnected)
    assert ev.reason == "takenover"


def test_v4_subscribed_sample_takes_qos_from_opts() -> None:
    assert parse_event(v4("session_subscribed")) == Subscribed(
        clientid="device-001", topic="devices/device-001/down/#", qos=1, username="device-001")


def test_v4_unsubscribed() -> None:
    body = {"action": "session_unsubscribed", "node": "emqx@127.0.0.1", "clientid": "device-001",
            "username": None, "topic": "devices/device-001/down/#"}
    assert parse_event(body) == Unsubscribed(clientid="device-001", topic="devices/device-001/down/#")


def test_v4_publish_sample_gets_a_derived_id() -> None:
    ev = parse_event(v4("message_publish"))
    assert isinstance(ev, MessagePublished)
    assert ev == MessagePublished(
        id=derive_message_id("device-001", 1717000000300, "devices/device-001/up/telemetry", '{"temp":21.5}'),
        clientid="device-001", topic="devices/device-001/up/telemetry", payload='{"temp":21.5}',
        encoding="plain", qos=1, retain=False, received_at=1717000000300, username="device-001",
    )
    assert len(ev.id) == 32
    assert int(ev.id, 16) >= 0


def test_v4_acked() -> None:
    body = {"action": "message_acked", "node": "emqx@127.0.0.1", "clientid": "device-001",
            "username": "device-001", "from_client_id": "console", "from_username": None,
            "topic": "dma/cmd/device-001", "qos": 1, "retain": False, "payload": "{}", "ts": 1717000000400}
    ev = parse_event(body)
    assert isinstance(ev, MessageAcked)
    assert (ev.clientid, ev.from_clientid, ev.from_username, ev.received_at) == (
        "device-001", "console", None, 1717000000400)
    assert ev.id == derive_message_id("console", 1717000000400, "dma/cmd/device-001", "{}")


@pytest.mark.parametrize("action", ["client_connect", "client_connack", "message_delivered",
                                    "session_terminated", "client_subscribe"])
def test_v4_actions_not_used_are_unknown(action: str) -> None:
    assert parse_event({"action": action, "clientid": "x"}) == Unknown(action)


# --- event keys -----------------------------------------------------------------------------------


def test_event_key_of_connects_and_disconnects() -> None:
    assert event_key(parse_event(v5("client_connected"))) == "conn:1717000000118:device-001"
    assert event_key(parse_event(v5("client_disconnected"))) == "disc:c1716999400123:device-001"
    old = parse_event(without(v5("client_disconnected"), "connected_at"))
    assert event_key(old) == "disc:d1717000000121:device-001"


def test_event_key_tells_a_disconnect_by_connected_at_from_one_by_time() -> None:
    by_connect = parse_event(v5("client_disconnected", connected_at=500, disconnected_at=900))
    by_time = parse_event(without(v5("client_disconnected", disconnected_at=500), "connected_at"))
    assert event_key(by_connect) != event_key(by_time)


def test_event_key_is_stable_for_redelivery_and_ignores_transport_fields() -> None:
    first = v5("message_publish")
    again = v5("message_publish", timestamp=first["timestamp"] + 5000, node="emqx@other")
    assert event_key(parse_event(first)) == event_key(parse_event(again)) == \
        "msg:00061A4C2B1E5F3AF4420000030F0001"
    assert event_key(parse_event(v5("message_acked"))) == "ack:00061A4C2B1E5F3AF4420000030F0003:device-001"


def test_event_key_of_v4_messages_depends_on_their_content() -> None:
    base = event_key(parse_event(v4("message_publish")))
    assert base == event_key(parse_event(v4("message_publish", node="emqx@other")))
    for change in ({"payload": "{}"}, {"ts": 1717000000301}, {"topic": "t/2"}, {"from_client_id": "d2"}):
        assert event_key(parse_event(v4("message_publish", **change))) != base


def test_event_key_none_for_events_without_identity() -> None:
    assert event_key(parse_event(v5("session_subscribed"))) is None
    assert event_key(parse_event(v5("session_unsubscribed"))) is None
    assert event_key(Unknown("client.connack")) is None


# --- malformed bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [[], "client.connected", None, 42])
def test_body_must_be_an_object(body: object) -> None:
    assert invalid_msg(body) == "body: must be a JSON object"


def test_body_needs_a_discriminator() -> None:
    assert invalid_msg({"clientid": "x"}).startswith("event: missing")
    assert invalid_msg({"event": 5}) == "event: must be a string"
    assert invalid_msg({"action": None}) == "action: missing"


@pytest.mark.parametrize(("body", "msg"), [
    (without(v5("client_connected"), "clientid"), "clientid: missing"),
    (v5("client_connected", clientid=17), "clientid: must be a string"),
    (v5("client_connected", clientid=""), "clientid: must not be empty"),
    (without(v5("client_connected"), "connected_at"), "connected_at: missing"),
    (v5("client_connected", connected_at="1717000000118"), "connected_at: must be an integer"),
    (v5("client_connected", connected_at=True), "connected_at: must be an integer"),
    (v5("client_connected", connected_at=1.5), "connected_at: must be an integer"),
    (v5("client_connected", clean_start="yes"), "clean_start: must be a boolean"),
    (v5("client_disconnected", connected_at="soon"), "connected_at: must be an integer"),
    (without(v5("client_disconnected"), "disconnected_at"), "disconnected_at: missing"),
    (without(v5("client_disconnected"), "reason"), "reason: missing"),
    (without(v5("session_subscribed"), "topic"), "topic: missing"),
    (v5("session_subscribed", qos=7), "qos: must be 0, 1 or 2"),
    (without(v5("message_publish"), "id"), "id: missing"),
    (without(v5("message_publish"), "payload"), "payload: missing"),
    (v5("message_publish", payload={"temp": 1}), "payload: must be a string"),
    (v5("message_publish", qos=3), "qos: must be 0, 1 or 2"),
    (v5("message_publish", flags=[]), "flags: must be an object"),
    (v5("message_publish", flags={"retain": "no"}), "retain: must be a boolean"),
    (without(v5("message_publish"), "publish_received_at"), "publish_received_at: missing"),
    (v5("message_publish", payload="not base64!", payload_encoding="base64"), "payload: not valid base64"),
    (v5("message_publish", payload_encoding="base62"), "payload_encoding: must be plain or base64"),
    (without(v5("message_acked"), "from_clientid"), "from_clientid: missing"),
    (without(v4("client_connected"), "connected_at"), "connected_at: missing"),
    (v4("client_connected", clientid=None), "clientid: missing"),
    (without(v4("message_publish"), "from_client_id"), "from_client_id: missing"),
    (without(v4("message_publish"), "ts"), "ts: missing"),
    (v4("message_publish", retain=1), "retain: must be a boolean"),
    (v4("session_subscribed", opts={"qos": "1"}), "qos: must be an integer"),
])
def test_malformed_fields_name_the_field(body: dict[str, Any], msg: str) -> None:
    assert invalid_msg(body) == msg


# --- client ids: at most 65535 bytes of UTF-8 (MQTT's and EMQX's longest), never NUL ---------------------------

LONGEST = "é" * 32767 + "a"  # 65535 bytes


@pytest.mark.parametrize(("body", "field"), [
    (v5("client_connected", clientid="a\x00b"), "clientid"),
    (v5("client_connected", clientid="x" * 900_000), "clientid"),
    (v5("client_connected", clientid=LONGEST + "a"), "clientid"),
    (v5("client_disconnected", clientid="\x00"), "clientid"),
    (v5("session_subscribed", clientid="a\x00"), "clientid"),
    (v5("session_unsubscribed", clientid="a\x00"), "clientid"),
    (v5("message_publish", clientid="a\x00"), "clientid"),
    (v5("message_acked", clientid="a\x00"), "clientid"),
    (v5("message_acked", from_clientid="a\x00"), "from_clientid"),
    (v4("client_connected", clientid="a\x00"), "clientid"),
    (v4("message_publish", from_client_id="é" * 40_000), "from_client_id"),
])
def test_a_clientid_with_nul_or_over_65535_bytes_is_refused_by_name(body: dict[str, Any], field: str) -> None:
    with pytest.raises(BadClientId) as info:
        parse_event(body)
    assert (info.value.code, info.value.status, info.value.reason) == ("invalid_params", 400, "bad_clientid")
    assert info.value.msg.startswith(f"{field}: ") and "\x00" not in info.value.msg and len(info.value.msg) < 80


def test_the_longest_clientid_is_taken() -> None:
    assert len(LONGEST.encode()) == 65535
    ev = parse_event(v5("client_connected", clientid=LONGEST))
    assert isinstance(ev, Connected) and ev.clientid == LONGEST
