"""Pure parsing of EMQX ingest bodies into typed, frozen events.

Two dialects arrive on `POST /emqx/events`:
- EMQX 5 rule engine (HTTP action, `SELECT *`), discriminated by `event` (`client.connected`, ...);
- EMQX 4 `emqx_web_hook` plugin, discriminated by `action` (`client_connected`, ...).

Both become the same event classes. Quirks normalised here: the string `"undefined"` (5.x) and `null`
(4.x) mean "absent" (None); times stay integer milliseconds; `payload` is always the body's string, with
`encoding` "base64" when the body carries `"payload_encoding": "base64"` (our rule adds it when it
base64-encodes the payload), else "plain"; 4.x `takeovered` becomes `takenover`; 4.x `from_client_id`,
`ts` and `ipaddress` map to the 5.x names. Event types the service does not use parse to `Unknown`.
A body that is not usable raises `AppError("invalid_params", "<field>: <what is wrong>")`; one whose client id
(`clientid`, `from_clientid`, 4.x `from_client_id`) holds NUL or is over MAX_CLIENTID_BYTES raises its subclass
`BadClientId`, counted under its own reason (a client id names the device's Redis keys and its MQTT topics).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from adapter.errors import AppError

Encoding = Literal["plain", "base64"]

UNDEFINED = "undefined"
REASON_ALIASES = {"takeovered": "takenover"}
SEEN_TTL = 600  # s an event is remembered as seen: longer than EMQX retries one (request_ttl, 45 s by default)
REST_API_CLIENT = "http_api"  # the clientid of messages published through EMQX's REST API (by this service)
MAX_CLIENTID_BYTES = 65535  # UTF-8: MQTT's longest string, and EMQX's default mqtt.max_clientid_len


@dataclass(frozen=True, slots=True)
class Connected:
    clientid: str
    connected_at: int
    username: str | None = None
    peername: str | None = None  # 5.x "ip:port"; 4.x only the ip (`ipaddress`)
    proto_ver: int | None = None
    keepalive: int | None = None
    clean_start: bool | None = None


@dataclass(frozen=True, slots=True)
class Disconnected:
    clientid: str
    disconnected_at: int
    reason: str
    connected_at: int | None = None  # sent by EMQX >= 5.8.6 and the 4.x plugin
    username: str | None = None


@dataclass(frozen=True, slots=True)
class Subscribed:
    clientid: str
    topic: str
    qos: int | None = None
    username: str | None = None
    at: int | None = None  # ms, EMQX's `timestamp` of the event (v5); the same on every redelivery


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    clientid: str
    topic: str
    username: str | None = None


@dataclass(frozen=True, slots=True)
class MessagePublished:
    id: str  # EMQX's message id; derived by `derive_message_id` for 4.x bodies
    clientid: str  # the publisher; "http_api" for messages published through EMQX's REST API
    topic: str
    payload: str
    encoding: Encoding
    qos: int
    retain: bool
    received_at: int  # ms, when the broker received the PUBLISH
    username: str | None = None
    peerhost: str | None = None


@dataclass(frozen=True, slots=True)
class MessageAcked:
    id: str
    clientid: str  # the receiver that acknowledged
    from_clientid: str
    topic: str
    payload: str
    encoding: Encoding
    qos: int
    received_at: int
    username: str | None = None
    from_username: str | None = None


@dataclass(frozen=True, slots=True)
class Unknown:
    name: str  # the body's `event` or `action` value


Message = MessagePublished | MessageAcked
Event = Connected | Disconnected | Subscribed | Unsubscribed | MessagePublished | MessageAcked | Unknown


def parse_event(body: object) -> Event:
    """Parse one ingest body (the decoded JSON) into an event; raise AppError on a malformed body."""
    if not isinstance(body, Mapping):
        raise _bad("body", "must be a JSON object")
    if "event" in body:
        parsers, name = V5_PARSERS, _Body(body).req_str("event")
    elif "action" in body:
        parsers, name = V4_PARSERS, _Body(body).req_str("action")
    else:
        raise _bad("event", "missing (neither `event` nor `action` present)")
    parser = parsers.get(name)
    return parser(_Body(body)) if parser else Unknown(name)


def event_key(ev: Event) -> str | None:
    """A stable idempotency key: the same EMQX event (redelivered) always gives the same key.

    None for events without an identity (subscriptions, unknown types): applying them is idempotent by
    effect, and a repeated subscribe after a reconnect is a real new event, not a duplicate.
    """
    match ev:
        case Connected():
            return f"conn:{ev.connected_at}:{ev.clientid}"
        case Disconnected(connected_at=int() as at):
            return f"disc:c{at}:{ev.clientid}"
        case Disconnected():
            return f"disc:d{ev.disconnected_at}:{ev.clientid}"
        case MessagePublished():
            return f"msg:{ev.id}"
        case MessageAcked():
            return f"ack:{ev.id}:{ev.clientid}"
    return None


def derive_message_id(clientid: str, ts: int, topic: str, payload: str) -> str:
    """An id for a 4.x message (which has none): 32 lower-case hex chars of a hash over its identity."""
    digest = hashlib.sha256(orjson.dumps([clientid, ts, topic, payload])).hexdigest()
    return digest[:32]


def payload_bytes(msg: Message) -> bytes:
    """The raw MQTT payload bytes of a message event."""
    if msg.encoding == "base64":
        return base64.b64decode(msg.payload, validate=True)
    return msg.payload.encode()


# --- field reading ---------------------------------------------------------------------------------


class BadClientId(AppError):
    """A client id no client of EMQX can have: 400, counted as `ingest_rejected_total{reason="bad_clientid"}`."""

    reason = "bad_clientid"

    def __init__(self, field: str, what: str) -> None:
        super().__init__("invalid_params", f"{field}: {what}")


def _bad(field: str, what: str) -> AppError:
    return AppError("invalid_params", f"{field}: {what}")


def _client_id(field: str, value: str) -> str:
    if "\x00" in value:
        raise BadClientId(field, "must not hold NUL")
    # a character is at most 4 bytes: only a long id needs encoding to count them
    if len(value) > MAX_CLIENTID_BYTES // 4 and len(value.encode("utf-8", "surrogatepass")) > MAX_CLIENTID_BYTES:
        raise BadClientId(field, f"must be at most {MAX_CLIENTID_BYTES} bytes of UTF-8")
    return value


class _Body:
    """Typed reads of one body's fields, raising `invalid_params` naming the field."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data

    def opt(self, field: str) -> Any:
        value = self.data.get(field)
        return None if value == UNDEFINED else value

    def req(self, field: str) -> Any:
        value = self.opt(field)
        if value is None:
            raise _bad(field, "missing")
        return value

    # the common, valid case first (this runs for every field of every event); errors take the slow path
    def req_str(self, field: str) -> str:
        value = self.data.get(field)
        if type(value) is str and value and value != UNDEFINED:
            return value
        return _as_str(field, self.req(field))

    def client_id(self, field: str = "clientid") -> str:
        return _client_id(field, self.req_str(field))

    def opt_str(self, field: str) -> str | None:
        value = self.data.get(field)
        if type(value) is str and value and value != UNDEFINED:
            return value
        value = self.opt(field)
        return None if value is None else _as_str(field, value)

    def req_int(self, field: str) -> int:
        value = self.data.get(field)
        if type(value) is int:
            return value
        return _as_int(field, self.req(field))

    def opt_int(self, field: str) -> int | None:
        value = self.opt(field)
        return None if value is None else _as_int(field, value)

    def opt_bool(self, field: str) -> bool | None:
        value = self.opt(field)
        if value is None or isinstance(value, bool):
            return value
        raise _bad(field, "must be a boolean")

    def opt_obj(self, field: str) -> _Body:
        value = self.opt(field)
        if value is None:
            return _Body({})
        if not isinstance(value, Mapping):
            raise _bad(field, "must be an object")
        return _Body(value)

    def qos(self, field: str = "qos") -> int:
        value = self.req_int(field)
        if value not in (0, 1, 2):
            raise _bad(field, "must be 0, 1 or 2")
        return value

    def payload(self) -> tuple[str, Encoding]:
        payload = self.data.get("payload")  # "undefined" may well be a real payload
        if not isinstance(payload, str):
            raise _bad("payload", "missing" if payload is None else "must be a string")
        encoding = self.opt_str("payload_encoding") or "plain"
        if encoding == "plain":
            return payload, "plain"
        if encoding != "base64":
            raise _bad("payload_encoding", "must be plain or base64")
        try:
            base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise _bad("payload", "not valid base64") from None
        return payload, "base64"


