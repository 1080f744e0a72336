"""Device state in Redis: presence plus device bookkeeping (`device.lua`) and the uplink (`uplink.lua`).

Every function here only queues commands on a pipeline (sync or asyncio), so the ingest can batch many
events into one round trip; each event is one atomic script.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapter.events import Connected, Disconnected
from adapter.keys import Keys
from adapter.presence_store import LuaScript, script_argv
from adapter.uplink import Peripheral

_HERE = Path(__file__).parent


def _presence_function() -> str:
    return "local function presence(KEYS, ARGV)\n" + (_HERE / "presence.lua").read_text() + "\nend\n"


DEVICE_PRESENCE = LuaScript(_presence_function() + (_HERE / "device.lua").read_text())
UPLINK = LuaScript((_HERE / "uplink.lua").read_text())


def script_keys(keys: Keys, clientid: str) -> list[str]:
    return [keys.client(clientid), keys.devices(), keys.devices_online(), keys.devices_offline(),
            keys.peripherals(), keys.peripherals_online(), keys.peripherals_offline(), keys.outbox(),
            keys.callbacks_enabled()]


SCRIPTS = (DEVICE_PRESENCE, UPLINK)


def _run(pipe: Any, script: LuaScript, keys: list[str], argv: list[Any]) -> None:
    """EVALSHA only: the batcher loads the scripts once and again after a NOSCRIPT (see batcher.py)."""
    pipe.evalsha(script.sha, len(keys), *keys, *argv)


def queue_presence(pipe: Any, keys: Keys, ev: Connected | Disconnected) -> None:
    _run(pipe, DEVICE_PRESENCE, script_keys(keys, ev.clientid), [*script_argv(ev), keys.peripheral_prefix()])


def _uplink(pipe: Any, keys: Keys, mode: str, sn: str, received_at: int, extra: list[Any]) -> None:
    _run(pipe, UPLINK, script_keys(keys, sn), [mode, sn, received_at, received_at // 1000, *extra])


def queue_mark(pipe: Any, keys: Keys, sn: str, at: int) -> None:
    _uplink(pipe, keys, "mark", sn, at, [])


def queue_active(pipe: Any, keys: Keys, sn: str, at: int) -> None:
    _uplink(pipe, keys, "active", sn, at, [])


def queue_report(pipe: Any, keys: Keys, sn: str, at: int, field: str, stored: str) -> None:
    _uplink(pipe, keys, "report", sn, at, [field, stored])


def queue_heartbeat(pipe: Any, keys: Keys, sn: str, at: int, boot_time: int, dur: int) -> None:
    _uplink(pipe, keys, "heartbeat", sn, at, [boot_time, dur])


def queue_peripherals(pipe: Any, keys: Keys, sn: str, at: int, items: list[Peripheral]) -> None:
    flat: list[Any] = [keys.peripheral_prefix(), keys.peripherals_of_gw_prefix()]
    for p in items:
        flat += [p.nid, p.gw_id, "1" if p.online else "0", p.msg]
    _uplink(pipe, keys, "peripherals", sn, at, flat)
