"""The pure rules of remote control: the POST body, the views, the downlink, answers and deliveries, and
what the ingest plans for them."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from adapter.commands.rules import (
    Claimed as ClaimedCommand,
)
from adapter.commands.rules import (
    CommandCalls,
    CommandResponse,
    Limits,
    answered_ok,
    downlink,
    parse_request,
    parse_response,
    view,
)
from adapter.devices.calls import DeviceCommands
from adapter.errors import AppError
from adapter.ingest.plan import plan
from adapter.protocol.events import MessageAcked, MessagePublished, Subscribed
from adapter.protocol.uplink import Rejected
from adapter.store.keys import Keys

LIMITS = Limits(max_targets=5, body_max_bytes=64, default_expires=600, max_expires=3600)
SEED = {"from": "iot_web_console", "to": [{"sn": "8CFCA0107D1B"}, {"sn": "6FSDA0108789"}], "command": "sh",
        "method": "", "body": {"shcmd": "whoami"}, "publishNow": True, "maxRetries": 3, "expires": 3600,
        "detached": True}
CID = 201811260000000001


def bad(body: dict[str, Any]) -> str:
    with pytest.raises(AppError) as caught:
        parse_request(body, LIMITS)
    assert caught.value.code == "invalid_params"
    return caught.value.msg


def test_the_seed_body() -> None:
    req = parse_request(SEED, LIMITS)
    assert req.sns == ("8CFCA0107D1B", "6FSDA0108789")
    assert (req.sender, req.command, req.method, req.publish_now) == ("iot_web_console", "sh", "", True)
    assert (req.max_retries, req.expires, req.detached) == (3, 3600, True)
    assert orjson.loads(req.body) == {"shcmd": "whoami"}


def test_defaults() -> None:
    req = parse_request({"to": [{"sn": "A"}], "command": "reboot"}, LIMITS)
    assert (req.sender, req.method, req.publish_now, req.max_retries, req.expires, req.detached) == \
        ("iot_web_console", "", True, 3, 600, False)
    assert req.body == b"{}"


@pytest.mark.parametrize("change, field", [
    ({"to": []}, "to:"), ({"to": None}, "to:"),
    ({"to": [{"sn": f"S{i}"} for i in range(6)]}, "at most 5"),
    ({"to": [{"sn": ""}]}, "to[0].sn"), ({"to": [{"sn": "A"}, {"no": 1}]}, "to[1].sn"),
    ({"to": [{"sn": "a/+"}]}, "to[0].sn"),
    ({"to": [{"sn": "A"}, {"sn": "B"}, {"sn": "A"}]}, "listed twice"),
    ({"method": "post"}, "method"), ({"maxRetries": -1}, "maxRetries: must be at least 0"),
    ({"expires": -5}, "expires: must be at least 1"), ({"expires": 0}, "expires"),
    ({"expires": 3601}, "expires: must be at most 3600"),
    ({"maxRetries": "3"}, "maxRetries: must be an integer"),
    ({"body": {"shcmd": "x" * 80}}, "body: must be at most 64 bytes"),
    ({"body": "ls"}, "body: must be a JSON"),
    ({"command": ""}, "command"), ({"from": "a:b"}, "from"), ({"from": "a\x00b"}, "from: must not hold"),
    ({"publishNow": "yes"}, "publishNow"),
    ({"detached": 2}, "detached"),
])
def test_clear_400s(change: dict[str, Any], field: str) -> None:
    assert field in bad({**SEED, **change})


def test_a_device_listed_twice_is_named_by_position_not_printed_back() -> None:
    msg = bad({**SEED, "to": [{"sn": "SECRET-SN"}, {"sn": "B"}, {"sn": "SECRET-SN"}]})
    assert msg == "to[2].sn: the device is listed twice (to[0] too)"


def test_command_is_required() -> None:
    body = dict(SEED)
    del body["command"]
    assert bad(body) == "command: is required"


RECORD = {"id": str(CID), "sn": "SN1", "from": "test", "command": "sh", "method": "",
          "d": '{"shcmd":"ls /tmp"}', "detached": "0", "expires": "7200", "maxRetries": "3",
          "publishNow": "0", "state": "2", "tryTimes": "2", "publishTime": "1542604400",
          "finishTime": "1542604401", "failedTime": "0", "deliverTime": "1542604400",
          "createTime": "1542604399", "reason": "", "phase": "", "expireAt": "1", "errors": "0"}


def test_view_has_the_seed_fields_and_ours_only() -> None:
    v = view(RECORD)
    assert v == {"command": "sh", "createTime": 1542604399, "d": {"shcmd": "ls /tmp"},
                 "deliverTime": 1542604400, "detached": 0, "expires": 7200, "failedTime": 0,
                 "finishTime": 1542604401, "from": "test",
                 "id": CID, "idStr": str(CID), "maxRetries": 3, "method": "", "publishNow": False,
                 "publishTime": 1542604400, "reason": "", "sn": "SN1", "state": 2, "tryTimes": 2}
    assert orjson.dumps(v).startswith(b'{"command":"sh"')
    assert b'"id":201811260000000001,' in orjson.dumps(v)  # an integer beyond 2^53, exactly


def test_downlink_payload() -> None:
    c = ClaimedCommand.from_reply([str(CID), "SN1", "web", "sh", "", '{"shcmd":"whoami"}', "1", "38400",
                                   "0"])
    assert orjson.loads(downlink(c, 1700000000)) == {
        "id": CID, "from": "web", "command": "sh", "method": "", "d": {"shcmd": "whoami"}, "detached": True,
        "expires": 38400, "time": 1700000000}


def message(payload: object, clientid: str = "SN1", topic: str = "dma/resp/cmd",
            encode: bool = False) -> MessagePublished:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    text = base64.b64encode(raw).decode() if encode else raw.decode()
    return MessagePublished(id="M1", clientid=clientid, topic=topic, payload=text,
                            encoding="base64" if encode else "plain", qos=1, retain=False,
                            received_at=1543818336123)


ANSWER = {"id": CID, "sn": "SN1", "command": "sh", "from": "iot_demo_web",
          "d": {"exestatus": "ok", "msg": "", "result": "cm9vdA==", "status": "ok"}, "status": "ok",
          "time": 18423}


@pytest.mark.parametrize("encode", [False, True])
def test_an_answer_is_parsed_and_stored_with_revtime(encode: bool) -> None:
    r = parse_response(message(ANSWER, encode=encode))
    assert isinstance(r, CommandResponse)
    assert (r.id, r.sn, r.ok) == (CID, "SN1", True)
    assert orjson.loads(r.stored) == {**ANSWER, "idStr": str(CID), "revtime": 1543818336}


def test_an_answer_with_the_id_as_a_string() -> None:
    r = parse_response(message({**ANSWER, "id": str(CID)}))
    assert isinstance(r, CommandResponse) and r.id == CID


@pytest.mark.parametrize("payload, clientid, reason", [
    (b"not json", "SN1", "not_json"), ([1, 2], "SN1", "bad_shape"), (ANSWER, "OTHER", "sn_mismatch"),
    ({**ANSWER, "id": 789}, "SN1", "bad_command_id"), ({**ANSWER, "id": None}, "SN1", "bad_command_id"),
])
def test_answers_rejected(payload: object, clientid: str, reason: str) -> None:
    assert parse_response(message(payload, clientid)) == Rejected(reason)


@pytest.mark.parametrize("body, ok", [
    ({"status": "ok", "d": {"status": "ok", "exestatus": "ok"}}, True),
    ({"status": "ok"}, True), ({"d": {"exestatus": "ok"}}, True),
    ({"status": "ok", "d": {"exestatus": "err"}}, False),
    ({"status": "err", "d": {"exestatus": "ok"}}, False),
    ({"d": "ok"}, False), ({}, False), ({"status": "OK"}, False),
])
def test_answered_ok(body: dict[str, Any], ok: bool) -> None:
    assert answered_ok(body) is ok


KEYS = Keys("iot")
DEVICE = DeviceCommands(KEYS)
CALLS = CommandCalls(KEYS)


def test_subscribing_to_its_command_topic_and_heartbeats_wake_a_devices_commands() -> None:
    """The device script of those events carries what wakes the device's waiting commands (wake.lua)."""
    active = KEYS.commands_active("SN1").encode()
    own = plan(Subscribed("SN1", "dma/cmd/SN1"), DEVICE, 1000, CALLS)
    assert len(own.commands) == 1 and active in own.commands[0]
    other = plan(Subscribed("SN1", "dma/cmd/SN2"), DEVICE, 1000, CALLS)
    assert other.commands == ()
    heartbeat = message({"sn": "SN1", "time": 1, "dur": 5}, topic="dma/report/SN1/heartbeat")
    assert any(active in c for c in plan(heartbeat, DEVICE, 1000, CALLS).commands)
    procs = plan(message({"sn": "SN1", "time": 1, "d": []}, topic="dma/report/SN1/procs"), DEVICE, 1, CALLS)
    assert not any(active in c for c in procs.commands)


