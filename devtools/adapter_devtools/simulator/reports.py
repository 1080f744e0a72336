"""Uplink payloads of a simulated DMA agent (docs/design.md §3): topics and report bodies, as pure functions.

`time` is the agent's uptime in whole seconds (the seed's devices stamp uptime); `bootTime` is the
agent's boot as Unix seconds. Randomness comes from the caller's `random.Random`, so tests can seed it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

RESP_TOPIC = "dma/resp/cmd"
REPORT_KINDS = ("heartbeat", "procs", "sys", "versions", "peripherals")

Payload = dict[str, Any]

_PROCS = ("monitor", "msghub", "cmdhandler")
_VERSIONS = (
    ("monitor", "1.0.0 20181114-173644"),
    ("msghub", "1.0.0 20181114-173644"),
    ("cmdhandler", "1.0.0 20181114-173644"),
    ("upgrade.cmd", "1.4.0 20181114-173644"),
)


def cmd_topic(sn: str) -> str:
    return f"dma/cmd/{sn}"


def report_topic(sn: str, kind: str) -> str:
    if kind not in REPORT_KINDS:
        raise ValueError(f"unknown report kind: {kind}")
    return f"dma/report/{sn}/{kind}"


def number(value: float) -> int | float:
    """A whole number as int (so `dur` stays an int in JSON for whole-second intervals)."""
    return int(value) if float(value).is_integer() else value


def heartbeat(sn: str, uptime: int, boot_time: int, dur: float) -> Payload:
    return {"sn": sn, "time": uptime, "bootTime": boot_time, "dur": number(dur)}


def procs(sn: str, uptime: int, rng: random.Random) -> Payload:
    rows = [{"n": n, "mem": rng.randint(800, 4000), "cpu": round(rng.uniform(0, 2), 2)} for n in _PROCS]
    return {"sn": sn, "time": uptime, "d": rows}


def sys_report(sn: str, uptime: int, rng: random.Random) -> Payload:
    used = rng.randint(40_000, 60_000)
    body = {"free": rng.randint(600_000, 900_000), "load": round(rng.uniform(0, 1.5), 2), "used": used}
    return {"sn": sn, "time": uptime, "d": body}


def versions(sn: str, uptime: int) -> Payload:
    return {"sn": sn, "time": uptime, "d": [{"n": n, "v": v} for n, v in _VERSIONS]}


@dataclass(frozen=True)
class Peripheral:
    n_id: str
    gw_id: str
    online: bool = True


def new_peripherals(gw_sn: str, count: int = 3) -> list[Peripheral]:
    return [Peripheral(n_id=f"{gw_sn}-P{i}", gw_id=gw_sn) for i in range(1, count + 1)]


def toggle_one(peripherals: list[Peripheral], rng: random.Random) -> list[Peripheral]:
    """The same peripherals with one chosen at random flipped online <-> offline."""
    if not peripherals:
        return peripherals
    k = rng.randrange(len(peripherals))
    flipped = replace(peripherals[k], online=not peripherals[k].online)
    return [*peripherals[:k], flipped, *peripherals[k + 1 :]]


def peripherals_report(sn: str, uptime: int, peripherals: list[Peripheral], rng: random.Random) -> Payload:
    rows = [
        {
            "nId": p.n_id,
            "gwId": p.gw_id,
            "online": p.online,
            "msg": {"temp": round(rng.uniform(18, 30), 1), "rssi": rng.randint(-90, -40)},
        }
        for p in peripherals
    ]
    return {"sn": sn, "time": uptime, "d": rows}
