"""`/api/v5/publish` request validation and result codes (pure)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from adapter_devtools.devbroker.publish import (
    MAX_PACKET_SIZE,
    PublishError,
    PublishRequest,
    bulk_status,
    is_topic_name,
    parse_bulk,
    parse_publish,
    publish_result,
)


def error_of(body: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(PublishError) as caught:
        parse_publish(body)
    return caught.value.status, caught.value.body


def test_defaults_and_plain_payload() -> None:
    assert parse_publish({"topic": "a/b", "payload": "hé"}) == PublishRequest("a/b", "hé".encode(), 0, False)


def test_base64_payload_and_options() -> None:
    body = {"topic": "t", "payload": base64.b64encode(b"\x00\xff").decode(), "payload_encoding": "base64",
            "qos": 2, "retain": True, "clientid": "ignored", "properties": {"message_expiry_interval": 60}}
    assert parse_publish(body) == PublishRequest("t", b"\x00\xff", 2, True)


@pytest.mark.parametrize("body", [
    None, [], "x", {"payload": "x"}, {"topic": "t"}, {"topic": 1, "payload": "x"}, {"topic": "t", "payload": 1},
    {"topic": "t", "payload": "x", "qos": 3}, {"topic": "t", "payload": "x", "qos": True},
    {"topic": "t", "payload": "x", "qos": "1"}, {"topic": "t", "payload": "x", "retain": "yes"},
    {"topic": "t", "payload": "x", "payload_encoding": "hex"}, {"topic": "t", "payload": "x", "properties": []},
])
def test_schema_errors_are_bad_request(body: Any) -> None:
    status, error = error_of(body)
    assert status == 400 and error["code"] == "BAD_REQUEST" and isinstance(error["message"], str)


@pytest.mark.parametrize("topic", ["", "a/+", "#", "a/#", "a\x00b"])
def test_topic_must_be_a_name(topic: str) -> None:
    assert error_of({"topic": topic, "payload": "x"}) == (400, {"reason_code": 144, "message": "topic_name_invalid"})


def test_topic_names_may_start_with_dollar() -> None:
    assert is_topic_name("$SYS/x") and is_topic_name("a//b") and not is_topic_name("a/+/b")


def test_bad_base64_is_131() -> None:
    status, error = error_of({"topic": "t", "payload": "not base64!", "payload_encoding": "base64"})
    assert status == 400 and error["reason_code"] == 131


def test_too_large_is_151() -> None:
    status, error = error_of({"topic": "t", "payload": "x" * MAX_PACKET_SIZE})
    assert (status, error["reason_code"]) == (400, 151)


def test_bulk_is_validated_whole() -> None:
    good = {"topic": "t", "payload": "x"}
    assert parse_bulk([good, good]) == [PublishRequest("t", b"x")] * 2
    with pytest.raises(PublishError) as caught:
        parse_bulk([good, {"topic": "t/#", "payload": "x"}])
    assert caught.value.body["reason_code"] == 144
    bodies: list[Any] = [[], {"topic": "t", "payload": "x"}]
    for body in bodies:
        with pytest.raises(PublishError) as caught:
            parse_bulk(body)
        assert caught.value.body["code"] == "BAD_REQUEST"


def test_result_codes() -> None:
    assert publish_result("ID", 1) == (200, {"id": "ID"})
    assert publish_result("ID", 0) == (202, {"reason_code": 16, "message": "no_matching_subscribers"})
    assert bulk_status([200, 200]) == 200
    assert bulk_status([200, 202]) == 202
