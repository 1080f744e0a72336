"""The named KEYS/ARGV builders of the device scripts (issue 14), built by the names of the scripts' headers
(adapter/store/scripts.py), and the cluster rule (issue 15): every key of one call is in the device's slot."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from adapter.broker.credentials import remember_call
from adapter.devices.calls import (
    DEVICE_KEYS,
    DEVICE_PRESENCE,
    GUARDED_PRESENCE,
    UPLINK,
    DeviceCommands,
    device_call,
    device_keys,
    packed,
    packed_device,
    peripheral_args,
    uplink_call,
    wake_args,
)
from adapter.devices.presence_calls import PRESENCE_SCRIPT, presence_call
from adapter.devices.retention import RETENTION, retention_call
from adapter.protocol.events import SEEN_TTL, Connected, Disconnected, MessagePublished
from adapter.protocol.uplink import Peripheral
from adapter.store.keys import Keys
from adapter.targets.forwarding import FORWARD, forward_call, forward_of
from adapter.targets.route_table import RouteInfo

ONE, CLUSTER = Keys("iot"), Keys("iot", 48)
SNS = [f"GW{n:04d}" for n in range(400)]


DEVICE = ["devices", "devices_online", "devices_offline", "peris", "peris_online", "peris_offline", "device_callbacks",
          "peripheral_callbacks", "client", "stream", "presence_log"]
PRESENCE = ["kind", "clientid", "connected_at", "disconnected_at", "reason"]


def names(layout: tuple) -> list[str]:  # type: ignore[type-arg]
    return [("..." if f.many else "") + f.name for f in layout]


def device_names(keys: Keys, sn: str) -> list[str]:
    p = keys.shard(sn)
    return [keys.devices(p), keys.devices_online(p), keys.devices_offline(p), keys.peripherals(p),
            keys.peripherals_online(p), keys.peripherals_offline(p), keys.callbacks_enabled_in("device", p),
            keys.callbacks_enabled_in("peripheral", p), keys.client(sn),
            keys.delivery_stream(keys.stream_partition(sn)), keys.presence_log(sn)]


def one_slot(call_keys: list, argv_keys: list = ()) -> None:  # type: ignore[assignment]
    slots = {key_slot(k if isinstance(k, bytes) else k.encode()) for k in [*call_keys, *argv_keys]}
    assert len(slots) == 1, slots


def message(sn: str) -> MessagePublished:
    return MessagePublished(id="AB" * 16, clientid=sn, topic=f"dma/report/{sn}/sys", payload="{}", encoding="plain",
                            qos=1, retain=False, received_at=1_717_000_000_123, username=sn)


def test_device_lua_header_names_its_keys_and_arguments() -> None:
    assert names(DEVICE_PRESENCE.keys) == DEVICE == names(GUARDED_PRESENCE.keys) == names(UPLINK.keys)[:DEVICE_KEYS]
    assert names(DEVICE_PRESENCE.args) == [*PRESENCE, "peripheral_prefix"] == names(GUARDED_PRESENCE.args)[:6]
    assert names(PRESENCE_SCRIPT.keys) == ["client"] and names(PRESENCE_SCRIPT.args) == PRESENCE


@pytest.mark.parametrize("keys", [ONE, CLUSTER])
def test_device_call_layout(keys: Keys) -> None:
    ev = Connected("GW0001", 5000)
    call = device_call(keys, ev)
    assert call.script is DEVICE_PRESENCE and list(call.keys) == device_names(keys, "GW0001")
    assert call.named()["client"] == keys.client("GW0001") and call.named()["stream"] == device_names(keys, "GW0001")[9]
    assert call.args == ("c", "GW0001", "5000", "", "", keys.peripheral_prefix("GW0001"))
    down = Disconnected("GW0001", 9000, "tcp_closed", connected_at=5000)
    assert device_call(keys, down).args[:5] == ("d", "GW0001", "5000", "9000", "tcp_closed")


def test_one_redis_device_keys_are_what_they_were() -> None:
    call_keys, argv = device_call(ONE, Connected("SN1", 1))[1:]
    assert call_keys == ("iot:devices", "iot:devices:online", "iot:devices:offline", "iot:peris",
                         "iot:peris:online", "iot:peris:offline", "iot:callbacks:enabled:device",
                         "iot:callbacks:enabled:peripheral", "iot:client:SN1",
                         ONE.delivery_stream(ONE.stream_partition("SN1")), "iot:presence-log:SN1")
    assert argv[-1] == "iot:peri:"


def test_uplink_lua_header_names_its_keys_and_arguments() -> None:
    assert names(UPLINK.keys) == [*DEVICE, "...seen"]
    assert names(UPLINK.args) == ["mode", "sn", "received_at", "revtime", "...mode_args", "...forward", "routed",
                                  "seen_ttl"]
    assert names(RETENTION.keys) == [*DEVICE[:6], "client", "presence_log"]
    assert names(RETENTION.args) == ["sn", "cutoff", "peripheral_prefix", "gw_prefix"]


@pytest.mark.parametrize("keys", [ONE, CLUSTER])
def test_uplink_call_layout(keys: Keys) -> None:
    sn, at = "GW0002", 1_717_000_000_123
    call_keys, argv = uplink_call(keys, "report", sn, at, ["sys", "{}"])[1:]
    assert list(call_keys) == device_names(keys, sn)
    assert argv == ("report", sn, at, at // 1000, "sys", "{}", "0", str(SEEN_TTL))
    argv = uplink_call(keys, "heartbeat", sn, at, [7, 15, *wake_args(keys, sn)]).args
    p = keys.shard(sn)
    assert argv[4:9] == (7, 15, keys.commands_active(sn), keys.command_prefix(p), keys.commands_due(p))
    items = [Peripheral("N1", "G", True, "{}"), Peripheral("N2", "G", False, "{}")]
    argv = uplink_call(keys, "peripherals", sn, at, peripheral_args(keys, sn, items, 1000, 60)).args
    assert argv[4:10] == (keys.peripheral_prefix(sn), keys.peripherals_of_gw_prefix(p),
                          keys.peripherals_seen_prefix(sn), 1000, 60, keys.metrics_in(p))
    assert argv[10:18] == ("N1", "G", "1", "{}", "N2", "G", "0", "{}") and argv[18:] == ("0", str(SEEN_TTL))


@pytest.mark.parametrize("keys", [ONE, CLUSTER])
def test_routed_uplink_call_layout(keys: Keys) -> None:
    sn = "GW0003"
    fwd = forward_of(message(sn), [RouteInfo(4, "#"), RouteInfo(9, "#")], keys)
    assert fwd is not None
    call = uplink_call(keys, "active", sn, 1000, (), fwd)
    assert call.keys == (*device_names(keys, sn), keys.seen("msg:" + "AB" * 16, sn).encode())
    assert call.named()["stream"] == fwd.stream  # the forward's stream is the device's
    assert call.args[4:] == (*fwd.argv, 2, str(SEEN_TTL))


def test_forward_lua_and_forward_call() -> None:
    fwd = forward_of(message("SN9"), [RouteInfo(4, "#")], CLUSTER)
    assert fwd is not None
    call = forward_call(fwd)
    assert call.keys == (CLUSTER.seen("msg:" + "AB" * 16, "SN9").encode(), fwd.stream)
    assert call.args == (SEEN_TTL, "SN9", *fwd.argv)
    assert names(FORWARD.keys) == ["seen", "stream"] and names(FORWARD.args) == ["seen_ttl", "key", "...forward"]
    assert "return forward(KEYS[1], KEYS[2], ARGV[1], ARGV[2], 3, #ARGV - 4)" in FORWARD.script
    assert packed(call) == call.packed() and packed(call).startswith(b"*%d\r\n" % (3 + 2 + len(call.args)))
    one_slot(call.keys)


def test_other_calls_follow_their_headers() -> None:
    for keys in (ONE, CLUSTER):
        call = retention_call(keys, "SN5", 77)
        assert list(call.keys) == [*device_names(keys, "SN5")[:6], keys.client("SN5"), keys.presence_log("SN5")]
        assert call.args == ("SN5", 77, keys.peripheral_prefix("SN5"), keys.peripherals_of_gw_prefix(keys.shard("SN5")))
        assert remember_call(keys, "SN5", "h", "d", 9).named() == {
            "credential": keys.credential("SN5"), "mark": keys.authn_cache("SN5"), "stored": "h", "digest": "d",
            "ttl": 9}
    assert presence_call("k", Connected("SN5", 3))[1:] == (("k",), ("c", "SN5", "3", "", ""))


def test_every_call_of_a_device_is_one_slot_on_the_cluster() -> None:
    items = [Peripheral("N1", "OTHER-GW", True, "{}")]
    shards = set()
    for sn in SNS:
        shards.add(CLUSTER.shard(sn))
        for call in (device_call(CLUSTER, Connected(sn, 1)), retention_call(CLUSTER, sn, 1),
                     remember_call(CLUSTER, sn, "h", "d", 1)):
            one_slot(list(call.keys))
        fwd = forward_of(message(sn), [RouteInfo(1, "#")], CLUSTER)
        assert fwd is not None
        one_slot(list(forward_call(fwd).keys))
        call_keys = list(uplink_call(CLUSTER, "heartbeat", sn, 1000, [1, 2, *wake_args(CLUSTER, sn)], fwd).keys)
        p = CLUSTER.shard(sn)
        built = [CLUSTER.commands_active(sn), CLUSTER.command_prefix(p) + "1", CLUSTER.commands_due(p),
                 CLUSTER.peripheral(sn, "N1"), CLUSTER.peripherals_of_gw("OTHER-GW", p), CLUSTER.peripherals_seen(sn),
                 CLUSTER.metrics_in(p)]
        one_slot(call_keys, built)
        argv = uplink_call(CLUSTER, "peripherals", sn, 1000, peripheral_args(CLUSTER, sn, items, 10, 10)).args
        one_slot(call_keys, [argv[4] + sn + ":N1", argv[5] + "OTHER-GW", argv[6] + sn, argv[9]])
    assert len(shards) == 48


@pytest.mark.parametrize("keys", [ONE, CLUSTER])
def test_the_hot_path_packs_what_the_builders_say(keys: Keys) -> None:
    """DeviceCommands (what the ingest submits to the batcher) sends exactly the builders' calls."""
    cmd, sn, at = DeviceCommands(keys, max_peripherals=7, peripheral_ttl=9), "GW0004", 1_717_000_000_123
    fwd = forward_of(message(sn), [RouteInfo(4, "#")], keys)
    ev = Connected(sn, 5)
    assert cmd.presence(ev) == packed(device_call(keys, ev))
    assert cmd.mark(sn, at) == packed(uplink_call(keys, "mark", sn, at, wake_args(keys, sn)))
    assert cmd.active(sn, at, fwd) == packed(uplink_call(keys, "active", sn, at, (), fwd))
    assert cmd.report(sn, at, "sys", "{}") == packed(uplink_call(keys, "report", sn, at, ["sys", "{}"]))
    assert cmd.heartbeat(sn, at, 1, 2, fwd) == packed(uplink_call(keys, "heartbeat", sn, at,
                                                                          [1, 2, *wake_args(keys, sn)], fwd))
    items = [Peripheral("N1", "G", True, "{}")]
    assert cmd.peripherals(sn, at, items) == packed(
        uplink_call(keys, "peripherals", sn, at, peripheral_args(keys, sn, items, 7, 9)))
    call = uplink_call(keys, "active", sn, at, (), fwd)
    assert packed_device(call, keys, sn) == packed(call) == call.packed()
    assert len(device_keys(keys, sn)) == DEVICE_KEYS


def test_a_subscription_marks_the_device_at_emqxs_time() -> None:
    """A redelivered `session.subscribed` writes the same activeTime: EMQX's timestamp, not the service clock
    (which only stands in when the event has none, as EMQX 4's web hook)."""
    from adapter.commands.rules import CommandCalls
    from adapter.ingest.plan import plan
    from adapter.protocol.events import Subscribed

    cmd, calls = DeviceCommands(ONE), CommandCalls(ONE)
    ev = Subscribed("SN1", "dma/cmd/SN1", at=1_717_000_000_123)
    assert plan(ev, cmd, 1_800_000_000_000, calls).commands == (cmd.mark("SN1", 1_717_000_000_123),)
    assert plan(ev, cmd, 1_900_000_000_000, calls).commands == plan(ev, cmd, 1_800_000_000_000, calls).commands
    assert plan(Subscribed("SN1", "dma/cmd/SN1"), cmd, 1_800_000_000_000, calls).commands == (
        cmd.mark("SN1", 1_800_000_000_000),)
