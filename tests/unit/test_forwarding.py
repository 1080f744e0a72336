"""The forwarded body and the packed delivery XADDs of message routes (adapter/targets/forwarding.py), without I/O."""

from __future__ import annotations

import base64

import orjson
from hypothesis import given
from hypothesis import strategies as st

from adapter.commands.rules import CommandCalls
from adapter.delivery.model import Delivery, partition_of
from adapter.devices.calls import UPLINK, DeviceCommands, packed
from adapter.ingest.plan import plan
from adapter.protocol.events import REST_API_CLIENT, MessagePublished, parse_event, payload_bytes
from adapter.store.keys import Keys
from adapter.targets import forwarding
from adapter.targets.forwarding import body, forward_call, forward_of
from adapter.targets.route_table import RouteInfo

KEYS = Keys("iot")
BODY_FIELDS = {"topic", "payload", "payload_encoding", "clientid", "username", "qos", "retain", "timestamp",
               "id", "routeId"}


def message(**changes: object) -> MessagePublished:
    fields: dict = {"id": "0006177D2BE5A3F2F4420000037B0001", "clientid": "8CFCA0107D1B",
                    "topic": "dma/resp/cmd", "payload": '{"sn":"8CFCA0107D1B","result":"ok"}',
                    "encoding": "plain", "qos": 1, "retain": False, "received_at": 1717000000122,
                    "username": "dev-user"}
    fields.update(changes)
    return MessagePublished(**fields)


def forward_command(msg: MessagePublished, routes: list[RouteInfo], keys: Keys, partitions: int) -> bytes | None:
    fwd = forward_of(msg, routes, Keys(keys.prefix, 0, partitions))
    return packed(forward_call(fwd)) if fwd else None


def unpack(packed: bytes) -> list[bytes]:
    """The arguments of one RESP array of bulk strings (what resp.pack writes)."""
    assert packed.startswith(b"*")
    head, _, rest = packed.partition(b"\r\n")
    args = []
    for _ in range(int(head[1:])):
        size_line, _, rest = rest.partition(b"\r\n")
        assert size_line.startswith(b"$")
        size = int(size_line[1:])
        args.append(rest[:size])
        assert rest[size:size + 2] == b"\r\n"
        rest = rest[size + 2:]
    assert rest == b""
    return args


def entries(packed: bytes | None) -> tuple[str, str, list[Delivery]]:
    """The seen key, the stream and the deliveries of one packed FORWARD call, as forward.lua writes them
    (the integration tests hold the script itself against `body`)."""
    assert packed is not None
    args = unpack(packed)
    assert args[0] == b"EVALSHA" and args[1] == forwarding.FORWARD.sha.encode() and args[2] == b"2"
    seen, stream, _ttl, key, message_id = (a.decode() for a in args[3:8])
    head, route_ids = args[8], [a.decode() for a in args[9:]]
    out = [Delivery(f"route:{r}", key, f"m:{message_id}:route:{r}", head + r.encode() + b"}", 0) for r in route_ids]
    return seen, stream, out


# --- the body --------------------------------------------------------------------------------------------

def test_body_has_exactly_the_documented_fields() -> None:
    msg = message()
    assert orjson.loads(body(msg, 7)) == {
        "topic": "dma/resp/cmd", "payload": '{"sn":"8CFCA0107D1B","result":"ok"}',
        "payload_encoding": "plain",
        "clientid": "8CFCA0107D1B", "username": "dev-user", "qos": 1, "retain": False,
        "timestamp": 1717000000122, "id": "0006177D2BE5A3F2F4420000037B0001", "routeId": 7,
    }


def test_payload_is_forwarded_exactly_as_received() -> None:
    raw = bytes(range(256))
    encoded = base64.b64encode(raw).decode()
    binary = orjson.loads(body(message(payload=encoded, encoding="base64"), 1))
    assert binary["payload"] == encoded and binary["payload_encoding"] == "base64"
    assert base64.b64decode(binary["payload"]) == raw
    text = 'not json: "quoted" \\ émoji 🚀\n\ttab'
    plain = orjson.loads(body(message(payload=text), 1))
    assert plain["payload"] == text and plain["payload_encoding"] == "plain"


def test_absent_username_is_null_and_retain_is_kept() -> None:
    got = orjson.loads(body(message(username=None, retain=True, qos=0), 3))
    assert got["username"] is None and got["retain"] is True and got["qos"] == 0


