"""`POST /api/v5/publish` and `/publish/bulk`: request validation and result codes, as pure functions.

Mirrors `emqx_mgmt_api_publish.erl` (v5.8): schema errors -> 400 `{"code":"BAD_REQUEST"}`; a topic
that is not a valid name -> 400 reason_code 144; bad base64 -> 400 reason_code 131; more than
`max_packet_size` (1 MB) -> 400 reason_code 151. Delivered to at least one session (an offline
persistent one included) -> 200 `{"id"}`; no matching subscriber -> 202 reason_code 16.
A bulk request is validated whole before anything is published. `clientid` (deprecated) is ignored.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_PACKET_SIZE = 1024 * 1024
NO_SUBSCRIBERS: dict[str, Any] = {"reason_code": 16, "message": "no_matching_subscribers"}


class PublishError(Exception):
    def __init__(self, body: dict[str, Any], status: int = 400) -> None:
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = body


def bad_request(message: str) -> PublishError:
    return PublishError({"code": "BAD_REQUEST", "message": message})


@dataclass(frozen=True)
class PublishRequest:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


def is_topic_name(topic: str) -> bool:
    return bool(topic) and not any(c in topic for c in "+#\x00") and len(topic.encode()) <= 65535


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = body.get(name, default)
    if value is None and default is None:
        raise bad_request(f"{name}: required field missing")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad_request(f"{name}: bad type")
    return value


def _decode(payload: str, encoding: str) -> bytes:
    if encoding == "plain":
        return payload.encode("utf-8")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise PublishError({"reason_code": 131, "message": "decode_base64_payload_failed"}) from None


def parse_publish(body: Any) -> PublishRequest:
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    topic = _field(body, "topic", str, None)
    payload = _field(body, "payload", str, None)
    qos = _field(body, "qos", int, 0)
    if qos not in (0, 1, 2):
        raise bad_request("qos: must be 0, 1 or 2")
    retain = _field(body, "retain", bool, False)
    encoding = _field(body, "payload_encoding", str, "plain")
    if encoding not in ("plain", "base64"):
        raise bad_request("payload_encoding: must be plain or base64")
    _field(body, "properties", dict, {})
    if not is_topic_name(topic):
        raise PublishError({"reason_code": 144, "message": "topic_name_invalid"})
    data = _decode(payload, encoding)
    if len(data) + len(topic.encode()) > MAX_PACKET_SIZE:
        raise PublishError({"reason_code": 151, "message": "packet_too_large"})
    return PublishRequest(topic, data, qos, retain)


def parse_bulk(body: Any) -> list[PublishRequest]:
    if not isinstance(body, list):
        raise bad_request("request body must be a JSON array")
    if not body:
        raise bad_request("empty_batch")
    return [parse_publish(item) for item in body]


def publish_result(message_id: str, recipients: int) -> tuple[int, dict[str, Any]]:
    return (200, {"id": message_id}) if recipients else (202, dict(NO_SUBSCRIBERS))


def bulk_status(statuses: Sequence[int]) -> int:
    return 202 if any(s == 202 for s in statuses) else 200
