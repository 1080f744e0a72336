"""The named KEYS/ARGV builders of the device scripts (issue 14), pinned against the scripts' header comments, and
the cluster rule (issue 15): every key of one call is in the device's slot."""

from __future__ import annotations

import re

import pytest
from redis.crc import key_slot

from adapter.broker.credentials import remember_call
from adapter.devices.presence_store import presence_call
from adapter.devices.retention import retention_call
from adapter.devices.store import (
    DEVICE_KEYS,
    DEVICE_PRESENCE,
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
from adapter.devices.uplink import Peripheral
from adapter.ingest.events import SEEN_TTL, Connected, Disconnected, MessagePublished
from adapter.store import scripts
from adapter.store.keys import Keys
from adapter.targets.forwarding import FORWARD, forward_call, forward_of
from adapter.targets.route_table import RouteInfo

ONE, CLUSTER = Keys("iot"), Keys("iot", 48)
SNS = [f"GW{n:04d}" for n in range(400)]


def header(path: str) -> str:
    """The leading comment block of a Lua file, as one line of words."""
    lines = []
    for line in scripts.source(path).splitlines():
        if not line.startswith("--"):
            break
        lines.append(line[2:])
    return re.sub(r"\s+", " ", " ".join(lines))


def names_in(text: str, names: dict[int, str]) -> None:
    for i, name in names.items():
        assert f"{i} {name}" in text, (i, name)


def device_names(keys: Keys, sn: str) -> list[str]:
    p = keys.shard(sn)
    return [keys.devices(p), keys.devices_online(p), keys.devices_offline(p), keys.peripherals(p),
            keys.peripherals_online(p), keys.peripherals_offline(p), keys.callbacks_enabled_in("device", p),
            keys.callbacks_enabled_in("peripheral", p), keys.client(sn),
            keys.delivery_stream(keys.stream_partition(sn))]


def one_slot(call_keys: list, argv_keys: list = ()) -> None:  # type: ignore[assignment]
    slots = {key_slot(k if isinstance(k, bytes) else k.encode()) for k in [*call_keys, *argv_keys]}
    assert len(slots) == 1, slots


def message(sn: str) -> MessagePublished:
    return MessagePublished(id="AB" * 16, clientid=sn, topic=f"dma/report/{sn}/sys", payload="{}", encoding="plain",
                            qos=1, retain=False, received_at=1_717_000_000_123, username=sn)


def test_device_lua_header_names_its_keys_and_arguments() -> None:
    text = header("devices/device.lua")
    names_in(text, {1: "devices", 2: "devices:online", 3: "devices:offline", 4: "peris", 5: "peris:online",
                    6: "peris:offline", 7: "enabled device callbacks", 8: "enabled peripheral callbacks",
                    9: "the client hash", 10: "the delivery stream"})
    assert "6 the prefix of the device's peripheral hash keys" in text


@pytest.mark.parametrize("keys", [ONE, CLUSTER])
def test_device_call_layout(keys: Keys) -> None:
    ev = Connected("GW0001", 5000)
    call_keys, argv = device_call(keys, ev)
    assert call_keys == device_names(keys, "GW0001")
    assert argv == ["c", "GW0001", "5000", "", "", keys.peripheral_prefix("GW0001")]
    down = Disconnected("GW0001", 9000, "tcp_closed", connected_at=5000)
    assert device_call(keys, down)[1][:5] == ["d", "GW0001", "5000", "9000", "tcp_closed"]


def test_one_redis_device_keys_are_what_they_were() -> None:
    call_keys, argv = device_call(ONE, Connected("SN1", 1))
    assert call_keys == ["iot:devices", "iot:devices:online", "iot:devices:offline", "iot:peris",
                         "iot:peris:online", "iot:peris:offline", "iot:callbacks:enabled:device",
                         "iot:callbacks:enabled:peripheral", "iot:client:SN1",
                         ONE.delivery_stream(ONE.stream_partition("SN1"))]
    assert argv[-1] == "iot:peri:"


def test_uplink_lua_header_names_its_keys_and_arguments() -> None:
    text = header("devices/uplink.lua")
    assert "KEYS 1..10 as device.lua" in text and "10 the device's delivery stream" in text
    assert "11 the message's seen key (only when it is routed: n > 0)" in text
    names_in(text, {1: "mode: mark | active | report | heartbeat | peripherals", 2: "sn", 3: "received_at (ms)",
                    4: "revtime (s)", 5: "field (procs|sys|versions)", 6: "JSON string"})
    assert "heartbeat: 5 bootTime 6 dur, then the wake arguments" in text
    assert ("wake arguments: the device's active commands set, the prefix of its shard's command hashes, its "
            "shard's due set") in text
    names_in(text, {8: "the most peripherals a device keeps", 10: "its shard's metrics hash"})
    assert "then groups of 4: nId, gwId, online \"1\"/\"0\", msg" in text
    assert "then the number n of route ids (0 when none) last: the seen TTL" in text


@pytest.mark.parametrize("keys", [ONE, CLUSTER])
def test_uplink_call_layout(keys: Keys) -> None:
    sn, at = "GW0002", 1_717_000_000_123
    call_keys, argv = uplink_call(keys, "report", sn, at, ["sys", "{}"])
    assert call_keys == device_names(keys, sn)
    assert argv == ["report", sn, at, at // 1000, "sys", "{}", "0", str(SEEN_TTL)]
    call_keys, argv = uplink_call(keys, "heartbeat", sn, at, [7, 15, *wake_args(keys, sn)])
    p = keys.shard(sn)
    assert argv[4:9] == [7, 15, keys.commands_active(sn), keys.command_prefix(p), keys.commands_due(p)]
    items = [Peripheral("N1", "G", True, "{}"), Peripheral("N2", "G", False, "{}")]
    _, argv = uplink_call(keys, "peripherals", sn, at, peripheral_args(keys, sn, items, 1000, 60))
    assert argv[4:10] == [keys.peripheral_prefix(sn), keys.peripherals_of_gw_prefix(p),
                          keys.peripherals_seen_prefix(sn), 1000, 60, keys.metrics_in(p)]
    assert argv[10:18] == ["N1", "G", "1", "{}", "N2", "G", "0", "{}"] and argv[18:] == ["0", str(SEEN_TTL)]


@pytest.mark.parametrize("keys", [ONE, CLUSTER])
def test_routed_uplink_call_layout(keys: Keys) -> None:
    sn = "GW0003"
    fwd = forward_of(message(sn), [RouteInfo(4, "#"), RouteInfo(9, "#")], keys)
    assert fwd is not None
    call_keys, argv = uplink_call(keys, "active", sn, 1000, (), fwd)
    assert call_keys == [*device_names(keys, sn), keys.seen("msg:" + "AB" * 16, sn).encode()]
    assert call_keys[9] == fwd.stream  # the forward's stream is the device's
    assert argv[4:] == [*fwd.argv, 2, str(SEEN_TTL)]


def test_forward_lua_and_forward_call() -> None:
    fwd = forward_of(message("SN9"), [RouteInfo(4, "#")], CLUSTER)
    assert fwd is not None
    call_keys, argv = forward_call(fwd)
    assert call_keys == [CLUSTER.seen("msg:" + "AB" * 16, "SN9").encode(), fwd.stream]
    assert argv == [SEEN_TTL, "SN9", *fwd.argv]
    assert "return forward(KEYS[1], KEYS[2], ARGV[1], ARGV[2], 3, #ARGV - 4)" in FORWARD.script
    assert packed(FORWARD, (call_keys, argv)).startswith(b"*%d\r\n" % (3 + 2 + len(argv)))
    one_slot(call_keys)


def test_other_calls_follow_their_headers() -> None:
    assert "KEYS 1 devices 2 devices:online 3 devices:offline 4 peris 5 peris:online 6 peris:offline" \
        in header("devices/retention.lua")
    assert "7 the client hash ARGV 1 the client id 2 the cutoff (ms) 3 the prefix of its peripheral hashes" \
        in header("devices/retention.lua")
    for keys in (ONE, CLUSTER):
        call_keys, argv = retention_call(keys, "SN5", 77)
        assert call_keys == [*device_names(keys, "SN5")[:6], keys.client("SN5")]
        assert argv == ["SN5", 77, keys.peripheral_prefix("SN5"), keys.peripherals_of_gw_prefix(keys.shard("SN5"))]
        assert remember_call(keys, "SN5", "h", "d", 9) == ([keys.credential("SN5"), keys.authn_cache("SN5")],
                                                          ["h", "d", 9])
    assert presence_call("k", Connected("SN5", 3)) == (["k"], ["c", "SN5", "3", "", ""])
    assert "KEYS[1] the client's presence hash" in header("devices/presence.lua")


def test_every_call_of_a_device_is_one_slot_on_the_cluster() -> None:
    items = [Peripheral("N1", "OTHER-GW", True, "{}")]
    shards = set()
    for sn in SNS:
        shards.add(CLUSTER.shard(sn))
        for call in (device_call(CLUSTER, Connected(sn, 1)), retention_call(CLUSTER, sn, 1),
                     remember_call(CLUSTER, sn, "h", "d", 1)):
            one_slot(call[0])
        fwd = forward_of(message(sn), [RouteInfo(1, "#")], CLUSTER)
        assert fwd is not None
        one_slot(forward_call(fwd)[0])
        call_keys, argv = uplink_call(CLUSTER, "heartbeat", sn, 1000, [1, 2, *wake_args(CLUSTER, sn)], fwd)
        p = CLUSTER.shard(sn)
        built = [CLUSTER.commands_active(sn), CLUSTER.command_prefix(p) + "1", CLUSTER.commands_due(p),
                 CLUSTER.peripheral(sn, "N1"), CLUSTER.peripherals_of_gw("OTHER-GW", p), CLUSTER.peripherals_seen(sn),
                 CLUSTER.metrics_in(p)]
        one_slot(call_keys, built)
        _, argv = uplink_call(CLUSTER, "peripherals", sn, 1000, peripheral_args(CLUSTER, sn, items, 10, 10))
        one_slot(call_keys, [argv[4] + sn + ":N1", argv[5] + "OTHER-GW", argv[6] + sn, argv[9]])
    assert len(shards) == 48


@pytest.mark.parametrize("keys", [ONE, CLUSTER])
def test_the_hot_path_packs_what_the_builders_say(keys: Keys) -> None:
    """DeviceCommands (what the ingest submits to the batcher) sends exactly the builders' calls."""
    cmd, sn, at = DeviceCommands(keys, max_peripherals=7, peripheral_ttl=9), "GW0004", 1_717_000_000_123
    fwd = forward_of(message(sn), [RouteInfo(4, "#")], keys)
    ev = Connected(sn, 5)
    assert cmd.presence(ev) == packed(DEVICE_PRESENCE, device_call(keys, ev))
    assert cmd.mark(sn, at) == packed(UPLINK, uplink_call(keys, "mark", sn, at, wake_args(keys, sn)))
    assert cmd.active(sn, at, fwd) == packed(UPLINK, uplink_call(keys, "active", sn, at, (), fwd))
    assert cmd.report(sn, at, "sys", "{}") == packed(UPLINK, uplink_call(keys, "report", sn, at, ["sys", "{}"]))
    assert cmd.heartbeat(sn, at, 1, 2, fwd) == packed(UPLINK, uplink_call(keys, "heartbeat", sn, at,
                                                                          [1, 2, *wake_args(keys, sn)], fwd))
    items = [Peripheral("N1", "G", True, "{}")]
    assert cmd.peripherals(sn, at, items) == packed(
        UPLINK, uplink_call(keys, "peripherals", sn, at, peripheral_args(keys, sn, items, 7, 9)))
    call = uplink_call(keys, "active", sn, at, (), fwd)
    assert packed_device(UPLINK, call, keys, sn) == packed(UPLINK, call)
    assert len(device_keys(keys, sn)) == DEVICE_KEYS


def test_a_subscription_marks_the_device_at_emqxs_time() -> None:
    """A redelivered `session.subscribed` writes the same activeTime: EMQX's timestamp, not the service clock
    (which only stands in when the event has none, as EMQX 4's web hook)."""
    from adapter.commands.rules import CommandCalls
    from adapter.ingest.events import Subscribed
    from adapter.ingest.plan import plan

    cmd, calls = DeviceCommands(ONE), CommandCalls(ONE)
    ev = Subscribed("SN1", "dma/cmd/SN1", at=1_717_000_000_123)
    assert plan(ev, cmd, 1_800_000_000_000, calls).commands == (cmd.mark("SN1", 1_717_000_000_123),)
    assert plan(ev, cmd, 1_900_000_000_000, calls).commands == plan(ev, cmd, 1_800_000_000_000, calls).commands
    assert plan(Subscribed("SN1", "dma/cmd/SN1"), cmd, 1_800_000_000_000, calls).commands == (
        cmd.mark("SN1", 1_800_000_000_000),)