def test_body_of_a_parsed_emqx_event_keeps_its_payload() -> None:
    event = {"event": "message.publish", "id": "00061A", "clientid": "SN1", "username": "SN1",
             "topic": "dma/resp/cmd", "payload": base64.b64encode(b"\x00\xff").decode(),
             "payload_encoding": "base64",
             "qos": 2, "flags": {"retain": True, "dup": False}, "publish_received_at": 1717000000999,
             "timestamp": 1717000000999, "peerhost": "10.0.0.1", "node": "emqx@127.0.0.1"}
    msg = parse_event(event)
    assert isinstance(msg, MessagePublished)
    got = orjson.loads(body(msg, 4))
    assert set(got) == BODY_FIELDS
    assert (got["payload"], got["payload_encoding"]) == (event["payload"], "base64")
    assert (got["qos"], got["retain"]) == (2, True)
    assert (got["id"], got["timestamp"], got["clientid"]) == ("00061A", 1717000000999, "SN1")
    assert payload_bytes(msg) == b"\x00\xff"


# --- the packed deliveries -------------------------------------------------------------------------------

def test_one_xadd_per_route_in_order_on_the_clients_partition() -> None:
    msg = message()
    routes = [RouteInfo(2, "dma/resp/cmd"), RouteInfo(5, "dma/#"), RouteInfo(11, "+/resp/+")]
    seen, got_stream, ds = entries(forward_command(msg, routes, KEYS, 8))
    assert len(ds) == 3
    assert seen == KEYS.seen(f"msg:{msg.id}", msg.clientid) == KEYS.seen(f"msg:{msg.id}")
    assert got_stream == KEYS.delivery_stream(partition_of(msg.clientid, 8))
    for route, d in zip(routes, ds, strict=True):
        assert (d.target, d.key, d.id, d.attempts) == (f"route:{route.id}", msg.clientid,
                                                       f"m:{msg.id}:route:{route.id}", 0)
        assert d.body == body(msg, route.id)


def test_no_routes_or_the_services_own_messages_make_nothing() -> None:
    assert forward_command(message(), [], KEYS, 4) is None
    own = message(clientid=REST_API_CLIENT, username=None)
    assert forward_command(own, [RouteInfo(1, "#")], KEYS, 4) is None


_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)


@given(payload=_text, clientid=_text.filter(lambda s: s != REST_API_CLIENT),
       username=st.none() | _text, topic=_text.filter(bool), qos=st.sampled_from([0, 1, 2]),
       retain=st.booleans(), received_at=st.integers(0, 2**53),
       route_ids=st.lists(st.integers(1, 2**63 - 1), max_size=5, unique=True),
       partitions=st.integers(1, 64))
def test_packed_bodies_equal_the_plain_body(payload: str, clientid: str, username: str | None, topic: str,
                                            qos: int, retain: bool, received_at: int, route_ids: list[int],
                                            partitions: int) -> None:
    msg = message(payload=payload, clientid=clientid, username=username, topic=topic, qos=qos, retain=retain,
                  received_at=received_at)
    packed = forward_command(msg, [RouteInfo(i, "#") for i in route_ids], KEYS, partitions)
    if not route_ids:
        assert packed is None
        return
    _, stream, ds = entries(packed)
    assert len(ds) == len(route_ids)
    assert stream == KEYS.delivery_stream(partition_of(clientid, partitions))
    for route_id, d in zip(route_ids, ds, strict=True):
        assert d.body == body(msg, route_id)
        got = orjson.loads(d.body)
        assert (got["payload"], got["clientid"]) == (payload, clientid)
        assert (got["username"], got["routeId"]) == (username, route_id)


# --- carried by the message's own script call ------------------------------------------------------------

def test_a_routed_uplink_is_one_script_call_and_a_rejected_one_forwards_alone() -> None:
    routes = [RouteInfo(1, "#"), RouteInfo(2, "dma/report/+/+")]
    device, calls = DeviceCommands(KEYS), CommandCalls(KEYS)
    for topic, payload in (("dma/report/SN1/sys", '{"sn":"SN1","time":1,"d":{}}'), ("x/y", "hello")):
        msg = message(clientid="SN1", topic=topic, payload=payload)
        fwd = forward_of(msg, routes, KEYS)
        assert fwd is not None and fwd.routes == 2
        (call,) = plan(msg, device, 1000, calls, fwd).commands
        args = unpack(call)
        assert args[1] == UPLINK.sha.encode() and args[2] == b"12"
        # KEYS 9..12: the client hash, its stream (the forward's too), its presence log, the message's seen key
        assert args[11:15] == [k.encode() for k in (KEYS.client("SN1"), fwd.stream, KEYS.presence_log("SN1"),
                                                    KEYS.seen(f"msg:{msg.id}"))]
        # then the message id, the body head, the route ids and their number, before the seen TTL
        assert args[-6:-2] == [msg.id.encode(), body(msg, 1)[:-2], b"1", b"2"]
        assert args[-2] == b"2"
        assert plan(msg, device, 1000, calls, None).commands[0] != call
    rejected = message(clientid="SN1", topic="dma/report/SN1/sys", payload="not json")
    fwd = forward_of(rejected, routes, KEYS)
    assert fwd is not None
    p = plan(rejected, device, 1000, calls, fwd)
    assert p.rejected and p.commands == (packed(forward_call(fwd)),)
    assert plan(rejected, device, 1000, calls, None).commands == ()
