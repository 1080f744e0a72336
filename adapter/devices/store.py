"""Device state in Redis: presence plus device bookkeeping (`device.lua`) and the uplink (`uplink.lua`).

`DeviceCommands` packs each event's one atomic script call as RESP bytes (see resp.py) for the batcher, so
the ingest can send many events in one round trip.
"""

from __future__ import annotations

from adapter.devices.presence_store import script_argv
from adapter.devices.uplink import Peripheral
from adapter.ingest.events import SEEN_TTL, Connected, Disconnected
from adapter.store import scripts
from adapter.store.keys import Keys
from adapter.store.resp import Arg, PreparedCall
from adapter.store.scripts import LuaScript
from adapter.targets.forwarding import FORWARD_LUA, Forward


def _presence_function() -> str:
    return "local function presence(KEYS, ARGV)\n" + scripts.source("devices/presence.lua") + "\nend\n"


def _with_fanout(body: str) -> str:
    """The stream prefix and the partition count are the last two ARGV of both scripts."""
    head = "local stream_prefix, partitions = ARGV[#ARGV - 1], tonumber(ARGV[#ARGV])\n"
    return head + scripts.source("delivery/fanout.lua") + body


DEVICE_PRESENCE = LuaScript(_with_fanout(_presence_function() + scripts.source("devices/device.lua")))
UPLINK = LuaScript(_with_fanout(scripts.source("commands/wake.lua") + FORWARD_LUA
                                + scripts.source("devices/uplink.lua")))
SCRIPTS = (DEVICE_PRESENCE, UPLINK)


def fixed_keys(keys: Keys) -> list[str]:
    """KEYS[1..8] of both scripts; KEYS[9] is the client's hash."""
    return [keys.devices(), keys.devices_online(), keys.devices_offline(), keys.peripherals(),
            keys.peripherals_online(), keys.peripherals_offline(), keys.callbacks_enabled_of("device"),
            keys.callbacks_enabled_of("peripheral")]


MAX_PERIPHERALS = 1000  # per device (gateway); ADAPTER_MAX_PERIPHERALS_PER_GATEWAY
PERIPHERAL_TTL = 30 * 86_400  # s a peripheral not reported is kept; ADAPTER_PERIPHERAL_TTL_DAYS


def presence_args(keys: Keys, partitions: int, ev: Connected | Disconnected) -> list[Arg]:
    """KEYS (9) then ARGV of DEVICE_PRESENCE for one event, as `DeviceCommands.presence` packs them, for a
    caller that sends it through redis-py (reconciliation, under WATCH)."""
    return [*fixed_keys(keys), keys.client(ev.clientid), *script_argv(ev), keys.peripheral_prefix(),
            keys.delivery_stream_prefix(), partitions]


class DeviceCommands:
    def __init__(self, keys: Keys, partitions: int, *, max_peripherals: int = MAX_PERIPHERALS,
                 peripheral_ttl: int = PERIPHERAL_TTL) -> None:
        self.keys = keys
        stream: list[Arg] = [keys.delivery_stream_prefix(), partitions]
        self._presence = PreparedCall(DEVICE_PRESENCE, fixed_keys(keys), 1,
                                      tail=[keys.peripheral_prefix(), *stream])
        # the uplink's constant tail: the seen TTL of forward.lua, then the fanout's stream arguments
        self._uplink = PreparedCall(UPLINK, fixed_keys(keys), 1, tail=[SEEN_TTL, *stream])
        self._uplink_fwd = PreparedCall(UPLINK, fixed_keys(keys), 3, tail=[SEEN_TTL, *stream])
        self._peripheral_args: list[Arg] = [keys.peripheral_prefix(), keys.peripherals_of_gw_prefix(),
                                            keys.peripherals_seen_prefix(), max_peripherals, peripheral_ttl,
                                            keys.metrics()]

    def presence(self, ev: Connected | Disconnected) -> bytes:
        return self._presence.pack([self.keys.client(ev.clientid)], script_argv(ev))

    def _up(self, mode: str, sn: str, at: int, extra: list[Arg], fwd: Forward | None) -> bytes:
        """One uplink call; with `fwd`, the message's route deliveries are written by the same call."""
        argv: list[Arg] = [mode, sn, at, at // 1000, *extra]
        if fwd is None:
            return self._uplink.pack([self.keys.client(sn)], [*argv, 0])
        return self._uplink_fwd.pack([self.keys.client(sn), fwd.seen, fwd.stream], [*argv, *fwd.argv, fwd.routes])

    def _wake(self, sn: str) -> list[Arg]:
        """What the uplink script needs to wake the device's waiting commands (see wake.lua)."""
        p = self.keys.shard(sn)
        return [self.keys.commands_active(sn), self.keys.command_prefix(p), self.keys.commands_due(p)]

    def mark(self, sn: str, at: int, fwd: Forward | None = None) -> bytes:
        """The client subscribed to its command topic (or reported): a device, online for commands."""
        return self._up("mark", sn, at, self._wake(sn), fwd)

    def active(self, sn: str, at: int, fwd: Forward | None = None) -> bytes:
        return self._up("active", sn, at, [], fwd)

    def report(self, sn: str, at: int, field: str, stored: str, fwd: Forward | None = None) -> bytes:
        return self._up("report", sn, at, [field, stored], fwd)

    def heartbeat(self, sn: str, at: int, boot_time: int, dur: int, fwd: Forward | None = None) -> bytes:
        return self._up("heartbeat", sn, at, [boot_time, dur, *self._wake(sn)], fwd)

    def peripherals(self, sn: str, at: int, items: list[Peripheral], fwd: Forward | None = None) -> bytes:
        flat: list[Arg] = list(self._peripheral_args)
        for p in items:
            flat += [p.nid, p.gw_id, "1" if p.online else "0", p.msg]
        return self._up("peripherals", sn, at, flat, fwd)
