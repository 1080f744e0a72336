"""Device state in Redis: presence plus device bookkeeping (`device.lua`) and the uplink (`uplink.lua`).

`device_call` and `uplink_call` build the scripts' calls by the names of their headers (adapter/store/scripts.py;
tests/unit/test_device_calls.py). Every key of one call is in the
device's slot on Redis Cluster: its client hash, its shard's index shards and enabled-callback replicas, its
peripherals, its delivery stream, its commands.

`DeviceCommands` packs each event's one atomic script call as RESP bytes (see resp.py) for the batcher, so
the ingest can send many events in one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import hiredis

from adapter.devices.presence_calls import PRESENCE_ARGV, script_argv
from adapter.protocol.events import SEEN_TTL, Connected, Disconnected
from adapter.protocol.uplink import Peripheral
from adapter.store.keys import Keys
from adapter.store.resp import Arg, bulk, pack
from adapter.store.scripts import Script, ScriptCall
from adapter.targets.forwarding import Forward

DEVICE_PRESENCE = Script.load("devices/device.lua")
UPLINK = Script.load("devices/uplink.lua")
# a reconciliation's correction: device.lua behind a guard on the state the decision saw
GUARDED_PRESENCE = Script.load("devices/guard.lua")
SCRIPTS = (DEVICE_PRESENCE, UPLINK)

MAX_PERIPHERALS = 1000  # per device (gateway); ADAPTER_MAX_PERIPHERALS_PER_GATEWAY
PERIPHERAL_TTL = 30 * 86_400  # s a peripheral not reported is kept; ADAPTER_PERIPHERAL_TTL_DAYS

# the KEYS every call of the three begins with (`device_keys`)
DEVICE_KEY_NAMES = ("devices", "devices_online", "devices_offline", "peris", "peris_online", "peris_offline",
                    "device_callbacks", "peripheral_callbacks", "client", "stream", "presence_log")
DEVICE_KEYS = len(DEVICE_KEY_NAMES)
_DEVICE = DEVICE_PRESENCE.positional(*DEVICE_KEY_NAMES, *PRESENCE_ARGV, "peripheral_prefix")
_UPLINK = UPLINK.positional(*DEVICE_KEY_NAMES, "seen", "mode", "sn", "received_at", "revtime", "mode_args", "forward",
                            "routed", "seen_ttl")
_TTL = str(SEEN_TTL)  # constants as text: resp.py encodes a string it has seen once


@lru_cache(maxsize=100_000)
def device_keys(keys: Keys, sn: str) -> tuple[str, ...]:
    """KEYS 1..11 of both scripts: the index shards of the device's shard, the enabled-callback sets it
    reads, its client hash, its delivery stream, its presence log."""
    p = keys.shard(sn)
    return (keys.devices(p), keys.devices_online(p), keys.devices_offline(p), keys.peripherals(p),
            keys.peripherals_online(p), keys.peripherals_offline(p), keys.callbacks_enabled_in("device", p),
            keys.callbacks_enabled_in("peripheral", p), keys.client(sn),
            keys.delivery_stream(keys.stream_partition(sn)), keys.presence_log(sn))


def device_call(keys: Keys, ev: Connected | Disconnected) -> ScriptCall:
    """DEVICE_PRESENCE (device.lua) for one presence event."""
    return _DEVICE(*device_keys(keys, ev.clientid), *script_argv(ev), keys.peripheral_prefix(ev.clientid))


def guarded_presence_call(keys: Keys, ev: Connected | Disconnected, **seen: str) -> ScriptCall:
    """GUARDED_PRESENCE (guard.lua): `device_call`, run only while the client's state is `seen` (its seen_* ARGV)."""
    return GUARDED_PRESENCE.call(**device_call(keys, ev).named(), **seen)


@lru_cache(maxsize=100_000)
def wake_args(keys: Keys, sn: str) -> tuple[str, str, str]:
    """What the uplink script needs to wake the device's waiting commands (see wake.lua)."""
    p = keys.shard(sn)
    return keys.commands_active(sn), keys.command_prefix(p), keys.commands_due(p)


def peripheral_args(keys: Keys, sn: str, items: Sequence[Peripheral], cap: int, ttl: int) -> list[Arg]:
    """The `peripherals` mode's arguments (ARGV 5.. of uplink.lua)."""
    p = keys.shard(sn)
    flat: list[Arg] = [keys.peripheral_prefix(sn), keys.peripherals_of_gw_prefix(p),
                       keys.peripherals_seen_prefix(sn), cap, ttl, keys.metrics_in(p)]
    for item in items:
        flat += [item.nid, item.gw_id, "1" if item.online else "0", item.msg]
    return flat


def uplink_call(keys: Keys, mode: str, sn: str, at: int, mode_args: Sequence[Arg] = (),
                fwd: Forward | None = None) -> ScriptCall:
    """UPLINK (uplink.lua): `mode` with its arguments; with `fwd`, the message's route deliveries are written by
    the same call (its stream is the device's: `fwd.key` is `sn`)."""
    if fwd is None:
        return _UPLINK(*device_keys(keys, sn), (), mode, sn, at, at // 1000, mode_args, (), "0", _TTL)
    return _UPLINK(*device_keys(keys, sn), (fwd.seen,), mode, sn, at, at // 1000, mode_args, fwd.argv, fwd.routes,
                   _TTL)


def packed(call: ScriptCall) -> bytes:
    """One script call as the batcher sends it: EVALSHA sha numkeys KEYS ARGV."""
    return pack("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)


@lru_cache(maxsize=100_000)
def _device_keys_bytes(keys: Keys, sn: str) -> bytes:
    return b"".join(bulk(k) for k in device_keys(keys, sn))


@lru_cache(maxsize=64)
def _evalsha_head(sha: str, numkeys: int) -> bytes:
    return bulk("EVALSHA") + bulk(sha) + bulk(numkeys)


def packed_device(call: ScriptCall, keys: Keys, sn: str) -> bytes:
    """`packed(call)` for a call whose KEYS begin with `device_keys(keys, sn)` (the device scripts' calls): those
    are encoded once per device, the rest by hiredis (C) (the hot path: the same bytes as `packed`, in less time)."""
    call_keys, argv = call.keys, call.args
    rest: bytes = hiredis.pack_command(call_keys[DEVICE_KEYS:] + argv)
    return b"".join((b"*%d\r\n" % (3 + len(call_keys) + len(argv)), _evalsha_head(call.script.sha, len(call_keys)),
                     _device_keys_bytes(keys, sn), rest[rest.index(b"\r\n") + 2:]))


class DeviceCommands:
    def __init__(self, keys: Keys, *, max_peripherals: int = MAX_PERIPHERALS,
                 peripheral_ttl: int = PERIPHERAL_TTL) -> None:
        self.keys = keys
        self.max_peripherals = max_peripherals
        self.peripheral_ttl = peripheral_ttl

    def presence(self, ev: Connected | Disconnected) -> bytes:
        return packed_device(device_call(self.keys, ev), self.keys, ev.clientid)

    def _up(self, mode: str, sn: str, at: int, extra: Sequence[Arg], fwd: Forward | None) -> bytes:
        return packed_device(uplink_call(self.keys, mode, sn, at, extra, fwd), self.keys, sn)

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