def _as_str(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise _bad(field, "must be a string")
    if not value:
        raise _bad(field, "must not be empty")
    return value


def _as_int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(field, "must be an integer")
    return value


def _reason(b: _Body) -> str:
    reason = b.req_str("reason")
    return REASON_ALIASES.get(reason, reason)


# --- EMQX 5 rule-engine bodies ---------------------------------------------------------------------


def _v5_connected(b: _Body) -> Connected:
    return Connected(
        clientid=b.client_id(), connected_at=b.req_int("connected_at"),
        username=b.opt_str("username"), peername=b.opt_str("peername"), proto_ver=b.opt_int("proto_ver"),
        keepalive=b.opt_int("keepalive"), clean_start=b.opt_bool("clean_start"),
    )


def _v5_disconnected(b: _Body) -> Disconnected:
    return Disconnected(
        clientid=b.client_id(), disconnected_at=b.req_int("disconnected_at"), reason=_reason(b),
        connected_at=b.opt_int("connected_at"), username=b.opt_str("username"),
    )


def _v5_subscribed(b: _Body) -> Subscribed:
    qos = b.qos() if b.opt("qos") is not None else None
    return Subscribed(clientid=b.client_id(), topic=b.req_str("topic"), qos=qos,
                      username=b.opt_str("username"), at=b.opt_int("timestamp"))


def _unsubscribed(b: _Body) -> Unsubscribed:
    return Unsubscribed(clientid=b.client_id(), topic=b.req_str("topic"),
                        username=b.opt_str("username"))


def _v5_publish(b: _Body) -> MessagePublished:
    payload, encoding = b.payload()
    return MessagePublished(
        id=b.req_str("id"), clientid=b.client_id(), topic=b.req_str("topic"),
        payload=payload, encoding=encoding, qos=b.qos(),
        retain=b.opt_obj("flags").opt_bool("retain") or False, received_at=b.req_int("publish_received_at"),
        username=b.opt_str("username"), peerhost=b.opt_str("peerhost"),
    )


def _v5_acked(b: _Body) -> MessageAcked:
    payload, encoding = b.payload()
    return MessageAcked(
        id=b.req_str("id"), clientid=b.client_id(), from_clientid=b.client_id("from_clientid"),
        topic=b.req_str("topic"), payload=payload, encoding=encoding, qos=b.qos(),
        received_at=b.req_int("publish_received_at"), username=b.opt_str("username"),
        from_username=b.opt_str("from_username"),
    )


V5_PARSERS: dict[str, Callable[[_Body], Event]] = {
    "client.connected": _v5_connected,
    "client.disconnected": _v5_disconnected,
    "session.subscribed": _v5_subscribed,
    "session.unsubscribed": _unsubscribed,
    "message.publish": _v5_publish,
    "message.acked": _v5_acked,
}


# --- EMQX 4 web_hook plugin bodies -----------------------------------------------------------------


def _v4_connected(b: _Body) -> Connected:
    return Connected(
        clientid=b.client_id(), connected_at=b.req_int("connected_at"),
        username=b.opt_str("username"), peername=b.opt_str("ipaddress"), proto_ver=b.opt_int("proto_ver"),
        keepalive=b.opt_int("keepalive"),
    )


def _v4_subscribed(b: _Body) -> Subscribed:
    opts = b.opt_obj("opts")
    qos = opts.qos() if opts.opt("qos") is not None else None
    return Subscribed(clientid=b.client_id(), topic=b.req_str("topic"), qos=qos,
                      username=b.opt_str("username"))


def _v4_message_id(b: _Body, clientid: str) -> str:
    payload, _ = b.payload()
    return derive_message_id(clientid, b.req_int("ts"), b.req_str("topic"), payload)


def _v4_publish(b: _Body) -> MessagePublished:
    payload, encoding = b.payload()
    clientid = b.client_id("from_client_id")
    return MessagePublished(
        id=_v4_message_id(b, clientid), clientid=clientid, topic=b.req_str("topic"),
        payload=payload, encoding=encoding, qos=b.qos(), retain=b.opt_bool("retain") or False,
        received_at=b.req_int("ts"), username=b.opt_str("from_username"),
    )


def _v4_acked(b: _Body) -> MessageAcked:
    payload, encoding = b.payload()
    from_clientid = b.client_id("from_client_id")
    return MessageAcked(
        id=_v4_message_id(b, from_clientid), clientid=b.client_id(), from_clientid=from_clientid,
        topic=b.req_str("topic"), payload=payload, encoding=encoding, qos=b.qos(),
        received_at=b.req_int("ts"), username=b.opt_str("username"),
        from_username=b.opt_str("from_username"),
    )


V4_PARSERS: dict[str, Callable[[_Body], Event]] = {
    "client_connected": _v4_connected,
    "client_disconnected": _v5_disconnected,  # same field names in the 4.x plugin
    "session_subscribed": _v4_subscribed,
    "session_unsubscribed": _unsubscribed,
    "message_publish": _v4_publish,
    "message_acked": _v4_acked,
}
