"""Device monitoring, read side (seed: "Device Monitoring"): device and peripheral lists, counts, one device.

Route order matters: `GET /monitor/devices/{sn}` is declared LAST here, and this module's ENDPOINTS must come
after every other `/monitor/devices/<word>` GET route of the app (callbacks …), or `{sn}` captures them.
"""

from __future__ import annotations

from typing import Any

from adapter.devices import reads as devices
from adapter.errors import not_found
from adapter.http.endpoint import Call, Endpoint
from adapter.http.openapi import page_of
from adapter.http.validation import LIMIT, PAGE, Param

BASE = "/iot/api/v1/monitor/devices"

ONLINE = Param("online", "bool", description="true: online only; false: offline only; absent: all")
SN_PREFIX = Param("sn", description="only devices whose sn starts with this")
PERI_SN = Param("sn", description="only the peripherals of this device (exact sn)")
GW_ID = Param("gwId", description="only the peripherals of this gateway id (exact)")

_INT = {"type": "integer"}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties,
            "additionalProperties": False}


DEVICE_PROPERTIES: dict[str, Any] = {
    "activeTime": _INT, "bootTime": _INT, "dur": _INT, "offlineTime": _INT, "online": _BOOL,
    "onlineTime": _INT, "procs": _STR, "sn": _STR, "sys": _STR, "versions": _STR,
}
DEVICE_SCHEMA = _object(DEVICE_PROPERTIES)
DEVICE_DETAIL_SCHEMA = _object({**DEVICE_PROPERTIES, "version": {"type": "integer", "minimum": 0},
                                "peripherals": {"type": "integer", "minimum": 0}})
PERIPHERAL_SCHEMA = _object({
    "nId": _STR, "gwId": _STR, "sn": _STR, "online": _BOOL, "activeTime": _INT, "revTime": _INT, "msg": _STR,
})
_COUNT = {"type": "integer", "minimum": 0}
COUNTS_SCHEMA = _object({"offline": _COUNT, "online": _COUNT, "total": _COUNT})


async def list_devices(call: Call) -> dict[str, Any]:
    q = call.query
    page = await devices.device_page(call.svc.redis, call.svc.keys, page=q["page"], limit=q["limit"],
                                     online=q["online"], sn=q["sn"])
    return page.as_data()


async def count_devices(call: Call) -> dict[str, int]:
    return await devices.device_counts(call.svc.redis, call.svc.keys)


async def list_peripherals(call: Call) -> dict[str, Any]:
    q = call.query
    page = await devices.peripheral_page(call.svc.redis, call.svc.keys, page=q["page"], limit=q["limit"],
                                         sn=q["sn"], gw_id=q["gwId"], online=q["online"])
    return page.as_data()


async def count_peripherals(call: Call) -> dict[str, int]:
    return await devices.peripheral_counts(call.svc.redis, call.svc.keys)


async def get_device(call: Call) -> dict[str, Any]:
    sn = str(call.path["sn"])
    item = await devices.device(call.svc.redis, call.svc.keys, sn)
    if item is None:
        raise not_found("no such device")
    return item


ENDPOINTS = [
    Endpoint("GET", BASE, list_devices, "Devices, in sn order, with their last reports",
             query=(PAGE, LIMIT, ONLINE, SN_PREFIX), response=page_of(DEVICE_SCHEMA)),
    Endpoint("GET", f"{BASE}/count", count_devices, "How many devices are online, offline, known",
             response=COUNTS_SCHEMA),
    Endpoint("GET", f"{BASE}/peripherals", list_peripherals, "Peripherals, in sn/nId order",
             query=(PAGE, LIMIT, PERI_SN, GW_ID, ONLINE), response=page_of(PERIPHERAL_SCHEMA)),
    Endpoint("GET", f"{BASE}/peripherals/count", count_peripherals,
             "How many peripherals are online, offline, known", response=COUNTS_SCHEMA),
    # last: `{sn}` would capture /count and /peripherals otherwise
    Endpoint("GET", BASE + "/{sn}", get_device,
             "One device: the list item plus its presence version and peripheral count",
             response=DEVICE_DETAIL_SCHEMA),
]