def test_an_answer_becomes_a_respond_call_and_a_rejected_one_none() -> None:
    p = plan(message(ANSWER), DEVICE, 1000, CALLS)
    answer = parse_response(message(ANSWER))
    assert isinstance(answer, CommandResponse)
    assert p.commands == (DEVICE.active("SN1", 1543818336123), CALLS.respond("M1", answer))
    forged = plan(message(ANSWER, clientid="INTRUDER"), DEVICE, 1000, CALLS)
    assert forged.rejected == "sn_mismatch" and forged.commands == ()


def acked(clientid: str, topic: str, payload: object, sender: str = "http_api") -> MessageAcked:
    return MessageAcked(id="M2", clientid=clientid, from_clientid=sender, topic=topic,
                        payload=orjson.dumps(payload).decode(), encoding="plain", qos=1, received_at=1)


def test_a_delivery_of_a_command_to_its_device_is_recorded() -> None:
    assert plan(acked("SN1", "dma/cmd/SN1", {"id": CID}), DEVICE, 1000, CALLS).commands == \
        (CALLS.delivered(CID, "SN1"),)
    for ev in (acked("SN2", "dma/cmd/SN1", {"id": CID}), acked("SN1", "dma/cmd/SN1", {"id": CID}, "SN9"),
               acked("SN1", "dma/cmd/SN1", {"id": "x"}), acked("SN1", "dma/cmd/SN1", [CID])):
        assert plan(ev, DEVICE, 1000, CALLS).commands == ()

