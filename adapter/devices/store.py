"""Device state in Redis: presence plus device bookkeeping (`device.lua`) and the uplink (`uplink.lua`).

`device_call` and `uplink_call` are the one place the scripts' KEYS and ARGV layouts are spelled in Python
(tests/unit/test_device_calls.py pins them against the Lua header comments). Every key of one call is in the
device's slot on Redis Cluster: its client hash, its shard's index shards and enabled-callback replicas, its
peripherals, its delivery stream, its commands.

`DeviceCommands` packs each event's one atomic script call as RESP bytes (see resp.py) for the batcher, so
the ingest can send many events in one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from adapter.devices.presence_store import script_argv
from adapter.devices.uplink import Peripheral
from adapter.ingest.events import SEEN_TTL, Connected, Disconnected
from adapter.store import scripts
from adapter.store.keys import Keys
from adapter.store.resp import Arg, _bulk, pack
from adapter.store.scripts import LuaScript
from adapter.targets.forwarding import FORWARD_LUA, Forward


def _presence_function() -> str:
    return "local function presence(KEYS, ARGV)\n" + scripts.source("devices/presence.lua") + "\nend\n"


def _with_fanout(body: str) -> str:
    return scripts.source("delivery/fanout.lua") + body


DEVICE_PRESENCE = LuaScript(_with_fanout(_presence_function() + scripts.source("devices/device.lua")))
UPLINK = LuaScript(_with_fanout(scripts.source("commands/wake.lua") + FORWARD_LUA
                                + scripts.source("devices/uplink.lua")))
SCRIPTS = (DEVICE_PRESENCE, UPLINK)

MAX_PERIPHERALS = 1000  # per device (gateway); ADAPTER_MAX_PERIPHERALS_PER_GATEWAY
PERIPHERAL_TTL = 30 * 86_400  # s a peripheral not reported is kept; ADAPTER_PERIPHERAL_TTL_DAYS

Call = tuple[list[Arg], list[Arg]]  # (KEYS, ARGV) of one script call
DEVICE_KEYS = 10  # len(device_keys(...)): the KEYS every call of both scripts begins with
_TTL = str(SEEN_TTL)  # constants as text: resp.py encodes a string it has seen once


@lru_cache(maxsize=100_000)
def device_keys(keys: Keys, sn: str) -> tuple[str, ...]:
    """KEYS 1..10 of both scripts: the index shards of the device's shard, the enabled-callback sets it
    reads, its client hash, its delivery stream."""
    p = keys.shard(sn)
    return (keys.devices(p), keys.devices_online(p), keys.devices_offline(p), keys.peripherals(p),
            keys.peripherals_online(p), keys.peripherals_offline(p), keys.callbacks_enabled_in("device", p),
            keys.callbacks_enabled_in("peripheral", p), keys.client(sn),
            keys.delivery_stream(keys.stream_partition(sn)))


def device_call(keys: Keys, ev: Connected | Disconnected) -> Call:
    """KEYS and ARGV of DEVICE_PRESENCE (device.lua) for one presence event."""
    return list(device_keys(keys, ev.clientid)), [*script_argv(ev), keys.peripheral_prefix(ev.clientid)]


def wake_args(keys: Keys, sn: str) -> list[Arg]:
    """What the uplink script needs to wake the device's waiting commands (see wake.lua)."""
    p = keys.shard(sn)
    return [keys.commands_active(sn), keys.command_prefix(p), keys.commands_due(p)]


def peripheral_args(keys: Keys, sn: str, items: Sequence[Peripheral], cap: int, ttl: int) -> list[Arg]:
    """The `peripherals` mode's arguments (ARGV 5.. of uplink.lua)."""
    p = keys.shard(sn)
    flat: list[Arg] = [keys.peripheral_prefix(sn), keys.peripherals_of_gw_prefix(p),
                       keys.peripherals_seen_prefix(sn), cap, ttl, keys.metrics_in(p)]
    for item in items:
        flat += [item.nid, item.gw_id, "1" if item.online else "0", item.msg]
    return flat


def uplink_call(keys: Keys, mode: str, sn: str, at: int, mode_args: Sequence[Arg] = (),
                fwd: Forward | None = None) -> Call:
    """KEYS and ARGV of UPLINK (uplink.lua): `mode` with its arguments; with `fwd`, the message's route
    deliveries are written by the same call (its stream is the device's: `fwd.key` is `sn`)."""
    argv: list[Arg] = [mode, sn, at, at // 1000, *mode_args]
    if fwd is None:
        return list(device_keys(keys, sn)), [*argv, "0", _TTL]
    return [*device_keys(keys, sn), fwd.seen], [*argv, *fwd.argv, fwd.routes, _TTL]


def packed(script: LuaScript, call: Call) -> bytes:
    """One script call as the batcher sends it: EVALSHA sha numkeys KEYS ARGV."""
    call_keys, argv = call
    return pack("EVALSHA", script.sha, len(call_keys), *call_keys, *argv)


@lru_cache(maxsize=100_000)
def _device_keys_bytes(keys: Keys, sn: str) -> bytes:
    return b"".join(_bulk(k) for k in device_keys(keys, sn))


def packed_device(script: LuaScript, call: Call, keys: Keys, sn: str) -> bytes:
    """`packed(script, call)` for a call whose KEYS begin with `device_keys(keys, sn)` (both scripts' calls):
    those are encoded once per device (the hot path: the same bytes as `packed`, encoded in less time)."""
    call_keys, argv = call
    head = b"*%d\r\n$7\r\nEVALSHA\r\n%s%s" % (3 + len(call_keys) + len(argv), _bulk(script.sha),
                                                _bulk(len(call_keys)))
    return b"".join((head, _device_keys_bytes(keys, sn), *map(_bulk, call_keys[DEVICE_KEYS:]), *map(_bulk, argv)))


class DeviceCommands:
    def __init__(self, keys: Keys, *, max_peripherals: int = MAX_PERIPHERALS,
                 peripheral_ttl: int = PERIPHERAL_TTL) -> None:
        self.keys = keys
        self.max_peripherals = max_peripherals
        self.peripheral_ttl = peripheral_ttl

    def presence(self, ev: Connected | Disconnected) -> bytes:
        return packed_device(DEVICE_PRESENCE, device_call(self.keys, ev), self.keys, ev.clientid)

    def _up(self, mode: str, sn: str, at: int, extra: Sequence[Arg], fwd: Forward | None) -> bytes:
        return packed_device(UPLINK, uplink_call(self.keys, mode, sn, at, extra, fwd), self.keys, sn)

    def mark(self, sn: str, at: int, fwd: Forward | None = None) -> bytes:
        """The client subscribed to its command topic (or reported): a device, online for commands."""
        return self._up("mark", sn, at, wake_args(self.keys, sn), fwd)

    def active(self, sn: str, at: int, fwd: Forward | None = None) -> bytes:
        return self._up("active", sn, at, (), fwd)

    def report(self, sn: str, at: int, field: str, stored: str, fwd: Forward | None = None) -> bytes:
        return self._up("report", sn, at, (field, stored), fwd)

    def heartbeat(self, sn: str, at: int, boot_time: int, dur: int, fwd: Forward | None = None) -> bytes:
        return self._up("heartbeat", sn, at, [boot_time, dur, *wake_args(self.keys, sn)], fwd)

    def peripherals(self, sn: str, at: int, items: list[Peripheral], fwd: Forward | None = None) -> bytes:
        return self._up("peripherals", sn, at,
                        peripheral_args(self.keys, sn, items, self.max_peripherals, self.peripheral_ttl), fwd)
