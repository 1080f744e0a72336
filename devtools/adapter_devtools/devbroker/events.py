"""EMQX 5.8 rule-engine event bodies (`SELECT *` through the HTTP action), as pure functions.

Field names, JSON types and units follow `emqx_rule_events.erl` (`eventmsg_*`, `with_basic_columns/3`,
`printable_maps/1`) and the samples in `shared/emqx/events/`: times in ms, the string "undefined" for
absent values, `payload` a string, every `*_props` map holding `"User-Property": {}` (MQTT 3.1.1
clients carry no other properties), `metadata.rule_id` added by the rule runtime.

One deliberate addition: `message.publish` of a payload that is not valid UTF-8 carries the payload
base64-encoded plus `"payload_encoding": "base64"`, which is how our EMQX rule marks such payloads
(real EMQX would replace the bad bytes with U+FFFD).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from adapter_devtools.devbroker.model import ConnInfo, Origin

UNDEFINED = "undefined"

RULE_IDS: dict[str, str] = {
    "client.connected": "device_presence",
    "client.disconnected": "device_presence",
    "session.subscribed": "device_subs",
    "session.unsubscribed": "device_subs",
    "message.publish": "device_uplink",
    "message.acked": "device_delivery",
}

Body = dict[str, Any]


@dataclass(frozen=True)
class Stamp:
    """The basic columns of every event: where and when it was generated."""

    node: str
    timestamp: int


def _opt(value: str | None) -> str:
    return UNDEFINED if value is None else value


def no_props() -> dict[str, Any]:
    return {"User-Property": {}}


def _basic(event: str, stamp: Stamp, columns: Body) -> Body:
    return {**columns, "event": event, "timestamp": stamp.timestamp, "node": stamp.node,
            "metadata": {"rule_id": RULE_IDS[event]}}


def payload_columns(payload: bytes) -> Body:
    """`payload` as text; base64 plus `payload_encoding` when the bytes are not UTF-8."""
    try:
        return {"payload": payload.decode("utf-8")}
    except UnicodeDecodeError:
        return {"payload": base64.b64encode(payload).decode("ascii"), "payload_encoding": "base64"}


def connected(conn: ConnInfo, stamp: Stamp) -> Body:
    return _basic("client.connected", stamp, {
        "clientid": conn.clientid,
        "username": _opt(conn.username),
        "mountpoint": UNDEFINED,
        "peername": conn.peername,
        "sockname": conn.sockname,
        "proto_name": conn.proto_name,
        "proto_ver": conn.proto_ver,
        "keepalive": conn.keepalive,
        "clean_start": conn.clean_start,
        "receive_maximum": conn.receive_maximum,
        "expiry_interval": conn.expiry_interval,
        "is_bridge": False,
        "conn_props": no_props(),
        "connected_at": conn.connected_at,
        "client_attrs": {},
    })


def disconnected(conn: ConnInfo, reason: str, disconnected_at: int, stamp: Stamp) -> Body:
    return _basic("client.disconnected", stamp, {
        "reason": reason,
        "clientid": conn.clientid,
        "username": _opt(conn.username),
        "peername": conn.peername,
        "sockname": conn.sockname,
        "proto_name": conn.proto_name,
        "proto_ver": conn.proto_ver,
        "disconn_props": no_props(),
        "disconnected_at": disconnected_at,
        "connected_at": conn.connected_at,
        "client_attrs": {},
    })


def _sub_or_unsub(event: str, props_key: str, conn: ConnInfo, topic: str, qos: int, stamp: Stamp) -> Body:
    return _basic(event, stamp, {
        "clientid": conn.clientid,
        "username": _opt(conn.username),
        "peerhost": conn.peerhost,
        "peername": conn.peername,
        props_key: no_props(),
        "topic": topic,
        "qos": qos,
        "client_attrs": {},
    })


def subscribed(conn: ConnInfo, topic: str, qos: int, stamp: Stamp) -> Body:
    return _sub_or_unsub("session.subscribed", "sub_props", conn, topic, qos, stamp)


def unsubscribed(conn: ConnInfo, topic: str, qos: int, stamp: Stamp) -> Body:
    return _sub_or_unsub("session.unsubscribed", "unsub_props", conn, topic, qos, stamp)


def publish(origin: Origin, stamp: Stamp) -> Body:
    return _basic("message.publish", stamp, {
        "id": origin.id,
        "clientid": origin.clientid,
        "username": _opt(origin.username),
        **payload_columns(origin.payload),
        "peerhost": _opt(origin.peerhost),
        "peername": _opt(origin.peername),
        "topic": origin.topic,
        "qos": origin.qos,
        "flags": {"dup": origin.dup, "retain": origin.retain},
        "pub_props": no_props(),
        "publish_received_at": origin.received_at,
        "client_attrs": dict(origin.client_attrs),
    })


def acked(origin: Origin, receiver: ConnInfo, qos: int, flags: dict[str, bool], stamp: Stamp) -> Body:
    """A QoS 1/2 delivery to `receiver` that it acknowledged. The payload is text as jiffy's
    `force_utf8` leaves it (bad bytes become U+FFFD)."""
    return _basic("message.acked", stamp, {
        "id": origin.id,
        "from_clientid": origin.clientid,
        "from_username": _opt(origin.username),
        "clientid": receiver.clientid,
        "username": _opt(receiver.username),
        "payload": origin.payload.decode("utf-8", errors="replace"),
        "peerhost": receiver.peerhost,
        "peername": receiver.peername,
        "topic": origin.topic,
        "qos": qos,
        "flags": dict(flags),
        "pub_props": no_props(),
        "puback_props": no_props(),
        "publish_received_at": origin.received_at,
    })
