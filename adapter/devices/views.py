"""Pure mapping from stored Redis hashes to the v1 device and peripheral items (seed: "Device Monitoring").

Input is what one HMGET of `DEVICE_FIELDS` / `PERIPHERAL_FIELDS` answers (str or None per field). Output has
the seed's names and JSON types: times are integer seconds, `online` a bool, reports JSON strings.
Defaults for fields not recorded yet (docs/devices.md):
- `activeTime`, `onlineTime`, `offlineTime`, `revTime`: 0 (never);
- `bootTime`, `dur`: -1 (unknown, as the seed shows for an agent that does not know its boot time);
- `procs`, `sys`, `versions`, `msg`: "" (no report yet, as the seed shows);
- `online`: false.
A stored value that is not a number counts as missing. Presence times are stored in ms and shown in s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

DEVICE_FIELDS = ("online", "online_time", "offline_time", "activeTime", "bootTime", "dur",
                 "procs", "sys", "versions")
PERIPHERAL_FIELDS = ("nId", "gwId", "sn", "online", "activeTime", "revTime", "msg")

NEVER = 0
UNKNOWN = -1

Values = Sequence[str | None]
_EXACT = 10**15  # below it int() and the float path agree on every stored integer (ms / 1000 included)
_LARGEST = 2.0**53  # beyond it a stored number is garbage (and would not fit a JSON integer safely)


def _number(raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and abs(value) < _LARGEST else None


def _exact(raw: str | None) -> int | None:
    """`raw` as an int when it is one of magnitude below 10**15 (what the ingest stores): exact and ~3x faster
    than the float path, which gives the same answer for it; None sends the caller down the float path."""
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if -_EXACT < value < _EXACT else None


def seconds(raw: str | None, default: int = NEVER) -> int:
    """A stored time in seconds (maybe fractional) as whole seconds."""
    exact = _exact(raw)
    if exact is not None:
        return exact
    value = _number(raw)
    return default if value is None else math.floor(value)


def ms_to_seconds(raw: str | None, default: int = NEVER) -> int:
    """A stored time in milliseconds as whole seconds."""
    exact = _exact(raw)
    if exact is not None:
        return exact // 1000
    value = _number(raw)
    return default if value is None else math.floor(value / 1000)


def interval(raw: str | None) -> int:
    """The agent's report interval `dur` in whole seconds, rounded up so 0.5 s does not read as 0."""
    exact = _exact(raw)
    if exact is not None:
        return exact
    value = _number(raw)
    return UNKNOWN if value is None else math.ceil(value)


def flag(raw: str | None) -> bool:
    return raw == "1"


def text(raw: str | None) -> str:
    return "" if raw is None else raw


def device_item(sn: str, values: Values) -> dict[str, Any]:
    """The v1 device item from HMGET of DEVICE_FIELDS."""
    online, online_time, offline_time, active, boot, dur, procs, sys, versions = values
    return {
        "activeTime": seconds(active),
        "bootTime": seconds(boot, UNKNOWN),
        "dur": interval(dur),
        "offlineTime": ms_to_seconds(offline_time),
        "online": flag(online),
        "onlineTime": ms_to_seconds(online_time),
        "procs": text(procs),
        "sn": sn,
        "sys": text(sys),
        "versions": text(versions),
    }


def device_detail(sn: str, values: Values, version: str | None, peripherals: int) -> dict[str, Any]:
    """The device item plus its presence `version` (0 before any transition) and its peripheral count."""
    version_value = _number(version)
    return {**device_item(sn, values), "version": 0 if version_value is None else int(version_value),
            "peripherals": peripherals}


def split_member(member: str) -> tuple[str, str]:
    """A `{sn}/{nId}` index member as (sn, nId). The sn is a topic level (`dma/report/{sn}/…`), so it holds
    no '/'; the nId, from a payload, may."""
    sn, _, nid = member.partition("/")
    return sn, nid


def peripheral_item(member: str, values: Values) -> dict[str, Any]:
    """The v1 peripheral item from HMGET of PERIPHERAL_FIELDS; `sn`/`nId` fall back on the index member."""
    f = dict(zip(PERIPHERAL_FIELDS, values, strict=True))
    sn, nid = split_member(member)
    return {
        "nId": f["nId"] if f["nId"] is not None else nid,
        "gwId": text(f["gwId"]),
        "sn": f["sn"] if f["sn"] is not None else sn,
        "online": flag(f["online"]),
        "activeTime": seconds(f["activeTime"]),
        "revTime": seconds(f["revTime"]),
        "msg": text(f["msg"]),
    }


def is_recorded(values: Values) -> bool:
    """Whether HMGET found the hash at all (a member whose hash vanished between two reads is skipped)."""
    return values.count(None) < len(values)
